//! Command lines: unknown commands and flags, values of the wrong form, paths that do not
//! exist, and a reader that goes away (`mlm-train doctor | head -1`).

use std::io::Read;
use std::process::Stdio;

use super::{CRASH_MARKS, Case, check_all};
use crate::train::{tiny_config, train};
use crate::{Scratch, mlm_train};

#[test]
fn bad_command_lines_are_usage_errors_naming_the_argument() {
    let scratch = Scratch::new("catalogue-cli");
    let dir = scratch.path();
    let file = scratch.write("a-file", "not a directory");
    let missing = dir.join("no-such-checkpoint");
    let cases = vec![
        Case::new("unknown_command", ["trian"])
            .code(2)
            .names(&["trian"]),
        Case::new("unknown_flag", ["doctor", "--jsn"])
            .code(2)
            .names(&["--jsn"]),
        Case::new("threads_not_a_number", ["--threads", "many", "doctor"])
            .code(2)
            .names(&["--threads", "many"]),
        Case::new(
            "top_k_not_a_number",
            ["fill-mask", "--model", "m", "--top-k", "all", "[MASK]"],
        )
        .code(2)
        .names(&["--top-k", "all"]),
        Case::new(
            "set_without_equals",
            ["--config", "configs/quickstart.toml", "--dry-run"],
        )
        .more_args(&["--set", "training.max_steps"])
        .code(2)
        .names(&["--set training.max_steps", "key=value"]),
        Case::new(
            "set_into_a_value",
            ["config", "--config", "configs/quickstart.toml"],
        )
        .more_args(&["--set", "training.max_steps.x=1"])
        .code(2)
        .names(&["max_steps", "not a table"]),
        Case::new(
            "eval_missing_checkpoint",
            ["eval", "--config", "configs/quickstart.toml"],
        )
        .more_args(&["--checkpoint".as_ref(), missing.as_os_str()])
        .names(&["no-such-checkpoint"]),
        Case::new("export_missing_checkpoint", ["export", "--checkpoint"])
            .more_args(&[
                missing.as_os_str(),
                "--out".as_ref(),
                dir.join("out").as_os_str(),
            ])
            .names(&["no-such-checkpoint"])
            .absent(dir.join("out/config.json")),
        Case::new("fill_mask_model_is_a_file", ["fill-mask", "--model"])
            .more_args(&[file.as_os_str(), "[MASK]".as_ref()])
            .names(&["a-file"]),
        Case::new("inspect_missing_path", ["inspect"])
            .more_args(&[missing.as_os_str()])
            .names(&["no-such-checkpoint"]),
        Case::new("plot_of_a_directory_without_metrics", ["plot"])
            .more_args(&[dir.as_os_str()])
            .names(&["metrics.jsonl"]),
        Case::new(
            "resume_from_a_missing_directory",
            ["--config", "configs/quickstart.toml"],
        )
        .more_args(&["--resume".as_ref(), missing.as_os_str()])
        .names(&["no-such-checkpoint"]),
    ];
    check_all(&cases);
}

/// Runs `mlm-train ARGS` with its stdout a pipe closed at once (a reader that went away, as
/// `| head` does when it has what it wants); returns the exit status and stderr.
fn with_closed_stdout(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut child = mlm_train()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mlm-train starts");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (child.wait().unwrap().code(), stderr)
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let scratch = Scratch::new("catalogue-pipe");
    let config = tiny_config(&scratch, "max_steps = 2", "[checkpoint]\nsave_steps = 2");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let checkpoint = scratch.path().join("run/checkpoint-2");
    let (config, checkpoint) = (config.as_os_str(), checkpoint.as_os_str());
    let commands: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec!["doctor".as_ref()],
        vec!["doctor".as_ref(), "--json".as_ref()],
        vec!["config".as_ref(), "--reference".as_ref()],
        vec![
            "eval".as_ref(),
            "--config".as_ref(),
            config,
            "--checkpoint".as_ref(),
            checkpoint,
        ],
        vec![
            "fill-mask".as_ref(),
            "--model".as_ref(),
            checkpoint,
            "a [MASK] b".as_ref(),
        ],
        vec!["inspect".as_ref(), checkpoint],
        // Last: they rewrite the tokenizer and the corpus the checkpoint was trained on.
        vec![
            "vocab".as_ref(),
            "train".as_ref(),
            "--config".as_ref(),
            config,
        ],
        vec!["prepare".as_ref(), "--config".as_ref(), config],
    ];
    let mut problems = Vec::new();
    for args in &commands {
        let (code, stderr) = with_closed_stdout(args);
        let crashed = CRASH_MARKS.iter().any(|mark| stderr.contains(mark));
        if code != Some(0) || crashed {
            problems.push(format!("{args:?}: exit {code:?}\n{stderr}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
