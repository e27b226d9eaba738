//! One ModernBERT layer (`ModernBertEncoderLayer`, modeling_modernbert.py 5.24): pre-norm
//! attention with a fused `Wqkv` and rotary embeddings on q and k, global or within a window,
//! then a pre-norm GeGLU MLP, each added to the residual stream.

use std::cell::RefCell;
use std::convert::Infallible;

use mlm_torch_ext::TorchExtError;
use tch::nn::Path;
use tch::{Kind, Tensor};

use super::config::LayerType;
use super::rope::{RotaryTable, pair_order, pair_order_rows};
use crate::model::MaskedQueries;
use crate::model::config::Activation;
use crate::model::layers::{LayerNorm, Linear, most_negative, sdpa, sub_path};
use crate::model::network::gather_rows;
use crate::model::unpad::TokenLayout;

/// The sizes and switches every layer shares.
#[derive(Debug, Clone, Copy)]
pub(super) struct LayerShape {
    pub hidden: i64,
    pub intermediate: i64,
    pub heads: i64,
    pub norm_eps: f64,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub activation: Activation,
    pub attention_dropout: f64,
    pub mlp_dropout: f64,
    /// `local_attention // 2`.
    pub half_window: i64,
}

/// The attention biases of one forward, `[B, 1, 1 | T, T]`, one per layer type, made on
/// first use in the attention's kind (the query's, which autocast decides) and shared by the
/// layers: a forward whose attention takes the window itself (varlen) makes none.
#[derive(Debug)]
pub(super) struct AttentionMasks {
    /// `[B, T]`, true at padding.
    padding: Tensor,
    half_window: i64,
    biases: RefCell<Vec<(LayerType, Kind, Tensor)>>,
    keyless: RefCell<Option<Tensor>>,
}

impl AttentionMasks {
    /// `padding` `[B, T]`, true at padding; a local layer's keys are within `half_window` of
    /// the query (`|q - k| <= half_window`, transformers' `sliding_window_bidirectional_overlay`).
    pub(super) fn new(padding: &Tensor, half_window: i64) -> Self {
        Self {
            padding: padding.shallow_clone(),
            half_window,
            biases: RefCell::default(),
            keyless: RefCell::default(),
        }
    }

    /// The additive bias of `layer_type` in `kind`: 0 where attended, `finfo(kind).min`
    /// where blocked (finite, so that a query whose keys are all blocked stays finite).
    fn bias(&self, layer_type: LayerType, kind: Kind) -> Tensor {
        let mut biases = self.biases.borrow_mut();
        let cached = biases
            .iter()
            .find(|(t, k, _)| *t == layer_type && *k == kind);
        if let Some((_, _, bias)) = cached {
            return bias.shallow_clone();
        }
        let blocked = self.blocked(layer_type);
        let bias = Tensor::zeros(blocked.size(), (kind, blocked.device()))
            .masked_fill(&blocked, most_negative(kind));
        biases.push((layer_type, kind, bias.shallow_clone()));
        bias
    }

    /// The additive bias `[B, 1, Q, T]` (global: `[B, 1, 1, T]`) of `layer_type` in `kind`
    /// for queries at `positions` (`[B, Q]`) only (model/queries.rs). Every such query is a
    /// real token within its own window, so none has all its keys blocked.
    fn query_bias(&self, layer_type: LayerType, kind: Kind, positions: &Tensor) -> Tensor {
        if layer_type == LayerType::Global {
            return self.bias(layer_type, kind);
        }
        let (batch, seq_len) = self.padding.size2().expect("padding mask is [B, T]");
        let keys = Tensor::arange(seq_len, (Kind::Int64, positions.device()));
        let distance = (positions.unsqueeze(-1) - keys.view([1, 1, seq_len])).abs();
        let blocked = (distance.gt(self.half_window).unsqueeze(1))
            .logical_or(&self.padding.view([batch, 1, 1, seq_len]));
        Tensor::zeros(blocked.size(), (kind, blocked.device()))
            .masked_fill(&blocked, most_negative(kind))
    }

