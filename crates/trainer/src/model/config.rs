//! A Hugging Face `config.json` of a supported family, read and written as transformers does.
//!
//! Field names and defaults follow `transformers/models/bert/configuration_bert.py`
//! (`BertConfig.__init__`); the other families' configs are read into the same fields
//! ([`Family::to_bert_keys`]: DistilBERT's `dim`, `n_layers`, ... and RoBERTa's defaults) and
//! written back in their own names. Keys this crate does not use (`_name_or_path`,
//! `transformers_version`, `gradient_checkpointing`, `id2label`, ...) are kept in
//! [`BertConfig::extra`] and written back, so a config survives load -> train -> export
//! unchanged apart from what we set on purpose.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModelError;
use super::family::{Family, SUPPORTED_MODEL_TYPES};

/// The `model_type` every BERT config carries (`BertConfig.model_type`).
pub const BERT_MODEL_TYPE: &str = "bert";

/// A BERT `config.json` (`transformers.BertConfig`). Defaults are bert-base-uncased's, as in
/// `BertConfig.__init__`, so a sparse or old config.json reads the way transformers reads it.
///
/// Build one for a from-scratch model with struct update syntax:
/// `BertConfig { vocab_size: 8000, hidden_size: 256, ..BertConfig::default() }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
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

impl Default for BertConfig {
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
            model_type: Some(BERT_MODEL_TYPE.to_owned()),
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

impl BertConfig {
    /// Reads and validates a `config.json`. Errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates config text; `origin` names the file in errors (with the line,
    /// except for type errors in a DistilBERT config, whose keys are translated first).
    pub fn from_json(text: &str, origin: &Path) -> Result<Self, ModelError> {
        let json_error = |source| ModelError::Json {
            path: origin.to_path_buf(),
            source,
        };
        let mut keys: Map<String, Value> = serde_json::from_str(text).map_err(json_error)?;
        let family = keys
            .get("model_type")
            .and_then(Value::as_str)
            .and_then(Family::from_model_type);
        let config: Self = match family {
            Some(family) if family.renames_keys() => {
                family.to_bert_keys(&mut keys);
                serde_json::from_value(Value::Object(keys)).map_err(json_error)?
            }
            _ => {
                let mut config: Self = serde_json::from_str(text).map_err(json_error)?;
                if let Some(family) = family {
                    family.fill_defaults(&mut config, &keys);
                }
                config
            }
        };
        config.validate().map_err(|problem| problem.at(origin))?;
        Ok(config)
    }

    /// Writes the config as transformers does (pretty JSON, two-space indent), in the
    /// family's key names, unknown keys included.
    pub fn write_hf(&self, path: &Path) -> Result<(), ModelError> {
        let json_error = |source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        };
        let Value::Object(mut keys) = serde_json::to_value(self).map_err(json_error)? else {
            unreachable!("a struct serialises to a JSON object");
        };
        self.family().from_bert_keys(&mut keys);
        let mut text = serde_json::to_string_pretty(&keys).map_err(json_error)?;
        text.push('\n');
        std::fs::write(path, text).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The family `model_type` names (BERT when it is absent, as in very old configs).
    pub fn family(&self) -> Family {
        self.model_type
            .as_deref()
            .and_then(Family::from_model_type)
            .unwrap_or(Family::Bert)
    }

    /// The longest sequence the position table serves: `max_position_embeddings`, less
    /// RoBERTa's `pad_token_id + 1` rows that no real token's position uses.
    pub fn max_sequence_length(&self) -> i64 {
        self.max_position_embeddings - self.family().position_offset(self.pad_token_id)
    }

    /// Size of one attention head (`BertSelfAttention.attention_head_size`).
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The activation named by `hidden_act` (validated by [`BertConfig::validate`]).
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

