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

/// Checks a checkpoint or model directory (`eval`, `export`, `fill-mask`, `inspect`).
pub fn check_model_dir(dir: &Path, flag: VerifyFlag) -> Result<()> {
    // Hugging Face model directories from elsewhere have no manifest and need no note.
    check_dir(dir, flag, "checkpoint", "trainer_state.json", "written")
}

/// Checks a prepared corpus directory (shards named with their row group when damaged).
pub fn check_corpus_dir(dir: &Path, flag: VerifyFlag) -> Result<()> {
    check_dir(dir, flag, "prepared corpus", "manifest.json", "prepared")
}

/// Verifies `dir` against its integrity.json; a directory that has `marker` (so is ours) but
/// no manifest was made by an earlier version: a note says its files were not checked.
fn check_dir(dir: &Path, flag: VerifyFlag, what: &str, marker: &str, made: &str) -> Result<()> {
    let verified = mlm_integrity::verify(dir, flag.level())
        .with_context(|| format!("{what} {} is damaged", dir.display()))?;
    if verified == Verified::NoManifest && dir.join(marker).is_file() {
        eprintln!(
            "note: {} has no integrity.json ({made} by an earlier version): its files were not \
             checked",
            dir.display()
        );
    }
    Ok(())
}
