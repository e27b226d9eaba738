//! Byte-level BPE (RoBERTa, ModernBERT, GPT-2) computed natively for segments of ASCII text,
//! used by the split fast path (fast_split.rs) for the segments its cache has not seen, in
//! place of `Tokenizer::encode` (whose `NormalizedString` alignments, onig regex and
//! `Encoding` cost about 15 us a segment). It follows tokenizers 0.22 stage by stage:
//!
//! - Normaliser and added tokens: see ascii_front.rs (a byte-by-byte image of the
//!   normaliser; a segment holding an added token's content is left to the library).
//! - ByteLevel (pre_tokenizers/byte_level.rs): `add_prefix_space` prepends a space to a text
//!   not starting with one; the GPT-2 regex
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` is matched
//!   by hand on the ASCII classes (letters, digits, `\s`, the rest); each byte is mapped to
//!   GPT-2's printable character (`bytes_char`).
//! - BPE (models/bpe/model.rs, word.rs): each pre-token's characters become their vocabulary
//!   ids and the pair of lowest rank is merged first, the leftmost on ties, until no pair is
//!   in the merges; `ignore_merges` takes a pre-token found whole in the vocabulary first.
//!   tokenizers' heap pops exactly this pair: a stale entry never passes its check, as the
//!   pair at a position only changes by growing, which changes the merged token.
//!
//! Only printable ASCII, tab and line feed are taken (onig's `\s` also holds VT and FF, and
//! the control characters map to other byte-level characters): a segment
//! with any other byte, or a set-up outside the above (dropout, a subword prefix or suffix, a
//! byte missing from the vocabulary), goes to the library. The differential tests of
//! fast_split_tests.rs compare both on every segment they encode.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use serde_json::Value;
use tokenizers::Tokenizer;

use super::ascii_front::AsciiFront;
use super::fx::{FxHasher, FxMap};

/// The bytes taken: printable ASCII, tab and line feed (`\r` is never taken, see
/// ascii_front.rs).
fn taken() -> impl Iterator<Item = u8> {
    (0x20..0x7f).chain([b'\t', b'\n'])
}

type PairMap = HashMap<u64, (u32, u32), BuildHasherDefault<FxHasher>>;

/// Longer pre-tokens (runs of letters or digits without a break) go to the library, whose
/// heap merges them in O(n log n) where [`ByteLevelBpe::bpe`] takes O(n^2).
const MAX_WORD_BYTES: usize = 128;

/// The native byte-level BPE of one tokenizer.
pub(super) struct ByteLevelBpe {
    /// The normaliser and the added tokens.
    front: AsciiFront,
    add_prefix_space: bool,
    /// The vocabulary id of each byte's byte-level character.
    byte_ids: [u32; 128],
    /// `(left << 32) | right` -> (rank, merged id).
    merges: PairMap,
    /// The vocabulary by byte-level string, when `ignore_merges` asks for whole pre-tokens.
    whole_words: Option<FxMap<u32>>,
}

/// Buffers reused from segment to segment (one set per `prepare` worker thread).
#[derive(Default)]
struct Scratch {
    text: Vec<u8>,
    symbols: Vec<u32>,
    pairs: Vec<(u32, u32)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

impl ByteLevelBpe {
    /// The native path of `tokenizer`, or `None` when its set-up is not the one above.
    pub fn new(tokenizer: &Tokenizer) -> Option<Self> {
        let add_prefix_space = byte_level_pre_tokenizer(tokenizer)?;
        let front = AsciiFront::new(tokenizer, taken())?;
        let model = serde_json::to_value(tokenizer.get_model()).ok()?;
        if !plain_bpe(&model) {
            return None;
        }
        let vocab: FxMap<u32> = model
            .get("vocab")?
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.as_str().into(), u32::try_from(v.as_u64()?).ok()?)))
            .collect::<Option<_>>()?;
        let mut byte_ids = [0; 128];
        for b in taken() {
            byte_ids[usize::from(b)] = *vocab.get(byte_char(b).to_string().as_str())?;
        }
        let merges = merge_map(model.get("merges")?.as_array()?, &vocab)?;
        let ignore_merges = model.get("ignore_merges").and_then(Value::as_bool) == Some(true);
        Some(Self {
            front,
            add_prefix_space,
            byte_ids,
            merges,
            whole_words: ignore_merges.then_some(vocab),
        })
    }

    /// Appends the ids and word starts of `segment` as `Tokenizer::encode` gives them; false
    /// (nothing appended) when the segment is not one this path takes.
    pub fn encode(&self, segment: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>) -> bool {
        SCRATCH.with_borrow_mut(|scratch| self.encode_with(segment, scratch, ids, starts))
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
        if self.add_prefix_space && scratch.text[0] != b' ' {
            scratch.text.insert(0, b' ');
        }
        let text = &scratch.text;
        let first = ids.len();
        let mut start = 0;
        while start < text.len() {
            let end = pre_token_end(text, start);
            if end - start > MAX_WORD_BYTES {
                ids.truncate(first);
                starts.truncate(first);
                return false;
            }
            let word = self.bpe(&text[start..end], &mut scratch.symbols, &mut scratch.pairs);
            ids.extend_from_slice(word);
            starts.push(true);
            starts.extend(std::iter::repeat_n(false, word.len() - 1));
            start = end;
        }
        true
    }

    /// The BPE ids of one pre-token (see the module comment): the lowest-ranked pair first,
    /// the leftmost on ties.
    fn bpe<'s>(
        &self,
        word: &[u8],
        symbols: &'s mut Vec<u32>,
        pairs: &mut Vec<(u32, u32)>,
    ) -> &'s [u32] {
        symbols.clear();
        if let Some(id) = self.whole_words.as_ref().and_then(|vocab| {
            let chars: String = word.iter().map(|&b| byte_char(b)).collect();
            vocab.get(chars.as_str()).copied()
        }) {
            symbols.push(id);
            return symbols;
        }
        symbols.extend(word.iter().map(|&b| self.byte_ids[usize::from(b)]));
        pairs.clear();
        pairs.extend(symbols.windows(2).map(|w| self.pair(w[0], w[1])));
        loop {
            let mut best = 0;
            for (i, p) in pairs.iter().enumerate() {
                if p.0 < pairs[best].0 {
                    best = i;
                }
            }
            let Some(&(rank, merged)) = pairs.get(best) else {
                break;
            };
            if rank == u32::MAX {
                break;
            }
            symbols[best] = merged;
            symbols.remove(best + 1);
            pairs.remove(best);
            if best > 0 {
                pairs[best - 1] = self.pair(symbols[best - 1], merged);
            }
            if best < pairs.len() {
                pairs[best] = self.pair(merged, symbols[best + 1]);
            }
        }
        symbols
    }

    /// (rank, merged id) of a pair; rank `u32::MAX` when it is not a merge.
    fn pair(&self, left: u32, right: u32) -> (u32, u32) {
        let key = (u64::from(left) << 32) | u64::from(right);
        self.merges.get(&key).copied().unwrap_or((u32::MAX, 0))
    }
}

/// `add_prefix_space` of a ByteLevel pre-tokenizer with its regex, alone; `None` otherwise.
fn byte_level_pre_tokenizer(tokenizer: &Tokenizer) -> Option<bool> {
    let pre = serde_json::to_value(tokenizer.get_pre_tokenizer()?).ok()?;
    let flag = |key: &str| pre.get(key).and_then(Value::as_bool);
    (pre.get("type")?.as_str()? == "ByteLevel" && flag("use_regex") == Some(true))
        .then(|| flag("add_prefix_space"))?
}

/// BPE without dropout, subword prefix or end-of-word suffix.
fn plain_bpe(model: &Value) -> bool {
    let null_or = |key: &str, ok: &dyn Fn(&Value) -> bool| {
        model.get(key).is_none_or(|v| v.is_null() || ok(v))
    };
    model.get("type").and_then(Value::as_str) == Some("BPE")
        && null_or("dropout", &|v| v.as_f64() == Some(0.0))
        && null_or("continuing_subword_prefix", &|v| v.as_str() == Some(""))
        && null_or("end_of_word_suffix", &|v| v.as_str() == Some(""))
}

/// The merges as serialised (in rank order) -> (rank, id of the merged token), as
/// tokenizers builds its `MergeMap`.
fn merge_map(merges: &[Value], vocab: &FxMap<u32>) -> Option<PairMap> {
    let mut map = PairMap::with_capacity_and_hasher(merges.len(), BuildHasherDefault::default());
    for (rank, merge) in merges.iter().enumerate() {
        let (left, right) = match merge {
            Value::Array(pair) => (pair.first()?.as_str()?, pair.get(1)?.as_str()?),
            Value::String(s) => s.split_once(' ')?,
            _ => return None,
        };
        let merged = *vocab.get(format!("{left}{right}").as_str())?;
        let key = (u64::from(*vocab.get(left)?) << 32) | u64::from(*vocab.get(right)?);
        map.insert(key, (u32::try_from(rank).ok()?, merged));
    }
    Some(map)
}

/// GPT-2's printable character for a byte (pre_tokenizers/byte_level.rs, `bytes_char`):
/// `!`..`~`, `¡`..`¬` and `®`..`ÿ` stand for themselves, the other bytes for U+0100 on in
/// byte order.
pub(super) fn byte_char(b: u8) -> char {
    let kept = |x: u8| matches!(x, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
    if kept(b) {
        char::from(b)
    } else {
        let before = (0..b).filter(|&x| !kept(x)).count() as u32;
        char::from_u32(256 + before).expect("below U+0200")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Space,
    Other,
}

fn class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Digit,
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => Class::Space,
        _ => Class::Other,
    }
}

/// The end of the GPT-2 regex's match at `start` in ASCII `text` (see the module comment):
/// its alternatives tried in order, as onig does.
pub(super) fn pre_token_end(text: &[u8], start: usize) -> usize {
    let run =
        |from: usize, c: Class| from + text[from..].iter().take_while(|&&b| class(b) == c).count();
    if let Some(len) = contraction(&text[start..]) {
        return start + len;
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the space is taken only if a run follows.
    let body = start + usize::from(text[start] == b' ');
    for c in [Class::Letter, Class::Digit, Class::Other] {
        for from in [body, start] {
            if text.get(from).is_some_and(|&b| class(b) == c) {
                return run(from, c);
            }
        }
    }
    // `\s+(?!\S)`: the whole run at the end of the text, else all of it but its last
    // character; `\s+`: a single whitespace character before a non-space.
    let end = run(start, Class::Space);
    if end == text.len() || end - start == 1 {
        end
    } else {
        end - 1
    }
}

/// The length of `'s|'t|'re|'ve|'m|'ll|'d` at the start of `text`, if one is there.
fn contraction(text: &[u8]) -> Option<usize> {
    match text {
        [b'\'', b's' | b't' | b'm' | b'd', ..] => Some(2),
        [b'\'', b'r', b'e', ..] | [b'\'', b'v', b'e', ..] | [b'\'', b'l', b'l', ..] => Some(3),
        _ => None,
    }
}

#[cfg(test)]
#[path = "byte_bpe_tests.rs"]
mod tests;
