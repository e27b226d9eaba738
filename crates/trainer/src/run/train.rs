//! The training loop. [`run_training`] reads top to bottom: open the run (everything before
//! the first step; `--dry-run` stops there), start it (output directory, metrics log, the
//! evaluation before the first step, the batch loader), then step until the budget is spent
//! or a stop is asked for, logging, evaluating and saving when the [`Cadence`] says so, and
//! finish (the last evaluation and save) once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod paths;

use super::RunError;
use super::cadence::{Cadence, Due, Throughput};
use super::data::{DataPosition, Prefetcher, StepBatches};
use super::eval::{EvalMetrics, EvalSums, evaluate_shard, finish_metrics};
use super::flops::mfu;
use super::graphed::GraphedStep;
use super::job::{StepLog, TrainJob, TrainObserver, TrainOutcome};
use super::logging::open_metrics;
use super::metrics::MetricsLog;
use super::open::{Run, RunParts};
use super::parallel::{DataParallel, sum_over_ranks};
use crate::TrainError;
use crate::checkpoint::{CheckpointExtras, TrainerState};
use crate::model::EncoderConfig;
use crate::model::{named_variables, trainable_named_variables};
use crate::optim::GradScaler;
use mlm_torch_ext::dist::Reducer;
use tch::{Kind, Tensor};

/// Runs (or, with `dry_run`, only plans) the job. `stop` is raised by signal handlers: the
/// loop saves a checkpoint at the next step boundary and returns.
pub fn run_training(
    job: &TrainJob,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
    dry_run: bool,
) -> Result<TrainOutcome, RunError> {
    let run = Run::open(job)?;
    observer.plan(&run.plan);
    if dry_run {
        return Ok(run.untrained_outcome());
    }
    let mut training = Training::start(run, observer)?;
    while !training.is_complete() {
        if training.stop_requested(stop)? || training.reached_stop_after_step() {
            return training.finish(observer, true);
        }
        training.step(observer)?;
        let Due { log, eval, save } = training.due();
        if log {
            training.log(observer)?;
        }
        if eval {
            training.evaluate(observer)?;
        }
        if save {
            training.save(observer)?;
        }
    }
    training.finish(observer, false)
}

impl Run<'_> {
    /// The outcome of a run that only planned (`--dry-run`).
    fn untrained_outcome(self) -> TrainOutcome {
        TrainOutcome {
            final_step: self.parts.state.global_step,
            last_checkpoint: self.parts.resumed_from,
            first_eval: None,
            last_eval: None,
            interrupted: false,
            replicas: None,
            graph_steps: 0,
            graph_fallbacks: 0,
        }
    }
}

/// What one optimizer step left on the device, read when the run next logs, evaluates or
/// saves (or after every step on the single-tensor path): reading it waits for the device.
struct PendingStep {
    /// The step's number once done (1-based, as logged).
    step: u64,
    /// This rank's summed cross-entropy (0-dim f64).
    loss_sum: Tensor,
    /// The global gradient norm before clipping (0-dim; `None` without gradients).
    grad_norm: Option<Tensor>,
    learning_rate: f64,
    /// Over all ranks.
    masked_tokens: usize,
    /// Where the step started in the data stream (for the fractional epoch in the log).
    start: DataPosition,
}

/// A step read back on the host.
struct StepReport {
    /// This rank's summed cross-entropy; the log sums it over ranks.
    loss_sum: f64,
    grad_norm: f64,
    learning_rate: f64,
    masked_tokens: usize,
    start: DataPosition,
}

/// A run between its first and last step.
struct Training<'a> {
    job: &'a TrainJob,
    parts: RunParts,
    loader: Prefetcher,
    /// Written by rank 0 only (as checkpoints and progress).
    metrics: Option<MetricsLog>,
    /// Data parallel: the job's process group and the Reducer over the trainable weights.
    parallel: Option<(&'a DataParallel, Reducer)>,
    cadence: Cadence,
    throughput: Throughput,
    last_save: Instant,
    first_eval: Option<EvalMetrics>,
    /// The latest evaluation and the step it was made at.
    last_eval: Option<(u64, EvalMetrics)>,
    /// The latest checkpoint (the resumed one until a save) and its step.
    last_checkpoint: Option<(u64, PathBuf)>,
    /// Steps not yet read back from the device, and the latest one that was.
    pending: Vec<PendingStep>,
    latest: Option<StepReport>,
}

