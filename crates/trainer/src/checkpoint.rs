//! Checkpoints: `run_dir/checkpoint-<step>/` holding the model weights (written by a closure
//! the caller passes), `optimizer.safetensors`, the resolved run config and
//! `trainer_state.json`, plus the rotation that keeps the last K and the best.
//!
//! Crash safety: everything is written into a hidden `.tmp-checkpoint-<step>` directory, which
//! `mlm_durable::replace_dir` publishes: every file and directory in it fsynced, only then
//! renamed to `checkpoint-<step>`, and the run directory fsynced. A rename within one file
//! system is atomic, so a `checkpoint-<N>` directory is always complete; a crash or a failed
//! write leaves at most a hidden temp directory, which [`CheckpointManager::latest`] ignores
//! and the next save removes. Old checkpoints are deleted only after the new one is in place.
//! One process writes a run directory (rank 0 under data parallelism).
//!
//! Integrity: `integrity.json` (`mlm-integrity`), the size and hash of every file, is the
//! last file written into the temporary directory. [`CheckpointManager::latest_intact`]
//! hashes every byte before a resume and steps back over a damaged checkpoint to the newest
//! intact one; loading for `eval` / `export` checks sizes and headers ([`verify_checkpoint`]).
//! Rotation renames a doomed checkpoint to a hidden name before deleting it, so a crash in
//! the middle of a deletion never leaves a half-deleted `checkpoint-<N>`.
//!
//! Rotation, as the Hugging Face Trainer's `save_total_limit` with `load_best_model_at_end`:
//! keep the `keep_last` newest checkpoints plus the one with the lowest metric (e.g. held-out
//! loss). The run directory holds one history: a save at step `s` removes checkpoints of
//! later steps, which belong to a run that was rewound (resumed from an older checkpoint), so
//! that `latest()` is always the newest state of the current run.

use std::fs;
use std::path::{Path, PathBuf};

use mlm_faults::fault_point;
use mlm_integrity::{Level, Verified};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::optim::{AdamW, OPTIMIZER_FILE};

/// The trainer state file inside a checkpoint; written last, so it also marks completeness.
pub const STATE_FILE: &str = "trainer_state.json";
/// The copy of the resolved run config [`CheckpointManager::save_with`] writes.
pub const RESOLVED_CONFIG_FILE: &str = "run_config.toml";
/// Checkpoint directories are `checkpoint-<global step>`, as in the Hugging Face Trainer.
pub const CHECKPOINT_PREFIX: &str = "checkpoint-";
const TEMP_PREFIX: &str = ".tmp-checkpoint-";
const OLD_PREFIX: &str = ".old-checkpoint-";

/// Where a run stands: everything besides weights and optimizer state that an exact resume
/// needs (`trainer_state.json`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub global_step: u64,
    /// Epoch of the next sequence to train on.
    pub epoch: u64,
    /// Position of the next sequence in that epoch's order (DESIGN: data contract).
    pub epoch_position: u64,
    /// Tokens trained on so far.
    pub tokens_seen: u64,
    /// Hash of the resolved config, to refuse resuming a changed run unless told.
    pub config_hash: String,
    /// Lowest metric seen at a save (lower is better, e.g. held-out loss).
    pub best_metric: Option<f64>,
    /// Directory name (`checkpoint-<step>`) of the checkpoint with `best_metric`.
    pub best_checkpoint: Option<String>,
    /// The latest evaluation's metrics.
    pub last_eval: Option<serde_json::Value>,
    /// The learning-rate schedule the run follows (a serialised [`crate::schedule::Schedule`]).
    pub schedule: serde_json::Value,
    /// fp16 runs: the loss scaler's state (`GradScaler.state_dict()`), so a resume continues
    /// with the same scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_scaler: Option<crate::optim::GradScalerState>,
}

impl TrainerState {
    /// Reads a `trainer_state.json`.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let text = fs::read_to_string(path).map_err(|e| TrainError::io("read", path, e))?;
        serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes pretty JSON to `path` durably (a synced temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        write_synced(path, text.as_bytes())
    }
}

/// Files [`CheckpointManager::save_with`] writes besides the caller's closure.
#[derive(Default, Clone, Copy)]
pub struct CheckpointExtras<'a> {
    /// Saved as `optimizer.safetensors`.
    pub optimizer: Option<&'a AdamW>,
    /// The resolved run config (text), saved as `run_config.toml`.
    pub resolved_config: Option<&'a str>,
}

/// Saves, finds and rotates the checkpoints of one run directory.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    run_dir: PathBuf,
    keep_last: usize,
}

