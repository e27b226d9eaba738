//! Crash consistency and integrity through the CLI: a few fault points driven by
//! `scripts/crash-test` (the full harness runs every point), damaged checkpoint files (each
//! missing, truncated, bit-flipped) refused with a message naming the file, a damaged latest
//! checkpoint passed over on resume, a damaged shard named with its row group.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::train::{tiny_config, train};
use crate::{Scratch, mlm_train, run, workspace_root};

/// A run of 8 steps saving at 4 and 8: `run/checkpoint-4`, `run/checkpoint-8`.
pub(crate) fn trained_run(scratch: &Scratch) -> PathBuf {
    let config = tiny_config(
        scratch,
        "max_steps = 8",
        "[checkpoint]\nsave_steps = 4\nkeep_last = 2",
    );
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    config
}

/// No Rust panic and no libtorch C++ backtrace reached the user.
pub(crate) fn assert_clean_failure(output: &Output, code: i32, stderr: &str) {
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    for raw in [
        "panicked",
        "stack backtrace",
        "frame #",
        "Exception raised from",
    ] {
        assert!(!stderr.contains(raw), "{raw} in {stderr}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Missing,
    Truncated,
    BitFlipped,
}

fn damage(path: &Path, how: Damage) {
    match how {
        Damage::Missing => std::fs::remove_file(path).unwrap(),
        Damage::Truncated => {
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        }
        Damage::BitFlipped => {
            let mut bytes = std::fs::read(path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x04;
            std::fs::write(path, bytes).unwrap();
        }
    }
}

const CHECKPOINT_FILES: [&str; 9] = [
    "model.safetensors",
    "optimizer.safetensors",
    "trainer_state.json",
    "run_config.toml",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "integrity.json",
];

#[test]
fn the_fault_point_harness_resumes_identically_after_kills_at_a_handful_of_points() {
    let points = "prepare.mid-shard,checkpoint.before-rename@2,checkpoint.mid-rotation,\
                  train.mid-step@6,export.before-rename";
    let scratch = Scratch::new("crash-harness");
    let output = Command::new(workspace_root().join("scripts/crash-test"))
        .args(["--points", points, "--random", "1", "--binary"])
        .arg(env!("CARGO_BIN_EXE_mlm-train"))
        .arg("--scratch")
        .arg(scratch.path())
        .output()
        .expect("scripts/crash-test runs (python3)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for point in points.split(',') {
        // A point given without a hit is armed at the harness's default hit for it.
        let row = stdout
            .lines()
            .find(|line| line.starts_with(point) && line[point.len()..].starts_with(['@', ' ']))
            .unwrap_or_else(|| panic!("no row for {point} in {stdout}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "yes", "killed at {point}: {row}");
        assert_eq!(cells.last(), Some(&"yes"), "identical after {point}: {row}");
    }
    assert!(stdout.contains(", 0 failed;"), "{stdout}");
}

#[test]
fn every_damaged_checkpoint_file_is_refused_naming_it() {
    let scratch = Scratch::new("crash-damaged-files");
    trained_run(&scratch);
    let original = scratch.path().join("run/checkpoint-8");
    let mut failures = Vec::new();
    for file in CHECKPOINT_FILES {
        for how in [Damage::Missing, Damage::Truncated, Damage::BitFlipped] {
            let case = scratch.path().join(format!("{file}-{how:?}"));
            copy_dir(&original, &case);
            damage(&case.join(file), how);
            let out = scratch.path().join(format!("export-{file}-{how:?}"));
            let (output, _, stderr) = run(mlm_train()
                .args(["export", "--verify", "--checkpoint"])
                .arg(&case)
                .arg("--out")
                .arg(&out));
            if file == "integrity.json" && matches!(how, Damage::Missing) {
                // A checkpoint of an earlier version: loaded, with a note.
                assert!(output.status.success(), "{stderr}");
                assert!(stderr.contains("has no integrity.json"), "{stderr}");
                continue;
            }
            assert_clean_failure(&output, 1, &stderr);
            let named = stderr.contains(&case.join(file).display().to_string());
            if !named || out.exists() {
                failures.push(format!(
                    "{file} {how:?}: exported {} {stderr}",
                    out.exists()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_damaged_latest_checkpoint_is_passed_over_for_the_previous_intact_one() {
    let scratch = Scratch::new("crash-resume-damaged");
    let config = trained_run(&scratch);
    let run_dir = scratch.path().join("run");
    let uninterrupted = std::fs::read(run_dir.join("checkpoint-8/model.safetensors")).unwrap();
    for (file, how) in [
        ("model.safetensors", Damage::BitFlipped),
        ("optimizer.safetensors", Damage::Truncated),
        ("integrity.json", Damage::BitFlipped),
    ] {
        damage(&run_dir.join("checkpoint-8").join(file), how);
        let (output, _, stderr) = train(&config, &[]);
        assert!(output.status.success(), "{file} {how:?}: {stderr}");
        let refused = format!(
            "warning: refusing {}",
            run_dir.join("checkpoint-8").display()
        );
        assert!(stderr.contains(&refused), "{file}: {stderr}");
        assert!(stderr.contains(file), "the reason names {file}: {stderr}");
        assert!(
            stderr.contains("checkpoint-4 (the previous intact checkpoint) at step 4"),
            "{stderr}"
        );
        // Retrained from step 4, the run ends exactly where the undamaged one did.
        let retrained = std::fs::read(run_dir.join("checkpoint-8/model.safetensors")).unwrap();
        assert!(retrained == uninterrupted, "{file}: weights differ");
    }

    // With every checkpoint damaged the run stops rather than silently starting afresh.
    damage(
        &run_dir.join("checkpoint-8/model.safetensors"),
        Damage::Truncated,
    );
    damage(
        &run_dir.join("checkpoint-4/trainer_state.json"),
        Damage::BitFlipped,
    );
    let (output, _, stderr) = train(&config, &[]);
    assert_clean_failure(&output, 1, &stderr);
    assert!(
        stderr.contains("checkpoint-8/model.safetensors"),
        "{stderr}"
    );
    // `--resume DIR` of a damaged checkpoint is refused outright.
    let (output, _, stderr) = train(
        &config,
        &[
            "--resume",
            &run_dir.join("checkpoint-4").display().to_string(),
        ],
    );
    assert_clean_failure(&output, 1, &stderr);
    assert!(
        stderr.contains("checkpoint-4/trainer_state.json"),
        "{stderr}"
    );
}

#[test]
fn a_damaged_shard_is_named_with_its_row_group() {
    let scratch = Scratch::new("crash-damaged-shard");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let corpus = scratch.path().join("corpus");
    let (output, _, stderr) = run(mlm_train().args(["inspect", "--verify"]).arg(&corpus));
    assert!(output.status.success(), "{stderr}");

    let shard = corpus.join("train-00000.parquet");
    damage(&shard, Damage::BitFlipped);
    let (output, _, stderr) = run(mlm_train().args(["inspect", "--verify"]).arg(&corpus));
    assert_clean_failure(&output, 1, &stderr);
    assert!(stderr.contains(&shard.display().to_string()), "{stderr}");
    assert!(stderr.contains("in row group 0 (bytes "), "{stderr}");
    // Training checks the corpus too (its small shards are hashed even by the fast check).
    let (output, _, stderr) = train(&config, &[]);
    assert_clean_failure(&output, 1, &stderr);
    assert!(
        stderr.contains("train-00000.parquet is corrupt"),
        "{stderr}"
    );
}
