//! Rotary position embeddings as transformers computes them for ModernBERT
//! (`ModernBertRotaryEmbedding` with the `default` rope type and `apply_rotary_pos_emb`,
//! modeling_modernbert.py 5.24):
//!
//! - `inv_freq = 1 / theta ** (arange(0, d, 2) / d)` in fp32;
//! - `freqs = position_ids.float() * inv_freq`, `emb = cat(freqs, freqs)`, cos and sin in fp32,
//!   then cast to the hidden states' dtype;
//! - `q' = q.float() * cos + rotate_half(q.float()) * sin`, cast back to q's dtype
//!   (`rotate_half(x) = cat(-x2, x1)` of x's halves). In fp64 the product is taken in fp64 of
//!   q rounded to fp32, as there.
//!
//! fp64 runs these operations as written, so that results are bit-equal. Below fp64 the same
//! rotation is one complex multiplication on q and k in pair order ([`RotaryTable::rotate`]):
//! the same values up to rounding, 7% of a 6 x 384 model's training step on the CPU saved
//! (docs/benchmarks.md).

use tch::{Device, Kind, Tensor};

/// cos and sin of some positions for one layer type, shaped to broadcast against q and k laid
/// out as `[..., positions, heads, head_dim]`.
#[derive(Debug)]
pub(super) struct RotaryTable {
    cos: Tensor,
    sin: Tensor,
    /// `cos + i sin` of the first half (the second repeats it), from cos and sin in the
    /// table's kind, as complex64: `[P..., 1, head_dim / 2]`.
    turns: Tensor,
}

impl RotaryTable {
    /// The table for `positions` (Int64, any shape `P`) with the frequencies `inv_freq` (of
    /// [`inverse_frequencies`], on the positions' device), in `kind` (the hidden states'
    /// dtype): cos and sin are `[P..., 1, head_dim]`.
    pub(super) fn new(positions: &Tensor, inv_freq: &Tensor, kind: Kind) -> Self {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(-2);
        Self::of(emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    fn of(cos: Tensor, sin: Tensor) -> Self {
        let half = |table: &Tensor| first_half(table).to_kind(Kind::Float);
        let turns = Tensor::complex(&half(&cos), &half(&sin));
        Self { cos, sin, turns }
    }

    /// The same table at `rows` (Int64 indices of any shape `R` into the positions of a `[T]`
    /// table: the unpadded rows' own positions, or the masked queries' `[B, Q]`), shaped
    /// `[R..., 1, head_dim]`.
    pub(super) fn select(&self, rows: &Tensor) -> Self {
        let at = |table: &Tensor| {
            let mut shape = rows.size();
            shape.extend(table.size().into_iter().skip(1));
            table
                .index_select(0, &rows.reshape([-1]))
                .view(shape.as_slice())
        };
        Self::of(at(&self.cos), at(&self.sin))
    }

    /// `x` (`[..., positions, heads, head_dim]`) rotated. Below fp64, `x`'s head dimension
    /// comes in pair order ([`pair_order`]: `x1[0], x2[0], x1[1], x2[1], ...` of
    /// transformers' halves `x1`, `x2`), so that each pair `(x1[j], x2[j])`, which the rotation
    /// turns together, is one complex number multiplied by `cos + i sin`: one kernel where
    /// `rotate_half` takes five. q and k in the same order have the same dot products, so
    /// attention is unchanged. fp64 takes transformers' operations in its order
    /// ([`Self::rotate_as_written`]).
    pub(super) fn rotate(&self, xs: &Tensor) -> Tensor {
        if xs.kind() == Kind::Double {
            return self.rotate_as_written(xs);
        }
        let mut pairs = xs.size();
        let head_dim = pairs.pop().expect("a head dimension");
        pairs.extend([head_dim / 2, 2]);
        let xs32 = xs.to_kind(Kind::Float);
        let turned = xs32.view(pairs.as_slice()).view_as_complex() * &self.turns;
        turned.view_as_real().flatten(-2, -1).to_kind(xs.kind())
    }

    /// `x` rotated by transformers' own operations, in its order: in fp64 the two rounded
    /// gradients of `q.float()` summed in fp64, as there, keep fp64 runs within 1e-10 of it.
    fn rotate_as_written(&self, xs: &Tensor) -> Tensor {
        // Two casts, as `q.float()` is written twice there: in fp64 each use's gradient is
        // rounded to fp32 on its own and the two are summed in fp64; one shared cast would
        // sum them in fp32 first.
        let rotated = (xs.to_kind(Kind::Float) * &self.cos)
            + (rotate_half(&xs.to_kind(Kind::Float)) * &self.sin);
        rotated.to_kind(xs.kind())
    }
}

/// Whether hidden states of `kind` have their q and k in pair order ([`RotaryTable::rotate`]).
pub(super) fn pair_order(kind: Kind) -> bool {
    kind != Kind::Double
}

/// The rows of `Wqkv` (`[3 * heads * head_dim, H]`) in the order that puts q and k in pair
/// order, v as it is: each head's `0, d/2, 1, d/2 + 1, ...`. Made on `device` by tensor
/// operations (no host copy, so that a forward under CUDA graph capture may make it).
pub(super) fn pair_order_rows(heads: i64, head_dim: i64, device: Device) -> Tensor {
    let rows = Tensor::arange(3 * heads * head_dim, (Kind::Int64, device));
    let by_part = rows.view([3, heads, 2, head_dim / 2]);
    let query_key = by_part.narrow(0, 0, 2).transpose(-1, -2).reshape([-1]);
    Tensor::cat(&[query_key, by_part.narrow(0, 2, 1).reshape([-1])], 0)
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
    Tensor::cat(&[&xs.narrow(-1, half, half).neg(), &first_half(xs)], -1)
}

/// The first half of the last dimension.
fn first_half(xs: &Tensor) -> Tensor {
    let half = xs.size().last().copied().expect("a head dimension") / 2;
    xs.narrow(-1, 0, half)
}
