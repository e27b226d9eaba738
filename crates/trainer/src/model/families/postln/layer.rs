//! The post-LayerNorm encoder layer BERT, RoBERTa and DistilBERT share: `BertLayer`
//! (`BertSelfAttention`, `BertSelfOutput`, `BertIntermediate`, `BertOutput`) and DistilBERT's
//! `TransformerBlock` under other names.

use std::convert::Infallible;

use mlm_torch_ext::TorchExtError;
use tch::Tensor;
use tch::nn::Path;

use crate::model::MaskedQueries;
use crate::model::config::Activation;
use crate::model::layers::{LayerNorm, Linear, attention_bias, sdpa, split_heads, sub_path};
use crate::model::network::gather_rows;
use crate::model::unpad::TokenLayout;

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
pub(crate) struct LayerShape {
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

impl LayerShape {
    /// Whether a training forward draws dropout: on the attention probabilities or on a
    /// hidden state (`attention_output_dropout` only says where the hidden one falls).
    pub(crate) fn draws_dropout(&self) -> bool {
        self.attention_dropout > 0.0 || self.hidden_dropout > 0.0
    }
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
            query: Linear::new(&sub_path(p, names.query), h, h),
            key: Linear::new(&sub_path(p, names.key), h, h),
            value: Linear::new(&sub_path(p, names.value), h, h),
            attention_output: Linear::new(&sub_path(p, names.attention_output), h, h),
            attention_norm: LayerNorm::new(&sub_path(p, names.attention_norm), h, eps),
            ffn_in: Linear::new(&sub_path(p, names.ffn_in), h, shape.intermediate),
            ffn_out: Linear::new(&sub_path(p, names.ffn_out), shape.intermediate, h),
            output_norm: LayerNorm::new(&sub_path(p, names.output_norm), h, eps),
            shape,
        }
    }

    /// Self-attention through `sdpa_attention_forward` (`[B, T, H]` in and out): heads split as
    /// `view(B, T, heads, head_dim).transpose(1, 2)`, scale `head_dim ** -0.5`,
    /// attention-probability dropout inside SDPA when training.
    fn self_attention(&self, hidden: &Tensor, padding: &Tensor, train: bool) -> Tensor {
        self.attention(hidden, hidden, padding, train)
    }

    /// Attention of `query_states` (`[B, Tq, H]`) over the keys and values of `hidden`
    /// (`[B, T, H]`): `[B, Tq, H]`.
    fn attention(
        &self,
        query_states: &Tensor,
        hidden: &Tensor,
        padding: &Tensor,
        train: bool,
    ) -> Tensor {
        let heads = self.shape.heads;
        let query = split_heads(&self.query.forward(query_states), heads);
        let key = split_heads(&self.key.forward(hidden), heads);
        let value = split_heads(&self.value.forward(hidden), heads);
        let bias = attention_bias(padding, query.kind());
        let dropout = if train {
            self.shape.attention_dropout
        } else {
            0.0
        };
        sdpa(&query, &key, &value, &bias, dropout)
    }

    /// The layer at the masked positions only, `[M, H]` in the order of `masked_positions`
    /// (flat `b * T + t`), from padded hidden states `[B, T, H]`: keys and values from every
    /// token, queries and all that follows attention from the masked rows alone
    /// (model/queries.rs). Equal to gathering [`Self::forward`]'s rows, up to rounding.
    pub(super) fn forward_queries(
        &self,
        hidden: &Tensor,
        padding: &Tensor,
        masked_positions: &Tensor,
        queries: &MaskedQueries,
        train: bool,
    ) -> Tensor {
        let context = self.query_attention(hidden, padding, queries, train);
        self.after_attention(&gather_rows(hidden, masked_positions), &context, train)
    }

    /// Whether a training forward draws dropout.
    pub(super) fn draws_dropout(&self) -> bool {
        self.shape.draws_dropout()
    }

    /// Attention of the masked positions' queries (`[B, Q]`) over every key of `[B, T, H]`
    /// states: the context `[M, H]`, in the order of the flat masked positions.
    fn query_attention(
        &self,
        hidden: &Tensor,
        padding: &Tensor,
        queries: &MaskedQueries,
        train: bool,
    ) -> Tensor {
        queries.rows(&self.attention(&queries.gather(hidden), hidden, padding, train))
    }

    /// Attention, its output projection (dropout), LayerNorm(x + residual); the feed-forward
    /// (in, activation, out, dropout), LayerNorm(x + residual). `padding` is `[B, T]`, true
    /// at padding.
    pub(super) fn forward(&self, hidden: &Tensor, padding: &Tensor, train: bool) -> Tensor {
        let Ok(out) = self.around_attention::<Infallible>(hidden, train, |h| {
            Ok(self.self_attention(h, padding, train))
        });
        out
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
    ) -> Result<Tensor, TorchExtError> {
        self.around_attention(rows, train, |rows| match layout.varlen() {
            Some((cu_seqlens, max_len)) => self.varlen_attention(rows, cu_seqlens, max_len, train),
            None => {
                let attended = self.self_attention(&layout.scatter(rows), layout.padding(), train);
                Ok(layout.gather(&attended))
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
    ) -> Result<Tensor, TorchExtError> {
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
        // The run chose this path only where the kernel should exist (CUDA, sm80+, bf16/fp16,
        // head size); should the kernel refuse anyway, the caller names training.unpad.
        let varlen = mlm_torch_ext::attention::Varlen {
            cu_seqlens,
            max_len,
            dropout,
            scale,
            window: None,
        };
        Ok(
            mlm_torch_ext::attention::flash_varlen(&query, &key, &value, &varlen)?
                .reshape([tokens, hidden_size]),
        )
    }

    /// The layer with `attention` (hidden states to their attended context, same shape).
    fn around_attention<E>(
        &self,
        hidden: &Tensor,
        train: bool,
        attention: impl FnOnce(&Tensor) -> Result<Tensor, E>,
    ) -> Result<Tensor, E> {
        let context = attention(hidden)?;
        Ok(self.after_attention(hidden, &context, train))
    }

    /// Everything after attention, row by row: `residual` is the layer's input at the rows
    /// of `context`.
    fn after_attention(&self, residual: &Tensor, context: &Tensor, train: bool) -> Tensor {
        let hidden = residual;
        let mut attended = self.attention_output.forward(context);
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

#[cfg(test)]
mod tests {
    use super::LayerShape;
    use crate::model::config::Activation;

    fn shape(hidden_dropout: f64, attention_dropout: f64, output_dropout: bool) -> LayerShape {
        LayerShape {
            hidden: 32,
            intermediate: 64,
            heads: 2,
            layer_norm_eps: 1e-12,
            activation: Activation::Gelu,
            hidden_dropout,
            attention_dropout,
            attention_output_dropout: output_dropout,
        }
    }

    #[test]
    fn a_layer_draws_dropout_when_either_probability_is_above_zero() {
        assert!(!shape(0.0, 0.0, true).draws_dropout());
        assert!(!shape(0.0, 0.0, false).draws_dropout());
        assert!(shape(0.1, 0.0, false).draws_dropout());
        assert!(shape(0.0, 0.1, false).draws_dropout());
        assert!(shape(0.1, 0.1, true).draws_dropout());
    }
}
