//! Opening a run: everything before the first step, with nothing written yet. The corpus
//! and the model are checked against each other, the step budget and schedule fixed, the
//! model built, the checkpoint to resume from (if any) loaded, the held-out set masked, and
//! the plan made that `--dry-run` prints.

use std::path::PathBuf;
use std::sync::Arc;

use mlm_corpus::{Manifest, PreparedCorpus, Split, SplitReader};
use mlm_masking::{Masker, MaskingUnit, padded_len};

use super::RunError;
use super::config::checked_schedule_for;
use super::config::{LastBatch, TrainingConfig};
use super::data::{BatchPlan, MaskPlan, RatePlan, UnitStarts, masker_for};
use super::eval::{EvalSet, EvalSetSpec};
use super::flops::{DevicePeak, ModelFlops, device_peak};
use super::graphed::{GraphedStep, StaticShape, WARMUP_STEPS};
use super::job::{ResumeCheck, TrainJob, TrainPlan, WeightsReport};
use super::logging::LoggingConfig;
use super::model_setup::{BuiltModel, build_model, check_init_tokenizer, resolve_config};
use super::parallel::DataParallel;
use super::plan::estimate_memory;
use super::precision::ForwardPrecision;
use super::resume_key::resume_key;
use crate::checkpoint::{CheckpointManager, TrainerState, verify_checkpoint};
use crate::model::{EncoderConfig, UnpaddedAttention};
use crate::optim::{AdamW, GradScaler};
use crate::runtime::device_label;
use crate::schedule::Schedule;

/// A run opened: ready for its first (or resumed) step.
pub(super) struct Run<'a> {
    pub job: &'a TrainJob,
    pub plan: TrainPlan,
    pub parts: RunParts,
    pub train_reader: SplitReader,
    pub masks: MaskPlan,
}

/// What the loop steps, evaluates and saves.
pub(super) struct RunParts {
    pub model: BuiltModel,
    pub optimizer: AdamW,
    pub schedule: Schedule,
    pub state: TrainerState,
    pub eval_set: EvalSet,
    pub checkpoints: CheckpointManager,
    pub precision: ForwardPrecision,
    pub batches: BatchPlan,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub resumed_from: Option<PathBuf>,
    pub resume_check: ResumeCheck,
    /// The corpus's tokenizer files, copied into every checkpoint.
    pub tokenizer_files: Vec<String>,
    /// fp16: the loss scaler (restored from the checkpoint on resume).
    pub scaler: Option<GradScaler>,
    /// The model's training FLOPs per token and the device's peak, for MFU.
    pub flops: ModelFlops,
    pub peak: Option<DevicePeak>,
    /// `training.cuda_graphs`: the fixed-shape step.
    pub graphed: Option<GraphedStep>,
    /// `training.unpad`: how attention sees the unpadded rows.
    pub unpad: Option<UnpaddedAttention>,
}

impl<'a> Run<'a> {
    pub fn open(job: &'a TrainJob) -> Result<Self, RunError> {
        let corpus = PreparedCorpus::open(&job.corpus_dir)?;
        let manifest = corpus.manifest().clone();
        let growth = check_init_tokenizer(&job.model, &corpus)?;
        let model_config = resolve_config(&job.model, &manifest, growth.as_ref())?;
        let masker = Arc::new(masker_for(&job.masking, &manifest)?);
        let train_reader = corpus.split(Split::Train)?;
        let batches = batch_plan(&job.training, job.parallel.as_deref())?;
        if job.training.cuda_graphs && job.parallel.is_some() {
            return Err(RunError::InvalidConfig(
                "training.cuda_graphs = true needs a single process: the step's gradient \
                 all-reduce cannot be captured yet; launch one process, or set \
                 training.cuda_graphs = false"
                    .into(),
            ));
        }
        let (steps_per_epoch, total_steps) =
            step_budget(&job.training, &batches, train_reader.len())?;
        let schedule = checked_schedule_for(&job.training, total_steps)?;

        let precision = ForwardPrecision::new(job.training.precision, job.device)
            .with_tf32(job.training.tf32)?;
        let mut model = build_model(
            &job.model,
            &model_config,
            job.device,
            job.training.seed,
            growth.as_ref(),
        )?;
        if precision.weight_kind() == tch::Kind::Double {
            model.vs.double();
        }
        let mut optimizer = optimizer_for(&model, &job.training);
        let fresh = fresh_state(resume_key(job, &manifest, &model_config)?, &schedule);
        let checkpoints =
            CheckpointManager::new(&job.training.output_dir, job.checkpoint.keep_last);
        let (state, resumed_from, resume_check) =
            resume(job, &checkpoints, &mut model, &mut optimizer, fresh)?;
        let scaler = precision
            .needs_loss_scaling()
            .then(|| match state.grad_scaler {
                Some(saved) => GradScaler::from_state(saved, job.device),
                None => GradScaler::new(job.device),
            });

        let graphed = job
            .training
            .cuda_graphs
            .then(|| graphed_step(job, &manifest, precision))
            .transpose()?;
        let eval_spec = EvalSetSpec::new(&job.masking, &job.eval, &manifest)?;
        let eval_set = EvalSet::build(&mut corpus.split(Split::Validation)?, &eval_spec)?;
        let parts = RunParts {
            model,
            optimizer,
            schedule,
            state,
            eval_set,
            checkpoints,
            precision,
            batches,
            steps_per_epoch,
            total_steps,
            resumed_from,
            resume_check,
            tokenizer_files: manifest.tokenizer_files.clone(),
            scaler,
            flops: model_config.cost(manifest.max_seq_len).flops,
            peak: peak_for(&job.logging, precision),
            graphed,
            unpad: job
                .training
                .unpad
                .then(|| unpadded_attention(&model_config, precision)),
        };
        Ok(Self {
            job,
            plan: parts.plan(
                &manifest,
                train_reader.len(),
                masking_line(job, &manifest, total_steps),
                // The rate schedule is linear: its mean is the mean of its ends.
                (job.masking.mlm_probability + job.masking.probability_at(u64::MAX, total_steps))
                    / 2.0,
            ),
            parts,
            train_reader,
            masks: mask_plan(job, &manifest, masker, steps_per_epoch, total_steps),
        })
    }
}

