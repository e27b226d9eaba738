//! The `[corpus]` and `[vocab]` sections of the run config. Defaults follow Hugging Face
//! `run_mlm.py` (text column `text`, 5% validation split) and the BERT paper (sequence length
//! 128 for the first 90% of pre-training, a 30,522-token WordPiece vocabulary).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CorpusError;

/// How the input files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// By extension (after an optional `.gz`): `.txt`/`.text` text, `.jsonl`/`.json`/`.ndjson`
    /// JSONL, `.parquet` Parquet, `.xml` PubMed/MEDLINE XML.
    #[default]
    Auto,
    Text,
    Jsonl,
    Parquet,
    Medline,
}

/// Where one document of a text file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TextMode {
    /// Each non-blank line is a document (run_mlm's `line_by_line`).
    #[default]
    Line,
    /// Documents are separated by one or more blank lines; their lines are joined with `\n`.
    Paragraph,
}

/// How token streams become fixed-length sequences (docs/architecture.md states the exact
/// definition, which tests/python/packing_reference.py re-implements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    /// Documents of a split joined with [SEP] into one stream, cut into blocks of
    /// `max_seq_len - 2` tokens, each wrapped as `[CLS] block [SEP]`; the last, shorter block
    /// is kept (run_mlm's `group_texts` drops it).
    #[default]
    Concat,
    /// One document per sequence: `[CLS] window [SEP]` for consecutive windows of
    /// `max_seq_len - 2` tokens of the document.
    Document,
}

/// What to do with a bad input record (invalid UTF-8, malformed JSON or XML, missing field,
/// truncated or unreadable file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// Stop with an error naming the file and line / record.
    #[default]
    Fail,
    /// Drop the record (or the rest of a truncated file), count it in the manifest and warn.
    Skip,
}

/// The `[corpus]` section: what `mlm-train prepare` reads and writes.
///
/// ```toml
/// [corpus]
/// inputs = ["data/pubmed/*.jsonl.gz"]
/// text_fields = ["title", "abstract"]
/// id_field = "pmid"
/// tokenizer = "tokenizers/bert-base-uncased"
/// output = "prepared/pubmed"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorpusConfig {
    /// Files, glob patterns or directories (read recursively, files of a known extension),
    /// relative to the config file. Gzip is detected by content.
    /// `inputs = ["data/train.jsonl", "baseline/*.xml.gz"]`
    pub inputs: Vec<String>,
    /// Input format; `auto` detects it per file by extension.
    /// `format = "jsonl"`
    pub format: InputFormat,
    /// Documents of text files: one per line or blank-line separated paragraphs.
    /// `text_mode = "paragraph"`
    pub text_mode: TextMode,
    /// JSONL fields / Parquet columns whose text is joined into the document.
    /// `text_fields = ["title", "abstract"]`
    pub text_fields: Vec<String>,
    /// Separator between the text fields of one record (and between a MEDLINE title and its
    /// abstract sections). `field_separator = "\n"`
    pub field_separator: String,
    /// JSONL field / Parquet column holding the document id (string or integer). Without it,
    /// a document's id is a hash of its text. `id_field = "pmid"`
    pub id_field: Option<String>,
    /// Explicit held-out inputs: every document read from them is validation, and a training
    /// document with the same id is dropped. `validation_inputs = ["data/valid.jsonl"]`
    pub validation_inputs: Vec<String>,
    /// Fraction of documents held out by a stable hash of their id. Default 0.05 (run_mlm's
    /// `validation_split_percentage`), 0 when `validation_inputs` is given.
    /// `validation_fraction = 0.01`
    pub validation_fraction: Option<f64>,
    /// Salt of the held-out hash: another value holds out another set of documents.
    /// `split_seed = 1`
    pub split_seed: u64,
    /// Drop documents whose text exactly equals an earlier document's.
    /// `deduplicate = true`
    pub deduplicate: bool,
    /// `tokenizer.json`, `vocab.txt`, or a directory holding either (with an optional
    /// `tokenizer_config.json`). `tokenizer = "tokenizers/bert-base-uncased"`
    pub tokenizer: Option<PathBuf>,
    /// Lowercase before WordPiece, for a `vocab.txt` tokenizer (default: its
    /// `tokenizer_config.json`'s `do_lower_case`, else true). `lowercase = false`
    pub lowercase: Option<bool>,
    /// Tokens per sequence, [CLS] and [SEP] included. `max_seq_len = 512`
    pub max_seq_len: usize,
    /// `concat` or `document`. `packing = "document"`
    pub packing: Packing,
    /// Output directory of shards, manifest and tokenizer files. `output = "prepared/pubmed"`
    pub output: Option<PathBuf>,
    /// Sequences per shard (rounded up to a multiple of `row_group_sequences`).
    /// `shard_sequences = 262144`
    pub shard_sequences: usize,
    /// Sequences per Parquet row group, the unit of random access and of the epoch shuffle's
    /// blocks. `row_group_sequences = 1024`
    pub row_group_sequences: usize,
    /// `fail` or `skip` bad records. `on_bad_record = "skip"`
    pub on_bad_record: BadRecordPolicy,
    /// Documents per tokenization batch (memory is bounded by a few batches).
    /// `batch_documents = 2000`
    pub batch_documents: usize,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        Self {
            inputs: Vec::new(),
            format: InputFormat::Auto,
            text_mode: TextMode::Line,
            text_fields: vec!["text".to_string()],
            field_separator: " ".to_string(),
            id_field: None,
            validation_inputs: Vec::new(),
            validation_fraction: None,
            split_seed: 0,
            deduplicate: false,
            tokenizer: None,
            lowercase: None,
            max_seq_len: 128,
            packing: Packing::Concat,
            output: None,
            shard_sequences: 65_536,
            row_group_sequences: 1024,
            on_bad_record: BadRecordPolicy::Fail,
            batch_documents: 1000,
        }
    }
}

