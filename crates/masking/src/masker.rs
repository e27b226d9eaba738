//! The masker: which tokens of a sequence are predicted, and what the model sees there.
//!
//! Semantics follow Hugging Face `DataCollatorForLanguageModeling.torch_mask_tokens`
//! (transformers/data/data_collator.py): each eligible token is selected with
//! `mlm_probability` (a Bernoulli draw per token); special tokens are never selected; labels
//! are -100 elsewhere; a selected token becomes the mask token with `mask_replace_prob`,
//! a random token with `random_replace_prob`, and stays otherwise (HF draws the second
//! choice as Bernoulli(random / (1 - mask)) among the rest, the same distribution). Three
//! faults of that collator are fixed on purpose:
//! - randomness is a pure function of [`MaskKey`] and the position (HF: one global generator,
//!   so masks depend on worker count, batch composition and resume point);
//! - random replacements are drawn from the non-special vocabulary (HF draws from
//!   `len(tokenizer)`, so a "random" token can be [PAD], [CLS] or [MASK]);
//! - held-out masks are fixed by (eval_seed, position) (HF re-masks at every evaluation).
//!
//! Whole-word masking follows the original BERT `create_masked_lm_predictions`
//! (google-research/bert create_pretraining_data.py) and HF's whole-word path: words are
//! selected, every piece of a selected word is predicted, and 80/10/10 applies per piece
//! (HF's v5 collator forces [MASK] for every piece of a whole word; BERT does not).
//!
//! Spans and phrases (units.rs) are drawn whole until a token budget is spent, and 80/10/10
//! applies per selected run, as SpanBERT's `span_masking` does.

use std::ops::Range;

use crate::config::{MaskingConfig, MaskingUnit, SelectionMode};
use crate::rng::{Purpose, Stream, below, threshold};
use crate::special::{SpecialTokens, VocabTable};
use crate::units::{Budget, SpanLengths, Unit, select_runs, units_of};
use crate::{MaskKey, MaskingError};

/// The label of a position that is not predicted (PyTorch `CrossEntropyLoss` ignore_index).
pub const IGNORE_INDEX: i64 = -100;

/// A masked sequence: what the model sees and what it must predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedSequence {
    pub input_ids: Vec<u32>,
    /// The original id where a token was selected, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
}

/// Positions drawn per bulk generation of selection words (16 Philox blocks).
const CHUNK: usize = 64;

/// Masks sequences; cheap to share between threads (`&Masker` is all a worker needs).
#[derive(Debug, Clone)]
pub struct Masker {
    config: MaskingConfig,
    special: SpecialTokens,
    vocab: VocabTable,
    unit: MaskingUnit,
    span_lengths: SpanLengths,
    mask_threshold: u64,
    mask_or_random_threshold: u64,
}

impl Masker {
    /// Validates the config and the special tokens, and builds the per-id tables.
    pub fn new(config: &MaskingConfig, special: SpecialTokens) -> Result<Self, MaskingError> {
        config.validate()?;
        special.validate()?;
        let vocab = VocabTable::new(&special);
        let (mask, random) = config.replace_split();
        if random > 0.0 && mask < 1.0 && vocab.replacements().is_empty() {
            return Err(MaskingError::NoReplacementTokens {
                vocab_size: special.vocab_size,
                random_replace_prob: config.random_replace_prob,
            });
        }
        Ok(Self {
            config: config.clone(),
            special,
            vocab,
            unit: config.unit(),
            span_lengths: SpanLengths::new(config.span_geometric_p, config.span_max_words),
            mask_threshold: threshold(mask),
            mask_or_random_threshold: threshold(mask + random),
        })
    }

