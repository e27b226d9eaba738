//! Named fault points for crash-consistency tests.
//!
//! `fault_point("checkpoint.before-rename")` does nothing unless the environment variable
//! [`FAULT_VAR`] names that point: `MLM_TRAIN_FAULT=checkpoint.before-rename` kills the process
//! the first time the point is reached, `MLM_TRAIN_FAULT=train.mid-step@5` the fifth time. The
//! process sends itself SIGKILL: no destructor, no `atexit` handler, no buffered write or
//! signal handler runs, exactly as when `kill -9` comes from outside, so whatever a real crash
//! at that instant would leave on disk is what the next run finds. `scripts/crash-test` kills
//! a run at every point of [`FAULT_POINTS`] and checks that rerunning it ends as an
//! uninterrupted run does.
//!
//! The variable is read once; with it unset a point costs one initialised-`OnceLock` load and
//! a branch. The crate links nothing but libc, so `mlm-corpus` can use it without libtorch.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a fault point: `<name>` or `<name>@<hit>` (1-based).
pub const FAULT_VAR: &str = "MLM_TRAIN_FAULT";

/// Every fault point, with where it sits. `mlm-train doctor --fault-points` prints them;
/// `scripts/crash-test` iterates them.
pub const FAULT_POINTS: &[(&str, &str)] = &[
    (
        "vocab.before-tokenizer-write",
        "vocabulary trained, none of its files written yet",
    ),
    (
        "vocab.after-tokenizer-write",
        "vocabulary files written in the temporary directory, not yet renamed into place",
    ),
    (
        "prepare.mid-shard",
        "a row group of a shard written, the shard not finished",
    ),
    (
        "prepare.after-shard",
        "a shard renamed into place, prepare-state.json not yet updated",
    ),
    (
        "prepare.before-manifest",
        "shards and integrity.json written, manifest.json not yet",
    ),
    (
        "prepare.after-manifest",
        "manifest.json written, prepare-state.json not yet removed",
    ),
    (
        "train.mid-step",
        "gradients computed, the optimizer step not taken",
    ),
    (
        "train.after-optimizer-step",
        "weights updated, the step's checkpoint (if one is due) not written",
    ),
    (
        "checkpoint.after-model-file",
        "model.safetensors, config.json and tokenizer files in the temporary directory",
    ),
    (
        "checkpoint.after-optimizer-file",
        "optimizer.safetensors written in the temporary directory",
    ),
    (
        "checkpoint.after-state-file",
        "trainer_state.json written, integrity.json not yet",
    ),
    (
        "checkpoint.before-rename",
        "the temporary directory complete, not yet synced and renamed",
    ),
    (
        "checkpoint.after-rename",
        "checkpoint-N in place, older checkpoints not yet rotated",
    ),
    (
        "checkpoint.mid-rotation",
        "one old checkpoint deleted, the others not yet",
    ),
    (
        "export.mid-export",
        "model.safetensors written in the temporary export directory",
    ),
    (
        "export.before-rename",
        "the temporary export directory complete, not yet renamed to --out",
    ),
];

/// The armed point and the hit that kills, parsed once from [`FAULT_VAR`].
struct Armed {
    name: String,
    hit: u64,
    seen: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// Kills the process here if [`FAULT_VAR`] arms this point and this is the armed hit.
#[inline]
pub fn fault_point(name: &'static str) {
    let Some(armed) = ARMED.get_or_init(armed_from_env) else {
        return;
    };
    if armed.name != name {
        return;
    }
    let hit = armed.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if hit == armed.hit {
        kill_self(name, hit);
    }
}

fn armed_from_env() -> Option<Armed> {
    let value = std::env::var(FAULT_VAR).ok()?;
    match parse(&value) {
        Ok((name, hit)) => Some(Armed {
            name: name.to_owned(),
            hit,
            seen: AtomicU64::new(0),
        }),
        Err(message) => {
            // A typo would otherwise look like a run that was never killed.
            tell(format_args!(
                "warning: {FAULT_VAR}={value} is ignored: {message}"
            ));
            None
        }
    }
}

/// `<name>` or `<name>@<hit>` (hit >= 1) of a known point.
pub fn parse(value: &str) -> Result<(&str, u64), String> {
    let (name, hit) = match value.split_once('@') {
        Some((name, hit)) => {
            let hit = hit
                .parse::<u64>()
                .ok()
                .filter(|&h| h >= 1)
                .ok_or_else(|| format!("`{hit}` is not a hit number (1, 2, ...)"))?;
            (name, hit)
        }
        None => (value, 1),
    };
    if !FAULT_POINTS.iter().any(|(known, _)| *known == name) {
        return Err(format!(
            "`{name}` is not a fault point (`mlm-train doctor --fault-points` lists them)"
        ));
    }
    Ok((name, hit))
}

/// Writes one line to stderr. Library crates do not print (`clippy::print_stderr` is denied
/// in the workspace); this crate is the exception by its job: it ends the process from deep
/// inside library code, where no caller is left to return a message to, and the line is
/// the only trace that the kill was deliberate (or that a misspelt [`FAULT_VAR`] armed
/// nothing). It is written unbuffered, before the SIGKILL, and a failed write is ignored:
/// nothing here may change what the process does.
fn tell(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

fn kill_self(name: &str, hit: u64) -> ! {
    tell(format_args!(
        "fault point {name} (hit {hit}): killing the process ({FAULT_VAR})"
    ));
    // SAFETY: getpid and kill take no pointers; SIGKILL cannot be caught, so nothing of this
    // process runs after it is delivered.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // Not reached; abort (no unwinding) should the signal somehow not end the process.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hits_parse_and_unknown_names_are_refused() {
        assert_eq!(parse("train.mid-step"), Ok(("train.mid-step", 1)));
        assert_eq!(
            parse("checkpoint.before-rename@3"),
            Ok(("checkpoint.before-rename", 3))
        );
        assert!(
            parse("train.mid-stpe")
                .unwrap_err()
                .contains("not a fault point")
        );
        assert!(
            parse("train.mid-step@0")
                .unwrap_err()
                .contains("hit number")
        );
        assert!(
            parse("train.mid-step@x")
                .unwrap_err()
                .contains("hit number")
        );
    }

    #[test]
    fn point_names_are_unique_and_namespaced_by_stage() {
        let mut names: Vec<&str> = FAULT_POINTS.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAULT_POINTS.len());
        for name in names {
            let stage = name.split('.').next().unwrap_or_default();
            assert!(
                ["vocab", "prepare", "train", "checkpoint", "export"].contains(&stage),
                "{name}"
            );
        }
    }

    #[test]
    fn an_unarmed_point_returns() {
        // The test process has no MLM_TRAIN_FAULT: every point is a no-op.
        for &(name, _) in FAULT_POINTS {
            fault_point(name);
        }
    }
}
