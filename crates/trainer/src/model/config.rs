//! A Hugging Face `config.json` of a supported family, read and written as transformers does.
//!
//! [`EncoderConfig`] holds what every encoder family has, in BERT's key names (the names of
//! `transformers/models/bert/configuration_bert.py`, `EncoderConfig.__init__`, whose defaults
//! it takes); the family ([`Architecture`], found by `model_type`) reads its own keys into
//! it (DistilBERT's `dim`, `n_layers`, ...; RoBERTa's defaults), checks the keys only it
//! has, and writes them back in its own names. Keys this crate does not use
//! (`_name_or_path`, `transformers_version`, `id2label`, ...) are kept in
//! [`EncoderConfig::extra`] and written back, so a config survives load -> train -> export
//! unchanged apart from what we set on purpose.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModelError;
use super::arch::{
    Architecture, ScratchShape, architecture_for, masked_lm_class, supported_model_types,
};
use super::cost::Cost;

/// The `model_type` a config without one is read as (very old BERT configs).
pub const DEFAULT_MODEL_TYPE: &str = "bert";

/// An encoder's `config.json`, in BERT's key names. Defaults are bert-base-uncased's, as in
/// `EncoderConfig.__init__`, so a sparse or old config.json reads the way transformers reads it.
///
/// Build one for a from-scratch model with [`EncoderConfig::scratch`], or, in tests, with
/// struct update syntax:
/// `EncoderConfig { vocab_size: 8000, hidden_size: 256, ..EncoderConfig::default() }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncoderConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    /// `null` in some configs: then the word embedding has no padding row.
    pub pad_token_id: Option<i64>,
    /// `"bert"`; absent in a few very old configs (then BERT is assumed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// e.g. `["BertModel"]`, `["BertForMaskedLM"]`; absent in old configs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    /// Every other key, kept verbatim and written back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".to_owned(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            model_type: Some(DEFAULT_MODEL_TYPE.to_owned()),
            architectures: None,
            extra: Map::new(),
        }
    }
}

