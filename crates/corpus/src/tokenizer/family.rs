//! Which kind of tokenizer this is, and which transformers class loads its files back with the
//! same ids.
//!
//! transformers 5 does not load a `tokenizer.json` as-is for a class with its own `__init__`
//! (`BertTokenizer`, `RobertaTokenizer`, `XLMRobertaTokenizer`...): it takes the vocabulary
//! (and merges) out of the file and rebuilds the normaliser and pre-tokenizer the class
//! hard-codes (tokenization_utils_tokenizers.py, `convert_to_native_format`; e.g.
//! models/roberta/tokenization_roberta.py). Writing such a class into `tokenizer_config.json`
//! is only right when the tokenizer is exactly what that class rebuilds; anything else is
//! written as `PreTrainedTokenizerFast`, which loads `tokenizer.json` unchanged.
//!
//! ModernBERT's tokenizer (answerdotai/ModernBERT-base, OLMo's byte-level BPE) has RoBERTa's
//! normaliser, pre-tokenizer and model but `[CLS]`/`[SEP]` in a TemplateProcessing
//! (`[CLS] A [SEP] B [SEP]` for a pair, where RobertaProcessing makes `<s> A </s></s> B </s>`)
//! and ships as `PreTrainedTokenizerFast`: `RobertaTokenizer` is only written for the
//! RobertaProcessing it rebuilds (models/roberta/tokenization_roberta.py, `__init__`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::Tokenizer;
use tokenizers::models::ModelWrapper;

use super::specials::SpecialTokens;

/// The model of a tokenizer (`tokenizer.json`'s `model.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerModel {
    /// BERT, DistilBERT, PubMedBERT.
    WordPiece,
    /// Byte-pair encoding; byte-level for RoBERTa and GPT-2.
    Bpe,
    /// SentencePiece unigram: XLM-R, CamemBERT.
    Unigram,
    WordLevel,
}

impl TokenizerModel {
    /// The model type of `tokenizer`.
    pub fn of(tokenizer: &Tokenizer) -> Option<Self> {
        let model = model_settings(tokenizer);
        match model.get("type")?.as_str()? {
            "WordPiece" => Some(Self::WordPiece),
            "BPE" => Some(Self::Bpe),
            "Unigram" => Some(Self::Unigram),
            "WordLevel" => Some(Self::WordLevel),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WordPiece => "wordpiece",
            Self::Bpe => "bpe",
            Self::Unigram => "unigram",
            Self::WordLevel => "wordlevel",
        }
    }
}

/// The transformers class written into `tokenizer_config.json`, with the keys it rebuilds the
/// tokenizer from.
#[derive(Debug, Clone, PartialEq)]
pub enum HfClass {
    /// `BertTokenizer`: BertNormalizer (clean_text) + BertPreTokenizer + WordPiece (`##`,
    /// 100 characters per word).
    Bert {
        lowercase: bool,
        tokenize_chinese_chars: bool,
        strip_accents: Option<bool>,
    },
    /// `RobertaTokenizer`: no normaliser, ByteLevel (regex) + BPE without prefix or suffix.
    Roberta {
        add_prefix_space: bool,
        trim_offsets: bool,
    },
    /// `XLMRobertaTokenizer`: (Precompiled) + WhitespaceSplit, Metaspace + Unigram, `<unk>` = 3.
    XlmRoberta { add_prefix_space: bool },
    /// `PreTrainedTokenizerFast`: `tokenizer.json` as it is.
    Generic,
}

impl HfClass {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bert { .. } => "BertTokenizer",
            Self::Roberta { .. } => "RobertaTokenizer",
            Self::XlmRoberta { .. } => "XLMRobertaTokenizer",
            Self::Generic => "PreTrainedTokenizerFast",
        }
    }

    /// The class that rebuilds `tokenizer` exactly (see the module comment).
    pub fn of(tokenizer: &Tokenizer, names: &SpecialTokens) -> Self {
        let p = Pipeline::of(tokenizer);
        bert(&p.normalizer, &p.pre, &p.model)
            .or_else(|| roberta(&p))
            .or_else(|| xlm_roberta(&p.normalizer, &p.pre, &p.model, names))
            .unwrap_or(Self::Generic)
    }
}

/// Whether `tokenizer` is a byte-level BPE as GPT-2, RoBERTa and ModernBERT have it
/// (ByteLevel with its regex split, BPE without affixes, dropout or unknown token), whatever
/// its normaliser (GPT-NeoX's and some ModernBERT files have NFC) and post-processor:
/// `vocab extend` can append merges to it.
pub fn is_byte_level_bpe(tokenizer: &Tokenizer) -> bool {
    let p = Pipeline::of(tokenizer);
    byte_level_bpe(&p.pre, &p.model)
}

/// A tokenizer's steps as `tokenizer.json` writes them (`null` when absent).
struct Pipeline {
    normalizer: Value,
    pre: Value,
    model: Value,
    post: Value,
}

impl Pipeline {
    fn of(tokenizer: &Tokenizer) -> Self {
        let json = |v: Option<Value>| v.unwrap_or(Value::Null);
        Self {
            normalizer: json(
                tokenizer
                    .get_normalizer()
                    .and_then(|n| serde_json::to_value(n).ok()),
            ),
            pre: json(
                tokenizer
                    .get_pre_tokenizer()
                    .and_then(|p| serde_json::to_value(p).ok()),
            ),
            model: model_settings(tokenizer),
            post: json(
                tokenizer
                    .get_post_processor()
                    .and_then(|p| serde_json::to_value(p).ok()),
            ),
        }
    }
}

