//! State dicts saved by Python's `torch.save` (`pytorch_model.bin`), which tch cannot read:
//! its `Tensor::load_multi` expects TorchScript archives. libtorch's own unpickler
//! (`torch::jit::pickle_load`, the C++ side of `torch.load`) reads them in the shim.

use std::ffi::{CString, c_char, c_void};
use std::path::Path;

use tch::Tensor;

use crate::{Result, TorchExtError, check};

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    /// `StateDictEntryFn` in shim.cpp.
    pub type EntryFn = extern "C" fn(
        context: *mut c_void,
        name: *const c_char,
        name_len: usize,
        tensor: *mut c_void,
    );

    unsafe extern "C" {
        pub fn mlmx_load_pickled_state_dict(
            path: *const c_char,
            context: *mut c_void,
            emit: EntryFn,
        ) -> c_int;
    }
}

/// Receives the shim's entries. Only pushes to a `Vec`: nothing here can unwind into C++.
extern "C" fn collect_entry(
    context: *mut c_void,
    name: *const c_char,
    name_len: usize,
    tensor: *mut c_void,
) {
    // SAFETY: `context` is the `&mut Vec` passed by `load_pickled_state_dict` below, alive and
    // exclusively borrowed for the duration of the shim call that invokes this callback.
    let entries = unsafe { &mut *context.cast::<Vec<(String, Tensor)>>() };
    // SAFETY: the shim passes a pointer to `name_len` bytes of a std::string alive during the call.
    let bytes = unsafe { std::slice::from_raw_parts(name.cast::<u8>(), name_len) };
    // SAFETY: the shim hands over a heap-allocated `at::Tensor*` (`new at::Tensor(...)`), which
    // is what tch's `Tensor` owns and frees with `delete`.
    let tensor = unsafe { Tensor::from_ptr(tensor.cast()) };
    entries.push((String::from_utf8_lossy(bytes).into_owned(), tensor));
}

/// Reads the `torch.save` file at `path` (zip format, PyTorch >= 1.6) holding a dict of
/// tensors, and returns its (name, tensor) pairs in file order. Nested dicts are flattened to
/// dotted names. Tensors are on the CPU, in the dtype they were saved in. Anything else in the
/// dict (numbers, strings, lists) is an error naming the entry.
pub fn load_pickled_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let c_path =
        CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| TorchExtError::Torch {
            operation: "load pickled state dict",
            message: format!("path {} contains a NUL byte", path.display()),
        })?;
    let mut entries: Vec<(String, Tensor)> = Vec::new();
    // SAFETY: `c_path` is NUL-terminated and outlives the call; the context pointer is the
    // `entries` Vec, used only by `collect_entry` during this call; the shim catches every C++
    // exception.
    let status = unsafe {
        ffi::mlmx_load_pickled_state_dict(
            c_path.as_ptr(),
            (&raw mut entries).cast::<c_void>(),
            collect_entry,
        )
    };
    check(status, "load pickled state dict")?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mlmx-pickle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let path = scratch("absent.bin");
        let error = load_pickled_state_dict(&path).unwrap_err();
        assert!(error.to_string().contains("absent.bin"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_torch_save_archive_is_an_error_not_a_crash() {
        let path = scratch("garbage.bin");
        std::fs::write(&path, b"PK\x03\x04 definitely not a zip archive").unwrap();
        let error = load_pickled_state_dict(&path).unwrap_err();
        assert!(matches!(error, TorchExtError::Torch { .. }), "{error}");
        std::fs::remove_file(&path).unwrap();
    }
}