/// The activations of `transformers.activations.ACT2FN` this port implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"` (and `"gelu_python"`): exact, erf-based GELU (`GELUActivation`).
    Gelu,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`: the tanh approximation.
    GeluTanh,
    Relu,
    /// `"silu"` / `"swish"`.
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" | "gelu_python" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }

    pub fn apply(self, xs: &tch::Tensor) -> tch::Tensor {
        match self {
            Self::Gelu => xs.gelu("none"),
            Self::GeluTanh => xs.gelu("tanh"),
            Self::Relu => xs.relu(),
            Self::Silu => xs.silu(),
        }
    }
}

/// A `config.json` as read: its text (for errors with line numbers) and its keys.
#[derive(Debug)]
pub struct RawConfig<'a> {
    pub text: &'a str,
    pub keys: &'a Map<String, Value>,
}

impl RawConfig<'_> {
    /// The file read straight into the encoder's fields (a family that uses BERT's key
    /// names): a type error names the line.
    pub fn as_encoder(&self) -> Result<EncoderConfig, serde_json::Error> {
        serde_json::from_str(self.text)
    }

    /// The keys renamed by `translate` first (a family with its own key names).
    pub fn translated(
        &self,
        translate: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<EncoderConfig, serde_json::Error> {
        let mut keys = self.keys.clone();
        translate(&mut keys);
        serde_json::from_value(Value::Object(keys))
    }
}

impl EncoderConfig {
    /// Reads and validates a `config.json`. Errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates config text; `origin` names the file in errors (with the line,
    /// except for type errors in a family with its own key names, translated first).
    pub fn from_json(text: &str, origin: &Path) -> Result<Self, ModelError> {
        let json_error = |source| ModelError::Json {
            path: origin.to_path_buf(),
            source,
        };
        let keys: Map<String, Value> = serde_json::from_str(text).map_err(json_error)?;
        let model_type = match keys.get("model_type") {
            None | Some(Value::Null) => DEFAULT_MODEL_TYPE,
            Some(Value::String(model_type)) => model_type.as_str(),
            Some(other) => {
                return Err(
                    ConfigProblem::key("model_type", format!("{other} is not a string")).at(origin),
                );
            }
        };
        let architecture = architecture_for(model_type).ok_or_else(|| {
            ConfigProblem::unsupported(format!("model_type \"{model_type}\"")).at(origin)
        })?;
        let config = architecture
            .read_config(&RawConfig { text, keys: &keys })
            .map_err(json_error)?;
        config.validate().map_err(|problem| problem.at(origin))?;
        Ok(config)
    }

    /// The config of a model from scratch of `model_type`'s family sized by `shape`, read
    /// through the family's own `config.json` keys exactly as a file would be (`origin` names
    /// where the sizes came from in errors).
    pub fn scratch(
        model_type: &str,
        shape: &ScratchShape,
        origin: &Path,
    ) -> Result<Self, ModelError> {
        let architecture = architecture_for(model_type).ok_or_else(|| {
            ConfigProblem::unsupported(format!("model_type \"{model_type}\"")).at(origin)
        })?;
        let mut keys = architecture.scratch_config(model_type, shape);
        keys.extend(shape.family_config.clone());
        Self::from_json(&Value::Object(keys).to_string(), origin)
    }

    /// Writes the config as transformers does (pretty JSON, two-space indent), in the
    /// family's key names, unknown keys included.
    pub fn write_hf(&self, path: &Path) -> Result<(), ModelError> {
        let json_error = |source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        };
        let mut text = serde_json::to_string_pretty(&self.to_hf_keys()).map_err(json_error)?;
        text.push('\n');
        std::fs::write(path, text).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The `config.json` keys, in the family's names.
    pub fn to_hf_keys(&self) -> Map<String, Value> {
        let Ok(Value::Object(mut keys)) = serde_json::to_value(self) else {
            unreachable!("a struct of plain fields serialises to a JSON object");
        };
        self.architecture().write_config(&mut keys);
        keys
    }

    /// The family `model_type` names (BERT when it is absent, as in very old configs).
    pub fn architecture(&self) -> &'static dyn Architecture {
        architecture_for(self.model_type())
            .or_else(|| architecture_for(DEFAULT_MODEL_TYPE))
            .expect("the default model_type is registered")
    }

    /// `model_type`, or the default for configs without one.
    pub fn model_type(&self) -> &str {
        self.model_type.as_deref().unwrap_or(DEFAULT_MODEL_TYPE)
    }

    /// The longest sequence the model serves (RoBERTa's position table has
    /// `pad_token_id + 1` rows no real token's position uses).
    pub fn max_sequence_length(&self) -> i64 {
        self.architecture().max_sequence_length(self)
    }

    /// Size of one attention head (`BertSelfAttention.attention_head_size`).
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The activation named by `hidden_act` (validated by [`EncoderConfig::validate`]).
    pub fn activation(&self) -> Activation {
        Activation::parse(&self.hidden_act).unwrap_or(Activation::Gelu)
    }

    /// `initializer_range`, or 0.02 where it is 0, as `PreTrainedModel._init_weights` does
    /// (`std = self.config.initializer_range or 0.02`).
    pub fn init_std(&self) -> f64 {
        if self.initializer_range == 0.0 {
            0.02
        } else {
            self.initializer_range
        }
    }

    /// The padding row of the word embedding, if any (`nn.Embedding(padding_idx=...)`).
    pub fn padding_idx(&self) -> Option<i64> {
        self.pad_token_id
            .filter(|id| (0..self.vocab_size).contains(id))
    }

    /// Parameters, training FLOPs and activation memory at `seq_len` (the family's).
    pub fn cost(&self, seq_len: usize) -> Cost {
        self.architecture().cost(self, seq_len)
    }

    /// Number of parameters of the model this config builds (pooler included, tied decoder
    /// counted once), for plans and MFU.
    pub fn num_parameters(&self) -> i64 {
        self.cost(0).parameters
    }

    /// The parameters MLM training updates: all but the frozen ones (the pooler, which
    /// transformers' masked-LM classes do not have; ours keeps it for the export).
    pub fn num_trainable_parameters(&self) -> i64 {
        self.cost(0).trainable_parameters
    }

    /// Checks that this is a config this port can build. The error names the key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        self.validate_family()?;
        self.validate_shapes()?;
        self.validate_numerics()?;
        self.architecture().validate(self)
    }

    /// `model_type` is a supported family and `architectures` (when given) are its classes.
    fn validate_family(&self) -> Result<(), ConfigProblem> {
        if architecture_for(self.model_type()).is_none() {
            return Err(ConfigProblem::unsupported(format!(
                "model_type \"{}\"",
                self.model_type()
            )));
        }
        let prefixes = self.architecture().class_prefixes();
        if let Some(architectures) = &self.architectures
            && let Some(other) = architectures
                .iter()
                .find(|name| !prefixes.iter().any(|prefix| name.starts_with(prefix)))
        {
            return Err(ConfigProblem::unsupported(format!(
                "architectures [\"{other}\"] with model_type \"{}\"",
                self.model_type()
            )));
        }
        Ok(())
    }

    /// Sizes are positive, heads divide the hidden size, the padding id is in the vocabulary.
    fn validate_shapes(&self) -> Result<(), ConfigProblem> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((key, value)) = positive.into_iter().find(|(_, value)| *value <= 0) {
            return Err(ConfigProblem::key(
                key,
                format!("must be positive, got {value}"),
            ));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(ConfigProblem::key(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if let Some(pad) = self.pad_token_id
            && !(0..self.vocab_size).contains(&pad)
        {
            return Err(ConfigProblem::key(
                "pad_token_id",
                format!(
                    "{pad} is outside the vocabulary (vocab_size {})",
                    self.vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// The activation is one this port implements; probabilities and epsilons are in range
    /// (each comparison is written so that NaN fails too).
    fn validate_numerics(&self) -> Result<(), ConfigProblem> {
        if Activation::parse(&self.hidden_act).is_none() {
            return Err(ConfigProblem::key(
                "hidden_act",
                format!(
                    "\"{}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu)",
                    self.hidden_act
                ),
            ));
        }
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ConfigProblem::key(
                    key,
                    format!("must be in [0, 1), got {p}"),
                ));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(ConfigProblem::key(
                "layer_norm_eps",
                format!("must be positive, got {}", self.layer_norm_eps),
            ));
        }
        if self.initializer_range.is_nan() || self.initializer_range < 0.0 {
            return Err(ConfigProblem::key(
                "initializer_range",
                format!("must be non-negative, got {}", self.initializer_range),
            ));
        }
        Ok(())
    }

    /// The masked-LM class transformers builds for this config (`BertForMaskedLM`, ...).
    pub fn masked_lm_class(&self) -> &'static str {
        masked_lm_class(self.model_type()).unwrap_or("BertForMaskedLM")
    }

    /// A copy set up for export as the family's masked-LM class (`BertForMaskedLM`,
    /// `RobertaForMaskedLM`, `XLMRobertaForMaskedLM`, ...: what `AutoModelForMaskedLM` and
    /// `pipeline("fill-mask")` resolve).
    pub fn for_export(&self) -> Self {
        let mut config = self.clone();
        config
            .model_type
            .get_or_insert_with(|| DEFAULT_MODEL_TYPE.to_owned());
        config.architectures = Some(vec![self.masked_lm_class().to_owned()]);
        config
    }
}

/// What is wrong with a config, before the file name is attached.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// The key at fault (`model_type` for an unsupported family).
    pub key: &'static str,
    pub message: String,
    pub unsupported_family: bool,
}

impl ConfigProblem {
    pub fn key(key: &'static str, message: String) -> Self {
        Self {
            key,
            message,
            unsupported_family: false,
        }
    }

    pub fn unsupported(found: String) -> Self {
        Self {
            key: "model_type",
            message: found,
            unsupported_family: true,
        }
    }

    /// The error for the config read from `path`.
    pub fn at(self, path: &Path) -> ModelError {
        let path: PathBuf = path.to_path_buf();
        if self.unsupported_family {
            ModelError::UnsupportedFamily {
                path,
                found: self.message,
                supported: supported_model_types(),
            }
        } else {
            ModelError::InvalidConfig {
                path,
                key: self.key,
                message: self.message,
            }
        }
    }
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[cfg(test)]
mod tests;