/// Longest sequence a prepared corpus may hold (far above any BERT's position table; the
/// model's own `max_position_embeddings` is checked against the manifest by the trainer).
pub const MAX_SEQ_LEN_LIMIT: usize = 65_536;

impl CorpusConfig {
    /// Makes relative paths (inputs, tokenizer, output) relative to `base` (the config file's
    /// directory). Absolute paths are kept.
    pub fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &str| -> String {
            if Path::new(p).is_absolute() {
                p.to_string()
            } else {
                base.join(p).to_string_lossy().into_owned()
            }
        };
        self.inputs = self.inputs.iter().map(|p| join(p)).collect();
        self.validation_inputs = self.validation_inputs.iter().map(|p| join(p)).collect();
        for path in [&mut self.tokenizer, &mut self.output]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The held-out fraction in effect (see `validation_fraction`).
    pub fn effective_validation_fraction(&self) -> f64 {
        self.validation_fraction
            .unwrap_or(if self.validation_inputs.is_empty() {
                0.05
            } else {
                0.0
            })
    }

    /// Checks the keys that do not need the file system. Errors name the key.
    pub fn validate(&self) -> Result<(), CorpusError> {
        let err = |key, message: String| Err(CorpusError::config("corpus", key, message));
        if self.inputs.is_empty() {
            return err(
                "inputs",
                "give at least one input file, glob or directory".into(),
            );
        }
        if self.text_fields.is_empty() {
            return err("text_fields", "give at least one field".into());
        }
        if let Some(fraction) = self.validation_fraction {
            if !(0.0..1.0).contains(&fraction) {
                return err(
                    "validation_fraction",
                    format!("{fraction} is not in [0, 1)"),
                );
            }
            if fraction > 0.0 && !self.validation_inputs.is_empty() {
                return err(
                    "validation_fraction",
                    "give either validation_inputs or a validation_fraction, not both".into(),
                );
            }
        }
        if self.max_seq_len < 3 || self.max_seq_len > MAX_SEQ_LEN_LIMIT {
            return err(
                "max_seq_len",
                format!(
                    "{} is not in [3, {MAX_SEQ_LEN_LIMIT}] ([CLS] and [SEP] take 2 positions)",
                    self.max_seq_len
                ),
            );
        }
        if self.row_group_sequences == 0 {
            return err("row_group_sequences", "must be at least 1".into());
        }
        if self.shard_sequences == 0 {
            return err("shard_sequences", "must be at least 1".into());
        }
        if self.batch_documents == 0 {
            return err("batch_documents", "must be at least 1".into());
        }
        Ok(())
    }

    /// Sequences per shard after rounding up to whole row groups.
    pub fn effective_shard_sequences(&self) -> usize {
        self.shard_sequences.div_ceil(self.row_group_sequences) * self.row_group_sequences
    }

    /// The `output` key, required by `prepare`.
    pub fn output_dir(&self) -> Result<&Path, CorpusError> {
        self.output.as_deref().ok_or_else(|| {
            CorpusError::config("corpus", "output", "missing: where should the shards go?")
        })
    }

    /// The `tokenizer` key, required by `prepare`.
    pub fn tokenizer_path(&self) -> Result<&Path, CorpusError> {
        self.tokenizer.as_deref().ok_or_else(|| {
            CorpusError::config(
                "corpus",
                "tokenizer",
                "missing: give a tokenizer.json / vocab.txt / directory (or make one with `mlm-train vocab train`)",
            )
        })
    }
}

