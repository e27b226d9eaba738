//! The building blocks every family's network shares: `nn.Linear`, `nn.LayerNorm`, SDPA
//! self-attention, the post-LayerNorm encoder layer and the attention bias. Variables are
//! created under dotted Hugging Face names ([`at`]).

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use super::config::Activation;
use super::unpad::TokenLayout;

/// The value variables are created with. Weights get their real values from exactly one
/// place afterwards, [`super::init_weights_like_hf`] or a checkpoint load, so no random draw
/// here is made only to be overwritten.
pub(super) const PLACEHOLDER: Init = Init::Const(0.0);

/// The sub-path of `p` at a dotted state-dict path (`"attention.self.query"`): tch's paths
/// take one component at a time.
pub(super) fn at<'a>(p: &Path<'a>, dotted: &str) -> Path<'a> {
    let mut parts = dotted.split('.');
    let first = parts.next().unwrap_or(dotted);
    parts.fold(p / first, |path, part| &path / part)
}

/// `nn.Linear` with HF's names (`weight` `[out, in]`, `bias` `[out]`).
#[derive(Debug)]
pub(super) struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub(super) fn new(p: &Path<'_>, in_dim: i64, out_dim: i64) -> Self {
        Self {
            weight: p.var("weight", &[out_dim, in_dim], PLACEHOLDER),
            bias: p.var("bias", &[out_dim], PLACEHOLDER),
        }
    }

    /// A variable pair the optimizer must not update (the pooler, see
    /// [`super::MaskedLanguageModel::new`]).
    pub(super) fn frozen(p: &Path<'_>, in_dim: i64, out_dim: i64) -> Self {
        let options = (p.kind(), p.device());
        Self {
            weight: p.add("weight", Tensor::zeros([out_dim, in_dim], options), false),
            bias: p.add("bias", Tensor::zeros([out_dim], options), false),
        }
    }

    pub(super) fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }
}

/// `nn.LayerNorm` (`weight`, `bias`).
#[derive(Debug)]
pub(super) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    size: i64,
}

impl LayerNorm {
    pub(super) fn new(p: &Path<'_>, size: i64, eps: f64) -> Self {
        Self {
            weight: p.var("weight", &[size], Init::Const(1.0)),
            bias: p.var("bias", &[size], Init::Const(0.0)),
            eps,
            size,
        }
    }

    pub(super) fn forward(&self, xs: &Tensor) -> Tensor {
        xs.layer_norm(
            [self.size],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// The state-dict names of one encoder layer's parts, relative to the layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerNames<'a> {
    pub query: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub attention_output: &'a str,
    pub attention_norm: &'a str,
    pub ffn_in: &'a str,
    pub ffn_out: &'a str,
    pub output_norm: &'a str,
}

/// The sizes and switches of one encoder layer.
#[derive(Debug, Clone, Copy)]
pub(super) struct LayerShape {
    pub hidden: i64,
    pub intermediate: i64,
    pub heads: i64,
    pub layer_norm_eps: f64,
    pub activation: Activation,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    /// Dropout on the attention output before its residual (BERT yes, DistilBERT no).
    pub attention_output_dropout: bool,
}

/// A post-LayerNorm transformer encoder layer: `BertLayer` (`BertSelfAttention`,
/// `BertSelfOutput`, `BertIntermediate`, `BertOutput`) and DistilBERT's `TransformerBlock`
/// are this with other names.
#[derive(Debug)]
pub(super) struct EncoderLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    output_norm: LayerNorm,
    shape: LayerShape,
}

impl EncoderLayer {
    pub(super) fn new(p: &Path<'_>, names: &LayerNames<'_>, shape: LayerShape) -> Self {
        let (h, eps) = (shape.hidden, shape.layer_norm_eps);
        Self {
            query: Linear::new(&at(p, names.query), h, h),
            key: Linear::new(&at(p, names.key), h, h),
            value: Linear::new(&at(p, names.value), h, h),
            attention_output: Linear::new(&at(p, names.attention_output), h, h),
            attention_norm: LayerNorm::new(&at(p, names.attention_norm), h, eps),
            ffn_in: Linear::new(&at(p, names.ffn_in), h, shape.intermediate),
            ffn_out: Linear::new(&at(p, names.ffn_out), shape.intermediate, h),
            output_norm: LayerNorm::new(&at(p, names.output_norm), h, eps),
            shape,
        }
    }

    /// Self-attention through `sdpa_attention_forward` (`[B, T, H]` in and out): heads split as
    /// `view(B, T, heads, head_dim).transpose(1, 2)`, scale `head_dim ** -0.5`,
    /// attention-probability dropout inside SDPA when training.
    fn self_attention(&self, hidden: &Tensor, padding: &Tensor, train: bool) -> Tensor {
        let (batch, seq_len, hidden_size) = hidden.size3().expect("hidden states are [B, T, H]");
        let heads = self.shape.heads;
        let head_dim = hidden_size / heads;
        let split = |xs: Tensor| xs.view([batch, seq_len, heads, head_dim]).transpose(1, 2);
        let query = split(self.query.forward(hidden));
        let key = split(self.key.forward(hidden));
        let value = split(self.value.forward(hidden));
        let bias = attention_bias(padding, query.kind());
        let dropout = if train {
            self.shape.attention_dropout
        } else {
            0.0
        };
        let scale = (head_dim as f64).powf(-0.5);
        Tensor::scaled_dot_product_attention(
            &query,
            &key,
            &value,
            Some(&bias),
            dropout,
            false,
            scale,
            false,
        )
        .transpose(1, 2)
        .reshape([batch, seq_len, hidden_size])
    }

