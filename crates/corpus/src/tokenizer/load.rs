//! Finding a tokenizer's files and building the Hugging Face tokenizer from them.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::bert::bert_wordpiece_tokenizer;
use super::hf_config::HfTokenizerConfig;
use super::roberta::roberta_bpe_tokenizer;
use crate::error::CorpusError;

/// The files a tokenizer is built from, in the order a directory is searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerFiles {
    /// `tokenizer.json`: any model, loaded as it is.
    Json(PathBuf),
    /// A WordPiece `vocab.txt` (BERT).
    VocabTxt(PathBuf),
    /// A byte-level BPE `vocab.json` + `merges.txt` beside it (RoBERTa, GPT-2 style).
    VocabJson { vocab: PathBuf, merges: PathBuf },
}

impl TokenizerFiles {
    /// The tokenizer files of `dir`: `tokenizer.json`, else `vocab.txt`, else `vocab.json`
    /// with `merges.txt`.
    pub fn in_dir(dir: &Path) -> Option<Self> {
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        file("tokenizer.json")
            .map(Self::Json)
            .or_else(|| file("vocab.txt").map(Self::VocabTxt))
            .or_else(|| {
                Some(Self::VocabJson {
                    vocab: file("vocab.json")?,
                    merges: file("merges.txt")?,
                })
            })
    }

    /// The files of `path` (a file or a directory) and the directory of their configs.
    pub fn find(path: &Path) -> Result<(Self, PathBuf), CorpusError> {
        if path.is_dir() {
            let files = Self::in_dir(path).ok_or_else(|| {
                CorpusError::tokenizer(
                    Some(path),
                    "the directory holds no tokenizer.json, vocab.txt, or vocab.json with merges.txt",
                    None,
                )
            })?;
            return Ok((files, path.to_path_buf()));
        }
        if !path.is_file() {
            return Err(CorpusError::tokenizer(
                Some(path),
                "no such file or directory",
                None,
            ));
        }
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let beside = |name: &str| {
            Some(dir.join(name)).filter(|p| p.is_file()).ok_or_else(|| {
                CorpusError::tokenizer(Some(path), format!("has no {name} beside it"), None)
            })
        };
        let files = match path.file_name().and_then(|n| n.to_str()) {
            Some("vocab.json") => Self::VocabJson {
                vocab: path.to_path_buf(),
                merges: beside("merges.txt")?,
            },
            Some("merges.txt") => Self::VocabJson {
                vocab: beside("vocab.json")?,
                merges: path.to_path_buf(),
            },
            _ if path.extension().is_some_and(|e| e == "json") => Self::Json(path.to_path_buf()),
            _ => Self::VocabTxt(path.to_path_buf()),
        };
        Ok((files, dir))
    }

    /// The file that names the tokenizer in messages.
    pub fn main_file(&self) -> &Path {
        match self {
            Self::Json(p) | Self::VocabTxt(p) => p,
            Self::VocabJson { vocab, .. } => vocab,
        }
    }

    /// Builds the tokenizer. `lowercase` applies to a `vocab.txt` (default: the config's
    /// `do_lower_case`, else true).
    pub fn build(
        &self,
        config: &HfTokenizerConfig,
        lowercase: Option<bool>,
    ) -> Result<Tokenizer, CorpusError> {
        match self {
            Self::Json(file) => read_json(file),
            Self::VocabTxt(file) => {
                let lower = lowercase.or(config.do_lower_case).unwrap_or(true);
                bert_wordpiece_tokenizer(file, lower)
            }
            Self::VocabJson { vocab, merges } => roberta_bpe_tokenizer(vocab, merges, config),
        }
    }
}

fn read_json(file: &Path) -> Result<Tokenizer, CorpusError> {
    let mut t = Tokenizer::from_file(file)
        .map_err(|e| CorpusError::tokenizer(Some(file), "not a valid tokenizer.json", Some(e)))?;
    // Packing cuts sequences itself: a truncation or padding setting in the file would
    // silently cut documents.
    t.with_truncation(None)
        .map_err(|e| CorpusError::tokenizer(Some(file), "cannot disable truncation", Some(e)))?;
    t.with_padding(None);
    Ok(t)
}
