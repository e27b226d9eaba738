//! Training a vocabulary with Hugging Face tokenizers' trainers (`[vocab] model`):
//!
//! - `wordpiece`: tokenizers' WordPiece training (its `BpeTrainer` with the `##`
//!   continuation prefix) with the tie order fixed, so that a corpus gives one vocabulary
//!   (tokenizer/wordpiece_trainer.rs), set up as the `tokenizers` library's
//!   `BertWordPieceTokenizer` is (BertNormalizer, BertPreTokenizer, `##` continuation
//!   prefix). The special tokens get the first ids, in the configured order ([PAD]=0,
//!   [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4 by default; not the 0/100/101/102/103 layout of
//!   Google's bert-base vocabularies).
//! - `bpe`: `BpeTrainer`, set up as the `tokenizers` library's `ByteLevelBPETokenizer` is
//!   (no normaliser, ByteLevel pre-tokenizer without a prefix space, the 256 byte characters
//!   as the initial alphabet), then shaped as transformers' `RobertaTokenizer` builds
//!   roberta-base (tokenizer/roberta.rs): `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3 first,
//!   `<mask>` the last id (in the model vocabulary too, as in roberta-base's `vocab.json`)
//!   with `lstrip = true`, RobertaProcessing.
//! - `bpe` with `layout = "modernbert"`: the same trainer, shaped as answerdotai/ModernBERT-base's
//!   `tokenizer.json` (OLMo's byte-level BPE): the trained entries first, then the special
//!   tokens (`[UNK]`, `[CLS]`, `[SEP]`, `[PAD]`, `[MASK]` by default) as added special tokens
//!   in that order, `[MASK]` with `lstrip = true`, TemplateProcessing `[CLS]:0 $A:0 [SEP]:0`
//!   (pair `... $B:1 [SEP]:1`), ByteLevel decoder; written as a `PreTrainedTokenizerFast`
//!   that takes no `token_type_ids` (the hub's `tokenizer_config.json`).
//!
//! The manifest records the ids prepare finds.

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::wordpiece_trainer::WordPieceTrainer;

use super::DomainTokenizer;
use crate::config::{VocabConfig, VocabLayout};
use crate::error::CorpusError;

/// The trained vocabulary's `<mask>`: it gets the last id (roberta-base's layout).
const BPE_MASK: &str = "<mask>";

/// ModernBERT's mask, the one special token with `lstrip` (a space before it is part of it).
const MODERNBERT_MASK: &str = "[MASK]";

/// `model_max_length` of ModernBERT-base's `tokenizer_config.json` (its 8,192 positions).
pub const MODERNBERT_MODEL_MAX_LENGTH: usize = 8192;

/// Trains the `[vocab] model` (and `layout`) on `texts` (consumed in parallel by the
/// trainer).
pub fn train<I>(config: &VocabConfig, texts: I) -> Result<DomainTokenizer, CorpusError>
where
    I: Iterator<Item = String> + Send,
{
    match config.effective_layout() {
        None => train_wordpiece(config, texts),
        Some(VocabLayout::Roberta) => train_bpe(config, texts),
        Some(VocabLayout::ModernBert) => train_modernbert_bpe(config, texts),
    }
}

fn failed(message: &str, e: tokenizers::Error) -> CorpusError {
    CorpusError::tokenizer(None, message.to_string(), Some(e))
}

fn lacks(token: &str) -> CorpusError {
    CorpusError::tokenizer(None, format!("the trained vocabulary lacks {token}"), None)
}

/// Trains a WordPiece tokenizer on `texts`.
pub fn train_wordpiece<I>(config: &VocabConfig, texts: I) -> Result<DomainTokenizer, CorpusError>
where
    I: Iterator<Item = String> + Send,
{
    config.validate()?;
    let specials = config.effective_special_tokens().into_iter();
    let mut trainer = WordPieceTrainer::new(
        config.vocab_size,
        config.min_frequency,
        config.limit_alphabet,
        specials.map(|t| AddedToken::from(t, true)).collect(),
    );
    let mut tokenizer = Tokenizer::new(WordPiece::default());
    let lowercase = config.effective_lowercase();
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| failed("WordPiece training failed", e))?;
    let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| lacks(t));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    DomainTokenizer::from_tokenizer(tokenizer, Path::new("(trained)"))
}

