//! Every input of `fuzz/regressions/<target>/` (inputs that once crashed a parser, and
//! small valid seeds) fed to its target's entry point, on stable: a parser that panics on
//! one again fails this test, naming the file.

use std::path::{Path, PathBuf};

use super::TARGETS;

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions")
}

/// The files of `dir`, sorted (none when it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on every regression input of its folder; returns the files that panicked.
fn panicking_inputs(name: &str, run: fn(&[u8])) -> Vec<String> {
    let mut failed = Vec::new();
    for file in inputs(&regressions_dir().join(name)) {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    failed
}

#[test]
fn every_regression_input_is_refused_or_read_without_a_panic() {
    let mut failed = Vec::new();
    for target in TARGETS {
        failed.extend(panicking_inputs(target.name, target.run));
    }
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
}

#[test]
fn every_target_has_regression_inputs_and_every_folder_a_target() {
    for target in TARGETS {
        let found = inputs(&regressions_dir().join(target.name));
        assert!(
            !found.is_empty(),
            "no input in fuzz/regressions/{}",
            target.name
        );
    }
    for entry in std::fs::read_dir(regressions_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            TARGETS.iter().any(|target| target.name == name),
            "fuzz/regressions/{name} is no target's folder"
        );
    }
}
