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
    /// A checkpoint's files differ from its `integrity.json` (missing, truncated, damaged).
    #[error("checkpoint {} is damaged", dir.display())]
    Integrity {
        dir: PathBuf,
        #[source]
        source: mlm_integrity::IntegrityError,
    },
    /// A checkpoint name in `output_dir` holds a directory this run cannot prove it wrote
    /// (no `integrity.json` of a checkpoint, or files it does not list): never replaced.
    #[error(
        "{} is in the way of a checkpoint but was not written by mlm-train ({reason}); move it \
         out of training.output_dir",
        dir.display()
    )]
    ForeignCheckpoint { dir: PathBuf, reason: String },
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
    /// A configuration value is out of range. `key` is the full dotted key as the config
    /// file spells it, so the message reads `training.batch_size = 0 must be >= 1`.
    #[error("{key} = {value} {reason}")]
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

    /// `key = value reason`, e.g. `invalid_config("training.adam_beta2", 1.0, "must be in [0, 1)")`.
    pub fn invalid_config(
        key: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidConfig {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// An error about `path` known only by its message.
    pub fn from_io_like(path: &Path, message: &str) -> Self {
        Self::Message {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// A failed durable write (`mlm_durable`) as the [`TrainError::Io`] it names:
    /// `could not rename into place <path>`, the `io::Error` its source. A function, not a
    /// `From` impl: a second `From` would leave the error type of `?` in closures ambiguous.
    pub(crate) fn durable(error: mlm_durable::DurableError) -> Self {
        let (operation, path, source) = error.into_parts();
        Self::io(operation.verb(), &path, source)
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

/// Range checks of config values. Each names the full key and the value in the one message
/// shape every section uses: `training.batch_size = 0 must be >= 1`.
pub(crate) mod check {
    use std::fmt::Display;

    use super::TrainError;

    /// `value >= min` (counts: sizes, steps, batch sizes).
    pub(crate) fn at_least<T: PartialOrd + Display + Copy>(
        key: &str,
        value: T,
        min: T,
    ) -> Result<(), TrainError> {
        require(key, &value, value >= min, || format!("must be >= {min}"))
    }

    /// A finite number > 0 (learning rates, epochs, epsilons).
    pub(crate) fn positive(key: &str, value: f64) -> Result<(), TrainError> {
        require(key, &value, value.is_finite() && value > 0.0, || {
            "must be a finite number > 0".to_owned()
        })
    }

    /// A finite number >= 0 (weight decay, clipping norm, minutes).
    pub(crate) fn non_negative(key: &str, value: f64) -> Result<(), TrainError> {
        require(key, &value, value.is_finite() && value >= 0.0, || {
            "must be a finite number >= 0".to_owned()
        })
    }

    /// A fraction in [0, 1] (ratios of steps or of the peak learning rate).
    pub(crate) fn fraction(key: &str, value: f64) -> Result<(), TrainError> {
        // NaN fails `contains` too.
        require(key, &value, (0.0..=1.0).contains(&value), || {
            "must be in [0, 1]".to_owned()
        })
    }

    /// A probability-like value in [0, 1) (Adam betas, dropout: 1 would freeze or zero out).
    pub(crate) fn below_one(key: &str, value: f64) -> Result<(), TrainError> {
        require(key, &value, (0.0..1.0).contains(&value), || {
            "must be in [0, 1)".to_owned()
        })
    }

    /// The error `key = value reason` unless `ok`.
    pub(crate) fn require(
        key: &str,
        value: &dyn Display,
        ok: bool,
        reason: impl FnOnce() -> String,
    ) -> Result<(), TrainError> {
        if ok {
            Ok(())
        } else {
            Err(TrainError::invalid_config(key, value, reason()))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn message(result: Result<(), TrainError>) -> String {
            result.unwrap_err().to_string()
        }

        #[test]
        fn messages_read_key_value_reason() {
            assert_eq!(
                message(at_least("training.batch_size", 0, 1)),
                "training.batch_size = 0 must be >= 1"
            );
            assert_eq!(
                message(below_one("training.adam_beta2", 1.0)),
                "training.adam_beta2 = 1 must be in [0, 1)"
            );
            assert_eq!(
                message(positive("training.learning_rate", -1.0)),
                "training.learning_rate = -1 must be a finite number > 0"
            );
            assert_eq!(
                message(non_negative("training.weight_decay", -0.1)),
                "training.weight_decay = -0.1 must be a finite number >= 0"
            );
            assert_eq!(
                message(fraction("training.warmup_ratio", 1.5)),
                "training.warmup_ratio = 1.5 must be in [0, 1]"
            );
        }

        #[test]
        fn bounds_are_inclusive_where_documented_and_nan_never_passes() {
            assert!(at_least("k", 1, 1).is_ok());
            assert!(positive("k", f64::MIN_POSITIVE).is_ok());
            assert!(positive("k", 0.0).is_err());
            assert!(positive("k", f64::INFINITY).is_err());
            assert!(non_negative("k", 0.0).is_ok());
            assert!(fraction("k", 0.0).is_ok() && fraction("k", 1.0).is_ok());
            assert!(below_one("k", 0.0).is_ok() && below_one("k", 1.0).is_err());
            for check in [positive, non_negative, fraction, below_one] {
                assert!(check("k", f64::NAN).is_err());
            }
        }
    }
}
