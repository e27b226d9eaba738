//! The training loop. Reads top to bottom: resolve the job, build the model, resume, then
//! for each optimizer step: read batches, forward/backward, clip, step, log, evaluate, save.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mlm_corpus::{PreparedCorpus, Split};
use mlm_masking::MaskingConfig;
use mlm_torch_ext::{Autocast, AutocastDevice};
use serde::Serialize;
use tch::{Device, Kind};

use super::RunError;
use super::config::{CheckpointConfig, EvalConfig, ModelSection, Precision, TrainingConfig};
use super::data::{BatchPlan, DataPosition, MaskPlan, Prefetcher, masker_for};
use super::eval::{EvalMetrics, EvalSet, EvalSetSpec, evaluate};
use super::metrics::MetricsLog;
use super::model_setup::{BuiltModel, build_model, check_init_tokenizer, resolve_config};
use super::plan::{checked_schedule_for, effective_precision, estimate_memory};
use super::step::{StepContext, forward_backward};
use crate::TrainError;
use crate::checkpoint::{CheckpointExtras, CheckpointManager, TrainerState};
use crate::optim::{AdamW, AdamWConfig, clip_grad_norm, clip_grad_norm_foreach};

/// Everything a run needs, resolved by the caller (the CLI).
pub struct TrainJob {
    /// A prepared corpus (`mlm-train prepare`).
    pub corpus_dir: PathBuf,
    pub model: ModelSection,
    pub masking: MaskingConfig,
    pub training: TrainingConfig,
    pub eval: EvalConfig,
    pub checkpoint: CheckpointConfig,
    pub device: Device,
    /// The resolved config as TOML, saved with every checkpoint.
    pub resolved_config: String,
    /// Hash of everything that shapes the trajectory; a resume with another hash is refused.
    pub config_hash: String,
    pub resume: ResumePolicy,
    /// Stop (saving a checkpoint, as on SIGINT) once this many steps are done: time-sliced
    /// jobs, and tests of exact resume.
    pub stop_after_step: Option<u64>,
}

/// Which checkpoint a run starts from.
#[derive(Debug, Clone)]
pub enum ResumePolicy {
    /// The latest complete checkpoint in `training.output_dir`, if any.
    Auto { allow_config_change: bool },
    /// This checkpoint directory.
    From {
        dir: PathBuf,
        allow_config_change: bool,
    },
}

/// What the run will do, printed before it starts (and by `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainPlan {
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
    pub estimated_memory_bytes: u64,
    pub weights_loaded: Option<usize>,
    pub weights_initialised: Vec<String>,
    pub weights_ignored: Vec<String>,
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
    pub masked_tokens: usize,
}

/// Presentation of a run (progress bar, plain lines, nothing in tests).
pub trait TrainObserver {
    fn plan(&mut self, plan: &TrainPlan);
    fn step(&mut self, log: &StepLog);
    fn eval(&mut self, step: u64, metrics: &EvalMetrics);
    fn saved(&mut self, step: u64, dir: &Path);
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub final_step: u64,
    pub last_checkpoint: Option<PathBuf>,
    pub first_eval: Option<EvalMetrics>,
    pub last_eval: Option<EvalMetrics>,
    /// True when SIGINT/SIGTERM stopped the run (after saving).
    pub interrupted: bool,
}

