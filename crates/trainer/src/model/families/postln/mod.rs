//! The post-LayerNorm encoder BERT, RoBERTa (with XLM-RoBERTa and CamemBERT) and DistilBERT
//! share: learned position embeddings, post-LN layers with separate q/k/v projections, an MLM
//! head (dense, activation, LayerNorm) whose decoder is tied to the word embeddings. A family
//! of this shape is a [`PostLnFamily`]: the state-dict names of every part ([`PostLnSpec`]),
//! the few switches where the computations differ (position ids, token types, the dropout
//! after the attention output, the head's activation), and its `config.json` dialect.

mod layer;
mod network;

use serde_json::{Map, Value};
use tch::nn::Path;

pub(crate) use layer::LayerNames;

use crate::model::arch::{
    Architecture, InitRule, ModelType, ScratchShape, StateKeys, VariableShape,
};
use crate::model::config::{ConfigProblem, EncoderConfig, RawConfig};
use crate::model::cost::{
    Cost, ModelFlops, attention_macs, layer_activation_bytes, matmul_macs, training_flops_of_macs,
};
use crate::model::network::MaskedLmNetwork;

/// How position ids are made from the input ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Positions {
    /// `0..T` (BERT, DistilBERT).
    Absolute,
    /// `padding_idx + 1 + cumsum(non-pad)` for real tokens, `padding_idx` for padding:
    /// `create_position_ids_from_input_ids` (RoBERTa). The position table's row `padding_idx`
    /// is a padding row (zero at initialisation, no gradient).
    AfterPadding,
}

/// The activation of the MLM head's transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadActivation {
    /// The config's (`hidden_act`; DistilBERT's `activation`).
    FromConfig,
    /// Always exact GELU (`RobertaLMHead` calls `gelu` whatever `hidden_act` says).
    Gelu,
}

/// What a post-LN family's network looks like, by Hugging Face name. Paths are dotted
/// state-dict keys relative to the root (`keys`, heads) or to the base model (`layers`,
/// `pooler`) or to one layer (`layer`).
#[derive(Debug)]
pub(crate) struct PostLnSpec {
    pub keys: StateKeys,
    /// The layers under the base model (`encoder.layer`, `transformer.layer`).
    pub layers: &'static str,
    /// The parts of one layer, relative to it.
    pub layer: LayerNames<'static>,
    /// `embeddings.token_type_embeddings` exists (row 0 is added: token types are all 0).
    pub token_types: bool,
    pub positions: Positions,
    /// Dropout on the attention output projection before its residual (BERT's
    /// `BertSelfOutput`; DistilBERT has none).
    pub attention_output_dropout: bool,
    pub head_dense: &'static str,
    pub head_norm: &'static str,
    pub head_activation: HeadActivation,
}

/// `BertConfig`'s `hidden_dropout_prob` and `attention_probs_dropout_prob` (RoBERTa's and
/// DistilBERT's are the same): a model from scratch's unless `[model] dropout` says otherwise.
const DROPOUT: f64 = 0.1;

/// A rewrite of `config.json` keys (a family's names to BERT's, or back).
pub(crate) type KeyRewrite = fn(&mut Map<String, Value>);

/// A config class's defaults for the keys a file lacks (`given`: the file's keys).
pub(crate) type FillDefaults = fn(&mut EncoderConfig, &Map<String, Value>);

/// The `config.json` dialect of a post-LN family, where it differs from BERT's.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// The family's keys renamed to BERT's (with the family's defaults where absent).
    pub to_encoder_keys: Option<KeyRewrite>,
    /// And back, for `config.json`.
    pub from_encoder_keys: Option<KeyRewrite>,
    /// Its config class's defaults where they differ from BERT's, for keys the file lacks.
    pub fill_defaults: Option<FillDefaults>,
    /// `type_vocab_size` and `layer_norm_eps` of a model from scratch.
    pub scratch_type_vocab_size: i64,
    pub scratch_layer_norm_eps: f64,
}

/// A post-LN family: one `static` per family module (`bert.rs`, `roberta.rs`,
/// `distilbert.rs`).
#[derive(Debug)]
pub(crate) struct PostLnFamily {
    pub name: &'static str,
    pub model_types: &'static [ModelType],
    pub class_prefixes: &'static [&'static str],
    pub spec: PostLnSpec,
    pub dialect: Dialect,
}

impl PostLnFamily {
    /// The first `pad + 1` rows of a RoBERTa position table are never a real token's
    /// position: how many positions a sequence may use is the table size minus this.
    fn position_offset(&self, pad_token_id: Option<i64>) -> i64 {
        match self.spec.positions {
            Positions::Absolute => 0,
            Positions::AfterPadding => pad_token_id.map_or(0, |pad| pad + 1),
        }
    }

    fn base(&self, dotted: &str) -> String {
        format!("{}.{dotted}", self.spec.keys.base)
    }

    fn layer_prefix(&self, index: i64) -> String {
        self.base(&format!("{}.{index}.", self.spec.layers))
    }
}

