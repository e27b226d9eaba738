//! A checkpoint exported as a Hugging Face model directory that `transformers` loads with no
//! conversion (`AutoModelForMaskedLM`, `pipeline("fill-mask")`, fine-tuning), published whole
//! or not at all: written into a hidden directory beside the destination, with its
//! `integrity.json`, then renamed onto it (`mlm_durable::replace_dir`: synced, a previous
//! export moved aside, renamed, the parent synced, the previous one removed). Only a free
//! name, an empty directory or (`--overwrite`) an earlier export holding nothing else is
//! written over ([`check_destination`]).

use std::path::{Path, PathBuf};

use mlm_corpus::{CorpusError, DomainTokenizer};
use mlm_trainer::model::{
    ExportOptions, LoadedModel, ModelError, export_hf_model_with, load_model_dir,
};

/// Why an export failed; each names the directory or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("loading {}", dir.display())]
    Load {
        dir: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("loading the tokenizer of {}", dir.display())]
    Tokenizer {
        dir: PathBuf,
        #[source]
        source: CorpusError,
    },
    #[error(
        "{}: its tokenizer has {tokens} tokens but config.json's vocab_size is {vocab_size}: \
         the tokenizer does not belong to this model",
        dir.display()
    )]
    TokenizerTooLarge {
        dir: PathBuf,
        tokens: i64,
        vocab_size: i64,
    },
    #[error("--out {} names no directory", out.display())]
    NoDirectoryName { out: PathBuf },
    #[error("--out {} exists and is not a directory", out.display())]
    NotADirectory { out: PathBuf },
    #[error("--out {} holds an earlier export; pass --overwrite to replace it", out.display())]
    EarlierExport { out: PathBuf },
    #[error(
        "--out {} is not empty and {reason}; an export never removes what it did not write: \
         choose a new or empty directory",
        out.display()
    )]
    NotOurs { out: PathBuf, reason: String },
    #[error("writing the model to {}", dir.display())]
    WriteModel {
        dir: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("writing the tokenizer to {}", dir.display())]
    WriteTokenizer {
        dir: PathBuf,
        #[source]
        source: CorpusError,
    },
    #[error("writing the integrity manifest of {}", out.display())]
    Integrity {
        out: PathBuf,
        #[source]
        source: mlm_integrity::IntegrityError,
    },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("publishing the export as {}", out.display())]
    Publish {
        out: PathBuf,
        #[source]
        source: mlm_durable::DurableError,
    },
}

/// A model directory with its tokenizer, loaded on the CPU and checked to belong together.
pub struct ModelWithTokenizer {
    pub model: LoadedModel,
    pub tokenizer: DomainTokenizer,
}

/// Loads the model and tokenizer of a checkpoint or Hugging Face directory. A tokenizer with
/// ids the model has no row for is refused (else only texts that happen to use them fail).
pub fn load_with_tokenizer(dir: &Path) -> Result<ModelWithTokenizer, ExportError> {
    let model = load_model_dir(dir, tch::Device::Cpu).map_err(|source| ExportError::Load {
        dir: dir.to_path_buf(),
        source,
    })?;
    let tokenizer = DomainTokenizer::load(dir, None).map_err(|source| ExportError::Tokenizer {
        dir: dir.to_path_buf(),
        source,
    })?;
    let tokens = i64::from(tokenizer.vocab_size());
    if tokens > model.config.vocab_size {
        return Err(ExportError::TokenizerTooLarge {
            dir: dir.to_path_buf(),
            tokens,
            vocab_size: model.config.vocab_size,
        });
    }
    Ok(ModelWithTokenizer { model, tokenizer })
}

