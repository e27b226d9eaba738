//! The encoder on the real tokens of a padded batch only (`training.unpad`): the hidden
//! states are `[N, H]` rows, one per non-padding token, instead of `[B, T, H]`, so the
//! feed-forward, the attention output projection and the LayerNorms (three quarters of a
//! layer's matmul FLOPs) skip the padding. Attention either scatters the rows back into
//! `[B, T, H]` around the padded SDPA, or, on CUDA in bf16/fp16, runs FlashAttention's varlen
//! kernel on the rows themselves, so the query/key/value projections skip the padding too.
//! MosaicBERT's and ModernBERT's unpadding (`_unpad_modernbert_input`,
//! `flash_attn_varlen_func`).

use tch::{Kind, Tensor};

/// How attention sees unpadded rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpaddedAttention {
    /// Scattered back into the padded batch around SDPA (any device and precision).
    Padded,
    /// FlashAttention over the rows packed back to back (`flash_attn_varlen_func`): CUDA,
    /// compute capability 8.0 or newer, bf16/fp16, head size a multiple of 8 up to 256.
    Varlen,
    /// [`Self::Varlen`] for a family whose local layers attend within a window
    /// ([`super::Architecture::attention_window`]), which the kernel takes itself: batches
    /// without padding run unpadded too, so that no dense `[T, T]` window mask is ever made.
    WindowedVarlen,
}

impl UnpaddedAttention {
    /// Whether attention runs in FlashAttention's varlen kernel.
    pub fn is_varlen(self) -> bool {
        matches!(self, Self::Varlen | Self::WindowedVarlen)
    }
}

/// Where the real tokens of a `[B, T]` batch are.
#[derive(Debug)]
pub struct TokenLayout {
    /// Flat indices `b * T + t` of the non-padding positions, ascending (`[N]`, Int64).
    tokens: Tensor,
    /// `[B, T]`, true at padding: the padded attention's mask.
    padding: Tensor,
    batch: i64,
    seq_len: i64,
    /// Varlen attention: the rows' cumulative sequence lengths (`[B + 1]`, int32, on the
    /// device) and the longest sequence.
    varlen: Option<(Tensor, i64)>,
}

impl TokenLayout {
    /// `tokens` from [`real_positions`] of `attention_mask` (`[B, T]`), on its device.
    pub fn new(tokens: Tensor, attention_mask: &Tensor) -> Self {
        let (batch, seq_len) = attention_mask.size2().expect("attention mask is [B, T]");
        Self {
            tokens,
            padding: attention_mask.eq(0),
            batch,
            seq_len,
            varlen: None,
        }
    }

    /// With varlen attention over `cu_seqlens` (from [`cumulative_lengths`], on the device).
    pub fn with_varlen(mut self, cu_seqlens: Tensor, max_len: i64) -> Self {
        self.varlen = Some((cu_seqlens, max_len));
        self
    }

    pub(super) fn varlen(&self) -> Option<(&Tensor, i64)> {
        self.varlen.as_ref().map(|(cu, max_len)| (cu, *max_len))
    }

    pub(super) fn padding(&self) -> &Tensor {
        &self.padding
    }

    /// Each row's position in its sequence (`[N]`, Int64): `t` of its flat index `b * T + t`,
    /// the `position_ids` (`arange(T)`) a padded forward gives the token (rotary embeddings).
    pub(crate) fn positions(&self) -> Tensor {
        self.tokens.remainder(self.seq_len)
    }

    /// The real tokens' rows of `padded` (`[B, T, H]`): `[N, H]`.
    pub(super) fn gather(&self, padded: &Tensor) -> Tensor {
        let hidden = *padded
            .size()
            .last()
            .expect("hidden states have a last dimension");
        padded.reshape([-1, hidden]).index_select(0, &self.tokens)
    }

    /// `rows` (`[N, H]`) back in their places of a `[B, T, H]` tensor, zeros at padding.
    pub(super) fn scatter(&self, rows: &Tensor) -> Tensor {
        let hidden = rows.size()[1];
        Tensor::zeros(
            [self.batch * self.seq_len, hidden],
            (rows.kind(), rows.device()),
        )
        .index_copy(0, &self.tokens, rows)
        .view([self.batch, self.seq_len, hidden])
    }
}

/// The flat positions `b * T + t` where `attention_mask` (row-major `[B, T]`) is not 0.
pub fn real_positions(attention_mask: &[i64]) -> Vec<i64> {
    (0..attention_mask.len() as i64)
        .filter(|&i| attention_mask[i as usize] != 0)
        .collect()
}

/// Each of `positions` (flat, all real) as its row among `real` (ascending): the index of
/// a masked token's hidden state in the unpadded `[N, H]`. `None` if one is padding.
pub fn rows_among(real: &[i64], positions: &[i64]) -> Option<Vec<i64>> {
    positions
        .iter()
        .map(|p| real.binary_search(p).ok().map(|row| row as i64))
        .collect()
}

/// The cumulative real-token counts of the rows of `attention_mask` (row-major, rows of
/// `seq_len`), `[B + 1]` starting at 0, and the longest row: where each sequence's rows start
/// in the unpadded order (a row's real tokens are consecutive there, whatever the mask).
pub fn cumulative_lengths(attention_mask: &[i64], seq_len: usize) -> (Vec<i32>, i64) {
    let mut cumulative = vec![0i32];
    let mut longest = 0;
    for row in attention_mask.chunks(seq_len.max(1)) {
        let len = row.iter().filter(|&&m| m != 0).count();
        longest = longest.max(len as i64);
        cumulative.push(cumulative.last().copied().unwrap_or(0) + len as i32);
    }
    (cumulative, longest)
}

/// Int64 on the host, for [`TokenLayout::new`] and the masked rows.
pub fn index_tensor(values: &[i64]) -> Tensor {
    Tensor::from_slice(values).to_kind(Kind::Int64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_real_tokens_round_trip_and_masked_positions_find_their_rows() {
        let mask = [1i64, 1, 1, 0, 1, 1, 0, 0];
        let real = real_positions(&mask);
        assert_eq!(real, vec![0, 1, 2, 4, 5]);
        assert_eq!(rows_among(&real, &[1, 4, 5]), Some(vec![1, 3, 4]));
        assert_eq!(rows_among(&real, &[3]), None);

        let attention_mask = Tensor::from_slice(&mask).view([2, 4]);
        let layout = TokenLayout::new(index_tensor(&real), &attention_mask);
        let padded = Tensor::arange(16, (Kind::Float, tch::Device::Cpu)).view([2, 4, 2]);
        let rows = layout.gather(&padded);
        assert_eq!(rows.size(), vec![5, 2]);
        assert_eq!(
            Vec::<f32>::try_from(rows.reshape([-1])).unwrap(),
            vec![0., 1., 2., 3., 4., 5., 8., 9., 10., 11.]
        );
        let back = layout.scatter(&rows);
        let kept = padded * attention_mask.view([2, 4, 1]);
        assert!(back.equal(&kept));
        assert!(layout.padding().equal(&attention_mask.eq(0)));
        assert!(layout.varlen().is_none());
        assert_eq!(
            Vec::<i64>::try_from(layout.positions()).unwrap(),
            vec![0, 1, 2, 0, 1]
        );
        assert_eq!(cumulative_lengths(&mask, 4), (vec![0, 3, 5], 3));
        assert_eq!(
            cumulative_lengths(&[1, 0, 1, 1, 1, 1], 3),
            (vec![0, 2, 5], 3)
        );
    }
}
