//! The speed paths of a training step (issue 14), through the CLI on the CPU: MFU in the log
//! and `metrics.jsonl`, steps read back from the device only when the run logs (the same
//! weights as reading every step), and fp16 with dynamic loss scaling (trains, saves the
//! scaler, resumes bit-identically).

use std::path::Path;

use crate::distributed::weight_difference;
use crate::train::{metrics, stop_and_resume, tiny_config, train, weights};
use crate::{Scratch, mlm_train, run};

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

/// Keys that make the tiny corpus one title per sequence: 216 training sequences of
/// various lengths up to 32 tokens.
const TITLES: [&str; 4] = [
    "--set",
    "corpus.packing=\"document\"",
    "--set",
    "corpus.text_fields=[\"title\"]",
];

/// (row, length) of the training sequences steps `steps` train on, in the order of their
/// positions, from `inspect --masks-at-step` (8 sequences a step in the tiny config).
fn rows_at_steps(config: &Path, steps: std::ops::Range<u64>, grouped: bool) -> Vec<(u64, usize)> {
    let corpus = config.parent().unwrap().join("corpus");
    let mut rows = Vec::new();
    for step in steps {
        let (output, stdout, stderr) = run(mlm_train()
            .arg("inspect")
            .arg(&corpus)
            .args([
                "--sequences",
                "8",
                "--masks-at-step",
                &step.to_string(),
                "--config",
            ])
            .arg(config)
            .args(TITLES)
            .args(["--set", &format!("training.group_by_length={grouped}")]));
        assert!(output.status.success(), "{stderr}");
        // "position P (train sequence #ROW), K of LEN tokens selected"
        for line in stdout.lines().filter(|l| l.starts_with("position ")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let row = words[4].trim_start_matches('#').trim_end_matches("),");
            rows.push((row.parse().unwrap(), words[7].parse().unwrap()));
        }
    }
    rows
}

