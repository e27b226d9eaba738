//! The output directory of `prepare`: a finished prepare of the same config key is reused, an
//! unfinished one is resumed, anything else is cleaned away; `manifest.json` is written last.

use std::path::Path;

use super::Outcome;
use super::plan::Plan;
use super::state::{self, PrepareState, STATE_FILE};
use crate::error::CorpusError;
use crate::fsutil::{json_text, write_atomic};
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::progress::Observer;
use mlm_faults::fault_point;

/// Creates the directory; returns its manifest when it already holds this exact prepare.
/// A manifest of another prepare is removed first, so that an interruption from here on
/// leaves a directory nobody takes for complete.
pub(super) fn reuse_finished(
    plan: &Plan<'_>,
    observer: &dyn Observer,
) -> Result<Option<Manifest>, CorpusError> {
    let out = &plan.out;
    std::fs::create_dir_all(out).map_err(|e| CorpusError::io("cannot create", out, e))?;
    let manifest_path = out.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Ok(None);
    }
    if let Ok(manifest) = Manifest::read(out)
        && manifest.config_key == plan.key
    {
        return Ok(Some(manifest));
    }
    remove(&manifest_path)?;
    observer
        .warning("the output directory holds a prepare of another config or input; rebuilding it");
    Ok(None)
}

/// Where packing starts, and how the prepare will have ended.
pub(super) struct Start {
    pub state: PrepareState,
    pub outcome: Outcome,
}

/// Resumes the unfinished prepare of this config key (its intact shards are kept) or starts
/// afresh; every other prepare output in the directory is deleted.
pub(super) fn resume_or_clean(
    plan: &Plan<'_>,
    observer: &dyn Observer,
) -> Result<Start, CorpusError> {
    let Some(state) = PrepareState::load_matching(&plan.out, &plan.key) else {
        state::clean(&plan.out, &[])?;
        return Ok(Start {
            state: PrepareState::new(plan.key.clone()),
            outcome: Outcome::Prepared,
        });
    };
    let keep: Vec<&str> = state
        .shards()
        .map(|s| s.file.as_str())
        .chain([STATE_FILE])
        .collect();
    state::clean(&plan.out, &keep)?;
    let shards_kept = state.shard_count();
    if shards_kept > 0 {
        observer.warning(&format!(
            "resuming an unfinished prepare: {shards_kept} finished shards kept"
        ));
    }
    Ok(Start {
        state,
        outcome: Outcome::Resumed { shards_kept },
    })
}

/// The slow-tokenizer files of every family, and the sidecar of an extended vocabulary: one
/// that this tokenizer does not write is a leftover of a prepare with another tokenizer, and
/// would contradict `tokenizer.json`.
const FAMILY_FILES: [&str; 4] = [
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    crate::tokenizer::EXTENSION_FILE,
];

/// Writes the Hugging Face tokenizer files beside the shards; returns their names.
pub(super) fn write_tokenizer_files(plan: &Plan<'_>) -> Result<Vec<String>, CorpusError> {
    // A tokenizer without a model_max_length gets one that admits the prepared sequences.
    let model_max_length = plan
        .tokenizer
        .model_max_length()
        .unwrap_or(plan.config.max_seq_len.max(512));
    let written = plan.tokenizer.write_hf_files(&plan.out, model_max_length)?;
    for name in FAMILY_FILES {
        let path = plan.out.join(name);
        if !written.iter().any(|w| w == name) && path.is_file() {
            remove(&path)?;
        }
    }
    Ok(written)
}

/// Marks the prepare finished: writes `integrity.json` (every shard with its row groups,
/// the tokenizer files, and the manifest about to be written), then `manifest.json`, the
/// commit point (a directory without it is an unfinished prepare), then drops the resume
/// state.
pub(super) fn publish(out: &Path, manifest: &Manifest) -> Result<(), CorpusError> {
    let manifest_path = out.join(MANIFEST_FILE);
    let text = json_text(&manifest_path, manifest)?;
    super::integrity::write(out, manifest, text.as_bytes())?;
    fault_point("prepare.before-manifest");
    write_atomic(&manifest_path, text.as_bytes())?;
    fault_point("prepare.after-manifest");
    let state_path = PrepareState::path(out);
    if state_path.exists() {
        remove(&state_path)?;
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), CorpusError> {
    std::fs::remove_file(path).map_err(|e| CorpusError::io("cannot remove", path, e))
}
