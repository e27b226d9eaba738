//! ModernBERT's `config.json` (transformers/models/modernbert/configuration_modernbert.py,
//! `ModernBertConfig`, 5.24): its key names translated to [`EncoderConfig`]'s shared fields
//! and back, and what only ModernBERT has ([`ModernBertLayout`]: which layers are global,
//! the rotary bases, the window, the bias switches, the dropouts) read from the keys kept in
//! `extra`. Both forms the hub holds mean the same model:
//!
//! - 2024 (transformers 4.48+): `global_attn_every_n_layers`, `global_rope_theta`,
//!   `local_rope_theta`;
//! - transformers 5: `layer_types` and `rope_parameters` per layer type.
//!
//! As `ModernBertConfig.__post_init__` and `convert_rope_params_to_dict`: `layer_types` wins
//! over `global_attn_every_n_layers` (default 3: layer `i` is global when `i % n == 0`), and
//! a layer type's `rope_parameters.rope_theta` over the 2024 key (defaults 160,000 global,
//! 10,000 local). A config is written back in the form it was read in.

use serde_json::{Map, Value};

use crate::model::config::{Activation, ConfigProblem, EncoderConfig};

/// (ModernBERT key, [`EncoderConfig`] key, `ModernBertConfig` default) for the fields every
/// encoder has under another name.
const RENAMED: [(&str, &str, DefaultValue); 4] = [
    (
        "hidden_activation",
        "hidden_act",
        DefaultValue::Text("gelu"),
    ),
    ("norm_eps", "layer_norm_eps", DefaultValue::Float(1e-5)),
    (
        "attention_dropout",
        "attention_probs_dropout_prob",
        DefaultValue::Float(0.0),
    ),
    (
        "mlp_dropout",
        "hidden_dropout_prob",
        DefaultValue::Float(0.0),
    ),
];

/// `ModernBertConfig`'s defaults for the shared keys under their own names, where they differ
/// from BERT's.
const DEFAULTS: [(&str, DefaultValue); 6] = [
    ("vocab_size", DefaultValue::Int(50368)),
    ("hidden_size", DefaultValue::Int(768)),
    ("intermediate_size", DefaultValue::Int(1152)),
    ("num_hidden_layers", DefaultValue::Int(22)),
    ("max_position_embeddings", DefaultValue::Int(8192)),
    ("pad_token_id", DefaultValue::Int(50283)),
];

/// `ModernBertConfig.default_theta`.
pub(super) const GLOBAL_ROPE_THETA: f64 = 160_000.0;
pub(super) const LOCAL_ROPE_THETA: f64 = 10_000.0;
/// `local_attention`'s default: 128 tokens in all, 64 each side.
pub(super) const LOCAL_ATTENTION: i64 = 128;
/// `global_attn_every_n_layers`'s default.
const GLOBAL_EVERY: i64 = 3;

#[derive(Debug, Clone, Copy)]
enum DefaultValue {
    Int(i64),
    Float(f64),
    Text(&'static str),
}

impl DefaultValue {
    fn json(self) -> Value {
        match self {
            Self::Int(value) => Value::from(value),
            Self::Float(value) => Value::from(value),
            Self::Text(value) => Value::from(value),
        }
    }
}

/// ModernBERT's keys renamed to the shared fields' (its defaults where absent); it has no
/// token types.
pub(super) fn to_encoder_keys(keys: &mut Map<String, Value>) {
    for (key, default) in DEFAULTS {
        keys.entry(key).or_insert_with(|| default.json());
    }
    for (ours, shared, default) in RENAMED {
        let value = keys.remove(ours).unwrap_or_else(|| default.json());
        keys.insert(shared.to_owned(), value);
    }
    keys.insert("type_vocab_size".to_owned(), Value::from(0));
}

/// Back to ModernBERT's key names, for `config.json`.
pub(super) fn from_encoder_keys(keys: &mut Map<String, Value>) {
    for (ours, shared, _) in RENAMED {
        if let Some(value) = keys.remove(shared) {
            keys.insert(ours.to_owned(), value);
        }
    }
    keys.remove("type_vocab_size");
}

/// Whether a layer attends globally or within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerType {
    /// `"full_attention"`.
    Global,
    /// `"sliding_attention"`: keys at most `local_attention / 2` positions away.
    Local,
}

