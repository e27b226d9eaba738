//! WordPiece training that gives the same vocabulary on every run.
//!
//! tokenizers' `WordPieceTrainer` is its `BpeTrainer` with the `##` continuation prefix: the
//! first character of a word is a symbol `c`, the others `##c`. The `##c` symbols get their
//! ids in the order the trainer meets them while walking its word counts, a hash map whose
//! order changes from process to process (ahash seeds from the OS). Merges that tie on count
//! are taken in id order, so two runs on the same corpus trained different vocabularies
//! (34,817 and 34,821 entries on the PubMed CDR sample).
//!
//! The same training, with the order fixed: every continuing character `c` is written as a
//! private-use character `m(c)` (ranks of the alphabet from U+F0000, in code point order), so
//! the `##` symbols are ordinary characters of the alphabet, which `BpeTrainer` numbers in
//! code point order, after the word-initial ones; a plain BPE then merges what WordPiece
//! would (`a` + `##b` is `a` + `m(b)`), and its vocabulary is written back (`a m(b)` -> `ab`,
//! `m(a) m(b)` -> `##ab`). The alphabet is limited as tokenizers limits it (the least frequent
//! characters first; ties, which tokenizers leaves to its sort, by code point). The words and
//! counts come from the same normalisation and pre-tokenization (`Tokenizer::train` feeds
//! them), so only the tie order differs from tokenizers' own trainer.

use std::collections::{HashMap, HashSet};

use ahash::AHashMap;
use compact_str::CompactString;
use rayon::prelude::*;
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::{AddedToken, Result as TkResult, Trainer};

/// The first code point of the continuing characters.
const CONTINUING_BASE: u32 = 0xF_0000;
/// The continuation prefix of the vocabulary written back.
const PREFIX: &str = "##";

/// A `Trainer` for [`tokenizers::Tokenizer::train`] that trains a [`WordPiece`] model.
pub(super) struct WordPieceTrainer {
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub limit_alphabet: usize,
    pub special_tokens: Vec<AddedToken>,
    words: AHashMap<String, u64>,
}

impl WordPieceTrainer {
    pub fn new(
        vocab_size: usize,
        min_frequency: u64,
        limit_alphabet: usize,
        special_tokens: Vec<AddedToken>,
    ) -> Self {
        Self {
            vocab_size,
            min_frequency,
            limit_alphabet,
            special_tokens,
            words: AHashMap::new(),
        }
    }

    /// The vocabulary (token -> id) WordPiece training gives on the fed words.
    fn vocabulary(&self) -> TkResult<AHashMap<String, u32>> {
        let alphabet = limited_alphabet(&self.words, self.limit_alphabet);
        let mapping = ContinuingChars::new(&alphabet)?;
        let mut mapped: AHashMap<CompactString, u64> = AHashMap::new();
        for (word, &count) in &self.words {
            *mapped.entry(mapping.word(word)).or_default() += count;
        }
        let trainer = BpeTrainer::builder()
            .vocab_size(self.vocab_size)
            .min_frequency(self.min_frequency)
            .special_tokens(self.special_tokens.clone())
            // Every kept character is a symbol, also one only ever seen inside words (as
            // tokenizers' alphabet holds it); the continuing ones come in through the words.
            .initial_alphabet(alphabet.iter().copied().collect::<HashSet<char>>())
            .show_progress(false)
            .build();
        let mut bpe = BPE::default();
        trainer.do_train(&mapped, &mut bpe)?;
        Ok(bpe
            .get_vocab()
            .into_iter()
            .map(|(token, id)| (mapping.unmap(&token), id))
            .collect())
    }
}

impl Trainer for WordPieceTrainer {
    type Model = ModelWrapper;

    fn should_show_progress(&self) -> bool {
        false
    }

    fn train(&self, model: &mut ModelWrapper) -> TkResult<Vec<AddedToken>> {
        let vocab = self.vocabulary()?;
        let wordpiece = WordPiece::builder()
            .vocab(vocab)
            .continuing_subword_prefix(PREFIX.into())
            .build()?;
        *model = ModelWrapper::WordPiece(wordpiece);
        Ok(self.special_tokens.clone())
    }

