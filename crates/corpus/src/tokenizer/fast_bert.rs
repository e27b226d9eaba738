//! A fast path for BERT WordPiece tokenizers (BertNormalizer + BertPreTokenizer + WordPiece,
//! the bert-base / PubMedBERT / `vocab train` set-up) that gives exactly the ids and word
//! starts of Hugging Face tokenizers' `encode(text, add_special_tokens=False)`.
//!
//! Why it is exact: BertPreTokenizer splits on whitespace, and the BertNormalizer maps
//! characters one at a time (clean_text drops controls and turns whitespace into ' ', CJK
//! characters are padded with spaces, accents stripped, lowercased char by char; see
//! tokenizers' normalizers/bert.rs), so the text can be cut at ASCII ' ', '\t', '\n', '\r'
//! and each piece tokenized on its own. A piece that is pure ASCII and holds no added token
//! is tokenized here: control bytes dropped, ASCII lowercase, every ASCII punctuation byte a
//! word of its own (`is_bert_punc`), then WordPiece's greedy longest-match-first
//! (models/wordpiece/mod.rs `tokenize`, `[UNK]` for a word over `max_input_chars_per_word`
//! or with no match). Any other piece goes through the full tokenizer. The differential
//! tests below (and the ignored PubMed test) compare both paths token for token.

use serde_json::Value;
use tokenizers::Tokenizer;

use super::fx;

type FxMap = fx::FxMap<u32>;

/// The fast tokenizer of one BERT WordPiece set-up.
#[derive(Clone)]
pub struct FastBert {
    lowercase: bool,
    /// Every vocabulary token (a word's first piece).
    initial: FxMap,
    /// Tokens that start with the continuation prefix, without it.
    continuation: FxMap,
    unk: u32,
    max_chars: usize,
    /// Longest key of `initial` / `continuation` in bytes: longer candidates cannot match.
    max_initial: usize,
    max_continuation: usize,
    /// Contents of added tokens: a piece holding one goes through the full tokenizer.
    added: Vec<String>,
}

