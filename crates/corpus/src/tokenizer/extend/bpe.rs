//! Extending a byte-level BPE vocabulary (RoBERTa, GPT-2) with new merges.
//!
//! BPE applies its merges lowest rank first (tokenizers' `Word::merge_all`, GPT-2's `bpe`), so
//! merges appended after the last one apply only once no base merge does: a word first becomes
//! exactly its base pieces, then the new merges run on those. For each chosen word, in rank
//! order, we take its pieces under the merges so far (c1 .. cm) and append the chain
//! (c1, c2) -> c1c2, (c1c2, c3) -> c1c2c3, ... up to the word, adding each chain token the
//! vocabulary lacks. The chain's left parts are real tokens too (a stem such as
//! `Ġacetamin` can serve other words), so they count against `add`; a word whose chain
//! needs more entries than are left is skipped. Appended merges only ever join adjacent
//! pieces, so no word of any text gets more pieces than before, and no base id changes.
//! Every word is checked to become one token under the final merges (simulated here, and
//! checked with the real tokenizer after the files are written); a word that would not is
//! rolled back. transformers' `RobertaTokenizer` reads the same `vocab.json` + `merges.txt`
//! (new merges last), so it gives the same ids.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::super::extension::{AddedKind, NewToken};
use super::words::Candidate;
use crate::error::CorpusError;

fn malformed(message: &str) -> CorpusError {
    CorpusError::tokenizer(None, format!("the BPE model {message}"), None)
}

/// The merges of a BPE `model` object, `["a", "b"]` pairs or the older `"a b"` strings.
fn read_merges(model: &Value) -> Result<Vec<(String, String)>, CorpusError> {
    let merges = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("has no merges"))?;
    merges
        .iter()
        .map(|merge| match merge {
            Value::Array(pair) if pair.len() == 2 => {
                Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned()))
            }
            Value::String(text) => {
                let (a, b) = text.split_once(' ')?;
                Some((a.to_owned(), b.to_owned()))
            }
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| malformed("has a malformed merge"))
}

/// The vocabulary and merges being extended.
struct State<'a> {
    vocab: &'a mut Map<String, Value>,
    merges: Vec<(String, String)>,
    ranks: HashMap<(String, String), usize>,
    /// Base ids of each token added so far (a base token's are its own id).
    base_ids: HashMap<String, Vec<u32>>,
    next_id: u32,
}

impl State<'_> {
    fn id_of(&self, token: &str) -> Option<u32> {
        self.vocab.get(token)?.as_u64().map(|id| id as u32)
    }

    /// The base ids a token stands for.
    fn base_ids_of(&self, token: &str) -> Vec<u32> {
        match self.base_ids.get(token) {
            Some(ids) => ids.clone(),
            None => self.id_of(token).into_iter().collect(),
        }
    }
}

/// Continues BPE on `pieces` with `ranks` (lowest rank first, leftmost among equals) until no
/// merge applies: what tokenizers' BPE does after the base merges are exhausted.
pub fn continue_merges(
    mut pieces: Vec<String>,
    ranks: &HashMap<(String, String), usize>,
) -> Vec<String> {
    loop {
        let best = pieces
            .windows(2)
            .enumerate()
            .filter_map(|(i, pair)| {
                let key = (pair[0].clone(), pair[1].clone());
                ranks.get(&key).map(|&rank| (rank, i))
            })
            .min();
        let Some((_, i)) = best else {
            return pieces;
        };
        let right = pieces.remove(i + 1);
        pieces[i].push_str(&right);
    }
}

