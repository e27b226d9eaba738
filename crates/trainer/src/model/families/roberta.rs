//! RoBERTa, and XLM-RoBERTa and CamemBERT, which transformers builds from the same code
//! (transformers/models/roberta/modeling_roberta.py, `RobertaForMaskedLM`): BERT's encoder
//! under `roberta.*`, position ids counted after the padding id, one token type, and the
//! `lm_head` (dense, GELU, `layer_norm`, the tied decoder and `lm_head.bias`).

use serde_json::{Map, Value};

use super::bert;
use super::postln::{Dialect, HeadActivation, Positions, PostLnFamily, PostLnSpec};
use crate::model::arch::{ModelType, StateKeys};
use crate::model::config::EncoderConfig;

pub(super) static ROBERTA: PostLnFamily = PostLnFamily {
    name: "RoBERTa",
    model_types: &[
        ModelType {
            model_type: "roberta",
            masked_lm_class: "RobertaForMaskedLM",
        },
        ModelType {
            model_type: "xlm-roberta",
            masked_lm_class: "XLMRobertaForMaskedLM",
        },
        ModelType {
            model_type: "camembert",
            masked_lm_class: "CamembertForMaskedLM",
        },
    ],
    class_prefixes: &["Roberta", "XLMRoberta", "Camembert"],
    spec: PostLnSpec {
        keys: StateKeys {
            base: "roberta",
            word_embeddings: "roberta.embeddings.word_embeddings.weight",
            decoder_bias: "lm_head.bias",
            tied: &[
                (
                    "lm_head.decoder.weight",
                    "roberta.embeddings.word_embeddings.weight",
                ),
                ("lm_head.decoder.bias", "lm_head.bias"),
            ],
            pooler: Some("roberta.pooler.dense"),
            other_heads: &["classifier.", "qa_outputs."],
        },
        layers: "encoder.layer",
        layer: bert::LAYER,
        token_types: true,
        positions: Positions::AfterPadding,
        attention_output_dropout: true,
        head_dense: "lm_head.dense",
        head_norm: "lm_head.layer_norm",
        head_activation: HeadActivation::Gelu,
    },
    dialect: Dialect {
        to_encoder_keys: None,
        from_encoder_keys: None,
        fill_defaults: Some(fill_defaults),
        scratch_type_vocab_size: 1,
        scratch_layer_norm_eps: 1e-5,
    },
};

/// `RobertaConfig.__init__`'s defaults where they differ from BERT's: `pad_token_id` 1
/// (`<pad>`).
fn fill_defaults(config: &mut EncoderConfig, given: &Map<String, Value>) {
    if !given.contains_key("pad_token_id") {
        config.pad_token_id = Some(1);
    }
}
