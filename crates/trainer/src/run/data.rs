//! Training batches, per DESIGN.md's data contract: the order of an epoch is
//! `EpochOrder(data_seed, epoch)` (its megabatches sorted by length with
//! `training.group_by_length`), global batch g of an epoch is positions [g*B, (g+1)*B),
//! rank r takes its contiguous slice micro-batch by micro-batch, and each sequence is masked
//! by `MaskKey::train(seed, epoch, position)`. Everything a step needs is a pure function of
//! (config, epoch, position), so a resumed run restarts the loader at the saved position and
//! sees exactly the batches an uninterrupted run would.
//!
//! Batches are read, masked and collated on a prefetch thread while the model trains.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use mlm_corpus::{EpochOrder, Manifest, Sequence, SplitReader, TrainOrder, rank_slice};
use mlm_masking::{Batch, MaskKey, Masker, MaskingConfig, MaskingUnit, SpecialTokens, collate};
use serde::{Deserialize, Serialize};

use super::RunError;
use super::config::LastBatch;

/// Where the data stream stands: the next position to read in `epoch`'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub position: u64,
}

/// How sequences group into optimizer steps.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlan {
    /// Sequences per micro-batch on one rank.
    pub micro_batch: usize,
    pub accumulation: usize,
    pub rank: u32,
    pub world_size: u32,
    pub last_batch: LastBatch,
}

impl BatchPlan {
    /// Sequences per optimizer step over all ranks (B in DESIGN.md).
    pub fn global_batch(&self) -> u64 {
        (self.micro_batch * self.accumulation) as u64 * u64::from(self.world_size)
    }

    /// Optimizer steps in one epoch of `sequences` sequences.
    pub fn steps_per_epoch(&self, sequences: u64) -> u64 {
        let global = self.global_batch();
        match self.last_batch {
            LastBatch::Drop => sequences / global,
            LastBatch::Keep => sequences.div_ceil(global),
        }
    }

    /// The position after the step that starts at `at`, rolling into the next epoch when
    /// the epoch has no further (full, under `drop`) global batch.
    pub fn advance(&self, at: DataPosition, sequences: u64) -> DataPosition {
        let next = at.position + self.global_batch();
        let steps_left = self.steps_per_epoch(sequences) * self.global_batch();
        if next >= steps_left {
            DataPosition {
                epoch: at.epoch + 1,
                position: 0,
            }
        } else {
            DataPosition {
                epoch: at.epoch,
                position: next,
            }
        }
    }

    /// This rank's positions of the step starting at `at`, cut into micro-batches.
    pub fn micro_batch_positions(&self, at: DataPosition, sequences: u64) -> Vec<Vec<u64>> {
        let global = self.global_batch();
        let global_index = at.position / global;
        let mut slice = rank_slice(global_index, global, self.rank, self.world_size);
        // A kept partial last batch: the same slice arithmetic, cut at the epoch's end.
        slice.end = slice.end.min(sequences);
        slice.start = slice.start.min(slice.end);
        let positions: Vec<u64> = slice.collect();
        positions
            .chunks(self.micro_batch)
            .map(<[u64]>::to_vec)
            .collect()
    }
}

/// The masker of a run: `[masking]` checked, over the corpus's vocabulary and special ids.
pub fn masker_for(masking: &MaskingConfig, manifest: &Manifest) -> Result<Masker, RunError> {
    masking.validate()?;
    if masking.unit() == MaskingUnit::Phrase && manifest.phrases.is_none() {
        return Err(RunError::InvalidConfig(
            "masking.unit = \"phrase\" needs a corpus prepared with phrases, and this one was \
             prepared without: set masking.phrases and/or masking.pmi_ngrams in the config \
             whose [corpus] prepares it (the main job and `prepare` then match them)"
                .into(),
        ));
    }
    let special = &manifest.special_ids;
    Ok(Masker::new(
        masking,
        SpecialTokens {
            vocab_size: manifest.vocab_size,
            pad_id: special.pad,
            mask_id: special.mask,
            special_ids: special.all.clone(),
        },
    )?)
}

/// Which starts the masker's units follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitStarts {
    /// Single tokens.
    None,
    /// Words (`word_start`): whole words and spans.
    Words,
    /// Phrases and the words outside them (`unit_start`, a corpus prepared with phrases).
    Phrases,
}