impl<'a> Training<'a> {
    /// Creates the run directory and the metrics log (cut back to the resumed step),
    /// evaluates a run that starts at step 0, and starts the batch loader.
    fn start(run: Run<'a>, observer: &mut dyn TrainObserver) -> Result<Self, RunError> {
        let Run {
            job,
            parts,
            train_reader,
            masks,
            ..
        } = run;
        let resumed_step = parts.resumed_from.as_ref().map(|_| parts.state.global_step);
        let parallel = match job.parallel.as_deref() {
            Some(group) => Some((group, join_data_parallel(group, &parts)?)),
            None => None,
        };
        let writes = parallel.as_ref().is_none_or(|(group, _)| group.is_main());
        let output_dir = &job.training.output_dir;
        let metrics = if writes {
            std::fs::create_dir_all(output_dir).map_err(|source| RunError::Io {
                what: format!("training.output_dir {}", output_dir.display()),
                source,
            })?;
            Some(open_metrics(job, resumed_step)?)
        } else {
            None
        };
        let start = DataPosition {
            epoch: parts.state.epoch,
            position: parts.state.epoch_position,
        };
        let prefetch = job.training.prefetch;
        let mut training = Self {
            job,
            cadence: Cadence::new(
                job.training.logging_steps,
                &job.eval,
                &job.checkpoint,
                parts.total_steps,
            ),
            loader: Prefetcher::start(train_reader, parts.batches, masks, start, prefetch),
            metrics,
            parallel,
            last_checkpoint: resumed_step.zip(parts.resumed_from.clone()),
            parts,
            throughput: Throughput::start(),
            last_save: Instant::now(),
            first_eval: None,
            last_eval: None,
            pending: Vec::new(),
            latest: None,
        };
        if resumed_step.is_none() {
            training.first_eval = Some(training.evaluate(observer)?);
        }
        Ok(training)
    }

    fn is_complete(&self) -> bool {
        self.parts.state.global_step >= self.parts.total_steps
    }

    fn reached_stop_after_step(&self) -> bool {
        let step = self.parts.state.global_step;
        self.job.stop_after_step.is_some_and(|last| step >= last)
    }

    /// One optimizer step: the step's batches, forward and backward over its micro-batches,
    /// unscaling (fp16) and clipping, the AdamW update at the scheduled learning rate (skipped
    /// on the device when a gradient is not finite), the state advanced. Nothing waits for
    /// the device unless the single-tensor optimizer is asked for (`fused_optimizer = false`),
    /// which reads every step back at once.
    fn step(&mut self, observer: &mut dyn TrainObserver) -> Result<(), RunError> {
        let step = self.parts.state.global_step;
        let batches = self.loader.next_step()?;
        observer.trained_on(step, &batches.micro_batches);
        let totals = self.step_totals(&batches)?;
        let learning_rate = self.parts.schedule.lr_at(step);
        let (loss_sum, grad_norm) =
            match self.graphed_step(step, &batches, &totals, learning_rate)? {
                Some(done) => (done.loss_sum, Some(done.grad_norm)),
                None => self.plain_step(step, &batches, &totals, learning_rate)?,
            };
        advance(&mut self.parts.state, &batches, totals.tokens);
        mlm_faults::fault_point("train.after-optimizer-step");
        self.throughput
            .add(totals.tokens, totals.masked_tokens, totals.slots);
        self.pending.push(PendingStep {
            step: step + 1,
            loss_sum,
            grad_norm,
            learning_rate,
            masked_tokens: totals.masked_tokens,
            start: batches.start,
        });
        if !self.job.training.fused_optimizer {
            self.read_back_pending_steps()?;
        }
        Ok(())
    }