/// Runs (or, with `dry_run`, only plans) the job. `stop` is raised by signal handlers: the
/// loop saves a checkpoint at the next step boundary and returns.
pub fn run_training(
    job: &TrainJob,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
    dry_run: bool,
) -> Result<TrainOutcome, RunError> {
    let training = &job.training;
    let corpus = PreparedCorpus::open(&job.corpus_dir)?;
    let manifest = corpus.manifest().clone();
    check_init_tokenizer(&job.model, &corpus)?;
    let model_config = resolve_config(&job.model, &manifest)?;
    let special = &manifest.special_ids;
    let masker = Arc::new(masker_for(&job.masking, &manifest)?);

    let train_reader = corpus.split(Split::Train)?;
    let mut eval_reader = corpus.split(Split::Validation)?;
    let plan = BatchPlan {
        micro_batch: training.batch_size.max(1),
        accumulation: training.gradient_accumulation_steps.max(1),
        rank: 0,
        world_size: 1,
        last_batch: training.last_batch,
    };
    let sequences = train_reader.len();
    let steps_per_epoch = plan.steps_per_epoch(sequences);
    if steps_per_epoch == 0 {
        return Err(RunError::TooFewSequences {
            sequences,
            batch: plan.global_batch(),
        });
    }
    let total_steps = training
        .max_steps
        .unwrap_or_else(|| (training.epochs * steps_per_epoch as f64).ceil() as u64);
    let schedule = checked_schedule_for(training, total_steps)?;

    // Model, optimizer and (when resuming) their saved state.
    let BuiltModel {
        mut vs,
        model,
        config: model_config,
        load_report,
    } = build_model(&job.model, &model_config, job.device, training.seed)?;
    let mut optimizer = AdamW::new(
        &vs,
        AdamWConfig {
            learning_rate: training.learning_rate,
            beta1: training.adam_beta1,
            beta2: training.adam_beta2,
            epsilon: training.adam_epsilon,
            weight_decay: training.weight_decay,
        },
    );
    optimizer.set_fused(training.fused_optimizer);
    let checkpoints = CheckpointManager::new(&training.output_dir, job.checkpoint.keep_last);
    let resume_dir = match &job.resume {
        ResumePolicy::Auto { .. } => checkpoints.latest()?,
        ResumePolicy::From { dir, .. } => Some(dir.clone()),
    };
    let allow_change = match &job.resume {
        ResumePolicy::Auto {
            allow_config_change,
        }
        | ResumePolicy::From {
            allow_config_change,
            ..
        } => *allow_config_change,
    };
    let mut state = TrainerState {
        global_step: 0,
        epoch: 0,
        epoch_position: 0,
        tokens_seen: 0,
        config_hash: job.config_hash.clone(),
        best_metric: None,
        best_checkpoint: None,
        last_eval: None,
        schedule: serde_json::to_value(&schedule).unwrap_or_default(),
    };
    if let Some(dir) = &resume_dir {
        let saved = CheckpointManager::read_state(dir)?;
        if saved.config_hash != job.config_hash && !allow_change {
            return Err(RunError::ConfigChanged {
                checkpoint: dir.clone(),
                saved: saved.config_hash,
                current: job.config_hash.clone(),
            });
        }
        vs.load(dir.join("model.safetensors"))?;
        optimizer.load(&dir.join("optimizer.safetensors"))?;
        state = TrainerState {
            config_hash: job.config_hash.clone(),
            ..saved
        };
    }

    let eval_spec = EvalSetSpec::new(&masker, &job.masking, &job.eval, &manifest);
    let eval_set = EvalSet::build(&mut eval_reader, &eval_spec)?;
    let precision = effective_precision(training.precision, job.device);
    let run_plan = TrainPlan {
        parameters: vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum(),
        device: crate::runtime::device_label(job.device),
        precision: format!("{precision:?}").to_lowercase(),
        train_sequences: sequences,
        eval_sequences: eval_set.sequences(),
        max_seq_len: manifest.max_seq_len,
        sequences_per_step: plan.global_batch(),
        tokens_per_step: plan.global_batch() * manifest.max_seq_len as u64,
        steps_per_epoch,
        total_steps,
        start_step: state.global_step,
        resumed_from: resume_dir.clone(),
        estimated_memory_bytes: estimate_memory(&model_config, &plan, &manifest, precision),
        weights_loaded: load_report.as_ref().map(|r| r.loaded.len()),
        weights_initialised: load_report
            .as_ref()
            .map(|r| r.initialised.clone())
            .unwrap_or_default(),
        weights_ignored: load_report
            .as_ref()
            .map(|r| r.ignored.clone())
            .unwrap_or_default(),
    };
    observer.plan(&run_plan);
    if dry_run {
        return Ok(TrainOutcome {
            final_step: state.global_step,
            last_checkpoint: resume_dir,
            first_eval: None,
            last_eval: None,
            interrupted: false,
        });
    }

    std::fs::create_dir_all(&training.output_dir).map_err(|source| RunError::Io {
        what: format!("training.output_dir {}", training.output_dir.display()),
        source,
    })?;
    let resume_step = resume_dir.as_ref().map(|_| state.global_step);
    let mut metrics = MetricsLog::open(&training.output_dir, resume_step)?;
    let autocast = move |f: &mut dyn FnMut()| match (precision, job.device) {
        (Precision::Bf16, Device::Cuda(_)) => {
            let _guard = Autocast::new(AutocastDevice::Cuda, Kind::BFloat16);
            f();
        }
        (Precision::Bf16, Device::Cpu) => {
            let _guard = Autocast::new(AutocastDevice::Cpu, Kind::BFloat16);
            f();
        }
        _ => f(),
    };

    let mut first_eval = None;
    let mut last_eval = None;
    // Evaluates, reports, logs to metrics.jsonl and records the result in the trainer state.
    let evaluate_now =
        |state: &mut TrainerState, metrics: &mut MetricsLog, observer: &mut dyn TrainObserver| {
            let step = state.global_step;
            let result = evaluate(&model, &eval_set, job.device, &autocast);
            observer.eval(step, &result);
            let mut record = serde_json::to_value(result).unwrap_or_default();
            state.last_eval = Some(record.clone());
            record["step"] = step.into();
            record["split"] = "eval".into();
            metrics.append(&record).map(|()| result)
        };
    if state.global_step == 0 {
        let result = evaluate_now(&mut state, &mut metrics, observer)?;
        first_eval = Some(result);
        last_eval = Some(result);
    }

    let masks = MaskPlan {
        masker: Arc::clone(&masker),
        seed: training.seed,
        data_seed: training.data_seed.unwrap_or(training.seed),
        order_block: manifest.row_group_sequences as u64,
        whole_word: job.masking.whole_word_mask,
        pad_id: special.pad,
        mask_id: special.mask,
        pad_to_multiple_of: job.masking.pad_to_multiple_of,
    };
    let start = DataPosition {
        epoch: state.epoch,
        position: state.epoch_position,
    };
    let loader = Prefetcher::start(train_reader, plan, masks, start, training.prefetch);
    let writer = CheckpointWriter {
        manager: &checkpoints,
        job,
        vs: &vs,
        model_config: &model_config,
    };
    let mut last_checkpoint = resume_dir;
    let mut last_save = Instant::now();
    let mut window = Instant::now();
    let mut window_tokens = 0usize;
    let mut saved_at = state.global_step;
    let mut evaluated_at = if state.global_step == 0 {
        Some(0)
    } else {
        None
    };
    let mut interrupted = false;

    while state.global_step < total_steps {
        let stop_here = job.stop_after_step.is_some_and(|k| state.global_step >= k);
        if stop.load(Ordering::SeqCst) || stop_here {
            interrupted = true;
            break;
        }
        let step = state.global_step;
        let batches = loader.next_step()?;
        optimizer.zero_grad();
        let context = StepContext {
            device: job.device,
            seed: training.seed,
            step,
            rank: 0,
            normaliser: batches.masked_tokens.max(1) as f64,
            autocast: &autocast,
        };
        let loss_sum = forward_backward(&model, &batches.micro_batches, &context);
        let loss = loss_sum / batches.masked_tokens.max(1) as f64;
        if !loss.is_finite() {
            return Err(RunError::NonFiniteLoss {
                step: step + 1,
                loss,
                last_checkpoint,
            });
        }
        let max_norm = if training.max_grad_norm > 0.0 {
            training.max_grad_norm
        } else {
            f64::INFINITY
        };
        let grad_norm = if training.fused_optimizer {
            clip_grad_norm_foreach(&vs, max_norm)
        } else {
            clip_grad_norm(&vs, max_norm)
        };
        let learning_rate = schedule.lr_at(step);
        optimizer.step(learning_rate);
        state.global_step = step + 1;
        state.epoch = batches.next.epoch;
        state.epoch_position = batches.next.position;
        state.tokens_seen += batches.tokens as u64;
        window_tokens += batches.tokens;

        let step = state.global_step;
        let logging = training.logging_steps.max(1);
        if step.is_multiple_of(logging) || step == total_steps {
            let elapsed = window.elapsed().as_secs_f64().max(1e-9);
            let log = StepLog {
                step,
                total_steps,
                epoch: batches.start.epoch as f64
                    + (batches.start.position + plan.global_batch()) as f64
                        / (steps_per_epoch * plan.global_batch()) as f64,
                loss,
                learning_rate,
                grad_norm,
                tokens_per_second: window_tokens as f64 / elapsed,
                masked_tokens: batches.masked_tokens,
            };
            observer.step(&log);
            let mut record = serde_json::to_value(&log).unwrap_or_default();
            record["split"] = "train".into();
            metrics.append(&record)?;
            window = Instant::now();
            window_tokens = 0;
        }
        let mut metric = None;
        if job.eval.eval_steps > 0 && step.is_multiple_of(job.eval.eval_steps) {
            let result = evaluate_now(&mut state, &mut metrics, observer)?;
            last_eval = Some(result);
            metric = Some(result.loss);
            evaluated_at = Some(step);
        }
        let by_steps =
            job.checkpoint.save_steps > 0 && step.is_multiple_of(job.checkpoint.save_steps);
        let by_time = job
            .checkpoint
            .save_minutes
            .is_some_and(|m| last_save.elapsed().as_secs_f64() >= m * 60.0);
        if by_steps || by_time {
            last_checkpoint = Some(writer.save(&optimizer, &mut state, metric, observer)?);
            last_save = Instant::now();
            saved_at = step;
        }
    }
    drop(loader);

    let step = state.global_step;
    let mut metric = None;
    if !interrupted && evaluated_at != Some(step) {
        let result = evaluate_now(&mut state, &mut metrics, observer)?;
        last_eval = Some(result);
        metric = Some(result.loss);
    }
    if saved_at != step || last_checkpoint.is_none() {
        last_checkpoint = Some(writer.save(&optimizer, &mut state, metric, observer)?);
    }
    Ok(TrainOutcome {
        final_step: step,
        last_checkpoint,
        first_eval,
        last_eval,
        interrupted,
    })
}