impl Architecture for PostLnFamily {
    fn name(&self) -> &'static str {
        self.name
    }

    fn model_types(&self) -> &'static [ModelType] {
        self.model_types
    }

    fn class_prefixes(&self) -> &'static [&'static str] {
        self.class_prefixes
    }

    fn read_config(&self, raw: &RawConfig<'_>) -> Result<EncoderConfig, serde_json::Error> {
        let mut config = match self.dialect.to_encoder_keys {
            Some(translate) => raw.translated(translate)?,
            None => raw.as_encoder()?,
        };
        if let Some(fill) = self.dialect.fill_defaults {
            fill(&mut config, raw.keys);
        }
        Ok(config)
    }

    fn write_config(&self, keys: &mut Map<String, Value>) {
        if let Some(translate) = self.dialect.from_encoder_keys {
            translate(keys);
        }
    }

    fn validate(&self, config: &EncoderConfig) -> Result<(), ConfigProblem> {
        if self.spec.token_types && config.type_vocab_size <= 0 {
            return Err(ConfigProblem::key(
                "type_vocab_size",
                format!("must be positive, got {}", config.type_vocab_size),
            ));
        }
        if self.max_sequence_length(config) <= 0 {
            return Err(ConfigProblem::key(
                "max_position_embeddings",
                format!(
                    "{} leaves no position for a token after the {} rows before pad_token_id + 1",
                    config.max_position_embeddings,
                    self.position_offset(config.pad_token_id)
                ),
            ));
        }
        refuse_unsupported_variants(config)
    }

    fn scratch_config(&self, model_type: &str, shape: &ScratchShape) -> Map<String, Value> {
        let pad = shape.special_ids.map(|ids| i64::from(ids.pad));
        // The family's default pad id where the tokenizer is not known yet (RoBERTa's 1).
        let default_pad = match self.spec.positions {
            Positions::Absolute => 0,
            Positions::AfterPadding => 1,
        };
        let offset = self.position_offset(Some(pad.unwrap_or(default_pad))) as usize;
        let positions = shape
            .max_position_embeddings
            .unwrap_or_else(|| shape.max_seq_len.max(512) + offset);
        let class = self
            .model_types
            .iter()
            .find(|known| known.model_type == model_type)
            .map(|known| known.masked_lm_class);
        let mut json = serde_json::json!({
            "architectures": [class],
            "model_type": model_type,
            "vocab_size": shape.vocab_size,
            "hidden_size": shape.hidden_size,
            "num_hidden_layers": shape.num_hidden_layers,
            "num_attention_heads": shape.num_attention_heads,
            "intermediate_size": shape.intermediate_size,
            "hidden_act": "gelu",
            "hidden_dropout_prob": shape.dropout.unwrap_or(DROPOUT),
            "attention_probs_dropout_prob": shape.dropout.unwrap_or(DROPOUT),
            "max_position_embeddings": positions,
            "type_vocab_size": self.dialect.scratch_type_vocab_size,
            "initializer_range": 0.02,
            "layer_norm_eps": self.dialect.scratch_layer_norm_eps,
        });
        if let (Some(ids), Value::Object(keys)) = (shape.special_ids, &mut json) {
            keys.insert("pad_token_id".into(), ids.pad.into());
            keys.insert("bos_token_id".into(), ids.cls.into());
            keys.insert("eos_token_id".into(), ids.sep.into());
        }
        let Value::Object(mut keys) = json else {
            unreachable!("json! of an object literal is an object");
        };
        self.write_config(&mut keys);
        keys
    }

    fn max_sequence_length(&self, config: &EncoderConfig) -> i64 {
        config.max_position_embeddings - self.position_offset(config.pad_token_id)
    }

    fn variables(&self, config: &EncoderConfig) -> Vec<VariableShape> {
        variables(self, config)
    }

    fn build(&self, root: &Path<'_>, config: &EncoderConfig) -> Box<dyn MaskedLmNetwork> {
        Box::new(network::PostLnMaskedLm::new(root, config, &self.spec))
    }

    fn init_rule(&self, name: &str, config: &EncoderConfig) -> Option<InitRule> {
        init_rule(self, name, config)
    }

    fn keys(&self) -> &StateKeys {
        &self.spec.keys
    }

    fn attention_window(&self, _config: &EncoderConfig) -> Option<i64> {
        None
    }

    fn cost(&self, config: &EncoderConfig, seq_len: usize) -> Cost {
        let variables = variables(self, config);
        let (hidden, layers) = (config.hidden_size, config.num_hidden_layers);
        let layer_macs = matmul_macs(&variables, &self.layer_prefix(0));
        let head_macs =
            matmul_macs(&variables, self.spec.head_dense) + (config.vocab_size * hidden) as f64;
        let flops = ModelFlops {
            per_token: layers as f64
                * training_flops_of_macs(layer_macs + attention_macs(seq_len, hidden)),
            per_masked_token: training_flops_of_macs(head_macs),
        };
        let activations =
            layers as f64 * layer_activation_bytes(seq_len, hidden, config.num_attention_heads);
        Cost::of(&variables, flops, activations)
    }
}

