//! Durable writes: a file or a directory this project writes appears whole and synced to
//! disk, or not at all.
//!
//! One recipe, written once: write under a temporary name in the destination's directory,
//! fsync what was written, rename it into place (atomic within one file system), then fsync
//! the parent directory so that the rename itself survives a power loss.
//!
//! - a file: [`write_file_atomically`] (the content from a closure), or [`publish_file`] for
//!   a temporary file a caller wrote itself (e.g. a streaming writer);
//! - a directory: [`publish_dir`] onto a free name, [`replace_dir`] over an existing
//!   directory (moved aside first, so a crash leaves the old or the new one, never neither);
//! - the pieces: [`fsync_file`], [`fsync_dir`], [`sync_tree`].
//!
//! Errors are one [`DurableError`]: the [`Operation`] that failed, the path, and the
//! `io::Error` as its source. Callers map it into their own error type. Unix semantics (a
//! directory is opened and fsynced like a file); the project runs on Linux.

mod lock;

pub use lock::{DirLock, LockError, WhenHeld};

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The step of a durable write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Creating the temporary file.
    Create,
    /// Writing the temporary file's content.
    Write,
    /// fsync of a file or a directory.
    Sync,
    /// Listing a directory (to sync what it holds).
    List,
    /// Renaming the temporary file or directory to its final name.
    Rename,
    /// Moving the directory being replaced out of the way.
    MoveAside,
    /// Removing the replaced directory.
    Remove,
}

impl Operation {
    /// The operation as a verb phrase: `cannot <verb> <path>` reads as a sentence.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Write => "write",
            Self::Sync => "sync",
            Self::List => "list",
            Self::Rename => "rename into place",
            Self::MoveAside => "move aside",
            Self::Remove => "remove",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// A durable write that failed: which step, on which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {operation} {}", path.display())]
pub struct DurableError {
    operation: Operation,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl DurableError {
    fn new(operation: Operation, path: &Path, source: io::Error) -> Self {
        Self {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The step that failed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The file or directory it failed on (for a rename: the destination).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// (operation, path, io error), to rebuild a caller's own error variant.
    pub fn into_parts(self) -> (Operation, PathBuf, io::Error) {
        (self.operation, self.path, self.source)
    }
}

/// The result of a durable write.
pub type Result<T, E = DurableError> = std::result::Result<T, E>;

fn at(operation: Operation, path: &Path) -> impl FnOnce(io::Error) -> DurableError + '_ {
    move |source| DurableError::new(operation, path, source)
}

/// `path` with `.tmp` appended to its file name: the temporary name
/// [`write_file_atomically`] uses, in the same directory (so the rename stays within one
/// file system). Readers of a directory can recognise leftovers by the suffix.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `path` as a whole: `write` fills a temporary file beside it ([`temp_path`]), which
/// is fsynced, renamed over `path`, and the directory fsynced. On error `path` is untouched
/// and the temporary file is removed. Returns what `write` returned.
pub fn write_file_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T> {
    write_file_atomically_via(path, &temp_path(path), write)
}

/// [`write_file_atomically`] through a temporary name of the caller's choosing (one that a
/// reader of the directory ignores, e.g. without the suffix a reader looks for). `temp` must
/// be in the same file system as `path`.
pub fn write_file_atomically_via<T>(
    path: &Path,
    temp: &Path,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T> {
    let written = File::create(temp)
        .map_err(at(Operation::Create, temp))
        .and_then(|mut file| {
            let value = write(&mut file).map_err(at(Operation::Write, temp))?;
            file.sync_all().map_err(at(Operation::Sync, temp))?;
            Ok(value)
        });
    let value = written.inspect_err(|_| {
        let _ = fs::remove_file(temp);
    })?;
    rename_into_place(temp, path, || {
        let _ = fs::remove_file(temp);
    })?;
    Ok(value)
}

/// Publishes a temporary file the caller wrote (e.g. through a streaming writer): fsyncs
/// `temp`, renames it to `path` and fsyncs the directory. `temp` is left where it is on error.
pub fn publish_file(temp: &Path, path: &Path) -> Result<()> {
    fsync_file(temp)?;
    rename_into_place(temp, path, || {})
}

/// Renames `from` to `to` and fsyncs `to`'s directory; `on_rename_error` cleans up when the
/// rename itself fails.
fn rename_into_place(from: &Path, to: &Path, on_rename_error: impl FnOnce()) -> Result<()> {
    if let Err(source) = fs::rename(from, to) {
        on_rename_error();
        return Err(DurableError::new(Operation::Rename, to, source));
    }
    fsync_dir(parent_of(to))
}

/// fsync of the file at `path` (its data and metadata).
pub fn fsync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(at(Operation::Sync, path))
}

/// fsync of directory `dir`: the names in it (a file created or renamed there) are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    // Opening a directory read-only and fsyncing it is how Unix syncs its entries.
    fsync_file(dir)
}

/// fsyncs every file and every directory under `dir`, `dir` last. Symbolic links are not
/// followed (the directory holding one is synced, which makes the link durable).
pub fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(at(Operation::List, dir))? {
        let entry = entry.map_err(at(Operation::List, dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(at(Operation::List, &path))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            fsync_file(&path)?;
        }
    }
    fsync_dir(dir)
}

/// Publishes directory `temp` as `dir`: fsyncs everything in it ([`sync_tree`]), renames it
/// to `dir` and fsyncs the parent. `dir` must not exist (or be an empty directory, which the
/// rename replaces); an existing one is an [`Operation::Rename`] error and stays as it was.
/// Use [`replace_dir`] to replace one.
pub fn publish_dir(temp: &Path, dir: &Path) -> Result<()> {
    sync_tree(temp)?;
    rename_into_place(temp, dir, || {})
}

/// Publishes directory `temp` as `dir`, replacing whatever directory is there: fsyncs `temp`
/// ([`sync_tree`]), moves an existing `dir` to `aside` (a hidden name in the same directory
/// that readers ignore), renames `temp` to `dir`, fsyncs the parent, then removes `aside`.
///
/// At every instant `dir` is the old directory or the new one, whole: a crash leaves at most
/// `aside` (or `temp`) behind for the caller to clean up. A leftover `aside` of an earlier
/// interrupted replace is removed first. If the rename fails the old directory is moved back
/// and `temp` is left for the caller; on success `temp` no longer exists.
pub fn replace_dir(temp: &Path, dir: &Path, aside: &Path) -> Result<()> {
    sync_tree(temp)?;
    if fs::symlink_metadata(aside).is_ok() {
        fs::remove_dir_all(aside).map_err(at(Operation::Remove, aside))?;
    }
    let replacing = fs::symlink_metadata(dir).is_ok();
    if replacing {
        fs::rename(dir, aside).map_err(at(Operation::MoveAside, dir))?;
    }
    rename_into_place(temp, dir, || {
        if replacing {
            let _ = fs::rename(aside, dir);
        }
    })?;
    if replacing {
        fs::remove_dir_all(aside).map_err(at(Operation::Remove, aside))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
