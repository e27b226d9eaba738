//! Collation: masked sequences to padded row-major batch arrays, plus the flat list of
//! predicted positions for an MLM head that runs only there.
//!
//! Padding follows Hugging Face `DataCollatorForLanguageModeling` (`tokenizer.pad` /
//! `_torch_collate_batch`, transformers/data/data_collator.py): right padding with the pad id
//! to the longest sequence, rounded up to `pad_to_multiple_of`; attention mask 1 on real
//! tokens, 0 on padding; labels -100 on padding.

use crate::masker::IGNORE_INDEX;
use crate::{MaskKey, MaskedSequence, Masker};

/// One batch, every array row-major `[batch_size * seq_len]` (i64, what the trainer's
/// tensors take).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub batch_size: usize,
    /// Length after padding.
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub labels: Vec<i64>,
    /// Flat index `b * seq_len + t` of every label != -100, ascending.
    pub masked_positions: Vec<i64>,
    /// The original ids at `masked_positions`.
    pub masked_labels: Vec<i64>,
    /// Whether the input at each of `masked_positions` is the mask token (accuracy on [MASK]
    /// only; random and kept tokens are the other predicted positions).
    pub masked_is_mask_token: Vec<bool>,
}

impl Batch {
    /// Number of predicted tokens (the loss divisor of this batch).
    pub fn masked_tokens(&self) -> usize {
        self.masked_positions.len()
    }

    /// Sets the shape and fills `input_ids` and `attention_mask` row by row (each element
    /// written once, buffers reused), `labels` with -100.
    fn reset(
        &mut self,
        rows: impl Iterator<Item = impl ExactSizeIterator<Item = u32>>,
        batch_size: usize,
        seq_len: usize,
        pad_id: u32,
    ) {
        let cells = batch_size * seq_len;
        self.batch_size = batch_size;
        self.seq_len = seq_len;
        self.input_ids.clear();
        self.input_ids.reserve_exact(cells);
        self.attention_mask.clear();
        self.attention_mask.reserve_exact(cells);
        for row in rows {
            let n = row.len();
            self.input_ids.extend(row.map(i64::from));
            self.input_ids
                .resize(self.input_ids.len() + seq_len - n, i64::from(pad_id));
            self.attention_mask.resize(self.attention_mask.len() + n, 1);
            self.attention_mask
                .resize(self.attention_mask.len() + seq_len - n, 0);
        }
        self.labels.clear();
        self.labels.resize(cells, IGNORE_INDEX);
        self.masked_positions.clear();
    }

    /// Branch-free per 64 labels (a bit set of the predicted ones, then its set bits): a
    /// branch on "is this label predicted" would mispredict on most predicted tokens.
    fn index_masked(&mut self, mask_id: u32) {
        self.masked_positions.clear();
        self.masked_positions.reserve(self.labels.len() / 6);
        for (c, chunk) in self.labels.chunks(64).enumerate() {
            let mut bits = 0u64;
            for (j, &label) in chunk.iter().enumerate() {
                bits |= u64::from(label != IGNORE_INDEX) << j;
            }
            while bits != 0 {
                self.masked_positions
                    .push((c * 64 + bits.trailing_zeros() as usize) as i64);
                bits &= bits - 1;
            }
        }
        self.gather_masked(mask_id);
    }

    /// `masked_labels` and `masked_is_mask_token` from `masked_positions`.
    fn gather_masked(&mut self, mask_id: u32) {
        let mask_id = i64::from(mask_id);
        let (labels, inputs) = (&self.labels, &self.input_ids);
        self.masked_labels.clear();
        self.masked_labels
            .extend(self.masked_positions.iter().map(|&p| labels[p as usize]));
        self.masked_is_mask_token.clear();
        self.masked_is_mask_token.extend(
            self.masked_positions
                .iter()
                .map(|&p| inputs[p as usize] == mask_id),
        );
    }
}

