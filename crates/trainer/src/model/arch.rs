//! The family seam: everything a model family brings, behind one trait, registered in one
//! table ([`ARCHITECTURES`], `families/mod.rs`). The loop, checkpoints, data parallel, CUDA
//! graphs, unpadding, export, vocabulary growth, the plan and `inspect` reach a model only
//! through [`Architecture`] (and the [`super::MaskedLanguageModel`] it builds), so a new family
//! is one module plus its entry in the table: docs/architecture.md lists what it provides.

use std::fmt;

use serde_json::{Map, Value};
use tch::nn::Path;

use super::config::{ConfigProblem, EncoderConfig, RawConfig};
use super::cost::Cost;
use super::network::MaskedLmNetwork;

/// One `model_type` a family reads, and the masked-LM class transformers builds for it (what
/// an export writes into `architectures`, so that `AutoModelForMaskedLM` and
/// `pipeline("fill-mask")` resolve it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelType {
    pub model_type: &'static str,
    pub masked_lm_class: &'static str,
}

/// The state-dict keys the family-independent code needs: the vocabulary-indexed variables
/// (vocabulary growth, export checks), tied copies and other tasks' heads (loading), the
/// pooler (export options).
#[derive(Debug)]
pub struct StateKeys {
    /// `base_model_prefix` (`bert`, `roberta`, `distilbert`): checkpoints may omit it.
    pub base: &'static str,
    /// The word-embedding matrix, the decoder's weight (tied).
    pub word_embeddings: &'static str,
    /// The decoder's own bias (`cls.predictions.bias`, `lm_head.bias`, ...).
    pub decoder_bias: &'static str,
    /// `_tied_weights_keys`: (checkpoint key of a tied copy, the variable it duplicates).
    pub tied: &'static [(&'static str, &'static str)],
    /// The pooler's dotted path (`bert.pooler.dense`: kept frozen for fine-tuning), if any.
    pub pooler: Option<&'static str>,
    /// Key prefixes (without the base prefix) of other tasks' heads that a checkpoint may
    /// carry and that are safe to ignore.
    pub other_heads: &'static [&'static str],
}

impl StateKeys {
    /// `base_model_prefix` + ".".
    pub fn base_prefix(&self) -> String {
        format!("{}.", self.base)
    }

    /// The variables indexed by token id: the word embeddings (the decoder is tied to them)
    /// and the decoder's bias.
    pub fn vocabulary_variables(&self) -> [&'static str; 2] {
        [self.word_embeddings, self.decoder_bias]
    }

    /// Checkpoint keys known to be safe to ignore: tied copies, other tasks' heads, and the
    /// position / token-type id and rotary-frequency buffers older transformers saved.
    pub fn ignored(&self, key: &str) -> bool {
        self.tied.iter().any(|(tied, _)| *tied == key)
            || self.other_heads.iter().any(|head| key.starts_with(head))
            || key.ends_with("position_ids")
            || key.ends_with("token_type_ids")
            || key.ends_with("inv_freq")
    }
}

/// One variable of a family's network, as its state dict has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableShape {
    pub name: String,
    pub shape: Vec<i64>,
    /// False for variables MLM training leaves as loaded (the pooler).
    pub trainable: bool,
}

impl VariableShape {
    pub fn new(name: impl Into<String>, shape: &[i64]) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            trainable: true,
        }
    }

    pub fn frozen(mut self) -> Self {
        self.trainable = false;
        self
    }

    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

/// How `_init_weights` initialises one variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InitRule {
    Ones,
    Zeros,
    /// normal(0, std), then row `zero_row` (an embedding's padding row) set to zero.
    Normal {
        std: f64,
        zero_row: Option<i64>,
    },
    /// normal(0, std) truncated to [-cutoff * std, cutoff * std] (`init.trunc_normal_` with
    /// `a = -cutoff * std`, `b = cutoff * std`: ModernBERT's `init_weight`).
    TruncatedNormal {
        std: f64,
        cutoff: f64,
    },
}

/// The sizes of a model from scratch (`[model]` with the corpus's vocabulary).
#[derive(Debug, Clone, PartialEq)]
pub struct ScratchShape {
    pub vocab_size: u64,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// `None`: the family's default.
    pub dropout: Option<f64>,
    /// The longest sequence the corpus holds.
    pub max_seq_len: usize,
    /// `[model] max_position_embeddings`; `None`: the family's choice for `max_seq_len`.
    pub max_position_embeddings: Option<usize>,
    /// The tokenizer's special ids, when known (a dry run before the vocabulary is trained
    /// does not know them: the family's defaults stand in).
    pub special_ids: Option<SpecialIds>,
    /// `config.json` keys (the family's names) over the family's scratch config
    /// (`[model] family_config`).
    pub family_config: serde_json::Map<String, Value>,
}

