//! `[logging]`: where a run's metrics go besides `metrics.jsonl` (TensorBoard event files,
//! plots at the end of the run), and the metrics writer that feeds them. Every sink sits
//! behind [`MetricsLog`], so a run writes them where (and only where) it writes
//! `metrics.jsonl`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunError;
use super::job::TrainJob;
use super::metrics::MetricsLog;
use super::tensorboard::{CONFIG_TAG, TensorBoardLog};

/// `[logging]`: what a run writes for people to look at. None of it changes the numbers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// TensorBoard event files (the `--report_to tensorboard` of Hugging Face Trainer):
    /// every train and eval metric, and the resolved config as text. `tensorboard = true`
    pub tensorboard: bool,
    /// Where the event files go; defaults to `<training.output_dir>/runs`. The directory
    /// belongs to the run (a fresh run removes the `*.mlm-train` event files in it; other
    /// writers' files are left alone); point `tensorboard --logdir` at a parent to compare
    /// runs. `tensorboard_dir = "runs/pubmed/runs"`
    pub tensorboard_dir: Option<PathBuf>,
    /// PNG charts of the metrics (`mlm-train plot`) in `<training.output_dir>/plots` at the
    /// end of the run. `plots = true`
    pub plots: bool,
    /// The device's dense peak in TFLOP/s that MFU (`mfu` in `metrics.jsonl`) is measured
    /// against, for devices the built-in table does not know (docs/benchmarks.md lists it);
    /// unset: the table's figure for the device and precision. `peak_tflops = 989.4`
    pub peak_tflops: Option<f64>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            tensorboard: true,
            tensorboard_dir: None,
            plots: true,
            peak_tflops: None,
        }
    }
}

impl LoggingConfig {
    pub fn validate(&self) -> Result<(), crate::TrainError> {
        match self.peak_tflops {
            Some(tflops) => crate::error::check::positive("logging.peak_tflops", tflops),
            None => Ok(()),
        }
    }

    /// The TensorBoard directory of a run writing to `output_dir`.
    pub fn tensorboard_dir_for(&self, output_dir: &Path) -> PathBuf {
        self.tensorboard_dir
            .clone()
            .unwrap_or_else(|| output_dir.join("runs"))
    }
}

/// `metrics.jsonl` of the job's output directory, with the TensorBoard sink when
/// `[logging] tensorboard` is on (its first event: the resolved config at the start step).
/// Both are cut back to `resume_step` when resuming.
pub(super) fn open_metrics(
    job: &TrainJob,
    resume_step: Option<u64>,
) -> Result<MetricsLog, RunError> {
    let output_dir = &job.training.output_dir;
    let log = MetricsLog::open(output_dir, resume_step)?;
    if !job.logging.tensorboard {
        return Ok(log);
    }
    let dir = job.logging.tensorboard_dir_for(output_dir);
    let mut tensorboard = TensorBoardLog::open(&dir, resume_step)?;
    tensorboard.append_text(
        resume_step.unwrap_or(0),
        CONFIG_TAG,
        &as_markdown_code(&job.resolved_config),
    )?;
    Ok(log.with_tensorboard(tensorboard))
}

/// Text indented four spaces: a Markdown code block, so TensorBoard's text plugin shows
/// the TOML as written instead of as Markdown (`#` comments would become headings).
fn as_markdown_code(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peak_must_be_a_positive_number_naming_its_key() {
        assert!(LoggingConfig::default().validate().is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let config = LoggingConfig {
                peak_tflops: Some(bad),
                ..LoggingConfig::default()
            };
            let message = config.validate().unwrap_err().to_string();
            assert!(message.starts_with("logging.peak_tflops = "), "{message}");
        }
        let fine = LoggingConfig {
            peak_tflops: Some(989.4),
            ..LoggingConfig::default()
        };
        assert!(fine.validate().is_ok());
    }
}
