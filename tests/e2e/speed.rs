//! The speed paths of a training step (issue 14), through the CLI on the CPU: MFU in the log
//! and `metrics.jsonl`, steps read back from the device only when the run logs (the same
//! weights as reading every step), and fp16 with dynamic loss scaling (trains, saves the
//! scaler, resumes bit-identically).

use std::path::Path;

use crate::Scratch;
use crate::train::{metrics, stop_and_resume, tiny_config, train, weights};

const NO_SINKS: &str = "[logging]\ntensorboard = false\nplots = false";

fn vocab_size(checkpoint: &Path) -> f64 {
    let text = std::fs::read_to_string(checkpoint.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["vocab_size"].as_f64().unwrap()
}

#[test]
fn mfu_is_the_model_flops_of_the_tokens_trained_over_the_peak() {
    let scratch = Scratch::new("speed-mfu");
    let sections = format!("{NO_SINKS}\npeak_tflops = 0.25");
    let config = tiny_config(&scratch, "max_steps = 4", &sections);
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("GFLOP per token trained; peak 0.2 TFLOP/s (logging.peak_tflops)"),
        "{stderr}"
    );
    assert!(stderr.contains("MFU "), "{stderr}");
    // The tiny model of tiny_config: 2 layers, hidden 32, feed-forward 64, sequences of 32.
    let (d, layers, ffn, seq) = (32.0, 2.0, 64.0, 32.0);
    let vocab = vocab_size(&scratch.path().join("run/checkpoint-4"));
    let per_token = 6.0 * layers * (4.0 * d * d + 2.0 * d * ffn + 2.0 * seq * d);
    let per_masked = 6.0 * (d * d + d * vocab);
    let train: Vec<_> = metrics(&scratch.path().join("run"))
        .into_iter()
        .filter(|r| r["split"] == "train")
        .collect();
    assert_eq!(train.len(), 4);
    for record in train {
        let mfu = record["mfu"].as_f64().expect("mfu logged");
        let tokens_per_second = record["tokens_per_second"].as_f64().unwrap();
        // FLOPs per token implied by the log: the encoder's for every token plus the head's
        // for the masked share (15% give or take the sampling of a few batches).
        let flops_per_token = mfu * 0.25e12 / tokens_per_second;
        let masked_share = (flops_per_token - per_token) / per_masked;
        assert!(
            (0.05..0.3).contains(&masked_share),
            "{record}: {flops_per_token} FLOPs per token is a masked share of {masked_share}"
        );
    }
}

#[test]
fn without_an_override_the_cpu_peak_comes_from_its_vector_units() {
    let scratch = Scratch::new("speed-cpu-peak");
    let config = tiny_config(&scratch, "max_steps = 2", NO_SINKS);
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    // One thread (the tests' MLM_TRAIN_THREADS) x the clock x FLOPs per cycle.
    assert!(stderr.contains("(1 threads x "), "{stderr}");
    assert!(stderr.contains("FLOP/cycle)"), "{stderr}");
    let record = &metrics(&scratch.path().join("run"))[1];
    assert!(record["mfu"].as_f64().unwrap() > 0.0, "{record}");
}

#[test]
fn reading_steps_back_only_at_logs_trains_the_same_weights() {
    let scratch = Scratch::new("speed-deferred");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(
        &scratch,
        "max_steps = 6",
        &format!("{checkpoint}\n{NO_SINKS}"),
    );
    let every_step = ["--set", "training.output_dir=\"every\""];
    let (output, _, stderr) = train(&config, &every_step);
    assert!(output.status.success(), "{stderr}");
    // Logging every 4 steps: steps 1-4 and 5-6 are read back in two batches.
    let deferred = [
        "--set",
        "training.output_dir=\"deferred\"",
        "--set",
        "training.logging_steps=4",
    ];
    let (output, _, stderr) = train(&config, &deferred);
    assert!(output.status.success(), "{stderr}");
    let every = weights(&scratch.path().join("every/checkpoint-6"));
    let deferred = weights(&scratch.path().join("deferred/checkpoint-6"));
    assert!(every == deferred, "the weights differ");
    let logged: Vec<u64> = metrics(&scratch.path().join("deferred"))
        .iter()
        .filter(|r| r["split"] == "train")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(logged, vec![4, 6]);
}

#[test]
fn fp16_scales_the_loss_saves_the_scaler_and_resumes_bit_identically() {
    let scratch = Scratch::new("speed-fp16");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let training = "max_steps = 6\nprecision = \"fp16\"";
    let config = tiny_config(&scratch, training, &format!("{checkpoint}\n{NO_SINKS}"));
    let whole = ["--set", "training.output_dir=\"whole\""];
    let (output, _, stderr) = train(&config, &whole);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("fp16 on cpu"), "{stderr}");
    let records = metrics(&scratch.path().join("whole"));
    let train_records: Vec<_> = records.iter().filter(|r| r["split"] == "train").collect();
    assert_eq!(train_records.len(), 6);
    for record in &train_records {
        assert!(record["loss"].as_f64().unwrap().is_finite(), "{record}");
        // GradScaler's initial scale; nothing overflows in this tiny model.
        assert_eq!(record["loss_scale"].as_f64(), Some(65536.0), "{record}");
    }
    let state =
        std::fs::read_to_string(scratch.path().join("whole/checkpoint-6/trainer_state.json"))
            .unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["grad_scaler"]["scale"].as_f64(), Some(65536.0));
    assert_eq!(state["grad_scaler"]["growth_tracker"].as_i64(), Some(6));

    let resumed = ["--set", "training.output_dir=\"resumed\""];
    stop_and_resume(&config, &resumed, "3");
    let whole = weights(&scratch.path().join("whole/checkpoint-6"));
    let resumed = weights(&scratch.path().join("resumed/checkpoint-6"));
    assert!(
        whole == resumed,
        "fp16 resume differs from the uninterrupted run"
    );
}