impl CheckpointManager {
    /// Checkpoints go under `run_dir`; `keep_last` newest are kept besides the best
    /// (0 keeps them all).
    pub fn new(run_dir: &Path, keep_last: usize) -> Self {
        Self {
            run_dir: run_dir.to_path_buf(),
            keep_last,
        }
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// `run_dir/checkpoint-<step>`.
    pub fn dir_for(&self, step: u64) -> PathBuf {
        self.run_dir.join(format!("{CHECKPOINT_PREFIX}{step}"))
    }

    /// Saves checkpoint `step`: `write` fills the directory (model weights, and whatever else
    /// the caller wants in it), then `trainer_state.json` is written. See [`Self::save_with`].
    pub fn save(
        &self,
        step: u64,
        write: impl FnOnce(&Path) -> Result<(), TrainError>,
        state: &mut TrainerState,
        metric: Option<f64>,
    ) -> Result<PathBuf, TrainError> {
        self.save_with(step, CheckpointExtras::default(), write, state, metric)
    }

    /// Saves checkpoint `step` atomically (module docs) and rotates old ones. `write` gets the
    /// temporary directory and writes the model (e.g. `model.safetensors`); then the extras
    /// and `trainer_state.json` follow. `metric` (lower is better; NaN never wins) competes
    /// with `state.best_metric`; the winner is recorded in `state` (on success only) and in
    /// the saved file. On error nothing was renamed into place and no checkpoint was deleted.
    pub fn save_with(
        &self,
        step: u64,
        extras: CheckpointExtras<'_>,
        write: impl FnOnce(&Path) -> Result<(), TrainError>,
        state: &mut TrainerState,
        metric: Option<f64>,
    ) -> Result<PathBuf, TrainError> {
        let final_dir = self.dir_for(step);
        let name = format!("{CHECKPOINT_PREFIX}{step}");
        let mut saved = state.clone();
        if let Some(value) = metric
            && saved.best_metric.is_none_or(|best| value < best)
            && !value.is_nan()
        {
            saved.best_metric = Some(value);
            saved.best_checkpoint = Some(name);
        }
        let result = self.write_and_commit(step, extras, write, &saved, &final_dir);
        if let Err(source) = result {
            return Err(TrainError::CheckpointWrite {
                dir: final_dir,
                source: Box::new(source),
            });
        }
        state.best_metric = saved.best_metric;
        state.best_checkpoint = saved.best_checkpoint.clone();
        self.rotate(step, saved.best_checkpoint.as_deref())?;
        Ok(final_dir)
    }

    fn write_and_commit(
        &self,
        step: u64,
        extras: CheckpointExtras<'_>,
        write: impl FnOnce(&Path) -> Result<(), TrainError>,
        state: &TrainerState,
        final_dir: &Path,
    ) -> Result<(), TrainError> {
        fs::create_dir_all(&self.run_dir)
            .map_err(|e| TrainError::io("create", &self.run_dir, e))?;
        self.remove_leftovers();
        let temp = self.run_dir.join(format!("{TEMP_PREFIX}{step}"));
        fs::create_dir(&temp).map_err(|e| TrainError::io("create", &temp, e))?;
        let filled = (|| {
            write(&temp)?;
            fault_point("checkpoint.after-model-file");
            if let Some(optimizer) = extras.optimizer {
                optimizer.save(&temp.join(OPTIMIZER_FILE))?;
                fault_point("checkpoint.after-optimizer-file");
            }
            if let Some(config) = extras.resolved_config {
                write_synced(&temp.join(RESOLVED_CONFIG_FILE), config.as_bytes())?;
            }
            state.write(&temp.join(STATE_FILE))?;
            fault_point("checkpoint.after-state-file");
            mlm_integrity::write_for_dir(&temp, mlm_integrity::KIND_CHECKPOINT).map_err(
                |source| TrainError::Integrity {
                    dir: temp.clone(),
                    source,
                },
            )?;
            Ok(())
        })();
        if let Err(error) = filled {
            let _ = fs::remove_dir_all(&temp);
            return Err(error);
        }
        fault_point("checkpoint.before-rename");
        // Syncs every file the caller's closure wrote too. Replacing an existing checkpoint
        // of the same step moves it aside first (hidden, so a crash in between leaves the
        // previous checkpoint as the latest complete one).
        let aside = self.run_dir.join(format!("{OLD_PREFIX}{step}"));
        if final_dir.exists()
            && let Err(reason) = written_by_us(final_dir)
        {
            let _ = fs::remove_dir_all(&temp);
            return Err(TrainError::ForeignCheckpoint {
                dir: final_dir.to_path_buf(),
                reason,
            });
        }
        if let Err(error) = mlm_durable::replace_dir(&temp, final_dir, &aside) {
            let _ = fs::remove_dir_all(&temp);
            return Err(TrainError::durable(error));
        }
        fault_point("checkpoint.after-rename");
        Ok(())
    }

    /// Removes what interrupted saves left behind (hidden temp and set-aside directories).
    /// Best effort: they are invisible to [`Self::latest`] either way.
    fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.run_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) || name.starts_with(OLD_PREFIX) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Deletes checkpoints outside {the `keep_last` newest up to `step`, `best`} and every
    /// checkpoint after `step` (a rewound history).
    fn rotate(&self, step: u64, best: Option<&str>) -> Result<(), TrainError> {
        let checkpoints = self.list()?;
        let current: Vec<&(u64, PathBuf)> =
            checkpoints.iter().filter(|(s, _)| *s <= step).collect();
        let keep_from = if self.keep_last == 0 {
            0
        } else {
            current.len().saturating_sub(self.keep_last)
        };
        let mut doomed: Vec<&PathBuf> = current[..keep_from].iter().map(|(_, p)| p).collect();
        doomed.extend(
            checkpoints
                .iter()
                .filter(|(s, _)| *s > step)
                .map(|(_, p)| p),
        );
        for dir in doomed {
            let is_best = best.is_some_and(|b| dir.file_name().is_some_and(|n| n == b));
            // A checkpoint-like directory this run cannot prove it wrote is left alone.
            if !is_best && written_by_us(dir).is_ok() {
                self.remove_checkpoint(dir)?;
                fault_point("checkpoint.mid-rotation");
            }
        }
        Ok(())
    }

