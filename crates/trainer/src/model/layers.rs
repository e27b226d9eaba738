//! The building blocks every family's network may share: `nn.Linear` and `nn.LayerNorm`
//! (each with or without a bias), heads split for SDPA, scaled dot-product attention and the
//! attention bias. Variables are created under dotted Hugging Face names ([`sub_path`]).

pub(crate) use mlm_torch_ext::matmul::linear;
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

/// The value variables are created with. Weights get their real values from exactly one
/// place afterwards, [`super::init_weights_like_hf`] or a checkpoint load, so no random draw
/// here is made only to be overwritten.
pub(crate) const PLACEHOLDER: Init = Init::Const(0.0);

/// The sub-path of `p` at a dotted state-dict path (`"attention.self.query"`): tch's paths
/// take one component at a time.
pub(crate) fn sub_path<'a>(p: &Path<'a>, dotted: &str) -> Path<'a> {
    let mut parts = dotted.split('.');
    let first = parts.next().unwrap_or(dotted);
    parts.fold(p / first, |path, part| &path / part)
}

/// `nn.Linear` with HF's names (`weight` `[out, in]`, `bias` `[out]` unless built without).
#[derive(Debug)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(p: &Path<'_>, in_dim: i64, out_dim: i64) -> Self {
        Self::with_bias(p, in_dim, out_dim, true)
    }

    /// `nn.Linear(in_dim, out_dim, bias=bias)`.
    pub(crate) fn with_bias(p: &Path<'_>, in_dim: i64, out_dim: i64, bias: bool) -> Self {
        Self {
            weight: p.var("weight", &[out_dim, in_dim], PLACEHOLDER),
            bias: bias.then(|| p.var("bias", &[out_dim], PLACEHOLDER)),
        }
    }

    /// A variable pair the optimizer must not update (the pooler, see
    /// [`super::MaskedLanguageModel::new`]).
    pub(crate) fn frozen(p: &Path<'_>, in_dim: i64, out_dim: i64) -> Self {
        let options = (p.kind(), p.device());
        Self {
            weight: p.add("weight", Tensor::zeros([out_dim, in_dim], options), false),
            bias: Some(p.add("bias", Tensor::zeros([out_dim], options), false)),
        }
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Tensor {
        linear(xs, &self.weight, self.bias.as_ref())
    }

    /// Output features `rows` (Int64 `[R]`) of [`Self::forward`], in that order, from those
    /// rows of the weight (and bias).
    pub(crate) fn forward_rows(&self, xs: &Tensor, rows: &Tensor) -> Tensor {
        let bias = self.bias.as_ref().map(|bias| bias.index_select(0, rows));
        linear(xs, &self.weight.index_select(0, rows), bias.as_ref())
    }

    /// Output features `first..first + count` of [`Self::forward`], from those rows of the
    /// weight (and bias) alone.
    pub(crate) fn forward_outputs(&self, xs: &Tensor, first: i64, count: i64) -> Tensor {
        if first == 0 && count == self.weight.size()[0] {
            return self.forward(xs);
        }
        let bias = self.bias.as_ref().map(|bias| bias.narrow(0, first, count));
        linear(xs, &self.weight.narrow(0, first, count), bias.as_ref())
    }
}

/// `nn.LayerNorm` (`weight`, and `bias` unless built without).
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f64,
    size: i64,
}

impl LayerNorm {
    pub(crate) fn new(p: &Path<'_>, size: i64, eps: f64) -> Self {
        Self::with_bias(p, size, eps, true)
    }

    /// `nn.LayerNorm(size, eps=eps, bias=bias)`.
    pub(crate) fn with_bias(p: &Path<'_>, size: i64, eps: f64, bias: bool) -> Self {
        Self {
            weight: p.var("weight", &[size], Init::Const(1.0)),
            bias: bias.then(|| p.var("bias", &[size], Init::Const(0.0))),
            eps,
            size,
        }
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Tensor {
        xs.layer_norm(
            [self.size],
            Some(&self.weight),
            self.bias.as_ref(),
            self.eps,
            true,
        )
    }
}

/// Scaled dot-product attention of heads already split (`[B, heads, T, head_dim]` each),
/// through `sdpa_attention_forward`: scale `head_dim ** -0.5`, `bias` added to the scores
/// (`[B, 1, 1 | T, T]`), attention-probability dropout when `dropout` > 0; the heads merged
/// back to `[B, T, heads * head_dim]`. Families rotate or otherwise prepare q and k before.
pub(crate) fn sdpa(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    bias: &Tensor,
    dropout: f64,
) -> Tensor {
    let (batch, heads, seq_len, head_dim) =
        query.size4().expect("query is [B, heads, T, head_dim]");
    let scale = (head_dim as f64).powf(-0.5);
    Tensor::scaled_dot_product_attention(
        query,
        key,
        value,
        Some(bias),
        dropout,
        false,
        scale,
        false,
    )
    .transpose(1, 2)
    .reshape([batch, seq_len, heads * head_dim])
}

/// `[B, T, H]` hidden states as `[B, heads, T, head_dim]` (`view(...).transpose(1, 2)`).
pub(crate) fn split_heads(xs: &Tensor, heads: i64) -> Tensor {
    let (batch, seq_len, hidden) = xs.size3().expect("hidden states are [B, T, H]");
    xs.view([batch, seq_len, heads, hidden / heads])
        .transpose(1, 2)
}

/// The attention bias SDPA adds to the scores, `[B, 1, 1, T]`: 0 where a key may be attended,
/// the most negative finite value of `kind` where it is padding (`torch.finfo(dtype).min`, as
/// HF's masks). A finite value, not -inf, keeps rows whose keys are all padding finite
/// (uniform attention) instead of NaN; `kind` is the query's so that autocast
/// (bf16/fp16) gets a bias it can represent: it follows the query, made per layer.
pub(crate) fn attention_bias(padding: &Tensor, kind: Kind) -> Tensor {
    let (batch, seq_len) = padding.size2().expect("padding mask is [B, T]");
    Tensor::zeros([batch, 1, 1, seq_len], (kind, padding.device()))
        .masked_fill(&padding.view([batch, 1, 1, seq_len]), most_negative(kind))
}

/// `torch.finfo(kind).min`: the score of a key that must not be attended.
pub(crate) fn most_negative(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        // (2 - 2^-7) * 2^127, exactly: a literal rounded up would overflow bf16.
        Kind::BFloat16 => -(2.0 - 2f64.powi(-7)) * 2f64.powi(127),
        Kind::Double => f64::MIN,
        _ => f64::from(f32::MIN),
    }
}