/// The special ids a config records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub cls: u32,
    pub sep: u32,
}

/// A model family: BERT, RoBERTa, DistilBERT, ... One implementation per family module
/// (`families/`), registered in [`ARCHITECTURES`].
pub trait Architecture: Sync + fmt::Debug {
    /// The family's name in messages ("BERT").
    fn name(&self) -> &'static str;

    /// The `model_type`s this family reads, each with its masked-LM class.
    fn model_types(&self) -> &'static [ModelType];

    /// Class-name prefixes of the `architectures` entries its checkpoints carry
    /// (`BertModel`, `XLMRobertaForMaskedLM`, ...).
    fn class_prefixes(&self) -> &'static [&'static str];

    /// A `config.json` of this family (its own key names, its config class's defaults) as an
    /// [`EncoderConfig`]; the family's own keys are checked by [`Self::validate`].
    fn read_config(&self, raw: &RawConfig<'_>) -> Result<EncoderConfig, serde_json::Error>;

    /// An [`EncoderConfig`]'s keys (every field and `extra`, serialised) back in the family's
    /// key names, for `config.json`.
    fn write_config(&self, keys: &mut Map<String, Value>);

    /// The family's own checks, after the shared ones (sizes, dropouts, activation).
    fn validate(&self, config: &EncoderConfig) -> Result<(), ConfigProblem>;

    /// The `config.json` (in the family's keys) of a model from scratch of `model_type`, as
    /// its transformers config class has its defaults.
    fn scratch_config(&self, model_type: &str, shape: &ScratchShape) -> Map<String, Value>;

    /// The longest sequence the model serves (`max_position_embeddings`, less any rows no
    /// real token's position uses).
    fn max_sequence_length(&self, config: &EncoderConfig) -> i64;

    /// Every variable the network has, by Hugging Face name and shape: what [`Self::build`]
    /// creates (tested), and what parameter counts and export checks are made of.
    fn variables(&self, config: &EncoderConfig) -> Vec<VariableShape>;

    /// The network's variables under `root` (placeholders: values come from
    /// [`super::init_weights_like_hf`] or a load), and the network that computes with them.
    fn build(&self, root: &Path<'_>, config: &EncoderConfig) -> Box<dyn MaskedLmNetwork>;

    /// How `_init_weights` initialises the variable `name`; `None` for a name the family
    /// does not have.
    fn init_rule(&self, name: &str, config: &EncoderConfig) -> Option<InitRule>;

    /// The state-dict keys the family-independent code needs.
    fn keys(&self) -> &StateKeys;

    /// Parameters, training FLOPs per token and activation memory at `seq_len`.
    fn cost(&self, config: &EncoderConfig, seq_len: usize) -> Cost;

    /// For a family whose local layers attend only to keys at most this many positions away
    /// (ModernBERT's `local_attention / 2`): the varlen kernel then takes the window itself
    /// and every batch runs unpadded. `None`: every layer attends globally.
    fn attention_window(&self, config: &EncoderConfig) -> Option<i64>;
}

/// Every family the trainer builds.
pub use super::families::ARCHITECTURES;

/// The family of a config's `model_type`; `None` when unsupported.
pub fn architecture_for(model_type: &str) -> Option<&'static dyn Architecture> {
    ARCHITECTURES.iter().copied().find(|arch| {
        arch.model_types()
            .iter()
            .any(|known| known.model_type == model_type)
    })
}

/// The masked-LM class transformers builds for `model_type`.
pub fn masked_lm_class(model_type: &str) -> Option<&'static str> {
    ARCHITECTURES
        .iter()
        .flat_map(|arch| arch.model_types())
        .find(|known| known.model_type == model_type)
        .map(|known| known.masked_lm_class)
}

/// The `model_type`s the trainer builds, for messages ("bert, roberta, ...").
pub fn supported_model_types() -> String {
    ARCHITECTURES
        .iter()
        .flat_map(|arch| arch.model_types())
        .map(|known| known.model_type)
        .collect::<Vec<_>>()
        .join(", ")
}