/// `training.unpad`'s attention: FlashAttention's varlen kernel where it runs (CUDA sm80+,
/// bf16/fp16, a head size that is a multiple of 8 up to 256), else SDPA on the rows scattered
/// back into the padded batch.
pub(crate) fn unpadded_attention(
    config: &EncoderConfig,
    precision: ForwardPrecision,
) -> UnpaddedAttention {
    let head_dim = config.hidden_size / config.num_attention_heads;
    let eligible = precision.has_flash_attention() && head_dim % 8 == 0 && head_dim <= 256;
    if eligible && config.architecture().attention_window(config).is_some() {
        UnpaddedAttention::WindowedVarlen
    } else if eligible {
        UnpaddedAttention::Varlen
    } else {
        UnpaddedAttention::Padded
    }
}

/// The plan's attention line for a family with local attention: the window and which
/// attention computes it (`unpad`: the run's unpadded attention, if any).
pub(crate) fn attention_line(
    config: &EncoderConfig,
    unpad: Option<UnpaddedAttention>,
) -> Option<String> {
    let half_window = config.architecture().attention_window(config)?;
    let how = if unpad.is_some_and(UnpaddedAttention::is_varlen) {
        "the window in FlashAttention's varlen kernel"
    } else {
        "SDPA with the window as a mask"
    };
    Some(format!(
        "local layers attend {half_window} tokens either side ({how})"
    ))
}

/// `training.cuda_graphs`: micro-batches of `batch_size` sequences padded to the corpus's
/// longest (rounded up as `masking.pad_to_multiple_of` rounds batches).
fn graphed_step(
    job: &TrainJob,
    manifest: &Manifest,
    precision: ForwardPrecision,
) -> Result<GraphedStep, RunError> {
    let seq_len = padded_len(manifest.max_seq_len, job.masking.pad_to_multiple_of);
    let shape = StaticShape::new(job.training.batch_size, seq_len, &job.masking);
    let loss_kind = match precision.weight_kind() {
        tch::Kind::Double => tch::Kind::Double,
        _ => tch::Kind::Float,
    };
    let pad_id = i64::from(manifest.special_ids.pad);
    GraphedStep::new(shape, pad_id, precision.device(), loss_kind)
}

/// This rank's share of each global batch: `gradient_accumulation_steps` micro-batches of
/// `batch_size` sequences, so the global batch is their product times the world size.
pub(super) fn batch_plan(
    training: &TrainingConfig,
    parallel: Option<&DataParallel>,
) -> Result<BatchPlan, RunError> {
    let (rank, world_size) = parallel.map_or((0, 1), |p| (p.rank(), p.world_size()));
    if world_size > 1 && training.last_batch == LastBatch::Keep {
        // A partial last batch would leave some ranks without a micro-batch to join the
        // all-reduce with.
        return Err(RunError::InvalidConfig(
            "training.last_batch = \"keep\" is not supported with data parallelism (world size \
             above 1): use \"drop\""
                .into(),
        ));
    }
    Ok(BatchPlan {
        micro_batch: training.batch_size,
        accumulation: training.gradient_accumulation_steps,
        rank,
        world_size,
        last_batch: training.last_batch,
    })
}

