//! Training a WordPiece vocabulary with Hugging Face tokenizers' `WordPieceTrainer`, set up
//! as the `tokenizers` library's `BertWordPieceTokenizer` is (BertNormalizer,
//! BertPreTokenizer, `##` continuation prefix). The special tokens get the first ids, in
//! the configured order ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4 by default; not the
//! 0/100/101/102/103 layout of Google's bert-base vocabularies) and the manifest records them.

use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::DomainTokenizer;
use crate::config::VocabConfig;
use crate::error::CorpusError;

/// Trains a WordPiece tokenizer on `texts` (consumed in parallel by the trainer).
pub fn train_wordpiece<I>(config: &VocabConfig, texts: I) -> Result<DomainTokenizer, CorpusError>
where
    I: Iterator<Item = String> + Send,
{
    config.validate()?;
    let err = |m: &str, e| CorpusError::tokenizer(None, m.to_string(), Some(e));
    let trainer = WordPieceTrainer::builder()
        .vocab_size(config.vocab_size)
        .min_frequency(config.min_frequency)
        .special_tokens(
            config
                .special_tokens
                .iter()
                .map(|t| AddedToken::from(t.clone(), true))
                .collect(),
        )
        .limit_alphabet(config.limit_alphabet)
        .continuing_subword_prefix("##".into())
        .show_progress(false)
        .build();
    let mut trainer = TrainerWrapper::WordPieceTrainer(trainer);
    let mut tokenizer = Tokenizer::new(WordPiece::default());
    tokenizer.with_normalizer(Some(BertNormalizer::new(
        true,
        true,
        None,
        config.lowercase,
    )));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| err("WordPiece training failed", e))?;
    let id = |t: &str| {
        tokenizer.token_to_id(t).ok_or_else(|| {
            CorpusError::tokenizer(None, format!("the trained vocabulary lacks {t}"), None)
        })
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    DomainTokenizer::from_tokenizer(tokenizer, Path::new("(trained)"))
}
