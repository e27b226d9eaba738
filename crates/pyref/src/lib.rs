//! Test support for the parity tests: runs a script of `tests/python/` with the project's
//! venv (`.venv/bin/python`, built by `scripts/setup` with torch, transformers, datasets and
//! pyarrow), offline and on one thread. A dev-dependency only; it links nothing.
//!
//! A missing venv fails the test with a pointer to `scripts/setup`: parity tests never skip.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root (crates/pyref/../..).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `.venv/bin/python tests/python/<script>`, run from the workspace root with the Hugging Face
/// libraries offline and quiet, and one OpenMP thread (tests run in parallel).
pub fn command(script: &str) -> Command {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup first (it builds the Python venv with torch, \
         transformers, datasets and pyarrow that the parity tests compare against)",
        python.display()
    );
    let mut command = Command::new(python);
    command
        .arg(root.join("tests/python").join(script))
        .current_dir(&root)
        .env("OMP_NUM_THREADS", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error");
    command
}

/// Runs `tests/python/<script> args...` and returns its output; panics with its stdout and
/// stderr when it fails.
pub fn run<I, S>(script: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = command(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start the venv's python for {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
