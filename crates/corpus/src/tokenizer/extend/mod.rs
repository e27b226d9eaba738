//! `mlm-train vocab extend`: add the corpus words a base vocabulary splits worst as real
//! vocabulary entries, without changing any existing id (docs/vocabulary.md).
//!
//! Words are the tokenizer's own (`words`: normaliser + pre-tokenizer), ranked by the tokens
//! they would save, count x (pieces - 1); WordPiece gets whole-word entries (`wordpiece`),
//! byte-level BPE new merges (`bpe`).

mod bpe;
mod wordpiece;
pub mod words;

use std::str::FromStr;

use serde_json::Value;
use tokenizers::Tokenizer;

use super::extension::{EXTENSION_FORMAT, VocabExtension};
use super::{DomainTokenizer, HfClass, TokenizerModel};
use crate::error::CorpusError;
use words::Candidate;

pub use bpe::continue_merges;

/// The ranking criterion, recorded in the sidecar.
pub const CRITERION: &str = "count x (pieces - 1): tokens saved over the training split";

/// Whether `vocab extend` knows how to extend this tokenizer's model.
pub fn check_extendable(base: &DomainTokenizer) -> Result<(), CorpusError> {
    let supported = match base.model() {
        TokenizerModel::WordPiece => true,
        TokenizerModel::Bpe => matches!(base.hf_class(), HfClass::Roberta { .. }),
        TokenizerModel::Unigram | TokenizerModel::WordLevel => false,
    };
    if supported {
        return Ok(());
    }
    Err(CorpusError::tokenizer(
        Some(base.source()),
        format!(
            "is a {} tokenizer ({}): vocab extend supports WordPiece (BERT) and byte-level BPE \
             (RoBERTa) vocabularies",
            base.model().as_str(),
            base.hf_class().name()
        ),
        None,
    ))
}

/// The base tokenizer with up to `add` new entries for the best `candidates` (ranked by
/// [`words::rank_candidates`]), and the sidecar describing them.
pub fn extend_tokenizer(
    base: &DomainTokenizer,
    candidates: &[Candidate],
    add: usize,
) -> Result<DomainTokenizer, CorpusError> {
    check_extendable(base)?;
    let source = Some(base.source());
    let text = base
        .inner()
        .to_string(false)
        .map_err(|e| CorpusError::tokenizer(source, "cannot serialise", Some(e)))?;
    let mut json: Value = serde_json::from_str(&text)
        .map_err(|e| CorpusError::tokenizer(source, "cannot read back", Some(Box::new(e))))?;
    let next_id = base.vocab_size();
    let model = &mut json["model"];
    let mut tokens = match base.model() {
        TokenizerModel::WordPiece => {
            check_contiguous(base)?;
            let added_ids: Vec<u32> = base
                .inner()
                .get_added_tokens_decoder()
                .into_keys()
                .collect();
            wordpiece::extend(model, candidates, add, &added_ids, next_id)?
        }
        _ => {
            let strings = |ids: &[u32]| -> Vec<String> {
                ids.iter()
                    .map(|&id| base.id_to_token(id).unwrap_or_default())
                    .collect()
            };
            bpe::extend(model, candidates, add, next_id, &strings)?
        }
    };
    tokens.sort_by_key(|t| t.id);
    let inner = Tokenizer::from_str(&json.to_string()).map_err(|e| {
        CorpusError::tokenizer(source, "cannot build the extended tokenizer", Some(e))
    })?;
    let extension = VocabExtension {
        format_version: EXTENSION_FORMAT,
        base_fingerprint: base.fingerprint(),
        base_vocab_size: base.vocab_size(),
        criterion: CRITERION.to_owned(),
        tokens,
    };
    base.extended(inner, extension)
}

/// WordPiece entries are appended after the last id: the model vocabulary must hold every id
/// below it (an added token beyond it would leave a hole `vocab.txt` cannot write).
fn check_contiguous(base: &DomainTokenizer) -> Result<(), CorpusError> {
    let model_size = base.inner().get_vocab(false).len() as u32;
    if model_size == base.vocab_size() {
        return Ok(());
    }
    Err(CorpusError::tokenizer(
        Some(base.source()),
        format!(
            "has {} model tokens but ids up to {}: added tokens beyond the WordPiece vocabulary \
             are not supported by vocab extend",
            model_size,
            base.vocab_size() - 1
        ),
        None,
    ))
}
