//! The plan of a run whose corpus is not prepared yet (`--dry-run` before `prepare`): the
//! same model config, step budget, memory estimate and FLOPs as [`super::open`] computes for
//! a prepared corpus, from token and sequence counts estimated from the inputs' sizes.

use tch::Device;

use super::RunError;
use super::config::{ModelSection, TrainingConfig};
use super::job::{ResumeCheck, TrainPlan};
use super::logging::LoggingConfig;
use super::model_setup::planned_config;
use super::open::{batch_plan, peak_for, step_budget};
use super::plan::estimate_memory;
use super::precision::ForwardPrecision;
use crate::model::SpecialIds;
use crate::runtime::device_label;

/// What is known of a corpus before it is prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusEstimate {
    /// The vocabulary's size (`[vocab]`'s, or the tokenizer's).
    pub vocab_size: u64,
    pub max_seq_len: usize,
    /// The tokenizer's special ids, when the tokenizer exists already.
    pub special_ids: Option<SpecialIds>,
    pub train_sequences: u64,
    pub eval_sequences: u64,
}

/// The plan of `[model]` and `[training]` over an estimated corpus, on `device` (`[logging]`
/// for the peak MFU is measured against).
pub fn estimated_plan(
    model: &ModelSection,
    training: &TrainingConfig,
    logging: &LoggingConfig,
    mlm_probability: f64,
    device: Device,
    corpus: &CorpusEstimate,
) -> Result<TrainPlan, RunError> {
    let config = planned_config(
        model,
        corpus.vocab_size,
        corpus.max_seq_len,
        corpus.special_ids,
    )?;
    let batches = batch_plan(training, None)?;
    let (steps_per_epoch, total_steps) = step_budget(training, &batches, corpus.train_sequences)?;
    let precision = ForwardPrecision::new(training.precision, device);
    let peak = peak_for(logging, precision);
    let global_batch = batches.global_batch();
    Ok(TrainPlan {
        model: config.masked_lm_class().to_owned(),
        attention: super::open::attention_line(
            &config,
            training
                .unpad
                .then(|| super::open::unpadded_attention(&config, precision)),
        ),
        parameters: config.num_trainable_parameters(),
        device: device_label(device),
        precision: precision.label().to_owned(),
        train_sequences: corpus.train_sequences,
        eval_sequences: corpus.eval_sequences,
        max_seq_len: corpus.max_seq_len,
        sequences_per_step: global_batch,
        tokens_per_step: global_batch * corpus.max_seq_len as u64,
        steps_per_epoch,
        total_steps,
        start_step: 0,
        resumed_from: None,
        resume_check: ResumeCheck::default(),
        estimated_memory_bytes: estimate_memory(&config, &batches, corpus.max_seq_len, precision),
        flops_per_token: config
            .cost(corpus.max_seq_len)
            .flops
            .per_token_at(mlm_probability),
        peak_tflops: peak.as_ref().map(|peak| peak.tflops),
        peak_source: peak.map(|peak| peak.source),
        weights: None,
        cuda_graphs: None,
        unpad: None,
        masking: format!("[masking] at {mlm_probability} (the corpus is not prepared yet)"),
    })
}