    /// The step's masked and non-padding tokens over all ranks.
    fn step_totals(&self, batches: &StepBatches) -> Result<StepTotals, RunError> {
        let mut counts = [
            batches.masked_tokens as f64,
            batches.tokens as f64,
            batches.slots as f64,
        ];
        sum_over_ranks(self.group(), &mut counts)?;
        Ok(StepTotals {
            masked_tokens: counts[0] as usize,
            tokens: counts[1] as usize,
            slots: counts[2] as usize,
        })
    }

    fn group(&self) -> Option<&'a DataParallel> {
        self.parallel.as_ref().map(|(group, _)| *group)
    }

    /// Whether to stop now: a signal on any rank stops every rank at the same step.
    fn stop_requested(&self, stop: &AtomicBool) -> Result<bool, RunError> {
        let mut raised = [f64::from(u8::from(stop.load(Ordering::SeqCst)))];
        sum_over_ranks(self.group(), &mut raised)?;
        Ok(raised[0] > 0.0)
    }

    /// Reads the pending steps back from the device (one wait) and stops the run at the first
    /// whose loss, or (outside fp16, where overflow is the loss scaler's business) gradient
    /// norm, is not finite; that step's update was skipped.
    fn read_back_pending_steps(&mut self) -> Result<(), RunError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let device = self.parts.precision.device();
        let losses = host_values(pending.iter().map(|p| Some(&p.loss_sum)), device);
        let norms = host_values(pending.iter().map(|p| p.grad_norm.as_ref()), device);
        let overflow_is_expected = self.parts.scaler.is_some();
        for ((step, loss_sum), grad_norm) in pending.into_iter().zip(losses).zip(norms) {
            let non_finite = if !loss_sum.is_finite() {
                Some(("the loss", loss_sum))
            } else if !grad_norm.is_finite() && !overflow_is_expected {
                Some(("the gradient norm", grad_norm))
            } else {
                None
            };
            if let Some((what, value)) = non_finite {
                return Err(RunError::NonFinite {
                    what,
                    step: step.step,
                    value,
                    last_checkpoint: self.last_checkpoint.as_ref().map(|(_, dir)| dir.clone()),
                });
            }
            self.latest = Some(StepReport {
                loss_sum,
                grad_norm,
                learning_rate: step.learning_rate,
                masked_tokens: step.masked_tokens,
                start: step.start,
            });
        }
        Ok(())
    }

    fn due(&self) -> Due {
        let step = self.parts.state.global_step;
        self.cadence.after_step(step, self.last_save.elapsed())
    }

    /// Logs the latest step: its loss summed over ranks, gradient norm, learning rate,
    /// throughput and MFU over the window since the last log.
    fn log(&mut self, observer: &mut dyn TrainObserver) -> Result<(), RunError> {
        self.read_back_pending_steps()?;
        let Some(report) = &self.latest else {
            return Ok(());
        };
        let mut loss_sum = [report.loss_sum];
        sum_over_ranks(self.group(), &mut loss_sum)?;
        let parts = &self.parts;
        let global_batch = parts.batches.global_batch();
        let epoch = report.start.epoch as f64
            + (report.start.position + global_batch) as f64
                / (parts.steps_per_epoch * global_batch) as f64;
        let window = self.throughput.take_window();
        let flops = parts.flops.training_flops(window.tokens, window.masked);
        let log = StepLog {
            step: parts.state.global_step,
            total_steps: parts.total_steps,
            epoch,
            loss: loss_sum[0] / report.masked_tokens.max(1) as f64,
            learning_rate: report.learning_rate,
            grad_norm: report.grad_norm,
            tokens_per_second: window.tokens_per_second(),
            padding: window.padding(),
            mfu: (parts.peak.as_ref()).map(|peak| mfu(flops, window.seconds, peak.tflops)),
            loss_scale: parts.scaler.as_ref().map(|scaler| scaler.state().scale),
            graphs: parts.graphed.as_ref().map(GraphedStep::counts),
            masked_tokens: report.masked_tokens,
            tokens_seen: parts.state.tokens_seen,
        };
        observer.step(&log);
        let mut record = serde_json::to_value(&log).unwrap_or_default();
        record["split"] = "train".into();
        self.append_metrics(&record)
    }

    fn append_metrics(&mut self, record: &serde_json::Value) -> Result<(), RunError> {
        match &mut self.metrics {
            Some(metrics) => metrics.append(record),
            None => Ok(()),
        }
    }

    /// A data-parallel step's error, naming the ranks that stopped (a single process's
    /// errors pass unchanged).
    fn collective_failure(&self, what: &str, error: RunError) -> RunError {
        match (self.group(), error) {
            (Some(group), RunError::Torch(e)) => group.failure(what, e),
            (Some(group), RunError::Reducer(e)) => group.failure(what, e),
            (_, error) => error,
        }
    }

    /// Evaluates on the held-out set, reports, logs to `metrics.jsonl` and records the result
    /// in the trainer state (saved with the next checkpoint).
    fn evaluate(&mut self, observer: &mut dyn TrainObserver) -> Result<EvalMetrics, RunError> {
        let step = self.parts.state.global_step;
        let parts = &mut self.parts;
        let shard = (parts.batches.rank, parts.batches.world_size);
        let mut progress = |done, total| observer.eval_progress(step, done, total);
        let sums = evaluate_shard(
            &parts.model.model,
            &parts.eval_set,
            parts.precision,
            shard,
            &mut progress,
        )?;
        let mut values = sums.to_vec();
        sum_over_ranks(self.parallel.as_ref().map(|(group, _)| *group), &mut values)?;
        let result = finish_metrics(&EvalSums::from_vec(&values));
        observer.eval(step, &result);
        let mut record = serde_json::to_value(result).unwrap_or_default();
        parts.state.last_eval = Some(record.clone());
        record["step"] = step.into();
        record["split"] = "eval".into();
        record["tokens_seen"] = parts.state.tokens_seen.into();
        self.append_metrics(&record)?;
        self.last_eval = Some((step, result));
        Ok(result)
    }

    /// Saves a checkpoint of the current step; an evaluation made at this step competes for
    /// the best checkpoint.
    fn save(&mut self, observer: &mut dyn TrainObserver) -> Result<(), RunError> {
        // Never save past a step that went non-finite.
        self.read_back_pending_steps()?;
        let step = self.parts.state.global_step;
        let metric = self
            .last_eval
            .filter(|(at, _)| *at == step)
            .map(|(_, metrics)| metrics.loss);
        let parts = &mut self.parts;
        parts.state.grad_scaler = parts.scaler.as_ref().map(GradScaler::state);
        let extras = CheckpointExtras {
            optimizer: Some(&parts.optimizer),
            resolved_config: Some(&self.job.resolved_config),
        };
        let model = &parts.model;
        let tokenizer = CorpusTokenizer {
            dir: &self.job.corpus_dir,
            files: &parts.tokenizer_files,
        };
        let write = |dir: &Path| write_model_files(dir, &model.vs, &model.config, &tokenizer);
        let dir = if self.metrics.is_some() {
            parts
                .checkpoints
                .save_with(step, extras, write, &mut parts.state, metric)?
        } else {
            // Another rank holds the same weights and state, and writes them (rank 0).
            parts.checkpoints.dir_for(step)
        };
        observer.saved(step, &dir);
        self.last_save = Instant::now();
        self.last_checkpoint = Some((step, dir));
        Ok(())
    }

    /// Ends the run: evaluates the final step (unless interrupted or already done) and saves
    /// it (unless already saved), exactly once whichever way the loop ended. Ranks of a
    /// data-parallel job leave together, once rank 0's last checkpoint is complete.
    fn finish(
        mut self,
        observer: &mut dyn TrainObserver,
        interrupted: bool,
    ) -> Result<TrainOutcome, RunError> {
        self.read_back_pending_steps()?;
        let step = self.parts.state.global_step;
        if !interrupted && self.last_eval.is_none_or(|(at, _)| at != step) {
            self.evaluate(observer)?;
        }
        if self
            .last_checkpoint
            .as_ref()
            .is_none_or(|(at, _)| *at != step)
        {
            self.save(observer)?;
        }
        let replicas = self.check_replicas(step)?;
        let graphed = self.parts.graphed.as_ref();
        Ok(TrainOutcome {
            graph_steps: graphed.map_or(0, GraphedStep::steps),
            graph_fallbacks: graphed.map_or(0, |g| g.counts().fallbacks()),
            final_step: step,
            last_checkpoint: self.last_checkpoint.map(|(_, dir)| dir),
            first_eval: self.first_eval,
            last_eval: self.last_eval.map(|(_, metrics)| metrics),
            interrupted,
            replicas,
        })
    }

    /// Data parallel: every rank holds the same weights (an error otherwise), and rank 0's
    /// last checkpoint is complete before any rank leaves. Returns the number of ranks.
    fn check_replicas(&self, step: u64) -> Result<Option<u32>, RunError> {
        let Some(group) = self.group() else {
            return Ok(None);
        };
        let weights: Vec<_> = named_variables(&self.parts.model.vs)
            .into_iter()
            .map(|(_, tensor)| tensor)
            .collect();
        group.check_replicas_agree(&weights, step)?;
        group.barrier("the barrier at the end of the run")?;
        Ok(Some(group.world_size()))
    }
}