/// What only ModernBERT's config has, read from [`EncoderConfig::extra`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModernBertLayout {
    pub layer_types: Vec<LayerType>,
    pub global_rope_theta: f64,
    pub local_rope_theta: f64,
    /// `config.sliding_window`: `local_attention // 2`, keys this far either side.
    pub half_window: i64,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub classifier_bias: bool,
    pub decoder_bias: bool,
    pub embedding_dropout: f64,
    pub classifier_activation: Activation,
    /// `initializer_cutoff_factor` (null: 3, as `_init_weights`).
    pub initializer_cutoff_factor: f64,
}

impl ModernBertLayout {
    /// The layout `config` describes, or the key at fault.
    pub(crate) fn of(config: &EncoderConfig) -> Result<Self, ConfigProblem> {
        let extra = &config.extra;
        let local_attention = integer(extra, "local_attention", LOCAL_ATTENTION)?;
        if local_attention < 2 {
            return Err(ConfigProblem::key(
                "local_attention",
                format!("must be at least 2 (the window in all), got {local_attention}"),
            ));
        }
        let (global_rope_theta, local_rope_theta) = rope_thetas(extra)?;
        Ok(Self {
            layer_types: layer_types(extra, config.num_hidden_layers)?,
            global_rope_theta,
            local_rope_theta,
            half_window: local_attention / 2,
            norm_bias: flag(extra, "norm_bias", false)?,
            attention_bias: flag(extra, "attention_bias", false)?,
            mlp_bias: flag(extra, "mlp_bias", false)?,
            classifier_bias: flag(extra, "classifier_bias", false)?,
            decoder_bias: flag(extra, "decoder_bias", true)?,
            embedding_dropout: probability(extra, "embedding_dropout")?,
            classifier_activation: activation(extra, "classifier_activation")?,
            initializer_cutoff_factor: cutoff(extra)?,
        })
    }
}

/// The family keys of a ModernBERT from scratch: `ModernBertConfig`'s defaults, with
/// `dropout` on the embeddings. Its layer pattern and rotary bases are written as the 2024
/// keys (which transformers 5 reads too), so that `[model] family_config` may override them
/// with either form: `layer_types` and `rope_parameters` take precedence over them, as there.
pub(super) fn scratch_keys(dropout: f64) -> Map<String, Value> {
    let json = serde_json::json!({
        "global_attn_every_n_layers": GLOBAL_EVERY,
        "global_rope_theta": GLOBAL_ROPE_THETA,
        "local_rope_theta": LOCAL_ROPE_THETA,
        "local_attention": LOCAL_ATTENTION,
        "norm_bias": false,
        "attention_bias": false,
        "mlp_bias": false,
        "classifier_bias": false,
        "decoder_bias": true,
        "embedding_dropout": dropout,
        "classifier_activation": "gelu",
        "initializer_cutoff_factor": 2.0,
    });
    let Value::Object(keys) = json else {
        unreachable!("json! of an object literal is an object");
    };
    keys
}

fn every_nth(index: i64, every: i64) -> LayerType {
    if index % every == 0 {
        LayerType::Global
    } else {
        LayerType::Local
    }
}

/// `layer_types`, else the 2024 `global_attn_every_n_layers` pattern.
fn layer_types(extra: &Map<String, Value>, layers: i64) -> Result<Vec<LayerType>, ConfigProblem> {
    let Some(given) = extra.get("layer_types").filter(|value| !value.is_null()) else {
        let every = integer(extra, "global_attn_every_n_layers", GLOBAL_EVERY)?;
        if every < 1 {
            return Err(ConfigProblem::key(
                "global_attn_every_n_layers",
                format!("must be at least 1, got {every}"),
            ));
        }
        return Ok((0..layers).map(|i| every_nth(i, every)).collect());
    };
    let problem = |message: String| ConfigProblem::key("layer_types", message);
    let names = given
        .as_array()
        .ok_or_else(|| problem(format!("{given} is not a list")))?;
    if names.len() as i64 != layers {
        return Err(problem(format!(
            "has {} entries for num_hidden_layers {layers}",
            names.len()
        )));
    }
    names
        .iter()
        .map(|name| match name.as_str() {
            Some("full_attention") => Ok(LayerType::Global),
            Some("sliding_attention") => Ok(LayerType::Local),
            _ => Err(problem(format!(
                "{name} is not \"full_attention\" or \"sliding_attention\""
            ))),
        })
        .collect()
}