/// Padded length: the longest sequence rounded up to a multiple of `pad_to_multiple_of`
/// (`None`, 0 or 1: no rounding).
pub fn padded_len(longest: usize, pad_to_multiple_of: Option<usize>) -> usize {
    match pad_to_multiple_of {
        Some(m) if m > 1 => longest.div_ceil(m) * m,
        _ => longest,
    }
}

/// Pads masked sequences into a batch. Labels pair with input ids position by position
/// (missing labels count as -100, extra ones are ignored).
pub fn collate(
    seqs: &[MaskedSequence],
    pad_id: u32,
    mask_id: u32,
    pad_to_multiple_of: Option<usize>,
) -> Batch {
    let mut batch = Batch::default();
    collate_into(seqs, pad_id, mask_id, pad_to_multiple_of, &mut batch);
    batch
}

/// [`collate`] into a batch whose buffers are reused.
pub fn collate_into(
    seqs: &[MaskedSequence],
    pad_id: u32,
    mask_id: u32,
    pad_to_multiple_of: Option<usize>,
    batch: &mut Batch,
) {
    let longest = seqs.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
    let seq_len = padded_len(longest, pad_to_multiple_of);
    batch.reset(
        seqs.iter().map(|s| s.input_ids.iter().copied()),
        seqs.len(),
        seq_len,
        pad_id,
    );
    for (r, seq) in seqs.iter().enumerate() {
        let row = &mut batch.labels[r * seq_len..r * seq_len + seq.input_ids.len()];
        let n = row.len().min(seq.labels.len());
        row[..n].copy_from_slice(&seq.labels[..n]);
    }
    batch.index_masked(mask_id);
}

/// One sequence to mask into a batch.
#[derive(Debug, Clone, Copy)]
pub struct MaskInput<'a> {
    pub input_ids: &'a [u32],
    pub word_starts: Option<&'a [bool]>,
    pub key: MaskKey,
}

