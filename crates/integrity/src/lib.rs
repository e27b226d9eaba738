//! Integrity manifests: `integrity.json` lists every file of a directory this project writes
//! (a checkpoint, a prepared corpus, an export) with its size and XXH3-64 hash, and for
//! Parquet shards the byte range and hash of each row group. It is written after every file
//! it lists, before the directory's commit point (a checkpoint's rename, a corpus's
//! `manifest.json`), so a complete directory always has one.
//!
//! Checking ([`verify`]) comes at two levels: [`Level::Fast`] (every listed file is there
//! with its size, `.safetensors` and `.parquet` headers are sound, small text files are
//! hashed) costs a few reads whatever the model size; [`Level::Full`] hashes every byte and
//! names the row group a damaged shard differs in. A directory without `integrity.json`
//! (written before this crate existed) is [`Verified::NoManifest`]: callers load it with a
//! note. `integrity.json` carries a checksum of its own list, so a damaged manifest is told
//! apart from a damaged file it lists.
//!
//! XXH3 (`twox-hash`) rather than SHA-256: it detects accidental damage (truncation, bit
//! flips) as well, and hashes many GB/s per core, so full checks before every resume cost
//! about what reading the files does.

mod error;
mod headers;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::IntegrityError;

/// The manifest's file name inside the directory it describes.
pub const INTEGRITY_FILE: &str = "integrity.json";
const FORMAT: u32 = 1;
/// [`Integrity::kind`] of a training checkpoint.
pub const KIND_CHECKPOINT: &str = "checkpoint";
/// [`Integrity::kind`] of an exported Hugging Face model directory.
pub const KIND_EXPORT: &str = "export";
/// Files up to this size are hashed even by a fast check (configs, states, tokenizers).
const FAST_HASH_LIMIT: u64 = 4 << 20;

/// `integrity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integrity {
    pub format: u32,
    /// What wrote the directory ([`KIND_CHECKPOINT`], [`KIND_EXPORT`]); absent in
    /// manifests written before it was recorded, and in a prepared corpus's. A command that
    /// replaces a directory asks it to prove it wrote what it would remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub files: Vec<FileEntry>,
    /// XXH3 of `files` serialised as compact JSON.
    pub checksum: String,
}

/// One listed file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the directory, `/`-separated.
    pub name: String,
    pub bytes: u64,
    pub xxh3: String,
    /// Named byte ranges hashed on their own (a Parquet shard's row groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<Section>,
}

/// A byte range of a file with its own hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// What the range is, for messages (`row group 3`).
    pub label: String,
    pub offset: u64,
    pub bytes: u64,
    pub xxh3: String,
}

/// How much of a directory [`verify`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Sizes, `.safetensors` / `.parquet` headers, hashes of files up to 4 MiB.
    Fast,
    /// Every byte hashed.
    Full,
}

/// What [`verify`] found in a directory that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every file listed in `integrity.json` checked at the level asked.
    Checked { files: usize },
    /// No `integrity.json`: written by an earlier version; nothing could be checked.
    NoManifest,
}

impl FileEntry {
    /// The entry of `dir/name` as it is on disk now; `sections` are (label, offset, bytes).
    pub fn of_file(
        dir: &Path,
        name: &str,
        sections: &[(String, u64, u64)],
    ) -> Result<Self, IntegrityError> {
        let path = dir.join(name);
        let bytes = std::fs::metadata(&path)
            .map_err(|e| IntegrityError::io("read", &path, e))?
            .len();
        let sections = sections
            .iter()
            .map(|(label, offset, len)| {
                Ok(Section {
                    label: label.clone(),
                    offset: *offset,
                    bytes: *len,
                    xxh3: hash_range(&path, *offset, *len)?,
                })
            })
            .collect::<Result<_, IntegrityError>>()?;
        Ok(Self {
            name: name.to_owned(),
            bytes,
            xxh3: hash_range(&path, 0, bytes)?,
            sections,
        })
    }

    /// The entry of a file whose content is `content` (about to be written).
    pub fn of_bytes(name: &str, content: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            bytes: content.len() as u64,
            xxh3: hex(twox_hash::XxHash3_64::oneshot(content)),
            sections: Vec::new(),
        }
    }
}

impl Integrity {
    /// A manifest of `files`, its checksum computed.
    pub fn new(files: Vec<FileEntry>) -> Self {
        let checksum = checksum_of(&files);
        Self {
            format: FORMAT,
            kind: None,
            files,
            checksum,
        }
    }

    /// The manifest with what wrote the directory recorded.
    pub fn of_kind(self, kind: &str) -> Self {
        Self {
            kind: Some(kind.to_owned()),
            ..self
        }
    }

    /// Whether the list matches its own checksum (a [`Self::read_unchecked`] manifest may not).
    pub fn is_intact(&self) -> bool {
        self.checksum == checksum_of(&self.files)
    }

    /// Whether `name` (relative, `/`-separated) is one of the listed files, or the manifest.
    pub fn lists(&self, name: &str) -> bool {
        name == INTEGRITY_FILE || self.files.iter().any(|f| f.name == name)
    }

