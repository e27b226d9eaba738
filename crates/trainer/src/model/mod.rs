//! The model: BERT, RoBERTa (XLM-RoBERTa, CamemBERT) and DistilBERT for masked-language
//! modelling in tch, with Hugging Face's parameter names, import from and export to Hugging
//! Face directories, initialisation and the MLM loss.
//!
//! - [`Architecture`]: the family seam (`arch.rs`); each family is one module of
//!   `families/` implementing it, registered in [`ARCHITECTURES`];
//! - [`EncoderConfig`]: `config.json` of any supported family (unknown keys kept), read and
//!   written through its family;
//! - [`MaskedLanguageModel`]: the model the trainer sees (`network.rs`), holding the network
//!   its family built (BERT, RoBERTa and DistilBERT share `families/postln`, ports of
//!   transformers' `*ForMaskedLM`, from the blocks of `layers.rs`);
//! - [`Cost`]: parameters, FLOPs and activation memory, from the family's variables;
//! - [`init_weights_like_hf`]: seeded `_init_weights`;
//! - [`load_hf_dir`] / [`load_model_dir`] / [`export_hf_model`]: Hugging Face directories in
//!   and out;
//! - [`masked_lm_loss_sum`]: the loss of the data contract (sum; the caller divides).
//!
//! Variables live in a `tch::nn::VarStore` whose names are the Hugging Face state-dict keys,
//! so checkpoints, optimizer state and exports all speak the same names.

mod arch;
mod config;
mod cost;
mod export;
mod families;
mod grow;
mod init;
mod layers;
mod load;
mod loss;
mod network;
mod queries;
mod unpad;

use std::path::PathBuf;

use tch::Tensor;

pub use arch::{
    ARCHITECTURES, Architecture, InitRule, ModelType, ScratchShape, SpecialIds, StateKeys,
    VariableShape, architecture_for, masked_lm_class, supported_model_types,
};
pub use config::{Activation, ConfigProblem, DEFAULT_MODEL_TYPE, EncoderConfig, RawConfig};
pub use cost::{Cost, ModelFlops};
pub use export::{ExportOptions, export_hf_model, export_hf_model_with};
pub use grow::{NewRow, VocabGrowthReport, grow_vocabulary, mean_rows};
pub use init::{init_variable_like_hf, init_weights_like_hf};
pub use load::{
    LoadOptions, LoadReport, LoadedModel, WeightFiles, find_weights, load_hf_dir, load_hf_dir_with,
    load_model_dir,
};
pub use loss::masked_lm_loss_sum;
pub use network::{MaskedLanguageModel, MaskedLmNetwork};
pub use queries::MaskedQueries;
pub use unpad::{
    TokenLayout, UnpaddedAttention, cumulative_lengths, index_tensor, real_positions, rows_among,
};

/// Errors of the model code. Each names the file, key or parameter at fault; the underlying
/// error is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid JSON for this file", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{}: unsupported model ({found}); the trainer builds model_type {supported}",
        path.display()
    )]
    UnsupportedFamily {
        path: PathBuf,
        found: String,
        supported: String,
    },
    #[error(
        "{}: the checkpoint is a {model_type} model, but the model it is loaded into was built \
         for another family",
        path.display()
    )]
    WrongFamily { path: PathBuf, model_type: String },
    #[error("{}: {key}: {message}", path.display())]
    InvalidConfig {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error(
        "{}: no weights found (looked for model.safetensors, model.safetensors.index.json, \
         pytorch_model.bin, pytorch_model.bin.index.json)",
        dir.display()
    )]
    NoWeights { dir: PathBuf },
    #[error("{}: invalid safetensors file", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("{}: {message}", path.display())]
    BadCheckpoint { path: PathBuf, message: String },
    #[error("cannot read the weights in {}", path.display())]
    Pickle {
        path: PathBuf,
        #[source]
        source: mlm_torch_pickle::Error,
    },
    #[error("{}: {name} has dtype {dtype}, which cannot be loaded into a float parameter", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error(
        "{}: shape mismatch for {name}: the checkpoint has {checkpoint:?}, the model expects {model:?} \
         (does config.json match the weights?)",
        path.display()
    )]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        checkpoint: Vec<i64>,
        model: Vec<i64>,
    },
    #[error("the model has no variable {name}")]
    MissingVariable { name: String },
    #[error("bad model input: {0}")]
    BadInput(String),
    #[error("libtorch failed to {operation}")]
    Torch {
        operation: &'static str,
        #[source]
        source: tch::TchError,
    },
}

/// The variables an optimizer should update, sorted by name (so that flat buffers and
/// optimizer state are laid out the same on every run and rank). The pooler is created
/// frozen (transformers' masked-LM classes have none, so MLM training must not touch it)
/// and is left out here.
pub fn trainable_named_variables(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut variables: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, tensor)| tensor.requires_grad())
        .collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}

/// Every variable, sorted by name (checkpoints, exports, comparisons).
pub fn named_variables(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}
