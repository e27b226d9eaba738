//! BERT (transformers/models/bert/modeling_bert.py, `BertForMaskedLM`).

use super::{FamilySpec, HeadActivation, LayerNames, Positions};

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

pub(super) const SPEC: FamilySpec = FamilySpec {
    base: "bert",
    layers: "encoder.layer",
    layer: LAYER,
    token_types: true,
    positions: Positions::Absolute,
    attention_output_dropout: true,
    pooler: Some("pooler.dense"),
    head_dense: "cls.predictions.transform.dense",
    head_norm: "cls.predictions.transform.LayerNorm",
    head_bias: "cls.predictions.bias",
    head_activation: HeadActivation::FromConfig,
    tied: &[
        (
            "cls.predictions.decoder.weight",
            "bert.embeddings.word_embeddings.weight",
        ),
        ("cls.predictions.decoder.bias", "cls.predictions.bias"),
    ],
    // BertForPreTraining's NSP head, task heads.
    other_heads: &["cls.seq_relationship.", "classifier.", "qa_outputs."],
};
