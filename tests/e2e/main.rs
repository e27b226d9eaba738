//! End-to-end tests: the `mlm-train` binary as a user runs it.
//!
//! One test binary for the whole suite (each linked binary costs CI time); its modules group
//! the behaviour under test. Declared as a `[[test]]` of crates/cli so that it runs against
//! that package's binary.

// Test helpers say why a test was skipped (`--nocapture` shows it).
#![allow(clippy::print_stderr)]

mod catalogue;
mod cli;
mod config;
mod crash;
mod disk_full;
mod distributed;
mod doctor;
mod eval_masks;
mod gpu_verdicts;
mod guide;
mod inspect;
mod logging;
mod mask_units;
mod modernbert;
mod ownership;
mod prepare;
mod speed;
mod train;
mod vocab_extend;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (tests/e2e/../..).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `mlm-train` with thread pools capped at one thread: tests run in parallel on 2 cores.
pub fn mlm_train() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlm-train"));
    command
        .env("MLM_TRAIN_THREADS", "1")
        .current_dir(workspace_root());
    command
}

/// Runs `command`, returning its output with stdout and stderr as text.
pub fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("mlm-train starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A fresh, empty directory for one test, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mlm-train-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
