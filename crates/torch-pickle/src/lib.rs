//! mlm-torch-pickle: reads the state dicts that Python's `torch.save` writes
//! (`pytorch_model.bin`), in pure Rust, without libtorch.
//!
//! - both layouts: the zip archive of PyTorch >= 1.6 and the legacy format before it
//!   ([`Format`]);
//! - a restricted unpickler in the spirit of `torch.load(weights_only=True)`: the opcodes and
//!   globals of a dict of tensors (`collections.OrderedDict` with its `_metadata`,
//!   `torch._utils._rebuild_tensor_v2`, the typed storage classes), anything else an error
//!   naming it; nothing is ever executed;
//! - tensors as torch has them: dtype, shape, strides and offset into a storage that several
//!   tensors may share (a tied decoder views the word embeddings);
//!   [`StoredTensor::contiguous_bytes`] gives the row-major little-endian bytes.
//!
//! The file is read into memory once; storages are slices of it, and contiguous tensors'
//! bytes are borrowed, not copied.
//!
//! ```no_run
//! let state = mlm_torch_pickle::StateDict::read("model/pytorch_model.bin")?;
//! for tensor in state.tensors() {
//!     println!("{} {} {:?}", tensor.name(), tensor.dtype(), tensor.shape());
//!     let _bytes = tensor.contiguous_bytes();
//! }
//! # Ok::<(), mlm_torch_pickle::Error>(())
//! ```

mod archive;
mod bytes;
mod dtype;
mod error;
mod legacy;
mod pickle;
mod state_dict;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
mod view;
mod zip;

use std::path::{Path, PathBuf};

pub use dtype::Dtype;
pub use error::{Error, ErrorKind};
pub use state_dict::{Format, StateDict, StoredTensor};

impl StateDict {
    /// Reads the `torch.save` file at `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| Error::new(path, ErrorKind::Io(source)))?;
        Self::from_bytes(path, data)
    }

    /// Reads a `torch.save` file already in memory; `path` names it in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, data: Vec<u8>) -> Result<Self, Error> {
        let path = path.into();
        let format = detect(&data).map_err(|kind| Error::new(&path, kind))?;
        let parsed = match format {
            Format::Zip => archive::read(&data),
            Format::Legacy => legacy::read(&data),
        };
        parsed
            .and_then(|(unpickled, ranges)| Self::assemble(&path, format, data, &unpickled, ranges))
            .map_err(|kind| Error::new(&path, kind))
    }
}

/// The layout of a `torch.save` file, from its first bytes.
fn detect(data: &[u8]) -> Result<Format, ErrorKind> {
    if data.starts_with(b"PK\x03\x04") {
        Ok(Format::Zip)
    } else if data.first() == Some(&0x80) {
        // PROTO: the legacy format's first pickle, the magic number (checked by the reader).
        Ok(Format::Legacy)
    } else if data.get(257..262) == Some(b"ustar") {
        Err(ErrorKind::TarFormat)
    } else {
        Err(ErrorKind::NotTorchSave {
            found: bytes::hex_prefix(data),
        })
    }
}
