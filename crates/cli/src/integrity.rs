//! Integrity checks of the directories commands load (checkpoints, exports, prepared
//! corpora): sizes and headers by default, every byte hashed with `--verify`. A damaged
//! file is an error naming it; a checkpoint written before integrity manifests loads with a
//! note.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use mlm_integrity::{Level, Verified};

/// The `--verify` flag of commands that load a checkpoint or a corpus.
#[derive(Debug, Clone, Copy, Args)]
pub struct VerifyFlag {
    /// Hash every byte of the checkpoint (or corpus) against its integrity.json before using
    /// it. Without it only file sizes, headers and small files are checked.
    #[arg(long)]
    pub verify: bool,
}

impl VerifyFlag {
    fn level(self) -> Level {
        if self.verify {
            Level::Full
        } else {
            Level::Fast
        }
    }
}

/// Checks a checkpoint or model directory; `what` names it in messages (`--checkpoint`).
pub fn check_model_dir(dir: &Path, flag: VerifyFlag) -> Result<()> {
    let verified = mlm_integrity::verify(dir, flag.level())
        .with_context(|| format!("checkpoint {} is damaged", dir.display()))?;
    // Hugging Face model directories from elsewhere have no manifest and need no note.
    if verified == Verified::NoManifest && dir.join("trainer_state.json").is_file() {
        eprintln!(
            "note: {} has no integrity.json (written by an earlier version): its files were not \
             checked",
            dir.display()
        );
    }
    Ok(())
}

/// Checks a prepared corpus directory (shards named with their row group when damaged).
pub fn check_corpus_dir(dir: &Path, flag: VerifyFlag) -> Result<()> {
    let verified = mlm_integrity::verify(dir, flag.level())
        .with_context(|| format!("prepared corpus {} is damaged", dir.display()))?;
    if verified == Verified::NoManifest && dir.join("manifest.json").is_file() {
        eprintln!(
            "note: {} has no integrity.json (prepared by an earlier version): its files were not \
             checked",
            dir.display()
        );
    }
    Ok(())
}
