//! The model: BERT for masked-language modelling in tch, with Hugging Face's parameter names,
//! import from and export to Hugging Face directories, initialisation and the MLM loss.
//!
//! - [`BertConfig`]: `config.json` (unknown keys kept);
//! - [`BertForMaskedLM`]: the network (port of transformers/models/bert/modeling_bert.py);
//! - [`init_weights_like_hf`]: seeded `_init_weights`;
//! - [`load_hf_dir`] / [`load_model_dir`] / [`export_hf_model`]: Hugging Face directories in
//!   and out;
//! - [`masked_lm_loss_sum`]: the loss of the data contract (sum; the caller divides).
//!
//! Variables live in a `tch::nn::VarStore` whose names are the Hugging Face state-dict keys,
//! so checkpoints, optimizer state and exports all speak the same names. [`Architecture`]
//! holds what loading needs to know of a family's Hugging Face naming.

mod bert;
mod config;
mod export;
mod init;
mod load;
mod loss;

use std::path::PathBuf;

use tch::Tensor;

pub use bert::BertForMaskedLM;
pub use config::{Activation, BERT_MLM_ARCHITECTURE, BERT_MODEL_TYPE, BertConfig, ConfigProblem};
pub use export::{ExportOptions, export_hf_model, export_hf_model_with};
pub use init::{init_variable_like_hf, init_weights_like_hf};
pub use load::{
    LoadOptions, LoadReport, LoadedModel, WeightFiles, find_weights, load_hf_dir, load_hf_dir_with,
    load_model_dir,
};
pub use loss::masked_lm_loss_sum;

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
        "{}: not a BERT model ({found}); this trainer builds BERT (model_type \"bert\") only",
        path.display()
    )]
    NotBert { path: PathBuf, found: String },
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

/// The model families the trainer knows. Each knows its Hugging Face naming: the base-model
/// prefix (`base_model_prefix` in transformers), weights that are tied to others, and heads of
/// other tasks that a checkpoint may carry and that are safe to ignore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Bert,
}

impl Architecture {
    /// `BertPreTrainedModel.base_model_prefix` + ".".
    pub fn base_prefix(self) -> &'static str {
        match self {
            Self::Bert => "bert.",
        }
    }

    /// Checkpoint keys that are copies of another parameter in the tied model
    /// (`BertForMaskedLM._tied_weights_keys`): (tied key, the parameter it duplicates).
    pub fn tied_keys(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Bert => &[
                (
                    "cls.predictions.decoder.weight",
                    "bert.embeddings.word_embeddings.weight",
                ),
                ("cls.predictions.decoder.bias", "cls.predictions.bias"),
            ],
        }
    }

    /// Prefixes of heads of other tasks (`BertForPreTraining`'s NSP head, classifiers, QA)
    /// and of buffers that older transformers saved (`embeddings.position_ids`).
    pub fn ignored_key(self, key: &str) -> bool {
        match self {
            Self::Bert => {
                key.starts_with("cls.seq_relationship.")
                    || key.starts_with("classifier.")
                    || key.starts_with("qa_outputs.")
                    || key.ends_with("position_ids")
                    || key.ends_with("token_type_ids")
            }
        }
    }
}

/// The variables an optimizer should update, sorted by name (so that flat buffers and
/// optimizer state are laid out the same on every run and rank). The pooler is created
/// frozen (`BertForMaskedLM` in transformers has none, so MLM training must not touch it)
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
