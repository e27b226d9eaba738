//! Errors of integrity checks: each names the file, and says what is wrong with it.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IntegrityError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid integrity manifest (damaged or truncated)")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is damaged: its own checksum does not match the files it lists")]
    ManifestChecksum { path: PathBuf },
    #[error("{path} is missing (integrity.json lists it)")]
    Missing { path: PathBuf },
    #[error(
        "{path} has {found} bytes, integrity.json says {expected}: the file is truncated or \
         was changed"
    )]
    Size {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("{path} is corrupt: {what}")]
    Header { path: PathBuf, what: String },
    #[error("{path} is corrupt: its content differs from integrity.json's hash{place}")]
    Hash { path: PathBuf, place: String },
}

impl IntegrityError {
    /// A failed durable write (of `integrity.json`) as the [`IntegrityError::Io`] it always
    /// was.
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

    /// The file the problem is in.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Manifest { path, .. }
            | Self::ManifestChecksum { path }
            | Self::Missing { path }
            | Self::Size { path, .. }
            | Self::Header { path, .. }
            | Self::Hash { path, .. } => path,
        }
    }
}
