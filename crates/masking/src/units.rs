//! Span and phrase masking: whole units (words, or phrases of several words) drawn at random
//! until a budget of `p x eligible tokens` is spent, 80/10/10 per selected run.
//!
//! Spans follow SpanBERT (Joshi et al. 2020; facebookresearch/SpanBERT
//! `pretraining/fairseq/data/masking.py`, `PairWithSpanMaskingScheme.mask`): a span length L
//! in words is drawn from Geometric(p) restricted to 1..=max and renormalised (mean 3.8 for
//! p = 0.2, max 10), a start word uniformly at random, and the span takes L whole words from
//! there. Phrases follow PMI-Masking (Levine et al. 2021): the units are the corpus's phrases
//! and the words outside them, each drawn whole (a span of one unit).
//!
//! Where this differs from SpanBERT, and why:
//! - the start is drawn among the units not yet selected (SpanBERT redraws on a hit), so the
//!   loop ends without a retry cap even at high rates;
//! - a span stops at a selected unit, at a special token or at the end (SpanBERT runs over
//!   them), so runs never overlap and never cross a document boundary of packed sequences;
//! - the budget is met in expectation, not truncated mid-word: a unit that would overshoot
//!   the remaining budget b is taken whole with probability b / its length, and selection
//!   stops. So the expected predicted-token count is exactly p x eligible tokens (SpanBERT
//!   rounds the budget up and cuts the last word, predicting a partial word).
//!
//! Every draw is a block of the sequence's selection stream indexed by draw number, so the
//! selection is a pure function of the mask key, as for tokens and words.

use crate::config::MAX_SPAN_WORDS;
use crate::rng::{Stream, below, threshold};

/// A maskable run of tokens selected as one: `start..start + len` in the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unit {
    pub start: u32,
    pub len: u32,
}

impl Unit {
    fn end(self) -> u32 {
        self.start + self.len
    }
}

/// The clipped geometric span length: `P(L = l) = p (1 - p)^(l - 1) / Z` for l in 1..=max.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanLengths {
    /// `upper[l - 1]`: the u32 draw below which the length is at most l (the CDF scaled by
    /// 2^32); the last entry is 2^32, so every draw finds a length.
    upper: Vec<u64>,
}

impl SpanLengths {
    /// Lengths 1..=max_words with geometric weights of success probability `p`.
    pub fn new(p: f64, max_words: usize) -> Self {
        let max_words = max_words.clamp(1, MAX_SPAN_WORDS);
        let weights: Vec<f64> = (0..max_words).map(|k| (1.0 - p).powi(k as i32)).collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let mut upper: Vec<u64> = weights
            .iter()
            .map(|w| {
                cumulative += w / total;
                threshold(cumulative.min(1.0))
            })
            .collect();
        *upper.last_mut().expect("max_words >= 1") = 1 << 32;
        Self { upper }
    }

    /// `P(L = l)` for l in 1..=max, as the sampler draws it (from its thresholds).
    pub fn probabilities(&self) -> Vec<f64> {
        let mut below = 0u64;
        self.upper
            .iter()
            .map(|&u| {
                let p = (u - below) as f64 / (1u64 << 32) as f64;
                below = u;
                p
            })
            .collect()
    }

    /// The length a uniform u32 draw stands for (inverse CDF).
    pub fn sample(&self, word: u32) -> usize {
        let draw = u64::from(word);
        self.upper.partition_point(|&u| u <= draw) + 1
    }

    /// The longest length.
    pub fn max(&self) -> usize {
        self.upper.len()
    }
}

/// What one budgeted selection needs.
pub(crate) struct Budget<'a> {
    /// The maskable units of the sequence, in order.
    pub units: &'a [Unit],
    /// Expected tokens to predict: p x eligible tokens.
    pub tokens: f64,
    /// Span lengths in units (None: every run is one unit, the phrase case).
    pub lengths: Option<&'a SpanLengths>,
}

