//! A read state dict: named tensors as views of storages, the storages slices of the file's
//! bytes (read once; tensors that share a storage share the bytes).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::pickle::{Arena, Object, TensorSpec, Unpickled, Value};
use crate::{Dtype, ErrorKind, view};

/// Nested dicts are flattened to dotted names (`{"bert": {"pooler.dense.bias": t}}`); a real
/// state dict is flat, and this bounds the recursion on a hostile one.
const MAX_NESTING: usize = 8;

/// The two layouts of a `torch.save` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PyTorch >= 1.6: a zip archive of `data.pkl` and one record per storage.
    Zip,
    /// PyTorch < 1.6 (and `_use_new_zipfile_serialization=False`): pickles and raw storages
    /// in sequence.
    Legacy,
}

/// A storage: its key in the file, dtype, and bytes (a range of the file).
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    pub(crate) key: String,
    pub(crate) dtype: Dtype,
    pub(crate) bytes: Range<usize>,
}

#[derive(Debug, Clone)]
struct TensorInfo {
    name: String,
    storage: usize,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

/// The tensors of a `torch.save` state dict, in the file's order, with the file's bytes.
#[derive(Debug)]
pub struct StateDict {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    pub(crate) data: Vec<u8>,
    pub(crate) storages: Vec<Storage>,
    tensors: Vec<TensorInfo>,
}

/// One tensor of a [`StateDict`]: a view (shape, strides in elements, offset in elements) of
/// a storage.
#[derive(Debug, Clone, Copy)]
pub struct StoredTensor<'a> {
    info: &'a TensorInfo,
    dtype: Dtype,
    storage: &'a [u8],
}

impl StateDict {
    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The number of distinct storages (fewer than tensors when some share one).
    pub fn storage_count(&self) -> usize {
        self.storages.len()
    }

    /// The tensors in the file's order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = StoredTensor<'_>> + '_ {
        self.tensors.iter().map(|info| self.stored(info))
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<StoredTensor<'_>> {
        self.tensors
            .iter()
            .find(|info| info.name == name)
            .map(|info| self.stored(info))
    }

    fn stored<'a>(&'a self, info: &'a TensorInfo) -> StoredTensor<'a> {
        let storage = &self.storages[info.storage];
        StoredTensor {
            info,
            dtype: storage.dtype,
            storage: &self.data[storage.bytes.clone()],
        }
    }

    /// Builds the state dict from what a format reader found: the pickle, and the bytes of
    /// each storage it declared (`ranges[i]` for `unpickled.storages[i]`).
    pub(crate) fn assemble(
        path: &Path,
        format: Format,
        data: Vec<u8>,
        unpickled: &Unpickled,
        ranges: Vec<Range<usize>>,
    ) -> Result<Self, ErrorKind> {
        if let Some(decl) = unpickled.storages.get(ranges.len()) {
            return Err(ErrorKind::MissingStorage {
                key: decl.key.clone(),
            });
        }
        let mut storages = Vec::with_capacity(ranges.len());
        for (decl, bytes) in unpickled.storages.iter().zip(ranges) {
            let expected = decl.numel.checked_mul(decl.dtype.size() as u64);
            if expected != Some(bytes.len() as u64) {
                return Err(ErrorKind::StorageSize {
                    key: decl.key.clone(),
                    expected: expected.unwrap_or(u64::MAX),
                    numel: decl.numel,
                    dtype: decl.dtype,
                    found: bytes.len() as u64,
                });
            }
            storages.push(Storage {
                key: decl.key.clone(),
                dtype: decl.dtype,
                bytes,
            });
        }
        let mut tensors = Vec::new();
        let mut names = HashMap::new();
        flatten(
            &unpickled.arena,
            unpickled.root,
            "",
            0,
            &mut |name, spec| {
                let info = check_view(&name, spec, &storages)?;
                // A repeated key: the last value wins, in the first one's place (a Python dict).
                match names.get(&name) {
                    Some(&index) => tensors[index] = info,
                    None => {
                        names.insert(name, tensors.len());
                        tensors.push(info);
                    }
                }
                Ok(())
            },
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            format,
            data,
            storages,
            tensors,
        })
    }
}

