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
use crate::model::MaskedQueries;
use crate::model::config::{Activation, EncoderConfig};
use crate::model::layers::{LayerNorm, Linear, PLACEHOLDER, linear, sub_path};
use crate::model::network::{MaskedLmNetwork, gather_rows, last_layer_on_masked_rows};
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

/// The padded encoder's state between layers: hidden states and what every layer reads.
struct PaddedPass {
    hidden: Tensor,
    tables: [RotaryTable; 2],
    masks: AttentionMasks,
}

impl ModernBertMaskedLm {
    /// The embeddings and, on them, the padded `layers`.
    fn padded_pass(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        layers: &[ModernBertLayer],
        train: bool,
    ) -> PaddedPass {
        let mut hidden = self.embed(input_ids, train);
        let seq_len = input_ids.size()[1];
        let tables = self.rotary_tables(seq_len, hidden.kind(), hidden.device());
        let masks = AttentionMasks::new(&attention_mask.eq(0), self.layout.half_window);
        for layer in layers {
            let table = table_of(&tables, layer.layer_type());
            hidden = layer.forward(&hidden, table, &masks, train);
        }
        PaddedPass {
            hidden,
            tables,
            masks,
        }
    }
}

impl MaskedLmNetwork for ModernBertMaskedLm {
    fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let pass = self.padded_pass(input_ids, attention_mask, &self.layers, train);
        self.final_norm.forward(&pass.hidden)
    }

    /// The last layer on the masked rows alone where `queries` groups them and no dropout
    /// draws there (model/queries.rs).
    fn encode_masked(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        masked_positions: &Tensor,
        queries: Option<&MaskedQueries>,
        train: bool,
    ) -> Tensor {
        let on_rows =
            last_layer_on_masked_rows(&self.layers, queries, train, ModernBertLayer::draws_dropout);
        let Some((last, earlier, queries)) = on_rows else {
            return gather_rows(
                &self.encode(input_ids, attention_mask, train),
                masked_positions,
            );
        };
        let pass = self.padded_pass(input_ids, attention_mask, earlier, train);
        let rows = last.forward_queries(
            &pass.hidden,
            masked_positions,
            queries,
            table_of(&pass.tables, last.layer_type()),
            &pass.masks,
            train,
        );
        self.final_norm.forward(&rows)
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
        linear(
            &transformed,
            &self.tok_embeddings,
            self.decoder_bias.as_ref(),
        )
    }

    /// ModernBERT's base model has no pooler (its classifiers pool through `head`).
    fn pooled(&self, _hidden: &Tensor) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Kind, Tensor};

    use super::*;
    use crate::model::network::tests::tiny_config;

    fn last_layer(dropout: f64, attention_dropout: f64) -> ModernBertLayer {
        let config = EncoderConfig {
            model_type: Some("modernbert".into()),
            hidden_dropout_prob: dropout,
            attention_probs_dropout_prob: attention_dropout,
            ..tiny_config()
        };
        let vs = VarStore::new(tch::Device::Cpu);
        let mut network = ModernBertMaskedLm::new(&vs.root(), &config);
        network.layers.pop().expect("layers")
    }

    /// fp32 rotates q and k in pair order, fp64 in transformers' order: the same model gives
    /// the same logits and gradients both ways (to fp32 rounding), padded and unpadded, with
    /// the last layer on every row and on the masked rows alone. A pair order that differed
    /// between q and k, or from the rotation's pairs, would be off by O(1).
    #[test]
    fn the_pair_order_rotation_matches_transformers_order() {
        use crate::model::{MaskedLanguageModel, MaskedQueries, init_weights_like_hf};
        let mut extra = serde_json::Map::new();
        extra.insert("local_attention".into(), 4.into());
        let config = EncoderConfig {
            model_type: Some("modernbert".into()),
            num_hidden_layers: 3,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            extra,
            ..tiny_config()
        };
        let logits = |kind: Kind, grouped: bool| {
            let mut vs = VarStore::new(tch::Device::Cpu);
            let model = MaskedLanguageModel::new(&vs.root(), &config);
            init_weights_like_hf(&vs, &config, 5);
            vs.set_kind(kind);
            let ids =
                Tensor::arange_start(2, 2 + 2 * 11, (Kind::Int64, tch::Device::Cpu)).view([2, 11]);
            let positions = [0_i64, 3, 9, 12, 20];
            let queries = MaskedQueries::new(&positions, 2, 11, |host| host);
            let logits = model.masked_logits_grouped(
                &ids,
                &ids.ones_like(),
                &Tensor::from_slice(&positions),
                queries.as_ref().filter(|_| grouped),
                true,
            );
            logits.sum(kind).backward();
            let embeddings = vs.variables()["model.embeddings.tok_embeddings.weight"].grad();
            (
                logits.to_kind(Kind::Double),
                embeddings.to_kind(Kind::Double),
            )
        };
        let (reference, reference_grad) = logits(Kind::Double, false);
        for grouped in [false, true] {
            let (fp32, fp32_grad) = logits(Kind::Float, grouped);
            let diff = (&fp32 - &reference).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "grouped {grouped}: logits differ by {diff}");
            let scale = reference_grad.abs().max().double_value(&[]);
            let diff = (&fp32_grad - &reference_grad).abs().max().double_value(&[]) / scale;
            assert!(
                diff < 2e-6,
                "grouped {grouped}: gradients differ by {diff} (relative)"
            );
        }
    }

    #[test]
    fn the_last_layer_runs_on_masked_rows_unless_it_draws_dropout_in_training() {
        let queries = MaskedQueries::new(&[1, 6], 2, 4, |t| t).expect("grouped");
        let on_rows = |layer: ModernBertLayer, train: bool| {
            let layers = [layer];
            let split = last_layer_on_masked_rows(
                &layers,
                Some(&queries),
                train,
                ModernBertLayer::draws_dropout,
            );
            split.is_some()
        };
        assert!(on_rows(last_layer(0.0, 0.0), true));
        assert!(!on_rows(last_layer(0.1, 0.0), true));
        assert!(!on_rows(last_layer(0.0, 0.1), true));
        assert!(on_rows(last_layer(0.1, 0.1), false));
    }
}
