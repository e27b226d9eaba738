//! Matching phrases to a document's words, once, at `prepare`.
//!
//! The rule where phrases overlap: leftmost, then longest. Scanning the document's words from
//! the left, the longest phrase that starts at the current word is taken and the scan goes on
//! after it; a word that starts no phrase is passed. So in "acute renal failure" with both
//! "acute renal failure" and "renal failure" listed, the first is taken; with "acute renal"
//! and "renal failure" listed, "acute renal" is taken and "failure" stays a word. A matched
//! phrase's words after the first lose their unit start: the phrase is masked as one unit.

use std::collections::HashMap;

use super::{MAX_PHRASE_WORDS, PhraseList};

/// A word that is in no phrase.
const NO_WORD: u32 = u32::MAX;

/// The phrases of a list as sequences of interned words.
#[derive(Debug, Clone, Default)]
pub struct PhraseMatcher {
    /// Every word that occurs in a phrase, to its code.
    words: HashMap<Box<[u32]>, u32>,
    /// Phrase word-code sequences to the phrase's index in the list.
    phrases: HashMap<Box<[u32]>, u32>,
    longest: usize,
}

/// The phrases matched in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    /// Index in the list of each matched phrase, in document order.
    pub phrases: Vec<u32>,
    /// Tokens inside matched phrases.
    pub tokens: u64,
}

impl PhraseMatcher {
    pub fn new(list: &PhraseList) -> Self {
        let mut matcher = Self::default();
        for (index, phrase) in list.phrases.iter().enumerate() {
            for form in &phrase.forms {
                let codes: Vec<u32> = form.iter().map(|w| matcher.intern(w)).collect();
                matcher.longest = matcher.longest.max(codes.len());
                // The first phrase of a form wins, so a repeated line changes nothing.
                matcher
                    .phrases
                    .entry(codes.into_boxed_slice())
                    .or_insert(index as u32);
            }
        }
        matcher.longest = matcher.longest.min(MAX_PHRASE_WORDS);
        matcher
    }

    fn intern(&mut self, word: &[u32]) -> u32 {
        let next = self.words.len() as u32;
        *self.words.entry(word.into()).or_insert(next)
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The unit starts of a document (its word starts, less the starts of a matched phrase's
    /// later words), and what matched.
    pub fn unit_starts(&self, ids: &[u32], word_starts: &[bool]) -> (Vec<bool>, Matches) {
        let mut units = word_starts.to_vec();
        let mut matches = Matches::default();
        let bounds = word_bounds(ids.len(), word_starts);
        let codes: Vec<u32> = bounds
            .windows(2)
            .map(|w| self.words.get(&ids[w[0]..w[1]]).copied().unwrap_or(NO_WORD))
            .collect();
        let mut k = 0;
        while k < codes.len() {
            match self.longest_at(&codes[k..]) {
                Some((len, phrase)) => {
                    for word in k + 1..k + len {
                        units[bounds[word]] = false;
                    }
                    matches.phrases.push(phrase);
                    matches.tokens += (bounds[k + len] - bounds[k]) as u64;
                    k += len;
                }
                None => k += 1,
            }
        }
        (units, matches)
    }

    /// The longest phrase that `codes` starts with: (words, phrase index).
    fn longest_at(&self, codes: &[u32]) -> Option<(usize, u32)> {
        let known = codes
            .iter()
            .take(self.longest)
            .take_while(|&&c| c != NO_WORD)
            .count();
        (2..=known)
            .rev()
            .find_map(|len| self.phrases.get(&codes[..len]).map(|&p| (len, p)))
    }
}

/// The token index where each word begins, then the end: word i is `bounds[i]..bounds[i+1]`.
fn word_bounds(len: usize, word_starts: &[bool]) -> Vec<usize> {
    let mut bounds: Vec<usize> = (0..len)
        .filter(|&i| i == 0 || word_starts.get(i).copied().unwrap_or(true))
        .collect();
    bounds.push(len);
    if len == 0 {
        bounds.clear();
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::super::{Phrase, PhraseOrigin};
    use super::*;

    fn list(phrases: &[&[&[u32]]]) -> PhraseList {
        PhraseList {
            phrases: phrases
                .iter()
                .map(|words| Phrase {
                    text: String::new(),
                    origin: PhraseOrigin::File,
                    forms: vec![words.iter().map(|w| w.to_vec()).collect()],
                    ngram_count: None,
                    pmi: None,
                })
                .collect(),
            skipped_lines: 0,
        }
    }

    /// Words 10 | 11 12 | 13 | 14 | 15 as tokens [10, 11, 12, 13, 14, 15].
    fn doc() -> (Vec<u32>, Vec<bool>) {
        (
            vec![10, 11, 12, 13, 14, 15],
            vec![true, true, false, true, true, true],
        )
    }

    #[test]
    fn leftmost_then_longest_without_overlap() {
        let (ids, starts) = doc();
        // "11 12 | 13" and "13 | 14 | 15" overlap: the leftmost wins.
        let m = PhraseMatcher::new(&list(&[&[&[11, 12], &[13]], &[&[13], &[14], &[15]]]));
        let (units, matches) = m.unit_starts(&ids, &starts);
        assert_eq!(units, vec![true, true, false, false, true, true]);
        assert_eq!(matches.phrases, vec![0]);
        assert_eq!(matches.tokens, 3);
        // "13 | 14" and "13 | 14 | 15" start at the same word: the longest wins.
        let m = PhraseMatcher::new(&list(&[&[&[13], &[14]], &[&[13], &[14], &[15]]]));
        let (units, matches) = m.unit_starts(&ids, &starts);
        assert_eq!(units, vec![true, true, false, true, false, false]);
        assert_eq!(matches.phrases, vec![1]);
    }

    #[test]
    fn a_word_must_match_all_its_pieces() {
        let (ids, starts) = doc();
        // "11 | 13" is not "11 12 | 13": word 11 alone is not the word 11 12.
        let m = PhraseMatcher::new(&list(&[&[&[11], &[13]], &[&[12], &[13]]]));
        let (units, matches) = m.unit_starts(&ids, &starts);
        assert_eq!(units, starts);
        assert!(matches.phrases.is_empty());
        let (units, _) = PhraseMatcher::default().unit_starts(&[], &[]);
        assert!(units.is_empty());
    }
}
