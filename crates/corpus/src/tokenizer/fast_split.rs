//! The fast path of byte-level BPE (RoBERTa, ModernBERT) and Unigram (XLM-R, CamemBERT,
//! SentencePiece) tokenizers: the text is cut into segments at spaces where the `tokenizers`
//! pipeline is provably independent on both sides of the cut, each segment is encoded by the
//! library itself (or, for a segment of ASCII, by the native model of byte_bpe.rs or
//! unigram_viterbi.rs, differential-tested to give the library's tokens), and a segment seen
//! before is looked up in a cache (segment_cache.rs). A segment's tokens are what
//! `Tokenizer::encode(segment)` gives, and a document's are the concatenation of its
//! segments', which is `encode(document)` whenever the cuts obey the rules below. What the
//! pipeline would spend per document (`NormalizedString` alignments, the onig regex, the
//! `Encoding`) is spent once per distinct segment instead.
//!
//! A cut is made before a space at byte `q` when `text[q - 1]` is a printable ASCII
//! character `c` (not a space) that the normaliser maps to printable ASCII without spaces,
//! `text[q - 2]` (if any) and `text[q + 1]` (if any) are ASCII. Why the pipeline then splits
//! at `q`, stage by stage (tokenizers 0.22):
//!
//! - Added tokens (tokenizer/added_vocabulary.rs, leftmost-longest matches on the raw text,
//!   then on the normalised pieces): an occurrence spanning the cut would contain the
//!   space, so a document holding the content of a token with whitespace (ModernBERT-base's
//!   runs of spaces and tabs) goes to the library whole; without one, no such occurrence
//!   exists, as these tokens are matched on the raw text or are runs of ASCII whitespace
//!   under a normaliser that neither makes nor moves ASCII whitespace (NFC, NFD, Lowercase);
//!   the fast path is declined for other tokens matched after a normaliser, which could make
//!   their content from other characters.
//!   `lstrip` cannot reach past `c`, a non-space; `single_word` sees a non-word neighbour
//!   (the space, or the segment's end) either way. `rstrip` would swallow the space after
//!   the cut, so a document holding such a token's content goes to the library whole too.
//! - Normalisers: the accepted ones work character by character (Nmt, Lowercase), per
//!   grapheme (Precompiled, normalizers/precompiled.rs: a grapheme whose 5 first bytes or
//!   fewer match its trie is replaced whole) or are Unicode normal forms, for which a space
//!   before ASCII is a normalisation boundary (a starter that never composes). The graphemes
//!   around the cut are `c` alone and the space alone, given the ASCII neighbours. So
//!   `N(a + b) = N(a) + N(b)` where `N(a)` ends with `N(c)` (probed: printable, no space)
//!   and `N(b)` starts with `N(" ") = " "` (probed). A `Replace` of runs of spaces
//!   (`" {2,}"`, SentencePiece's) cannot then match across the cut.
//! - Pre-tokenizers: ByteLevel's GPT-2 regex (pre_tokenizers/byte_level.rs) has no
//!   look-behind; a match containing `c` is one of `'s ...` or ` ?\p{L}+`-like, which cannot
//!   go on into a space, and its only look-ahead, `\s+(?!\S)`, never passes `c`: the scan has
//!   a match boundary at `q` and restarts there as it would on the segment alone. The prefix
//!   space of `add_prefix_space` is only added to a piece not starting with a space.
//!   Metaspace (pre_tokenizers/metaspace.rs) turns the space into its replacement, splits
//!   before each replacement (`MergedWithNext`) and prepends one only to a piece not starting
//!   with one (`prepend_scheme = "first"`, which looks at the piece's offset in the whole
//!   text, declines the fast path). WhitespaceSplit removes the space. Later pre-tokenizers
//!   of a Sequence act on these pieces alone.
//! - The model (BPE without dropout, Unigram) tokenizes each pre-token alone; word ids are
//!   the pre-tokens' indices, so the segment's first token starts a word in both.
//! - Truncation and padding would act on the whole text: set, they decline the fast path;
//!   the post-processor adds nothing without special tokens (its offset trimming is not
//!   seen by ids and word starts).
//!
//! Anything else (another normaliser, `use_regex = false`, Metaspace without `split`, a
//! BPE with dropout, added tokens with whitespace or `rstrip` matched after a normaliser,
//! beyond the runs of ASCII whitespace above) declines the fast path: the tokenizer then
//! always goes through the library, as before. The differential tests beside this file,
//! the ignored PubMed CDR test and the `fast_tokenizer` fuzz target compare both paths.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tokenizers::{NormalizedString, Normalizer, Tokenizer};

