//! What the native fast paths (byte_bpe.rs, unigram_viterbi.rs) do before their model, on a
//! segment of ASCII text: the normaliser, probed once byte by byte through the library's
//! own, and the added tokens, whose content a segment must not hold (it then goes to the
//! library, so that no added token is ever matched natively).
//!
//! Normalisers taken: Unicode normal forms (identity on ASCII), `Lowercase`, `Nmt` and
//! `Precompiled` (which act on ASCII character by character, as each ASCII character is a
//! grapheme of its own, less CR LF: `\r` is never taken), alone or in a Sequence, and
//! SentencePiece's `Replace` of runs of spaces by one. A byte is taken when its image is
//! one taken byte; an image that is a space only from a space, unless the `Replace` is the
//! last member of the Sequence (SentencePiece's layout: Nmt maps tabs and line feeds to
//! spaces before the runs are collapsed), so that collapsing the images' runs of spaces is
//! what the Sequence does.

use std::collections::HashSet;

use serde_json::Value;
use tokenizers::{NormalizedString, Normalizer, Tokenizer};

/// Marks a byte the native path does not take in [`AsciiFront::normal`].
const DECLINED: u8 = 0;

/// The normaliser and added tokens of one tokenizer, on ASCII.
pub(super) struct AsciiFront {
    /// The normalised image of each ASCII byte taken, [`DECLINED`] for the others.
    normal: [u8; 128],
    /// Runs of spaces become one space (SentencePiece's `Replace`).
    collapse_spaces: bool,
    /// ASCII contents of the added tokens, raw and normalised.
    added: Vec<Box<[u8]>>,
    /// `added_first[b]`: some content in `added` starts with `b`.
    added_first: [bool; 128],
}

impl AsciiFront {
    /// The front of `tokenizer`, taking the bytes `taken` at most; `None` for a normaliser
    /// outside the module comment's, or an empty added token.
    pub fn new(tokenizer: &Tokenizer, taken: impl Iterator<Item = u8>) -> Option<Self> {
        if let Some(n) = tokenizer.get_normalizer()
            && !serde_json::to_value(n).is_ok_and(|v| char_local(&v))
        {
            return None;
        }
        let collapse_spaces = match normalize(tokenizer, "  ")?.as_str() {
            " " => true,
            "  " => false,
            _ => return None,
        };
        // A byte may become a space when the collapsing runs after every character map.
        let spaces_from_others = !collapse_spaces || replace_is_last(tokenizer);
        let taken: Vec<u8> = taken.filter(|&b| b != b'\r' && b.is_ascii()).collect();
        let mut normal = [DECLINED; 128];
        for &b in &taken {
            let image = normalize(tokenizer, &char::from(b).to_string())?;
            if let &[n] = image.as_bytes()
                && taken.contains(&n)
                && (n != b' ' || b == b' ' || spaces_from_others)
            {
                normal[usize::from(b)] = n;
            }
        }
        if normal[usize::from(b' ')] != b' ' {
            return None;
        }
        let added = added_contents(tokenizer)?;
        let mut added_first = [false; 128];
        for content in &added {
            added_first[usize::from(content[0])] = true;
        }
        Some(Self {
            normal,
            collapse_spaces,
            added,
            added_first,
        })
    }

    /// The normalised bytes of `segment` into `text`; false (leave it to the library) for an
    /// empty segment, a byte not taken, or an added token's content.
    pub fn normalize_into(&self, segment: &str, text: &mut Vec<u8>) -> bool {
        text.clear();
        for &b in segment.as_bytes() {
            match self.normal.get(usize::from(b)) {
                Some(&n) if n != DECLINED => {
                    if !(self.collapse_spaces && n == b' ' && text.last() == Some(&b' ')) {
                        text.push(n);
                    }
                }
                _ => return false,
            }
        }
        !text.is_empty() && !self.holds_added_token(segment.as_bytes(), text)
    }

    fn holds_added_token(&self, raw: &[u8], normalized: &[u8]) -> bool {
        let flagged = |text: &[u8]| {
            text.iter()
                .any(|&b| self.added_first[usize::from(b & 0x7f)])
        };
        if !flagged(raw) && !flagged(normalized) {
            return false;
        }
        let holds = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        self.added
            .iter()
            .any(|a| holds(raw, a) || holds(normalized, a))
    }
}

/// Whether the normaliser is a Sequence whose only `Replace` is its last member.
fn replace_is_last(tokenizer: &Tokenizer) -> bool {
    let is_replace = |v: &Value| v.get("type").and_then(Value::as_str) == Some("Replace");
    let Some(v) = tokenizer
        .get_normalizer()
        .and_then(|n| serde_json::to_value(n).ok())
    else {
        return false;
    };
    let Some([before @ .., last]) = v
        .get("normalizers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    else {
        return false;
    };
    is_replace(last) && !before.iter().any(is_replace)
}

fn char_local(v: &Value) -> bool {
    match v.get("type").and_then(Value::as_str) {
        Some("NFC" | "NFD" | "NFKC" | "NFKD" | "Lowercase" | "Nmt" | "Precompiled") => true,
        Some("Replace") => {
            v.pointer("/pattern/Regex").and_then(Value::as_str) == Some(" {2,}")
                && v.get("content").and_then(Value::as_str) == Some(" ")
        }
        Some("Sequence") => v
            .get("normalizers")
            .and_then(Value::as_array)
            .is_some_and(|all| all.iter().all(char_local)),
        _ => false,
    }
}

/// The normaliser's output for `text` alone.
pub(super) fn normalize(tokenizer: &Tokenizer, text: &str) -> Option<String> {
    let mut n = NormalizedString::from(text);
    if let Some(normalizer) = tokenizer.get_normalizer() {
        normalizer.normalize(&mut n).ok()?;
    }
    Some(n.get().to_string())
}

/// The ASCII contents of the added tokens, as written and normalised; `None` for an empty one.
fn added_contents(tokenizer: &Tokenizer) -> Option<Vec<Box<[u8]>>> {
    let mut contents = HashSet::new();
    for token in tokenizer.get_added_tokens_decoder().values() {
        if token.content.is_empty() {
            return None;
        }
        for form in [
            Some(token.content.clone()),
            normalize(tokenizer, &token.content),
        ] {
            if let Some(form) = form.filter(|f| !f.is_empty() && f.is_ascii()) {
                contents.insert(form.into_bytes().into_boxed_slice());
            }
        }
    }
    let mut contents: Vec<_> = contents.into_iter().collect();
    contents.sort_unstable();
    Some(contents)
}
