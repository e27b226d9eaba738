//! The masked-language model every family builds: embeddings, post-LayerNorm encoder layers,
//! an optional (frozen) pooler, and the MLM head whose decoder is the word-embedding matrix.
//! A port of transformers' `BertForMaskedLM` (models/bert/modeling_bert.py, 5.24),
//! `RobertaForMaskedLM` and `DistilBertForMaskedLM`: the [`Family`]'s spec gives the
//! Hugging Face names, so a `VarStore` reads and writes their state dicts key for key.
//!
//! Differences that do not change results: token types are always 0 (the `forward`s with
//! `token_type_ids=None`), so row 0 of `token_type_embeddings` is broadcast instead of looked
//! up; the decoder is the word-embedding matrix itself (`_tied_weights_keys`), so there is no
//! decoder variable; `masked_logits` runs the head only where labels are, which gives the same
//! logits there as the full `forward` does.

use tch::nn::{Path, VarStore};
use tch::{Kind, Tensor};

use super::ModelError;
use super::config::{Activation, BertConfig};
use super::family::{Family, FamilySpec, HeadActivation, Positions};
use super::init::init_weights_like_hf;
use super::layers::{EncoderLayer, LayerNorm, LayerShape, Linear, PLACEHOLDER, at};
use super::unpad::TokenLayout;

/// `BertEmbeddings` / `RobertaEmbeddings` / DistilBERT's `Embeddings`: word + token type
/// (always 0, when the family has them) + position, LayerNorm, dropout.
#[derive(Debug)]
struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Option<Tensor>,
    layer_norm: LayerNorm,
    /// `nn.Embedding(padding_idx=pad_token_id)`: the padding row gets no gradient.
    padding_idx: i64,
    positions: Positions,
    dropout: f64,
}

impl Embeddings {
    fn new(p: &Path<'_>, config: &BertConfig, spec: &FamilySpec) -> Self {
        let h = config.hidden_size;
        let table = |name: &str, rows: i64| (p / name).var("weight", &[rows, h], PLACEHOLDER);
        Self {
            word: table("word_embeddings", config.vocab_size),
            position: table("position_embeddings", config.max_position_embeddings),
            token_type: spec
                .token_types
                .then(|| table("token_type_embeddings", config.type_vocab_size)),
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), h, config.layer_norm_eps),
            padding_idx: config.padding_idx().unwrap_or(-1),
            positions: spec.positions,
            dropout: config.hidden_dropout_prob,
        }
    }

    /// The `forward` with `token_type_ids=None`, `position_ids=None`.
    fn forward(&self, input_ids: &Tensor, train: bool) -> Tensor {
        let words = Tensor::embedding(&self.word, input_ids, self.padding_idx, false, false);
        // Same order of additions as HF: (inputs_embeds + token_type_embeddings) + positions.
        let embeddings = match &self.token_type {
            Some(token_type) => words + token_type.get(0),
            None => words,
        };
        let embeddings = embeddings + self.position_embeddings(input_ids);
        self.layer_norm
            .forward(&embeddings)
            .dropout(self.dropout, train)
    }

    fn position_embeddings(&self, input_ids: &Tensor) -> Tensor {
        match self.positions {
            Positions::Absolute => {
                let seq_len = input_ids.size()[1];
                self.position.narrow(0, 0, seq_len)
            }
            Positions::AfterPadding => {
                // create_position_ids_from_input_ids: cumsum over real tokens, offset by the
                // padding id; padding tokens get the padding id itself.
                let real = input_ids.ne(self.padding_idx).to_kind(Kind::Int64);
                let ids = real.cumsum(1, Kind::Int64) * &real + self.padding_idx;
                Tensor::embedding(&self.position, &ids, self.padding_idx, false, false)
            }
        }
    }
}

/// A family's masked-language model (see the module docs).
#[derive(Debug)]
pub struct MaskedLanguageModel {
    config: BertConfig,
    family: Family,
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    /// Not used by the MLM forward; kept so that an imported pooler reaches the export
    /// (fine-tuning with `...ForSequenceClassification` uses it).
    pooler: Option<Linear>,
    transform: Linear,
    transform_norm: LayerNorm,
    decoder_bias: Tensor,
    head_activation: Activation,
}

