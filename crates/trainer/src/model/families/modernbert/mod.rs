//! ModernBERT (Warner et al. 2024; transformers/models/modernbert, `ModernBertForMaskedLM`):
//! no position table but rotary embeddings with one base for global layers and another for
//! local ones; layers alternating between global attention and a bidirectional window
//! (`local_attention` tokens in all); pre-norm layers with a fused `Wqkv` and a GeGLU MLP; a
//! final norm; biases switched off by default. The network is in `network.rs` and
//! `layer.rs`, the rotary embeddings in `rope.rs`, the `config.json` dialect (both hub forms)
//! in `config.rs`.

mod config;
mod layer;
mod network;
mod rope;

use serde_json::{Map, Value};
use tch::nn::Path;

use self::config::{LayerType, ModernBertLayout};
use self::network::BASE;
use crate::model::arch::{
    Architecture, InitRule, ModelType, ScratchShape, StateKeys, VariableShape,
};
use crate::model::config::{ConfigProblem, EncoderConfig, RawConfig};
use crate::model::cost::{
    Cost, ModelFlops, attention_macs, layer_activation_bytes, matmul_macs, training_flops_of_macs,
};
use crate::model::network::MaskedLmNetwork;

/// The ModernBERT family: one `model_type`, its own network.
#[derive(Debug)]
pub(crate) struct ModernBertFamily;

pub(super) static MODERNBERT: ModernBertFamily = ModernBertFamily;

static KEYS: StateKeys = StateKeys {
    base: BASE,
    word_embeddings: "model.embeddings.tok_embeddings.weight",
    decoder_bias: "decoder.bias",
    tied: &[("decoder.weight", "model.embeddings.tok_embeddings.weight")],
    pooler: None,
    // `ModernBertFor{Sequence,Token}Classification`, `...QuestionAnswering`.
    other_heads: &["classifier.", "qa_outputs."],
};

impl Architecture for ModernBertFamily {
    fn name(&self) -> &'static str {
        "ModernBERT"
    }

    fn model_types(&self) -> &'static [ModelType] {
        &[ModelType {
            model_type: "modernbert",
            masked_lm_class: "ModernBertForMaskedLM",
        }]
    }

    fn class_prefixes(&self) -> &'static [&'static str] {
        &["ModernBert"]
    }

    fn read_config(&self, raw: &RawConfig<'_>) -> Result<EncoderConfig, serde_json::Error> {
        raw.translated(config::to_encoder_keys)
    }

    fn write_config(&self, keys: &mut Map<String, Value>) {
        config::from_encoder_keys(keys);
    }

    fn validate(&self, config: &EncoderConfig) -> Result<(), ConfigProblem> {
        ModernBertLayout::of(config)?;
        if config.head_dim() % 2 != 0 {
            return Err(ConfigProblem::key(
                "num_attention_heads",
                format!(
                    "gives heads of {} dimensions: rotary embeddings need an even head size",
                    config.head_dim()
                ),
            ));
        }
        if config.extra.get("tie_word_embeddings") == Some(&Value::Bool(false)) {
            return Err(ConfigProblem::key(
                "tie_word_embeddings",
                "is false: the MLM decoder is always tied to the token embeddings here".to_owned(),
            ));
        }
        Ok(())
    }

    fn scratch_config(&self, _model_type: &str, shape: &ScratchShape) -> Map<String, Value> {
        scratch_config(shape)
    }

    /// Rotary embeddings have no table: `max_position_embeddings` is the length the model
    /// was trained for (8,192 for the released models).
    fn max_sequence_length(&self, config: &EncoderConfig) -> i64 {
        config.max_position_embeddings
    }

    fn variables(&self, config: &EncoderConfig) -> Vec<VariableShape> {
        variables(config)
    }

    fn build(&self, root: &Path<'_>, config: &EncoderConfig) -> Box<dyn MaskedLmNetwork> {
        Box::new(network::ModernBertMaskedLm::new(root, config))
    }

    fn init_rule(&self, name: &str, config: &EncoderConfig) -> Option<InitRule> {
        init_rule(name, config)
    }

    fn keys(&self) -> &StateKeys {
        &KEYS
    }

    fn attention_window(&self, config: &EncoderConfig) -> Option<i64> {
        let layout = ModernBertLayout::of(config).ok()?;
        let has_local = layout.layer_types.contains(&LayerType::Local);
        has_local.then_some(layout.half_window)
    }

    fn cost(&self, config: &EncoderConfig, seq_len: usize) -> Cost {
        let layout = ModernBertLayout::of(config).expect("a validated ModernBERT config");
        let variables = variables(config);
        let hidden = config.hidden_size;
        let layer_macs = matmul_macs(&variables, "model.layers.0.");
        let window = (2 * layout.half_window + 1) as usize;
        let per_token: f64 = layout
            .layer_types
            .iter()
            .map(|kind| {
                let attended = match kind {
                    LayerType::Global => seq_len,
                    LayerType::Local => seq_len.min(window),
                };
                training_flops_of_macs(layer_macs + attention_macs(attended, hidden))
            })
            .sum();
        let head_macs = matmul_macs(&variables, "head.dense") + (config.vocab_size * hidden) as f64;
        let flops = ModelFlops {
            per_token,
            per_masked_token: training_flops_of_macs(head_macs),
        };
        let activations = config.num_hidden_layers as f64
            * layer_activation_bytes(seq_len, hidden, config.num_attention_heads);
        Cost::of(&variables, flops, activations)
    }
}

