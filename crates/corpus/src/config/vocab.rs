//! The `[vocab]` section: what `mlm-train vocab train` learns.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CorpusConfig;
use crate::error::CorpusError;
use crate::fsutil::resolve_path;

/// The tokenizer model `mlm-train vocab train` learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VocabModel {
    /// BERT WordPiece: BertNormalizer, BertPreTokenizer, `##` continuations (tokenizers'
    /// `BertWordPieceTokenizer`); written as a `BertTokenizer`.
    #[default]
    WordPiece,
    /// Byte-level BPE: no normaliser, ByteLevel pre-tokenizer, the 256 bytes as the initial
    /// alphabet (tokenizers' `ByteLevelBPETokenizer`); laid out and written as `[vocab]
    /// layout` says (default RoBERTa's: a `RobertaTokenizer`, `vocab.json`, `merges.txt`,
    /// `tokenizer.json`).
    Bpe,
}

impl VocabModel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WordPiece => "wordpiece",
            Self::Bpe => "bpe",
        }
    }

    /// The special tokens of this model when `special_tokens` is not given.
    pub fn default_special_tokens(self) -> Vec<String> {
        let tokens = match self {
            Self::WordPiece => crate::tokenizer::BERT_SPECIAL_TOKENS,
            Self::Bpe => crate::tokenizer::ROBERTA_SPECIAL_TOKENS,
        };
        tokens.map(String::from).to_vec()
    }
}

/// Where a trained byte-level BPE puts its special tokens, how it frames a sequence, and the
/// transformers class its files are written for (`[vocab] layout`, `model = "bpe"` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VocabLayout {
    /// roberta-base's: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, the BPE entries, `<mask>`
    /// last (lstrip); RobertaProcessing `<s> A </s>`; a `RobertaTokenizer` (`vocab.json`,
    /// `merges.txt`, `tokenizer.json`).
    #[default]
    Roberta,
    /// answerdotai/ModernBERT-base's: the BPE entries first, then `[UNK]`, `[CLS]`, `[SEP]`,
    /// `[PAD]`, `[MASK]` (lstrip) as added special tokens at the end; TemplateProcessing
    /// `[CLS] A [SEP]` (`[CLS] A [SEP] B [SEP]`); a `PreTrainedTokenizerFast`
    /// (`tokenizer.json`, with `model_input_names` `["input_ids", "attention_mask"]` and
    /// `model_max_length` 8192 in `tokenizer_config.json`).
    ModernBert,
}

impl VocabLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Roberta => "roberta",
            Self::ModernBert => "modernbert",
        }
    }
}

/// The `[vocab]` section: `mlm-train vocab train` trains a WordPiece or byte-level BPE
/// vocabulary on the training split of `[corpus]`'s inputs with Hugging Face tokenizers'
/// trainers.
///
/// ```toml
/// [vocab]
/// model = "bpe"
/// vocab_size = 30522
/// output = "tokenizers/pubmed-bpe"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VocabConfig {
    /// `wordpiece` (BERT, the default) or `bpe` (byte-level BPE, RoBERTa's or ModernBERT's
    /// by `layout`). `model = "bpe"`
    pub model: VocabModel,
    /// `bpe` only: `roberta` (the default; roberta-base's ids, `<s> ... </s>`) or
    /// `modernbert` (ModernBERT-base's: the special tokens `[UNK]`, `[CLS]`, `[SEP]`,
    /// `[PAD]`, `[MASK]` after the BPE entries, `[CLS] ... [SEP]`, written as a
    /// `PreTrainedTokenizerFast`); see [`VocabLayout`]. Refused with `wordpiece`, whose
    /// layout is BERT's. `layout = "modernbert"`
    pub layout: Option<VocabLayout>,
    /// Vocabulary size, special tokens included. `vocab_size = 30522`
    pub vocab_size: usize,
    /// Lowercase (and, for WordPiece, strip accents) before splitting, as bert-base-uncased.
    /// Default: true for `wordpiece`, false for `bpe` (which refuses true: RoBERTa's
    /// tokenizer has no normaliser, so transformers would not lowercase). `lowercase = false`
    pub lowercase: Option<bool>,
    /// Minimum frequency of a merged piece (tokenizers' `BertWordPieceTokenizer` default 2).
    /// `min_frequency = 5`
    pub min_frequency: u64,
    /// Special tokens. `wordpiece`: given the first ids in this order, must include [PAD],
    /// [UNK], [CLS], [SEP] and [MASK] (default in that order). `bpe`: must include `<s>`,
    /// `<pad>`, `</s>`, `<unk>` and `<mask>` (default in that order); all but `<mask>` get
    /// the first ids in this order and `<mask>` the last id, roberta-base's layout. `bpe`
    /// with `layout = "modernbert"`: must include [UNK], [CLS], [SEP], [PAD] and [MASK]
    /// (default in that order), given the last ids in this order.
    /// `special_tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]`
    pub special_tokens: Option<Vec<String>>,
    /// Most distinct characters kept in the initial alphabet (tokenizers' default 1000; the
    /// 256 bytes of `bpe` always stay). `limit_alphabet = 500`
    pub limit_alphabet: usize,
    /// Directory to write the tokenizer files into (`tokenizer.json` and `vocab.txt`, or
    /// `vocab.json` + `merges.txt`, and the Hugging Face configs).
    /// Default: `[corpus] tokenizer`. `output = "tokenizers/pubmed"`
    pub output: Option<PathBuf>,
    /// Train on (or, for `vocab extend`, count the words of) at most this many documents of
    /// the training split. `max_documents = 1000000`
    pub max_documents: Option<u64>,
    /// `vocab extend`: the model directory (or tokenizer directory) whose WordPiece or
    /// byte-level BPE vocabulary is extended; the extended files go to `output`.
    /// `extend_from = "models/bert-base-uncased"`
    pub extend_from: Option<PathBuf>,
    /// `vocab extend`: how many entries to add (WordPiece reuses `[unusedN]` slots first).
    /// Words count when seen at least `min_frequency` times. `add = 1000`
    pub add: Option<usize>,
}

