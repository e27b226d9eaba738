//! What a caller hands the training run and what it gets back: the job, the plan printed
//! before the first step, the per-step log, the observer that presents them, the outcome.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlm_masking::{Batch, MaskingConfig};
use serde::Serialize;
use tch::Device;

use super::config::{CheckpointConfig, EvalConfig, ModelSection, TrainingConfig};
use super::eval::EvalMetrics;
use super::logging::LoggingConfig;

/// Everything a run needs, resolved by the caller (the CLI).
pub struct TrainJob {
    /// A prepared corpus (`mlm-train prepare`).
    pub corpus_dir: PathBuf,
    pub model: ModelSection,
    pub masking: MaskingConfig,
    pub training: TrainingConfig,
    pub eval: EvalConfig,
    pub checkpoint: CheckpointConfig,
    pub logging: LoggingConfig,
    pub device: Device,
    /// The resolved config as TOML, saved with every checkpoint.
    pub resolved_config: String,
    pub resume: ResumePolicy,
    /// Stop (saving a checkpoint, as on SIGINT) once this many steps are done: time-sliced
    /// jobs, and tests of exact resume.
    pub stop_after_step: Option<u64>,
    /// This process's place in a data-parallel job (`None`: one process trains alone).
    pub parallel: Option<Arc<super::DataParallel>>,
}

/// Which checkpoint a run starts from.
#[derive(Debug, Clone)]
pub struct ResumePolicy {
    /// `None`: the latest complete checkpoint in `training.output_dir`, if any.
    pub from: Option<PathBuf>,
    /// Resume even though the resume key changed since the checkpoint was written.
    pub allow_config_change: bool,
}

/// What the run will do, printed before it starts (and by `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainPlan {
    /// The model's masked-LM class (`BertForMaskedLM`, `RobertaForMaskedLM`, ...).
    pub model: String,
    /// Parameters the optimizer updates.
    pub parameters: i64,
    pub device: String,
    pub precision: String,
    pub train_sequences: u64,
    pub eval_sequences: u64,
    pub max_seq_len: usize,
    pub sequences_per_step: u64,
    pub tokens_per_step: u64,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub start_step: u64,
    pub resumed_from: Option<PathBuf>,
    /// How the checkpoint resumed from was checked, and newer ones refused as damaged.
    pub resume_check: ResumeCheck,
    pub estimated_memory_bytes: u64,
    /// Training FLOPs per token at the masking rate (run/flops.rs), for MFU.
    pub flops_per_token: f64,
    /// The device's dense peak MFU is measured against, TFLOP/s, and where it came from.
    pub peak_tflops: Option<f64>,
    pub peak_source: Option<String>,
    /// What loading `model.init_from` did; `None` for a model from scratch.
    pub weights: Option<WeightsReport>,
    /// `training.cuda_graphs`: the fixed micro-batch shape and where it is captured.
    pub cuda_graphs: Option<String>,
    /// `training.unpad`: how attention sees the unpadded rows.
    pub unpad: Option<String>,
    /// For a family with local attention: the window and what computes it.
    pub attention: Option<String>,
    /// What training masks (unit, rate and its schedule) and what held-out masks.
    pub masking: String,
}

/// The integrity check before a resume (every byte of the checkpoint hashed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResumeCheck {
    /// Newer checkpoints refused as damaged, newest first, with the reason (naming the file).
    pub refused: Vec<(PathBuf, String)>,
    /// The checkpoint has no `integrity.json` (written by an earlier version): not checked.
    pub unverified: bool,
}

/// The names a checkpoint load reports, for the plan.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    pub loaded: usize,
    /// Variables the checkpoint lacks, initialised as transformers would.
    pub initialised: Vec<String>,
    /// Checkpoint keys known not to be needed (tied copies, other tasks' heads, buffers).
    pub ignored: Vec<String>,
    /// Checkpoint keys that match no parameter and are not known to be safe to ignore.
    pub unexpected: Vec<String>,
    /// How the vocabulary was grown to the corpus's extended one, if it was.
    pub vocabulary: Option<String>,
}

