//! `mlm-train --config FILE`: loading, checking and reporting config errors.

use std::path::PathBuf;
use std::process::Output;

use crate::{Scratch, mlm_train, run};

/// Writes `text` as a config in a scratch directory and runs `mlm-train --config` on it.
/// Returns the scratch (keep it alive while using the path), the config path and the run.
fn run_config(name: &str, text: &str) -> (Scratch, PathBuf, Output, String, String) {
    let scratch = Scratch::new(name);
    let path = scratch.write("config.toml", text);
    let (output, stdout, stderr) = run(mlm_train().arg("--config").arg(&path));
    (scratch, path, output, stdout, stderr)
}

/// Asserts a failed run with exit code 1, a message and no panic.
fn assert_config_error(output: &Output, stderr: &str, expected: &[&str]) {
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn quickstart_config_resolves_to_a_plan() {
    // A copy of configs/ and data/ in a scratch directory: the vocabulary and the prepared
    // corpus land there, not in the repository.
    let scratch = Scratch::new("quickstart-dry");
    let root = crate::workspace_root();
    std::fs::create_dir_all(scratch.path().join("configs")).unwrap();
    std::fs::create_dir_all(scratch.path().join("data/sample")).unwrap();
    let config = scratch.path().join("configs/quickstart.toml");
    std::fs::copy(root.join("configs/quickstart.toml"), &config).unwrap();
    std::fs::copy(
        root.join("data/sample/abstracts.jsonl"),
        scratch.path().join("data/sample/abstracts.jsonl"),
    )
    .unwrap();
    let (output, _, stderr) = run(mlm_train().arg("--config").arg(&config).arg("--dry-run"));
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("quickstart.toml"), "{stderr}");
    assert!(stderr.contains("threads: libtorch 1, rayon 1"), "{stderr}");
    assert!(
        stderr.contains("device   cpu (runtime.device = \"auto\")")
            || stderr.contains("device   cuda:0"),
        "{stderr}"
    );
    assert!(stderr.contains("steps    400"), "{stderr}");
    assert!(stderr.contains("(from scratch)"), "{stderr}");
    assert!(stderr.contains("nothing was trained"), "{stderr}");
    assert!(
        !scratch
            .path()
            .join("runs/quickstart/metrics.jsonl")
            .exists()
    );
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let (_scratch, path, output, _, stderr) = run_config(
        "unknown-key",
        "[runtime]\ndevice = \"cpu\"\ncpu_treads = 4\n",
    );
    let file = path.display().to_string();
    assert_config_error(
        &output,
        &stderr,
        &[&file, "line 3", "unknown field `cpu_treads`"],
    );
}

#[test]
fn unknown_section_is_refused() {
    let (_scratch, _, output, _, stderr) =
        run_config("unknown-section", "[runtim]\ndevice = \"cpu\"\n");
    assert_config_error(&output, &stderr, &["line 1", "unknown field `runtim`"]);
}

#[test]
fn bad_device_value_is_explained() {
    let (_scratch, _, output, _, stderr) =
        run_config("bad-device", "[runtime]\ndevice = \"gpu\"\n");
    assert_config_error(
        &output,
        &stderr,
        &["line 2", "expected auto, cpu, cuda or cuda:N"],
    );
}

#[test]
fn missing_config_file_is_named() {
    let (output, _, stderr) = run(mlm_train().args(["--config", "configs/no-such.toml"]));
    assert_config_error(
        &output,
        &stderr,
        &["cannot read config configs/no-such.toml", "No such file"],
    );
}

#[test]
fn forcing_cuda_fails_clearly_without_a_gpu_and_works_with_one() {
    let (_scratch, _, output, stdout, stderr) =
        run_config("cuda", "[runtime]\ndevice = \"cuda\"\n");
    let (_, doctor, _) = run(mlm_train().args(["doctor", "--json"]));
    if doctor.contains("\"cuda_available\": true") {
        // The device resolves; the job then needs a [corpus] this config lacks.
        assert!(stderr.contains("device   cuda:0"), "{stdout}{stderr}");
        assert_config_error(&output, &stderr, &["has no [corpus] section"]);
    } else {
        assert_config_error(
            &output,
            &stderr,
            &["runtime.device = \"cuda:0\" but CUDA is not available"],
        );
    }
}

#[test]
fn zero_threads_is_refused_with_the_key() {
    let scratch = Scratch::new("zero-threads");
    let path = scratch.write("config.toml", "[runtime]\ncpu_threads = 0\n");
    // Without the harness's thread cap, so the config's value is the one applied.
    let (output, _, stderr) = run(mlm_train()
        .arg("--config")
        .arg(&path)
        .env_remove("MLM_TRAIN_THREADS"));
    assert_config_error(
        &output,
        &stderr,
        &["runtime.cpu_threads must be at least 1"],
    );
}
