//! Words as the tokenizer's model sees them (the normaliser, then the pre-tokenizer: BERT's
//! lowercased, punctuation-split words; byte-level BPE's `Ġ`-led byte strings), how many
//! pieces the model splits each into, and the fragmentation of a text sample.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;
use tokenizers::{
    Model, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer,
};

use crate::error::CorpusError;

/// Occurrences of each word.
pub type WordCounts = HashMap<String, u64>;

fn failed(message: &str, e: tokenizers::Error) -> CorpusError {
    CorpusError::tokenizer(None, message.to_string(), Some(e))
}

/// The words of `text`: the normaliser's output cut by the pre-tokenizer (what
/// `Model::tokenize` receives, one word at a time).
pub fn words_of(tokenizer: &Tokenizer, text: &str) -> Result<Vec<String>, CorpusError> {
    let mut normalized = tokenizers::NormalizedString::from(text);
    if let Some(normalizer) = tokenizer.get_normalizer() {
        normalizer
            .normalize(&mut normalized)
            .map_err(|e| failed("cannot normalise text", e))?;
    }
    let mut pre = PreTokenizedString::from(normalized);
    if let Some(pre_tokenizer) = tokenizer.get_pre_tokenizer() {
        pre_tokenizer
            .pre_tokenize(&mut pre)
            .map_err(|e| failed("cannot pre-tokenize text", e))?;
    }
    Ok(pre
        .get_splits(OffsetReferential::Normalized, OffsetType::Byte)
        .into_iter()
        .map(|(word, _, _)| word.to_owned())
        .filter(|word| !word.is_empty())
        .collect())
}

/// Word counts of `texts`, counted in parallel.
pub fn count_words(tokenizer: &Tokenizer, texts: &[String]) -> Result<WordCounts, CorpusError> {
    texts
        .par_iter()
        .try_fold(WordCounts::new, |mut counts, text| {
            for word in words_of(tokenizer, text)? {
                *counts.entry(word).or_default() += 1;
            }
            Ok(counts)
        })
        .try_reduce(WordCounts::new, |mut a, b| {
            merge_counts(&mut a, b);
            Ok(a)
        })
}

/// Adds `b`'s counts into `a`.
pub fn merge_counts(a: &mut WordCounts, b: WordCounts) {
    for (word, n) in b {
        *a.entry(word).or_default() += n;
    }
}

/// The ids the model splits one word into.
pub fn pieces_of(tokenizer: &Tokenizer, word: &str) -> Result<Vec<u32>, CorpusError> {
    let tokens = tokenizer
        .get_model()
        .tokenize(word)
        .map_err(|e| failed("cannot tokenize a word", e))?;
    Ok(tokens.into_iter().map(|t| t.id).collect())
}

/// Pieces per word over a sample of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Fragmentation {
    pub documents: u64,
    pub words: u64,
    pub pieces: u64,
    /// Words of two pieces or more.
    pub split_words: u64,
}

impl Fragmentation {
    /// Mean pieces per word.
    pub fn pieces_per_word(&self) -> f64 {
        self.pieces as f64 / self.words.max(1) as f64
    }

    /// Share of words split into two pieces or more.
    pub fn split_share(&self) -> f64 {
        self.split_words as f64 / self.words.max(1) as f64
    }
}

/// The fragmentation of the words `counts` holds (e.g. a held-out sample) under `tokenizer`.
pub fn fragmentation(
    tokenizer: &Tokenizer,
    counts: &WordCounts,
    documents: u64,
) -> Result<Fragmentation, CorpusError> {
    let words: Vec<(&String, &u64)> = counts.iter().collect();
    let totals = words
        .par_iter()
        .map(|&(word, &n)| {
            let pieces = pieces_of(tokenizer, word)?.len() as u64;
            Ok((n, n * pieces, if pieces > 1 { n } else { 0 }))
        })
        .try_reduce(|| (0, 0, 0), |a, b| Ok((a.0 + b.0, a.1 + b.1, a.2 + b.2)))?;
    Ok(Fragmentation {
        documents,
        words: totals.0,
        pieces: totals.1,
        split_words: totals.2,
    })
}

/// A word the base vocabulary splits, with what adding it saves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub word: String,
    pub count: u64,
    /// The base model's pieces of the word.
    pub base_ids: Vec<u32>,
}

impl Candidate {
    /// Tokens saved over the counted text if the word became one token:
    /// count x (pieces - 1).
    pub fn score(&self) -> u64 {
        self.count * (self.base_ids.len() as u64).saturating_sub(1)
    }
}

/// Words seen at least `min_frequency` times that the base model splits into two pieces or
/// more (never into its unknown token), best first: by tokens saved, then by the word
/// (so the order, and the vocabulary made from it, is a pure function of the counts).
pub fn rank_candidates(
    tokenizer: &Tokenizer,
    counts: &WordCounts,
    min_frequency: u64,
    unk_id: Option<u32>,
) -> Result<Vec<Candidate>, CorpusError> {
    let frequent: Vec<(&String, &u64)> = counts
        .iter()
        .filter(|(_, n)| **n >= min_frequency)
        .collect();
    let mut candidates: Vec<Candidate> = frequent
        .par_iter()
        .map(|&(word, &count)| {
            let base_ids = pieces_of(tokenizer, word)?;
            let unknown = unk_id.is_some_and(|unk| base_ids.contains(&unk));
            Ok((base_ids.len() > 1 && !unknown).then(|| Candidate {
                word: (*word).clone(),
                count,
                base_ids,
            }))
        })
        .filter_map(|c: Result<Option<Candidate>, CorpusError>| c.transpose())
        .collect::<Result<_, _>>()?;
    candidates.sort_unstable_by(|a, b| b.score().cmp(&a.score()).then(a.word.cmp(&b.word)));
    Ok(candidates)
}