/// The model's `tokenizer.json` entry without its vocabulary and merges: the type and the
/// settings the fast paths and the family detection read. Serialising a 50k-entry BPE whole
/// (its vocabulary sorted into a map, its merges ranked) cost about 0.1 s each time, and
/// `prepare` asked several times.
pub(super) fn model_settings(tokenizer: &Tokenizer) -> Value {
    match tokenizer.get_model() {
        ModelWrapper::BPE(bpe) => serde_json::json!({
            "type": "BPE",
            "dropout": bpe.dropout,
            "unk_token": bpe.unk_token,
            "continuing_subword_prefix": bpe.continuing_subword_prefix,
            "end_of_word_suffix": bpe.end_of_word_suffix,
            "fuse_unk": bpe.fuse_unk,
            "byte_fallback": bpe.byte_fallback,
            "ignore_merges": bpe.ignore_merges,
        }),
        ModelWrapper::WordPiece(wordpiece) => serde_json::json!({
            "type": "WordPiece",
            "unk_token": wordpiece.unk_token,
            "continuing_subword_prefix": wordpiece.continuing_subword_prefix,
            "max_input_chars_per_word": wordpiece.max_input_chars_per_word,
        }),
        ModelWrapper::WordLevel(wordlevel) => serde_json::json!({
            "type": "WordLevel",
            "unk_token": wordlevel.unk_token,
        }),
        // Its `unk_id` is not public: serialised (a list, cheaper than BPE's map), less vocab.
        unigram @ ModelWrapper::Unigram(_) => {
            let mut v = serde_json::to_value(unigram).unwrap_or(Value::Null);
            if let Some(map) = v.as_object_mut() {
                map.remove("vocab");
            }
            v
        }
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key)?.as_str()
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    v.get(key)?.as_bool()
}

fn number(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

/// Null or the empty string (BPE's prefix and suffix).
fn empty(v: &Value, key: &str) -> bool {
    matches!(v.get(key), None | Some(Value::Null)) || str_of(v, key) == Some("")
}

fn bert(normalizer: &Value, pre: &Value, model: &Value) -> Option<HfClass> {
    let shape = str_of(normalizer, "type")? == "BertNormalizer"
        && flag(normalizer, "clean_text") == Some(true)
        && str_of(pre, "type")? == "BertPreTokenizer"
        && str_of(model, "type")? == "WordPiece"
        && str_of(model, "continuing_subword_prefix")? == "##"
        && number(model, "max_input_chars_per_word") == Some(100);
    shape.then(|| HfClass::Bert {
        lowercase: normalizer.get("lowercase").and_then(Value::as_bool) == Some(true),
        tokenize_chinese_chars: normalizer
            .get("handle_chinese_chars")
            .and_then(Value::as_bool)
            == Some(true),
        strip_accents: normalizer.get("strip_accents").and_then(Value::as_bool),
    })
}

fn byte_level_bpe(pre: &Value, model: &Value) -> bool {
    str_of(pre, "type") == Some("ByteLevel")
        && flag(pre, "use_regex") == Some(true)
        && str_of(model, "type") == Some("BPE")
        && empty(model, "continuing_subword_prefix")
        && empty(model, "end_of_word_suffix")
        && model.get("dropout").is_none_or(Value::is_null)
        && model.get("unk_token").is_none_or(Value::is_null)
        && flag(model, "byte_fallback") != Some(true)
        && flag(model, "ignore_merges") != Some(true)
}

/// A byte-level BPE without normaliser and with RobertaProcessing (see the module comment
/// for ModernBERT's).
fn roberta(p: &Pipeline) -> Option<HfClass> {
    let (pre, post) = (&p.pre, &p.post);
    let shape = p.normalizer.is_null()
        && byte_level_bpe(pre, &p.model)
        && str_of(post, "type") == Some("RobertaProcessing");
    shape.then(|| HfClass::Roberta {
        add_prefix_space: flag(pre, "add_prefix_space") == Some(true),
        trim_offsets: flag(pre, "trim_offsets") != Some(false),
    })
}

fn xlm_roberta(
    normalizer: &Value,
    pre: &Value,
    model: &Value,
    names: &SpecialTokens,
) -> Option<HfClass> {
    let normalizer_ok = normalizer.is_null() || str_of(normalizer, "type")? == "Precompiled";
    let steps = pre.get("pretokenizers")?.as_array()?;
    let [split, metaspace] = steps.as_slice() else {
        return None;
    };
    let scheme = str_of(metaspace, "prepend_scheme")?;
    let shape = normalizer_ok
        && str_of(pre, "type")? == "Sequence"
        && str_of(split, "type")? == "WhitespaceSplit"
        && str_of(metaspace, "type")? == "Metaspace"
        && str_of(metaspace, "replacement")? == "\u{2581}"
        && metaspace
            .get("split")
            .is_none_or(|s| s == &Value::Bool(true))
        && (scheme == "always" || scheme == "never")
        && str_of(model, "type")? == "Unigram"
        && number(model, "unk_id") == Some(3)
        && flag(model, "byte_fallback") != Some(true)
        && names.is_roberta();
    shape.then(|| HfClass::XlmRoberta {
        add_prefix_space: scheme == "always",
    })
}