    /// Attention, its output projection (dropout), LayerNorm(x + residual); the feed-forward
    /// (in, activation, out, dropout), LayerNorm(x + residual). `padding` is `[B, T]`, true
    /// at padding.
    pub(super) fn forward(&self, hidden: &Tensor, padding: &Tensor, train: bool) -> Tensor {
        self.around_attention(hidden, train, |h| self.self_attention(h, padding, train))
    }

    /// [`Self::forward`] on the real tokens' rows (`[N, H]`, model/unpad.rs): attention runs
    /// on the rows by FlashAttention's varlen kernel when the layout carries sequence
    /// lengths, else on the rows scattered back into the padded batch; everything else runs
    /// on the rows.
    pub(super) fn forward_unpadded(
        &self,
        rows: &Tensor,
        layout: &TokenLayout,
        train: bool,
    ) -> Tensor {
        self.around_attention(rows, train, |rows| match layout.varlen() {
            Some((cu_seqlens, max_len)) => self.varlen_attention(rows, cu_seqlens, max_len, train),
            None => {
                let attended = self.self_attention(&layout.scatter(rows), layout.padding(), train);
                layout.gather(&attended)
            }
        })
    }

    /// Self-attention of unpadded rows (`[N, H]`) by FlashAttention's varlen kernel: heads
    /// split as `view(N, heads, head_dim)`, the same scale and dropout as SDPA's.
    fn varlen_attention(
        &self,
        rows: &Tensor,
        cu_seqlens: &Tensor,
        max_len: i64,
        train: bool,
    ) -> Tensor {
        let (tokens, hidden_size) = rows.size2().expect("unpadded rows are [N, H]");
        let heads = self.shape.heads;
        let head_dim = hidden_size / heads;
        let split = |xs: Tensor| xs.view([tokens, heads, head_dim]);
        let query = split(self.query.forward(rows));
        let key = split(self.key.forward(rows));
        let value = split(self.value.forward(rows));
        let dropout = if train {
            self.shape.attention_dropout
        } else {
            0.0
        };
        let scale = (head_dim as f64).powf(-0.5);
        // The run chose this path only where the kernel exists (CUDA, sm80+, bf16/fp16, head
        // size); a failure here is a libtorch bug, not a user's input.
        mlm_torch_ext::attention::flash_varlen(
            &query, &key, &value, cu_seqlens, max_len, dropout, scale,
        )
        .unwrap_or_else(|e| panic!("training.unpad: {e}"))
        .reshape([tokens, hidden_size])
    }

    /// The layer with `attention` (hidden states to their attended context, same shape).
    fn around_attention(
        &self,
        hidden: &Tensor,
        train: bool,
        attention: impl FnOnce(&Tensor) -> Tensor,
    ) -> Tensor {
        let mut attended = self.attention_output.forward(&attention(hidden));
        if self.shape.attention_output_dropout {
            attended = attended.dropout(self.shape.hidden_dropout, train);
        }
        let attended = self.attention_norm.forward(&(attended + hidden));
        let inner = self.shape.activation.apply(&self.ffn_in.forward(&attended));
        let out = self
            .ffn_out
            .forward(&inner)
            .dropout(self.shape.hidden_dropout, train);
        self.output_norm.forward(&(out + attended))
    }
}

/// The attention bias SDPA adds to the scores, `[B, 1, 1, T]`: 0 where a key may be attended,
/// the most negative finite value of `kind` where it is padding (`torch.finfo(dtype).min`, as
/// HF's masks). A finite value, not -inf, keeps rows whose keys are all padding finite
/// (uniform attention) instead of NaN; `kind` is the query's so that autocast
/// (bf16/fp16) gets a bias it can represent: it follows the query, made per layer.
fn attention_bias(padding: &Tensor, kind: Kind) -> Tensor {
    let lowest = match kind {
        Kind::Half => -65504.0,
        // (2 - 2^-7) * 2^127, exactly: a literal rounded up would overflow bf16.
        Kind::BFloat16 => -(2.0 - 2f64.powi(-7)) * 2f64.powi(127),
        Kind::Double => f64::MIN,
        _ => f64::from(f32::MIN),
    };
    let (batch, seq_len) = padding.size2().expect("padding mask is [B, T]");
    Tensor::zeros([batch, 1, 1, seq_len], (kind, padding.device()))
        .masked_fill(&padding.view([batch, 1, 1, seq_len]), lowest)
}
