//! `prepare`: read -> split -> tokenize (rayon) -> pack -> Parquet shards -> manifest.
//!
//! The stages, each in its own module:
//! - [`plan`]: validate the config, load the tokenizer, list the inputs and hash all of it
//!   into the config key;
//! - [`outdir`]: reuse a finished prepare of the same key, else resume an unfinished one
//!   (keeping its shards) or clean the directory, and write the tokenizer files;
//! - [`phrase_stage`]: with `[masking] unit = "phrase"`, the phrase list (a file, n-grams
//!   mined by PMI over the training split) and, after packing, `phrases.tsv`;
//! - [`pipeline`]: stream, tokenize and pack the documents into the shards of their split,
//!   saving `prepare-state.json` after every closed shard ([`sink`] writes the shards);
//! - [`manifest`]: describe what was written; `manifest.json` goes last, atomically.
//!
//! Memory is bounded by a few batches, one row group per split, the MEDLINE version bitsets
//! and (only with `deduplicate`) 8 bytes per distinct document.

mod integrity;
mod manifest;
mod outdir;
mod phrase_stage;
mod pipeline;
mod plan;
mod sink;
pub mod state;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::CorpusConfig;
use crate::error::CorpusError;
use crate::manifest::Manifest;
use crate::progress::Observer;
use plan::Plan;

/// Options of a prepare run that are not part of the corpus config.
pub struct PrepareOptions<'a> {
    pub observer: &'a dyn Observer,
    /// Stop with [`CorpusError::Interrupted`] once this many shards are written and saved in
    /// `prepare-state.json` (to test resuming; a real interruption is a crash or a kill).
    pub stop_after_shards: Option<usize>,
}

/// How a prepare ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Prepared from scratch.
    Prepared,
    /// An unfinished prepare was completed; `shards_kept` shards of it were reused.
    Resumed { shards_kept: usize },
    /// The directory already held this exact prepare: nothing was done.
    AlreadyComplete,
}

/// The result of a prepare.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    pub output: PathBuf,
    pub manifest: Manifest,
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// How the byte-level BPE / Unigram fast path fared (None: not that path, or nothing
    /// was tokenized): documents and segments, and how many went to the library.
    pub fast_path: Option<crate::tokenizer::FastPathStats>,
}

/// Runs `prepare` for a config whose paths are resolved (see `CorpusConfig::resolve_paths`).
pub fn prepare(
    config: &CorpusConfig,
    options: &PrepareOptions<'_>,
) -> Result<PrepareReport, CorpusError> {
    let started = Instant::now();
    let plan = Plan::new(config)?;
    let report = |manifest, outcome| PrepareReport {
        output: plan.out.clone(),
        manifest,
        outcome,
        elapsed: started.elapsed(),
        fast_path: plan
            .tokenizer
            .fast_path_stats()
            .filter(|stats| stats.documents > 0),
    };
    if let Some(finished) = outdir::reuse_finished(&plan, options.observer)? {
        return Ok(report(finished, Outcome::AlreadyComplete));
    }
    let start = outdir::resume_or_clean(&plan, options.observer)?;
    let phrases = phrase_stage::build(&plan, options.observer)?;
    // Serialising the tokenizer files takes a tenth of a second for a 50k BPE: done beside
    // the packing, which leaves a core partly idle.
    let (tokenizer_files, packed) = std::thread::scope(|scope| {
        let files = scope.spawn(|| outdir::write_tokenizer_files(&plan));
        let packed = pipeline::pack_corpus(&plan, start.state, options, phrases.as_ref());
        let files = files.join().unwrap_or_else(|_| {
            Err(CorpusError::Internal(
                "writing the tokenizer files panicked".into(),
            ))
        });
        (files, packed)
    });
    let (packed, tokenizer_files) = (packed?, tokenizer_files?);
    manifest::check_has_training_data(&packed, &plan.files)?;
    let phrases = phrases
        .map(|stage| phrase_stage::finish(&plan, &stage, &packed.matches))
        .transpose()?;
    let manifest = manifest::build(&plan, packed, tokenizer_files, phrases);
    outdir::publish(&plan.out, &manifest)?;
    Ok(report(manifest, start.outcome))
}

#[cfg(test)]
mod tests;
