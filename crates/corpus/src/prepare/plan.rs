//! The first stage of `prepare`: everything that decides the output, settled before anything
//! is written.

use std::path::PathBuf;

use crate::config::CorpusConfig;
use crate::error::CorpusError;
use crate::input::{InputFile, ResolvedFormat};
use crate::manifest::FORMAT_VERSION;
use crate::shard::TokenDtype;
use crate::stream::corpus_files;
use crate::tokenizer::DomainTokenizer;

/// A validated config with its tokenizer, its input files and their config key.
pub(super) struct Plan<'c> {
    pub config: &'c CorpusConfig,
    pub out: PathBuf,
    pub tokenizer: DomainTokenizer,
    pub files: Vec<InputFile>,
    /// Hash of everything that decides the output (see `Manifest::config_key`).
    pub key: String,
}

impl<'c> Plan<'c> {
    pub fn new(config: &'c CorpusConfig) -> Result<Self, CorpusError> {
        config.validate()?;
        let out = config.output_dir()?.to_path_buf();
        let tokenizer = DomainTokenizer::load(config.tokenizer_path()?, config.lowercase)?;
        check_fits_tokenizer(config, &tokenizer)?;
        let files = corpus_files(config)?;
        let phrase_source = match &config.phrases {
            Some(spec) => super::phrase_stage::source_digest(spec)?,
            None => None,
        };
        let key = config_key(config, &tokenizer, &files, phrase_source);
        Ok(Self {
            config,
            out,
            tokenizer,
            files,
            key,
        })
    }

    /// The element type of `input_ids` in the shards.
    pub fn dtype(&self) -> TokenDtype {
        TokenDtype::for_vocab(self.tokenizer.vocab_size())
    }

    /// Bytes the document stream will read: MEDLINE files are read twice (versions first).
    pub fn bytes_total(&self) -> u64 {
        let passes = |f: &InputFile| {
            if f.format == ResolvedFormat::Medline {
                2
            } else {
                1
            }
        };
        self.files.iter().map(|f| passes(f) * f.bytes).sum()
    }
}

/// The model has no position embeddings beyond the tokenizer's `model_max_length`.
fn check_fits_tokenizer(
    config: &CorpusConfig,
    tokenizer: &DomainTokenizer,
) -> Result<(), CorpusError> {
    match tokenizer.model_max_length() {
        Some(limit) if config.max_seq_len > limit => Err(CorpusError::config_value(
            "corpus",
            "max_seq_len",
            config.max_seq_len,
            format!(
                "is larger than the tokenizer's model_max_length {limit} (the model has no position embeddings beyond it)"
            ),
        )),
        _ => Ok(()),
    }
}

/// Hash of the config (less what only changes speed), the tokenizer, the input files'
/// paths, sizes and modification times, and the phrase file's content.
fn config_key(
    config: &CorpusConfig,
    tokenizer: &DomainTokenizer,
    files: &[InputFile],
    phrase_source: Option<String>,
) -> String {
    let mut keyed = config.clone();
    keyed.batch_documents = 0; // only changes speed
    let inputs: Vec<serde_json::Value> = files
        .iter()
        .map(|f| serde_json::json!([f.path, f.bytes, modified_nanos(f), f.held_out]))
        .collect();
    let mut doc = serde_json::json!({
        "format_version": FORMAT_VERSION,
        "config": keyed,
        "tokenizer": tokenizer.fingerprint(),
        "inputs": inputs,
    });
    if let Some(digest) = phrase_source {
        doc["phrase_source"] = digest.into();
    }
    format!(
        "sha256:{}",
        crate::hash::sha256_hex(doc.to_string().as_bytes())
    )
}

/// The file's modification time in nanoseconds since the epoch, as a string (None where the
/// file system does not tell).
fn modified_nanos(file: &InputFile) -> Option<String> {
    std::fs::metadata(&file.path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().to_string())
}
