//! scripts/gpu-check's verdicts (scripts/gpu_check_verdicts.py) on runs made here, on the
//! CPU: a row passes only when its feature did what it claims, and fails otherwise. The
//! verdicts run on a GPU machine once, at most, per lent session; these tests keep them
//! honest in between.

use std::path::Path;
use std::process::Command;

use crate::train::{tiny_config, train};
use crate::{Scratch, workspace_root};

/// `python3 scripts/gpu_check_verdicts.py ARGS`: its one `pass|...` / `FAIL|...` line.
fn verdict(args: &[&Path]) -> String {
    let python = workspace_root().join(".venv/bin/python");
    let output = Command::new(python)
        .arg(workspace_root().join("scripts/gpu_check_verdicts.py"))
        .args(args)
        .output()
        .expect("the venv's python runs (scripts/setup)");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The metrics of `run`, with `edit` applied to every train record.
fn edit_metrics(run: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited: Vec<String> = text
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record["split"] == "train" {
                edit(&mut record);
            }
            record.to_string()
        })
        .collect();
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
}

#[test]
fn the_cuda_graph_row_fails_without_replays_or_with_parted_losses() {
    let scratch = Scratch::new("gpu-verdicts");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(&scratch, "max_steps = 24", checkpoint);
    let run = |name: &str, sets: &[&str]| {
        let output_dir = format!("training.output_dir=\"{name}\"");
        let mut args = vec!["--set", &output_dir];
        for set in sets {
            args.extend(["--set", set]);
        }
        let (output, _, stderr) = train(&config, &args);
        assert!(output.status.success(), "{stderr}");
        scratch.path().join(name)
    };
    let eager = run("eager", &[]);
    let graphed = run("graphed", &["training.cuda_graphs=true"]);
    let control = run("control", &["model.dropout=0.0"]);
    let graphs = |graphed: &Path| verdict(&[Path::new("graphs"), &eager, graphed, &control]);

    // The CPU runs the fixed-shape step eagerly: the losses agree, but nothing replayed.
    let line = graphs(&graphed);
    assert!(line.starts_with("FAIL|no step replayed"), "{line}");
    assert!(!line.contains("losses part"), "{line}");

    // As a GPU run would report it: every step after the warm-up replayed. Passes.
    edit_metrics(&graphed, |r| {
        r["graphs"] = serde_json::json!({
            "eager": 4, "replayed": 20, "short_batch_fallbacks": 0, "full_batch_fallbacks": 0
        })
    });
    let line = graphs(&graphed);
    assert!(line.starts_with("pass|"), "{line}");

    // A replay that trained something else (a frozen dropout mask, a stale input): fails.
    edit_metrics(&graphed, |r| {
        if r["step"] == 12 {
            r["loss"] = (r["loss"].as_f64().unwrap() * 1.001).into();
        }
    });
    let line = graphs(&graphed);
    assert!(line.starts_with("FAIL|losses part by"), "{line}");
}

#[test]
fn the_warnings_row_fails_on_a_libtorch_warning_line() {
    let scratch = Scratch::new("gpu-verdicts-warnings");
    let clean = scratch.write(
        "train-clean.log",
        "step 1/2  loss 6.0\nstep 2/2  loss 5.9\n",
    );
    let line = verdict(&[Path::new("warnings"), &clean]);
    assert!(line.starts_with("pass|"), "{line}");
    let noisy = scratch.write(
        "train-noisy.log",
        "step 1/2  loss 6.0\n[W1207 02:50:11.000000 Memory.cpp:46] Warning: The argument \
         'device' of Tensor.pin_memory() is deprecated\n",
    );
    let line = verdict(&[Path::new("warnings"), &clean, &noisy]);
    assert!(line.starts_with("FAIL|"), "{line}");
    assert!(line.contains("pin_memory"), "{line}");
}