    /// Renames `dir` to a hidden name (atomic), then deletes it: a crash during the deletion
    /// leaves a hidden leftover, never a half-deleted `checkpoint-<N>`.
    fn remove_checkpoint(&self, dir: &Path) -> Result<(), TrainError> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let step = name.strip_prefix(CHECKPOINT_PREFIX).unwrap_or(&name);
        let doomed = self.run_dir.join(format!("{OLD_PREFIX}{step}"));
        fs::rename(dir, &doomed).map_err(|e| TrainError::io("move aside", dir, e))?;
        fs::remove_dir_all(&doomed).map_err(|e| TrainError::io("remove", &doomed, e))
    }

    /// Complete checkpoints, oldest step first. A missing run directory has none.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, TrainError> {
        let entries = match fs::read_dir(&self.run_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io("list", &self.run_dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| TrainError::io("list", &self.run_dir, e))?;
            let name = entry.file_name();
            let Some(step) = name
                .to_str()
                .and_then(|n| n.strip_prefix(CHECKPOINT_PREFIX))
                .and_then(|digits| digits.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            if path.is_dir() && path.join(STATE_FILE).is_file() {
                found.push((step, path));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The complete checkpoint with the highest step, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>, TrainError> {
        Ok(self.list()?.pop().map(|(_, path)| path))
    }

    /// The newest checkpoint that passes a full integrity check (every byte hashed), with the
    /// newer ones refused on the way and why. A checkpoint written before integrity manifests
    /// (no `integrity.json`) is taken as it is.
    pub fn latest_intact(&self) -> Result<IntactSearch, TrainError> {
        let mut search = IntactSearch::default();
        for (_, dir) in self.list()?.into_iter().rev() {
            match verify_checkpoint(&dir, Level::Full) {
                Ok(verified) => {
                    search.found = Some((dir, verified));
                    break;
                }
                Err(refused) => search.refused.push((dir, refused)),
            }
        }
        Ok(search)
    }

    /// The `trainer_state.json` of checkpoint directory `dir`.
    pub fn read_state(dir: &Path) -> Result<TrainerState, TrainError> {
        TrainerState::read(&dir.join(STATE_FILE))
    }
}

/// What [`CheckpointManager::latest_intact`] found.
#[derive(Debug, Default)]
pub struct IntactSearch {
    /// The checkpoint to resume from and how it was checked.
    pub found: Option<(PathBuf, Verified)>,
    /// Newer checkpoints refused, newest first, with the integrity error of each.
    pub refused: Vec<(PathBuf, TrainError)>,
}

/// Checks checkpoint `dir` against its `integrity.json` at `level`; an error names the
/// damaged file. [`Verified::NoManifest`] for a checkpoint of an earlier version.
pub fn verify_checkpoint(dir: &Path, level: Level) -> Result<Verified, TrainError> {
    mlm_integrity::verify(dir, level).map_err(|source| TrainError::Integrity {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Whether `dir` is a checkpoint this tool wrote, which rotation and a re-save of the same
/// step may remove: its `integrity.json` says so (or, written before kinds were recorded,
/// exists) and lists every file in it (a list damaged past its own checksum is taken as
/// ours without the listing). `Err` says why not.
fn written_by_us(dir: &Path) -> Result<(), String> {
    // Unchecked: a checkpoint of ours whose integrity.json was damaged (and which resume
    // therefore passed over) is still ours to replace.
    let manifest = match mlm_integrity::Integrity::read_unchecked(dir) {
        Ok(Some(manifest)) => manifest,
        Ok(None) => return Err("it has no integrity.json".into()),
        Err(e) => return Err(format!("its integrity.json is unreadable: {e}")),
    };
    if let Some(kind) = manifest.kind.as_deref()
        && kind != mlm_integrity::KIND_CHECKPOINT
    {
        return Err(format!("its integrity.json says it is an {kind}"));
    }
    // A damaged list (resume passed the checkpoint over for it) no longer names its files
    // reliably; it is still the manifest of a checkpoint this tool wrote.
    if !manifest.is_intact() {
        return Ok(());
    }
    let present = mlm_integrity::files_under(dir).map_err(|e| e.to_string())?;
    match present.iter().find(|name| !manifest.lists(name)) {
        Some(name) => Err(format!("it holds {name}, which it does not list")),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` durably (synced, renamed into place, the directory synced).
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    use std::io::Write;
    mlm_durable::write_file_atomically(path, |file| file.write_all(bytes))
        .map_err(TrainError::durable)
}

#[cfg(test)]
mod tests;
