//! Rotary position embeddings as transformers computes them for ModernBERT
//! (`ModernBertRotaryEmbedding` with the `default` rope type and `apply_rotary_pos_emb`,
//! modeling_modernbert.py 5.24), operation for operation so that results are bit-equal:
//!
//! - `inv_freq = 1 / theta ** (arange(0, d, 2) / d)` in fp32;
//! - `freqs = position_ids.float() * inv_freq`, `emb = cat(freqs, freqs)`, cos and sin in fp32,
//!   then cast to the hidden states' dtype;
//! - `q' = q.float() * cos + rotate_half(q.float()) * sin`, cast back to q's dtype
//!   (`rotate_half(x) = cat(-x2, x1)` of x's halves). In fp64 the product is taken in fp64 of
//!   q rounded to fp32, as there.

use tch::{Device, Kind, Tensor};

/// cos and sin of some positions for one layer type, shaped to broadcast against q and k laid
/// out as `[..., positions, heads, head_dim]`.
#[derive(Debug)]
pub(super) struct RotaryTable {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryTable {
    /// The table for `positions` (Int64, any shape `P`) with the frequencies `inv_freq` (of
    /// [`inverse_frequencies`], on the positions' device), in `kind` (the hidden states'
    /// dtype): cos and sin are `[P..., 1, head_dim]`.
    pub(super) fn new(positions: &Tensor, inv_freq: &Tensor, kind: Kind) -> Self {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(-2);
        Self {
            cos: emb.cos().to_kind(kind),
            sin: emb.sin().to_kind(kind),
        }
    }

    /// The same table at `rows` (Int64 `[N]` indices into the positions of a `[T]` table):
    /// the unpadded rows' own positions.
    pub(super) fn select(&self, rows: &Tensor) -> Self {
        Self {
            cos: self.cos.index_select(0, rows),
            sin: self.sin.index_select(0, rows),
        }
    }

    /// `x` (`[..., positions, heads, head_dim]`) rotated.
    pub(super) fn rotate(&self, xs: &Tensor) -> Tensor {
        // Two casts, as `q.float()` is written twice there: in fp64 each use's gradient is
        // rounded to fp32 on its own and the two are summed in fp64; one shared cast would
        // sum them in fp32 first.
        let rotated = (xs.to_kind(Kind::Float) * &self.cos)
            + (rotate_half(&xs.to_kind(Kind::Float)) * &self.sin);
        rotated.to_kind(xs.kind())
    }
}

/// `1 / theta ** (arange(0, head_dim, 2) / head_dim)` in fp32 on `device`, made on the device
/// itself (no host copy, so that a forward under CUDA graph capture may make it too).
pub(super) fn inverse_frequencies(theta: f64, head_dim: i64, device: Device) -> Tensor {
    let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, device))
        .to_kind(Kind::Float)
        / head_dim as f64;
    Tensor::full([], theta, (Kind::Float, device))
        .pow(&exponents)
        .reciprocal()
}

/// `cat(-x2, x1)` of the last dimension's halves.
fn rotate_half(xs: &Tensor) -> Tensor {
    let half = xs.size().last().copied().expect("a head dimension") / 2;
    let first = xs.narrow(-1, 0, half);
    let second = xs.narrow(-1, half, half);
    Tensor::cat(&[&second.neg(), &first], -1)
}
