//! The `[corpus]` and `[vocab]` sections of the run config. Defaults follow Hugging Face
//! `run_mlm.py` (text column `text`, 5% validation split) and the BERT paper (sequence length
//! 128 for the first 90% of pre-training, a 30,522-token WordPiece vocabulary).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CorpusError;
use crate::fsutil::resolve_path;

mod vocab;

pub use vocab::{VocabConfig, VocabLayout, VocabModel};

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
    /// Masking phrases to match into the shards: set from `[masking] phrases`, `pmi_ngrams`
    /// and `pmi_min_count` by the run config (which refuses it as a `[corpus]` key), so that
    /// they are part of the config key and recorded in the manifest's config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phrases: Option<crate::phrases::PhraseSpec>,
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
            phrases: None,
        }
    }
}

/// Longest sequence a prepared corpus may hold (far above any BERT's position table; the
/// model's own `max_position_embeddings` is checked against the manifest by the trainer).
pub const MAX_SEQ_LEN_LIMIT: usize = 65_536;

/// An invalid `[corpus]` value: `corpus.{key} = {value} {message}`.
fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    message: impl Into<String>,
) -> CorpusError {
    CorpusError::config_value("corpus", key, value, message)
}

impl CorpusConfig {
    /// Makes relative paths (inputs, tokenizer, output) relative to `base` (the config file's
    /// directory), lexically normalised (see [`resolve_path`]). Absolute paths stay absolute.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &String| {
            resolve_path(base, Path::new(p))
                .to_string_lossy()
                .into_owned()
        };
        self.inputs = self.inputs.iter().map(resolve).collect();
        self.validation_inputs = self.validation_inputs.iter().map(resolve).collect();
        for path in [&mut self.tokenizer, &mut self.output]
            .into_iter()
            .flatten()
        {
            *path = resolve_path(base, path);
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

    /// Checks the keys that do not need the file system. Errors name the key and its value.
    pub fn validate(&self) -> Result<(), CorpusError> {
        self.validate_inputs()?;
        self.validate_split()?;
        self.validate_sizes()
    }

    fn validate_inputs(&self) -> Result<(), CorpusError> {
        if self.inputs.is_empty() {
            return Err(invalid(
                "inputs",
                "[]",
                "must name at least one input file, glob or directory",
            ));
        }
        if self.text_fields.is_empty() {
            return Err(invalid("text_fields", "[]", "must name at least one field"));
        }
        Ok(())
    }

    /// Training needs held-out documents, so the split must produce some.
    fn validate_split(&self) -> Result<(), CorpusError> {
        let Some(fraction) = self.validation_fraction else {
            return Ok(());
        };
        // NaN fails `contains` too.
        if !(0.0..1.0).contains(&fraction) {
            return Err(invalid("validation_fraction", fraction, "is not in [0, 1)"));
        }
        if fraction > 0.0 && !self.validation_inputs.is_empty() {
            return Err(invalid(
                "validation_fraction",
                fraction,
                "and corpus.validation_inputs both hold documents out: give one of them",
            ));
        }
        if fraction == 0.0 && self.validation_inputs.is_empty() {
            return Err(invalid(
                "validation_fraction",
                fraction,
                "leaves no held-out documents: set it in (0, 1) or give corpus.validation_inputs",
            ));
        }
        Ok(())
    }

    fn validate_sizes(&self) -> Result<(), CorpusError> {
        if !(3..=MAX_SEQ_LEN_LIMIT).contains(&self.max_seq_len) {
            return Err(invalid(
                "max_seq_len",
                self.max_seq_len,
                format!("is not in [3, {MAX_SEQ_LEN_LIMIT}] ([CLS] and [SEP] take 2 positions)"),
            ));
        }
        for (key, value) in [
            ("row_group_sequences", self.row_group_sequences),
            ("shard_sequences", self.shard_sequences),
            ("batch_documents", self.batch_documents),
        ] {
            if value == 0 {
                return Err(invalid(key, value, "must be >= 1"));
            }
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
            CorpusError::config(
                "corpus",
                "output",
                "is missing: where should the shards go?",
            )
        })
    }

    /// The `tokenizer` key, required by `prepare`.
    pub fn tokenizer_path(&self) -> Result<&Path, CorpusError> {
        self.tokenizer.as_deref().ok_or_else(|| {
            CorpusError::config(
                "corpus",
                "tokenizer",
                "is missing: give a tokenizer.json / vocab.txt / directory (or make one with `mlm-train vocab train`)",
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

    fn corpus_error(edit: impl FnOnce(&mut CorpusConfig)) -> String {
        let mut c = CorpusConfig {
            inputs: vec!["a".into()],
            ..CorpusConfig::default()
        };
        edit(&mut c);
        c.validate()
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn validation_names_the_key_and_value() {
        assert_eq!(
            corpus_error(|c| c.max_seq_len = 2),
            "corpus.max_seq_len = 2 is not in [3, 65536] ([CLS] and [SEP] take 2 positions)"
        );
        assert_eq!(
            corpus_error(|c| c.inputs.clear()),
            "corpus.inputs = [] must name at least one input file, glob or directory"
        );
        assert_eq!(
            corpus_error(|c| c.text_fields.clear()),
            "corpus.text_fields = [] must name at least one field"
        );
        assert_eq!(
            corpus_error(|c| c.validation_fraction = Some(1.0)),
            "corpus.validation_fraction = 1 is not in [0, 1)"
        );
        assert!(
            corpus_error(|c| {
                c.validation_fraction = Some(0.1);
                c.validation_inputs = vec!["v".into()];
            })
            .starts_with("corpus.validation_fraction = 0.1 and corpus.validation_inputs")
        );
        let c = CorpusConfig {
            inputs: vec!["a".into()],
            validation_inputs: vec!["v".into()],
            ..CorpusConfig::default()
        };
        c.validate().unwrap();
        assert_eq!(c.effective_validation_fraction(), 0.0);
    }

    #[test]
    fn every_count_must_be_at_least_one() {
        assert_eq!(
            corpus_error(|c| c.row_group_sequences = 0),
            "corpus.row_group_sequences = 0 must be >= 1"
        );
        assert_eq!(
            corpus_error(|c| c.shard_sequences = 0),
            "corpus.shard_sequences = 0 must be >= 1"
        );
        assert_eq!(
            corpus_error(|c| c.batch_documents = 0),
            "corpus.batch_documents = 0 must be >= 1"
        );
    }

    #[test]
    fn a_split_must_hold_documents_out() {
        assert_eq!(
            corpus_error(|c| c.validation_fraction = Some(0.0)),
            "corpus.validation_fraction = 0 leaves no held-out documents: set it in (0, 1) or give corpus.validation_inputs"
        );
        let explicit = CorpusConfig {
            inputs: vec!["a".into()],
            validation_inputs: vec!["v".into()],
            validation_fraction: Some(0.0),
            ..CorpusConfig::default()
        };
        explicit.validate().unwrap();
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
        // Printed paths read `data/...`, not `configs/../data/...`.
        let mut c = CorpusConfig {
            inputs: vec!["../data/a.txt".into()],
            validation_inputs: vec!["./valid.txt".into()],
            output: Some("../prepared/x".into()),
            ..CorpusConfig::default()
        };
        c.resolve_paths(Path::new("configs"));
        assert_eq!(c.inputs, ["data/a.txt"]);
        assert_eq!(c.validation_inputs, ["configs/valid.txt"]);
        assert_eq!(c.output.as_deref(), Some(Path::new("prepared/x")));
        let mut v = VocabConfig {
            output: Some("../tokenizers/t".into()),
            ..VocabConfig::default()
        };
        v.resolve_paths(Path::new("configs"));
        assert_eq!(v.output.as_deref(), Some(Path::new("tokenizers/t")));
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
