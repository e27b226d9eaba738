//! BERT for masked-language modelling: a port of `BertForMaskedLM` from
//! transformers/models/bert/modeling_bert.py (transformers 5.24), with the same parameter
//! names, so a `VarStore` reads and writes Hugging Face state dicts key for key.
//!
//! Differences that do not change results: token types are always 0 (`BertEmbeddings.forward`
//! with `token_type_ids=None`), so row 0 of `token_type_embeddings` is broadcast instead of
//! looked up; the decoder is the word-embedding matrix itself (`_tied_weights_keys`), so there
//! is no `cls.predictions.decoder.*` variable; `masked_logits` runs the head only where labels
//! are, which gives the same logits there as `BertForMaskedLM.forward` does.

use tch::nn::{Init, Path, VarStore};
use tch::{Kind, Tensor};

use super::ModelError;
use super::config::{Activation, BertConfig};
use super::init::init_weights_like_hf;

/// The value variables are created with. Weights get their real values from exactly one
/// place afterwards, [`init_weights_like_hf`] or a checkpoint load, so no random draw here
/// is made only to be overwritten.
const PLACEHOLDER: Init = Init::Const(0.0);

/// `nn.Linear` with HF's names (`weight` `[out, in]`, `bias` `[out]`).
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(p: &Path<'_>, in_dim: i64, out_dim: i64) -> Self {
        Self {
            weight: p.var("weight", &[out_dim, in_dim], PLACEHOLDER),
            bias: p.var("bias", &[out_dim], PLACEHOLDER),
        }
    }

    /// A variable pair the optimizer must not update (see [`BertForMaskedLM::new`]).
    fn frozen(p: &Path<'_>, in_dim: i64, out_dim: i64) -> Self {
        let options = (p.kind(), p.device());
        Self {
            weight: p.add("weight", Tensor::zeros([out_dim, in_dim], options), false),
            bias: p.add("bias", Tensor::zeros([out_dim], options), false),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }
}

/// `nn.LayerNorm` with HF's names (`LayerNorm.weight`, `LayerNorm.bias`).
#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    size: i64,
}

impl LayerNorm {
    fn new(p: &Path<'_>, size: i64, eps: f64) -> Self {
        Self {
            weight: p.var("weight", &[size], Init::Const(1.0)),
            bias: p.var("bias", &[size], Init::Const(0.0)),
            eps,
            size,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.layer_norm(
            [self.size],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// `BertEmbeddings`: word + token type (always 0) + absolute position, LayerNorm, dropout.
#[derive(Debug)]
struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    layer_norm: LayerNorm,
    /// `nn.Embedding(padding_idx=pad_token_id)`: the padding row gets no gradient.
    padding_idx: i64,
    dropout: f64,
}

impl Embeddings {
    fn new(p: &Path<'_>, config: &BertConfig) -> Self {
        let h = config.hidden_size;
        let table = |name: &str, rows: i64| (p / name).var("weight", &[rows, h], PLACEHOLDER);
        Self {
            word: table("word_embeddings", config.vocab_size),
            position: table("position_embeddings", config.max_position_embeddings),
            token_type: table("token_type_embeddings", config.type_vocab_size),
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), h, config.layer_norm_eps),
            padding_idx: config.padding_idx().unwrap_or(-1),
            dropout: config.hidden_dropout_prob,
        }
    }

    /// `BertEmbeddings.forward` with `token_type_ids=None`, `position_ids=None`.
    fn forward(&self, input_ids: &Tensor, train: bool) -> Tensor {
        let seq_len = input_ids.size()[1];
        let words = Tensor::embedding(&self.word, input_ids, self.padding_idx, false, false);
        // Same order of additions as HF: (inputs_embeds + token_type_embeddings) + positions.
        let embeddings = words + self.token_type.get(0) + self.position.narrow(0, 0, seq_len);
        self.layer_norm
            .forward(&embeddings)
            .dropout(self.dropout, train)
    }
}

/// `BertLayer` = `BertAttention` (`BertSelfAttention` + `BertSelfOutput`) + `BertIntermediate`
/// + `BertOutput`, post-LayerNorm as in the original BERT.
#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: i64,
    head_dim: i64,
    activation: Activation,
    hidden_dropout: f64,
    attention_dropout: f64,
}

