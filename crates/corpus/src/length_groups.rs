//! The training order with optional length grouping: Hugging Face Trainer's
//! `group_by_length` (`LengthGroupedSampler`, `get_length_grouped_indices` in
//! `trainer_pt_utils.py`). The epoch order ([`EpochOrder`]) is cut into megabatches of up to
//! 50 global batches, and each megabatch is sorted by sequence length, longest first (a
//! stable sort: equal lengths keep their order). The sequences of a batch then have similar
//! lengths, so `document` packing, whose batches pad to their longest sequence, pads little.
//!
//! Like the plain order it is a pure function of (`data_seed`, epoch, the corpus), so a
//! resumed run and every rank of a data-parallel run compute the same positions.
//! Unlike Trainer, the megabatch holding the epoch's longest sequence is not moved first:
//! that would need every length of the epoch before its first step.

use crate::error::CorpusError;
use crate::order::EpochOrder;
use crate::reader::SplitReader;

/// Most global batches in one megabatch (Trainer's `mega_batch_mult` of 50).
pub const MAX_MEGABATCH_BATCHES: u64 = 50;

/// Global batches per megabatch for an epoch of `sequences`: as Trainer,
/// `min(sequences / (4 x batch), 50)` and at least 1, so a small corpus still gets several
/// megabatches (and some randomness between batches).
pub fn megabatch_batches(sequences: u64, global_batch: u64) -> u64 {
    (sequences / (4 * global_batch.max(1))).clamp(1, MAX_MEGABATCH_BATCHES)
}

/// The order of `lengths`' indices from the longest to the shortest, equal lengths in their
/// given order.
pub fn longest_first(lengths: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
    order
}

/// The sequence each position of one epoch trains on.
#[derive(Debug, Clone)]
pub struct TrainOrder {
    epoch: u64,
    order: EpochOrder,
    grouping: Option<Grouping>,
}

#[derive(Debug, Clone)]
struct Grouping {
    /// Positions per megabatch.
    size: u64,
    /// The last megabatch computed: its first position and its rows, in grouped order.
    cached: Option<(u64, Vec<u64>)>,
}

impl TrainOrder {
    /// The plain epoch order.
    pub fn plain(order: EpochOrder, epoch: u64) -> Self {
        Self {
            epoch,
            order,
            grouping: None,
        }
    }

    /// The epoch order grouped by length for global batches of `global_batch` sequences.
    pub fn grouped_by_length(order: EpochOrder, epoch: u64, global_batch: u64) -> Self {
        let size = megabatch_batches(order.len(), global_batch) * global_batch.max(1);
        Self {
            epoch,
            order,
            grouping: Some(Grouping { size, cached: None }),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The row of the split at `position` (< the split's length). Grouped, the first
    /// position of a megabatch reads the lengths of its rows from `reader`.
    pub fn row_at(&mut self, position: u64, reader: &mut SplitReader) -> Result<u64, CorpusError> {
        let Some(grouping) = &mut self.grouping else {
            return Ok(self.order.index_at(position));
        };
        let first = position / grouping.size * grouping.size;
        let stale = grouping.cached.as_ref().is_none_or(|(at, _)| *at != first);
        if stale {
            let end = (first + grouping.size).min(self.order.len());
            let rows: Vec<u64> = (first..end).map(|p| self.order.index_at(p)).collect();
            let lengths = rows
                .iter()
                .map(|&row| reader.sequence_len(row))
                .collect::<Result<Vec<_>, _>>()?;
            let grouped = longest_first(&lengths)
                .into_iter()
                .map(|i| rows[i])
                .collect();
            grouping.cached = Some((first, grouped));
        }
        let (_, rows) = grouping.cached.as_ref().expect("computed above");
        Ok(rows[(position - first) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_is_a_stable_descending_sort() {
        assert_eq!(longest_first(&[3, 9, 3, 12, 9]), vec![3, 1, 4, 0, 2]);
        assert_eq!(longest_first(&[]), Vec::<usize>::new());
        assert_eq!(longest_first(&[5, 5, 5]), vec![0, 1, 2]);
    }

    #[test]
    fn megabatches_hold_up_to_fifty_batches_and_at_least_one() {
        assert_eq!(megabatch_batches(1_000_000, 32), 50);
        assert_eq!(megabatch_batches(32 * 4 * 7 + 5, 32), 7);
        assert_eq!(megabatch_batches(10, 32), 1);
        assert_eq!(megabatch_batches(10, 0), 2);
    }
}