/// The `config.json` of a ModernBERT from scratch: `ModernBertConfig`'s defaults (its
/// layer pattern, rotary bases, window, biases off), the sizes of `shape`, dropout 0 unless
/// `[model] dropout` says otherwise, and positions up to 8,192 (more if the corpus has longer
/// sequences: rotary embeddings cost nothing per position).
fn scratch_config(shape: &ScratchShape) -> Map<String, Value> {
    let dropout = shape.dropout.unwrap_or(0.0);
    let positions = shape
        .max_position_embeddings
        .unwrap_or_else(|| shape.max_seq_len.max(8192));
    let json = serde_json::json!({
        "architectures": ["ModernBertForMaskedLM"],
        "model_type": "modernbert",
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "intermediate_size": shape.intermediate_size,
        "hidden_activation": "gelu",
        "attention_dropout": dropout,
        "mlp_dropout": dropout,
        "max_position_embeddings": positions,
        "initializer_range": 0.02,
        "norm_eps": 1e-5,
        "tie_word_embeddings": true,
    });
    let Value::Object(mut keys) = json else {
        unreachable!("json! of an object literal is an object");
    };
    keys.extend(config::scratch_keys(dropout));
    // Before the vocabulary exists (a dry run) there is no padding id to name.
    let ids = shape.special_ids;
    let id = |pick: fn(&crate::model::arch::SpecialIds) -> u32| {
        ids.as_ref()
            .map_or(Value::Null, |ids| Value::from(pick(ids)))
    };
    keys.insert("pad_token_id".into(), id(|ids| ids.pad));
    for key in ["cls_token_id", "bos_token_id"] {
        keys.insert(key.into(), id(|ids| ids.cls));
    }
    for key in ["sep_token_id", "eos_token_id"] {
        keys.insert(key.into(), id(|ids| ids.sep));
    }
    keys
}

/// Every variable [`network::ModernBertMaskedLm::new`] builds, by transformers' names.
fn variables(config: &EncoderConfig) -> Vec<VariableShape> {
    let layout = ModernBertLayout::of(config).expect("a validated ModernBERT config");
    let (h, inner, vocab) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let norm = |name: &str| norm(name, h, layout.norm_bias);
    let mut variables = vec![VariableShape::new(
        "model.embeddings.tok_embeddings.weight",
        &[vocab, h],
    )];
    variables.extend(norm("model.embeddings.norm"));
    for index in 0..config.num_hidden_layers {
        let at = |name: &str| format!("model.layers.{index}.{name}");
        if index > 0 {
            variables.extend(norm(&at("attn_norm")));
        }
        variables.extend(linear(&at("attn.Wqkv"), h, 3 * h, layout.attention_bias));
        variables.extend(linear(&at("attn.Wo"), h, h, layout.attention_bias));
        variables.extend(norm(&at("mlp_norm")));
        variables.extend(linear(&at("mlp.Wi"), h, 2 * inner, layout.mlp_bias));
        variables.extend(linear(&at("mlp.Wo"), inner, h, layout.mlp_bias));
    }
    variables.extend(norm("model.final_norm"));
    variables.extend(linear("head.dense", h, h, layout.classifier_bias));
    variables.extend(norm("head.norm"));
    if layout.decoder_bias {
        variables.push(VariableShape::new(KEYS.decoder_bias, &[vocab]));
    }
    variables
}

fn linear(dotted: &str, in_dim: i64, out_dim: i64, bias: bool) -> Vec<VariableShape> {
    let mut variables = vec![VariableShape::new(
        format!("{dotted}.weight"),
        &[out_dim, in_dim],
    )];
    if bias {
        variables.push(VariableShape::new(format!("{dotted}.bias"), &[out_dim]));
    }
    variables
}

fn norm(dotted: &str, size: i64, bias: bool) -> Vec<VariableShape> {
    let mut variables = vec![VariableShape::new(format!("{dotted}.weight"), &[size])];
    if bias {
        variables.push(VariableShape::new(format!("{dotted}.bias"), &[size]));
    }
    variables
}

/// `ModernBertPreTrainedModel._init_weights` (5.24): norms weight 1, bias 0; every bias 0
/// (the decoder's too); `tok_embeddings`, `Wqkv` and `Wi` truncated normal with std
/// `initializer_range`, the output projections (`attn.Wo`, `mlp.Wo`, `head.dense`) with std
/// `initializer_range / sqrt(2 * num_hidden_layers)`, each cut at `initializer_cutoff_factor`
/// standard deviations. The tied decoder keeps the embedding's values, and the padding row
/// is not zeroed: ModernBERT's `init_weight` overwrites it after the base class's.
fn init_rule(name: &str, config: &EncoderConfig) -> Option<InitRule> {
    if name.ends_with(".bias") {
        return Some(InitRule::Zeros);
    }
    if name.ends_with("norm.weight") {
        return Some(InitRule::Ones);
    }
    let cutoff = ModernBertLayout::of(config)
        .map(|layout| layout.initializer_cutoff_factor)
        .unwrap_or(2.0);
    let range = config.initializer_range;
    let output = range / (2.0 * config.num_hidden_layers as f64).sqrt();
    let std = if name.ends_with("tok_embeddings.weight")
        || name.ends_with("attn.Wqkv.weight")
        || name.ends_with("mlp.Wi.weight")
    {
        range
    } else if name.ends_with("attn.Wo.weight")
        || name.ends_with("mlp.Wo.weight")
        || name == "head.dense.weight"
    {
        output
    } else {
        return None;
    };
    Some(InitRule::TruncatedNormal { std, cutoff })
}

#[cfg(test)]
mod tests;