    /// Number of parameters of the model this config builds (pooler included, tied decoder
    /// counted once), for plans and MFU.
    pub fn num_parameters(&self) -> i64 {
        let pooler = if self.family().spec().pooler.is_some() {
            self.pooler_parameters()
        } else {
            0
        };
        self.num_trainable_parameters() + pooler
    }

    /// The parameters MLM training updates: all but the pooler, which `BertForMaskedLM` in
    /// transformers does not have (ours keeps it frozen for the export).
    pub fn num_trainable_parameters(&self) -> i64 {
        let h = self.hidden_size;
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        let layer =
            4 * (h * h + h) + 2 * (h * self.intermediate_size) + self.intermediate_size + h + 4 * h;
        let head = h * h + h + 2 * h + self.vocab_size;
        embeddings + self.num_hidden_layers * layer + head
    }

    fn pooler_parameters(&self) -> i64 {
        self.hidden_size * self.hidden_size + self.hidden_size
    }

    /// Checks that this is a BERT config this port can build. The error names the key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        self.validate_family()?;
        self.validate_shapes()?;
        self.validate_numerics()?;
        self.validate_unsupported_variants()
    }

    /// `model_type` is a supported family and `architectures` (when given) are its classes.
    fn validate_family(&self) -> Result<(), ConfigProblem> {
        if let Some(model_type) = &self.model_type
            && Family::from_model_type(model_type).is_none()
        {
            return Err(ConfigProblem::unsupported(format!(
                "model_type \"{model_type}\""
            )));
        }
        let prefixes = self.family().class_prefixes();
        if let Some(architectures) = &self.architectures
            && let Some(other) = architectures
                .iter()
                .find(|name| !prefixes.iter().any(|prefix| name.starts_with(prefix)))
        {
            return Err(ConfigProblem::unsupported(format!(
                "architectures [\"{other}\"] with model_type \"{}\"",
                self.model_type.as_deref().unwrap_or(BERT_MODEL_TYPE)
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
        let token_types = self.family().spec().token_types;
        if token_types && self.type_vocab_size <= 0 {
            return Err(ConfigProblem::key(
                "type_vocab_size",
                format!("must be positive, got {}", self.type_vocab_size),
            ));
        }
        if self.max_sequence_length() <= 0 {
            return Err(ConfigProblem::key(
                "max_position_embeddings",
                format!(
                    "{} leaves no position for a token after the {} rows before pad_token_id + 1",
                    self.max_position_embeddings,
                    self.family().position_offset(self.pad_token_id)
                ),
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

    /// BERT variants transformers can build but this port does not: refuse them instead of
    /// silently computing something else.
    fn validate_unsupported_variants(&self) -> Result<(), ConfigProblem> {
        match self.extra.get("position_embedding_type") {
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
            if self.extra.get(key) == Some(&Value::Bool(true)) {
                return Err(ConfigProblem::key(
                    key,
                    "is true: only the bidirectional encoder (masked LM) is supported".to_owned(),
                ));
            }
        }
        if self.extra.get("tie_word_embeddings") == Some(&Value::Bool(false)) {
            return Err(ConfigProblem::key(
                "tie_word_embeddings",
                "is false: the MLM decoder is always tied to the word embeddings here".to_owned(),
            ));
        }
        if self.extra.get("sinusoidal_pos_embds") == Some(&Value::Bool(true)) {
            return Err(ConfigProblem::key(
                "sinusoidal_pos_embds",
                "is true: only learned position embeddings are supported".to_owned(),
            ));
        }
        if let Some(size) = self.extra.get("embedding_size")
            && size.as_i64() != Some(self.hidden_size)
        {
            return Err(ConfigProblem::key(
                "embedding_size",
                format!(
                    "{size} differs from hidden_size (factorised embeddings are not supported)"
                ),
            ));
        }
        Ok(())
    }

    /// A copy set up for export as the family's masked-LM class (`BertForMaskedLM`,
    /// `RobertaForMaskedLM`, `XLMRobertaForMaskedLM`, ...: what `AutoModelForMaskedLM` and
    /// `pipeline("fill-mask")` resolve).
    pub fn for_export(&self) -> Self {
        let mut config = self.clone();
        let model_type = config
            .model_type
            .get_or_insert_with(|| BERT_MODEL_TYPE.to_owned());
        let class = Family::masked_lm_class(model_type).unwrap_or("BertForMaskedLM");
        config.architectures = Some(vec![class.to_owned()]);
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
    fn key(key: &'static str, message: String) -> Self {
        Self {
            key,
            message,
            unsupported_family: false,
        }
    }

    fn unsupported(found: String) -> Self {
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
                supported: SUPPORTED_MODEL_TYPES,
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
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BertConfig, ModelError> {
        BertConfig::from_json(text, Path::new("config.json"))
    }

    const MINILM: &str = r#"{
      "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
      "architectures": ["BertModel"],
      "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 384,
      "initializer_range": 0.02,
      "intermediate_size": 1536,
      "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512,
      "model_type": "bert",
      "num_attention_heads": 12,
      "num_hidden_layers": 6,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "transformers_version": "4.8.2",
      "type_vocab_size": 2,
      "use_cache": true,
      "vocab_size": 30522
    }"#;

    #[test]
    fn reads_a_real_config_and_keeps_unknown_keys() {
        let config = parse(MINILM).unwrap();
        assert_eq!(config.hidden_size, 384);
        assert_eq!(config.num_hidden_layers, 6);
        assert_eq!(config.head_dim(), 32);
        assert_eq!(config.activation(), Activation::Gelu);
        assert_eq!(config.extra["transformers_version"], "4.8.2");
        assert_eq!(config.extra["gradient_checkpointing"], false);
        assert!(
            !config.extra.contains_key("hidden_size"),
            "known keys are not duplicated"
        );
    }

    #[test]
    fn round_trips_every_key_through_write_hf() {
        let dir = std::env::temp_dir().join(format!("mlm-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        parse(MINILM).unwrap().write_hf(&path).unwrap();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let original: Value = serde_json::from_str(MINILM).unwrap();
        assert_eq!(written, original);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_keys_take_bert_base_defaults() {
        let config = parse(r#"{"model_type": "bert", "vocab_size": 100}"#).unwrap();
        assert_eq!(config.vocab_size, 100);
        assert_eq!(config.hidden_size, 768);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.pad_token_id, Some(0));
    }

    #[test]
    fn refuses_unsupported_families_and_foreign_architectures_by_name() {
        let error = parse(r#"{"model_type": "gpt2"}"#).unwrap_err();
        assert!(
            matches!(error, ModelError::UnsupportedFamily { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("gpt2"), "{error}");
        assert!(error.to_string().contains("xlm-roberta"), "{error}");
        let error = parse(r#"{"architectures": ["DistilBertForMaskedLM"]}"#).unwrap_err();
        assert!(
            error.to_string().contains("DistilBertForMaskedLM"),
            "{error}"
        );
        assert!(error.to_string().contains("config.json"), "{error}");
    }

    #[test]
    fn roberta_configs_read_with_roberta_defaults_and_export_as_their_class() {
        let config = parse(
            r#"{"model_type": "xlm-roberta", "architectures": ["XLMRobertaForMaskedLM"],
                "max_position_embeddings": 514, "type_vocab_size": 1, "vocab_size": 250002}"#,
        )
        .unwrap();
        assert_eq!(config.family(), Family::Roberta);
        assert_eq!(
            config.pad_token_id,
            Some(1),
            "RobertaConfig's default pad id"
        );
        assert_eq!(config.max_sequence_length(), 512, "514 less pad + 1");
        let exported = config.for_export();
        assert_eq!(
            exported.architectures.as_deref(),
            Some(&["XLMRobertaForMaskedLM".to_owned()][..])
        );
        let error = parse(r#"{"model_type": "roberta", "max_position_embeddings": 2}"#);
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("max_position_embeddings"),
            "a table with no room past the padding offset"
        );
    }

    #[test]
    fn distilbert_configs_translate_their_keys_both_ways() {
        let text = r#"{"model_type": "distilbert", "architectures": ["DistilBertForMaskedLM"],
            "dim": 64, "n_layers": 3, "n_heads": 4, "hidden_dim": 128, "dropout": 0.2,
            "attention_dropout": 0.05, "activation": "gelu", "vocab_size": 99,
            "max_position_embeddings": 40, "pad_token_id": 0, "sinusoidal_pos_embds": false,
            "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "tie_weights_": true,
            "initializer_range": 0.02}"#;
        let config = parse(text).unwrap();
        assert_eq!(config.family(), Family::DistilBert);
        let sizes = (
            config.hidden_size,
            config.num_hidden_layers,
            config.num_attention_heads,
        );
        assert_eq!(sizes, (64, 3, 4));
        assert_eq!(config.intermediate_size, 128);
        assert_eq!(config.hidden_dropout_prob, 0.2);
        assert_eq!(config.attention_probs_dropout_prob, 0.05);
        assert_eq!(config.layer_norm_eps, 1e-12);
        let dir = std::env::temp_dir().join(format!("distil-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        config.write_hf(&dir.join("config.json")).unwrap();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            written, original,
            "written back in DistilBERT's own keys, nothing added"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let error = parse(r#"{"model_type": "distilbert", "sinusoidal_pos_embds": true}"#);
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("sinusoidal_pos_embds")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                r#"{"hidden_size": 100, "num_attention_heads": 3}"#,
                "num_attention_heads",
            ),
            (r#"{"hidden_act": "mish"}"#, "hidden_act"),
            (r#"{"hidden_dropout_prob": 1.5}"#, "hidden_dropout_prob"),
            (r#"{"vocab_size": 10, "pad_token_id": 10}"#, "pad_token_id"),
            (
                r#"{"position_embedding_type": "relative_key"}"#,
                "position_embedding_type",
            ),
            (r#"{"is_decoder": true}"#, "is_decoder"),
            (r#"{"tie_word_embeddings": false}"#, "tie_word_embeddings"),
            (r#"{"num_hidden_layers": 0}"#, "num_hidden_layers"),
        ];
        for (text, key) in cases {
            let error = parse(text).unwrap_err();
            match &error {
                ModelError::InvalidConfig { key: found, .. } => assert_eq!(*found, key, "{error}"),
                other => panic!("{text}: {other}"),
            }
        }
    }

    #[test]
    fn malformed_json_reports_line_and_file() {
        let error = parse("{\n  \"vocab_size\": \"many\"\n}").unwrap_err();
        let source = std::error::Error::source(&error).expect("the JSON error is kept");
        let text = format!("{error}: {source}");
        assert!(
            text.contains("config.json") && text.contains("line 2"),
            "{text}"
        );
    }

    #[test]
    fn null_pad_token_means_no_padding_row() {
        let config = parse(r#"{"pad_token_id": null}"#).unwrap();
        assert_eq!(config.padding_idx(), None);
    }

    #[test]
    fn export_copy_names_the_masked_lm_class() {
        let config = parse(MINILM).unwrap().for_export();
        assert_eq!(
            config.architectures.as_deref(),
            Some(&["BertForMaskedLM".to_owned()][..])
        );
        assert_eq!(config.model_type.as_deref(), Some("bert"));
    }

    #[test]
    fn counts_bert_base_parameters() {
        let config = BertConfig::default();
        // embeddings 23,837,184 + 12 layers x 7,087,872 + pooler 590,592 + head 622,650
        assert_eq!(
            config.num_parameters(),
            23_837_184 + 12 * 7_087_872 + 590_592 + 622_650
        );
    }
}
