//! TensorBoard event files beside `metrics.jsonl`: every record the metrics log gets becomes
//! scalars under Hugging Face Trainer's tag names (`train/loss`, `train/learning_rate`,
//! `eval/perplexity`, ...; `TensorBoardCallback` in `transformers/integrations/
//! integration_utils.py` rewrites `eval_loss` as `eval/loss` and prefixes the rest with
//! `train/`), and the resolved config is written as text.
//!
//! Like `metrics.jsonl`, the directory reads as one uninterrupted run: a fresh run removes
//! earlier event files, and a resumed run rewrites what it keeps (events up to the
//! checkpoint's step) into a new file before appending, so no step appears twice whichever
//! reader is used (TensorBoard's own purge of orphaned steps only applies in its UI).

mod event;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::RunError;
use event::{EventBody, event, frame_record, read_records, scalar_summary, step_and_tag};

/// The text tag the resolved config is written under.
pub const CONFIG_TAG: &str = "config";

/// Record keys that are not metrics.
const NOT_SCALARS: [&str; 3] = ["step", "total_steps", "split"];

pub struct TensorBoardLog {
    path: PathBuf,
    file: File,
}

impl TensorBoardLog {
    /// Opens a new event file in `dir`: this tool's earlier files are removed for a fresh run
    /// (other writers' are left alone), and for a resume their events up to `resume_step`
    /// are carried into the new file (the config text at `resume_step` excepted: the
    /// resumed run writes its own).
    pub fn open(dir: &Path, resume_step: Option<u64>) -> Result<Self, RunError> {
        let io = |what: &Path| {
            let what = format!("TensorBoard events {}", what.display());
            move |source| RunError::Io { what, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let earlier = event_files(dir).map_err(io(dir))?;
        let mut contents = frame_record(&event(wall_time(), 0, &EventBody::FileVersion));
        if let Some(step) = resume_step {
            for file in &earlier {
                let bytes = std::fs::read(file).map_err(io(file))?;
                for record in read_records(&bytes) {
                    if kept_on_resume(record, step) {
                        contents.extend(frame_record(record));
                    }
                }
            }
        }
        let path = dir.join(file_name());
        // Written under a name TensorBoard ignores (no `tfevents` in it), synced and renamed:
        // a reader never sees half, and a crash never leaves a half file.
        let partial = dir.join(".partial-events");
        mlm_durable::write_file_atomically_via(&path, &partial, |file| file.write_all(&contents))
            .map_err(|error| {
            let what = format!(
                "TensorBoard events {} (could not {})",
                error.path().display(),
                error.operation()
            );
            let (.., source) = error.into_parts();
            RunError::Io { what, source }
        })?;
        for file in earlier.iter().filter(|file| **file != path) {
            std::fs::remove_file(file).map_err(io(file))?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Self { path, file })
    }

    /// Writes every number of a `metrics.jsonl` record as the scalar `<split>/<key>` at the
    /// record's `step`.
    pub fn append_record(&mut self, record: &serde_json::Value) -> Result<(), RunError> {
        let (Some(step), Some(split), Some(fields)) = (
            record.get("step").and_then(serde_json::Value::as_u64),
            record.get("split").and_then(serde_json::Value::as_str),
            record.as_object(),
        ) else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        let time = wall_time();
        for (key, value) in fields {
            if let (false, Some(number)) = (NOT_SCALARS.contains(&key.as_str()), value.as_f64()) {
                let summary = scalar_summary(&format!("{split}/{key}"), number as f32);
                bytes.extend(frame_record(&event(
                    time,
                    step,
                    &EventBody::Summary(&summary),
                )));
            }
        }
        self.write(&bytes)
    }

    /// Writes `text` (shown as Markdown) under `tag` at `step`.
    pub fn append_text(&mut self, step: u64, tag: &str, text: &str) -> Result<(), RunError> {
        let summary = event::text_summary(tag, text);
        let record = frame_record(&event(wall_time(), step, &EventBody::Summary(&summary)));
        self.write(&record)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RunError> {
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.flush())
            .map_err(|source| RunError::Io {
                what: format!("TensorBoard events {}", self.path.display()),
                source,
            })
    }
}

/// Events a resume at `step` keeps: summaries up to the step, less the config text at the
/// step itself (the resumed run writes its config there again).
fn kept_on_resume(record: &[u8], step: u64) -> bool {
    match step_and_tag(record) {
        Some((at, tag)) => at < step || (at == step && tag != CONFIG_TAG),
        None => false,
    }
}

/// The end of the event files this tool writes (TensorBoard reads any name containing
/// `tfevents`), which tells them apart from other writers' in the same directory.
const OUR_SUFFIX: &str = ".mlm-train";

/// This tool's event files in `dir`, sorted by name, which TensorBoard also reads them in.
fn event_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // Only our own event files: another writer's in a shared directory are not ours to
        // remove or carry.
        let is_events = path.file_name().is_some_and(|name| {
            let name = name.to_string_lossy();
            name.contains("tfevents") && name.ends_with(OUR_SUFFIX)
        });
        if is_events && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `events.out.tfevents.<seconds>.<host>.<pid>.<nanoseconds>`, as TensorFlow names them
/// (the nanoseconds keep two opens in one second apart).
fn file_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .unwrap_or_else(|| "localhost".to_string());
    format!(
        "events.out.tfevents.{}.{host}.{}.{}{OUR_SUFFIX}",
        now.as_secs(),
        std::process::id(),
        now.subsec_nanos()
    )
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (step, tag) of every summary event in `dir`.
    fn events_in(dir: &Path) -> Vec<(u64, String)> {
        let mut events = Vec::new();
        for file in event_files(dir).unwrap() {
            let bytes = std::fs::read(&file).unwrap();
            events.extend(read_records(&bytes).into_iter().filter_map(step_and_tag));
        }
        events
    }

    #[test]
    fn a_resume_keeps_the_events_up_to_its_step_and_a_fresh_run_none() {
        let dir = std::env::temp_dir().join(format!("mlm-tensorboard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = TensorBoardLog::open(&dir, None).unwrap();
        log.append_text(0, CONFIG_TAG, "a = 1").unwrap();
        for step in [10, 20, 30] {
            let record = serde_json::json!({"step": step, "split": "train", "loss": 1.0});
            log.append_record(&record).unwrap();
        }
        let mut log = TensorBoardLog::open(&dir, Some(20)).unwrap();
        log.append_text(20, CONFIG_TAG, "a = 2").unwrap();
        let record = serde_json::json!({"step": 21, "split": "eval", "loss": 2.0, "split_x": "s"});
        log.append_record(&record).unwrap();
        let mut log = TensorBoardLog::open(&dir, Some(20)).unwrap();
        log.append_text(20, CONFIG_TAG, "a = 3").unwrap();
        let tags = |pairs: &[(u64, &str)]| -> Vec<(u64, String)> {
            pairs.iter().map(|(s, t)| (*s, t.to_string())).collect()
        };
        assert_eq!(event_files(&dir).unwrap().len(), 1);
        assert_eq!(
            events_in(&dir),
            tags(&[
                (0, "config"),
                (10, "train/loss"),
                (20, "train/loss"),
                (20, "config")
            ])
        );
        TensorBoardLog::open(&dir, None).unwrap();
        assert!(events_in(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fresh_run_leaves_other_writers_event_files_alone() {
        let dir = std::env::temp_dir().join(format!("mlm-tb-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // As torch.utils.tensorboard.SummaryWriter names its files.
        let theirs = dir.join("events.out.tfevents.1796610611.host.4242.0");
        std::fs::write(&theirs, b"their events").unwrap();
        TensorBoardLog::open(&dir, None).unwrap();
        TensorBoardLog::open(&dir, None).unwrap();
        assert_eq!(std::fs::read(&theirs).unwrap(), b"their events");
        assert_eq!(event_files(&dir).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
