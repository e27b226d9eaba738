//! Small file-system helpers: every file this crate writes appears complete or not at all.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::CorpusError;

/// `path` relative to `base` (a config file's directory), lexically normalised so that paths
/// shown to users read `data/x`, not `configs/../data/x`: `.` components are dropped and
/// `dir/..` folded; a relative path keeps its leading `..`. An absolute `path` stays absolute.
/// The file system is not consulted (no symlink resolution, nothing needs to exist yet).
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    normalize_lexically(&base.join(path))
}

fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                // Nothing left to fold: the `..` climbs above a relative path's start.
                Some(Component::ParentDir | Component::CurDir) | None => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Writes `bytes` to `path` durably: a synced temporary file beside it (`<name>.tmp`, which
/// a resumed prepare recognises as a leftover) renamed over `path`, the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CorpusError> {
    mlm_durable::write_file_atomically(path, |file| file.write_all(bytes))
        .map_err(CorpusError::durable)
}

/// `value` as pretty JSON with a trailing newline, written atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), CorpusError> {
    write_atomic(path, json_text(path, value)?.as_bytes())
}

/// The text [`write_json`] writes for `value` (`path` names it in errors).
pub fn json_text(path: &Path, value: &impl serde::Serialize) -> Result<String, CorpusError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| CorpusError::json(path, e))?;
    text.push('\n');
    Ok(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(base: &str, path: &str) -> PathBuf {
        resolve_path(Path::new(base), Path::new(path))
    }

    #[test]
    fn resolved_paths_are_lexically_normal() {
        assert_eq!(
            resolved("configs", "../data/x.txt"),
            Path::new("data/x.txt")
        );
        assert_eq!(resolved("configs/.", "./a/./b"), Path::new("configs/a/b"));
        assert_eq!(resolved("/cfg/sub", "../../x"), Path::new("/x"));
        assert_eq!(resolved("/cfg", "../../../x"), Path::new("/x"));
        assert_eq!(resolved("../cfg", "../data"), Path::new("../data"));
        assert_eq!(resolved("..", "../x/y/.."), Path::new("../../x"));
        assert_eq!(resolved("cfg", "/abs/./x/../y"), Path::new("/abs/y"));
        assert_eq!(resolved("cfg", "data/*.txt"), Path::new("cfg/data/*.txt"));
        assert_eq!(resolved("cfg", ".."), Path::new("."));
        assert_eq!(resolved("", ""), Path::new("."));
    }
}