    /// Writes `dir/integrity.json` durably (`mlm_durable`: a synced temporary file, a rename,
    /// the directory synced).
    pub fn write(&self, dir: &Path) -> Result<(), IntegrityError> {
        let path = dir.join(INTEGRITY_FILE);
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| IntegrityError::Manifest {
                path: path.clone(),
                source,
            })?;
        text.push('\n');
        // Through `integrity.json.tmp`, which `list_files` leaves out of a manifest.
        mlm_durable::write_file_atomically(&path, |file| file.write_all(text.as_bytes()))
            .map_err(IntegrityError::durable)
    }

    /// Reads `dir/integrity.json` without checking its own checksum: what it says wrote the
    /// directory and which files it lists, for deciding whether a directory is this
    /// project's to replace (a damaged list still names them). `None` when there is none.
    pub fn read_unchecked(dir: &Path) -> Result<Option<Self>, IntegrityError> {
        let path = dir.join(INTEGRITY_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IntegrityError::io("read", &path, e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| IntegrityError::Manifest { path, source })
    }

    /// Reads `dir/integrity.json`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>, IntegrityError> {
        let path = dir.join(INTEGRITY_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IntegrityError::io("read", &path, e)),
        };
        let manifest: Self =
            serde_json::from_slice(&text).map_err(|source| IntegrityError::Manifest {
                path: path.clone(),
                source,
            })?;
        if manifest.checksum != checksum_of(&manifest.files) {
            return Err(IntegrityError::ManifestChecksum { path });
        }
        Ok(Some(manifest))
    }
}

/// Writes the manifest of every regular file under `dir` (recursively, `integrity.json`
/// itself excluded), recording `kind` as what wrote it. For directories written whole by one
/// writer: a checkpoint, an export.
pub fn write_for_dir(dir: &Path, kind: &str) -> Result<Integrity, IntegrityError> {
    let files = files_under(dir)?
        .iter()
        .map(|name| FileEntry::of_file(dir, name, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = Integrity::new(files).of_kind(kind);
    manifest.write(dir)?;
    Ok(manifest)
}

/// The regular files under `dir`, relative and `/`-separated, sorted (`integrity.json` and
/// its temporary left out).
pub fn files_under(dir: &Path) -> Result<Vec<String>, IntegrityError> {
    let mut names = Vec::new();
    list_files(dir, "", &mut names)?;
    names.sort();
    Ok(names)
}

fn list_files(dir: &Path, prefix: &str, names: &mut Vec<String>) -> Result<(), IntegrityError> {
    let here = dir.join(prefix);
    for entry in std::fs::read_dir(&here).map_err(|e| IntegrityError::io("list", &here, e))? {
        let entry = entry.map_err(|e| IntegrityError::io("list", &here, e))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry
            .file_type()
            .map_err(|e| IntegrityError::io("list", &entry.path(), e))?;
        if kind.is_dir() {
            list_files(dir, &format!("{name}/"), names)?;
        } else if name != INTEGRITY_FILE && !name.starts_with(&format!("{INTEGRITY_FILE}.")) {
            names.push(name);
        }
    }
    Ok(())
}

/// Checks `dir` against its `integrity.json` at `level`. The first problem is the error,
/// naming the file (and the row group of a shard).
pub fn verify(dir: &Path, level: Level) -> Result<Verified, IntegrityError> {
    let Some(manifest) = Integrity::read(dir)? else {
        return Ok(Verified::NoManifest);
    };
    for entry in &manifest.files {
        verify_file(dir, entry, level)?;
    }
    Ok(Verified::Checked {
        files: manifest.files.len(),
    })
}

fn verify_file(dir: &Path, entry: &FileEntry, level: Level) -> Result<(), IntegrityError> {
    let path = dir.join(&entry.name);
    let found = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IntegrityError::Missing { path });
        }
        Err(e) => return Err(IntegrityError::io("read", &path, e)),
    };
    if found != entry.bytes {
        return Err(IntegrityError::Size {
            path,
            found,
            expected: entry.bytes,
        });
    }
    headers::check(&path, found)?;
    if level == Level::Full || found <= FAST_HASH_LIMIT {
        check_hash(&path, entry)?;
    }
    Ok(())
}

fn check_hash(path: &Path, entry: &FileEntry) -> Result<(), IntegrityError> {
    if hash_range(path, 0, entry.bytes)? == entry.xxh3 {
        return Ok(());
    }
    for section in &entry.sections {
        if hash_range(path, section.offset, section.bytes)? != section.xxh3 {
            return Err(IntegrityError::Hash {
                path: path.to_path_buf(),
                place: format!(
                    " in {} (bytes {}..{})",
                    section.label,
                    section.offset,
                    section.offset + section.bytes
                ),
            });
        }
    }
    let place = if entry.sections.is_empty() {
        String::new()
    } else {
        " outside its row groups (the Parquet header or footer)".to_owned()
    };
    Err(IntegrityError::Hash {
        path: path.to_path_buf(),
        place,
    })
}

/// XXH3-64 of `len` bytes of `path` from `offset`, as 16 hex digits.
pub fn hash_range(path: &Path, offset: u64, len: u64) -> Result<String, IntegrityError> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| IntegrityError::io("read", path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| IntegrityError::io("read", path, e))?;
    let mut hasher = twox_hash::XxHash3_64::new();
    let mut left = len;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = file
            .read(&mut buffer[..want])
            .map_err(|e| IntegrityError::io("read", path, e))?;
        if read == 0 {
            // Shorter than listed: the size check reports it; here the hash just differs.
            break;
        }
        std::hash::Hasher::write(&mut hasher, &buffer[..read]);
        left -= read as u64;
    }
    Ok(hex(std::hash::Hasher::finish(&hasher)))
}

fn checksum_of(files: &[FileEntry]) -> String {
    let text = serde_json::to_vec(files).unwrap_or_default();
    hex(twox_hash::XxHash3_64::oneshot(&text))
}

fn hex(value: u64) -> String {
    format!("{value:016x}")
}

/// `dir` for messages about a directory's manifest.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(INTEGRITY_FILE)
}

#[cfg(test)]
mod tests;