    /// Counts the words, as `BpeTrainer::feed` does.
    fn feed<I, S, F>(&mut self, iterator: I, process: F) -> TkResult<()>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
        F: Fn(&str) -> TkResult<Vec<String>> + Sync,
    {
        let counted = iterator.par_bridge().map(|sequence| {
            let mut counts = AHashMap::new();
            for word in process(sequence.as_ref())? {
                *counts.entry(word).or_insert(0u64) += 1;
            }
            Ok::<_, tokenizers::Error>(counts)
        });
        self.words = counted.try_reduce(AHashMap::new, |mut all, counts| {
            for (word, count) in counts {
                *all.entry(word).or_insert(0) += count;
            }
            Ok(all)
        })?;
        Ok(())
    }
}

/// The characters of `words` that training keeps, in code point order: all of them, or the
/// `limit` most frequent (counted with the words' counts; a tie at the cut keeps the lower
/// code points).
fn limited_alphabet(words: &AHashMap<String, u64>, limit: usize) -> Vec<char> {
    let mut counts: HashMap<char, u64> = HashMap::new();
    for (word, &count) in words {
        for c in word.chars() {
            *counts.entry(c).or_default() += count;
        }
    }
    let mut by_count: Vec<(char, u64)> = counts.into_iter().collect();
    by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_count.truncate(limit);
    let mut kept: Vec<char> = by_count.into_iter().map(|(c, _)| c).collect();
    kept.sort_unstable();
    kept
}

/// The continuing characters' private-use stand-ins and back.
struct ContinuingChars {
    /// The alphabet's rank of each kept character.
    rank: HashMap<char, u32>,
    alphabet: Vec<char>,
}

impl ContinuingChars {
    /// Refuses an alphabet that holds private-use characters of the stand-ins' range, or
    /// more characters than the range has.
    fn new(alphabet: &[char]) -> TkResult<Self> {
        let room = char::MAX as u32 - CONTINUING_BASE + 1;
        if alphabet.len() as u64 > u64::from(room) {
            return Err(
                format!("an alphabet of {} characters is too large", alphabet.len()).into(),
            );
        }
        if let Some(c) = alphabet.iter().find(|&&c| c as u32 >= CONTINUING_BASE) {
            return Err(format!(
                "the text holds U+{:04X}, a supplementary private-use character, which \
                 WordPiece training uses itself: remove it, or set a smaller limit_alphabet",
                *c as u32
            )
            .into());
        }
        let rank = alphabet.iter().enumerate().map(|(i, &c)| (c, i as u32));
        Ok(Self {
            rank: rank.collect(),
            alphabet: alphabet.to_vec(),
        })
    }

    /// `word` with its characters after the first written as stand-ins; characters outside
    /// the alphabet dropped (tokenizers skips them, and a later one stays continuing).
    fn word(&self, word: &str) -> CompactString {
        let mut out = CompactString::default();
        for (position, c) in word.chars().enumerate() {
            let Some(&rank) = self.rank.get(&c) else {
                continue;
            };
            out.push(if position == 0 { c } else { stand_in(rank) });
        }
        out
    }

    /// A token of the mapped vocabulary as WordPiece writes it.
    fn unmap(&self, token: &str) -> String {
        let continuing = token.chars().next().is_some_and(is_stand_in);
        let mut out = String::with_capacity(token.len() + PREFIX.len());
        if continuing {
            out.push_str(PREFIX);
        }
        for c in token.chars() {
            match is_stand_in(c) {
                true => out.push(self.alphabet[(c as u32 - CONTINUING_BASE) as usize]),
                false => out.push(c),
            }
        }
        out
    }
}

fn stand_in(rank: u32) -> char {
    char::from_u32(CONTINUING_BASE + rank).expect("the range was checked")
}

