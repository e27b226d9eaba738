//! Errors of the optimizer, schedule and checkpoint code (and whatever else in the trainer
//! wants a typed error that names its file). Messages name the file, parameter or key; the
//! underlying error stays reachable through `source()` instead of being pasted into the text.

use std::path::{Path, PathBuf};

/// An error from optimizer state, schedules or checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file-system operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (e.g. `trainer_state.json`) could not be read or written.
    #[error("invalid JSON in {}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A `.safetensors` file could not be parsed or serialised.
    #[error("invalid safetensors file {}", path.display())]
    SafeTensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A libtorch operation failed.
    #[error("libtorch failed while {context}")]
    Torch {
        context: String,
        #[source]
        source: tch::TchError,
    },
    /// The file is not an optimizer state this code wrote (format marker or metadata).
    #[error("{} is not an mlm-train AdamW state: {detail}", path.display())]
    OptimizerFormat { path: PathBuf, detail: String },
    /// The optimizer state lacks a tensor for a parameter of the model.
    #[error(
        "{} has no `{tensor}` for parameter `{param}`: the state was saved for a different model",
        path.display()
    )]
    MissingOptimizerState {
        path: PathBuf,
        param: String,
        tensor: String,
    },
    /// The optimizer state holds a tensor for a parameter the model does not have.
    #[error(
        "{} holds `{name}`, which matches no trainable parameter of the model: the state was saved \
         for a different model",
        path.display()
    )]
    UnexpectedOptimizerState { path: PathBuf, name: String },
    /// A state tensor has a different shape or dtype than its parameter.
    #[error(
        "{}: `{name}` is {found} but parameter `{param}` needs {expected}",
        path.display()
    )]
    OptimizerStateMismatch {
        path: PathBuf,
        name: String,
        param: String,
        expected: String,
        found: String,
    },
    /// A configuration value is out of range.
    #[error("invalid {key} = {value}: {reason}")]
    InvalidConfig {
        key: String,
        value: String,
        reason: String,
    },
    /// Writing a checkpoint failed. Nothing was renamed into place, so the previous
    /// checkpoints are exactly as they were.
    #[error(
        "could not write checkpoint {} (the previous checkpoints are untouched)",
        dir.display()
    )]
    CheckpointWrite {
        dir: PathBuf,
        #[source]
        source: Box<TrainError>,
    },
    /// An error from code outside this module (e.g. the model writer a checkpoint calls),
    /// with what was being done.
    #[error("{context}")]
    External {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An error known only by its message, about a path. Prefer [`TrainError::external`],
    /// which keeps the source error.
    #[error("{}: {message}", path.display())]
    Message { path: PathBuf, message: String },
}

impl TrainError {
    /// Wraps any error with what was being done when it happened (keeps it as the source).
    pub fn external(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::External {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// An error about `path` known only by its message.
    pub fn from_io_like(path: &Path, message: &str) -> Self {
        Self::Message {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn torch(context: impl Into<String>, source: tch::TchError) -> Self {
        Self::Torch {
            context: context.into(),
            source,
        }
    }
}
