//! A RoBERTa byte-level BPE tokenizer from `vocab.json` + `merges.txt`, built as transformers'
//! `RobertaTokenizer` builds one (models/roberta/tokenization_roberta.py; in transformers 4
//! `convert_slow_tokenizer.RobertaConverter` and `RobertaTokenizerFast`): BPE without
//! continuation prefix, suffix, dropout or unknown token; no normaliser; ByteLevel
//! pre-tokenizer (`add_prefix_space` as `tokenizer_config.json` says, default false; regex
//! split); ByteLevel decoder; RobertaProcessing (`<s> A </s>`, `trim_offsets` as the config
//! says, default true). The special tokens are added as special tokens: the config's
//! `added_tokens_decoder` first (id order), then the `*_token` keys in transformers' order
//! (bos, eos, unk, sep, pad, cls, mask); one missing from `vocab.json` gets the next id.
//! `<mask>` has `lstrip = true` (a space before it belongs to it), as in roberta-base and
//! `RobertaTokenizerFast`, unless `added_tokens_decoder` says otherwise.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::hf_config::{HfTokenizerConfig, TokenSpec};
use super::specials::SpecialTokens;
use crate::error::CorpusError;

/// transformers' `SPECIAL_TOKENS_ATTRIBUTES` order, with RoBERTa's default names.
const ROLE_DEFAULTS: [(&str, &str); 7] = [
    ("bos", "<s>"),
    ("eos", "</s>"),
    ("unk", "<unk>"),
    ("sep", "</s>"),
    ("pad", "<pad>"),
    ("cls", "<s>"),
    ("mask", "<mask>"),
];

fn added_token(spec: &TokenSpec) -> AddedToken {
    AddedToken::from(spec.content.clone(), spec.special)
        .lstrip(spec.lstrip)
        .rstrip(spec.rstrip)
        .single_word(spec.single_word)
        .normalized(spec.normalized)
}

/// The added tokens in the order transformers adds them (see the module comment).
fn special_tokens(config: &HfTokenizerConfig) -> Vec<AddedToken> {
    let mut specs: Vec<TokenSpec> = config.added_tokens.values().cloned().collect();
    for (role, default) in ROLE_DEFAULTS {
        let spec = config.token(role).cloned().unwrap_or_else(|| {
            let mut spec = TokenSpec::plain(default);
            spec.lstrip = role == "mask";
            spec
        });
        if !specs.iter().any(|s| s.content == spec.content) {
            specs.push(TokenSpec {
                special: true,
                ..spec
            });
        }
    }
    specs.iter().map(added_token).collect()
}

/// Builds the tokenizer of `vocab.json` + `merges.txt` (see the module comment).
pub fn roberta_bpe_tokenizer(
    vocab: &Path,
    merges: &Path,
    config: &HfTokenizerConfig,
) -> Result<Tokenizer, CorpusError> {
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| CorpusError::tokenizer(Some(p), "the path is not valid UTF-8", None))
    };
    let model = BPE::from_file(&utf8(vocab)?, &utf8(merges)?)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|e| {
            let message = format!("cannot build BPE from it and {}", merges.display());
            CorpusError::tokenizer(Some(vocab), message, Some(e))
        })?;
    let add_prefix_space = config.add_prefix_space.unwrap_or(false);
    let trim_offsets = config.trim_offsets.unwrap_or(true);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(add_prefix_space, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer.add_special_tokens(&special_tokens(config));
    let names = SpecialTokens::roberta();
    let role = |role: &str, default: &str| {
        let name = config
            .token(role)
            .map_or(default.to_string(), |t| t.content.clone());
        let id = tokenizer.token_to_id(&name).ok_or_else(|| {
            CorpusError::tokenizer(Some(vocab), format!("has no {name} token"), None)
        })?;
        Ok::<_, CorpusError>((name, id))
    };
    let (sep, cls) = (role("sep", &names.sep)?, role("cls", &names.cls)?);
    tokenizer.with_post_processor(Some(
        RobertaProcessing::new(sep, cls)
            .trim_offsets(trim_offsets)
            .add_prefix_space(add_prefix_space),
    ));
    Ok(tokenizer)
}