/// Selects runs of units until the budget is spent; `take(run)` is called once per selected
/// run (a span, or a phrase/word), in the order drawn.
pub(crate) fn select_runs(select: Stream, budget: &Budget<'_>, mut take: impl FnMut(Unit)) {
    let mut pool = UnselectedPool::new(budget.units.len());
    let mut spent = 0.0f64;
    let mut draw = 0usize;
    while spent < budget.tokens && !pool.is_empty() {
        let [anchor_hi, length_word, keep_word, anchor_lo] = select.block(draw);
        draw += 1;
        // `below` takes a 64-bit draw (a 32-bit one would pick only the first units).
        let anchor_draw = u64::from(anchor_hi) << 32 | u64::from(anchor_lo);
        let anchor = pool.take_at(below(anchor_draw, pool.len()));
        let length = budget.lengths.map_or(1, |l| l.sample(length_word));
        let (run, done) = grow_run(budget, &mut pool, anchor, length, spent, keep_word);
        if let Some(run) = run {
            spent += f64::from(run.len);
            take(run);
        }
        if done {
            break;
        }
    }
}

/// The run starting at unit `anchor` (already taken from the pool): up to `length` units,
/// stopping at a selected unit, a gap (special token) or the budget. Returns the run (None
/// when even the anchor lost its budget draw) and whether the budget is spent.
fn grow_run(
    budget: &Budget<'_>,
    pool: &mut UnselectedPool,
    anchor: usize,
    length: usize,
    spent: f64,
    keep_word: u32,
) -> (Option<Unit>, bool) {
    let units = budget.units;
    let mut run: Option<Unit> = None;
    let mut spent = spent;
    for (j, &unit) in units.iter().enumerate().skip(anchor).take(length) {
        let joins = run.is_none_or(|r| r.end() == unit.start);
        if !joins || (j != anchor && !pool.remove(j)) {
            break;
        }
        let left = budget.tokens - spent;
        if f64::from(unit.len) > left {
            // Taken with probability left / len: the expected count stays exactly the budget.
            let keep = u64::from(keep_word) < threshold(left / f64::from(unit.len));
            if keep {
                run = Some(extend(run, unit));
            }
            return (run, true);
        }
        spent += f64::from(unit.len);
        run = Some(extend(run, unit));
    }
    (run, false)
}

fn extend(run: Option<Unit>, unit: Unit) -> Unit {
    match run {
        None => unit,
        Some(r) => Unit {
            start: r.start,
            len: r.len + unit.len,
        },
    }
}

/// The units not yet selected: draw one uniformly, or remove a given one, in O(1) (a dense
/// list with swap-removal and each unit's slot in it).
struct UnselectedPool {
    list: Vec<u32>,
    /// `slot[j]`: where unit j sits in `list`, or `u32::MAX` once selected.
    slot: Vec<u32>,
}

