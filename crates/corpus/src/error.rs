//! Typed errors of the corpus pipeline. Every error names the file and, for record-level
//! problems, the line, record or row, so a user can find the offending input.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A boxed error source (tokenizers' own error type is already boxed this way).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What is wrong with one input record. The snake_case name is the key under which
/// `on_bad_record = "skip"` counts it in the manifest's `documents.dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordKind {
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A JSONL line that is not a JSON object.
    MalformedJson,
    /// A configured text or id field that is absent, null or not a string / integer.
    MissingField,
    /// A MEDLINE record that is not well-formed XML or lacks its PMID.
    MalformedXml,
    /// A Parquet file or row that cannot be decoded.
    MalformedParquet,
    /// A read error part-way through a file (a truncated gzip stream, an I/O error): the
    /// rest of that file is lost.
    TruncatedFile,
    /// A file that cannot be opened.
    UnreadableFile,
}

impl BadRecordKind {
    /// The manifest key of this kind (`invalid_utf8`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::MissingField => "missing_field",
            Self::MalformedXml => "malformed_xml",
            Self::MalformedParquet => "malformed_parquet",
            Self::TruncatedFile => "truncated_file",
            Self::UnreadableFile => "unreadable_file",
        }
    }
}

/// Errors of mlm-corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config key has a value that cannot work: `corpus.max_seq_len = 2 is not in ...`, or
    /// without a value `corpus.output is missing: ...`.
    #[error("{section}.{key}{shown} {message}", shown = value.as_ref().map(|v| format!(" = {v}")).unwrap_or_default())]
    Config {
        section: &'static str,
        key: &'static str,
        /// The offending value as the config spells it; None for a missing key.
        value: Option<String>,
        message: String,
    },
    /// An input pattern matched no file.
    #[error("input `{pattern}` matches no file")]
    NoInputs { pattern: String },
    /// A bad input record under `on_bad_record = "fail"`.
    #[error("{path}: {location}: {kind_name}: {message}", kind_name = kind.as_str())]
    BadRecord {
        path: PathBuf,
        /// `line 12`, `record 3 (line 40)`, `row 7`...
        location: String,
        kind: BadRecordKind,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The tokenizer cannot be loaded, built, trained or used.
    #[error("tokenizer {path}: {message}", path = path.as_ref().map_or_else(|| "(in memory)".to_string(), |p| p.display().to_string()))]
    Tokenizer {
        path: Option<PathBuf>,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A JSON file (manifest, state, tokenizer config) cannot be parsed or written.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Parquet reading or writing failed.
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow array building or casting failed.
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// No document survived reading and filtering.
    #[error("empty corpus: {message}")]
    EmptyCorpus { message: String },
    /// A prepared corpus directory is missing, incomplete or inconsistent.
    #[error("prepared corpus {dir}: {message}")]
    Prepared { dir: PathBuf, message: String },
    /// A shard of a prepared corpus lacks a column `prepare` writes, or holds it with another
    /// type (a file not written by `prepare`, or rewritten since).
    #[error(
        "prepared shard {path}: column `{column}` is {found}, expected {expected}: not a shard \
         `mlm-train prepare` wrote (rerun it)",
        found = found.as_deref().unwrap_or("missing")
    )]
    ShardSchema {
        path: PathBuf,
        column: &'static str,
        /// The Arrow type `prepare` writes, as Arrow prints it (`List(non-null Boolean)`).
        expected: String,
        /// The column's type in the shard; None when the column is missing.
        found: Option<String>,
    },
    /// The model's tokenizer is not the one the corpus was tokenized with.
    #[error(
        "tokenizer fingerprint {found} does not match the prepared corpus {dir} ({expected}): \
         the corpus was tokenized with another tokenizer; rerun `mlm-train prepare`"
    )]
    FingerprintMismatch {
        dir: PathBuf,
        expected: String,
        found: String,
    },
    /// `SplitReader::get` past the end.
    #[error("sequence {index} is out of range: the split has {len} sequences")]
    OutOfRange { index: u64, len: u64 },
    /// A prepare stopped on request before it finished (used by tests of resume).
    /// A file's size or hash differs from the directory's `integrity.json`, or the manifest
    /// could not be written (the message names the file).
    #[error(transparent)]
    Integrity(mlm_integrity::IntegrityError),
    #[error("prepare stopped after {shards} shards on request; rerun it to finish")]
    Interrupted { shards: usize },
    /// A worker thread panicked (a bug, reported rather than propagated as a panic).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CorpusError {
    /// A failed durable write (`mlm_durable`) as the [`CorpusError::Io`] it names:
    /// `cannot sync <path>: ...`. A function, not a `From` impl: a second `From` would leave
    /// the error type of `?` in closures ambiguous.
    pub(crate) fn durable(error: mlm_durable::DurableError) -> Self {
        use mlm_durable::Operation;
        let (operation, path, source) = error.into_parts();
        let action = match operation {
            Operation::Create => "cannot create",
            Operation::Write => "cannot write",
            Operation::Sync => "cannot sync",
            Operation::List => "cannot list",
            Operation::Rename => "cannot rename into place",
            Operation::MoveAside => "cannot move aside",
            Operation::Remove => "cannot remove",
        };
        Self::io(action, path, source)
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A key that is missing or wrong as a whole: `{section}.{key} {message}`.
    pub(crate) fn config(
        section: &'static str,
        key: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Config {
            section,
            key,
            value: None,
            message: message.into(),
        }
    }

    /// A key whose value cannot work: `{section}.{key} = {value} {message}`.
    pub(crate) fn config_value(
        section: &'static str,
        key: &'static str,
        value: impl std::fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        Self::Config {
            section,
            key,
            value: Some(value.to_string()),
            message: message.into(),
        }
    }

    pub(crate) fn tokenizer(
        path: Option<&std::path::Path>,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Self::Tokenizer {
            path: path.map(std::path::Path::to_path_buf),
            message: message.into(),
            source,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Self::Json {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Self::Parquet {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn prepared(dir: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Prepared {
            dir: dir.into(),
            message: message.into(),
        }
    }
}