/// One logged training step.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: f64,
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub tokens_per_second: f64,
    /// The share of the batches' positions that were padding over the window (0 for full
    /// `concat` sequences; what `group_by_length` lowers for `document` packing).
    pub padding: f64,
    /// Model FLOPs utilisation over the window since the last log (run/flops.rs); `None`
    /// when the device's peak is unknown and `[logging] peak_tflops` is not set.
    pub mfu: Option<f64>,
    /// fp16: the loss scale after this step (`None` in other precisions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// `training.cuda_graphs`: how the steps so far ran (`None` without graphs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphs: Option<GraphCounts>,
    pub masked_tokens: usize,
    /// Tokens (padding excluded) trained on since step 0, this step's included.
    pub tokens_seen: u64,
}

/// How the steps of a `training.cuda_graphs` run went, counted from the start of this
/// process's run (a resumed run counts from the resume): `metrics.jsonl`'s `graphs` object,
/// what scripts/gpu-check requires of a GPU run (replays, and no full batch left out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GraphCounts {
    /// Steps run eagerly at the fixed shapes: the warm-up on CUDA, every step on the CPU.
    pub eager: u64,
    /// Steps replayed from the captured graphs (the capturing step too: it replays them).
    pub replayed: u64,
    /// Steps left to the plain step because a micro-batch had fewer rows than the shape
    /// (a short last batch, `last_batch = "keep"`).
    pub short_batch_fallbacks: u64,
    /// Steps left to the plain step although every micro-batch had the shape's rows (more
    /// masked tokens than slots): rare by design (run/graphed.rs, `masked_slots`).
    pub full_batch_fallbacks: u64,
}

impl GraphCounts {
    /// Steps taken at the fixed shapes, eagerly or replayed.
    pub fn fixed_shape_steps(&self) -> u64 {
        self.eager + self.replayed
    }

    /// Steps that ran the plain step instead.
    pub fn fallbacks(&self) -> u64 {
        self.short_batch_fallbacks + self.full_batch_fallbacks
    }
}

/// Presentation of a run (progress bar, plain lines, nothing in tests).
pub trait TrainObserver {
    fn plan(&mut self, plan: &TrainPlan);
    /// The micro-batches optimizer step `step` (0-based) is about to train on, masked and
    /// collated, in the order the forward passes run; micro-batch `i` runs with dropout seed
    /// [`dropout_seed`](crate::run::dropout_seed)`(training.seed, step, 0, first + i)`, where
    /// `first` is the index of this rank's first micro-batch in the step (rank x
    /// `gradient_accumulation_steps`), so a micro-batch keeps its seed at any world size. For replay
    /// by a reference implementation (the trajectory parity test) and for debugging a step;
    /// ignored by default.
    fn trained_on(&mut self, step: u64, micro_batches: &[Batch]) {
        let _ = (step, micro_batches);
    }
    fn step(&mut self, log: &StepLog);
    /// An evaluation at `step` has gone through `done` of its `total` held-out sequences
    /// (called before each batch); ignored by default.
    fn eval_progress(&mut self, step: u64, done: u64, total: u64) {
        let _ = (step, done, total);
    }
    fn eval(&mut self, step: u64, metrics: &EvalMetrics);
    fn saved(&mut self, step: u64, dir: &Path);
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub final_step: u64,
    pub last_checkpoint: Option<PathBuf>,
    /// The evaluation before the first step (`None` when the run resumed).
    pub first_eval: Option<EvalMetrics>,
    pub last_eval: Option<EvalMetrics>,
    /// True when SIGINT/SIGTERM or `stop_after_step` stopped the run (after saving).
    pub interrupted: bool,
    /// Data parallel: the number of ranks, all found holding identical weights at the end.
    pub replicas: Option<u32>,
    /// `training.cuda_graphs`: steps this run took at the fixed shapes (replayed from graphs
    /// after the warm-up on CUDA), and steps whose batches did not fit and ran the plain step.
    pub graph_steps: u64,
    pub graph_fallbacks: u64,
}
