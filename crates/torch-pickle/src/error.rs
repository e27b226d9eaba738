//! Errors: every one names the file (`Error`) and says what was expected and what was found
//! (`ErrorKind`), so that a user can tell a truncated download from a file that is not a
//! state dict at all.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::Dtype;

/// An error reading a `torch.save` file: the file, and what is wrong with it.
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    // Boxed: errors are rare and `Result<StateDict, Error>` stays small.
    kind: Box<ErrorKind>,
}

impl Error {
    pub(crate) fn new(path: &Path, kind: ErrorKind) -> Self {
        Self {
            path: path.to_path_buf(),
            kind: Box::new(kind),
        }
    }

    /// The file that could not be read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for Error {
    // The kind is part of this error's own message; its source (an I/O error) comes next.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

/// What is wrong with a file (without the file's name, which [`Error`] adds).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("cannot read the file")]
    Io(#[source] std::io::Error),
    #[error(
        "not a torch.save file (neither a zip archive nor the legacy pickle magic); it starts \
         with {found}"
    )]
    NotTorchSave { found: String },
    #[error(
        "a tar archive: the torch.save format of PyTorch's first releases (before 0.4) is not \
         supported; load and save it again with a recent PyTorch"
    )]
    TarFormat,
    #[error("truncated: {what} needs {needed} bytes, {left} left")]
    Truncated {
        what: String,
        needed: u64,
        left: u64,
    },
    #[error("zip archive: expected {expected}, found {found}")]
    Zip { expected: String, found: String },
    #[error(
        "the archive has no record {name} (torch.save writes <dir>/data.pkl and \
         <dir>/data/<key> for each storage)"
    )]
    MissingRecord { name: String },
    #[error(
        "record {name} is compressed (method {method}); torch.save stores records uncompressed"
    )]
    Compressed { name: String, method: u16 },
    #[error("{pickle}, byte {offset}: expected {expected}, found {found}")]
    Pickle {
        pickle: &'static str,
        offset: usize,
        expected: String,
        found: String,
    },
    #[error(
        "{pickle}, byte {offset}: pickle opcode {opcode:#04x} is not supported (only the \
         opcodes of a state dict are)"
    )]
    UnsupportedOpcode {
        pickle: &'static str,
        offset: usize,
        opcode: u8,
    },
    #[error("unsupported pickle global `{name}` (only a state dict of tensors can be read)")]
    UnsupportedGlobal { name: String },
    #[error("expected a dict of tensors (a state dict), found {found}")]
    NotStateDict { found: String },
    #[error("state dict entry `{name}` is {found}, not a tensor")]
    NotATensor { name: String, found: String },
    #[error(
        "tensor `{name}`: shape {shape:?}, strides {strides:?} and offset {offset} reach element \
         {last} of storage {key}, which has {numel} elements"
    )]
    OutOfBounds {
        name: String,
        shape: Vec<u64>,
        strides: Vec<u64>,
        offset: u64,
        last: u64,
        key: String,
        numel: u64,
    },
    #[error("storage {key}: expected {expected} bytes ({numel} x {dtype}), found {found}")]
    StorageSize {
        key: String,
        expected: u64,
        numel: u64,
        dtype: Dtype,
        found: u64,
    },
    #[error("storage {key} is used by the pickle, but its data is missing")]
    MissingStorage { key: String },
    #[error("storage {key} is declared twice, as {first} and as {second}")]
    StorageConflict {
        key: String,
        first: String,
        second: String,
    },
    #[error(
        "written on a big-endian machine (byte order {found}); only little-endian checkpoints \
         are supported"
    )]
    BigEndian { found: String },
    #[error("legacy torch.save protocol version {found}, expected 1001")]
    LegacyVersion { found: String },
}

impl ErrorKind {
    pub(crate) fn truncated(what: impl Into<String>, needed: u64, left: usize) -> Self {
        Self::Truncated {
            what: what.into(),
            needed,
            left: left as u64,
        }
    }
}
