//! The network of a post-LN family: embeddings, post-LayerNorm encoder layers, an optional
//! (frozen) pooler, and the MLM head whose decoder is the word-embedding matrix. A port of
//! transformers' `BertForMaskedLM` (models/bert/modeling_bert.py, 5.24),
//! `RobertaForMaskedLM` and `DistilBertForMaskedLM`: the family's [`PostLnSpec`] gives the
//! Hugging Face names, so a `VarStore` reads and writes their state dicts key for key.
//!
//! Differences that do not change results: token types are always 0 (the `forward`s with
//! `token_type_ids=None`), so row 0 of `token_type_embeddings` is broadcast instead of looked
//! up; the decoder is the word-embedding matrix itself (`_tied_weights_keys`), so there is no
//! decoder variable.

use mlm_torch_ext::TorchExtError;
use tch::nn::Path;
use tch::{Kind, Tensor};

use super::layer::{EncoderLayer, LayerShape};
use super::{HeadActivation, Positions, PostLnSpec};
use crate::model::MaskedQueries;
use crate::model::config::{Activation, EncoderConfig};
use crate::model::layers::{LayerNorm, Linear, PLACEHOLDER, linear, sub_path};
use crate::model::network::{MaskedLmNetwork, gather_rows, last_layer_on_masked_rows};
use crate::model::unpad::TokenLayout;

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
    fn new(p: &Path<'_>, config: &EncoderConfig, spec: &PostLnSpec) -> Self {
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

/// A post-LN family's masked-language model (see the module docs).
#[derive(Debug)]
pub(super) struct PostLnMaskedLm {
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

impl PostLnMaskedLm {
    /// The variables under `root` with the family's Hugging Face names, holding placeholders.
    /// The pooler is created frozen (`requires_grad` false): transformers' masked-LM classes
    /// have none (`add_pooling_layer=False`), so MLM training must leave it as loaded.
    pub(super) fn new(root: &Path<'_>, config: &EncoderConfig, spec: &PostLnSpec) -> Self {
        let base = root / spec.keys.base;
        let h = config.hidden_size;
        let head_activation = match spec.head_activation {
            HeadActivation::FromConfig => config.activation(),
            HeadActivation::Gelu => Activation::Gelu,
        };
        Self {
            embeddings: Embeddings::new(&(&base / "embeddings"), config, spec),
            layers: layers(&sub_path(&base, spec.layers), config, spec),
            pooler: spec
                .keys
                .pooler
                .map(|name| Linear::frozen(&sub_path(root, name), h, h)),
            transform: Linear::new(&sub_path(root, spec.head_dense), h, h),
            transform_norm: LayerNorm::new(
                &sub_path(root, spec.head_norm),
                h,
                config.layer_norm_eps,
            ),
            decoder_bias: head_bias(root, spec.keys.decoder_bias, config.vocab_size),
            head_activation,
        }
    }
}

impl PostLnMaskedLm {
    /// The embeddings and, on them, the padded `layers`; `padding` is `[B, T]`, true at
    /// padding.
    fn padded_layers(
        &self,
        input_ids: &Tensor,
        padding: &Tensor,
        layers: &[EncoderLayer],
        train: bool,
    ) -> Tensor {
        let mut hidden = self.embeddings.forward(input_ids, train);
        for layer in layers {
            hidden = layer.forward(&hidden, padding, train);
        }
        hidden
    }
}

impl MaskedLmNetwork for PostLnMaskedLm {
    fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.padded_layers(input_ids, &attention_mask.eq(0), &self.layers, train)
    }

    /// The last layer on the masked rows alone where `queries` groups them and it draws no
    /// dropout (evaluation, or dropout 0): the draws would otherwise fall on other shapes
    /// than transformers' and a run would lose its parity with it (model/queries.rs).
    fn encode_masked(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        masked_positions: &Tensor,
        queries: Option<&MaskedQueries>,
        train: bool,
    ) -> Tensor {
        let on_rows =
            last_layer_on_masked_rows(&self.layers, queries, train, EncoderLayer::draws_dropout);
        let Some((last, earlier, queries)) = on_rows else {
            return gather_rows(
                &self.encode(input_ids, attention_mask, train),
                masked_positions,
            );
        };
        let padding = attention_mask.eq(0);
        let hidden = self.padded_layers(input_ids, &padding, earlier, train);
        last.forward_queries(&hidden, &padding, masked_positions, queries, train)
    }

    fn encode_unpadded(
        &self,
        input_ids: &Tensor,
        layout: &TokenLayout,
        train: bool,
    ) -> Result<Tensor, TorchExtError> {
        let mut rows = layout.gather(&self.embeddings.forward(input_ids, train));
        for layer in &self.layers {
            rows = layer.forward_unpadded(&rows, layout, train)?;
        }
        Ok(rows)
    }

    /// The transform (dense, activation, LayerNorm), then the decoder, whose weight is the
    /// word-embedding matrix and whose bias is the head's own (`cls.predictions.bias`,
    /// `lm_head.bias`, `vocab_projector.bias`).
    fn head(&self, hidden: &Tensor) -> Tensor {
        let transformed = self
            .transform_norm
            .forward(&self.head_activation.apply(&self.transform.forward(hidden)));
        linear(
            &transformed,
            &self.embeddings.word,
            Some(&self.decoder_bias),
        )
    }

    fn pooled(&self, hidden: &Tensor) -> Option<Tensor> {
        let pooler = self.pooler.as_ref()?;
        Some(pooler.forward(&hidden.select(1, 0)).tanh())
    }
}

fn layers(p: &Path<'_>, config: &EncoderConfig, spec: &PostLnSpec) -> Vec<EncoderLayer> {
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
    sub_path(root, parent).var(name, &[vocab_size], PLACEHOLDER)
}
