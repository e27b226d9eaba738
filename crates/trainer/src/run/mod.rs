//! The training run: open a job (corpus, model, resume point, plan), then train, evaluate and
//! save until the step budget is spent. The loop ([`run_training`], in `train`) reads top to
//! bottom; the data stream (`data`), the forward/backward of a step (`step`), the forward's
//! precision (`precision`), evaluation (`eval`), the log / eval / save cadence (`cadence`),
//! the resume guard (`resume_key`) and the metrics log (`metrics`, with its TensorBoard sink,
//! `logging` / `tensorboard`) are separate so each can
//! change (data parallelism, new architectures) without touching the others. Presentation
//! goes through [`TrainObserver`].
//!
//! The public API is what the CLI needs: the config sections, [`run_training`] and its
//! types, and [`evaluate_checkpoint`]; and what a replay of a run by a reference
//! implementation needs ([`TrainObserver::trained_on`], [`dropout_seed`]). Everything else is
//! private to the run.

mod cadence;
mod config;
mod data;
mod estimate;
mod eval;
mod flops;
mod graphed;
mod job;
mod logging;
mod metrics;
mod model_setup;
mod open;
mod parallel;
mod plan;
mod precision;
mod resume_key;
mod step;
mod tensorboard;
mod train;
mod word_eval;

use std::path::PathBuf;

pub use config::{
    CheckpointConfig, EvalConfig, EvalUnit, LastBatch, ModelSection, Precision, TrainingConfig,
};
pub use data::{DataPosition, RatePlan, UnitStarts, masker_for};
pub use estimate::{CorpusEstimate, estimated_plan};
pub use eval::{CheckpointEval, EvalMetrics, evaluate_checkpoint, evaluate_checkpoint_with};
pub use job::{
    GraphCounts, ResumePolicy, StepLog, TrainJob, TrainObserver, TrainOutcome, TrainPlan,
    WeightsReport,
};
pub use logging::LoggingConfig;
pub use open::run_steps;
pub use parallel::{BackendChoice, DataParallel, DistributedConfig};
pub use step::dropout_seed;
pub use train::run_training;
pub use word_eval::{WordMetrics, evaluate_checkpoint_words};

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Corpus(#[from] mlm_corpus::CorpusError),
    #[error(transparent)]
    Masking(#[from] mlm_masking::MaskingError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Train(#[from] crate::TrainError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error("cannot run the forward pass in {dtype} autocast on {device}")]
    Autocast {
        device: String,
        dtype: &'static str,
        #[source]
        source: mlm_torch_ext::TorchExtError,
    },
    #[error(
        "training.precision = \"{dtype}\" needs autocast, which libtorch offers on cpu and cuda, \
         not on {device}"
    )]
    AutocastUnsupported { device: String, dtype: &'static str },
    #[error("cannot write {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the model's vocabulary has {model} tokens but the corpus was tokenized with {corpus}: \
         prepare the corpus with the model's tokenizer"
    )]
    VocabMismatch { model: u32, corpus: u32 },
    #[error(
        "the model's vocabulary ({model_size} tokens) is not the base of the corpus's extended \
         vocabulary ({base_size} tokens): id {id} is {model_token:?} in the model and \
         {corpus_token:?} in the corpus; extend the model's own vocabulary (vocab.extend_from = \
         the model directory) and prepare the corpus again"
    )]
    VocabNotPrefix {
        id: u32,
        model_token: String,
        corpus_token: String,
        base_size: u32,
        model_size: u32,
    },
    #[error(
        "corpus.max_seq_len = {seq_len} is longer than the {positions} positions the model serves \
         (max_position_embeddings = {table}{})",
        if positions == table { "" } else { ", less RoBERTa's pad_token_id + 1 offset" }
    )]
    SequenceTooLong {
        seq_len: usize,
        positions: usize,
        table: usize,
    },
    #[error("{0}")]
    InvalidConfig(String),
    #[error(
        "the held-out split is empty: set corpus.validation_fraction above 0 or give \
         corpus.validation_inputs, and prepare the corpus again"
    )]
    EmptyEvalSet,
    #[error(
        "the training split holds {sequences} sequences, fewer than one global batch of {batch}"
    )]
    TooFewSequences { sequences: u64, batch: u64 },
    #[error(
        "the config changed since checkpoint {checkpoint} was written (resume key {saved} -> \
         {current}: the corpus, the model or a [masking] / [training] value differs); resume \
         anyway with --allow-config-change, or use a new training.output_dir"
    )]
    ConfigChanged {
        checkpoint: PathBuf,
        saved: String,
        current: String,
    },
    #[error(
        "{what} became {value} at step {step}; stopped (that step's update was not applied). \
         The last good checkpoint is {}",
        last_checkpoint.as_ref().map_or("none (no checkpoint was saved yet)".to_string(), |p| p.display().to_string())
    )]
    NonFinite {
        /// "the loss" or "the gradient norm".
        what: &'static str,
        step: u64,
        value: f64,
        last_checkpoint: Option<PathBuf>,
    },
    #[error("data parallel: {message}")]
    Distributed {
        rank: u32,
        message: String,
        #[source]
        source: Option<mlm_torch_ext::TorchExtError>,
    },
    #[error("data parallel: the DDP reducer refused the step")]
    Reducer(#[source] mlm_torch_ext::TorchExtError),
    #[error("the batch loader thread stopped")]
    LoaderStopped,
    #[error(
        "training.cuda_graphs: cannot {what} (set training.cuda_graphs = false to train \
         without graphs)"
    )]
    CudaGraph {
        what: &'static str,
        #[source]
        source: mlm_torch_ext::TorchExtError,
    },
    /// FlashAttention's varlen kernel refused a batch the run chose it for.
    #[error(
        "training.unpad: FlashAttention's varlen kernel refused the batch (set \
         training.unpad = false to attend on padded batches)"
    )]
    Unpad {
        #[source]
        source: mlm_torch_ext::TorchExtError,
    },
}

#[cfg(test)]
mod cuda_tests;
#[cfg(test)]
mod unpad_check;