/// 0-dim tensors on `device` read back in one transfer (`None`: 0).
fn host_values<'t>(
    tensors: impl Iterator<Item = Option<&'t Tensor>>,
    device: tch::Device,
) -> Vec<f64> {
    let values: Vec<Tensor> = tensors
        .map(|t| match t {
            Some(t) => t.to_kind(Kind::Double).reshape([1]),
            None => Tensor::zeros([1], (Kind::Double, device)),
        })
        .collect();
    let all = Tensor::cat(&values, 0).to_device(tch::Device::Cpu);
    Vec::<f64>::try_from(all).unwrap_or_default()
}

/// The trainer state after a step that read `batches` (`tokens`: over all ranks).
fn advance(state: &mut TrainerState, batches: &StepBatches, tokens: usize) {
    state.global_step += 1;
    state.epoch = batches.next.epoch;
    state.epoch_position = batches.next.position;
    state.tokens_seen += tokens as u64;
}

/// A step's token counts over all ranks.
struct StepTotals {
    masked_tokens: usize,
    tokens: usize,
    slots: usize,
}

/// Every rank starts from rank 0's weights (as DDP's `_sync_module_states`), then the
/// Reducer is set up over the trainable ones, in name order (the same on every rank).
fn join_data_parallel(group: &DataParallel, parts: &RunParts) -> Result<Reducer, RunError> {
    let all: Vec<_> = named_variables(&parts.model.vs)
        .into_iter()
        .map(|(_, tensor)| tensor)
        .collect();
    group.broadcast_from_main(&all)?;
    group.reducer(&trainable_named_variables(&parts.model.vs))
}