fn is_split_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl FastBert {
    /// The fast path of `tokenizer`, when it is exactly a BERT WordPiece set-up this module
    /// reproduces; `None` otherwise (the full tokenizer is then always used).
    pub fn new(tokenizer: &Tokenizer) -> Option<Self> {
        let normalizer = serde_json::to_value(tokenizer.get_normalizer()?).ok()?;
        let pre = serde_json::to_value(tokenizer.get_pre_tokenizer()?).ok()?;
        let model = super::family::model_settings(tokenizer);
        let bert_normalizer = normalizer.get("type")? == "BertNormalizer"
            && normalizer.get("clean_text")? == &Value::Bool(true)
            && normalizer.get("handle_chinese_chars")? == &Value::Bool(true);
        if !bert_normalizer
            || pre.get("type")? != "BertPreTokenizer"
            || model.get("type")? != "WordPiece"
        {
            return None;
        }
        let lowercase = normalizer.get("lowercase")?.as_bool()?;
        let prefix = model
            .get("continuing_subword_prefix")?
            .as_str()?
            .to_string();
        let unk_token = model.get("unk_token")?.as_str()?;
        let max_chars = usize::try_from(model.get("max_input_chars_per_word")?.as_u64()?).ok()?;
        let mut added = Vec::new();
        for token in tokenizer.get_added_tokens_decoder().values() {
            // Non-special or normalised added tokens match after normalisation, and tokens
            // with whitespace span pieces: leave such tokenizers to the full path.
            if !token.special
                || token.normalized
                || token.single_word
                || token.lstrip
                || token.rstrip
                || token.content.is_empty()
                || token.content.chars().any(char::is_whitespace)
            {
                return None;
            }
            added.push(token.content.clone());
        }
        let vocab = tokenizer.get_vocab(false);
        let unk = *vocab.get(unk_token)?;
        let mut initial = FxMap::default();
        let mut continuation = FxMap::default();
        for (token, &id) in &vocab {
            if let Some(rest) = token.strip_prefix(prefix.as_str())
                && !prefix.is_empty()
            {
                continuation.insert(rest.into(), id);
            }
            initial.insert(token.as_str().into(), id);
        }
        let longest = |m: &FxMap| m.keys().map(|k| k.len()).max().unwrap_or(0);
        Some(Self {
            lowercase,
            max_initial: longest(&initial),
            max_continuation: longest(&continuation),
            initial,
            continuation,
            unk,
            max_chars,
            added,
        })
    }

    /// Tokenizes `text`, appending ids and word starts; `slow` tokenizes a piece the fast
    /// path does not handle (ids and word starts of `encode(piece)`).
    pub fn encode_words<E>(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        starts: &mut Vec<bool>,
        mut slow: impl FnMut(&str, &mut Vec<u32>, &mut Vec<bool>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut word = Vec::with_capacity(64);
        for piece in text.split(|c: char| c.is_ascii() && is_split_byte(c as u8)) {
            if piece.is_empty() {
                continue;
            }
            if !piece.is_ascii() || self.added.iter().any(|a| piece.contains(a.as_str())) {
                slow(piece, ids, starts)?;
                continue;
            }
            word.clear();
            for &b in piece.as_bytes() {
                if b < 0x20 || b == 0x7f {
                    continue; // clean_text drops control characters
                }
                if b.is_ascii_punctuation() {
                    self.word_piece(&word, ids, starts);
                    word.clear();
                    self.word_piece(&[b], ids, starts);
                } else {
                    word.push(if self.lowercase {
                        b.to_ascii_lowercase()
                    } else {
                        b
                    });
                }
            }
            self.word_piece(&word, ids, starts);
        }
        Ok(())
    }

    /// WordPiece of one ASCII word.
    fn word_piece(&self, word: &[u8], ids: &mut Vec<u32>, starts: &mut Vec<bool>) {
        if word.is_empty() {
            return;
        }
        // ASCII bytes are chars.
        let word = std::str::from_utf8(word).expect("ASCII");
        if word.len() > self.max_chars {
            ids.push(self.unk);
            starts.push(true);
            return;
        }
        let first = ids.len();
        let mut start = 0;
        while start < word.len() {
            let (map, longest) = if start == 0 {
                (&self.initial, self.max_initial)
            } else {
                (&self.continuation, self.max_continuation)
            };
            let found = (start + 1..=word.len().min(start + longest))
                .rev()
                .find_map(|end| map.get(&word[start..end]).map(|&id| (end, id)));
            match found {
                Some((end, id)) => {
                    ids.push(id);
                    starts.push(start == 0);
                    start = end;
                }
                None => {
                    ids.truncate(first);
                    starts.truncate(first);
                    ids.push(self.unk);
                    starts.push(true);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, write_tiny_vocab};
    use crate::tokenizer::bert_wordpiece_tokenizer;

    fn full(t: &Tokenizer, text: &str) -> (Vec<u32>, Vec<bool>) {
        let e = t.encode(text, false).unwrap();
        (
            e.get_ids().to_vec(),
            crate::tokenizer::word_starts(e.get_word_ids()),
        )
    }

    fn fast(f: &FastBert, t: &Tokenizer, text: &str) -> (Vec<u32>, Vec<bool>) {
        let (mut ids, mut starts) = (Vec::new(), Vec::new());
        f.encode_words(
            text,
            &mut ids,
            &mut starts,
            |p, ids, starts| -> Result<(), ()> {
                let (i, s) = full(t, p);
                ids.extend(i);
                starts.extend(s);
                Ok(())
            },
        )
        .unwrap();
        (ids, starts)
    }

    /// Texts that stress every rule: case, punctuation, controls, whitespace kinds, long
    /// words, unknown pieces, accents, CJK, special tokens, non-ASCII whitespace.
    pub(crate) const CASES: &[&str] = &[
        "",
        "   ",
        "The CAT sat.",
        "unaffable don't, (cats)!",
        "a\tb\nc\r\nd  e",
        "x\u{1}y\u{7f}z \u{0}w",
        "tabs\x0bvertical\x0cfeed",
        "Café naïve — Über 東京都 β-blocker 10µg/kg",
        "the [MASK] sat on [CLS]the[SEP] mat",
        "[MASK]",
        "word\u{a0}nbsp and\u{2028}line\u{3000}ideographic",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b",
        "#hash ##ing @at $dollar ^caret `tick| ~tilde= <lt>",
        "Mixed ünïcode-and-ascii in one piece: x²+y²",
        "\u{301}accent after space, and e\u{301} combining",
        "ΣΑΣ final sigma Σ",
        "İstanbul ß ǅ",
        "emoji 😀 and \u{fffd} replacement",
    ];

    #[test]
    fn fast_path_equals_the_full_tokenizer() {
        let dir = TempDir::new("fast-bert");
        let vocab = write_tiny_vocab(dir.path());
        for lowercase in [true, false] {
            let t = bert_wordpiece_tokenizer(&vocab, lowercase).unwrap();
            let f = FastBert::new(&t).expect("a BERT set-up");
            for text in CASES {
                assert_eq!(
                    fast(&f, &t, text),
                    full(&t, text),
                    "{text:?} lowercase {lowercase}"
                );
            }
            // Pseudo-random ASCII soup with every byte class.
            let alphabet: Vec<char> = "abcdeXYZ019 .,;'-#[]\t\n\r\u{1}\u{7f}MASKCLS"
                .chars()
                .collect();
            let mut x: u64 = 42;
            for _ in 0..500 {
                let len = (mlm_seeds::splitmix64(x) % 80) as usize;
                let text: String = (0..len)
                    .map(|_| {
                        x = mlm_seeds::splitmix64(x);
                        alphabet[(x % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(fast(&f, &t, &text), full(&t, &text), "{text:?}");
            }
        }
    }

    #[test]
    fn other_set_ups_take_the_full_path() {
        let dir = TempDir::new("fast-bert-other");
        let vocab = write_tiny_vocab(dir.path());
        let mut t = bert_wordpiece_tokenizer(&vocab, true).unwrap();
        assert!(FastBert::new(&t).is_some());
        t.add_tokens(&[tokenizers::AddedToken::from("catsat", false)]);
        assert!(FastBert::new(&t).is_none(), "a non-special added token");
        let mut t = bert_wordpiece_tokenizer(&vocab, true).unwrap();
        t.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
        assert!(FastBert::new(&t).is_none());
    }
}
