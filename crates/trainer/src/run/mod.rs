//! The training run: resolve a job, build or load the model, then train, evaluate and save
//! until the step budget is spent. The loop ([`train`]) reads top to bottom; the data stream
//! ([`data`]), the forward/backward of a step ([`step`]), evaluation ([`eval`]) and the
//! metrics log ([`metrics`]) are separate so each can change (data parallelism, new
//! architectures) without touching the others. Presentation goes through [`TrainObserver`].

pub mod config;
pub mod data;
pub mod eval;
pub mod metrics;
pub mod model_setup;
pub mod plan;
pub mod step;
pub mod train;

use std::path::PathBuf;

pub use config::{
    CheckpointConfig, EvalConfig, LastBatch, ModelSection, Precision, TrainingConfig,
};
pub use eval::EvalMetrics;
pub use train::{
    ResumePolicy, StepLog, TrainJob, TrainObserver, TrainOutcome, TrainPlan, run_training,
};

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
    #[error(transparent)]
    Autocast(#[from] mlm_torch_ext::TorchExtError),
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
        "corpus.max_seq_len = {seq_len} is longer than the model's max_position_embeddings = \
         {positions}"
    )]
    SequenceTooLong { seq_len: usize, positions: usize },
    #[error("{0}")]
    InvalidConfig(String),
    #[error("the held-out split is empty: set corpus.held_out_fraction or held-out inputs")]
    EmptyEvalSet,
    #[error(
        "the training split holds {sequences} sequences, fewer than one global batch of {batch}"
    )]
    TooFewSequences { sequences: u64, batch: u64 },
    #[error(
        "the config changed since checkpoint {checkpoint} was written (config hash {saved} -> \
         {current}); resume anyway with --allow-config-change, or use a new training.output_dir"
    )]
    ConfigChanged {
        checkpoint: PathBuf,
        saved: String,
        current: String,
    },
    #[error(
        "the loss became {loss} at step {step}; stopped. The last good checkpoint is {}",
        last_checkpoint.as_ref().map_or("none (no checkpoint was saved yet)".to_string(), |p| p.display().to_string())
    )]
    NonFiniteLoss {
        step: u64,
        loss: f64,
        last_checkpoint: Option<PathBuf>,
    },
    #[error("the batch loader thread stopped")]
    LoaderStopped,
}
