//! Domain phrases as masking units (`[masking] unit = "phrase"`): a user's phrase list and/or
//! n-grams mined from the training split by PMI (Levine et al., "PMI-Masking", ICLR 2021),
//! matched to word spans once, at `prepare`, and stored in the shards' `unit_start` column.
//!
//! A phrase is a sequence of words, a word being the token ids of one pre-tokenizer word (the
//! `word_start` runs of a document), so matching is exact for any tokenizer and needs no text.
//! A phrase from a file is tokenized as the tokenizer sees it both at the start of a text and
//! after a space (byte-level BPE and Metaspace tokenizers give the two different ids), and
//! either form matches. Phrases of one word are dropped: a word is a unit already.

pub mod matcher;
pub mod pmi;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use matcher::PhraseMatcher;

use crate::error::CorpusError;
use crate::tokenizer::DomainTokenizer;

/// The phrase list written beside a prepared corpus.
pub const PHRASES_FILE: &str = "phrases.tsv";

/// Words of a phrase are at most this many (PMI-Masking mines n = 2..5; a file's phrases may
/// be longer).
pub const MAX_PHRASE_WORDS: usize = 16;

/// Where a corpus's phrases come from: `[masking] phrases`, `pmi_ngrams`, `pmi_min_count`
/// (the CLI copies them here, so that they are part of the prepare's config key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhraseSpec {
    /// A phrase file: one phrase a line (the first tab-separated field, so a `phrases.tsv`
    /// is reused as it is); blank lines and lines starting with `#` are skipped.
    pub file: Option<PathBuf>,
    /// Mine this many n-grams (n = 2..5) by PMI.
    pub pmi_ngrams: Option<usize>,
    /// The minimum count of a mined n-gram.
    pub pmi_min_count: u64,
}

/// Where one phrase came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhraseOrigin {
    File,
    Pmi,
}

/// One phrase: its text and the word sequences that match it.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub text: String,
    pub origin: PhraseOrigin,
    /// Each form a sequence of words, each word its token ids.
    pub forms: Vec<Vec<Vec<u32>>>,
    /// Mined phrases: the n-gram's count in the training split, and its PMI.
    pub ngram_count: Option<u64>,
    pub pmi: Option<f64>,
}

/// The phrases of a corpus, in order: the file's (file order), then the mined ones (by PMI).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhraseList {
    pub phrases: Vec<Phrase>,
    /// Lines of the file that gave no phrase of two words or more.
    pub skipped_lines: u64,
}

/// What the manifest records of a corpus's phrases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhrasesManifest {
    /// The phrase list in the directory ([`PHRASES_FILE`]).
    pub file: String,
    /// SHA-256 of the phrase list's word sequences (what matching used).
    pub sha256: String,
    pub phrases: usize,
    /// SHA-256 of `[masking] phrases`' file, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmi_ngrams: Option<usize>,
    pub pmi_min_count: u64,
    /// Phrase occurrences matched in the training split, and the tokens they cover.
    pub train_matches: u64,
    pub train_phrase_tokens: u64,
}