/// The `[vocab]` section: `mlm-train vocab train` trains a WordPiece vocabulary on the
/// training split of `[corpus]`'s inputs with Hugging Face tokenizers' `WordPieceTrainer`.
///
/// ```toml
/// [vocab]
/// vocab_size = 30522
/// output = "tokenizers/pubmed-wordpiece"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VocabConfig {
    /// Vocabulary size, special tokens included. `vocab_size = 30522`
    pub vocab_size: usize,
    /// Lowercase (and strip accents) before splitting, as bert-base-uncased. `lowercase = false`
    pub lowercase: bool,
    /// Minimum frequency of a merged piece (tokenizers' `BertWordPieceTokenizer` default 2).
    /// `min_frequency = 5`
    pub min_frequency: u64,
    /// Special tokens, given the first ids in this order. Must include [PAD], [UNK], [CLS],
    /// [SEP] and [MASK]. `special_tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]`
    pub special_tokens: Vec<String>,
    /// Most distinct characters kept in the initial alphabet (tokenizers' default 1000).
    /// `limit_alphabet = 500`
    pub limit_alphabet: usize,
    /// Directory to write `tokenizer.json`, `vocab.txt` and the Hugging Face configs into.
    /// Default: `[corpus] tokenizer`. `output = "tokenizers/pubmed"`
    pub output: Option<PathBuf>,
    /// Train on at most this many documents of the training split. `max_documents = 1000000`
    pub max_documents: Option<u64>,
}

impl Default for VocabConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30_522,
            lowercase: true,
            min_frequency: 2,
            special_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                .map(String::from)
                .to_vec(),
            limit_alphabet: 1000,
            output: None,
            max_documents: None,
        }
    }
}

impl VocabConfig {
    /// Makes a relative `output` relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(path) = &mut self.output
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
    }

    /// Checks the keys. Errors name the key.
    pub fn validate(&self) -> Result<(), CorpusError> {
        let err = |key, message: String| Err(CorpusError::config("vocab", key, message));
        for required in crate::tokenizer::BERT_SPECIAL_TOKENS {
            if !self.special_tokens.iter().any(|t| t == required) {
                return err("special_tokens", format!("must include {required}"));
            }
        }
        if self.vocab_size <= self.special_tokens.len() {
            return err(
                "vocab_size",
                format!(
                    "{} leaves no room beside the special tokens",
                    self.vocab_size
                ),
            );
        }
        if self.vocab_size > u32::MAX as usize {
            return err("vocab_size", "too large".into());
        }
        Ok(())
    }

    /// The output directory: `[vocab] output`, else `[corpus] tokenizer`.
    pub fn output_dir(&self, corpus: &CorpusConfig) -> Result<PathBuf, CorpusError> {
        self.output
            .clone()
            .or_else(|| corpus.tokenizer.clone())
            .ok_or_else(|| {
                CorpusError::config(
                    "vocab",
                    "output",
                    "missing (and [corpus] tokenizer is not set either)",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_unknown_keys_fail() {
        let c: CorpusConfig = toml::from_str("inputs = [\"a.txt\"]").unwrap();
        assert_eq!(c.max_seq_len, 128);
        assert_eq!(c.effective_validation_fraction(), 0.05);
        c.validate().unwrap();
        let e = toml::from_str::<CorpusConfig>("inputs = [\"a\"]\nmax_seq_lenn = 3").unwrap_err();
        assert!(e.to_string().contains("max_seq_lenn"), "{e}");
        let v: VocabConfig = toml::from_str("vocab_size = 100").unwrap();
        v.validate().unwrap();
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = CorpusConfig {
            inputs: vec!["a".into()],
            ..CorpusConfig::default()
        };
        c.max_seq_len = 2;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_seq_len")
        );
        c.max_seq_len = 16;
        c.validation_fraction = Some(0.1);
        c.validation_inputs = vec!["v".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("validation_fraction")
        );
        c.validation_fraction = None;
        assert_eq!(c.effective_validation_fraction(), 0.0);
        let v = VocabConfig {
            special_tokens: vec!["[PAD]".into()],
            ..VocabConfig::default()
        };
        assert!(v.validate().unwrap_err().to_string().contains("[UNK]"));
    }

    #[test]
    fn paths_resolve_against_the_config_dir() {
        let mut c = CorpusConfig {
            inputs: vec!["data/*.txt".into(), "/abs/x.txt".into()],
            tokenizer: Some("tok".into()),
            output: Some("/out".into()),
            ..CorpusConfig::default()
        };
        c.resolve_paths(Path::new("/cfg"));
        assert_eq!(c.inputs, ["/cfg/data/*.txt", "/abs/x.txt"]);
        assert_eq!(c.tokenizer.as_deref(), Some(Path::new("/cfg/tok")));
        assert_eq!(c.output.as_deref(), Some(Path::new("/out")));
        assert_eq!(
            CorpusConfig {
                shard_sequences: 1000,
                row_group_sequences: 300,
                ..CorpusConfig::default()
            }
            .effective_shard_sequences(),
            1200
        );
    }
}
