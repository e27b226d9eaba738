//! ModernBERT's masked-language model, a port of transformers' `ModernBertForMaskedLM`
//! (models/modernbert/modeling_modernbert.py, 5.24) under its state-dict names:
//! `model.embeddings` (`tok_embeddings`, `norm`, dropout), `model.layers.{i}`
//! (layer.rs), `model.final_norm`, the head (`head.dense`, activation, `head.norm`) and the
//! decoder, whose weight is `tok_embeddings` (tied) and whose bias is `decoder.bias`.
//!
//! The MLM head runs only where labels are, as `sparse_prediction` does
//! ([`crate::model::MaskedLanguageModel::masked_logits`]).

use mlm_torch_ext::TorchExtError;
use tch::nn::Path;
use tch::{Kind, Tensor};

use super::config::{LayerType, ModernBertLayout};
use super::layer::{AttentionMasks, LayerShape, ModernBertLayer};
use super::rope::{RotaryTable, inverse_frequencies};
use crate::model::config::{Activation, EncoderConfig};
use crate::model::layers::{LayerNorm, Linear, PLACEHOLDER, sub_path};
use crate::model::network::MaskedLmNetwork;
use crate::model::unpad::TokenLayout;

/// The base model's prefix (`base_model_prefix = "model"`).
pub(super) const BASE: &str = "model";

/// `ModernBertForMaskedLM`.
#[derive(Debug)]
pub(super) struct ModernBertMaskedLm {
    tok_embeddings: Tensor,
    embedding_norm: LayerNorm,
    /// `nn.Embedding(padding_idx=pad_token_id)`: the padding row gets no gradient.
    padding_idx: i64,
    embedding_dropout: f64,
    layers: Vec<ModernBertLayer>,
    final_norm: LayerNorm,
    head_dense: Linear,
    head_norm: LayerNorm,
    head_activation: Activation,
    decoder_bias: Option<Tensor>,
    layout: ModernBertLayout,
    head_dim: i64,
}

impl ModernBertMaskedLm {
    /// The variables under `root` with transformers' names, holding placeholders. `config`
    /// has passed validation, so its layout reads.
    pub(super) fn new(root: &Path<'_>, config: &EncoderConfig) -> Self {
        let layout = ModernBertLayout::of(config).expect("a validated ModernBERT config");
        let base = root / BASE;
        let h = config.hidden_size;
        let norm =
            |p: Path<'_>| LayerNorm::with_bias(&p, h, config.layer_norm_eps, layout.norm_bias);
        let shape = LayerShape {
            hidden: h,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            norm_eps: config.layer_norm_eps,
            norm_bias: layout.norm_bias,
            attention_bias: layout.attention_bias,
            mlp_bias: layout.mlp_bias,
            activation: config.activation(),
            attention_dropout: config.attention_probs_dropout_prob,
            mlp_dropout: config.hidden_dropout_prob,
            half_window: layout.half_window,
        };
        let layers_path = &base / "layers";
        let layers = layout
            .layer_types
            .iter()
            .enumerate()
            .map(|(index, kind)| {
                let index = index as i64;
                ModernBertLayer::new(&(&layers_path / index), index, *kind, shape)
            })
            .collect();
        let embeddings = &base / "embeddings";
        let head = root / "head";
        Self {
            tok_embeddings: (&embeddings / "tok_embeddings").var(
                "weight",
                &[config.vocab_size, h],
                PLACEHOLDER,
            ),
            embedding_norm: norm(&embeddings / "norm"),
            padding_idx: config.padding_idx().unwrap_or(-1),
            embedding_dropout: layout.embedding_dropout,
            layers,
            final_norm: norm(&base / "final_norm"),
            head_dense: Linear::with_bias(&sub_path(&head, "dense"), h, h, layout.classifier_bias),
            head_norm: norm(&head / "norm"),
            head_activation: layout.classifier_activation,
            decoder_bias: layout
                .decoder_bias
                .then(|| (root / "decoder").var("bias", &[config.vocab_size], PLACEHOLDER)),
            head_dim: config.head_dim(),
            layout,
        }
    }

    /// `ModernBertEmbeddings`: `drop(norm(tok_embeddings(input_ids)))`.
    fn embed(&self, input_ids: &Tensor, train: bool) -> Tensor {
        let words = Tensor::embedding(
            &self.tok_embeddings,
            input_ids,
            self.padding_idx,
            false,
            false,
        );
        self.embedding_norm
            .forward(&words)
            .dropout(self.embedding_dropout, train)
    }

    /// cos and sin of positions `0..T` for each layer type, in `kind` (the hidden states').
    fn rotary_tables(&self, seq_len: i64, kind: Kind, device: tch::Device) -> [RotaryTable; 2] {
        let positions = Tensor::arange(seq_len, (Kind::Int64, device));
        [self.layout.global_rope_theta, self.layout.local_rope_theta].map(|theta| {
            let inv_freq = inverse_frequencies(theta, self.head_dim, device);
            RotaryTable::new(&positions, &inv_freq, kind)
        })
    }
}

/// The table of a layer's type among `[global, local]`.
fn table_of(tables: &[RotaryTable; 2], layer_type: LayerType) -> &RotaryTable {
    match layer_type {
        LayerType::Global => &tables[0],
        LayerType::Local => &tables[1],
    }
}

impl MaskedLmNetwork for ModernBertMaskedLm {
    fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let mut hidden = self.embed(input_ids, train);
        let seq_len = input_ids.size()[1];
        let tables = self.rotary_tables(seq_len, hidden.kind(), hidden.device());
        let masks = AttentionMasks::new(&attention_mask.eq(0), self.layout.half_window);
        for layer in &self.layers {
            let table = table_of(&tables, layer.layer_type());
            hidden = layer.forward(&hidden, table, &masks, train);
        }
        self.final_norm.forward(&hidden)
    }

    fn encode_unpadded(
        &self,
        input_ids: &Tensor,
        layout: &TokenLayout,
        train: bool,
    ) -> Result<Tensor, TorchExtError> {
        let embedded = self.embed(input_ids, train);
        let seq_len = input_ids.size()[1];
        let tables = self.rotary_tables(seq_len, embedded.kind(), embedded.device());
        let positions = layout.positions();
        let row_tables = [tables[0].select(&positions), tables[1].select(&positions)];
        // The padded fallback's masks; the varlen kernel takes the window itself.
        let masks = AttentionMasks::new(layout.padding(), self.layout.half_window);
        let mut rows = layout.gather(&embedded);
        for layer in &self.layers {
            let kind = layer.layer_type();
            rows = layer.forward_unpadded(
                &rows,
                layout,
                table_of(&row_tables, kind),
                table_of(&tables, kind),
                &masks,
                train,
            )?;
        }
        Ok(self.final_norm.forward(&rows))
    }

    /// `decoder(head(hidden))`: dense, activation, norm; the decoder's weight is the token
    /// embedding matrix.
    fn head(&self, hidden: &Tensor) -> Tensor {
        let transformed = self
            .head_norm
            .forward(&self.head_activation.apply(&self.head_dense.forward(hidden)));
        transformed.linear(&self.tok_embeddings, self.decoder_bias.as_ref())
    }

    /// ModernBERT's base model has no pooler (its classifiers pool through `head`).
    fn pooled(&self, _hidden: &Tensor) -> Option<Tensor> {
        None
    }
}