/// Every variable of the network [`network::PostLnMaskedLm::new`] builds, in state-dict
/// names: embeddings, layers, the frozen pooler, the head (the decoder is the word embedding).
fn variables(family: &PostLnFamily, config: &EncoderConfig) -> Vec<VariableShape> {
    let spec = &family.spec;
    let (h, vocab) = (config.hidden_size, config.vocab_size);
    let embeddings = family.base("embeddings.");
    let mut variables = vec![
        VariableShape::new(format!("{embeddings}word_embeddings.weight"), &[vocab, h]),
        VariableShape::new(
            format!("{embeddings}position_embeddings.weight"),
            &[config.max_position_embeddings, h],
        ),
    ];
    if spec.token_types {
        variables.push(VariableShape::new(
            format!("{embeddings}token_type_embeddings.weight"),
            &[config.type_vocab_size, h],
        ));
    }
    variables.extend(norm(&format!("{embeddings}LayerNorm"), h));
    for index in 0..config.num_hidden_layers {
        variables.extend(layer_variables(
            &family.layer_prefix(index),
            &spec.layer,
            config,
        ));
    }
    if let Some(pooler) = spec.keys.pooler {
        variables.extend(linear(pooler, h, h).map(VariableShape::frozen));
    }
    variables.extend(linear(spec.head_dense, h, h));
    variables.extend(norm(spec.head_norm, h));
    variables.push(VariableShape::new(spec.keys.decoder_bias, &[vocab]));
    variables
}

fn layer_variables(
    prefix: &str,
    names: &LayerNames<'_>,
    config: &EncoderConfig,
) -> Vec<VariableShape> {
    let (h, inner) = (config.hidden_size, config.intermediate_size);
    let at = |name: &str| format!("{prefix}{name}");
    let mut variables = Vec::new();
    for name in [names.query, names.key, names.value, names.attention_output] {
        variables.extend(linear(&at(name), h, h));
    }
    variables.extend(norm(&at(names.attention_norm), h));
    variables.extend(linear(&at(names.ffn_in), h, inner));
    variables.extend(linear(&at(names.ffn_out), inner, h));
    variables.extend(norm(&at(names.output_norm), h));
    variables
}

fn linear(dotted: &str, in_dim: i64, out_dim: i64) -> [VariableShape; 2] {
    [
        VariableShape::new(format!("{dotted}.weight"), &[out_dim, in_dim]),
        VariableShape::new(format!("{dotted}.bias"), &[out_dim]),
    ]
}

fn norm(dotted: &str, size: i64) -> [VariableShape; 2] {
    [
        VariableShape::new(format!("{dotted}.weight"), &[size]),
        VariableShape::new(format!("{dotted}.bias"), &[size]),
    ]
}

/// `BertPreTrainedModel._init_weights` (transformers 5.24): LayerNorms weight 1, bias 0;
/// Linear and Embedding weights normal(0, `initializer_range`), biases 0 (the decoder's
/// too); the padding row of the word embedding (and of RoBERTa's position embedding) 0.
fn init_rule(family: &PostLnFamily, name: &str, config: &EncoderConfig) -> Option<InitRule> {
    if name.ends_with("LayerNorm.weight") || name.ends_with("layer_norm.weight") {
        return Some(InitRule::Ones);
    }
    if name.ends_with(".bias") || name == family.spec.keys.decoder_bias {
        return Some(InitRule::Zeros);
    }
    if !name.ends_with(".weight") {
        return None;
    }
    let padding_row = name.ends_with("word_embeddings.weight")
        || (family.spec.positions == Positions::AfterPadding
            && name.ends_with("position_embeddings.weight"));
    Some(InitRule::Normal {
        std: config.init_std(),
        zero_row: config.padding_idx().filter(|_| padding_row),
    })
}

/// Variants transformers can build but this port does not: refused instead of silently
/// computing something else.
fn refuse_unsupported_variants(config: &EncoderConfig) -> Result<(), ConfigProblem> {
    match config.extra.get("position_embedding_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "absolute" => {}
        Some(other) => {
            return Err(ConfigProblem::key(
                "position_embedding_type",
                format!("{other} is not supported (only \"absolute\")"),
            ));
        }
    }
    for key in ["is_decoder", "add_cross_attention"] {
        if config.extra.get(key) == Some(&Value::Bool(true)) {
            return Err(ConfigProblem::key(
                key,
                "is true: only the bidirectional encoder (masked LM) is supported".to_owned(),
            ));
        }
    }
    if config.extra.get("tie_word_embeddings") == Some(&Value::Bool(false)) {
        return Err(ConfigProblem::key(
            "tie_word_embeddings",
            "is false: the MLM decoder is always tied to the word embeddings here".to_owned(),
        ));
    }
    if config.extra.get("sinusoidal_pos_embds") == Some(&Value::Bool(true)) {
        return Err(ConfigProblem::key(
            "sinusoidal_pos_embds",
            "is true: only learned position embeddings are supported".to_owned(),
        ));
    }
    if let Some(size) = config.extra.get("embedding_size")
        && size.as_i64() != Some(config.hidden_size)
    {
        return Err(ConfigProblem::key(
            "embedding_size",
            format!("{size} differs from hidden_size (factorised embeddings are not supported)"),
        ));
    }
    Ok(())
}