/// (steps per epoch, total steps): `max_steps`, else `epochs` passes over the train split.
/// (steps per epoch, total steps) of a one-process run of `training` over `sequences`
/// (`inspect --masks-at-step`: the step the rate schedule is at).
pub fn run_steps(training: &TrainingConfig, sequences: u64) -> Result<(u64, u64), RunError> {
    step_budget(training, &batch_plan(training, None)?, sequences)
}

pub(super) fn step_budget(
    training: &TrainingConfig,
    batches: &BatchPlan,
    sequences: u64,
) -> Result<(u64, u64), RunError> {
    let steps_per_epoch = batches.steps_per_epoch(sequences);
    if steps_per_epoch == 0 {
        return Err(RunError::TooFewSequences {
            sequences,
            batch: batches.global_batch(),
        });
    }
    let total = training
        .max_steps
        .unwrap_or_else(|| (training.epochs * steps_per_epoch as f64).ceil() as u64);
    Ok((steps_per_epoch, total))
}

fn optimizer_for(model: &BuiltModel, training: &TrainingConfig) -> AdamW {
    let mut optimizer = AdamW::new(&model.vs, training.adamw());
    optimizer.set_fused(training.fused_optimizer);
    optimizer
}

fn fresh_state(resume_key: String, schedule: &Schedule) -> TrainerState {
    TrainerState {
        config_hash: resume_key,
        schedule: serde_json::to_value(schedule).unwrap_or_default(),
        ..TrainerState::default()
    }
}

/// The state to start from: `fresh`, or the checkpoint's (`--resume DIR`, else the newest
/// intact one in the run directory) with its weights and optimizer state loaded, once its
/// resume key matches (or `--allow-config-change`). Every byte of the checkpoint is
/// checked against its `integrity.json` first: a damaged `--resume DIR` is an error, a
/// damaged latest checkpoint is passed over for the one before (reported in the plan).
fn resume(
    job: &TrainJob,
    checkpoints: &CheckpointManager,
    model: &mut BuiltModel,
    optimizer: &mut AdamW,
    fresh: TrainerState,
) -> Result<(TrainerState, Option<PathBuf>, ResumeCheck), RunError> {
    let (dir, check) = checkpoint_to_resume(job, checkpoints)?;
    let Some(dir) = dir else {
        return Ok((fresh, None, check));
    };
    let saved = CheckpointManager::read_state(&dir)?;
    if saved.config_hash != fresh.config_hash && !job.resume.allow_config_change {
        return Err(RunError::ConfigChanged {
            checkpoint: dir,
            saved: saved.config_hash,
            current: fresh.config_hash,
        });
    }
    model.vs.load(dir.join("model.safetensors"))?;
    optimizer.load(&dir.join("optimizer.safetensors"))?;
    let state = TrainerState {
        config_hash: fresh.config_hash,
        ..saved
    };
    Ok((state, Some(dir), check))
}

/// The checkpoint to resume from, checked in full. When every checkpoint of the run
/// directory is damaged the newest one's error is returned: starting afresh would silently
/// throw the run away.
fn checkpoint_to_resume(
    job: &TrainJob,
    checkpoints: &CheckpointManager,
) -> Result<(Option<PathBuf>, ResumeCheck), RunError> {
    if let Some(dir) = &job.resume.from {
        let verified = verify_checkpoint(dir, mlm_integrity::Level::Full)?;
        let check = ResumeCheck {
            refused: Vec::new(),
            unverified: verified == mlm_integrity::Verified::NoManifest,
        };
        return Ok((Some(dir.clone()), check));
    }
    let search = checkpoints.latest_intact()?;
    let Some((dir, verified)) = search.found else {
        return match search.refused.into_iter().next() {
            Some((_, newest_error)) => Err(newest_error.into()),
            None => Ok((None, ResumeCheck::default())),
        };
    };
    let refused = search
        .refused
        .into_iter()
        .map(|(dir, error)| (dir, error_chain(&error)))
        .collect();
    let check = ResumeCheck {
        refused,
        unverified: verified == mlm_integrity::Verified::NoManifest,
    };
    Ok((Some(dir), check))
}

/// `error: cause: cause`, for a reason kept as text in the plan.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The peak MFU is measured against: `[logging] peak_tflops`, else the device's own.
pub(super) fn peak_for(logging: &LoggingConfig, precision: ForwardPrecision) -> Option<DevicePeak> {
    match logging.peak_tflops {
        Some(tflops) => Some(DevicePeak {
            tflops,
            source: "logging.peak_tflops".to_owned(),
        }),
        None => device_peak(precision.device(), precision.matmul_format()),
    }
}

