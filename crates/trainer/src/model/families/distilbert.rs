//! DistilBERT (transformers/models/distilbert/modeling_distilbert.py,
//! `DistilBertForMaskedLM`): six post-LayerNorm layers under `distilbert.transformer.layer`
//! with `q_lin`/`k_lin`/`v_lin`/`out_lin` (no dropout after `out_lin`), `sa_layer_norm`,
//! `ffn.lin1`/`lin2`, `output_layer_norm`; embeddings without token types; the head
//! `vocab_transform`, activation, `vocab_layer_norm`, `vocab_projector` (weight tied). Its
//! `config.json` names the sizes differently (`dim`, `n_layers`, ...), translated here.

use serde_json::{Map, Value};

use super::postln::{Dialect, HeadActivation, LayerNames, Positions, PostLnFamily, PostLnSpec};
use crate::model::arch::{ModelType, StateKeys};

pub(super) static DISTILBERT: PostLnFamily = PostLnFamily {
    name: "DistilBERT",
    model_types: &[ModelType {
        model_type: "distilbert",
        masked_lm_class: "DistilBertForMaskedLM",
    }],
    class_prefixes: &["DistilBert"],
    spec: PostLnSpec {
        keys: StateKeys {
            base: "distilbert",
            word_embeddings: "distilbert.embeddings.word_embeddings.weight",
            decoder_bias: "vocab_projector.bias",
            tied: &[(
                "vocab_projector.weight",
                "distilbert.embeddings.word_embeddings.weight",
            )],
            pooler: None,
            other_heads: &["pre_classifier.", "classifier.", "qa_outputs."],
        },
        layers: "transformer.layer",
        layer: LayerNames {
            query: "attention.q_lin",
            key: "attention.k_lin",
            value: "attention.v_lin",
            attention_output: "attention.out_lin",
            attention_norm: "sa_layer_norm",
            ffn_in: "ffn.lin1",
            ffn_out: "ffn.lin2",
            output_norm: "output_layer_norm",
        },
        token_types: false,
        positions: Positions::Absolute,
        attention_output_dropout: false,
        head_dense: "vocab_transform",
        head_norm: "vocab_layer_norm",
        head_activation: HeadActivation::FromConfig,
    },
    dialect: Dialect {
        to_encoder_keys: Some(to_encoder_keys),
        from_encoder_keys: Some(from_encoder_keys),
        fill_defaults: None,
        scratch_type_vocab_size: 0,
        scratch_layer_norm_eps: LAYER_NORM_EPS,
    },
};

/// (DistilBERT key, BERT key, `DistilEncoderConfig.__init__` default).
const KEYS: [(&str, &str, f64); 7] = [
    ("dim", "hidden_size", 768.0),
    ("n_layers", "num_hidden_layers", 6.0),
    ("n_heads", "num_attention_heads", 12.0),
    ("hidden_dim", "intermediate_size", 3072.0),
    ("dropout", "hidden_dropout_prob", 0.1),
    ("attention_dropout", "attention_probs_dropout_prob", 0.1),
    ("activation", "hidden_act", f64::NAN),
];

/// DistilBERT's LayerNorms are built with `eps=1e-12` whatever the config says.
const LAYER_NORM_EPS: f64 = 1e-12;

/// Renames DistilBERT's keys to BERT's (defaults where absent); no token types.
fn to_encoder_keys(config: &mut Map<String, Value>) {
    for (ours, bert, default) in KEYS {
        let value = config.remove(ours).unwrap_or_else(|| {
            if default.is_nan() {
                Value::from("gelu")
            } else if default.fract() == 0.0 {
                Value::from(default as i64)
            } else {
                Value::from(default)
            }
        });
        config.insert(bert.to_owned(), value);
    }
    config.insert("type_vocab_size".to_owned(), Value::from(0));
    config.insert("layer_norm_eps".to_owned(), Value::from(LAYER_NORM_EPS));
}

/// Back to DistilBERT's keys for `config.json`.
fn from_encoder_keys(config: &mut Map<String, Value>) {
    for (ours, bert, _) in KEYS {
        if let Some(value) = config.remove(bert) {
            config.insert(ours.to_owned(), value);
        }
    }
    config.remove("type_vocab_size");
    config.remove("layer_norm_eps");
}
