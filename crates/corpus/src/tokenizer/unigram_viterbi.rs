//! Unigram (XLM-R, CamemBERT, SentencePiece) computed natively for segments of ASCII text,
//! used by the split fast path (fast_split.rs) for the segments its cache has not seen, in
//! place of `Tokenizer::encode`. It follows tokenizers 0.22 stage by stage:
//!
//! - Normaliser and added tokens: see ascii_front.rs.
//! - Pre-tokenizer (pre_tokenizers/metaspace.rs): Metaspace that splits, alone (spaces become
//!   the replacement, which is prepended when `prepend_scheme = "always"` and the text does
//!   not start with one; a piece starts at each replacement, `MergedWithNext`), or XLM-R's
//!   WhitespaceSplit then Metaspace (each whitespace-separated word, with the replacement
//!   prepended under `"always"`).
//! - Unigram (models/unigram/model.rs, `encode_optimized`, SentencePiece's Viterbi): at each
//!   character, every vocabulary piece starting there, shortest first, offers
//!   `score + best score so far` to the position it reaches and takes it when the position
//!   has none or it is strictly better; a character no one-character piece covers offers
//!   the unknown token at `min score - 10`. The best path is read back from the end,
//!   consecutive unknown tokens fused into one string; each string is then looked up in the
//!   vocabulary (the last id of a string written twice), else its bytes as `<0xXX>` pieces
//!   under `byte_fallback`, else the unknown id. Scores are summed in the same order, in
//!   f64, so ties break as they do there.
//!
//! The vocabulary is kept only for the pieces that can match ASCII text with the
//! replacement character: a trie over their bytes.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use serde_json::Value;
use tokenizers::Tokenizer;
use tokenizers::models::ModelWrapper;

use super::ascii_front::AsciiFront;
use super::fx::FxHasher;

/// SentencePiece's penalty of the unknown token below the lowest score (`K_UNK_PENALTY`).
const UNK_PENALTY: f64 = 10.0;

/// A trie node without a piece.
const NO_PIECE: u32 = u32::MAX;

/// Longer pieces go to the library (its cost is the same; this bounds the scratch).
const MAX_PIECE_BYTES: usize = 256;

type EdgeMap = HashMap<u64, u32, BuildHasherDefault<FxHasher>>;

/// How the text is cut into the pieces the model sees.
#[derive(Clone, Copy)]
enum Pieces {
    /// Metaspace with `split`: a piece starts at each replacement.
    Metaspace { prepend: bool },
    /// WhitespaceSplit, then Metaspace: one piece per word.
    Words { prepend: bool },
}

/// The vocabulary pieces over ASCII and the replacement, as a trie.
struct Trie {
    /// `(node << 8) | byte` -> child node.
    edges: EdgeMap,
    /// The piece id ending at each node ([`NO_PIECE`] for none).
    ids: Vec<u32>,
}

impl Trie {
    fn insert(&mut self, piece: &[u8], id: u32) {
        let mut node = 0;
        for &b in piece {
            let next = self.ids.len() as u32;
            node = *self.edges.entry(key(node, b)).or_insert(next);
            if node == next {
                self.ids.push(NO_PIECE);
            }
        }
        // The last id of a piece written twice, as tokenizers' `token_to_ids` keeps it.
        self.ids[node as usize] = id;
    }

    fn child(&self, node: u32, b: u8) -> Option<u32> {
        self.edges.get(&key(node, b)).copied()
    }

    /// The id of `piece` in the vocabulary.
    fn id(&self, piece: &[u8]) -> Option<u32> {
        let node = piece.iter().try_fold(0, |node, &b| self.child(node, b))?;
        Some(self.ids[node as usize]).filter(|&id| id != NO_PIECE)
    }
}

fn key(node: u32, b: u8) -> u64 {
    (u64::from(node) << 8) | u64::from(b)
}

/// The native Unigram of one tokenizer.
pub(super) struct UnigramViterbi {
    front: AsciiFront,
    pieces: Pieces,
    /// The replacement character's UTF-8 bytes.
    replacement: Box<[u8]>,
    trie: Trie,
    /// Score of each id (ids of pieces not in the trie too).
    scores: Vec<f64>,
    unk_id: Option<u32>,
    unk_score: f64,
    /// `<0xXX>` ids of the 256 bytes (those in the vocabulary), under `byte_fallback`.
    byte_fallback: Option<Vec<Option<u32>>>,
}

