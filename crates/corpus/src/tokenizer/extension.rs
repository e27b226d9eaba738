//! `vocab-extension.json`: what `mlm-train vocab extend` added to a base vocabulary, written
//! beside the extended tokenizer files, copied by `prepare` into the prepared directory (and
//! embedded in its manifest), so that the trainer can grow a checkpoint of the base
//! vocabulary to the extended one and initialise every new row from the base pieces of its
//! token (docs/vocabulary.md).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::CorpusError;
use crate::fsutil::{read_json, write_json};

/// File name of the sidecar, beside `tokenizer.json`.
pub const EXTENSION_FILE: &str = "vocab-extension.json";

/// Bumped when the sidecar's layout changes incompatibly.
pub const EXTENSION_FORMAT: u32 = 1;

/// How a new vocabulary entry came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddedKind {
    /// A corpus word the base vocabulary split into several pieces.
    Word,
    /// Byte-level BPE only: the left part of a word's merge chain (the first j pieces of the
    /// word joined), a token the new merges produce on the way to the word.
    MergeStep,
}

/// One new vocabulary entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    /// Its id in the extended vocabulary.
    pub id: u32,
    /// The token as the model vocabulary holds it (WordPiece: the normalised word;
    /// byte-level BPE: its byte-level form, `Ġ` for a leading space).
    pub token: String,
    pub kind: AddedKind,
    /// The ids the base tokenizer splits the token into: the trainer initialises the new
    /// row (embedding and output bias) as the mean of these rows.
    pub base_ids: Vec<u32>,
    /// Occurrences of the word in the training split (0 for a merge step).
    pub count: u64,
    /// The base token whose id was reused (WordPiece `[unusedN]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

/// The sidecar: the base vocabulary and every entry added to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VocabExtension {
    pub format_version: u32,
    /// `DomainTokenizer::fingerprint` of the base tokenizer.
    pub base_fingerprint: String,
    /// The base vocabulary's size (largest id + 1): the embedding rows of a base checkpoint.
    pub base_vocab_size: u32,
    /// How candidate words were ranked.
    pub criterion: String,
    /// The new entries, by ascending id for appended ones after the reused slots.
    pub tokens: Vec<NewToken>,
}

impl VocabExtension {
    /// Reads `dir/vocab-extension.json` when there is one.
    pub fn read_in(dir: &Path) -> Result<Option<Self>, CorpusError> {
        let path = dir.join(EXTENSION_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let extension: Self = read_json(&path)?;
        if extension.format_version != EXTENSION_FORMAT {
            let message = format!(
                "format_version {} is not {EXTENSION_FORMAT}, which this build reads",
                extension.format_version
            );
            return Err(CorpusError::tokenizer(Some(&path), message, None));
        }
        Ok(Some(extension))
    }

    /// Writes `dir/vocab-extension.json`.
    pub fn write_in(&self, dir: &Path) -> Result<(), CorpusError> {
        write_json(&dir.join(EXTENSION_FILE), self)
    }

    /// Ids below the base size that now hold another token (reused `[unusedN]` slots).
    pub fn reused(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| t.id < self.base_vocab_size)
            .count()
    }

    /// Entries appended after the base vocabulary.
    pub fn appended(&self) -> usize {
        self.tokens.len() - self.reused()
    }
}
