//! BERT (transformers/models/bert/modeling_bert.py, `BertForMaskedLM`): the post-LN encoder
//! under `bert.*`, its `config.json` in BERT's own key names.

use super::postln::{Dialect, HeadActivation, LayerNames, Positions, PostLnFamily, PostLnSpec};
use crate::model::arch::{ModelType, StateKeys};

/// `BertLayer`'s parts (`BertSelfAttention`, `BertSelfOutput`, `BertIntermediate`,
/// `BertOutput`); RoBERTa's layers are the same.
pub(super) const LAYER: LayerNames<'static> = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    output_norm: "output.LayerNorm",
};

pub(super) static BERT: PostLnFamily = PostLnFamily {
    name: "BERT",
    model_types: &[ModelType {
        model_type: "bert",
        masked_lm_class: "BertForMaskedLM",
    }],
    class_prefixes: &["Bert"],
    spec: PostLnSpec {
        keys: StateKeys {
            base: "bert",
            word_embeddings: "bert.embeddings.word_embeddings.weight",
            decoder_bias: "cls.predictions.bias",
            tied: &[
                (
                    "cls.predictions.decoder.weight",
                    "bert.embeddings.word_embeddings.weight",
                ),
                ("cls.predictions.decoder.bias", "cls.predictions.bias"),
            ],
            pooler: Some("bert.pooler.dense"),
            // BertForPreTraining's NSP head, task heads.
            other_heads: &["cls.seq_relationship.", "classifier.", "qa_outputs."],
        },
        layers: "encoder.layer",
        layer: LAYER,
        token_types: true,
        positions: Positions::Absolute,
        attention_output_dropout: true,
        head_dense: "cls.predictions.transform.dense",
        head_norm: "cls.predictions.transform.LayerNorm",
        head_activation: HeadActivation::FromConfig,
    },
    dialect: Dialect {
        to_encoder_keys: None,
        from_encoder_keys: None,
        fill_defaults: None,
        scratch_type_vocab_size: 2,
        scratch_layer_norm_eps: 1e-12,
    },
};