#[test]
fn grouping_by_length_sorts_each_megabatch_longest_first_and_resumes_bit_identically() {
    let scratch = Scratch::new("speed-group-by-length");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let training = "max_steps = 6\ngroup_by_length = true";
    let config = tiny_config(&scratch, training, &format!("{checkpoint}\n{NO_SINKS}"));
    let whole = [&TITLES[..], &["--set", "training.output_dir=\"whole\""]].concat();
    let (output, _, stderr) = train(&config, &whole);
    assert!(output.status.success(), "{stderr}");

    // 216 sequences / (4 x 8) = 6 global batches per megabatch (Trainer's rule): steps 1-6
    // train on the first megabatch of the epoch order, longest first; the same sequences
    // as without grouping, in another order. Step 7 starts the next megabatch.
    let grouped = rows_at_steps(&config, 1..8, true);
    let plain = rows_at_steps(&config, 1..8, false);
    assert_eq!(grouped.len(), 56);
    let lengths = |rows: &[(u64, usize)]| rows.iter().map(|&(_, len)| len).collect::<Vec<_>>();
    let first = lengths(&grouped[..48]);
    assert!(first.windows(2).all(|w| w[0] >= w[1]), "{first:?}");
    assert!(first[0] > first[47], "titles vary in length: {first:?}");
    let next = lengths(&grouped[48..]);
    assert!(next.windows(2).all(|w| w[0] >= w[1]), "{next:?}");
    let sorted_rows = |rows: &[(u64, usize)]| {
        let mut rows: Vec<u64> = rows.iter().map(|&(row, _)| row).collect();
        rows.sort_unstable();
        rows
    };
    assert_eq!(sorted_rows(&grouped[..48]), sorted_rows(&plain[..48]));
    assert_ne!(grouped[..48], plain[..48]);
    assert!(!lengths(&plain[..48]).windows(2).all(|w| w[0] >= w[1]));

    // The same steps without grouping pad more: each batch pads to its longest title.
    let plain_run = [
        &TITLES[..],
        &[
            "--set",
            "training.output_dir=\"plain\"",
            "--set",
            "training.group_by_length=false",
        ],
    ]
    .concat();
    let (output, _, stderr) = train(&config, &plain_run);
    assert!(output.status.success(), "{stderr}");
    let mean_padding = |dir: &str| {
        let records = metrics(&scratch.path().join(dir));
        let padding: Vec<f64> = records
            .iter()
            .filter(|r| r["split"] == "train")
            .map(|r| r["padding"].as_f64().unwrap())
            .collect();
        assert_eq!(padding.len(), 6);
        padding.iter().sum::<f64>() / 6.0
    };
    let (grouped_padding, plain_padding) = (mean_padding("whole"), mean_padding("plain"));
    assert!(
        grouped_padding < 0.6 * plain_padding && plain_padding > 0.1,
        "padding grouped {grouped_padding}, plain {plain_padding}"
    );
    // The log line shows each window's share (here every step is a window).
    let records = metrics(&scratch.path().join("plain"));
    let first = records.iter().find(|r| r["split"] == "train").unwrap();
    let shown = format!("pad {:.0}%", 100.0 * first["padding"].as_f64().unwrap());
    let line = stderr
        .lines()
        .find(|l| l.starts_with("step 1/6"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(&shown), "{line} lacks {shown}");

    let resumed = [&TITLES[..], &["--set", "training.output_dir=\"resumed\""]].concat();
    stop_and_resume(&config, &resumed, "3");
    let whole = weights(&scratch.path().join("whole/checkpoint-6"));
    let resumed = weights(&scratch.path().join("resumed/checkpoint-6"));
    assert!(
        whole == resumed,
        "a resumed grouped run differs from the uninterrupted one"
    );
}

/// `training.cuda_graphs` on the CPU runs the fixed-shape step eagerly, the body a GPU
/// captures and replays: in fp64, with dropout, it trains the plain step's weights to
/// rounding (only sums over the unused masked slots' zeros differ; here they come out
/// bit-identical), and it resumes bit-identically.
#[test]
fn the_fixed_shape_step_of_cuda_graphs_trains_the_plain_weights_and_resumes_bit_identically() {
    let scratch = Scratch::new("speed-graphs");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let training = "max_steps = 6\nprecision = \"fp64\"";
    let config = tiny_config(&scratch, training, &format!("{checkpoint}\n{NO_SINKS}"));
    let (output, _, stderr) = train(&config, &["--set", "training.output_dir=\"plain\""]);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("graphs "), "{stderr}");

    let graphs = ["--set", "training.cuda_graphs=true"];
    let whole = [&graphs[..], &["--set", "training.output_dir=\"graphs\""]].concat();
    let (output, _, stderr) = train(&config, &whole);
    assert!(output.status.success(), "{stderr}");
    // 4 x 32 cells at 15%: mean 19.2 + 6 sd (24.2) = 43.4, rounded up to 48.
    assert!(
        stderr.contains(
            "graphs   micro-batches of 4 x 32 tokens, 48 masked slots; not captured on the CPU"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("graphs     6 steps at the fixed shapes, 0 did not fit"),
        "{stderr}"
    );
    let run = scratch.path();
    // metrics.jsonl counts them by kind (what scripts/gpu-check requires of a GPU run:
    // replays, no full batch left to the plain step); on the CPU none is replayed.
    let last = metrics(&run.join("graphs"))
        .into_iter()
        .rfind(|r| r["split"] == "train")
        .expect("train records");
    let counts = serde_json::json!({
        "eager": 6, "replayed": 0, "short_batch_fallbacks": 0, "full_batch_fallbacks": 0
    });
    assert_eq!(last["graphs"], counts, "{last}");
    let plain = metrics(&run.join("plain"));
    assert!(plain.iter().all(|r| r.get("graphs").is_none()));
    let difference = weight_difference(
        &run.join("plain/checkpoint-6"),
        &run.join("graphs/checkpoint-6"),
    );
    assert!(difference < 1e-9, "weights differ by {difference}");

    let resumed = [&graphs[..], &["--set", "training.output_dir=\"resumed\""]].concat();
    stop_and_resume(&config, &resumed, "3");
    assert!(
        weights(&run.join("graphs/checkpoint-6")) == weights(&run.join("resumed/checkpoint-6")),
        "the resumed graphed run differs from the uninterrupted one"
    );
}

#[test]
fn cuda_graphs_refuse_the_single_tensor_optimizer_and_unpadding_before_any_work() {
    let scratch = Scratch::new("speed-graphs-refused");
    let config = tiny_config(&scratch, "max_steps = 2\ncuda_graphs = true", NO_SINKS);
    for (key, value) in [
        ("training.fused_optimizer", "false"),
        ("training.unpad", "true"),
    ] {
        let set = format!("{key}={value}");
        let (output, _, stderr) = train(&config, &["--set", &set]);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
        assert!(stderr.contains("training.cuda_graphs = true"), "{stderr}");
        assert!(!scratch.path().join("run").exists(), "{stderr}");
    }
}

/// `training.unpad` on `document` batches (one title per sequence, padded to the longest of
/// each batch): without dropout (whose draws follow the shapes) it trains the padded run's
/// weights to f64 rounding; with dropout it resumes bit-identically.
#[test]
fn unpadded_training_matches_the_padded_weights_and_resumes_bit_identically() {
    let scratch = Scratch::new("speed-unpad");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let training = "max_steps = 6\nprecision = \"fp64\"";
    let config = tiny_config(&scratch, training, &format!("{checkpoint}\n{NO_SINKS}"));
    let no_dropout = [&TITLES[..], &["--set", "model.dropout=0.0"]].concat();
    let padded = [
        &no_dropout[..],
        &["--set", "training.output_dir=\"padded\""],
    ]
    .concat();
    let (output, _, stderr) = train(&config, &padded);
    assert!(output.status.success(), "{stderr}");
    let unpad = ["--set", "training.unpad=true"];
    let unpadded = [
        &no_dropout[..],
        &unpad,
        &["--set", "training.output_dir=\"unpadded\""],
    ]
    .concat();
    let (output, _, stderr) = train(&config, &unpadded);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "unpad    encoder on the real tokens only; attention on the padded batch (SDPA)"
        ),
        "{stderr}"
    );
    let run = scratch.path();
    let train_records = metrics(&run.join("unpadded"));
    let padding = train_records
        .iter()
        .filter(|r| r["split"] == "train")
        .map(|r| r["padding"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        padding > 0.1,
        "the batches pad ({padding}), so unpadding has work to do"
    );
    let difference = weight_difference(
        &run.join("padded/checkpoint-6"),
        &run.join("unpadded/checkpoint-6"),
    );
    assert!(difference < 1e-9, "weights differ by {difference}");

    let with_dropout = [&TITLES[..], &unpad].concat();
    let whole = [
        &with_dropout[..],
        &["--set", "training.output_dir=\"whole\""],
    ]
    .concat();
    let (output, _, stderr) = train(&config, &whole);
    assert!(output.status.success(), "{stderr}");
    let resumed = [
        &with_dropout[..],
        &["--set", "training.output_dir=\"resumed\""],
    ]
    .concat();
    stop_and_resume(&config, &resumed, "3");
    assert!(
        weights(&run.join("whole/checkpoint-6")) == weights(&run.join("resumed/checkpoint-6")),
        "the resumed unpadded run differs from the uninterrupted one"
    );
    // The unpadded path really ran: with dropout, which draws on the unpadded rows' shapes,
    // it trains other weights than the padded path.
    let padded = [
        &TITLES[..],
        &["--set", "training.output_dir=\"padded-dropout\""],
    ]
    .concat();
    let (output, _, stderr) = train(&config, &padded);
    assert!(output.status.success(), "{stderr}");
    assert!(
        weights(&run.join("whole/checkpoint-6"))
            != weights(&run.join("padded-dropout/checkpoint-6"))
    );
}