impl MaskedLanguageModel {
    /// Creates the variables under `root` with Hugging Face's names for `config`'s family,
    /// holding placeholders (zeros, LayerNorm weights one): give them values with
    /// [`init_weights_like_hf`] (seeded, device-independent, as `post_init`), or
    /// [`super::load_hf_dir`], which also initialises what the checkpoint lacks;
    /// [`Self::initialised`] does the first. The config must have passed
    /// [`BertConfig::validate`] (every constructor of `BertConfig` from a file does).
    ///
    /// The pooler is created frozen (`requires_grad` false, not in
    /// `VarStore::trainable_variables`): transformers' masked-LM classes have none
    /// (`add_pooling_layer=False`), so MLM training must leave it as loaded.
    pub fn new(root: &Path<'_>, config: &BertConfig) -> Self {
        let family = config.family();
        let spec = family.spec();
        let base = root / spec.base;
        let h = config.hidden_size;
        let head_activation = match spec.head_activation {
            HeadActivation::FromConfig => config.activation(),
            HeadActivation::Gelu => Activation::Gelu,
        };
        Self {
            config: config.clone(),
            family,
            embeddings: Embeddings::new(&(&base / "embeddings"), config, spec),
            layers: layers(&at(&base, spec.layers), config, spec),
            pooler: spec
                .pooler
                .map(|name| Linear::frozen(&at(&base, name), h, h)),
            transform: Linear::new(&at(root, spec.head_dense), h, h),
            transform_norm: LayerNorm::new(&at(root, spec.head_norm), h, config.layer_norm_eps),
            decoder_bias: head_bias(root, spec.head_bias, config.vocab_size),
            head_activation,
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

    pub fn family(&self) -> Family {
        self.family
    }

    /// Checks inputs before a forward pass (the forward itself panics inside libtorch on
    /// malformed input): `[B, T]` Int64 ids and mask of the same shape, `T` within the
    /// position table, ids within the vocabulary. Costs a device sync; use it where inputs
    /// come from outside (fill-mask, eval of a foreign set), not in the hot loop.
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
        if size[1] > self.config.max_sequence_length() {
            return Err(ModelError::BadInput(format!(
                "sequence length {} exceeds the {} positions of the model \
                 (max_position_embeddings {})",
                size[1],
                self.config.max_sequence_length(),
                self.config.max_position_embeddings
            )));
        }
        self.check_ids(input_ids)
    }

    fn check_ids(&self, input_ids: &Tensor) -> Result<(), ModelError> {
        if input_ids.numel() == 0 {
            return Ok(());
        }
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
        Ok(())
    }

    /// The base model's forward without the pooler: final hidden states `[B, T, H]`.
    /// `attention_mask` is 1 for real tokens and 0 for padding (any integer or bool kind).
    pub fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let padding = attention_mask.eq(0);
        let mut hidden = self.embeddings.forward(input_ids, train);
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &padding, train);
        }
        hidden
    }

    /// The MLM head on hidden states `[..., H]` -> logits `[..., V]`: the transform (dense,
    /// activation, LayerNorm), then the decoder, whose weight is the word-embedding matrix
    /// and whose bias is the head's own (`cls.predictions.bias`, `lm_head.bias`,
    /// `vocab_projector.bias`).
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        let transformed = self
            .transform_norm
            .forward(&self.head_activation.apply(&self.transform.forward(hidden)));
        transformed.linear(&self.embeddings.word, Some(&self.decoder_bias))
    }

    /// The pooler (`tanh(dense(hidden state of the first token))`, `[B, H]`), for families
    /// whose base model has one.
    pub fn pooled(&self, hidden: &Tensor) -> Option<Tensor> {
        let pooler = self.pooler.as_ref()?;
        Some(pooler.forward(&hidden.select(1, 0)).tanh())
    }

    /// The masked-LM class's `forward(...).logits`: `[B, T, V]`.
    pub fn logits(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.head(&self.encode(input_ids, attention_mask, train))
    }

    /// Logits at the masked positions only, `[M, V]`: the hidden states are gathered at the
    /// flat positions `b * T + t` (Int64, `[M]`) first and the head (whose decoder is the
    /// biggest matmul of a small model) runs on those rows alone.
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

    /// [`Self::masked_logits`] with the encoder on the real tokens only (model/unpad.rs):
    /// the embeddings of the padded batch are gathered at `layout`'s tokens, every layer runs
    /// on those rows, and the head on the rows `masked_rows` (indices into the real tokens,
    /// from [`super::unpad::rows_among`]). The same logits as the padded forward, up to
    /// rounding; dropout draws on other shapes.
    pub fn masked_logits_unpadded(
        &self,
        input_ids: &Tensor,
        layout: &TokenLayout,
        masked_rows: &Tensor,
        train: bool,
    ) -> Tensor {
        let mut rows = layout.gather(&self.embeddings.forward(input_ids, train));
        for layer in &self.layers {
            rows = layer.forward_unpadded(&rows, layout, train);
        }
        self.head(&rows.index_select(0, masked_rows))
    }
}

fn layers(p: &Path<'_>, config: &BertConfig, spec: &FamilySpec) -> Vec<EncoderLayer> {
    let shape = LayerShape {
        hidden: config.hidden_size,
        intermediate: config.intermediate_size,
        heads: config.num_attention_heads,
        layer_norm_eps: config.layer_norm_eps,
        activation: config.activation(),
        hidden_dropout: config.hidden_dropout_prob,
        attention_dropout: config.attention_probs_dropout_prob,
        attention_output_dropout: spec.attention_output_dropout,
    };
    (0..config.num_hidden_layers)
        .map(|index| EncoderLayer::new(&(p / index), &spec.layer, shape))
        .collect()
}

/// The decoder's own bias, a variable at a dotted path (`cls.predictions.bias`: every
/// family's sits inside a head module).
fn head_bias(root: &Path<'_>, dotted: &str, vocab_size: i64) -> Tensor {
    let (parent, name) = dotted
        .rsplit_once('.')
        .expect("head biases live inside a head module");
    at(root, parent).var(name, &[vocab_size], PLACEHOLDER)
}

#[cfg(test)]
mod cuda_tests;
#[cfg(test)]
mod tests;
