//! The masked positions of a padded batch grouped by sequence, so that a network may run its
//! last layer's queries, attention output and feed-forward on the masked tokens alone: only
//! their final hidden states reach the sparse head, and in a pre-norm or post-norm layer every
//! step after attention works row by row. The keys and values still come from every token.
//! That is 85% of the last layer's rows skipped at 15% masking (a sixth of a 6-layer model's
//! encoder FLOPs); the logits are those of the full forward up to rounding.
//!
//! Attention is per sequence, so the queries are laid out `[B, Q]`: sequence `b`'s masked
//! positions first, in order, then unused slots (position 0), `Q` the most any sequence has.
//! Built on the host from the collator's flat positions (`b * T + t`), which costs nothing on
//! the device and no sync.

use tch::Tensor;

/// Masked positions grouped by sequence (see the module comment).
#[derive(Debug)]
pub struct MaskedQueries {
    /// `[B, Q]` Int64: each sequence's masked positions `t`, then 0 in the unused slots.
    positions: Tensor,
    /// `[M]` Int64: the slot `b * Q + j` of each flat masked position, in their order.
    slots: Tensor,
}

impl MaskedQueries {
    /// The grouping of the flat positions `flat` (`b * T + t`, any order) of a `[batch,
    /// seq_len]` batch; `upload` takes each host tensor to the device. `None` where there is
    /// nothing to group (no masked position, or one outside the batch).
    pub fn new(
        flat: &[i64],
        batch: usize,
        seq_len: usize,
        upload: impl Fn(Tensor) -> Tensor,
    ) -> Option<Self> {
        let grouped = group_by_sequence(flat, batch, seq_len)?;
        let per_sequence = grouped.positions.len() / batch;
        let positions =
            Tensor::from_slice(&grouped.positions).view([batch as i64, per_sequence as i64]);
        Some(Self {
            positions: upload(positions),
            slots: upload(Tensor::from_slice(&grouped.slots)),
        })
    }

    /// `[B, Q]` positions `t` of each sequence's masked tokens (0 in unused slots).
    pub fn positions(&self) -> &Tensor {
        &self.positions
    }

    /// The rows of `[B, T, H]` states at each sequence's masked positions: `[B, Q, H]`.
    pub fn gather(&self, hidden: &Tensor) -> Tensor {
        let (batch, _, width) = hidden.size3().expect("hidden states are [B, T, H]");
        let per_sequence = self.positions.size()[1];
        let index = (self.positions.unsqueeze(-1)).expand([batch, per_sequence, width], false);
        hidden.gather(1, &index, false)
    }

    /// `[B, Q, H]` per-slot states back in the order of the flat masked positions: `[M, H]`
    /// (the unused slots dropped).
    pub fn rows(&self, per_slot: &Tensor) -> Tensor {
        let width = per_slot
            .size()
            .last()
            .copied()
            .expect("states have a width");
        per_slot.reshape([-1, width]).index_select(0, &self.slots)
    }
}

/// The host side of [`MaskedQueries`].
#[derive(Debug, PartialEq, Eq)]
struct Grouped {
    /// `B * Q` positions, row-major.
    positions: Vec<i64>,
    /// One slot per flat position.
    slots: Vec<i64>,
}

fn group_by_sequence(flat: &[i64], batch: usize, seq_len: usize) -> Option<Grouped> {
    let (batch_i, seq_i) = (batch as i64, seq_len as i64);
    if flat.is_empty() || flat.iter().any(|&p| p < 0 || p >= batch_i * seq_i) {
        return None;
    }
    let mut counts = vec![0_i64; batch];
    let mut taken = Vec::with_capacity(flat.len());
    for &position in flat {
        let sequence = (position / seq_i) as usize;
        taken.push((sequence, counts[sequence]));
        counts[sequence] += 1;
    }
    let per_sequence = counts.iter().copied().max().unwrap_or(0);
    let mut positions = vec![0; batch * per_sequence as usize];
    let slots = (flat.iter().zip(&taken))
        .map(|(&position, &(sequence, j))| {
            let slot = sequence as i64 * per_sequence + j;
            positions[slot as usize] = position % seq_i;
            slot
        })
        .collect();
    Some(Grouped { positions, slots })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_grouped_per_sequence_and_each_finds_its_slot() {
        // 3 sequences of 5: sequence 0 masks t = 1, 4; sequence 1 none; sequence 2 t = 0, 2, 3
        // (given out of order).
        let flat = [4, 1, 10, 13, 12];
        let grouped = group_by_sequence(&flat, 3, 5).unwrap();
        assert_eq!(grouped.positions, [4, 1, 0, 0, 0, 0, 0, 3, 2]);
        assert_eq!(grouped.slots, [0, 1, 6, 7, 8]);
        for (&position, &slot) in flat.iter().zip(&grouped.slots) {
            let sequence = slot / 3;
            assert_eq!(sequence * 5 + grouped.positions[slot as usize], position);
        }
    }

    #[test]
    fn nothing_to_group_is_none() {
        assert_eq!(group_by_sequence(&[], 2, 4), None);
        assert_eq!(group_by_sequence(&[8], 2, 4), None);
        assert_eq!(group_by_sequence(&[-1], 2, 4), None);
    }
}
