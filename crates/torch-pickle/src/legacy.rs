//! The legacy format of `torch.save` (PyTorch < 1.6, or `_use_new_zipfile_serialization=False`;
//! torch/serialization.py `_legacy_save` / `_legacy_load`): five pickles in a row, then the
//! storages, each as an 8-byte little-endian element count and its bytes, in the order of
//! the key list (storage data is always written little-endian).
//!
//! ```text
//! pickle(MAGIC_NUMBER)  pickle(PROTOCOL_VERSION = 1001)  pickle(sys_info)
//! pickle(obj, storages as persistent ids)  pickle(sorted storage keys)
//! for each key: u64 numel, numel * element size bytes
//! ```

use std::ops::Range;

use crate::ErrorKind;
use crate::bytes::{Reader, hex_prefix};
use crate::pickle::{Object, Unpickled, Value, unpickle};

/// `torch.serialization.MAGIC_NUMBER`.
const MAGIC: i128 = 0x1950_a86a_20f9_469c_fc6c;
const PROTOCOL_VERSION: i128 = 1001;

/// The main pickle of the legacy file `data` and the byte range of each storage it declares.
pub(crate) fn read(data: &[u8]) -> Result<(Unpickled, Vec<Range<usize>>), ErrorKind> {
    let not_torch_save = || ErrorKind::NotTorchSave {
        found: hex_prefix(data),
    };
    // A pickle that is not the magic number is some other file; a cut one, a truncated file.
    let magic = unpickle(data, 0, "the magic number").map_err(|error| match error {
        ErrorKind::Truncated { .. } => error,
        _ => not_torch_save(),
    })?;
    if magic.root != Value::Int(MAGIC) {
        return Err(not_torch_save());
    }
    let version = unpickle(data, magic.end, "the protocol version")?;
    if version.root != Value::Int(PROTOCOL_VERSION) {
        return Err(ErrorKind::LegacyVersion {
            found: version.arena.describe(version.root),
        });
    }
    let sys_info = unpickle(data, version.end, "sys_info")?;
    check_little_endian(&sys_info)?;
    let main = unpickle(data, sys_info.end, "the state dict pickle")?;
    let keys = unpickle(data, main.end, "the storage key list")?;
    let ranges = storage_ranges(data, &main, &keys)?;
    Ok((main, ranges))
}

/// `sys_info["little_endian"]`: storages are little-endian on disk whatever the machine, but
/// a big-endian writer is a file no one has tested this reader on.
fn check_little_endian(sys_info: &Unpickled) -> Result<(), ErrorKind> {
    let Some(Object::Dict(items)) = sys_info.arena.get(sys_info.root) else {
        return Ok(());
    };
    for &(key, value) in items {
        if sys_info.arena.str(key) == Some("little_endian") && value == Value::Bool(false) {
            return Err(ErrorKind::BigEndian {
                found: "sys_info little_endian = False".to_owned(),
            });
        }
    }
    Ok(())
}

/// Walks the storages after the key list: each key's element count and bytes.
fn storage_ranges(
    data: &[u8],
    main: &Unpickled,
    keys: &Unpickled,
) -> Result<Vec<Range<usize>>, ErrorKind> {
    let Some(Object::List(list)) = keys.arena.get(keys.root) else {
        return Err(ErrorKind::Pickle {
            pickle: "the storage key list",
            offset: 0,
            expected: "a list of storage keys".to_owned(),
            found: keys.arena.describe(keys.root),
        });
    };
    let mut ranges: Vec<Option<Range<usize>>> = vec![None; main.storages.len()];
    let mut reader = Reader::new(data, keys.end);
    for &key in list {
        let key = keys.arena.str(key).unwrap_or_default();
        let index = main
            .storage_index(key)
            .ok_or_else(|| ErrorKind::MissingStorage {
                key: format!("{key} (listed, but no tensor uses it)"),
            })?;
        let decl = &main.storages[index];
        let numel = reader.u64(|| format!("the element count of storage {key}"))?;
        if numel != decl.numel {
            return Err(ErrorKind::StorageSize {
                key: key.to_owned(),
                expected: decl.numel.saturating_mul(decl.dtype.size() as u64),
                numel: decl.numel,
                dtype: decl.dtype,
                found: numel.saturating_mul(decl.dtype.size() as u64),
            });
        }
        let start = reader.pos();
        let size = numel.saturating_mul(decl.dtype.size() as u64);
        let bytes = reader.take(size, || format!("storage {key}"))?;
        ranges[index] = Some(start..start + bytes.len());
    }
    ranges
        .into_iter()
        .zip(&main.storages)
        .map(|(range, decl)| {
            range.ok_or_else(|| ErrorKind::MissingStorage {
                key: decl.key.clone(),
            })
        })
        .collect()
}
