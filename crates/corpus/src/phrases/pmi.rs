//! Mining n-grams by PMI (Levine et al., "PMI-Masking: Principled masking of correlated
//! spans", ICLR 2021, section 3).
//!
//! For an n-gram w = w1..wn (n = 2..5) of the training split's words, with p(x) = count(x) /
//! N_|x| (N_k: the k-gram positions inside documents),
//!
//!   PMI_n(w) = min over segmentations s of w into two or more contiguous parts of
//!              log p(w) - sum over the parts u of log p(u),
//!
//! the paper's measure: an n-gram scores high only if no split of it into parts explains its
//! count (a frequent bigram plus any word is not a trigram unit). Candidates are the n-grams
//! seen at least `min_count` times; the top `top` by PMI_n are kept (ties: higher count, then
//! the words' ids). Counting is Apriori-style: an n-gram is counted only where both its
//! (n-1)-gram prefix and suffix reach `min_count`, so the tables hold frequent n-grams only.
//! The paper builds its vocabulary from fixed shares per n; here the top list is over all n.
//! `tests/python/pmi_reference.py` recomputes the list from the same words.

use std::collections::HashMap;

/// Longest n-gram mined (the paper: 5).
pub const MAX_NGRAM: usize = 5;

/// Marks a document's end in [`WordCorpus::codes`]: no n-gram spans it.
const DOC_END: u32 = u32::MAX;

/// Word codes fit 25 bits, so an n-gram of up to 5 words packs into a u128 key.
const CODE_BITS: u32 = 25;
const MAX_WORDS: usize = 1 << CODE_BITS;

/// The training split as word codes (a word being the token ids of one pre-tokenizer word).
#[derive(Debug, Default)]
pub struct WordCorpus {
    pub codes: Vec<u32>,
    words: Vec<Box<[u32]>>,
    index: HashMap<Box<[u32]>, u32>,
    /// Documents left out because the distinct words passed 2^25.
    pub documents_left_out: u64,
}

/// One mined n-gram.
#[derive(Debug, Clone, PartialEq)]
pub struct MinedNgram {
    /// Its words, each the token ids of the word.
    pub words: Vec<Vec<u32>>,
    pub count: u64,
    pub pmi: f64,
}

impl WordCorpus {
    /// Appends a document's words (`starts` cuts `ids` into words).
    pub fn push_document(&mut self, words: &[Vec<u32>]) {
        let new_words = words
            .iter()
            .filter(|w| !self.index.contains_key(&w[..]))
            .count();
        if self.words.len() + new_words > MAX_WORDS {
            self.documents_left_out += 1;
            return;
        }
        for word in words {
            let code = match self.index.get(&word[..]) {
                Some(&code) => code,
                None => {
                    let code = self.words.len() as u32;
                    self.words.push(word.clone().into_boxed_slice());
                    self.index.insert(word.clone().into_boxed_slice(), code);
                    code
                }
            };
            self.codes.push(code);
        }
        self.codes.push(DOC_END);
    }

    /// Words held (document ends not counted).
    pub fn words(&self) -> usize {
        self.codes.len() - self.codes.iter().filter(|&&c| c == DOC_END).count()
    }

    fn word(&self, code: u32) -> &[u32] {
        &self.words[code as usize]
    }
}

fn key(codes: &[u32]) -> u128 {
    codes
        .iter()
        .fold(codes.len() as u128, |k, &c| k << CODE_BITS | u128::from(c))
}

/// Counts of frequent n-grams, n = 1..=MAX_NGRAM, and the positions of each length.
struct Counts {
    unigrams: Vec<u64>,
    ngrams: Vec<HashMap<u128, u64>>,
    positions: [u64; MAX_NGRAM + 1],
}

impl Counts {
    fn count(&self, codes: &[u32]) -> u64 {
        match codes.len() {
            1 => self.unigrams[codes[0] as usize],
            n => self.ngrams[n].get(&key(codes)).copied().unwrap_or(0),
        }
    }

    fn log_p(&self, codes: &[u32]) -> f64 {
        (self.count(codes) as f64).ln() - (self.positions[codes.len()] as f64).ln()
    }
}

/// The top `top` n-grams (n = 2..5) of `corpus` by PMI_n, each seen `min_count` times or more.
pub fn mine(corpus: &WordCorpus, top: usize, min_count: u64) -> Vec<MinedNgram> {
    let counts = count_frequent(corpus, min_count.max(1));
    let mut scored: Vec<(f64, u64, Vec<u32>)> = Vec::new();
    for n in 2..=MAX_NGRAM {
        for (&k, &count) in &counts.ngrams[n] {
            let codes = unkey(k, n);
            scored.push((pmi(&counts, &codes), count, codes));
        }
    }
    let words = |codes: &[u32]| -> Vec<&[u32]> { codes.iter().map(|&c| corpus.word(c)).collect() };
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then_with(|| words(&a.2).cmp(&words(&b.2)))
    });
    scored
        .into_iter()
        .take(top)
        .map(|(pmi, count, codes)| MinedNgram {
            words: codes.iter().map(|&c| corpus.word(c).to_vec()).collect(),
            count,
            pmi,
        })
        .collect()
}