/// fp16's loss scaler is device tensors, so the graphed step carries it: scaled backward,
/// unscaling, the skip flag and the scale update, as the plain fp16 step (its growth tracker
/// counts every clean step; the weights are the plain run's to fp16 rounding).
#[test]
fn the_fixed_shape_step_carries_fp16_loss_scaling() {
    let scratch = Scratch::new("speed-graphs-fp16");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let training = "max_steps = 6\nprecision = \"fp16\"";
    let config = tiny_config(&scratch, training, &format!("{checkpoint}\n{NO_SINKS}"));
    let (output, _, stderr) = train(&config, &["--set", "training.output_dir=\"plain\""]);
    assert!(output.status.success(), "{stderr}");
    let graphed = [
        "--set",
        "training.output_dir=\"graphs\"",
        "--set",
        "training.cuda_graphs=true",
    ];
    let (output, _, stderr) = train(&config, &graphed);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("graphs     6 steps at the fixed shapes"),
        "{stderr}"
    );
    let run = scratch.path();
    let state =
        std::fs::read_to_string(run.join("graphs/checkpoint-6/trainer_state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["grad_scaler"]["scale"].as_f64(), Some(65536.0));
    assert_eq!(state["grad_scaler"]["growth_tracker"].as_i64(), Some(6));
    let difference = weight_difference(
        &run.join("plain/checkpoint-6"),
        &run.join("graphs/checkpoint-6"),
    );
    assert!(difference < 1e-3, "weights differ by {difference}");
}

/// `runtime.cpu_matmul`: oneDNN and the BLAS train the same weights to fp32 rounding (both
/// multiply in fp32), the run's first lines name the library, and "onednn" where oneDNN's
/// fp32 matmul cannot run is refused before any work. A oneDNN product or gradient that was
/// wrong (a dropped bias, a transposed gradient) would move the weights by O(lr), not 1e-5.
#[test]
fn the_cpu_matmul_libraries_train_the_same_weights_and_the_run_names_its_library() {
    let scratch = Scratch::new("speed-cpu-matmul");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(
        &scratch,
        "max_steps = 6",
        &format!("{checkpoint}\n{NO_SINKS}"),
    );
    let run_with = |library: &str| {
        let args = [
            "--set".to_owned(),
            format!("training.output_dir=\"{library}\""),
            "--set".to_owned(),
            format!("runtime.cpu_matmul=\"{library}\""),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        train(&config, &args)
    };
    let (output, _, stderr) = run_with("blas");
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("matmul   BLAS (runtime.cpu_matmul)"),
        "{stderr}"
    );
    let (output, _, stderr) = run_with("onednn");
    if !output.status.success() {
        assert!(
            stderr.contains("runtime.cpu_matmul = \"onednn\" but oneDNN's fp32 matmul needs"),
            "{stderr}"
        );
        assert!(!scratch.path().join("onednn/checkpoint-6").exists());
        return;
    }
    assert!(
        stderr.contains("matmul   oneDNN (runtime.cpu_matmul)"),
        "{stderr}"
    );
    let difference = weight_difference(
        &scratch.path().join("blas/checkpoint-6"),
        &scratch.path().join("onednn/checkpoint-6"),
    );
    assert!(
        difference < 1e-5,
        "the weights differ by {difference} (relative)"
    );
}
