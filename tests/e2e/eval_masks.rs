//! Held-out masks follow `[eval]`, not the training recipe (issue 26): runs that train at 15%
//! and at 30%, by tokens or by whole words, are scored on the same held-out masks.

use std::path::Path;

use crate::Scratch;
use crate::train::{metrics, tiny_config, train};

/// The step-0 evaluation record of a run of `config` into `run` with `sets` overrides.
fn first_eval(config: &Path, run: &Path, sets: &[&str]) -> serde_json::Value {
    let output_dir = format!("training.output_dir={}", run.display());
    let mut args = vec!["--set", &output_dir];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (output, _, stderr) = train(config, &args);
    assert!(output.status.success(), "{stderr}");
    metrics(run)
        .into_iter()
        .find(|r| r["split"] == "eval" && r["step"] == 0)
        .expect("an evaluation before the first step")
}

#[test]
fn runs_of_different_masking_recipes_are_scored_on_the_same_held_out_masks() {
    let scratch = Scratch::new("eval-masks");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let run = |name: &str| scratch.path().join(name);
    let plain = first_eval(&config, &run("plain"), &[]);
    let recipes: [(&str, &[&str]); 2] = [
        ("thirty", &["masking.mlm_probability=0.3"]),
        (
            "words",
            &[
                "masking.mlm_probability=0.3",
                "masking.whole_word_mask=true",
            ],
        ),
    ];
    for (name, sets) in recipes {
        let other = first_eval(&config, &run(name), sets);
        // The same initial weights (same seed) on the same held-out masks: the same numbers.
        for key in ["masked_tokens", "loss", "accuracy"] {
            assert_eq!(plain[key], other[key], "{name}: {key}");
        }
    }
    // [eval] itself moves them: 30% held-out masking masks about twice the tokens.
    let thirty = first_eval(&config, &run("eval-thirty"), &["eval.mlm_probability=0.3"]);
    let (base, more) = (
        plain["masked_tokens"].as_f64().unwrap(),
        thirty["masked_tokens"].as_f64().unwrap(),
    );
    assert!(more > 1.7 * base && more < 2.3 * base, "{base} -> {more}");
    let words = first_eval(&config, &run("eval-words"), &["eval.unit=\"word\""]);
    assert_ne!(
        plain["loss"], words["loss"],
        "whole-word held-out masks differ"
    );
}
