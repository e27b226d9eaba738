//! The command line itself: version, help, usage errors.

use crate::{Scratch, mlm_train, run, workspace_root};

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
        "mlm-train config --reference",
        "Examples:",
    ] {
        assert!(
            stdout.contains(expected),
            "--help lacks {expected:?}:\n{stdout}"
        );
    }
    // An installed binary has no docs/ beside it: help points at what the binary prints.
    assert!(!stdout.contains("docs/"), "{stdout}");
}

/// The commands `mlm-train help` lists (and `vocab`'s own), as typed.
fn commands() -> Vec<Vec<String>> {
    let (_, stdout, _) = run(mlm_train().arg("--help"));
    let listed = stdout
        .split("Commands:")
        .nth(1)
        .expect("--help lists commands")
        .split("\n\n")
        .next()
        .unwrap();
    let mut commands: Vec<Vec<String>> = listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(|name| vec![name.to_string()])
        .collect();
    commands.push(vec!["vocab".into(), "train".into()]);
    commands.push(vec!["vocab".into(), "extend".into()]);
    commands
}

#[test]
fn every_command_s_help_has_an_example_and_no_docs_path() {
    let commands = commands();
    for expected in ["prepare", "eval", "plot", "config", "fill-mask"] {
        assert!(commands.iter().any(|c| c[0] == expected), "{commands:?}");
    }
    for command in commands {
        let (output, stdout, _) = run(mlm_train().args(&command).arg("--help"));
        assert!(output.status.success(), "{command:?}");
        let examples = stdout.split("Examples:").nth(1).unwrap_or_default();
        let prefix = format!("mlm-train {}", command.join(" "));
        assert!(
            examples
                .lines()
                .any(|line| line.trim().starts_with(&prefix)),
            "{command:?} --help has no example:\n{stdout}"
        );
        assert!(!stdout.contains("docs/"), "{command:?}:\n{stdout}");
    }
}

#[test]
fn global_flags_go_before_or_after_the_command() {
    let config = "configs/quickstart.toml";
    for args in [
        ["--threads", "2", "config", "--config", config],
        ["config", "--threads", "2", "--config", config],
        ["--config", config, "--threads", "2", "config"],
    ] {
        let (output, stdout, stderr) = run(mlm_train().args(args));
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains("[training]"), "{args:?}: {stdout}");
    }
    let (output, _, stderr) = run(mlm_train().args(["--threads", "1", "doctor", "--json"]));
    assert!(output.status.success(), "{stderr}");
    // Main-job flags and configs given to commands that take none are usage errors.
    for args in [
        vec!["--dry-run", "prepare", "--config", config],
        vec![
            "export",
            "--config",
            config,
            "--checkpoint",
            "x",
            "--out",
            "y",
        ],
        vec!["prepare"],
    ] {
        let (output, _, stderr) = run(mlm_train().args(&args));
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
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

#[test]
fn config_prints_a_resolved_config_that_resolves_to_itself() {
    let scratch = Scratch::new("config-round-trip");
    let quickstart = workspace_root().join("configs/quickstart.toml");
    let set = [
        "--set",
        "training.learning_rate=2e-4",
        "--set",
        "eval.eval_steps=7",
    ];
    let (output, first, stderr) = run(mlm_train()
        .args(["config", "--config"])
        .arg(&quickstart)
        .args(set));
    assert!(output.status.success(), "{stderr}");
    // Every section, defaults included, the overrides applied, paths absolute.
    for section in [
        "[runtime]",
        "[vocab]",
        "[corpus]",
        "[model]",
        "[masking]",
        "[training]",
    ] {
        assert!(
            first.contains(&format!("\n{section}\n")),
            "{section}:\n{first}"
        );
    }
    for line in [
        "learning_rate = 0.0002",
        "eval_steps = 7",
        "adam_beta2 = 0.999",
    ] {
        assert!(first.lines().any(|l| l == line), "{line}:\n{first}");
    }
    assert!(first.contains("\nmlm_probability = 0.15\n"), "{first}");
    let runs = workspace_root().join("runs/quickstart");
    assert!(
        first.contains(&format!("output_dir = \"{}\"", runs.display())),
        "{first}"
    );
    assert!(!first.contains("/../"), "{first}");

    let resolved = scratch.write("resolved.toml", &first);
    let (output, second, stderr) = run(mlm_train().args(["config", "--config"]).arg(&resolved));
    assert!(output.status.success(), "{stderr}");
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        body(&first),
        body(&second),
        "the resolved config resolves to itself"
    );

    let (output, reference, _) = run(mlm_train().args(["config", "--reference"]));
    assert!(output.status.success());
    let docs = std::fs::read_to_string(workspace_root().join("docs/config.md")).unwrap();
    assert_eq!(reference, docs, "the reference is docs/config.md");
}