fn unkey(mut k: u128, n: usize) -> Vec<u32> {
    let mut codes = vec![0u32; n];
    for c in codes.iter_mut().rev() {
        *c = (k & ((1 << CODE_BITS) - 1)) as u32;
        k >>= CODE_BITS;
    }
    codes
}

/// PMI_n: the minimum over the 2^(n-1) - 1 segmentations into two or more parts (cut
/// patterns in increasing binary order, parts summed left to right, as the reference does).
fn pmi(counts: &Counts, codes: &[u32]) -> f64 {
    let n = codes.len();
    let whole = counts.log_p(codes);
    let mut best = f64::INFINITY;
    for cuts in 1u32..(1 << (n - 1)) {
        let mut parts = 0.0;
        let mut start = 0;
        for end in 1..=n {
            if end == n || cuts & (1 << (end - 1)) != 0 {
                parts += counts.log_p(&codes[start..end]);
                start = end;
            }
        }
        let value = whole - parts;
        if value < best {
            best = value;
        }
    }
    best
}

/// Counts unigrams, then each n-gram length in turn where its prefix and suffix are frequent,
/// keeping only the n-grams seen `min_count` times.
fn count_frequent(corpus: &WordCorpus, min_count: u64) -> Counts {
    let mut counts = Counts {
        unigrams: vec![0; corpus.words.len()],
        ngrams: vec![HashMap::new(); MAX_NGRAM + 1],
        positions: [0; MAX_NGRAM + 1],
    };
    for &c in corpus.codes.iter().filter(|&&c| c != DOC_END) {
        counts.unigrams[c as usize] += 1;
        counts.positions[1] += 1;
    }
    for n in 2..=MAX_NGRAM {
        let mut table: HashMap<u128, u64> = HashMap::new();
        for gram in corpus.codes.windows(n) {
            if gram.contains(&DOC_END) {
                continue;
            }
            counts.positions[n] += 1;
            let frequent = |part: &[u32]| counts.count(part) >= min_count;
            if frequent(&gram[..n - 1]) && frequent(&gram[1..]) {
                *table.entry(key(gram)).or_default() += 1;
            }
        }
        table.retain(|_, c| *c >= min_count);
        counts.ngrams[n] = table;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(docs: &[&[u32]]) -> WordCorpus {
        let mut c = WordCorpus::default();
        for doc in docs {
            let words: Vec<Vec<u32>> = doc.iter().map(|&w| vec![w]).collect();
            c.push_document(&words);
        }
        c
    }

    #[test]
    fn keys_round_trip_and_differ_by_length() {
        assert_eq!(unkey(key(&[1, 2, 3]), 3), vec![1, 2, 3]);
        assert_ne!(key(&[0, 5]), key(&[5]));
        let big = (MAX_WORDS - 1) as u32;
        assert_eq!(unkey(key(&[big; 5]), 5), vec![big; 5]);
    }

    #[test]
    fn a_fixed_pair_outranks_chance_pairs() {
        // 400 documents of 8 words drawn from 50, with "7 8" (never drawn otherwise) inside.
        let mut state = 9u64;
        let mut next = move || {
            state = mlm_seeds::splitmix64(state);
            state
        };
        let docs: Vec<Vec<u32>> = (0..400)
            .map(|_| {
                let mut doc: Vec<u32> = (0..8).map(|_| 100 + (next() % 50) as u32).collect();
                let at = (next() % 9) as usize;
                doc.splice(at..at, [7, 8]);
                doc
            })
            .collect();
        let refs: Vec<&[u32]> = docs.iter().map(|d| d.as_slice()).collect();
        let mined = mine(&corpus(&refs), 3, 5);
        assert_eq!(mined[0].words, vec![vec![7], vec![8]]);
        assert_eq!(mined[0].count, 400);
        // PMI of "7 8": log(400 / N2) - 2 log(400 / N1), N1 = 4000 words, N2 = 3600 pairs.
        let expected = 400f64.ln() - 3600f64.ln() - 2.0 * (400f64.ln() - 4000f64.ln());
        assert!((mined[0].pmi - expected).abs() < 1e-12, "{}", mined[0].pmi);
        assert!(mined.iter().all(|m| m.count >= 5));
    }

    #[test]
    fn ngrams_never_cross_documents_and_rare_ones_are_dropped() {
        let c = corpus(&[&[1, 2], &[3, 4], &[1, 2], &[3, 4]]);
        let mined = mine(&c, 10, 2);
        let words: Vec<Vec<Vec<u32>>> = mined.iter().map(|m| m.words.clone()).collect();
        assert_eq!(words.len(), 2, "{words:?}");
        assert!(!words.contains(&vec![vec![2], vec![3]]));
        assert!(mine(&c, 10, 3).is_empty());
    }
}