    /// `[B, T, 1]`, true at the queries of a local layer whose every key is blocked (padding
    /// more than half a window past the last real token): their attention output is zero, as
    /// SDPA's safe softmax gives transformers for a row its boolean mask blocks entirely.
    fn keyless_queries(&self) -> Tensor {
        let mut keyless = self.keyless.borrow_mut();
        let queries = keyless.get_or_insert_with(|| {
            let (batch, seq_len) = self.padding.size2().expect("padding mask is [B, T]");
            self.blocked(LayerType::Local)
                .all_dim(-1, false)
                .view([batch, seq_len, 1])
        });
        queries.shallow_clone()
    }

    /// True where a key must not be attended: padding (global), padding or outside the
    /// window (local).
    fn blocked(&self, layer_type: LayerType) -> Tensor {
        let (batch, seq_len) = self.padding.size2().expect("padding mask is [B, T]");
        let padding = self.padding.view([batch, 1, 1, seq_len]);
        if layer_type == LayerType::Global {
            return padding;
        }
        let positions = Tensor::arange(seq_len, (Kind::Int64, padding.device()));
        let distance = (positions.unsqueeze(1) - positions.unsqueeze(0)).abs();
        let outside = distance.gt(self.half_window).view([1, 1, seq_len, seq_len]);
        padding.logical_or(&outside)
    }
}

/// A ModernBERT encoder layer.
#[derive(Debug)]
pub(super) struct ModernBertLayer {
    /// `None` in layer 0 (`nn.Identity`: the embeddings end with a norm).
    attn_norm: Option<LayerNorm>,
    wqkv: Linear,
    attn_out: Linear,
    mlp_norm: LayerNorm,
    wi: Linear,
    mlp_out: Linear,
    layer_type: LayerType,
    shape: LayerShape,
}

impl ModernBertLayer {
    pub(super) fn new(p: &Path<'_>, index: i64, layer_type: LayerType, shape: LayerShape) -> Self {
        let (h, inner) = (shape.hidden, shape.intermediate);
        let norm =
            |name: &str| LayerNorm::with_bias(&(p / name), h, shape.norm_eps, shape.norm_bias);
        Self {
            attn_norm: (index > 0).then(|| norm("attn_norm")),
            wqkv: Linear::with_bias(&sub_path(p, "attn.Wqkv"), h, 3 * h, shape.attention_bias),
            attn_out: Linear::with_bias(&sub_path(p, "attn.Wo"), h, h, shape.attention_bias),
            mlp_norm: norm("mlp_norm"),
            wi: Linear::with_bias(&sub_path(p, "mlp.Wi"), h, 2 * inner, shape.mlp_bias),
            mlp_out: Linear::with_bias(&sub_path(p, "mlp.Wo"), inner, h, shape.mlp_bias),
            layer_type,
            shape,
        }
    }

    pub(super) fn layer_type(&self) -> LayerType {
        self.layer_type
    }

    /// Whether a training forward draws dropout (released configs have every dropout 0).
    pub(super) fn draws_dropout(&self) -> bool {
        self.shape.attention_dropout > 0.0 || self.shape.mlp_dropout > 0.0
    }

    /// The layer on padded hidden states `[B, T, H]`; `rotary` holds cos and sin for
    /// positions `0..T` of this layer's type.
    pub(super) fn forward(
        &self,
        hidden: &Tensor,
        rotary: &RotaryTable,
        masks: &AttentionMasks,
        train: bool,
    ) -> Tensor {
        let Ok(out) = self.around_attention::<Infallible>(hidden, train, |normed| {
            Ok(self.padded_attention(normed, rotary, masks, train))
        });
        out
    }

    /// The layer on the real tokens' rows `[N, H]` (model/unpad.rs): attention by
    /// FlashAttention's varlen kernel (with the window in the kernel for local layers) when
    /// the layout carries sequence lengths, else on the rows scattered back into the padded
    /// batch; `rotary` holds cos and sin per row.
    pub(super) fn forward_unpadded(
        &self,
        rows: &Tensor,
        layout: &TokenLayout,
        rotary: &RotaryTable,
        padded_rotary: &RotaryTable,
        masks: &AttentionMasks,
        train: bool,
    ) -> Result<Tensor, TorchExtError> {
        self.around_attention(rows, train, |normed| match layout.varlen() {
            Some((cu_seqlens, max_len)) => {
                self.varlen_attention(normed, rotary, cu_seqlens, max_len, train)
            }
            None => Ok(layout.gather(&self.padded_attention(
                &layout.scatter(normed),
                padded_rotary,
                masks,
                train,
            ))),
        })
    }