    pub fn config(&self) -> &MaskingConfig {
        &self.config
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// May this id be selected (not special, not pad, not mask, inside the vocabulary)?
    pub fn is_maskable(&self, id: u32) -> bool {
        self.vocab.maskable(id)
    }

    /// The unit one selection takes.
    pub fn unit(&self) -> MaskingUnit {
        self.unit
    }

    /// Masks one sequence at `mlm_probability`. `word_starts[i]` is true where token i begins
    /// a unit: a word for `unit = "word"` and `"span"`, a phrase or word for `"phrase"`
    /// (unused for `"token"`; without it every token is its own unit). A `word_starts`
    /// shorter than `input_ids` counts the missing entries as starts; [`Masker::try_mask`]
    /// rejects a length mismatch instead.
    pub fn mask(
        &self,
        input_ids: &[u32],
        word_starts: Option<&[bool]>,
        key: MaskKey,
    ) -> MaskedSequence {
        self.mask_at(input_ids, word_starts, key, self.config.mlm_probability)
    }

    /// [`Masker::mask`] at another rate (a point of the `mlm_probability_end` schedule).
    pub fn mask_at(
        &self,
        input_ids: &[u32],
        word_starts: Option<&[bool]>,
        key: MaskKey,
        probability: f64,
    ) -> MaskedSequence {
        self.mask_with_runs(input_ids, word_starts, key, probability, None)
    }

    /// [`Masker::mask_at`], also listing the runs that were selected as one (spans and
    /// phrases; a token or word is listed as its own run) in the order drawn.
    pub fn mask_with_runs(
        &self,
        input_ids: &[u32],
        word_starts: Option<&[bool]>,
        key: MaskKey,
        probability: f64,
        runs: Option<&mut Vec<Range<usize>>>,
    ) -> MaskedSequence {
        let mut out = MaskedSequence {
            input_ids: input_ids.to_vec(),
            labels: vec![IGNORE_INDEX; input_ids.len()],
        };
        let mut replace = Replacer::new(
            self,
            key,
            input_ids,
            &mut out.input_ids,
            &mut out.labels,
            None,
        );
        replace.runs = runs;
        self.select(word_starts, key, probability, &mut replace);
        out
    }

    /// [`Masker::mask`], with `word_starts` checked to match `input_ids` in length.
    pub fn try_mask(
        &self,
        input_ids: &[u32],
        word_starts: Option<&[bool]>,
        key: MaskKey,
    ) -> Result<MaskedSequence, MaskingError> {
        if let Some(ws) = word_starts.filter(|ws| ws.len() != input_ids.len()) {
            return Err(MaskingError::WordStartsLength {
                input_ids: input_ids.len(),
                word_starts: ws.len(),
            });
        }
        Ok(self.mask(input_ids, word_starts, key))
    }

    /// The masking itself, writing into caller-owned buffers (so collation can mask straight
    /// into the batch). `out_ids` must hold `input_ids` and `labels` [`IGNORE_INDEX`] on
    /// entry; only selected positions are written. With `positions = Some((list, offset))`,
    /// `offset + i` of every selected position i is appended to `list`, ascending. Returns
    /// the number selected.
    pub(crate) fn mask_into<T: Copy + From<u32>>(
        &self,
        input_ids: &[u32],
        word_starts: Option<&[bool]>,
        key: MaskKey,
        out_ids: &mut [T],
        labels: &mut [i64],
        positions: Option<(&mut Vec<i64>, i64)>,
    ) -> usize {
        let mut replace = Replacer::new(self, key, input_ids, out_ids, labels, positions);
        self.select(word_starts, key, self.config.mlm_probability, &mut replace);
        replace.selected
    }

    /// Selects at `probability` by the configured unit and selection mode, applying 80/10/10
    /// through `replace`.
    fn select<T: Copy + From<u32>>(
        &self,
        word_starts: Option<&[bool]>,
        key: MaskKey,
        probability: f64,
        replace: &mut Replacer<'_, T>,
    ) {
        let select = Stream::new(key, Purpose::Select);
        let rate = Rate {
            probability,
            threshold: threshold(probability),
        };
        let starts = word_starts.filter(|_| self.unit != MaskingUnit::Token);
        match (self.unit, self.config.selection, starts) {
            (MaskingUnit::Span | MaskingUnit::Phrase, _, ws) => {
                self.budgeted_runs(select, rate, ws.unwrap_or(&[]), replace)
            }
            (_, SelectionMode::Independent, None) => self.independent_tokens(select, rate, replace),
            (_, SelectionMode::Independent, Some(ws)) => {
                self.independent_words(select, rate, ws, replace)
            }
            (_, SelectionMode::Exact, None) => self.exact_tokens(select, rate, replace),
            (_, SelectionMode::Exact, Some(ws)) => {
                self.exact_words(select, rate, ws, replace);
                // Words were taken in random order; the flat list must ascend.
                if let Some((list, _)) = replace.positions.as_mut() {
                    let first = list.len() - replace.selected;
                    list[first..].sort_unstable();
                }
            }
        }
    }

    /// Spans (`unit = "span"`) or phrases (`"phrase"`) drawn whole until p x eligible tokens
    /// are spent (units.rs), 80/10/10 per run. The flat position list must ascend, so the
    /// runs (drawn in random order) are applied in sequence order.
    fn budgeted_runs(
        &self,
        select: Stream,
        rate: Rate,
        unit_starts: &[bool],
        replace: &mut Replacer<'_, impl Copy + From<u32>>,
    ) {
        let mut units = Vec::with_capacity(replace.input_ids.len() / 2 + 1);
        let eligible = units_of(
            replace.input_ids,
            unit_starts,
            |id| self.vocab.maskable(id),
            &mut units,
        );
        let budget = Budget {
            units: &units,
            tokens: rate.probability * eligible as f64,
            lengths: (self.unit == MaskingUnit::Span).then_some(&self.span_lengths),
        };
        let mut runs: Vec<Unit> = Vec::new();
        select_runs(select, &budget, |run| runs.push(run));
        if let Some(list) = replace.runs.as_mut() {
            list.extend(
                runs.iter()
                    .map(|r| r.start as usize..(r.start + r.len) as usize),
            );
        }
        runs.sort_unstable_by_key(|r| r.start);
        for run in runs {
            replace.apply_run(run.start as usize..(run.start + run.len) as usize);
        }
    }

    /// `max(1, round(p * n))` capped by `max_predictions_per_seq` and by n: the count of the
    /// original BERT `create_masked_lm_predictions` (which counts [CLS]/[SEP] in n; we count
    /// only the n eligible tokens, so the rate over eligible tokens is p).
    pub fn exact_count(&self, eligible: usize) -> usize {
        self.exact_count_at(eligible, self.config.mlm_probability)
    }

    fn exact_count_at(&self, eligible: usize, p: f64) -> usize {
        if eligible == 0 || p == 0.0 {
            return 0;
        }
        let k = ((p * eligible as f64).round() as usize)
            .max(1)
            .min(eligible);
        k.min(self.config.max_predictions_per_seq.unwrap_or(usize::MAX))
    }

    /// HF semantics: a Bernoulli(p) draw per eligible token, on the token's own random word.
    /// The draws of a chunk are gathered branch-free into a bit set first: a data-dependent
    /// branch taken 15% of the time at random would mispredict on most selected tokens.
    fn independent_tokens(
        &self,
        select: Stream,
        rate: Rate,
        replace: &mut Replacer<'_, impl Copy + From<u32>>,
    ) {
        let mut words = [0u32; CHUNK];
        let input_ids = replace.input_ids;
        for (c, ids) in input_ids.chunks(CHUNK).enumerate() {
            select.fill(c * CHUNK / 4, &mut words[..ids.len()]);
            let mut bits = 0u64;
            for (j, (&id, &w)) in ids.iter().zip(&words).enumerate() {
                let hit = (u64::from(w) < rate.threshold) & self.vocab.maskable(id);
                bits |= u64::from(hit) << j;
            }
            while bits != 0 {
                replace.apply(c * CHUNK + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }

    /// Each word is selected with p on the random word of its first piece; every piece of a
    /// selected word is predicted, so the expected predicted-token rate is still p.
    fn independent_words(
        &self,
        select: Stream,
        rate: Rate,
        word_starts: &[bool],
        replace: &mut Replacer<'_, impl Copy + From<u32>>,
    ) {
        let mut words = [0u32; CHUNK];
        let mut in_selected_word = false;
        let mut prev_maskable = false;
        let input_ids = replace.input_ids;
        for (c, ids) in input_ids.chunks(CHUNK).enumerate() {
            select.fill(c * CHUNK / 4, &mut words[..ids.len()]);
            for (j, (&id, &w)) in ids.iter().zip(&words).enumerate() {
                let i = c * CHUNK + j;
                if !self.vocab.maskable(id) {
                    prev_maskable = false;
                    continue;
                }
                if is_word_start(word_starts, i, prev_maskable) {
                    in_selected_word = u64::from(w) < rate.threshold;
                }
                prev_maskable = true;
                if in_selected_word {
                    replace.apply(i);
                }
            }
        }
    }

    /// Exactly k of the n eligible tokens, a uniformly random k-subset drawn in one pass by
    /// selection sampling (Knuth, TAOCP vol. 2, Algorithm S): position i is taken with
    /// probability (still needed) / (still left). No scratch memory.
    fn exact_tokens(
        &self,
        select: Stream,
        rate: Rate,
        replace: &mut Replacer<'_, impl Copy + From<u32>>,
    ) {
        let input_ids = replace.input_ids;
        let eligible = input_ids
            .iter()
            .filter(|&&id| self.vocab.maskable(id))
            .count();
        let mut need = self.exact_count_at(eligible, rate.probability) as u64;
        let mut left = eligible as u64;
        let mut words = [0u32; CHUNK];
        for (c, ids) in input_ids.chunks(CHUNK).enumerate() {
            if need == 0 {
                break;
            }
            select.fill(c * CHUNK / 4, &mut words[..ids.len()]);
            for (j, (&id, &w)) in ids.iter().zip(&words).enumerate() {
                if !self.vocab.maskable(id) {
                    continue;
                }
                // floor(w * left / 2^32) is uniform on 0..left.
                if (u64::from(w) * left) >> 32 < need {
                    replace.apply(c * CHUNK + j);
                    need -= 1;
                }
                left -= 1;
            }
        }
    }

    /// The original BERT procedure: shuffle the words, then take whole words in that order
    /// while the count stays within k (a word that would overshoot is skipped), so the count
    /// is at most k and usually k. The shuffle sorts words by the random word of their first
    /// piece (ties, 2^-32 likely, by position).
    fn exact_words(
        &self,
        select: Stream,
        rate: Rate,
        word_starts: &[bool],
        replace: &mut Replacer<'_, impl Copy + From<u32>>,
    ) {
        let ids = replace.input_ids;
        // (random key, first piece, pieces): one allocation per sequence, not per token.
        let mut words: Vec<(u32, u32, u32)> = Vec::with_capacity(ids.len() / 2 + 1);
        let mut eligible = 0usize;
        let mut prev_maskable = false;
        let mut buf = [0u32; CHUNK];
        for (c, chunk) in ids.chunks(CHUNK).enumerate() {
            select.fill(c * CHUNK / 4, &mut buf[..chunk.len()]);
            for (j, (&id, &w)) in chunk.iter().zip(&buf).enumerate() {
                let i = c * CHUNK + j;
                if !self.vocab.maskable(id) {
                    prev_maskable = false;
                    continue;
                }
                if is_word_start(word_starts, i, prev_maskable) {
                    words.push((w, i as u32, 0));
                }
                if let Some(word) = words.last_mut() {
                    word.2 += 1;
                }
                prev_maskable = true;
                eligible += 1;
            }
        }
        let k = self.exact_count_at(eligible, rate.probability);
        words.sort_unstable();
        let mut count = 0;
        for &(_, start, len) in &words {
            if count >= k {
                break;
            }
            let (start, len) = (start as usize, len as usize);
            if count + len > k {
                continue;
            }
            (start..start + len).for_each(|i| replace.apply(i));
            count += len;
        }
    }
}

/// Token i (eligible) begins a word when the corpus says so, when it follows a token that
/// cannot be selected (a special token is a word of its own), or past the end of
/// `word_starts`.
#[inline(always)]
fn is_word_start(word_starts: &[bool], i: usize, prev_maskable: bool) -> bool {
    !prev_maskable || word_starts.get(i).copied().unwrap_or(true)
}

/// The selection rate of one sequence.
#[derive(Clone, Copy)]
struct Rate {
    probability: f64,
    threshold: u64,
}

/// Applies the 80/10/10 choice to a selected position: one Philox block per selected
/// position (word 0 chooses, words 1-2 give a 64-bit draw for the random id), indexed by the
/// position, so the choice never depends on which other tokens were selected.
struct Replacer<'a, T> {
    stream: Stream,
    mask_id: u32,
    mask_threshold: u64,
    mask_or_random_threshold: u64,
    replacements: &'a [u32],
    input_ids: &'a [u32],
    out_ids: &'a mut [T],
    labels: &'a mut [i64],
    selected: usize,
    positions: Option<(&'a mut Vec<i64>, i64)>,
    /// Runs selected as one (span and phrase units), for `inspect`.
    runs: Option<&'a mut Vec<Range<usize>>>,
}

impl<'a, T: Copy + From<u32>> Replacer<'a, T> {
    fn new(
        masker: &'a Masker,
        key: MaskKey,
        input_ids: &'a [u32],
        out_ids: &'a mut [T],
        labels: &'a mut [i64],
        positions: Option<(&'a mut Vec<i64>, i64)>,
    ) -> Self {
        let n = input_ids.len().min(out_ids.len()).min(labels.len());
        Replacer {
            stream: Stream::new(key, Purpose::Replace),
            mask_id: masker.special.mask_id,
            mask_threshold: masker.mask_threshold,
            mask_or_random_threshold: masker.mask_or_random_threshold,
            replacements: masker.vocab.replacements(),
            input_ids: &input_ids[..n],
            out_ids: &mut out_ids[..n],
            labels: &mut labels[..n],
            selected: 0,
            positions,
            runs: None,
        }
    }

    #[inline(always)]
    fn apply(&mut self, i: usize) {
        let [choice, _, _, _] = self.stream.block(i);
        self.apply_choice(i, choice);
    }

    /// One 80/10/10 choice for the whole run (drawn at its first position, as SpanBERT's
    /// `span_masking` draws one per span); random ids are still drawn per position.
    fn apply_run(&mut self, run: Range<usize>) {
        let [choice, _, _, _] = self.stream.block(run.start);
        for i in run {
            self.apply_choice(i, choice);
        }
    }

    #[inline(always)]
    fn apply_choice(&mut self, i: usize, choice: u32) {
        self.labels[i] = i64::from(self.input_ids[i]);
        self.selected += 1;
        if let Some((list, offset)) = self.positions.as_mut() {
            list.push(*offset + i as i64);
        }
        let choice = u64::from(choice);
        if choice < self.mask_threshold {
            self.out_ids[i] = T::from(self.mask_id);
        } else if choice < self.mask_or_random_threshold {
            let [_, hi, lo, _] = self.stream.block(i);
            let draw = u64::from(hi) << 32 | u64::from(lo);
            self.out_ids[i] = T::from(self.replacements[below(draw, self.replacements.len())]);
        }
    }
}