impl UnselectedPool {
    fn new(n: usize) -> Self {
        Self {
            list: (0..n as u32).collect(),
            slot: (0..n as u32).collect(),
        }
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Removes and returns the unit at list index `index`.
    fn take_at(&mut self, index: usize) -> usize {
        let unit = self.list[index] as usize;
        self.remove(unit);
        unit
    }

    /// Removes unit j; false when it was already selected.
    fn remove(&mut self, j: usize) -> bool {
        let at = self.slot[j];
        if at == u32::MAX {
            return false;
        }
        let last = *self.list.last().expect("j is in the list");
        self.list.swap_remove(at as usize);
        if last as usize != j {
            self.slot[last as usize] = at;
        }
        self.slot[j] = u32::MAX;
        true
    }
}

/// The maskable units of a sequence: a unit begins where `starts` says so, after a token that
/// cannot be selected, or past the end of `starts`; non-maskable tokens belong to none.
pub(crate) fn units_of(
    input_ids: &[u32],
    starts: &[bool],
    maskable: impl Fn(u32) -> bool,
    units: &mut Vec<Unit>,
) -> usize {
    units.clear();
    let mut eligible = 0;
    let mut prev_maskable = false;
    for (i, &id) in input_ids.iter().enumerate() {
        if !maskable(id) {
            prev_maskable = false;
            continue;
        }
        if !prev_maskable || starts.get(i).copied().unwrap_or(true) {
            units.push(Unit {
                start: i as u32,
                len: 0,
            });
        }
        units.last_mut().expect("pushed above").len += 1;
        prev_maskable = true;
        eligible += 1;
    }
    eligible
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MaskKey;
    use crate::rng::Purpose;

    #[test]
    fn span_lengths_are_the_clipped_geometric() {
        let lengths = SpanLengths::new(0.2, 10);
        let probabilities = lengths.probabilities();
        let z: f64 = (0..10).map(|k| 0.8f64.powi(k)).sum();
        for (l, p) in probabilities.iter().enumerate() {
            let expected = 0.8f64.powi(l as i32) / z;
            assert!((p - expected).abs() < 1e-9, "P(L={}) = {p}", l + 1);
        }
        let mean: f64 = probabilities
            .iter()
            .enumerate()
            .map(|(l, p)| (l + 1) as f64 * p)
            .sum();
        assert!((mean - 3.797).abs() < 1e-3, "SpanBERT's mean 3.8: {mean}");
        assert_eq!(lengths.sample(0), 1);
        assert_eq!(lengths.sample(u32::MAX), 10);
        assert_eq!(SpanLengths::new(1.0, 10).sample(u32::MAX), 1);
        assert_eq!(SpanLengths::new(0.2, 1).max(), 1);
    }

    fn units(lens: &[u32]) -> Vec<Unit> {
        let mut start = 0;
        lens.iter()
            .map(|&len| {
                let u = Unit { start, len };
                start += len;
                u
            })
            .collect()
    }

    fn runs(budget: &Budget<'_>, key: u64) -> Vec<Unit> {
        let mut out = Vec::new();
        let stream = Stream::new(MaskKey::train(1, 0, key), Purpose::Select);
        select_runs(stream, budget, |r| out.push(r));
        out
    }

    #[test]
    fn runs_are_whole_units_disjoint_and_within_length() {
        let lens: Vec<u32> = (0..200).map(|i| 1 + i % 3).collect();
        let all = units(&lens);
        let lengths = SpanLengths::new(0.2, 4);
        for key in 0..50 {
            let budget = Budget {
                units: &all,
                tokens: 0.3 * 400.0,
                lengths: Some(&lengths),
            };
            let mut covered = vec![false; 400];
            for run in runs(&budget, key) {
                assert!(all.iter().any(|u| u.start == run.start), "{run:?}");
                let inside = all
                    .iter()
                    .filter(|u| u.start >= run.start && u.end() <= run.end())
                    .count();
                assert!((1..=4).contains(&inside), "{run:?}");
                assert!(all.iter().any(|u| u.end() == run.end()), "{run:?}");
                for t in run.start..run.end() {
                    assert!(!covered[t as usize], "overlap at {t}");
                    covered[t as usize] = true;
                }
            }
        }
    }

    #[test]
    fn a_gap_stops_a_span_and_the_budget_is_met_in_expectation() {
        // Two blocks of 50 one-token units with a gap (a special token) between them.
        let mut all = units(&[1; 50]);
        all.extend((0..50).map(|i| Unit {
            start: 51 + i,
            len: 1,
        }));
        let lengths = SpanLengths::new(0.2, 10);
        let mut total = 0u64;
        let trials = 4000;
        for key in 0..trials {
            let budget = Budget {
                units: &all,
                tokens: 12.5,
                lengths: Some(&lengths),
            };
            for run in runs(&budget, key) {
                assert!(
                    run.end() <= 50 || run.start >= 51,
                    "{run:?} crosses the gap"
                );
                total += u64::from(run.len);
            }
        }
        let mean = total as f64 / trials as f64;
        assert!((mean - 12.5).abs() < 0.05, "mean predicted {mean}");
    }

    #[test]
    fn the_pool_draws_every_unit_once() {
        let mut pool = UnselectedPool::new(5);
        assert!(pool.remove(3));
        assert!(!pool.remove(3));
        let mut seen: Vec<usize> = (0..4).map(|_| pool.take_at(0)).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 4]);
        assert!(pool.is_empty());
    }

    #[test]
    fn units_break_at_specials_and_starts() {
        let mut out = Vec::new();
        let ids = [101, 5, 6, 7, 102, 8, 9];
        let starts = [true, true, false, true, true, true, false];
        let eligible = units_of(&ids, &starts, |id| id < 100, &mut out);
        assert_eq!(eligible, 5);
        let pairs: Vec<(u32, u32)> = out.iter().map(|u| (u.start, u.len)).collect();
        assert_eq!(pairs, vec![(1, 2), (3, 1), (5, 2)]);
    }
}
