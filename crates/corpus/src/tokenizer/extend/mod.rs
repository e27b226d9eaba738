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

use super::extension::{EXTENSION_FORMAT, NewToken, VocabExtension};
use super::{DomainTokenizer, TokenizerModel, is_byte_level_bpe};
use crate::error::CorpusError;
use words::Candidate;

pub use bpe::continue_merges;

/// The ranking criterion, recorded in the sidecar.
pub const CRITERION: &str = "count x (pieces - 1): tokens saved over the training split";

/// Whether `vocab extend` knows how to extend this tokenizer's model: WordPiece, and
/// byte-level BPE whatever its post-processor (RoBERTa's `<s> A </s>`, ModernBERT's
/// `[CLS] A [SEP]`).
pub fn check_extendable(base: &DomainTokenizer) -> Result<(), CorpusError> {
    let supported = match base.model() {
        TokenizerModel::WordPiece => true,
        TokenizerModel::Bpe => is_byte_level_bpe(base.inner()),
        TokenizerModel::Unigram | TokenizerModel::WordLevel => false,
    };
    if supported {
        return Ok(());
    }
    Err(CorpusError::tokenizer(
        Some(base.source()),
        format!(
            "is a {} tokenizer ({}): vocab extend supports WordPiece (BERT) and byte-level BPE \
             (RoBERTa, ModernBERT) vocabularies",
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
            pin_added_tokens(model, base)?;
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
    check_ids_kept(base, &inner, &tokens)?;
    let extension = VocabExtension {
        format_version: EXTENSION_FORMAT,
        base_fingerprint: base.fingerprint(),
        base_vocab_size: base.vocab_size(),
        criterion: CRITERION.to_owned(),
        tokens,
    };
    base.extended(inner, extension)
}

/// Puts every added token that the BPE model vocabulary lacks into it, at its own id.
///
/// tokenizers does not read an added token's id from `tokenizer.json`: it takes the model's
/// id for the content, else the next id after the model vocabulary's *count* and the added
/// tokens before it (`AddedVocabulary::add_tokens`, added_vocabulary.rs). ModernBERT's
/// `[UNK]` .. `[MASK]` and `[unusedN]` are added tokens after the BPE entries and not in
/// the model; with new entries appended to the model after them, a reload would renumber
/// them onto the new ids. In the model vocabulary they keep their ids (as `<mask>` is in
/// roberta-base's `vocab.json`); the model never produces them (no merge makes them, and
/// the added vocabulary splits them off first), so no text encodes differently.
fn pin_added_tokens(model: &mut Value, base: &DomainTokenizer) -> Result<(), CorpusError> {
    let vocab = model
        .get_mut("vocab")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            CorpusError::tokenizer(Some(base.source()), "has a BPE model without vocab", None)
        })?;
    let taken: std::collections::HashSet<u64> = vocab.values().filter_map(Value::as_u64).collect();
    let mut added: Vec<(u32, String)> = base
        .inner()
        .get_added_tokens_decoder()
        .into_iter()
        .map(|(id, t)| (id, t.content))
        .collect();
    added.sort_unstable();
    for (id, content) in added {
        if vocab.contains_key(&content) {
            continue;
        }
        if taken.contains(&u64::from(id)) {
            let message = format!("gives id {id} to both {content:?} and a model token");
            return Err(CorpusError::tokenizer(Some(base.source()), message, None));
        }
        vocab.insert(content, Value::from(id));
    }
    Ok(())
}

/// Every base token but the reused `[unusedN]` slots keeps its id in the extended tokenizer
/// (what `vocab extend` promises; a change here would silently re-map embedding rows).
fn check_ids_kept(
    base: &DomainTokenizer,
    extended: &Tokenizer,
    added: &[NewToken],
) -> Result<(), CorpusError> {
    let replaced: std::collections::HashSet<&str> =
        added.iter().filter_map(|t| t.replaced.as_deref()).collect();
    let moved = base
        .inner()
        .get_vocab(true)
        .into_iter()
        .filter(|(token, _)| !replaced.contains(token.as_str()))
        .find(|(token, id)| extended.token_to_id(token) != Some(*id));
    let Some((token, id)) = moved else {
        return Ok(());
    };
    Err(CorpusError::Internal(format!(
        "extending {} would move {token:?} from id {id} to {:?}",
        base.source().display(),
        extended.token_to_id(&token)
    )))
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