use super::byte_bpe::ByteLevelBpe;
use super::segment_cache::{START_BIT, SegmentCache};
use super::unigram_viterbi::UnigramViterbi;

/// Segments longer than this are encoded without being cached (text without spaces, such as
/// CJK or long URLs, would otherwise fill the cache with one-off keys).
const MAX_CACHED_BYTES: usize = 128;

/// Default bound of the segment cache (the resident memory it may take).
pub(super) const CACHE_BUDGET: usize = 32 << 20;

/// How often the split fast path used the library, since the tokenizer was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastPathStats {
    /// Documents encoded.
    pub documents: u64,
    /// Documents encoded by the library whole (they hold the content of an added token with
    /// whitespace or `rstrip`).
    pub library_documents: u64,
    /// Segments of the other documents.
    pub segments: u64,
    /// Segments encoded by the library (not yet cached, or too long to cache, and not
    /// taken by the native byte-level BPE).
    pub library_segments: u64,
    /// Segments encoded by the native byte-level BPE (tokenizer/byte_bpe.rs); the rest
    /// came from the cache.
    pub native_segments: u64,
}

#[derive(Default)]
struct Counters {
    documents: AtomicU64,
    library_documents: AtomicU64,
    segments: AtomicU64,
    library_segments: AtomicU64,
    native_segments: AtomicU64,
}

