//! Extending a WordPiece vocabulary: each chosen word becomes a whole-word entry (no `##`),
//! which WordPiece's greedy longest-match-first takes before any shorter piece. Reserved
//! `[unusedN]` slots (bert-base has 994, untrained) are reused first, in id order; the rest
//! are appended after the last id. No other entry changes.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use super::super::extension::{AddedKind, NewToken};
use super::words::Candidate;
use crate::error::CorpusError;

/// `[unusedN]`, the reserved slots of Google's BERT vocabularies.
fn is_unused_slot(token: &str) -> bool {
    token
        .strip_prefix("[unused")
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Adds the first `add` candidates to `model` (the `model` object of a WordPiece
/// `tokenizer.json`) and returns the new entries. `added_ids` are the ids of added tokens
/// (never reused); `next_id` the first free id.
pub fn extend(
    model: &mut Value,
    candidates: &[Candidate],
    add: usize,
    added_ids: &[u32],
    next_id: u32,
) -> Result<Vec<NewToken>, CorpusError> {
    let vocab = model
        .get_mut("vocab")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| CorpusError::tokenizer(None, "the WordPiece model has no vocab", None))?;
    let mut slots = unused_slots(vocab, added_ids);
    let mut next_id = next_id;
    let mut added = Vec::new();
    for candidate in candidates.iter().take(add) {
        let (id, replaced) = match slots.pop_front() {
            Some((id, token)) => {
                vocab.remove(&token);
                (id, Some(token))
            }
            None => {
                next_id += 1;
                (next_id - 1, None)
            }
        };
        vocab.insert(candidate.word.clone(), Value::from(id));
        added.push(NewToken {
            id,
            token: candidate.word.clone(),
            kind: AddedKind::Word,
            base_ids: candidate.base_ids.clone(),
            count: candidate.count,
            replaced,
        });
    }
    Ok(added)
}

/// (id, token) of every `[unusedN]` entry that is not an added token, by id.
fn unused_slots(vocab: &Map<String, Value>, added_ids: &[u32]) -> VecDeque<(u32, String)> {
    let mut slots: Vec<(u32, String)> = vocab
        .iter()
        .filter(|(token, _)| is_unused_slot(token))
        .filter_map(|(token, id)| Some((u32::try_from(id.as_u64()?).ok()?, token.clone())))
        .filter(|(id, _)| !added_ids.contains(id))
        .collect();
    slots.sort_unstable();
    slots.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bracketed_numbered_unused_tokens_are_slots() {
        assert!(is_unused_slot("[unused0]"));
        assert!(is_unused_slot("[unused993]"));
        assert!(!is_unused_slot("[unused]"));
        assert!(!is_unused_slot("[unusedx]"));
        assert!(!is_unused_slot("unused1"));
        assert!(!is_unused_slot("[UNK]"));
    }
}
