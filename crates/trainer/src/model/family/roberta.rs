//! RoBERTa, and XLM-RoBERTa and CamemBERT, which transformers builds from the same code
//! (transformers/models/roberta/modeling_roberta.py, `RobertaForMaskedLM`): BERT's encoder
//! under `roberta.*`, position ids counted after the padding id, one token type, and the
//! `lm_head` (dense, GELU, `layer_norm`, the tied decoder and `lm_head.bias`).

use serde_json::{Map, Value};

use super::{FamilySpec, HeadActivation, Positions, bert};
use crate::model::config::BertConfig;

pub(super) const SPEC: FamilySpec = FamilySpec {
    base: "roberta",
    layers: "encoder.layer",
    layer: bert::LAYER,
    token_types: true,
    positions: Positions::AfterPadding,
    attention_output_dropout: true,
    pooler: Some("pooler.dense"),
    head_dense: "lm_head.dense",
    head_norm: "lm_head.layer_norm",
    head_bias: "lm_head.bias",
    head_activation: HeadActivation::Gelu,
    tied: &[
        (
            "lm_head.decoder.weight",
            "roberta.embeddings.word_embeddings.weight",
        ),
        ("lm_head.decoder.bias", "lm_head.bias"),
    ],
    other_heads: &["classifier.", "qa_outputs."],
};

/// `RobertaConfig.__init__`'s defaults where they differ from BERT's: `pad_token_id` 1
/// (`<pad>`).
pub(super) fn fill_defaults(config: &mut BertConfig, given: &Map<String, Value>) {
    if !given.contains_key("pad_token_id") {
        config.pad_token_id = Some(1);
    }
}