fn is_stand_in(c: char) -> bool {
    c as u32 >= CONTINUING_BASE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[(&str, u64)]) -> AHashMap<String, u64> {
        list.iter().map(|&(w, c)| (w.to_string(), c)).collect()
    }

    #[test]
    fn the_alphabet_keeps_the_most_frequent_and_breaks_ties_by_code_point() {
        let w = words(&[("ab", 3), ("cd", 2), ("e", 2)]);
        assert_eq!(limited_alphabet(&w, 10), ['a', 'b', 'c', 'd', 'e']);
        // a, b: 3; c, d, e: 2 -> the cut at 4 keeps c and d.
        assert_eq!(limited_alphabet(&w, 4), ['a', 'b', 'c', 'd']);
    }

    #[test]
    fn continuing_characters_round_trip_and_dropped_ones_keep_the_position() {
        let mapping = ContinuingChars::new(&['a', 'b', 'c']).unwrap();
        let mapped = mapping.word("abc");
        assert_eq!(mapping.unmap(&mapped), "abc");
        let tail: String = mapped.chars().skip(1).collect();
        assert_eq!(mapping.unmap(&tail), "##bc");
        // `x` is not in the alphabet: `b` stays a continuing character.
        let dropped = mapping.word("xb");
        assert_eq!(mapping.unmap(&dropped), "##b");
        assert_eq!(mapping.unmap("[CLS]"), "[CLS]");
    }

    #[test]
    fn private_use_characters_of_the_range_are_refused() {
        let e = ContinuingChars::new(&['a', '\u{F0041}']).err().unwrap();
        assert!(e.to_string().contains("U+F0041"), "{e}");
    }

    /// Where no two merge candidates tie on count, tokenizers' own WordPiece training merges
    /// the same pairs in the same order on every run (only its `##` symbols' ids move), and
    /// ours must give that vocabulary: the same entries, the merged ones at the same ids.
    /// Here (a, ##b) 100, then (##c, ##d) 70, then (z, ##cd) 60; nothing else reaches 60.
    #[test]
    fn without_ties_the_vocabulary_is_tokenizers_own() {
        use tokenizers::models::wordpiece::WordPieceTrainer as LibraryTrainer;
        use tokenizers::{Model, Tokenizer};
        let texts: Vec<String> = [("ab", 100), ("zcd", 60), ("qcd", 10)]
            .iter()
            .flat_map(|&(w, n)| std::iter::repeat_n(w.to_string(), n))
            .collect();
        // [UNK], 6 characters, ##b ##c ##d, then 3 merges.
        let size = 1 + 6 + 3 + 3;
        let specials = || vec![AddedToken::from("[UNK]", true)];
        // The entries as a set, and the merged ones (after the specials and the symbols of
        // single characters) in id order.
        let vocab = |tokenizer: &Tokenizer| {
            let mut v: Vec<(String, u32)> = tokenizer.get_model().get_vocab().into_iter().collect();
            v.sort_by_key(|e| e.1);
            let single = |t: &str| t.trim_start_matches(PREFIX).chars().count() == 1;
            let merged = v.iter().filter(|e| !single(&e.0) && e.0 != "[UNK]");
            let merged: Vec<(String, u32)> = merged.cloned().collect();
            let mut all: Vec<String> = v.into_iter().map(|e| e.0).collect();
            all.sort();
            (all, merged)
        };
        let library = (0..3)
            .map(|_| {
                let mut trainer = tokenizers::models::TrainerWrapper::WordPieceTrainer(
                    LibraryTrainer::builder()
                        .vocab_size(size)
                        .special_tokens(specials())
                        .continuing_subword_prefix(PREFIX.into())
                        .show_progress(false)
                        .build(),
                );
                let mut tokenizer = Tokenizer::new(WordPiece::default());
                tokenizer.train(&mut trainer, texts.iter()).unwrap();
                vocab(&tokenizer)
            })
            .collect::<Vec<_>>();
        assert!(
            library.windows(2).all(|w| w[0] == w[1]),
            "the corpus has ties: the library's own runs differ"
        );
        let mut ours = WordPieceTrainer::new(size, 0, 1000, specials());
        let mut tokenizer = Tokenizer::new(WordPiece::default());
        tokenizer.train(&mut ours, texts.iter()).unwrap();
        let (all, merged) = vocab(&tokenizer);
        let merged_tokens: Vec<&str> = merged.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(merged_tokens, ["ab", "##cd", "zcd"]);
        assert_eq!((all, merged), library[0].clone());
    }
}
