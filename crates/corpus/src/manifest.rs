//! `manifest.json`: what a prepared corpus holds. Written last, atomically: a directory
//! without it is an unfinished prepare and is never read as a corpus.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{CorpusConfig, Packing};
use crate::error::CorpusError;
use crate::input::ResolvedFormat;
use crate::shard::{ShardInfo, TokenDtype};
use crate::split::Split;
use crate::tokenizer::{SpecialIds, SpecialTokens, TokenizerModel};

pub const MANIFEST_FILE: &str = "manifest.json";
/// Bumped when the layout of shards or manifest changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// One split's shards and counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// Sequences (rows) over all shards.
    pub sequences: u64,
    /// Tokens over all shards, the cls / sep wraps and separators included.
    pub tokens: u64,
    /// Tokens that came from documents (no cls / sep); each appears exactly once.
    pub document_tokens: u64,
    /// Documents packed.
    pub documents: u64,
    pub shards: Vec<ShardInfo>,
}

/// Document counts of the whole prepare.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentCounts {
    /// Records read from the inputs (documents, dropped and bad records).
    pub records: u64,
    /// Documents packed into the train / validation splits.
    pub train: u64,
    pub validation: u64,
    /// Records not packed, by reason (`no_abstract`, `superseded`, `deleted`, `duplicate`,
    /// `in_validation`, `empty`, `book_article`, and the bad-record kinds under
    /// `on_bad_record = "skip"`: `invalid_utf8`, `malformed_json`, `missing_field`,
    /// `malformed_xml`, `malformed_parquet`, `truncated_file`, `unreadable_file`).
    pub dropped: BTreeMap<String, u64>,
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    pub path: String,
    pub format: ResolvedFormat,
    /// From `validation_inputs`.
    pub held_out: bool,
    pub bytes: u64,
    pub records: u64,
    pub documents: u64,
    pub dropped: u64,
}

/// How documents were split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPolicy {
    /// `hash` (held out by a stable hash of the id) or `inputs` (`validation_inputs`).
    pub method: String,
    pub validation_fraction: f64,
    pub split_seed: u64,
    pub deduplicate: bool,
}

/// The manifest of a prepared corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub created_by: String,
    /// `DomainTokenizer::fingerprint` of the tokenizer the corpus was tokenized with.
    pub tokenizer_fingerprint: String,
    /// The tokenizer's model: `wordpiece`, `bpe` or `unigram` (or `wordlevel`); absent in
    /// manifests written before it was recorded.
    #[serde(default)]
    pub tokenizer_model: Option<TokenizerModel>,
    /// Size of the id space (largest id + 1, added tokens included): the model's
    /// `vocab_size`.
    pub vocab_size: u32,
    /// Ids of the tokenizer's cls / sep (the wrap of every sequence and the separator of
    /// documents), pad, mask and unk, and every special id.
    pub special_ids: SpecialIds,
    /// Their strings (`[CLS]`... for BERT, `<s>`... for RoBERTa / XLM-R).
    pub special_tokens: SpecialTokens,
    pub do_lower_case: bool,
    /// Tokenizer files written into the directory (`tokenizer.json`, the family's
    /// `vocab.txt` or `vocab.json` + `merges.txt`, `tokenizer_config.json`,
    /// `special_tokens_map.json`).
    pub tokenizer_files: Vec<String>,
    /// What `vocab extend` added to a base vocabulary, when the tokenizer is an extended one
    /// (its `vocab-extension.json`, also among `tokenizer_files`): the trainer grows a
    /// checkpoint of the base vocabulary with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_extension: Option<crate::tokenizer::VocabExtension>,
    /// Tokens per sequence at most, cls and sep included.
    pub max_seq_len: usize,
    pub packing: Packing,
    /// Element type of `input_ids`.
    pub token_dtype: TokenDtype,
    /// Rows per Parquet row group (the last of a split may be shorter); shards hold whole
    /// row groups, so sequence i is in row group i / row_group_sequences of the split.
    pub row_group_sequences: usize,
    pub train: SplitManifest,
    pub validation: SplitManifest,
    pub documents: DocumentCounts,
    pub split: SplitPolicy,
    pub sources: Vec<SourceEntry>,
    /// Hash of everything that determines the output (config, tokenizer, input files'
    /// paths, sizes and modification times): a rerun with the same key is a no-op.
    pub config_key: String,
    /// The resolved `[corpus]` section.
    pub config: CorpusConfig,
    /// The masking phrases matched into the shards' `unit_start` column, when the corpus was
    /// prepared for `[masking] unit = "phrase"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrases: Option<crate::phrases::PhrasesManifest>,
}

impl Manifest {
    pub fn split(&self, split: Split) -> &SplitManifest {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
        }
    }

    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self, CorpusError> {
        let path = dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Err(CorpusError::prepared(
                dir,
                "no manifest.json: `mlm-train prepare` has not finished here (rerun it to complete it)",
            ));
        }
        let manifest: Manifest = crate::fsutil::read_json(&path)?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(CorpusError::prepared(
                dir,
                format!(
                    "manifest format {} is not {FORMAT_VERSION}, which this build reads; rerun `mlm-train prepare`",
                    manifest.format_version
                ),
            ));
        }
        Ok(manifest)
    }
}