impl UnitStarts {
    /// The starts a masking unit needs.
    pub fn for_unit(unit: MaskingUnit) -> Self {
        match unit {
            MaskingUnit::Token => Self::None,
            MaskingUnit::Word | MaskingUnit::Span => Self::Words,
            MaskingUnit::Phrase => Self::Phrases,
        }
    }

    /// The starts of `sequence` the masker takes.
    pub fn of(self, sequence: &Sequence) -> Option<&[bool]> {
        match self {
            Self::None => None,
            Self::Words => Some(&sequence.word_starts),
            Self::Phrases => Some(
                sequence
                    .unit_starts
                    .as_deref()
                    .unwrap_or(&sequence.word_starts),
            ),
        }
    }
}

/// The training rate of each optimizer step (`masking.mlm_probability_end`).
#[derive(Debug, Clone)]
pub struct RatePlan {
    pub masking: MaskingConfig,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
}

impl RatePlan {
    /// The rate of the step that starts at `at` (its global step index, from 0).
    pub fn at(&self, at: DataPosition, global_batch: u64) -> f64 {
        let step = at.epoch * self.steps_per_epoch + at.position / global_batch.max(1);
        self.masking.probability_at(step, self.total_steps)
    }
}

/// Everything the loader needs to mask and collate.
pub struct MaskPlan {
    pub masker: Arc<Masker>,
    pub seed: u64,
    pub data_seed: u64,
    /// Blocks of the epoch shuffle: the corpus's Parquet row group, the unit of reading.
    pub order_block: u64,
    pub unit_starts: UnitStarts,
    pub rate: RatePlan,
    pub pad_id: u32,
    pub mask_id: u32,
    pub pad_to_multiple_of: Option<usize>,
    /// Sort each megabatch of the epoch order by length (`training.group_by_length`).
    pub group_by_length: bool,
}

impl MaskPlan {
    /// The order of `epoch` over `sequences`, grouped by length for `plan`'s global batch
    /// when asked.
    pub fn order(&self, plan: &BatchPlan, sequences: u64, epoch: u64) -> TrainOrder {
        let order = EpochOrder::with_layout(
            sequences,
            self.data_seed,
            epoch,
            self.order_block,
            mlm_corpus::order::DEFAULT_WINDOW,
        );
        if self.group_by_length {
            TrainOrder::grouped_by_length(order, epoch, plan.global_batch())
        } else {
            TrainOrder::plain(order, epoch)
        }
    }
}

/// The micro-batches of one optimizer step on this rank.
pub struct StepBatches {
    pub micro_batches: Vec<Batch>,
    /// Masked tokens in this step on this rank (the loss normaliser, before summing ranks).
    pub masked_tokens: usize,
    /// Non-padding tokens in this step on this rank.
    pub tokens: usize,
    /// Positions of this step's padded batches on this rank (tokens and padding).
    pub slots: usize,
    /// The position this step started at, and the one after it.
    pub start: DataPosition,
    pub next: DataPosition,
}

/// Reads the step starting at `at` (a pure function of its arguments; `order` keeps the
/// epoch's order between calls, and is replaced when `at` is in another epoch).
pub fn read_step(
    reader: &mut SplitReader,
    plan: &BatchPlan,
    masks: &MaskPlan,
    at: DataPosition,
    order: &mut Option<TrainOrder>,
) -> Result<StepBatches, RunError> {
    let sequences = reader.len();
    if order.as_ref().is_none_or(|o| o.epoch() != at.epoch) {
        *order = Some(masks.order(plan, sequences, at.epoch));
    }
    let order = order.as_mut().expect("set above");
    let mut micro_batches = Vec::with_capacity(plan.accumulation);
    let mut masked_tokens = 0;
    let mut tokens = 0;
    let mut slots = 0;
    let probability = masks.rate.at(at, plan.global_batch());
    for positions in plan.micro_batch_positions(at, sequences) {
        let mut masked = Vec::with_capacity(positions.len());
        for position in positions {
            let row = order.row_at(position, reader)?;
            let sequence = reader.get(row)?;
            tokens += sequence.input_ids.len();
            masked.push(masks.masker.mask_at(
                &sequence.input_ids,
                masks.unit_starts.of(&sequence),
                MaskKey::train(masks.seed, at.epoch, position),
                probability,
            ));
        }
        let batch = collate(
            &masked,
            masks.pad_id,
            masks.mask_id,
            masks.pad_to_multiple_of,
        );
        masked_tokens += batch.masked_tokens();
        slots += batch.batch_size * batch.seq_len;
        micro_batches.push(batch);
    }
    Ok(StepBatches {
        micro_batches,
        masked_tokens,
        tokens,
        slots,
        start: at,
        next: plan.advance(at, sequences),
    })
}

