//! The model families: what differs between BERT, RoBERTa (with XLM-RoBERTa and CamemBERT)
//! and DistilBERT, as data. The network (`super::network`) is one post-LayerNorm encoder with
//! an MLM head whose decoder is tied to the word embeddings; a family names its variables as
//! its transformers class does and sets the few switches where the computations differ
//! (position ids, token types, the dropout after the attention output, the head's
//! activation). One module per family, like candle's `models/`.

mod bert;
mod distilbert;
mod roberta;

use serde_json::{Map, Value};

use super::config::BertConfig;
pub use super::layers::LayerNames;

/// How position ids are made from the input ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// `0..T` (BERT, DistilBERT).
    Absolute,
    /// `padding_idx + 1 + cumsum(non-pad)` for real tokens, `padding_idx` for padding:
    /// `create_position_ids_from_input_ids` (RoBERTa). The position table's row `padding_idx`
    /// is a padding row (zero at initialisation, no gradient).
    AfterPadding,
}

/// The activation of the MLM head's transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadActivation {
    /// The config's (`hidden_act`; DistilBERT's `activation`).
    FromConfig,
    /// Always exact GELU (`RobertaLMHead` calls `gelu` whatever `hidden_act` says).
    Gelu,
}

/// What a family's network looks like, by Hugging Face name. Paths are dotted state-dict keys
/// relative to the root (`base`) or to one layer (`layer_*`).
#[derive(Debug)]
pub struct FamilySpec {
    /// `base_model_prefix` (`bert`, `roberta`, `distilbert`).
    pub base: &'static str,
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
    /// The pooler under the base model, if the family's base model has one. Kept frozen: the
    /// MLM classes have none, but a checkpoint's pooler is kept for fine-tuning.
    pub pooler: Option<&'static str>,
    pub head_dense: &'static str,
    pub head_norm: &'static str,
    pub head_bias: &'static str,
    pub head_activation: HeadActivation,
    /// `_tied_weights_keys`: (checkpoint key of a tied copy, the parameter it duplicates).
    pub tied: &'static [(&'static str, &'static str)],
    /// Key prefixes (after the base prefix is stripped) of other tasks' heads that a
    /// checkpoint may carry and that are safe to ignore.
    pub other_heads: &'static [&'static str],
}

/// A supported model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Bert,
    /// `roberta`, `xlm-roberta`, `camembert`: the same network under the same names.
    Roberta,
    DistilBert,
}

/// The `model_type`s the trainer builds, for messages.
pub const SUPPORTED_MODEL_TYPES: &str = "bert, roberta, xlm-roberta, camembert, distilbert";

impl Family {
    /// The family of a config's `model_type`; `None` when unsupported.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Self::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(Self::Roberta),
            "distilbert" => Some(Self::DistilBert),
            _ => None,
        }
    }

    pub fn spec(self) -> &'static FamilySpec {
        match self {
            Self::Bert => &bert::SPEC,
            Self::Roberta => &roberta::SPEC,
            Self::DistilBert => &distilbert::SPEC,
        }
    }

    /// `base_model_prefix` + ".".
    pub fn base_prefix(self) -> String {
        format!("{}.", self.spec().base)
    }

    /// The masked-LM class transformers builds for `model_type` (what export writes into
    /// `architectures`, so that `AutoModelForMaskedLM` and `pipeline("fill-mask")` resolve it).
    pub fn masked_lm_class(model_type: &str) -> Option<&'static str> {
        match model_type {
            "bert" => Some("BertForMaskedLM"),
            "roberta" => Some("RobertaForMaskedLM"),
            "xlm-roberta" => Some("XLMRobertaForMaskedLM"),
            "camembert" => Some("CamembertForMaskedLM"),
            "distilbert" => Some("DistilBertForMaskedLM"),
            _ => None,
        }
    }

    /// Class-name prefixes of `architectures` entries this family's checkpoints carry
    /// (`BertModel`, `RobertaForMaskedLM`, `XLMRobertaModel`, ...).
    pub fn class_prefixes(self) -> &'static [&'static str] {
        match self {
            Self::Bert => &["Bert"],
            Self::Roberta => &["Roberta", "XLMRoberta", "Camembert"],
            Self::DistilBert => &["DistilBert"],
        }
    }

    /// Checkpoint keys known to be safe to ignore: tied copies, other tasks' heads, and the
    /// position / token-type id buffers older transformers saved.
    pub fn ignored_key(self, key: &str) -> bool {
        let spec = self.spec();
        spec.tied.iter().any(|(tied, _)| *tied == key)
            || spec.other_heads.iter().any(|head| key.starts_with(head))
            || key.ends_with("position_ids")
            || key.ends_with("token_type_ids")
    }

    /// The first `pad + 1` rows of a RoBERTa position table are never a real token's
    /// position: how many positions a sequence may use is the table size minus this.
    pub fn position_offset(self, pad_token_id: Option<i64>) -> i64 {
        match self.spec().positions {
            Positions::Absolute => 0,
            Positions::AfterPadding => pad_token_id.map_or(0, |pad| pad + 1),
        }
    }

    /// Whether the family's `config.json` names its sizes differently from BERT's.
    pub fn renames_keys(self) -> bool {
        self == Self::DistilBert
    }

    /// A family's `config.json` in BERT's key names (the struct the trainer reads), and back.
    pub fn to_bert_keys(self, config: &mut Map<String, Value>) {
        if self == Self::DistilBert {
            distilbert::to_bert_keys(config);
        }
    }

    /// The family's defaults for keys absent from `given` (the file's keys), where they differ
    /// from BERT's.
    pub fn fill_defaults(self, config: &mut BertConfig, given: &Map<String, Value>) {
        if self == Self::Roberta {
            roberta::fill_defaults(config, given);
        }
    }

    pub fn from_bert_keys(self, config: &mut Map<String, Value>) {
        if self == Self::DistilBert {
            distilbert::from_bert_keys(config);
        }
    }
}
