//! Small file-system helpers: every file this crate writes appears complete or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CorpusError;

/// `path` with `.tmp` appended to its file name.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CorpusError> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    result.map_err(|e| CorpusError::io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CorpusError::io("cannot rename into place", path, e))
}

/// `value` as pretty JSON with a trailing newline, written atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), CorpusError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| CorpusError::json(path, e))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads and parses a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CorpusError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CorpusError::io("cannot read", path, e))?;
    serde_json::from_str(&text).map_err(|e| CorpusError::json(path, e))
}

/// SHA-256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> Result<String, CorpusError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|e| CorpusError::io("cannot read", path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| CorpusError::io("cannot read", path, e))?;
    Ok(crate::hash::hex(&h.finalize()))
}
