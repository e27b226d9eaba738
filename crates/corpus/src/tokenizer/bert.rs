//! A BERT WordPiece tokenizer from a `vocab.txt`, built as transformers'
//! `convert_slow_tokenizer.BertConverter` builds `BertTokenizerFast`: BertNormalizer
//! (clean_text, handle_chinese_chars, strip_accents = None so it follows lowercase,
//! lowercase), BertPreTokenizer, WordPiece (`[UNK]`, `##`, 100 chars per word),
//! BertProcessing (`[CLS] A [SEP]`), WordPiece decoder, and the five special tokens as
//! added tokens (special, not normalised), so they are never split.

use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::BERT_SPECIAL_TOKENS;
use crate::error::CorpusError;

/// Reads `vocab.txt` (one token per line; the line number is the id; as transformers'
/// `load_vocab`, a later duplicate line wins).
fn read_vocab(path: &Path) -> Result<Vocab, CorpusError> {
    let bytes = std::fs::read(path).map_err(|e| CorpusError::io("cannot read", path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        CorpusError::tokenizer(
            Some(path),
            format!("line {line}: invalid UTF-8"),
            Some(Box::new(e)),
        )
    })?;
    let mut vocab = Vocab::new();
    for (id, line) in text.split_terminator('\n').enumerate() {
        let token = line.strip_suffix('\r').unwrap_or(line);
        vocab.insert(token.to_string(), id as u32);
    }
    Ok(vocab)
}

type Vocab = std::collections::HashMap<String, u32>;

/// Builds the tokenizer of `vocab.txt` (see the module comment).
pub fn bert_wordpiece_tokenizer(
    vocab_path: &Path,
    lowercase: bool,
) -> Result<Tokenizer, CorpusError> {
    let vocab = read_vocab(vocab_path)?;
    for token in BERT_SPECIAL_TOKENS {
        if !vocab.contains_key(token) {
            return Err(CorpusError::tokenizer(
                Some(vocab_path),
                format!("vocab.txt has no {token} token"),
                None,
            ));
        }
    }
    let id = |t: &str| vocab[t];
    let (cls, sep) = (id("[CLS]"), id("[SEP]"));
    // Through serde rather than WordPiece::builder(): the builder wants tokenizers' own
    // hash map type, and its file reader trims trailing whitespace off tokens.
    let model: WordPiece = serde_json::from_str(
        &serde_json::json!({
        "type": "WordPiece",
        "unk_token": "[UNK]",
        "continuing_subword_prefix": "##",
        "max_input_chars_per_word": 100,
        "vocab": vocab,
        })
        .to_string(),
    )
    .map_err(|e| {
        CorpusError::tokenizer(
            Some(vocab_path),
            "cannot build WordPiece",
            Some(Box::new(e)),
        )
    })?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    // transformers adds the special tokens in id order (tokenizer.json's `added_tokens`).
    let mut specials: Vec<&str> = BERT_SPECIAL_TOKENS.to_vec();
    specials.sort_by_key(|t| id(t));
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tokenizer.add_special_tokens(&added);
    Ok(tokenizer)
}
