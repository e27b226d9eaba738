//! `metrics.jsonl`: one JSON object per line (`{"step": 100, "split": "train", ...}`),
//! flushed as written so a crash keeps every line before it. A resumed run first cuts the
//! file back to the checkpoint's step, so the log reads like one uninterrupted run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::RunError;
use super::tensorboard::TensorBoardLog;

pub struct MetricsLog {
    path: PathBuf,
    file: File,
    /// Gets every record after `metrics.jsonl` (`[logging] tensorboard`).
    tensorboard: Option<TensorBoardLog>,
}

impl MetricsLog {
    /// Opens `run_dir/metrics.jsonl`: emptied for a fresh run, cut back to the lines with
    /// `step <= resume_step` when resuming.
    pub fn open(run_dir: &Path, resume_step: Option<u64>) -> Result<Self, RunError> {
        let path = run_dir.join("metrics.jsonl");
        let io = |source| RunError::Io {
            what: format!("metrics log {}", path.display()),
            source,
        };
        let kept = match (resume_step, path.exists()) {
            (Some(step), true) => {
                let reader = BufReader::new(File::open(&path).map_err(io)?);
                let mut kept = String::new();
                for line in reader.lines() {
                    let line = line.map_err(io)?;
                    if line_step(&line).is_some_and(|s| s <= step) {
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                }
                kept
            }
            _ => String::new(),
        };
        std::fs::write(&path, kept).map_err(io)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        Ok(Self {
            path,
            file,
            tensorboard: None,
        })
    }

    /// Also writes every record to `tensorboard`.
    pub fn with_tensorboard(mut self, tensorboard: TensorBoardLog) -> Self {
        self.tensorboard = Some(tensorboard);
        self
    }

    pub fn append(&mut self, record: &serde_json::Value) -> Result<(), RunError> {
        let mut line = record.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| RunError::Io {
                what: format!("metrics log {}", self.path.display()),
                source,
            })?;
        match &mut self.tensorboard {
            Some(tensorboard) => tensorboard.append_record(record),
            None => Ok(()),
        }
    }
}

/// The `step` of a metrics line; a torn last line (no valid JSON) yields `None` and is cut.
fn line_step(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("step")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_cuts_lines_after_the_checkpoint_and_torn_lines() {
        let dir = std::env::temp_dir().join(format!("mlm-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = MetricsLog::open(&dir, None).unwrap();
        for step in [0, 10, 20, 30] {
            log.append(&serde_json::json!({"step": step, "split": "train"}))
                .unwrap();
        }
        let path = dir.join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"step\": 4");
        std::fs::write(&path, text).unwrap();
        let mut log = MetricsLog::open(&dir, Some(20)).unwrap();
        log.append(&serde_json::json!({"step": 21})).unwrap();
        let steps: Vec<u64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| line_step(l).unwrap())
            .collect();
        assert_eq!(steps, vec![0, 10, 20, 21]);
        MetricsLog::open(&dir, None).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