/// The rotary bases of global and local layers: `rope_parameters` per layer type, else the
/// 2024 keys, else `default_theta`. Only the `default` rope type (no scaling) is built.
fn rope_thetas(extra: &Map<String, Value>) -> Result<(f64, f64), ConfigProblem> {
    if let Some(scaling) = extra.get("rope_scaling").filter(|value| !value.is_null()) {
        return Err(ConfigProblem::key(
            "rope_scaling",
            format!("{scaling} is not supported (only unscaled rotary embeddings)"),
        ));
    }
    let global_2024 = number(extra, "global_rope_theta")?.unwrap_or(GLOBAL_ROPE_THETA);
    // The 2024 code gave local layers the global base when `local_rope_theta` was null.
    let local_2024 = match extra.get("local_rope_theta") {
        Some(Value::Null) => global_2024,
        _ => number(extra, "local_rope_theta")?.unwrap_or(LOCAL_ROPE_THETA),
    };
    let parameters = match extra.get("rope_parameters") {
        None | Some(Value::Null) => return Ok((global_2024, local_2024)),
        Some(Value::Object(parameters)) => parameters,
        Some(other) => {
            return Err(ConfigProblem::key(
                "rope_parameters",
                format!("{other} is not an object"),
            ));
        }
    };
    // A dict that is not per layer type (transformers leaves each type at its default).
    check_rope_type(parameters, "rope_parameters")?;
    let theta = |layer_type: &'static str, fallback: f64| match parameters.get(layer_type) {
        None | Some(Value::Null) => Ok(fallback),
        Some(Value::Object(entry)) => {
            check_rope_type(entry, layer_type)?;
            Ok(number(entry, "rope_theta")?.unwrap_or(fallback))
        }
        Some(other) => Err(ConfigProblem::key(
            "rope_parameters",
            format!("{layer_type}: {other} is not an object"),
        )),
    };
    Ok((
        theta("full_attention", global_2024)?,
        theta("sliding_attention", local_2024)?,
    ))
}

/// `rope_type` (or the older `type`) is absent or `default`.
fn check_rope_type(entry: &Map<String, Value>, what: &str) -> Result<(), ConfigProblem> {
    let kind = entry.get("rope_type").or_else(|| entry.get("type"));
    match kind {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(kind)) if kind == "default" => Ok(()),
        Some(other) => Err(ConfigProblem::key(
            "rope_parameters",
            format!(
                "{what}: rope_type {other} is not supported (only \"default\": unscaled rotary \
                 embeddings)"
            ),
        )),
    }
}

fn integer(
    extra: &Map<String, Value>,
    key: &'static str,
    default: i64,
) -> Result<i64, ConfigProblem> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_i64()
            .ok_or_else(|| ConfigProblem::key(key, format!("{value} is not an integer"))),
    }
}

/// A positive, finite number, if given.
fn number(extra: &Map<String, Value>, key: &'static str) -> Result<Option<f64>, ConfigProblem> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(number) if number.is_finite() && number > 0.0 => Ok(Some(number)),
            _ => Err(ConfigProblem::key(
                key,
                format!("{value} is not a positive number"),
            )),
        },
    }
}

fn flag(
    extra: &Map<String, Value>,
    key: &'static str,
    default: bool,
) -> Result<bool, ConfigProblem> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(value)) => Ok(*value),
        Some(other) => Err(ConfigProblem::key(
            key,
            format!("{other} is not true or false"),
        )),
    }
}

fn probability(extra: &Map<String, Value>, key: &'static str) -> Result<f64, ConfigProblem> {
    let p = match extra.get(key) {
        None | Some(Value::Null) => return Ok(0.0),
        Some(value) => value.as_f64(),
    };
    match p {
        Some(p) if (0.0..1.0).contains(&p) => Ok(p),
        _ => Err(ConfigProblem::key(
            key,
            format!("must be in [0, 1), got {}", extra[key]),
        )),
    }
}

fn activation(extra: &Map<String, Value>, key: &'static str) -> Result<Activation, ConfigProblem> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(Activation::Gelu),
        Some(Value::String(name)) => Activation::parse(name).ok_or_else(|| {
            ConfigProblem::key(
                key,
                format!(
                    "\"{name}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, \
                     relu, silu)"
                ),
            )
        }),
        Some(other) => Err(ConfigProblem::key(key, format!("{other} is not a string"))),
    }
}

fn cutoff(extra: &Map<String, Value>) -> Result<f64, ConfigProblem> {
    const KEY: &str = "initializer_cutoff_factor";
    match extra.get(KEY) {
        None => Ok(2.0),
        // `_init_weights`: `if cutoff_factor is None: cutoff_factor = 3`.
        Some(Value::Null) => Ok(3.0),
        Some(_) => Ok(number(extra, KEY)?.unwrap_or(2.0)),
    }
}
