//! One job per directory: the main job locks its `training.output_dir` (rank 0 for a
//! data-parallel job), and a prepare locks the corpus output it writes, for their whole
//! lives ([`mlm_durable::DirLock`]: an OS lock the kernel drops when the process dies). A
//! second job on the same directory is refused naming the first, or waits for it when asked.

use std::path::Path;

use mlm_durable::{DirLock, LockError, WhenHeld};

/// The lock file of a run directory (`training.output_dir`).
pub const RUN_LOCK: &str = ".mlm-train-run.lock";
/// The lock file of a prepared corpus directory (`[corpus] output`). Another name than the
/// run's, so that a run whose corpus is prepared into its own output directory holds both.
pub const PREPARE_LOCK: &str = ".mlm-train-prepare.lock";

/// Whether a job refuses at once when its directory is taken, or waits (`--wait-for-lock`).
pub fn when_held(wait_for_lock: bool) -> WhenHeld {
    if wait_for_lock {
        WhenHeld::Wait
    } else {
        WhenHeld::Refuse
    }
}

/// Locks `dir` for this process with the lock file `name`. `note` is told when the job
/// waits, and when the file system has no locks: the job then goes on unlocked (`None`),
/// since refusing would make such a directory unusable.
pub fn lock_dir(
    dir: &Path,
    name: &str,
    when_held: WhenHeld,
    note: &dyn Fn(&str),
) -> Result<Option<DirLock>, LockError> {
    let waiting = |holder: &str| {
        note(&format!(
            "waiting for {} to be free: it is in use by {holder}",
            dir.display()
        ))
    };
    match DirLock::acquire(dir, name, when_held, waiting) {
        Ok(lock) => Ok(Some(lock)),
        Err(error @ LockError::Unsupported { .. }) => {
            note(&format!(
                "{error}: going on unlocked; a second job started on {} will not be refused",
                dir.display()
            ));
            Ok(None)
        }
        Err(error) => Err(error),
    }
}