/// The tokenizer files of the prepared corpus (its manifest's `tokenizer_files`).
struct CorpusTokenizer<'a> {
    dir: &'a Path,
    files: &'a [String],
}

/// Tokenizer configs a corpus prepared before the tokenizer families may hold without
/// listing them in its manifest (whose `tokenizer_files` list every file since).
const UNLISTED_TOKENIZER_CONFIGS: [&str; 2] = ["tokenizer_config.json", "special_tokens_map.json"];

/// The model side of a checkpoint: weights, the model's `config.json` and the corpus
/// tokenizer, so a checkpoint is self-contained for `eval`, `export` and `fill-mask`.
fn write_model_files(
    dir: &Path,
    vs: &tch::nn::VarStore,
    config: &EncoderConfig,
    corpus: &CorpusTokenizer<'_>,
) -> Result<(), TrainError> {
    vs.save(dir.join("model.safetensors"))
        .map_err(|e| TrainError::external("writing model.safetensors", e))?;
    config
        .write_hf(&dir.join("config.json"))
        .map_err(|e| TrainError::external("writing config.json", e))?;
    let unlisted = UNLISTED_TOKENIZER_CONFIGS
        .iter()
        .map(|name| name.to_string());
    let names: BTreeSet<String> = corpus.files.iter().cloned().chain(unlisted).collect();
    for name in names {
        let source = corpus.dir.join(&name);
        if source.exists() {
            std::fs::copy(&source, dir.join(&name))
                .map_err(|e| TrainError::io("copy", &source, e))?;
        }
    }
    Ok(())
}
