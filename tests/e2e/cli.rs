//! The command line itself: version, help, usage errors.

use crate::{mlm_train, run};

#[test]
fn version_names_the_binary_and_the_crate_version() {
    let (output, stdout, _) = run(mlm_train().arg("--version"));
    assert!(output.status.success());
    assert_eq!(
        stdout.trim(),
        format!("mlm-train {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_explains_the_main_job_and_the_commands() {
    let (output, stdout, _) = run(mlm_train().arg("--help"));
    assert!(output.status.success());
    for expected in [
        "--config <FILE>",
        "doctor",
        "--threads <N>",
        "docs/config.md",
    ] {
        assert!(
            stdout.contains(expected),
            "--help lacks {expected:?}:\n{stdout}"
        );
    }
}

#[test]
fn no_arguments_prints_help_and_fails() {
    let (output, _, stderr) = run(&mut mlm_train());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("Usage: mlm-train"), "{stderr}");
}

#[test]
fn config_and_a_command_together_are_a_usage_error() {
    let (output, _, stderr) =
        run(mlm_train().args(["--config", "configs/quickstart.toml", "doctor"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
}

#[test]
fn zero_threads_flag_is_a_usage_error() {
    let (output, _, stderr) = run(mlm_train().args(["doctor", "--threads", "0"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--threads <N>"), "{stderr}");
}