/// Calls `emit` with each tensor of the dict `value`, nested dicts flattened to dotted names.
fn flatten(
    arena: &Arena,
    value: Value,
    prefix: &str,
    depth: usize,
    emit: &mut dyn FnMut(String, &TensorSpec) -> Result<(), ErrorKind>,
) -> Result<(), ErrorKind> {
    let Some(Object::Dict(items)) = arena.get(value) else {
        return Err(ErrorKind::NotStateDict {
            found: arena.describe(value),
        });
    };
    for &(key, item) in items {
        let Some(key) = arena.str(key) else {
            return Err(ErrorKind::NotStateDict {
                found: format!("a key that is {}, not a str", arena.describe(key)),
            });
        };
        let name = format!("{prefix}{key}");
        match arena.get(item) {
            Some(Object::Tensor(spec)) => emit(name, spec)?,
            Some(Object::Dict(_)) if depth < MAX_NESTING => {
                flatten(arena, item, &format!("{name}."), depth + 1, emit)?;
            }
            _ => {
                return Err(ErrorKind::NotATensor {
                    name,
                    found: arena.describe(item),
                });
            }
        }
    }
    Ok(())
}

/// A tensor's view must stay inside its storage, and its size fit in memory.
fn check_view(
    name: &str,
    spec: &TensorSpec,
    storages: &[Storage],
) -> Result<TensorInfo, ErrorKind> {
    let storage = &storages[spec.storage];
    let numel = storage.bytes.len() / storage.dtype.size();
    let out_of_bounds = |last: u64| ErrorKind::OutOfBounds {
        name: name.to_owned(),
        shape: spec.shape.clone(),
        strides: spec.strides.clone(),
        offset: spec.offset,
        last,
        key: storage.key.clone(),
        numel: numel as u64,
    };
    match view::last_element(&spec.shape, &spec.strides, spec.offset) {
        Some(Ok(last)) if last < numel as u64 => {}
        Some(Ok(last)) => return Err(out_of_bounds(last)),
        Some(Err(())) => return Err(out_of_bounds(u64::MAX)),
        None => {}
    }
    let to_usize = |values: &[u64]| -> Option<Vec<usize>> {
        values.iter().map(|&v| usize::try_from(v).ok()).collect()
    };
    let (Some(shape), Some(strides)) = (to_usize(&spec.shape), to_usize(&spec.strides)) else {
        return Err(out_of_bounds(u64::MAX));
    };
    // Materialising must not overflow (a broadcast view can be larger than its storage).
    let bytes = shape
        .iter()
        .try_fold(storage.dtype.size(), |acc, &size| acc.checked_mul(size));
    if bytes.is_none_or(|bytes| isize::try_from(bytes).is_err()) {
        return Err(out_of_bounds(u64::MAX));
    }
    Ok(TensorInfo {
        name: name.to_owned(),
        storage: spec.storage,
        offset: usize::try_from(spec.offset).unwrap_or(usize::MAX),
        shape,
        strides,
    })
}

impl<'a> StoredTensor<'a> {
    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    pub fn shape(&self) -> &'a [usize] {
        &self.info.shape
    }

    /// Strides in elements, as `torch.Tensor.stride()`.
    pub fn strides(&self) -> &'a [usize] {
        &self.info.strides
    }

    /// Offset into the storage in elements, as `torch.Tensor.storage_offset()`.
    pub fn storage_offset(&self) -> usize {
        self.info.offset
    }

    /// Which storage of the file this views: equal for tensors that share one (a tied
    /// decoder and the word embeddings).
    pub fn storage_index(&self) -> usize {
        self.info.storage
    }

    /// The whole storage's bytes (little-endian).
    pub fn storage_bytes(&self) -> &'a [u8] {
        self.storage
    }

    pub fn numel(&self) -> usize {
        self.info.shape.iter().product()
    }

    pub fn is_contiguous(&self) -> bool {
        view::is_contiguous(&self.info.shape, &self.info.strides)
    }

    /// The tensor's elements in row-major order as little-endian bytes (what
    /// `torch.Tensor.contiguous()` holds): borrowed from the file when the view is contiguous,
    /// copied otherwise (numel x element size bytes).
    pub fn contiguous_bytes(&self) -> Cow<'a, [u8]> {
        view::contiguous_bytes(
            self.storage,
            self.dtype.size(),
            &self.info.shape,
            &self.info.strides,
            self.info.offset,
        )
    }
}