impl Default for VocabConfig {
    fn default() -> Self {
        Self {
            model: VocabModel::WordPiece,
            layout: None,
            vocab_size: 30_522,
            lowercase: None,
            min_frequency: 2,
            special_tokens: None,
            limit_alphabet: 1000,
            output: None,
            max_documents: None,
            extend_from: None,
            add: None,
        }
    }
}

impl VocabConfig {
    /// Makes a relative `output` relative to `base` (the config file's directory), lexically
    /// normalised (see [`resolve_path`]).
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.output, &mut self.extend_from]
            .into_iter()
            .flatten()
        {
            *path = resolve_path(base, path);
        }
    }

    /// The layout in effect: `layout`, else `roberta`, for `bpe`; `None` for `wordpiece`.
    pub fn effective_layout(&self) -> Option<VocabLayout> {
        (self.model == VocabModel::Bpe).then(|| self.layout.unwrap_or_default())
    }

    /// The special tokens the model and layout need, in their default order.
    pub fn default_special_tokens(&self) -> Vec<String> {
        match self.effective_layout() {
            Some(VocabLayout::ModernBert) => crate::tokenizer::MODERNBERT_SPECIAL_TOKENS
                .map(String::from)
                .to_vec(),
            _ => self.model.default_special_tokens(),
        }
    }

    /// The special tokens in effect (`special_tokens`, else the model's and layout's).
    pub fn effective_special_tokens(&self) -> Vec<String> {
        self.special_tokens
            .clone()
            .unwrap_or_else(|| self.default_special_tokens())
    }

    /// Whether to lowercase (`lowercase`, else the model's default).
    pub fn effective_lowercase(&self) -> bool {
        self.lowercase
            .unwrap_or(self.model == VocabModel::WordPiece)
    }

    /// Checks the keys. Errors name the key and its value.
    pub fn validate(&self) -> Result<(), CorpusError> {
        let invalid = |key, value: &dyn std::fmt::Display, message: &str| {
            Err(CorpusError::config_value("vocab", key, value, message))
        };
        if let (VocabModel::WordPiece, Some(layout)) = (self.model, self.layout) {
            let message = "is not available with model = \"wordpiece\": the layouts (roberta, modernbert) are byte-level BPE's; a WordPiece vocabulary has BERT's";
            return invalid("layout", &format!("\"{}\"", layout.as_str()), message);
        }
        let specials = self.effective_special_tokens();
        let required = self.default_special_tokens();
        if let Some(missing) = required.iter().find(|r| !specials.contains(r)) {
            let tokens = format!("{specials:?}");
            let layout = self
                .effective_layout()
                .map_or(String::new(), |l| format!(", layout = \"{}\"", l.as_str()));
            let message = format!(
                "must include {missing} (model = \"{}\"{layout})",
                self.model.as_str()
            );
            return invalid("special_tokens", &tokens, &message);
        }
        if self.model == VocabModel::Bpe && self.lowercase == Some(true) {
            return invalid(
                "lowercase",
                &true,
                "is not available with model = \"bpe\": a byte-level BPE (RoBERTa's, ModernBERT's) has no normaliser, so transformers would not lowercase",
            );
        }
        let count = specials.len();
        if self.vocab_size <= count {
            let message = format!("leaves no room beside the {count} special tokens");
            return invalid("vocab_size", &self.vocab_size, &message);
        }
        if self.vocab_size > u32::MAX as usize {
            let message = format!("is too large: token ids are 32-bit (at most {})", u32::MAX);
            return invalid("vocab_size", &self.vocab_size, &message);
        }
        if self.limit_alphabet == 0 {
            return invalid(
                "limit_alphabet",
                &0,
                "must be >= 1 (an empty alphabet builds no word)",
            );
        }
        if self.max_documents == Some(0) {
            let message = "must be >= 1 (leave it out to train on every document)";
            return invalid("max_documents", &0, message);
        }
        Ok(())
    }

    /// Checks the keys of `vocab extend`: `extend_from` and `add` (>= 1) given, `output`
    /// (or `corpus.tokenizer`) another directory than `extend_from`. Returns the base
    /// directory and `add`.
    pub fn validate_extend(&self, corpus: &CorpusConfig) -> Result<(PathBuf, usize), CorpusError> {
        let base = self.extend_from.clone().ok_or_else(|| {
            CorpusError::config(
                "vocab",
                "extend_from",
                "is missing: vocab extend needs the model (or tokenizer) directory whose vocabulary it extends",
            )
        })?;
        let add = match self.add {
            None => {
                return Err(CorpusError::config(
                    "vocab",
                    "add",
                    "is missing: how many entries to add",
                ));
            }
            Some(0) => {
                return Err(CorpusError::config_value(
                    "vocab",
                    "add",
                    0,
                    "must be >= 1 (the number of vocabulary entries to add)",
                ));
            }
            Some(add) => add,
        };
        if self.max_documents == Some(0) {
            let message = "must be >= 1 (leave it out to count every document)";
            return Err(CorpusError::config_value(
                "vocab",
                "max_documents",
                0,
                message,
            ));
        }
        let output = self.output_dir(corpus)?;
        if output == base {
            let message = format!(
                "is the vocab.extend_from directory ({}): write the extended vocabulary elsewhere, the base model keeps its own",
                base.display()
            );
            return Err(CorpusError::config("vocab", "output", message));
        }
        Ok((base, add))
    }

    /// The output directory: `vocab.output`, else `corpus.tokenizer`.
    pub fn output_dir(&self, corpus: &CorpusConfig) -> Result<PathBuf, CorpusError> {
        self.output
            .clone()
            .or_else(|| corpus.tokenizer.clone())
            .ok_or_else(|| {
                CorpusError::config(
                    "vocab",
                    "output",
                    "is missing (and corpus.tokenizer is not set either)",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab_error(edit: impl FnOnce(&mut VocabConfig)) -> String {
        let mut v = VocabConfig::default();
        edit(&mut v);
        v.validate()
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn vocab_validation_names_the_key_and_value() {
        assert_eq!(
            vocab_error(|v| v.special_tokens = Some(vec!["[PAD]".into()])),
            r#"vocab.special_tokens = ["[PAD]"] must include [UNK] (model = "wordpiece")"#
        );
        assert_eq!(
            vocab_error(|v| v.vocab_size = 5),
            "vocab.vocab_size = 5 leaves no room beside the 5 special tokens"
        );
        assert!(
            vocab_error(|v| v.vocab_size = 1 << 33)
                .starts_with("vocab.vocab_size = 8589934592 is too large")
        );
        assert_eq!(
            vocab_error(|v| v.limit_alphabet = 0),
            "vocab.limit_alphabet = 0 must be >= 1 (an empty alphabet builds no word)"
        );
        assert_eq!(
            vocab_error(|v| v.max_documents = Some(0)),
            "vocab.max_documents = 0 must be >= 1 (leave it out to train on every document)"
        );
        let missing = VocabConfig::default()
            .output_dir(&CorpusConfig::default())
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "vocab.output is missing (and corpus.tokenizer is not set either)"
        );
    }

    #[test]
    fn extend_keys_are_checked_together() {
        let corpus = CorpusConfig {
            tokenizer: Some("tok".into()),
            ..CorpusConfig::default()
        };
        let extend_error = |edit: fn(&mut VocabConfig)| {
            let mut v = VocabConfig {
                extend_from: Some("model".into()),
                add: Some(10),
                ..VocabConfig::default()
            };
            edit(&mut v);
            v.validate_extend(&corpus).unwrap_err().to_string()
        };
        assert!(extend_error(|v| v.extend_from = None).starts_with("vocab.extend_from is missing"));
        assert_eq!(
            extend_error(|v| v.add = None),
            "vocab.add is missing: how many entries to add"
        );
        assert_eq!(
            extend_error(|v| v.add = Some(0)),
            "vocab.add = 0 must be >= 1 (the number of vocabulary entries to add)"
        );
        assert!(
            extend_error(|v| v.output = Some("model".into()))
                .starts_with("vocab.output is the vocab.extend_from directory (model)")
        );
        let v = VocabConfig {
            extend_from: Some("model".into()),
            add: Some(10),
            ..VocabConfig::default()
        };
        assert_eq!(v.validate_extend(&corpus).unwrap(), ("model".into(), 10));
        let parsed: VocabConfig =
            toml::from_str("extend_from = \"m\"\nadd = 4000\nmin_frequency = 3").unwrap();
        assert_eq!((parsed.add, parsed.min_frequency), (Some(4000), 3));
    }

    #[test]
    fn bpe_has_roberta_defaults_and_refuses_lowercase() {
        let v: VocabConfig = toml::from_str("model = \"bpe\"\nvocab_size = 300").unwrap();
        v.validate().unwrap();
        assert_eq!(v.model, VocabModel::Bpe);
        assert_eq!(
            v.effective_special_tokens(),
            ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        );
        assert!(!v.effective_lowercase());
        assert!(VocabConfig::default().effective_lowercase());
        let bpe = |edit: fn(&mut VocabConfig)| {
            vocab_error(|v| {
                v.model = VocabModel::Bpe;
                edit(v);
            })
        };
        assert!(
            bpe(|v| v.lowercase = Some(true))
                .starts_with("vocab.lowercase = true is not available with model = \"bpe\""),
            "{}",
            bpe(|v| v.lowercase = Some(true))
        );
        assert_eq!(
            bpe(|v| v.special_tokens = Some(vec![
                "<s>".into(),
                "<pad>".into(),
                "</s>".into(),
                "<unk>".into()
            ])),
            r#"vocab.special_tokens = ["<s>", "<pad>", "</s>", "<unk>"] must include <mask> (model = "bpe", layout = "roberta")"#
        );
        let e = toml::from_str::<VocabConfig>("model = \"unigram\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `unigram`"), "{e}");
    }

    #[test]
    fn modernbert_layout_has_its_specials_and_is_bpe_only() {
        let v: VocabConfig =
            toml::from_str("model = \"bpe\"\nlayout = \"modernbert\"\nvocab_size = 300").unwrap();
        v.validate().unwrap();
        assert_eq!(v.effective_layout(), Some(VocabLayout::ModernBert));
        assert_eq!(
            v.effective_special_tokens(),
            ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
        );
        let bpe: VocabConfig = toml::from_str("model = \"bpe\"").unwrap();
        assert_eq!(bpe.effective_layout(), Some(VocabLayout::Roberta));
        assert_eq!(VocabConfig::default().effective_layout(), None);
        let modernbert = |edit: fn(&mut VocabConfig)| {
            vocab_error(|v| {
                v.model = VocabModel::Bpe;
                v.layout = Some(VocabLayout::ModernBert);
                edit(v);
            })
        };
        // RoBERTa's names are not ModernBERT's.
        assert_eq!(
            modernbert(|v| v.special_tokens = Some(
                ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
                    .map(String::from)
                    .to_vec()
            )),
            r#"vocab.special_tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] must include [UNK] (model = "bpe", layout = "modernbert")"#
        );
        assert_eq!(
            modernbert(|v| v.special_tokens = Some(
                ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]
                    .map(String::from)
                    .to_vec()
            )),
            r#"vocab.special_tokens = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"] must include [MASK] (model = "bpe", layout = "modernbert")"#
        );
        let extra = VocabConfig {
            model: VocabModel::Bpe,
            layout: Some(VocabLayout::ModernBert),
            special_tokens: Some(
                [
                    "[PAD]",
                    "[UNK]",
                    "[CLS]",
                    "[SEP]",
                    "[MASK]",
                    "<|endoftext|>",
                ]
                .map(String::from)
                .to_vec(),
            ),
            vocab_size: 300,
            ..VocabConfig::default()
        };
        extra.validate().unwrap();
        assert!(
            modernbert(|v| v.lowercase = Some(true))
                .starts_with("vocab.lowercase = true is not available with model = \"bpe\"")
        );
        assert_eq!(
            vocab_error(|v| v.layout = Some(VocabLayout::ModernBert)),
            "vocab.layout = \"modernbert\" is not available with model = \"wordpiece\": the layouts (roberta, modernbert) are byte-level BPE's; a WordPiece vocabulary has BERT's"
        );
        assert!(
            vocab_error(|v| v.layout = Some(VocabLayout::Roberta)).starts_with(
                "vocab.layout = \"roberta\" is not available with model = \"wordpiece\""
            )
        );
        let e = toml::from_str::<VocabConfig>("layout = \"gpt2\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `gpt2`"), "{e}");
    }
}