/// Adds words of `candidates` (best first) to the BPE `model` object until `add` new
/// entries exist; returns them in id order. `next_id` is the first free id.
pub fn extend(
    model: &mut Value,
    candidates: &[Candidate],
    add: usize,
    next_id: u32,
    piece_strings: &dyn Fn(&[u32]) -> Vec<String>,
) -> Result<Vec<NewToken>, CorpusError> {
    let merges = read_merges(model)?;
    let ranks = merges
        .iter()
        .enumerate()
        .map(|(rank, pair)| (pair.clone(), rank))
        .collect();
    let mut vocab = model
        .get_mut("vocab")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed("has no vocab"))?
        .clone();
    let mut state = State {
        vocab: &mut vocab,
        merges,
        ranks,
        base_ids: HashMap::new(),
        next_id,
    };
    let mut added: Vec<NewToken> = Vec::new();
    for candidate in candidates {
        let left = add - added.len();
        if left == 0 {
            break;
        }
        let base = piece_strings(&candidate.base_ids);
        if let Some(tokens) = add_word(&mut state, candidate, base, left) {
            added.extend(tokens);
        }
    }
    let merges: Vec<Value> = state
        .merges
        .iter()
        .map(|(a, b)| Value::from(vec![a.clone(), b.clone()]))
        .collect();
    model["vocab"] = Value::Object(vocab);
    model["merges"] = Value::Array(merges);
    Ok(added)
}

/// Appends the merge chain of one word if it needs at most `left` new entries and makes
/// the word one token; otherwise leaves `state` as it was and returns `None`.
fn add_word(
    state: &mut State<'_>,
    candidate: &Candidate,
    base: Vec<String>,
    left: usize,
) -> Option<Vec<NewToken>> {
    let current = continue_merges(base.clone(), &state.ranks);
    if current.len() < 2 {
        return None; // earlier chains already made it one token
    }
    let chain: Vec<String> = (2..=current.len()).map(|j| current[..j].concat()).collect();
    let missing: HashSet<&String> = chain.iter().filter(|t| state.id_of(t).is_none()).collect();
    if missing.len() > left {
        return None;
    }
    let (merges_before, next_before) = (state.merges.len(), state.next_id);
    let mut added = Vec::new();
    let mut left_part = current[0].clone();
    for (j, token) in chain.iter().enumerate() {
        let pair = (left_part.clone(), current[j + 1].clone());
        if !state.ranks.contains_key(&pair) {
            state.ranks.insert(pair.clone(), state.merges.len());
            state.merges.push(pair);
        }
        if state.id_of(token).is_none() {
            let base_ids: Vec<u32> = current[..j + 2]
                .iter()
                .flat_map(|piece| state.base_ids_of(piece))
                .collect();
            let is_word = j + 1 == chain.len();
            added.push(NewToken {
                id: state.next_id,
                token: token.clone(),
                kind: if is_word {
                    AddedKind::Word
                } else {
                    AddedKind::MergeStep
                },
                base_ids: base_ids.clone(),
                count: if is_word { candidate.count } else { 0 },
                replaced: None,
            });
            state
                .vocab
                .insert(token.clone(), Value::from(state.next_id));
            state.base_ids.insert(token.clone(), base_ids);
            state.next_id += 1;
        }
        left_part = token.clone();
    }
    if continue_merges(base, &state.ranks) == [candidate.word.clone()] {
        return Some(added);
    }
    // A chain merge also matched elsewhere in the word: undo it.
    for pair in state.merges.drain(merges_before..) {
        state.ranks.remove(&pair);
    }
    for token in &added {
        state.vocab.remove(&token.token);
        state.base_ids.remove(&token.token);
    }
    state.next_id = next_before;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranks(pairs: &[(&str, &str)]) -> HashMap<(String, String), usize> {
        pairs
            .iter()
            .enumerate()
            .map(|(r, (a, b))| (((*a).to_owned(), (*b).to_owned()), r))
            .collect()
    }

    fn strings(pieces: &[&str]) -> Vec<String> {
        pieces.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn merges_apply_lowest_rank_first_then_leftmost() {
        // (b, c) outranks (a, b): abc -> a bc, never ab c.
        let r = ranks(&[("b", "c"), ("a", "b")]);
        assert_eq!(continue_merges(strings(&["a", "b", "c"]), &r), ["a", "bc"]);
        // Equal pairs: the leftmost first. a a a with (a, a): aa a.
        let r = ranks(&[("a", "a")]);
        assert_eq!(continue_merges(strings(&["a", "a", "a"]), &r), ["aa", "a"]);
        let r = ranks(&[("a", "a"), ("aa", "aa")]);
        assert_eq!(
            continue_merges(strings(&["a", "a", "a", "a"]), &r),
            ["aaaa"]
        );
        assert_eq!(continue_merges(strings(&["x"]), &r), ["x"]);
    }
}