/// A byte-level BPE of at most `vocab_size` entries (`first` included, given the first ids)
/// trained as tokenizers' `ByteLevelBPETokenizer` trains one: no normaliser, ByteLevel
/// without a prefix space, the 256 bytes as the initial alphabet, ByteLevel decoder.
fn train_byte_level<I>(
    config: &VocabConfig,
    vocab_size: usize,
    first: Vec<AddedToken>,
    texts: I,
) -> Result<Tokenizer, CorpusError>
where
    I: Iterator<Item = String> + Send,
{
    // `limit_alphabet` does not apply: the alphabet is the 256 bytes, all of them kept.
    let trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(config.min_frequency)
        .special_tokens(first)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| failed("BPE training failed", e))?;
    Ok(tokenizer)
}

/// Trains a RoBERTa byte-level BPE tokenizer on `texts` (see the module comment).
pub fn train_bpe<I>(config: &VocabConfig, texts: I) -> Result<DomainTokenizer, CorpusError>
where
    I: Iterator<Item = String> + Send,
{
    config.validate()?;
    let first: Vec<AddedToken> = config
        .effective_special_tokens()
        .into_iter()
        .filter(|t| t != BPE_MASK)
        .map(|t| AddedToken::from(t, true))
        .collect();
    // `<mask>` comes after the trained entries.
    let mut tokenizer = train_byte_level(config, config.vocab_size - 1, first, texts)?;
    let model = roberta_model(tokenizer.get_model())?;
    tokenizer.with_model(model);
    tokenizer.add_special_tokens(&[AddedToken::from(BPE_MASK, true).lstrip(true)]);
    let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| lacks(t));
    let (cls, sep) = (id("<s>")?, id("</s>")?);
    tokenizer.with_post_processor(Some(
        RobertaProcessing::new(("</s>".into(), sep), ("<s>".into(), cls))
            .trim_offsets(true)
            .add_prefix_space(false),
    ));
    DomainTokenizer::from_tokenizer(tokenizer, Path::new("(trained)"))
}

/// Trains a byte-level BPE with ModernBERT-base's layout on `texts` (see the module
/// comment): the special tokens are added after training, so they take the last ids in the
/// configured order, as `[UNK]` 50280 .. `[MASK]` 50284 follow ModernBERT-base's BPE entries.
pub fn train_modernbert_bpe<I>(
    config: &VocabConfig,
    texts: I,
) -> Result<DomainTokenizer, CorpusError>
where
    I: Iterator<Item = String> + Send,
{
    config.validate()?;
    let specials = config.effective_special_tokens();
    let size = config.vocab_size - specials.len();
    let mut tokenizer = train_byte_level(config, size, Vec::new(), texts)?;
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|t| AddedToken::from(t.clone(), true).lstrip(t == MODERNBERT_MASK))
        .collect();
    tokenizer.add_special_tokens(&added);
    let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| lacks(t));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let post = TemplateProcessing::builder()
        .try_single("[CLS]:0 $A:0 [SEP]:0")
        .and_then(|b| b.try_pair("[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"))
        .map_err(|e| CorpusError::tokenizer(None, format!("bad template: {e}"), None))?
        .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
        .build()
        .map_err(|e| failed("cannot build the template", Box::new(e)))?;
    tokenizer.with_post_processor(Some(post));
    let tokenizer = DomainTokenizer::from_tokenizer(tokenizer, Path::new("(trained)"))?;
    // ModernBERT-base's tokenizer_config.json: its model takes no token_type_ids.
    let names = ["input_ids", "attention_mask"].map(String::from).to_vec();
    Ok(tokenizer.with_hf_keys(Some(names), Some(true)))
}

/// The trained model as roberta-base's: `<mask>` appended to the vocabulary, and the empty
/// prefix and suffix transformers' `RobertaTokenizer` gives its BPE (the same tokens as
/// none, but the fingerprint sees the settings, so a reload from `vocab.json` agrees).
fn roberta_model(model: &impl serde::Serialize) -> Result<BPE, CorpusError> {
    let bad = |e: serde_json::Error| {
        CorpusError::tokenizer(
            None,
            "cannot reshape the trained BPE model",
            Some(Box::new(e)),
        )
    };
    let mut json = serde_json::to_value(model).map_err(bad)?;
    let vocab = json["vocab"]
        .as_object_mut()
        .ok_or_else(|| lacks("a vocabulary"))?;
    let next = vocab
        .values()
        .filter_map(Value::as_u64)
        .max()
        .map_or(0, |m| m + 1);
    vocab.insert(BPE_MASK.into(), next.into());
    json["continuing_subword_prefix"] = "".into();
    json["end_of_word_suffix"] = "".into();
    json["fuse_unk"] = false.into();
    // From text: the BPE visitor borrows its strings, which a `Value` cannot lend.
    serde_json::from_str(&json.to_string()).map_err(bad)
}