    /// `hidden + attn(attn_norm(hidden))`, then `+ mlp(mlp_norm(.))`; `attention` maps the
    /// normed states to their attended context (same shape, before `Wo`).
    fn around_attention<E>(
        &self,
        hidden: &Tensor,
        train: bool,
        attention: impl FnOnce(&Tensor) -> Result<Tensor, E>,
    ) -> Result<Tensor, E> {
        let context = attention(&self.attention_input(hidden))?;
        Ok(self.after_attention(hidden, &context, train))
    }

    /// The layer at the masked positions only, `[M, H]` in the order of `masked_positions`
    /// (flat `b * T + t`), from padded hidden states `[B, T, H]`: keys and values from every
    /// token, queries and all that follows attention from the masked rows alone
    /// (model/queries.rs). Equal to gathering [`Self::forward`]'s rows, up to rounding.
    pub(super) fn forward_queries(
        &self,
        hidden: &Tensor,
        masked_positions: &Tensor,
        queries: &MaskedQueries,
        rotary: &RotaryTable,
        masks: &AttentionMasks,
        train: bool,
    ) -> Tensor {
        let normed = self.attention_input(hidden);
        let context = self.query_attention(&normed, queries, rotary, masks, train);
        self.after_attention(&gather_rows(hidden, masked_positions), &context, train)
    }

    /// `attn_norm(hidden)` (the identity in layer 0).
    fn attention_input(&self, hidden: &Tensor) -> Tensor {
        match &self.attn_norm {
            Some(norm) => norm.forward(hidden),
            None => hidden.shallow_clone(),
        }
    }

    /// `residual + drop(Wo(context))`, then `+ mlp(mlp_norm(.))`: row by row.
    fn after_attention(&self, residual: &Tensor, context: &Tensor, train: bool) -> Tensor {
        let attended = self
            .attn_out
            .forward(context)
            .dropout(self.shape.attention_dropout, train);
        let hidden = residual + attended;
        let mlp = self.mlp(&self.mlp_norm.forward(&hidden), train);
        hidden + mlp
    }

    /// `ModernBertMLP`: `Wi` to 2 x intermediate, chunked into input and gate,
    /// `Wo(drop(act(input) * gate))`.
    fn mlp(&self, hidden: &Tensor, train: bool) -> Tensor {
        let projected = self.wi.forward(hidden);
        let halves = projected.chunk(2, -1);
        let gated = self.shape.activation.apply(&halves[0]) * &halves[1];
        self.mlp_out
            .forward(&gated.dropout(self.shape.mlp_dropout, train))
    }

    /// Attention-probability dropout: the config's when training.
    fn attention_dropout(&self, train: bool) -> f64 {
        if train {
            self.shape.attention_dropout
        } else {
            0.0
        }
    }

    /// q, k, v of `[..., H]` states as `[..., heads, head_dim]` each (`Wqkv`, then
    /// `view(..., 3, heads, head_dim).unbind(-3)`), q and k rotated.
    fn rotated_qkv(&self, hidden: &Tensor, rotary: &RotaryTable) -> [Tensor; 3] {
        let [query, key, value]: [Tensor; 3] = self
            .projected(hidden, 0, 3)
            .unbind(-3)
            .try_into()
            .expect("three parts");
        [rotary.rotate(&query), rotary.rotate(&key), value]
    }