/// How the loader masks and collates: the training keys of the data contract (DESIGN.md).
fn mask_plan(
    job: &TrainJob,
    manifest: &Manifest,
    masker: Arc<Masker>,
    steps_per_epoch: u64,
    total_steps: u64,
) -> MaskPlan {
    MaskPlan {
        masker,
        seed: job.training.seed,
        data_seed: job.training.data_seed.unwrap_or(job.training.seed),
        order_block: manifest.row_group_sequences as u64,
        unit_starts: UnitStarts::for_unit(job.masking.unit()),
        rate: RatePlan {
            masking: job.masking.clone(),
            steps_per_epoch,
            total_steps,
        },
        pad_id: manifest.special_ids.pad,
        mask_id: manifest.special_ids.mask,
        pad_to_multiple_of: job.masking.pad_to_multiple_of,
        group_by_length: job.training.group_by_length,
    }
}

/// The plan's masking line: the training unit and rate (and its schedule), and the held-out
/// masks every run is scored on.
fn masking_line(job: &TrainJob, manifest: &Manifest, total_steps: u64) -> String {
    let masking = &job.masking;
    let unit = match masking.unit() {
        MaskingUnit::Token => "tokens, 80/10/10 per token".to_owned(),
        MaskingUnit::Word => "whole words, 80/10/10 per piece".to_owned(),
        MaskingUnit::Span => format!(
            "spans of whole words (Geometric({}) clipped at {} words), 80/10/10 per span",
            masking.span_geometric_p, masking.span_max_words
        ),
        MaskingUnit::Phrase => match &manifest.phrases {
            Some(p) => format!(
                "phrases and words ({} phrases, {} matches covering {} training tokens), \
                 80/10/10 per unit",
                p.phrases, p.train_matches, p.train_phrase_tokens
            ),
            None => "phrases and words".to_owned(),
        },
    };
    let rate = match masking.mlm_probability_end {
        Some(end) => format!(
            "{} -> {end} linearly over {total_steps} steps",
            masking.mlm_probability
        ),
        None => masking.mlm_probability.to_string(),
    };
    let held_out = match job.eval.unit {
        super::config::EvalUnit::Token => "tokens",
        super::config::EvalUnit::Word => "whole words",
    };
    format!(
        "{unit} at {rate}; held-out: {held_out} at {}",
        job.eval.mlm_probability
    )
}

impl RunParts {
    fn plan(
        &self,
        manifest: &Manifest,
        train_sequences: u64,
        masking: String,
        masked_share: f64,
    ) -> TrainPlan {
        let config = &self.model.config;
        let global_batch = self.batches.global_batch();
        TrainPlan {
            model: config.masked_lm_class().to_owned(),
            attention: attention_line(config, self.unpad),
            masking,
            parameters: config.num_trainable_parameters(),
            device: device_label(self.precision.device()),
            precision: self.precision.label().to_owned(),
            train_sequences,
            eval_sequences: self.eval_set.sequences(),
            max_seq_len: manifest.max_seq_len,
            sequences_per_step: global_batch,
            tokens_per_step: global_batch * manifest.max_seq_len as u64,
            steps_per_epoch: self.steps_per_epoch,
            total_steps: self.total_steps,
            start_step: self.state.global_step,
            resumed_from: self.resumed_from.clone(),
            resume_check: self.resume_check.clone(),
            estimated_memory_bytes: estimate_memory(
                config,
                &self.batches,
                manifest.max_seq_len,
                self.precision,
            ),
            flops_per_token: self.flops.per_token_at(masked_share),
            peak_tflops: self.peak.as_ref().map(|peak| peak.tflops),
            peak_source: self.peak.as_ref().map(|peak| peak.source.clone()),
            unpad: self.unpad.map(|attention| {
                match attention {
                    UnpaddedAttention::Varlen => "attention by FlashAttention's varlen kernel",
                    UnpaddedAttention::WindowedVarlen => {
                        "attention by FlashAttention's varlen kernel, the local layers' window \
                         in the kernel (batches without padding too)"
                    }
                    UnpaddedAttention::Padded => "attention on the padded batch (SDPA)",
                }
                .to_owned()
            }),
            cuda_graphs: self.graphed.as_ref().map(|graphed| {
                let shape = graphed.shape();
                let capture = if self.precision.device().is_cuda() {
                    format!("captured after {WARMUP_STEPS} warm-up steps")
                } else {
                    "not captured on the CPU (the same step runs eagerly)".to_owned()
                };
                format!(
                    "micro-batches of {} x {} tokens, {} masked slots; {capture}",
                    shape.rows, shape.seq_len, shape.masked_slots
                )
            }),
            weights: self.model.load_report.as_ref().map(|report| WeightsReport {
                loaded: report.loaded.len(),
                initialised: report.initialised.clone(),
                ignored: report.ignored.clone(),
                unexpected: report.unexpected.clone(),
                vocabulary: report.vocabulary.as_ref().map(|v| v.summary()),
            }),
        }
    }
}