/// Whether an export may be written at `out`: a free name, an empty directory, or (with
/// `overwrite`) an earlier export that holds nothing but what it listed in its
/// `integrity.json`. Anything else is refused, so that no file the tool did not write is
/// ever removed (transformers' `save_pretrained` deletes nothing either).
pub fn check_destination(out: &Path, overwrite: bool) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        what: "reading",
        path: out.to_path_buf(),
        source,
    };
    let metadata = match std::fs::symlink_metadata(out) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if !metadata.is_dir() {
        return Err(ExportError::NotADirectory {
            out: out.to_path_buf(),
        });
    }
    if std::fs::read_dir(out).map_err(io)?.next().is_none() {
        return Ok(());
    }
    let not_ours = |reason: String| ExportError::NotOurs {
        out: out.to_path_buf(),
        reason,
    };
    let manifest = match mlm_integrity::Integrity::read_unchecked(out) {
        Ok(Some(manifest)) => manifest,
        Ok(None) => return Err(not_ours("holds no integrity.json of an export".into())),
        Err(e) => return Err(not_ours(format!("its integrity.json is unreadable ({e})"))),
    };
    match manifest.kind.as_deref() {
        Some(mlm_integrity::KIND_EXPORT) => {}
        Some(kind) => return Err(not_ours(format!("is a {kind} directory, not an export"))),
        None => {
            return Err(not_ours(
                "does not say it is an export (integrity.json)".into(),
            ));
        }
    }
    let present = mlm_integrity::files_under(out).map_err(|e| not_ours(e.to_string()))?;
    let foreign: Vec<&String> = present.iter().filter(|n| !manifest.lists(n)).collect();
    if !foreign.is_empty() {
        return Err(not_ours(format!(
            "holds files the export did not write: {}",
            listed(&foreign)
        )));
    }
    if overwrite {
        Ok(())
    } else {
        Err(ExportError::EarlierExport {
            out: out.to_path_buf(),
        })
    }
}

/// The first few names, and how many more.
fn listed(names: &[&String]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<&str> = names.iter().take(SHOWN).map(|n| n.as_str()).collect();
    match names.len().saturating_sub(SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Exports `loaded` to `out`, whole or not at all; `out` is checked first
/// ([`check_destination`]).
pub fn export_checkpoint(
    loaded: &ModelWithTokenizer,
    out: &Path,
    options: ExportOptions,
    overwrite: bool,
) -> Result<(), ExportError> {
    check_destination(out, overwrite)?;
    let staging = Staging::beside(out)?;
    let model = &loaded.model;
    export_hf_model_with(&model.vs, &model.config, &staging.temp, options).map_err(|source| {
        ExportError::WriteModel {
            dir: staging.temp.clone(),
            source,
        }
    })?;
    mlm_faults::fault_point("export.mid-export");
    let positions = model.config.max_sequence_length() as usize;
    loaded
        .tokenizer
        .write_hf_files(&staging.temp, positions)
        .map_err(|source| ExportError::WriteTokenizer {
            dir: staging.temp.clone(),
            source,
        })?;
    staging.commit()
}

/// An export written into a hidden directory beside `--out` and renamed onto it once
/// complete (with its `integrity.json`), so that `--out` is a whole export or absent
/// whenever the process dies. Leftovers of killed exports are removed first.
struct Staging {
    out: PathBuf,
    temp: PathBuf,
    aside: PathBuf,
}

impl Staging {
    fn beside(out: &Path) -> Result<Self, ExportError> {
        let name = out
            .file_name()
            .ok_or_else(|| ExportError::NoDirectoryName {
                out: out.to_path_buf(),
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExportError::Io { what, path, source }
        };
        std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
        let staging = Self {
            out: out.to_path_buf(),
            temp: parent.join(format!(".{name}.tmp-export")),
            aside: parent.join(format!(".{name}.old-export")),
        };
        // Only our own hidden staging names, left by a killed export, are removed.
        for leftover in [&staging.temp, &staging.aside] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover).map_err(io("removing", leftover))?;
            }
        }
        std::fs::create_dir(&staging.temp).map_err(io("creating", &staging.temp))?;
        Ok(staging)
    }

    /// Writes `integrity.json`, then publishes the export durably over `--out`.
    fn commit(self) -> Result<(), ExportError> {
        mlm_integrity::write_for_dir(&self.temp, mlm_integrity::KIND_EXPORT).map_err(|source| {
            ExportError::Integrity {
                out: self.out.clone(),
                source,
            }
        })?;
        mlm_faults::fault_point("export.before-rename");
        mlm_durable::replace_dir(&self.temp, &self.out, &self.aside).map_err(|source| {
            ExportError::Publish {
                out: self.out.clone(),
                source,
            }
        })
    }
}