/// Writes this run's checkpoints: weights, optimizer state, trainer state, resolved config,
/// the model's `config.json` and the corpus tokenizer (so a checkpoint is self-contained for
/// `eval`, `export` and `fill-mask`).
struct CheckpointWriter<'a> {
    manager: &'a CheckpointManager,
    job: &'a TrainJob,
    vs: &'a tch::nn::VarStore,
    model_config: &'a crate::model::BertConfig,
}

impl CheckpointWriter<'_> {
    fn save(
        &self,
        optimizer: &AdamW,
        state: &mut TrainerState,
        metric: Option<f64>,
        observer: &mut dyn TrainObserver,
    ) -> Result<PathBuf, RunError> {
        let extras = CheckpointExtras {
            optimizer: Some(optimizer),
            resolved_config: Some(&self.job.resolved_config),
        };
        let dir = self.manager.save_with(
            state.global_step,
            extras,
            |dir| {
                self.vs
                    .save(dir.join("model.safetensors"))
                    .map_err(|e| TrainError::external("writing model.safetensors", e))?;
                self.model_config
                    .write_hf(&dir.join("config.json"))
                    .map_err(|e| TrainError::external("writing config.json", e))?;
                copy_tokenizer(&self.job.corpus_dir, dir)
            },
            state,
            metric,
        )?;
        observer.saved(state.global_step, &dir);
        Ok(dir)
    }
}

fn copy_tokenizer(corpus_dir: &Path, dir: &Path) -> Result<(), TrainError> {
    for name in ["tokenizer.json", "vocab.txt", "tokenizer_config.json"] {
        let source = corpus_dir.join(name);
        if source.exists() {
            std::fs::copy(&source, dir.join(name))
                .map_err(|e| TrainError::io("copy", &source, e))?;
        }
    }
    Ok(())
}