impl Counters {
    fn add(&self, s: &FastPathStats) {
        for (counter, n) in [
            (&self.documents, s.documents),
            (&self.library_documents, s.library_documents),
            (&self.segments, s.segments),
            (&self.library_segments, s.library_segments),
            (&self.native_segments, s.native_segments),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn get(&self) -> FastPathStats {
        FastPathStats {
            documents: self.documents.load(Ordering::Relaxed),
            library_documents: self.library_documents.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            library_segments: self.library_segments.load(Ordering::Relaxed),
            native_segments: self.native_segments.load(Ordering::Relaxed),
        }
    }
}

/// The split fast path of one tokenizer. Clones share the cache and the counters.
#[derive(Clone)]
pub struct FastSplit {
    /// `cut_after[b]`: a space after the ASCII byte `b` may be a cut.
    cut_after: [bool; 128],
    /// Contents of added tokens with whitespace or `rstrip`: a document holding one goes
    /// to the library whole.
    whole_document: Vec<String>,
    /// The model computed natively for the ASCII segments the cache misses; built at the
    /// first miss (reading the vocabulary takes a tenth of a second or more).
    native: Arc<OnceLock<Option<Native>>>,
    cache: Arc<SegmentCache>,
    counters: Arc<Counters>,
}

impl FastSplit {
    /// The fast path of `tokenizer` when its set-up is one the module comment proves exact;
    /// `None` otherwise (the library is then always used).
    pub fn new(tokenizer: &Tokenizer) -> Option<Self> {
        Self::with_budget(tokenizer, CACHE_BUDGET)
    }

    /// [`FastSplit::new`] with a cache of `budget` bytes.
    pub(super) fn with_budget(tokenizer: &Tokenizer, budget: usize) -> Option<Self> {
        let supported = supported_model(tokenizer)
            && tokenizer.get_truncation().is_none()
            && tokenizer.get_padding().is_none()
            && tokenizer.get_normalizer().is_none_or(supported_normalizer)
            && tokenizer
                .get_pre_tokenizer()
                .is_some_and(supported_pre_tokenizer)
            && tokenizer
                .get_post_processor()
                .is_none_or(supported_post_processor)
            && tokenizer.get_vocab_size(true) < START_BIT as usize;
        if !supported {
            return None;
        }
        let whole_document = whole_document_contents(tokenizer)?;
        let cut_after = cut_table(tokenizer)?;
        Some(Self {
            cut_after,
            whole_document,
            native: Arc::default(),
            cache: Arc::new(SegmentCache::new(budget)),
            counters: Arc::default(),
        })
    }

    /// The counts since this tokenizer was loaded.
    pub fn stats(&self) -> FastPathStats {
        self.counters.get()
    }

    /// Tokenizes `text`, appending ids and word starts; `library` appends those of
    /// `Tokenizer::encode(piece)` (see [`super::word_starts`]); `tokenizer` is the one this
    /// fast path was made for.
    pub fn encode_words<E>(
        &self,
        tokenizer: &Tokenizer,
        text: &str,
        ids: &mut Vec<u32>,
        starts: &mut Vec<bool>,
        mut library: impl FnMut(&str, &mut Vec<u32>, &mut Vec<bool>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut counts = FastPathStats {
            documents: 1,
            ..FastPathStats::default()
        };
        let result = if self
            .whole_document
            .iter()
            .any(|t| text.contains(t.as_str()))
        {
            counts.library_documents = 1;
            library(text, ids, starts)
        } else {
            let mut start = 0;
            let mut result = Ok(());
            for cut in cuts(text.as_bytes(), &self.cut_after) {
                let segment = &text[start..cut];
                result = self.segment(tokenizer, segment, ids, starts, &mut library, &mut counts);
                if result.is_err() {
                    break;
                }
                start = cut;
            }
            result.and_then(|()| {
                let segment = &text[start..];
                self.segment(tokenizer, segment, ids, starts, &mut library, &mut counts)
            })
        };
        self.counters.add(&counts);
        result
    }

    /// One segment: from the cache, else from the library (and then cached).
    fn segment<E>(
        &self,
        tokenizer: &Tokenizer,
        segment: &str,
        ids: &mut Vec<u32>,
        starts: &mut Vec<bool>,
        library: &mut impl FnMut(&str, &mut Vec<u32>, &mut Vec<bool>) -> Result<(), E>,
        counts: &mut FastPathStats,
    ) -> Result<(), E> {
        counts.segments += 1;
        let cacheable = !segment.is_empty() && segment.len() <= MAX_CACHED_BYTES;
        if cacheable && self.cache.extend_from(segment, ids, starts) {
            return Ok(());
        }
        let first = ids.len();
        let native = self.native.get_or_init(|| Native::new(tokenizer));
        if native
            .as_ref()
            .is_some_and(|native| native.encode(segment, ids, starts))
        {
            counts.native_segments += 1;
        } else {
            counts.library_segments += 1;
            library(segment, ids, starts)?;
        }
        if cacheable && ids.len() == starts.len() {
            self.cache.insert(segment, &ids[first..], &starts[first..]);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn cached_segments(&self) -> usize {
        self.cache.len()
    }
}

/// A model computed natively on ASCII segments.
enum Native {
    Bpe(Box<ByteLevelBpe>),
    Unigram(Box<UnigramViterbi>),
}

impl Native {
    fn new(tokenizer: &Tokenizer) -> Option<Self> {
        match super::family::model_settings(tokenizer)
            .get("type")
            .and_then(Value::as_str)
        {
            Some("BPE") => ByteLevelBpe::new(tokenizer).map(|m| Self::Bpe(Box::new(m))),
            Some("Unigram") => UnigramViterbi::new(tokenizer).map(|m| Self::Unigram(Box::new(m))),
            _ => None,
        }
    }

    /// See [`ByteLevelBpe::encode`].
    fn encode(&self, segment: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>) -> bool {
        match self {
            Self::Bpe(bpe) => bpe.encode(segment, ids, starts),
            Self::Unigram(unigram) => unigram.encode(segment, ids, starts),
        }
    }
}

/// The cut positions of `bytes` (see the module comment), in order.
fn cuts<'a>(bytes: &'a [u8], cut_after: &'a [bool; 128]) -> impl Iterator<Item = usize> + 'a {
    let ascii = |i: usize| bytes.get(i).is_none_or(u8::is_ascii);
    (1..bytes.len()).filter(move |&q| {
        bytes[q] == b' '
            && cut_after.get(usize::from(bytes[q - 1])) == Some(&true)
            && (q < 2 || ascii(q - 2))
            && ascii(q + 1)
    })
}

fn kind(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// BPE without dropout (its merges are then a function of the word), or Unigram.
fn supported_model(tokenizer: &Tokenizer) -> bool {
    let model = super::family::model_settings(tokenizer);
    match kind(&model) {
        "BPE" => model
            .get("dropout")
            .is_none_or(|d| d.is_null() || d.as_f64() == Some(0.0)),
        "Unigram" => true,
        _ => false,
    }
}

/// Character- or grapheme-local normalisers, Unicode normal forms and SentencePiece's
/// collapsing of space runs, alone or in a Sequence.
fn supported_normalizer(normalizer: &impl serde::Serialize) -> bool {
    serde_json::to_value(normalizer).is_ok_and(|v| normalizer_value_ok(&v))
}

fn normalizer_value_ok(v: &Value) -> bool {
    match kind(v) {
        "NFC" | "NFD" | "NFKC" | "NFKD" | "Nmt" | "Lowercase" | "Precompiled" => true,
        "Replace" => {
            v.pointer("/pattern/Regex").and_then(Value::as_str) == Some(" {2,}")
                && v.get("content").and_then(Value::as_str).is_some_and(|c| {
                    !c.is_empty() && c.chars().all(|c| c == ' ' || c == '\u{2581}')
                })
        }
        "Sequence" => v
            .get("normalizers")
            .and_then(Value::as_array)
            .is_some_and(|all| all.iter().all(normalizer_value_ok)),
        _ => false,
    }
}

/// ByteLevel with its regex, Metaspace that splits, or WhitespaceSplit first; later members
/// of a Sequence may also be ByteLevel without the regex or Metaspace without `split`.
fn supported_pre_tokenizer(pre: &impl serde::Serialize) -> bool {
    let Ok(v) = serde_json::to_value(pre) else {
        return false;
    };
    if kind(&v) != "Sequence" {
        return pre_tokenizer_ok(&v, true);
    }
    let Some(all) = v.get("pretokenizers").and_then(Value::as_array) else {
        return false;
    };
    !all.is_empty()
        && all
            .iter()
            .enumerate()
            .all(|(i, p)| pre_tokenizer_ok(p, i == 0))
}

/// One pre-tokenizer; `first` asks that it split at every cut itself.
fn pre_tokenizer_ok(v: &Value, first: bool) -> bool {
    let flag = |key: &str| v.get(key).and_then(Value::as_bool);
    match kind(v) {
        "ByteLevel" => flag("use_regex") == Some(true) || !first,
        "Metaspace" => {
            let scheme = v.get("prepend_scheme").and_then(Value::as_str);
            matches!(scheme, Some("always" | "never")) && (flag("split") == Some(true) || !first)
        }
        "WhitespaceSplit" => true,
        _ => false,
    }
}

/// Post-processors that add nothing to an encoding without special tokens.
fn supported_post_processor(post: &impl serde::Serialize) -> bool {
    fn ok(v: &Value) -> bool {
        match kind(v) {
            "ByteLevel" | "RobertaProcessing" | "BertProcessing" | "TemplateProcessing" => true,
            "Sequence" => v
                .get("processors")
                .and_then(Value::as_array)
                .is_some_and(|all| all.iter().all(ok)),
            _ => false,
        }
    }
    serde_json::to_value(post).is_ok_and(|v| ok(&v))
}

/// The contents of the added tokens with whitespace or `rstrip` (a document holding one goes
/// to the library whole); `None` (no fast path) when an added token is empty, or when one of
/// those is matched after a normaliser that could make its content from other characters
/// (NFC alone maps U+037E to `;` and U+212A to `K`; NFKC maps U+00A0 to a space), so that
/// its occurrences could not be found in the raw text.
fn whole_document_contents(tokenizer: &Tokenizer) -> Option<Vec<String>> {
    let mut contents = Vec::new();
    for token in tokenizer.get_added_tokens_decoder().values() {
        if token.content.is_empty() {
            return None;
        }
        if token.rstrip || token.content.chars().any(char::is_whitespace) {
            if token.normalized && !found_in_raw_text(tokenizer, &token.content) {
                return None;
            }
            contents.push(token.content.clone());
        }
    }
    // A document holding a content holds every content inside it: checking the smallest is
    // enough (ModernBERT-base's 2- to 24-space runs reduce to two spaces), and this check
    // runs on every document.
    let all = contents.clone();
    contents.retain(|c| {
        !all.iter()
            .any(|other| other != c && c.contains(other.as_str()))
    });
    contents.sort_unstable();
    contents.dedup();
    Some(contents)
}

/// Whether `content`, matched after the normaliser, occurs in the normalised text exactly
/// where it occurs in the raw text: with no normaliser, or for a run of ASCII whitespace
/// (ModernBERT-base's added tokens, under its NFC) when the normaliser is NFC, NFD or
/// Lowercase. These map ASCII whitespace to itself, make it from no other character (no
/// canonical decomposition holds one) and never compose it with a neighbour.
fn found_in_raw_text(tokenizer: &Tokenizer, content: &str) -> bool {
    fn keeps_ascii_whitespace(v: &Value) -> bool {
        match kind(v) {
            "NFC" | "NFD" | "Lowercase" => true,
            "Sequence" => v
                .get("normalizers")
                .and_then(Value::as_array)
                .is_some_and(|all| all.iter().all(keeps_ascii_whitespace)),
            _ => false,
        }
    }
    let Some(normalizer) = tokenizer.get_normalizer() else {
        return true;
    };
    content.bytes().all(|b| b.is_ascii_whitespace())
        && serde_json::to_value(normalizer).is_ok_and(|v| keeps_ascii_whitespace(&v))
}

/// The normaliser's output for `text` alone.
fn normalize(tokenizer: &Tokenizer, text: &str) -> Option<String> {
    let mut n = NormalizedString::from(text);
    if let Some(normalizer) = tokenizer.get_normalizer() {
        normalizer.normalize(&mut n).ok()?;
    }
    Some(n.get().to_string())
}

/// `cut_after[c]` for the printable ASCII characters the normaliser maps to printable ASCII
/// without spaces; `None` when it does not keep a space a space.
fn cut_table(tokenizer: &Tokenizer) -> Option<[bool; 128]> {
    if normalize(tokenizer, " ")? != " " {
        return None;
    }
    let mut table = [false; 128];
    for b in 0x21..0x7f_u8 {
        let n = normalize(tokenizer, &char::from(b).to_string())?;
        table[usize::from(b)] = !n.is_empty() && n.bytes().all(|x| (0x21..0x7f).contains(&x));
    }
    Some(table)
}

#[cfg(test)]
#[path = "fast_split_tests.rs"]
pub(super) mod tests;
