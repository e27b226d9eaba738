//! `mlm-train inspect PATH` on each kind of directory: a prepared corpus, a checkpoint (and
//! its config against another's) and an exported model directory.

use std::path::Path;

use crate::train::{tiny_config, train};
use crate::{Scratch, mlm_train, run};

fn inspect(args: &[&Path]) -> String {
    let (output, stdout, stderr) = run(mlm_train().arg("inspect").args(args));
    assert!(output.status.success(), "{stderr}");
    stdout
}

#[test]
fn inspect_shows_a_corpus_a_checkpoint_against_another_and_a_model() {
    let scratch = Scratch::new("inspect");
    let config = tiny_config(&scratch, "max_steps = 4", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let set = [
        "--set",
        "training.output_dir=\"other\"",
        "--set",
        "training.learning_rate=5e-4",
    ];
    let (output, _, stderr) = train(&config, &set);
    assert!(output.status.success(), "{stderr}");

    // The corpus: the manifest's counts and decoded sequences with word starts.
    let corpus = scratch.path().join("corpus");
    let text = inspect(&[&corpus]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("manifest.json")).unwrap())
            .unwrap();
    let tokens = manifest["train"]["tokens"].as_u64().unwrap();
    let train_row = text.lines().find(|l| l.starts_with("train ")).unwrap();
    let shown_tokens = train_row
        .split_whitespace()
        .nth(3)
        .unwrap()
        .replace(',', "");
    assert_eq!(shown_tokens, tokens.to_string(), "{text}");
    assert!(text.contains("first 2 train sequences"), "{text}");
    assert!(text.contains("pieces |[CLS] |"), "{text}");
    assert_eq!(text.matches("\n#").count(), 2, "{text}");

    // The masks of a step: the tiny run's global batch is 4 x 2 sequences.
    let masks_at = |step: &str| {
        let (output, stdout, stderr) = run(mlm_train()
            .arg("inspect")
            .arg(&corpus)
            .args(["--sequences", "1", "--masks-at-step", step, "--config"])
            .arg(&config));
        assert!(output.status.success(), "{stderr}");
        stdout.split("\nstep ").nth(1).unwrap().to_string()
    };
    let step_two = masks_at("2");
    assert!(
        step_two.starts_with("2: epoch 0, positions 8..16 "),
        "{step_two}"
    );
    assert!(step_two.contains("=>[MASK]>"), "{step_two}");
    assert_ne!(masks_at("1"), step_two);
    let (output, _, stderr) = run(mlm_train()
        .arg("inspect")
        .arg(&corpus)
        .args(["--masks-at-step", "2"]));
    assert_eq!(output.status.code(), Some(2), "needs --config: {stderr}");

    // A checkpoint: its step and last held-out loss, as trainer_state.json has them.
    let checkpoint = scratch.path().join("run/checkpoint-4");
    let text = inspect(&[&checkpoint]);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("trainer_state.json")).unwrap(),
    )
    .unwrap();
    let loss = state["last_eval"]["loss"].as_f64().unwrap();
    assert!(text.contains("step        4 "), "{text}");
    assert!(text.contains(&format!("loss {loss:.4}")), "{text}");
    assert!(text.contains("hidden 32, layers 2, heads 2"), "{text}");
    assert!(text.contains("tokenizer   wordpiece"), "{text}");

    // Against another run's checkpoint: exactly the keys that differ.
    let other = scratch.path().join("other/checkpoint-4");
    let (output, text, stderr) = run(mlm_train()
        .arg("inspect")
        .arg(&checkpoint)
        .arg("--against")
        .arg(&other));
    assert!(output.status.success(), "{stderr}");
    let diff: Vec<&str> = text
        .split("config against")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .collect();
    assert_eq!(diff.len(), 2, "{text}");
    assert!(
        diff[0].contains("training.learning_rate: 0.001 -> 0.0005"),
        "{text}"
    );
    assert!(diff[1].contains("training.output_dir"), "{text}");

    // An exported model directory.
    let exported = scratch.path().join("exported");
    let (output, _, stderr) = run(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--out")
        .arg(&exported));
    assert!(output.status.success(), "{stderr}");
    let text = inspect(&[&exported]);
    assert!(text.starts_with("model directory "), "{text}");
    assert!(text.contains("BertForMaskedLM (model_type bert)"), "{text}");
    assert!(text.contains("model.safetensors"), "{text}");

    let (output, _, stderr) = run(mlm_train().arg("inspect").arg(scratch.path()));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds no manifest.json"), "{stderr}");
}