/// One position of the Viterbi lattice: the best path ending there.
#[derive(Clone, Copy)]
struct Best {
    score: f64,
    start: usize,
    id: u32,
    set: bool,
}

/// Buffers reused from segment to segment (one set per `prepare` worker thread).
#[derive(Default)]
struct Scratch {
    text: Vec<u8>,
    piece: Vec<u8>,
    best: Vec<Best>,
    strings: Vec<(usize, usize, u32)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

impl UnigramViterbi {
    /// The native path of `tokenizer`, or `None` when its set-up is not the one above.
    pub fn new(tokenizer: &Tokenizer) -> Option<Self> {
        let (pieces, replacement) = pre_tokenizer(tokenizer)?;
        let front = AsciiFront::new(tokenizer, (0x20..0x7f).chain([b'\t', b'\n']))?;
        // Scores from the model itself: through JSON they could come back an ulp off
        // (serde_json's default float parsing), which breaks ties differently.
        let ModelWrapper::Unigram(unigram) = tokenizer.get_model() else {
            return None;
        };
        let mut trie = Trie {
            edges: EdgeMap::default(),
            ids: vec![NO_PIECE],
        };
        let mut scores = Vec::new();
        for (id, (piece, score)) in unigram.iter().enumerate() {
            scores.push(*score);
            if piece.chars().all(|c| c.is_ascii() || c == replacement) {
                trie.insert(piece.as_bytes(), u32::try_from(id).ok()?);
            }
        }
        let model = super::family::model_settings(tokenizer);
        let unk_id = match model.get("unk_id") {
            Some(Value::Null) | None => None,
            Some(v) => Some(u32::try_from(v.as_u64()?).ok()?),
        };
        let byte_fallback = unigram.byte_fallback().then(|| {
            (0..=255u8)
                .map(|b| trie.id(format!("<0x{b:02X}>").as_bytes()))
                .collect()
        });
        Some(Self {
            front,
            pieces,
            replacement: replacement.to_string().into_bytes().into(),
            trie,
            scores,
            unk_id,
            unk_score: unigram.min_score - UNK_PENALTY,
            byte_fallback,
        })
    }

    /// Appends the ids and word starts of `segment` as `Tokenizer::encode` gives them; false
    /// (nothing appended) when the segment is not one this path takes.
    pub fn encode(&self, segment: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>) -> bool {
        SCRATCH.with_borrow_mut(|scratch| {
            let first = ids.len();
            let done = self.encode_with(segment, scratch, ids, starts);
            if !done {
                ids.truncate(first);
                starts.truncate(first);
            }
            done
        })
    }

    fn encode_with(
        &self,
        segment: &str,
        scratch: &mut Scratch,
        ids: &mut Vec<u32>,
        starts: &mut Vec<bool>,
    ) -> bool {
        if !self.front.normalize_into(segment, &mut scratch.text) {
            return false;
        }
        let text = std::mem::take(&mut scratch.text);
        let mut done = true;
        for (word, prefix) in self.words(&text) {
            scratch.piece.clear();
            if prefix {
                scratch.piece.extend_from_slice(&self.replacement);
            }
            for &b in word {
                match b {
                    b' ' => scratch.piece.extend_from_slice(&self.replacement),
                    _ => scratch.piece.push(b),
                }
            }
            let first = ids.len();
            if scratch.piece.len() > MAX_PIECE_BYTES || !self.viterbi(scratch, ids) {
                done = false;
                break;
            }
            starts.push(true);
            starts.extend(std::iter::repeat_n(false, ids.len() - first - 1));
        }
        scratch.text = text;
        done
    }

    /// The normalised text's pre-tokens, each with whether the replacement is prepended
    /// (spaces inside become replacements).
    fn words<'t>(&self, text: &'t [u8]) -> Vec<(&'t [u8], bool)> {
        match self.pieces {
            Pieces::Words { prepend } => text
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .map(|w| (w, prepend))
                .collect(),
            Pieces::Metaspace { prepend } => {
                let prepend = prepend && text[0] != b' ';
                let mut out = Vec::new();
                let mut start = 0;
                for (i, &b) in text.iter().enumerate().skip(1) {
                    if b == b' ' {
                        out.push((&text[start..i], prepend && start == 0));
                        start = i;
                    }
                }
                out.push((&text[start..], prepend && start == 0));
                out
            }
        }
    }