impl Masker {
    /// Masks and collates in one pass, straight into the batch arrays (no per-sequence
    /// vectors). Equal to `collate(&items.map(mask), pad, mask, pad_to_multiple_of)`.
    pub fn mask_batch(&self, items: &[MaskInput<'_>], pad_to_multiple_of: Option<usize>) -> Batch {
        let mut batch = Batch::default();
        self.mask_batch_into(items, pad_to_multiple_of, &mut batch);
        batch
    }

    /// [`Masker::mask_batch`] into a batch whose buffers are reused: a loader that keeps
    /// one `Batch` per slot allocates (and page-faults) nothing in steady state.
    pub fn mask_batch_into(
        &self,
        items: &[MaskInput<'_>],
        pad_to_multiple_of: Option<usize>,
        batch: &mut Batch,
    ) {
        let special = self.special_tokens();
        let longest = items.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
        let seq_len = padded_len(longest, pad_to_multiple_of);
        batch.reset(
            items.iter().map(|s| s.input_ids.iter().copied()),
            items.len(),
            seq_len,
            special.pad_id,
        );
        batch.masked_positions.reserve(batch.labels.len() / 6);
        for (r, item) in items.iter().enumerate() {
            let row = r * seq_len..r * seq_len + item.input_ids.len();
            let positions = Some((&mut batch.masked_positions, (r * seq_len) as i64));
            let (ids, labels) = (&mut batch.input_ids[row.clone()], &mut batch.labels[row]);
            self.mask_into(
                item.input_ids,
                item.word_starts,
                item.key,
                ids,
                labels,
                positions,
            );
        }
        batch.gather_masked(special.mask_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MaskingConfig, SpecialTokens};

    fn seq(ids: &[u32], labels: &[i64]) -> MaskedSequence {
        MaskedSequence {
            input_ids: ids.to_vec(),
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn pads_and_indexes_masked_positions() {
        const M: u32 = 103;
        let a = seq(&[101, M, 7, 8, 102], &[-100, 5, -100, 8, -100]);
        let b = seq(&[101, 9, 102], &[-100, -100, -100]);
        let c = seq(
            &[101, 11, 12, 13, 14, 15, 102],
            &[-100, 20, -100, -100, -100, -100, -100],
        );
        let batch = collate(&[a, b, c], 0, M, Some(8));
        assert_eq!((batch.batch_size, batch.seq_len), (3, 8));
        assert_eq!(&batch.input_ids[..8], &[101, 103, 7, 8, 102, 0, 0, 0]);
        assert_eq!(&batch.attention_mask[..8], &[1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(&batch.input_ids[8..16], &[101, 9, 102, 0, 0, 0, 0, 0]);
        assert_eq!(&batch.attention_mask[8..16], &[1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(
            &batch.labels[16..24],
            &[-100, 20, -100, -100, -100, -100, -100, -100]
        );
        assert_eq!(batch.masked_positions, vec![1, 3, 17]);
        assert_eq!(batch.masked_labels, vec![5, 8, 20]);
        assert_eq!(batch.masked_is_mask_token, vec![true, false, false]);
        assert_eq!(batch.masked_tokens(), 3);
        assert_eq!(
            collate(&[seq(&[1, 2, 3], &[-100; 3])], 0, M, None).seq_len,
            3
        );
        assert_eq!(
            collate(&[seq(&[1, 2, 3], &[-100; 3])], 0, M, Some(1)).seq_len,
            3
        );
        assert_eq!(
            collate(&[seq(&[1; 9], &[-100; 9])], 0, M, Some(8)).seq_len,
            16
        );
        let empty = collate(&[], 0, M, Some(8));
        assert_eq!(
            (empty.batch_size, empty.seq_len, empty.input_ids.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn mask_batch_equals_mask_then_collate() {
        use crate::SelectionMode::{Exact, Independent};
        let special = SpecialTokens {
            vocab_size: 1000,
            pad_id: 0,
            mask_id: 103,
            special_ids: vec![100, 101, 102],
        };
        let rows: Vec<Vec<u32>> = (0..13u32)
            .map(|r| {
                let mut v = vec![101];
                v.extend((0..(r * 7 % 50 + 1)).map(|t| 104 + (r * 31 + t * 17) % 896));
                v.push(102);
                v
            })
            .collect();
        let starts: Vec<Vec<bool>> = rows
            .iter()
            .map(|r| (0..r.len()).map(|t| t % 3 != 1).collect())
            .collect();
        let items: Vec<MaskInput<'_>> = rows
            .iter()
            .zip(&starts)
            .enumerate()
            .map(|(i, (ids, ws))| MaskInput {
                input_ids: ids,
                word_starts: Some(ws),
                key: MaskKey::train(3, 1, i as u64),
            })
            .collect();
        // Whole-word exact selection takes words in random order: the fused path must still
        // list positions ascending, as collate's scan does.
        for (selection, whole_word_mask) in [
            (Independent, false),
            (Independent, true),
            (Exact, false),
            (Exact, true),
        ] {
            let config = MaskingConfig {
                mlm_probability: 0.4,
                selection,
                whole_word_mask,
                ..Default::default()
            };
            let masker = Masker::new(&config, special.clone()).unwrap();
            let masked: Vec<MaskedSequence> = items
                .iter()
                .map(|m| masker.mask(m.input_ids, m.word_starts, m.key))
                .collect();
            let fused = masker.mask_batch(&items, Some(8));
            assert_eq!(fused, collate(&masked, 0, 103, Some(8)), "{config:?}");
            assert!(fused.masked_tokens() > 0);
            let mut reused = Batch::default();
            masker.mask_batch_into(&items[..5], None, &mut reused);
            masker.mask_batch_into(&items, Some(8), &mut reused);
            assert_eq!(reused, fused, "a reused batch is reset");
        }
    }
}