impl PhraseList {
    /// The phrases of a phrase file, tokenized by `tokenizer`.
    pub fn read_file(path: &Path, tokenizer: &DomainTokenizer) -> Result<Self, CorpusError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CorpusError::io("cannot read the phrase file", path, e))?;
        let mut list = Self::default();
        for line in text.lines() {
            let phrase = line.split('\t').next().unwrap_or("").trim();
            if phrase.is_empty() || phrase.starts_with('#') {
                continue;
            }
            let forms = phrase_forms(phrase, tokenizer)?;
            if forms.is_empty() {
                list.skipped_lines += 1;
                continue;
            }
            list.phrases.push(Phrase {
                text: phrase.to_string(),
                origin: PhraseOrigin::File,
                forms,
                ngram_count: None,
                pmi: None,
            });
        }
        Ok(list)
    }

    /// SHA-256 of the word sequences, in order: what decides the unit starts.
    pub fn digest(&self) -> String {
        let mut text = String::new();
        for phrase in &self.phrases {
            for form in &phrase.forms {
                let words: Vec<String> = form
                    .iter()
                    .map(|w| w.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
                    .collect();
                let _ = writeln!(text, "{}", words.join(" "));
            }
            text.push('\n');
        }
        crate::hash::sha256_hex(text.as_bytes())
    }

    /// `phrases.tsv`: a header, then `phrase, origin, train_matches, ngram_count, pmi` a line.
    pub fn to_tsv(&self, matches: &[u64]) -> String {
        let mut out = String::from("phrase\torigin\ttrain_matches\tngram_count\tpmi\n");
        for (i, phrase) in self.phrases.iter().enumerate() {
            let origin = match phrase.origin {
                PhraseOrigin::File => "file",
                PhraseOrigin::Pmi => "pmi",
            };
            let count = phrase.ngram_count.map_or(String::new(), |c| c.to_string());
            let pmi = phrase.pmi.map_or(String::new(), |p| format!("{p:.6}"));
            let text = phrase.text.replace(['\t', '\n', '\r'], " ");
            let matched = matches.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{text}\t{origin}\t{matched}\t{count}\t{pmi}");
        }
        out
    }
}

/// The word sequences of `phrase` as the tokenizer gives them at the start of a text and
/// after a space, each of two words or more.
fn phrase_forms(
    phrase: &str,
    tokenizer: &DomainTokenizer,
) -> Result<Vec<Vec<Vec<u32>>>, CorpusError> {
    let mut forms: Vec<Vec<Vec<u32>>> = Vec::new();
    for text in [phrase.to_string(), format!(" {phrase}")] {
        let (ids, starts) = tokenizer.encode_words(&text)?;
        let words = split_words(&ids, &starts);
        if (2..=MAX_PHRASE_WORDS).contains(&words.len()) && !forms.contains(&words) {
            forms.push(words);
        }
    }
    Ok(forms)
}

/// A document's words: runs of ids cut where `starts` is true.
pub fn split_words(ids: &[u32], starts: &[bool]) -> Vec<Vec<u32>> {
    let mut words: Vec<Vec<u32>> = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        if i == 0 || starts.get(i).copied().unwrap_or(true) {
            words.push(Vec::new());
        }
        words.last_mut().expect("pushed above").push(id);
    }
    words
}

/// Writes `phrases.tsv` into `dir`.
pub fn write_phrases_file(dir: &Path, tsv: &str) -> Result<(), CorpusError> {
    let path = dir.join(PHRASES_FILE);
    mlm_durable::write_file_atomically(&path, |f| std::io::Write::write_all(f, tsv.as_bytes()))
        .map_err(CorpusError::durable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_cut_at_starts() {
        let words = split_words(&[1, 2, 3, 4, 5], &[true, false, true, true, false]);
        assert_eq!(words, vec![vec![1, 2], vec![3], vec![4, 5]]);
        assert_eq!(split_words(&[7, 8], &[false, false]), vec![vec![7, 8]]);
        assert!(split_words(&[], &[]).is_empty());
    }

    #[test]
    fn tsv_lists_every_phrase_with_its_counts() {
        let list = PhraseList {
            phrases: vec![
                Phrase {
                    text: "blood\tpressure".into(),
                    origin: PhraseOrigin::File,
                    forms: vec![vec![vec![1], vec![2]]],
                    ngram_count: None,
                    pmi: None,
                },
                Phrase {
                    text: "renal failure".into(),
                    origin: PhraseOrigin::Pmi,
                    forms: vec![vec![vec![3], vec![4, 5]]],
                    ngram_count: Some(12),
                    pmi: Some(7.25),
                },
            ],
            skipped_lines: 0,
        };
        assert_eq!(
            list.to_tsv(&[3, 9]),
            "phrase\torigin\ttrain_matches\tngram_count\tpmi\nblood pressure\tfile\t3\t\t\n\
             renal failure\tpmi\t9\t12\t7.250000\n"
        );
        let mut other = list.clone();
        other.phrases[1].forms[0][1] = vec![4];
        assert_ne!(list.digest(), other.digest());
    }
}