    /// The ids of `scratch.piece` appended to `ids`; false where the library would fail (an
    /// unknown character without an unknown token).
    fn viterbi(&self, scratch: &mut Scratch, ids: &mut Vec<u32>) -> bool {
        let piece = &scratch.piece;
        let best = &mut scratch.best;
        best.clear();
        let unset = Best {
            score: 0.0,
            start: 0,
            id: 0,
            set: false,
        };
        best.resize(piece.len() + 1, unset);
        let mut start = 0;
        while start < piece.len() {
            let char_len = if piece[start].is_ascii() {
                1
            } else {
                self.replacement.len()
            };
            let so_far = best[start].score;
            let mut single = false;
            let mut node = 0;
            for (depth, &b) in piece[start..].iter().enumerate() {
                let Some(next) = self.trie.child(node, b) else {
                    break;
                };
                node = next;
                let id = self.trie.ids[node as usize];
                if id != NO_PIECE {
                    offer(
                        best,
                        start,
                        start + depth + 1,
                        id,
                        self.scores[id as usize] + so_far,
                    );
                    single |= depth + 1 == char_len;
                }
            }
            if !single {
                let Some(unk) = self.unk_id else {
                    return false;
                };
                offer(best, start, start + char_len, unk, self.unk_score + so_far);
            }
            start += char_len;
        }
        self.read_back(scratch, ids)
    }

    /// The best path from the end: unknown tokens fused, each string then looked up.
    fn read_back(&self, scratch: &mut Scratch, ids: &mut Vec<u32>) -> bool {
        let (piece, best, strings) = (&scratch.piece, &scratch.best, &mut scratch.strings);
        strings.clear();
        let mut end = piece.len();
        while end > 0 {
            let node = best[end];
            match strings.last_mut() {
                Some((start, _, id))
                    if Some(node.id) == self.unk_id && Some(*id) == self.unk_id =>
                {
                    *start = node.start;
                }
                _ => strings.push((node.start, end, node.id)),
            }
            end = node.start;
        }
        for &(start, end, _) in strings.iter().rev() {
            let string = &piece[start..end];
            let fallback = || -> Option<Vec<u32>> {
                let bytes = self.byte_fallback.as_ref()?;
                string.iter().map(|&b| bytes[usize::from(b)]).collect()
            };
            if let Some(id) = self.trie.id(string) {
                ids.push(id);
            } else if let Some(bytes) = fallback() {
                ids.extend(bytes);
            } else if let Some(unk) = self.unk_id {
                ids.push(unk);
            } else {
                return false;
            }
        }
        true
    }
}

/// A candidate path to `end`, taken when the position has none or it scores strictly more.
fn offer(best: &mut [Best], start: usize, end: usize, id: u32, score: f64) {
    let target = &mut best[end];
    if !target.set || score > target.score {
        *target = Best {
            score,
            start,
            id,
            set: true,
        };
    }
}

/// Metaspace that splits, alone, or WhitespaceSplit then Metaspace; with its replacement
/// (not ASCII) and `prepend_scheme` "always" or "never".
fn pre_tokenizer(tokenizer: &Tokenizer) -> Option<(Pieces, char)> {
    let pre = serde_json::to_value(tokenizer.get_pre_tokenizer()?).ok()?;
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_owned);
    let metaspace = |v: &Value| -> Option<(bool, bool, char)> {
        if kind(v)? != "Metaspace" {
            return None;
        }
        let mut chars = v.get("replacement")?.as_str()?.chars();
        let replacement = chars
            .next()
            .filter(|c| !c.is_ascii() && chars.next().is_none())?;
        let prepend = match v.get("prepend_scheme")?.as_str()? {
            "always" => true,
            "never" => false,
            _ => return None,
        };
        Some((prepend, v.get("split")?.as_bool()?, replacement))
    };
    if kind(&pre)? == "Sequence" {
        let [first, second] = pre.get("pretokenizers")?.as_array()?.as_slice() else {
            return None;
        };
        let (prepend, _, replacement) = metaspace(second)?;
        (kind(first)? == "WhitespaceSplit").then_some((Pieces::Words { prepend }, replacement))
    } else {
        let (prepend, split, replacement) = metaspace(&pre)?;
        split.then_some((Pieces::Metaspace { prepend }, replacement))
    }
}

#[cfg(test)]
#[path = "unigram_viterbi_tests.rs"]
mod tests;