impl Layer {
    fn new(p: &Path<'_>, config: &BertConfig) -> Self {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let attention = p / "attention";
        let self_attention = &attention / "self";
        let attention_out = &attention / "output";
        let output = p / "output";
        Self {
            query: Linear::new(&(&self_attention / "query"), h, h),
            key: Linear::new(&(&self_attention / "key"), h, h),
            value: Linear::new(&(&self_attention / "value"), h, h),
            attention_output: Linear::new(&(&attention_out / "dense"), h, h),
            attention_norm: LayerNorm::new(&(&attention_out / "LayerNorm"), h, eps),
            intermediate: Linear::new(&(p / "intermediate" / "dense"), h, config.intermediate_size),
            output: Linear::new(&(&output / "dense"), config.intermediate_size, h),
            output_norm: LayerNorm::new(&(&output / "LayerNorm"), h, eps),
            heads: config.num_attention_heads,
            head_dim: config.head_dim(),
            activation: config.activation(),
            hidden_dropout: config.hidden_dropout_prob,
            attention_dropout: config.attention_probs_dropout_prob,
        }
    }

    /// `BertSelfAttention.forward` through `sdpa_attention_forward`: heads split as
    /// `view(B, T, heads, head_dim).transpose(1, 2)`, scale `head_dim ** -0.5`, attention-prob
    /// dropout inside SDPA when training.
    fn self_attention(&self, hidden: &Tensor, padding: &Tensor, train: bool) -> Tensor {
        let (batch, seq_len, hidden_size) = hidden.size3().expect("hidden states are [B, T, H]");
        let split = |xs: Tensor| {
            xs.view([batch, seq_len, self.heads, self.head_dim])
                .transpose(1, 2)
        };
        let query = split(self.query.forward(hidden));
        let key = split(self.key.forward(hidden));
        let value = split(self.value.forward(hidden));
        let bias = additive_mask(padding, query.kind());
        let dropout = if train { self.attention_dropout } else { 0.0 };
        let scale = (self.head_dim as f64).powf(-0.5);
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

    /// `BertLayer.forward` -> `feed_forward_chunk` (no chunking: `chunk_size_feed_forward` 0).
    fn forward(&self, hidden: &Tensor, padding: &Tensor, train: bool) -> Tensor {
        // BertSelfOutput: dense, dropout, LayerNorm(x + residual).
        let attended = self
            .attention_output
            .forward(&self.self_attention(hidden, padding, train))
            .dropout(self.hidden_dropout, train);
        let attended = self.attention_norm.forward(&(attended + hidden));
        // BertIntermediate + BertOutput.
        let inner = self.activation.apply(&self.intermediate.forward(&attended));
        let out = self
            .output
            .forward(&inner)
            .dropout(self.hidden_dropout, train);
        self.output_norm.forward(&(out + attended))
    }
}

/// The attention bias SDPA adds to the scores: 0 where a key may be attended, the most
/// negative finite value of `kind` where it is padding (`torch.finfo(dtype).min`, as HF's
/// masks). A finite value, not -inf, keeps rows whose keys are all padding finite (uniform
/// attention) instead of NaN; `kind` follows the query so that autocast (bf16/fp16) gets a
/// bias it can represent.
fn additive_mask(padding: &Tensor, kind: Kind) -> Tensor {
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

/// `BertForMaskedLM`: `bert` (embeddings, encoder, pooler) + `cls.predictions` (transform and
/// the decoder tied to the word embeddings, with its own bias).
#[derive(Debug)]
pub struct BertForMaskedLM {
    config: BertConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// `bert.pooler.dense`: not used by the MLM forward; kept so that an imported pooler
    /// reaches the export (fine-tuning with `BertForSequenceClassification` uses it).
    pooler: Linear,
    transform: Linear,
    transform_norm: LayerNorm,
    decoder_bias: Tensor,
    activation: Activation,
}

impl BertForMaskedLM {
    /// Creates the variables under `root` with Hugging Face's names, holding placeholders
    /// (zeros, LayerNorm weights one): give them values with [`init_weights_like_hf`]
    /// (seeded, device-independent, as `post_init`), or [`super::load_hf_dir`], which also
    /// initialises what the checkpoint lacks; [`Self::initialised`] does the first. The config
    /// must have passed [`BertConfig::validate`] (every constructor of `BertConfig` from a file
    /// does).
    ///
    /// `bert.pooler.dense.*` are created frozen (`requires_grad` false, not in
    /// `VarStore::trainable_variables`): transformers' `BertForMaskedLM` has no pooler
    /// (`add_pooling_layer=False`), so MLM training must leave it as loaded.
    pub fn new(root: &Path<'_>, config: &BertConfig) -> Self {
        let bert = root / "bert";
        let encoder = &bert / "encoder" / "layer";
        let layers = (0..config.num_hidden_layers)
            .map(|index| Layer::new(&(&encoder / index), config))
            .collect();
        let predictions = root / "cls" / "predictions";
        let transform = &predictions / "transform";
        let h = config.hidden_size;
        Self {
            config: config.clone(),
            embeddings: Embeddings::new(&(&bert / "embeddings"), config),
            layers,
            pooler: Linear::frozen(&(&bert / "pooler" / "dense"), h, h),
            transform: Linear::new(&(&transform / "dense"), h, h),
            transform_norm: LayerNorm::new(&(&transform / "LayerNorm"), h, config.layer_norm_eps),
            decoder_bias: predictions.var("bias", &[config.vocab_size], PLACEHOLDER),
            activation: config.activation(),
        }
    }

    /// A model from scratch in `vs`: [`Self::new`] + [`init_weights_like_hf`] from `seed`.
    pub fn initialised(vs: &VarStore, config: &BertConfig, seed: u64) -> Self {
        let model = Self::new(&vs.root(), config);
        init_weights_like_hf(vs, config, seed);
        model
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Checks inputs before a forward pass (the forward itself panics inside libtorch on
    /// malformed input): `[B, T]` Int64 ids and mask of the same shape, `T` within
    /// `max_position_embeddings`, ids within the vocabulary. Costs a device sync; use it where
    /// inputs come from outside (fill-mask, eval of a foreign set), not in the hot loop.
    pub fn check_inputs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<(), ModelError> {
        let size = input_ids.size();
        if size.len() != 2 || input_ids.kind() != Kind::Int64 {
            return Err(ModelError::BadInput(format!(
                "input_ids must be a [batch, seq_len] Int64 tensor, got {size:?} {:?}",
                input_ids.kind()
            )));
        }
        if attention_mask.size() != size {
            return Err(ModelError::BadInput(format!(
                "attention_mask has shape {:?}, input_ids {size:?}",
                attention_mask.size()
            )));
        }
        if size[1] > self.config.max_position_embeddings {
            return Err(ModelError::BadInput(format!(
                "sequence length {} exceeds max_position_embeddings {}",
                size[1], self.config.max_position_embeddings
            )));
        }
        if input_ids.numel() > 0 {
            let (low, high) = (
                input_ids.min().int64_value(&[]),
                input_ids.max().int64_value(&[]),
            );
            if low < 0 || high >= self.config.vocab_size {
                return Err(ModelError::BadInput(format!(
                    "token ids span [{low}, {high}] but vocab_size is {}",
                    self.config.vocab_size
                )));
            }
        }
        Ok(())
    }

    /// `BertModel.forward` without the pooler: final hidden states `[B, T, H]`.
    /// `attention_mask` is 1 for real tokens and 0 for padding (any integer or bool kind).
    pub fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let padding = attention_mask.eq(0);
        let mut hidden = self.embeddings.forward(input_ids, train);
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &padding, train);
        }
        hidden
    }

    /// `BertOnlyMLMHead` on hidden states `[..., H]` -> logits `[..., V]`:
    /// `BertPredictionHeadTransform` (dense, activation, LayerNorm), then the decoder, whose
    /// weight is the word-embedding matrix and whose bias is `cls.predictions.bias`.
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        let transformed = self
            .transform_norm
            .forward(&self.activation.apply(&self.transform.forward(hidden)));
        transformed.linear(&self.embeddings.word, Some(&self.decoder_bias))
    }

    /// `BertPooler.forward`: tanh(dense(hidden state of the first token)), `[B, H]`.
    pub fn pooled(&self, hidden: &Tensor) -> Tensor {
        self.pooler.forward(&hidden.select(1, 0)).tanh()
    }

    /// `BertForMaskedLM.forward(...).logits`: `[B, T, V]`.
    pub fn logits(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.head(&self.encode(input_ids, attention_mask, train))
    }

    /// Logits at the masked positions only, `[M, V]`: the hidden states are gathered at the
    /// flat positions `b * T + t` (Int64, `[M]`) first and the head (whose decoder is the
    /// biggest matmul of a small BERT) runs on those rows alone.
    pub fn masked_logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        masked_positions: &Tensor,
        train: bool,
    ) -> Tensor {
        let hidden = self.encode(input_ids, attention_mask, train);
        let rows = hidden.reshape([-1, self.config.hidden_size]);
        self.head(&rows.index_select(0, masked_positions))
    }
}

#[cfg(test)]
mod cuda_tests;
#[cfg(test)]
mod tests;
