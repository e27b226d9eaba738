//! One job per directory: [`DirLock`] holds an exclusive OS lock (`flock`, through
//! `File::try_lock`) on a lock file inside a directory a job writes (a run's `output_dir`, a
//! prepared corpus) for as long as the job lives. The kernel releases it when the process
//! ends, however it ends, so a killed job leaves no stale lock behind; the file itself stays
//! (deleting it would race with a job locking it) and records the last holder, which a
//! refused job names: pid, host, since when, command line.
//!
//! Where the file system refuses locks (`ENOLCK`: NFSv3 without `lockd`; some FUSE file
//! systems) [`DirLock::acquire`] returns [`LockError::Unsupported`]; callers warn and go on
//! unlocked, since refusing would make the directory unusable there.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{} is in use by another job ({}); two jobs on one directory would overwrite each \
         other's files. Wait for it to end (or pass --wait-for-lock), or use another directory",
        dir.display(),
        holder.as_deref().unwrap_or("its holder did not record itself yet")
    )]
    Held {
        dir: PathBuf,
        /// The holder as its lock file describes it.
        holder: Option<String>,
    },
    #[error(
        "the file system of {} does not support file locks (NFS without lockd?)",
        path.display()
    )]
    Unsupported {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whether [`DirLock::acquire`] waits for a held lock or refuses at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenHeld {
    Refuse,
    /// Blocks until the holder ends; `on_wait` is told who holds it first.
    Wait,
}

/// An exclusive lock on a directory, released when dropped or when the process ends.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    file: Option<File>,
    /// The directory did not exist before: dropping the lock removes it again when the lock
    /// file is all it holds (a job refused or failed before writing anything leaves no trace).
    created_dir: Option<PathBuf>,
}

impl DirLock {
    /// Locks `dir/file_name` (creating `dir` and the file), then records this process as
    /// the holder. `on_wait` receives the holder's description before a [`WhenHeld::Wait`]
    /// blocks (at most once).
    pub fn acquire(
        dir: &Path,
        file_name: &str,
        when_held: WhenHeld,
        on_wait: impl FnOnce(&str),
    ) -> Result<Self, LockError> {
        let path = dir.join(file_name);
        let mut on_wait = Some(on_wait);
        loop {
            let created_dir = (!dir.exists()).then(|| dir.to_path_buf());
            let mut file = open_lock_file(dir, &path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) if when_held == WhenHeld::Refuse => {
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        holder: holder_of(&mut file),
                    });
                }
                Err(TryLockError::WouldBlock) => {
                    if let Some(tell) = on_wait.take() {
                        tell(&holder_of(&mut file).unwrap_or_else(|| "unknown".to_owned()));
                    }
                    file.lock().map_err(|e| classify(&path, e))?;
                }
                Err(TryLockError::Error(e)) => return Err(classify(&path, e)),
            }
            // A holder that made the directory removes it (and the lock file) when it ends
            // having written nothing: a lock won on a file no longer at `path` is retried.
            if !still_at(&file, &path) {
                continue;
            }
            record_holder(&mut file).map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
            return Ok(Self {
                path,
                file: Some(file),
                created_dir,
            });
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Best effort, while still holding the lock: only a directory this lock created and
        // that holds nothing but the lock file goes (a job that made the directory and then
        // failed before writing anything). Everything else stays as it is.
        if let Some(dir) = &self.created_dir
            && fs::read_dir(dir).is_ok_and(|entries| {
                let names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                names == [self.path.clone()]
            })
            && fs::remove_file(&self.path).is_ok()
        {
            let _ = fs::remove_dir(dir);
        }
        drop(self.file.take());
    }
}

/// Creates `dir` and opens (creating) the lock file in it.
fn open_lock_file(dir: &Path, path: &Path) -> Result<File, LockError> {
    let io_error = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(io_error)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error)
}

/// Whether the open `file` is still the file at `path` (same device and inode).
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// `ENOLCK` and "unsupported" mean the file system has no locks; anything else is an error.
fn classify(path: &Path, source: io::Error) -> LockError {
    const ENOLCK: i32 = 37;
    let unsupported =
        source.raw_os_error() == Some(ENOLCK) || source.kind() == io::ErrorKind::Unsupported;
    let path = path.to_path_buf();
    if unsupported {
        LockError::Unsupported { path, source }
    } else {
        LockError::Io { path, source }
    }
}

/// The holder's line as it wrote it; `None` while it has not written one yet.
fn holder_of(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Replaces the file's content by this process's description.
fn record_holder(file: &mut File) -> io::Result<()> {
    let line = describe_this_process(SystemTime::now());
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(line.as_bytes())?;
    file.flush()
}

/// `pid 4242 on gpu-07 since 2026-12-07 02:50:11 UTC: mlm-train --config pubmed.toml`.
fn describe_this_process(now: SystemTime) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".to_owned());
    let command: Vec<String> = std::env::args().collect();
    format!(
        "pid {} on {host} since {}: {}\n",
        std::process::id(),
        utc_text(now),
        command.join(" ")
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` (no calendar crate for one timestamp).
fn utc_text(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mlm-lock-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = temp_dir("second");
        let first = DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).unwrap();
        let error = DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, LockError::Held { .. }), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains(" UTC"), "{text}");
        drop(first);
        DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_the_lock_made_goes_again_when_nothing_else_was_written() {
        let dir = temp_dir("made");
        drop(DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).unwrap());
        assert!(!dir.exists(), "made by the lock, nothing written: removed");

        let lock = DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).unwrap();
        fs::write(dir.join("metrics.jsonl"), "{}").unwrap();
        drop(lock);
        assert!(dir.join("metrics.jsonl").exists(), "written to: kept");
        drop(DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).unwrap());
        assert!(dir.join(".lock").exists(), "there before the lock: kept");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn different_lock_files_in_one_directory_do_not_conflict() {
        let dir = temp_dir("names");
        let _run = DirLock::acquire(&dir, ".run.lock", WhenHeld::Refuse, |_| {}).unwrap();
        let _prepare = DirLock::acquire(&dir, ".prepare.lock", WhenHeld::Refuse, |_| {}).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_waiting_lock_is_told_the_holder_and_gets_the_lock_when_it_ends() {
        let dir = temp_dir("wait");
        let first = DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        let mut told = String::new();
        let second = DirLock::acquire(&dir, ".lock", WhenHeld::Wait, |holder| {
            told = holder.to_owned()
        })
        .unwrap();
        release.join().unwrap();
        assert!(
            told.starts_with(&format!("pid {}", std::process::id())),
            "{told}"
        );
        // The first holder made the directory and wrote nothing, so it removed it on release:
        // the waiter won the lock on a file no longer there, retried, and holds the lock
        // file that is there now (a third job is refused).
        assert!(still_at(second.file.as_ref().unwrap(), second.path()));
        assert!(DirLock::acquire(&dir, ".lock", WhenHeld::Refuse, |_| {}).is_err());
        drop(second);
    }

    #[test]
    fn no_lock_support_is_told_apart_from_other_errors() {
        let path = Path::new("/x");
        let enolck = io::Error::from_raw_os_error(37);
        assert!(matches!(
            classify(path, enolck),
            LockError::Unsupported { .. }
        ));
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(classify(path, denied), LockError::Io { .. }));
    }

    #[test]
    fn dates_are_the_gregorian_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let time = UNIX_EPOCH + Duration::from_secs(1_796_610_611);
        assert_eq!(utc_text(time), "2026-12-07 02:30:11 UTC");
    }
}