    /// Parts `first..first + count` of `Wqkv`'s output (0 = q, 1 = k, 2 = v) of `[..., H]`
    /// states, as `[..., count, heads, head_dim]`, from the matching rows of the weight
    /// alone; q and k in the order [`RotaryTable::rotate`] takes for the states' kind.
    fn projected(&self, hidden: &Tensor, first: i64, count: i64) -> Tensor {
        let (heads, width) = (self.shape.heads, self.shape.hidden);
        let head_dim = width / heads;
        let mut shape = hidden.size();
        shape.pop();
        shape.extend([count, heads, head_dim]);
        let (first, count) = (first * width, count * width);
        let projected = if pair_order(hidden.kind()) {
            let rows = pair_order_rows(heads, head_dim, hidden.device());
            (self.wqkv).forward_rows(hidden, &rows.narrow(0, first, count))
        } else {
            self.wqkv.forward_outputs(hidden, first, count)
        };
        projected.view(shape.as_slice())
    }

    /// Attention of the masked positions' queries (`queries`, `[B, Q]`) over every key of
    /// the padded normed states `[B, T, H]`, by SDPA with this layer type's bias at those
    /// positions: the context `[M, H]`, in the order of the flat masked positions.
    fn query_attention(
        &self,
        normed: &Tensor,
        queries: &MaskedQueries,
        rotary: &RotaryTable,
        masks: &AttentionMasks,
        train: bool,
    ) -> Tensor {
        let positions = queries.positions();
        let [key, value]: [Tensor; 2] = (self.projected(normed, 1, 2).unbind(-3))
            .try_into()
            .expect("two parts");
        let query_states = queries.gather(normed);
        let query = self.projected(&query_states, 0, 1).squeeze_dim(-3);
        let query = rotary.select(positions).rotate(&query);
        let heads_first = |xs: Tensor| xs.transpose(1, 2);
        let query = heads_first(query);
        let bias = masks.query_bias(self.layer_type, query.kind(), positions);
        let dropout = self.attention_dropout(train);
        let attended = sdpa(
            &query,
            &heads_first(rotary.rotate(&key)),
            &heads_first(value),
            &bias,
            dropout,
        );
        queries.rows(&attended)
    }

    /// Attention of padded states `[B, T, H]` by SDPA with this layer type's bias.
    fn padded_attention(
        &self,
        hidden: &Tensor,
        rotary: &RotaryTable,
        masks: &AttentionMasks,
        train: bool,
    ) -> Tensor {
        let [query, key, value] = self.rotated_qkv(hidden, rotary);
        let heads_first = |xs: Tensor| xs.transpose(1, 2);
        let (query, key, value) = (heads_first(query), heads_first(key), heads_first(value));
        let bias = masks.bias(self.layer_type, query.kind());
        let dropout = self.attention_dropout(train);
        let attended = sdpa(&query, &key, &value, &bias, dropout);
        match self.layer_type {
            LayerType::Global => attended,
            LayerType::Local => attended.masked_fill(&masks.keyless_queries(), 0.0),
        }
    }

    /// Attention of unpadded rows `[N, H]` by FlashAttention's varlen kernel; a local layer
    /// passes its half window as `window_size_left` and `window_size_right` (transformers
    /// gives `flash_attn_varlen_func` `sliding_window - 1 = local_attention // 2` each side).
    fn varlen_attention(
        &self,
        rows: &Tensor,
        rotary: &RotaryTable,
        cu_seqlens: &Tensor,
        max_len: i64,
        train: bool,
    ) -> Result<Tensor, TorchExtError> {
        let (tokens, hidden_size) = rows.size2().expect("unpadded rows are [N, H]");
        let [query, key, value] = self.rotated_qkv(rows, rotary);
        let head_dim = hidden_size / self.shape.heads;
        let dropout = self.attention_dropout(train);
        let window = (self.layer_type == LayerType::Local).then_some(self.shape.half_window);
        // The run chose this path only where the kernel should exist (CUDA, sm80+, bf16/fp16,
        // head size); should the kernel refuse anyway, the caller names training.unpad.
        let varlen = mlm_torch_ext::attention::Varlen {
            cu_seqlens,
            max_len,
            dropout,
            scale: (head_dim as f64).powf(-0.5),
            window,
        };
        Ok(
            mlm_torch_ext::attention::flash_varlen(&query, &key, &value, &varlen)?
                .reshape([tokens, hidden_size]),
        )
    }
}