/// Reads steps ahead on a thread, starting at a given position.
pub struct Prefetcher {
    receiver: Receiver<Result<StepBatches, RunError>>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetcher {
    pub fn start(
        mut reader: SplitReader,
        plan: BatchPlan,
        masks: MaskPlan,
        start: DataPosition,
        depth: usize,
    ) -> Self {
        let (sender, receiver) = sync_channel(depth);
        let thread = std::thread::Builder::new()
            .name("mlm-loader".into())
            .spawn(move || produce(&mut reader, &plan, &masks, start, &sender))
            .expect("spawning the loader thread");
        Self {
            receiver,
            thread: Some(thread),
        }
    }

    /// The next step's batches, or the loader's error.
    pub fn next_step(&self) -> Result<StepBatches, RunError> {
        self.receiver.recv().map_err(|_| RunError::LoaderStopped)?
    }
}

fn produce(
    reader: &mut SplitReader,
    plan: &BatchPlan,
    masks: &MaskPlan,
    start: DataPosition,
    sender: &SyncSender<Result<StepBatches, RunError>>,
) {
    let mut at = start;
    let mut order = None;
    loop {
        let step = read_step(reader, plan, masks, at, &mut order);
        let failed = step.is_err();
        if let Ok(step) = &step {
            at = step.next;
        }
        // The receiver is gone when training ends: stop quietly.
        if sender.send(step).is_err() || failed {
            return;
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Unblock the producer (its send fails once the receiver is dropped), then join.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.receiver, dead));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(micro: usize, accumulation: usize, world: u32, last: LastBatch) -> BatchPlan {
        BatchPlan {
            micro_batch: micro,
            accumulation,
            rank: 0,
            world_size: world,
            last_batch: last,
        }
    }

    #[test]
    fn steps_per_epoch_follows_the_last_batch_policy() {
        assert_eq!(plan(4, 2, 1, LastBatch::Drop).steps_per_epoch(20), 2);
        assert_eq!(plan(4, 2, 1, LastBatch::Keep).steps_per_epoch(20), 3);
        assert_eq!(plan(4, 2, 2, LastBatch::Drop).steps_per_epoch(20), 1);
    }

    #[test]
    fn advance_rolls_into_the_next_epoch() {
        let p = plan(4, 2, 1, LastBatch::Drop);
        let at = DataPosition {
            epoch: 0,
            position: 8,
        };
        assert_eq!(
            p.advance(at, 20),
            DataPosition {
                epoch: 1,
                position: 0
            }
        );
        let at = DataPosition {
            epoch: 0,
            position: 0,
        };
        assert_eq!(
            p.advance(at, 20),
            DataPosition {
                epoch: 0,
                position: 8
            }
        );
        let keep = plan(4, 2, 1, LastBatch::Keep);
        let at = DataPosition {
            epoch: 0,
            position: 16,
        };
        assert_eq!(
            keep.micro_batch_positions(at, 20),
            vec![vec![16, 17, 18, 19]]
        );
        assert_eq!(
            keep.advance(at, 20),
            DataPosition {
                epoch: 1,
                position: 0
            }
        );
    }

    #[test]
    fn ranks_split_a_global_batch_into_their_micro_batches() {
        let at = DataPosition {
            epoch: 0,
            position: 8,
        };
        let mut seen = Vec::new();
        for rank in 0..2 {
            let mut p = plan(2, 2, 2, LastBatch::Drop);
            p.rank = rank;
            let micro = p.micro_batch_positions(at, 100);
            assert_eq!(micro.len(), 2);
            seen.extend(micro.into_iter().flatten());
        }
        assert_eq!(seen, (8..16).collect::<Vec<_>>());
    }
}
