//! `mlm-train --config FILE` end to end on a tiny BERT: training with held-out evaluation,
//! exact resume, config-change refusal, signals, non-finite losses, then `eval`, `export`
//! and `fill-mask` on the checkpoint it wrote.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::{Scratch, mlm_train, run, workspace_root};

/// A tiny from-scratch run over the first 240 abstracts of the project's sample corpus.
/// `extra` is appended (later keys of a section cannot repeat: pass whole sections).
pub(crate) fn tiny_config(scratch: &Scratch, training: &str, extra: &str) -> PathBuf {
    let sample = workspace_root().join("data/sample/abstracts.jsonl");
    let text = std::fs::read_to_string(&sample)
        .expect("data/sample/abstracts.jsonl (scripts/make-sample-corpus)");
    let corpus = text.lines().take(240).collect::<Vec<_>>().join("\n") + "\n";
    scratch.write("abstracts.jsonl", &corpus);
    let text = format!(
        r#"
[runtime]
device = "cpu"

[vocab]
vocab_size = 400
output = "tokenizer"

[corpus]
inputs = ["abstracts.jsonl"]
format = "jsonl"
text_fields = ["title", "abstract"]
id_field = "pmid"
validation_fraction = 0.1
tokenizer = "tokenizer"
max_seq_len = 32
output = "corpus"

[model]
hidden_size = 32
num_hidden_layers = 2
num_attention_heads = 2
intermediate_size = 64
max_position_embeddings = 64

[training]
output_dir = "run"
batch_size = 4
gradient_accumulation_steps = 2
learning_rate = 1e-3
weight_decay = 0.01
warmup_steps = 2
logging_steps = 1
{training}

[eval]
eval_steps = 4
eval_batch_size = 16
max_eval_samples = 32
{extra}
"#
    );
    scratch.write("config.toml", &text)
}

pub(crate) fn train(config: &Path, args: &[&str]) -> (Output, String, String) {
    run(mlm_train().arg("--config").arg(config).args(args))
}

pub(crate) fn metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn weights(checkpoint: &Path) -> Vec<u8> {
    std::fs::read(checkpoint.join("model.safetensors")).unwrap()
}

#[test]
fn trains_evaluates_saves_and_the_checkpoint_exports_and_fills_masks() {
    let scratch = Scratch::new("train-full");
    let config = tiny_config(
        &scratch,
        "max_steps = 8",
        "[checkpoint]\nsave_steps = 4\nkeep_last = 1",
    );
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("eval step 0:"), "{stderr}");
    assert!(stderr.contains("held-out"), "{stderr}");
    let run_dir = scratch.path().join("run");
    let records = metrics(&run_dir);
    let evals: Vec<_> = records.iter().filter(|r| r["split"] == "eval").collect();
    let steps: Vec<u64> = evals.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(
        steps,
        vec![0, 4, 8],
        "eval before, every 4 steps and at the end"
    );
    let (first, last) = (evals[0], evals[2]);
    assert!(
        last["loss"].as_f64().unwrap() < first["loss"].as_f64().unwrap(),
        "held-out loss falls: {first} -> {last}"
    );
    assert_eq!(
        first["masked_tokens"], last["masked_tokens"],
        "fixed eval masks"
    );
    let train_steps = records.iter().filter(|r| r["split"] == "train").count();
    assert_eq!(train_steps, 8);

    let checkpoint = run_dir.join("checkpoint-8");
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "config.json",
        "run_config.toml",
        "tokenizer.json",
    ] {
        assert!(
            checkpoint.join(file).exists(),
            "{file} in {}",
            checkpoint.display()
        );
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["global_step"], 8);

    // eval --json on the checkpoint reproduces the run's final evaluation exactly.
    let (output, stdout, stderr) = run(mlm_train()
        .args(["eval", "--json", "--config"])
        .arg(&config)
        .arg("--checkpoint")
        .arg(&checkpoint));
    assert!(output.status.success(), "{stderr}");
    let eval: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "loss",
        "perplexity",
        "accuracy",
        "top5_accuracy",
        "mask_accuracy",
        "masked_tokens",
    ] {
        assert!(eval.get(key).is_some(), "{key} in {stdout}");
    }
    assert_eq!(eval["masked_tokens"], last["masked_tokens"]);
    let (a, b) = (
        eval["loss"].as_f64().unwrap(),
        last["loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-6, "eval {a} vs run {b}");
    // --data names the prepared corpus explicitly (here the same one: the same numbers).
    let (output, stdout, stderr) = run(mlm_train()
        .args(["eval", "--json", "--config"])
        .arg(&config)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg("--data")
        .arg(scratch.path().join("corpus")));
    assert!(output.status.success(), "{stderr}");
    let with_data: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(with_data, eval);

    // export writes a Hugging Face directory.
    let exported = scratch.path().join("hf");
    let (output, _, stderr) = run(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--out")
        .arg(&exported));
    assert!(output.status.success(), "{stderr}");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert!(exported.join(file).exists(), "{file} exported");
    }

    // --no-pooler leaves bert.pooler.* out (the default export keeps it for fine-tuning).
    let header = safetensors_header;
    assert!(header(&exported).contains("bert.pooler.dense.weight"));
    let no_pooler = scratch.path().join("hf-no-pooler");
    let (output, _, stderr) = run(mlm_train()
        .args(["export", "--no-pooler", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--out")
        .arg(&no_pooler));
    assert!(output.status.success(), "{stderr}");
    let names = header(&no_pooler);
    assert!(
        !names.contains("pooler") && names.contains("cls.predictions.bias"),
        "{names}"
    );

    // fill-mask prints the pipeline's JSON shape, probabilities in order.
    let (output, stdout, stderr) = run(mlm_train()
        .args(["fill-mask", "--top-k", "3", "--model"])
        .arg(&exported)
        .arg("patients with [MASK] were treated."));
    assert!(output.status.success(), "{stderr}");
    let candidates: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(candidates.len(), 3);
    let scores: Vec<f64> = candidates
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0,
        "{scores:?}"
    );
    for c in &candidates {
        assert!(c["token"].is_u64() && c["token_str"].is_string() && c["sequence"].is_string());
    }

    // Bad fill-mask input is an error, not a libtorch panic: no mask, or longer than the
    // position table (64 here).
    for (text, expected) in [
        ("no mask here", "no mask token"),
        (
            &*format!("[MASK] {}", "patients ".repeat(80)),
            "exceeds the 64 positions of the model",
        ),
    ] {
        let (output, _, stderr) = run(mlm_train()
            .args(["fill-mask", "--model"])
            .arg(&exported)
            .arg(text));
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // transformers loads the export and its fill-mask pipeline gives the same answer.
    let ours = scratch.write("fill-mask.json", &stdout);
    mlm_pyref::run(
        "fill_mask_parity.py",
        [
            exported.as_os_str(),
            ours.as_os_str(),
            "patients with [MASK] were treated.".as_ref(),
            "3".as_ref(),
        ],
    );
}

#[test]
fn a_stopped_and_resumed_run_ends_bit_identical_to_an_uninterrupted_one() {
    let scratch = Scratch::new("train-resume");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(&scratch, "max_steps = 10", checkpoint);
    let straight = scratch.path().join("run/checkpoint-10");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let reference = weights(&straight);

    // Stop after step 4 (as SIGINT would), then rerun the same command: it resumes.
    let resumed_dir = "\"resumed\"";
    let set = format!("training.output_dir={resumed_dir}");
    let (output, _, stderr) = train(&config, &["--set", &set, "--stop-after-step", "4"]);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted at step 4"), "{stderr}");
    let (output, _, stderr) = train(&config, &["--set", &set]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("at step 4"),
        "resumed from step 4: {stderr}"
    );
    let resumed = scratch.path().join("resumed");
    assert!(
        weights(&resumed.join("checkpoint-10")) == reference,
        "bit-identical weights"
    );
    let steps: Vec<u64> = metrics(&resumed)
        .iter()
        .filter(|r| r["split"] == "train")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=10).collect::<Vec<_>>(),
        "metrics.jsonl reads as one run"
    );

    // The same with a deliberately wrong data position: the weights must differ, or the
    // comparison above proves nothing.
    let set = "training.output_dir=\"wrong\"";
    let (output, _, stderr) = train(&config, &["--set", set, "--stop-after-step", "4"]);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let state_path = scratch.path().join("wrong/checkpoint-4/trainer_state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let position = state["epoch_position"].as_u64().unwrap();
    // One global batch (4 x 2 sequences) further: the resumed run skips a batch.
    state["epoch_position"] = (position + 8).into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    // The edit is deliberate: drop the integrity manifest that would refuse it (the
    // checkpoint then loads as one of an earlier version, with a note).
    std::fs::remove_file(state_path.with_file_name("integrity.json")).unwrap();
    let (output, _, stderr) = train(&config, &["--set", set]);
    assert!(output.status.success(), "{stderr}");
    let wrong = weights(&scratch.path().join("wrong/checkpoint-10"));
    assert!(
        wrong != reference,
        "a shifted data position changes the result"
    );
}

#[test]
fn a_run_directory_moved_with_its_config_and_data_resumes_bit_identically() {
    let before = Scratch::new("train-before-move");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(&before, "max_steps = 8", checkpoint);
    // The reference: the same vocabulary and corpus, trained without a stop.
    let straight = ["--set", "training.output_dir=\"straight\""];
    let (output, _, stderr) = train(&config, &straight);
    assert!(output.status.success(), "{stderr}");
    let (output, _, stderr) = train(&config, &["--stop-after-step", "3"]);
    assert_eq!(output.status.code(), Some(130), "{stderr}");

    // Everything (config, data, tokenizer, prepared corpus, run directories) moves elsewhere.
    let after = Scratch::new("train-after-move");
    std::fs::remove_dir(after.path()).unwrap();
    std::fs::rename(before.path(), after.path()).unwrap();
    let (output, _, stderr) = train(&after.path().join("config.toml"), &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("at step 3"),
        "resumed, not refused: {stderr}"
    );
    assert!(
        weights(&after.path().join("run/checkpoint-8"))
            == weights(&after.path().join("straight/checkpoint-8")),
        "bit-identical to the run that never stopped"
    );
}

#[test]
fn bf16_on_the_cpu_trains_in_bf16_not_silently_in_fp32() {
    let scratch = Scratch::new("train-bf16");
    let config = tiny_config(&scratch, "max_steps = 3\nprecision = \"bf16\"", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("bf16 on cpu"),
        "the plan says bf16: {stderr}"
    );
    let bf16 = weights(&scratch.path().join("run/checkpoint-3"));
    let fp32_run = [
        "--set",
        "training.precision=\"fp32\"",
        "--set",
        "training.output_dir=\"fp32\"",
    ];
    let (output, _, stderr) = train(&config, &fp32_run);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("fp32 on cpu"), "{stderr}");
    let fp32 = weights(&scratch.path().join("fp32/checkpoint-3"));
    assert!(bf16 != fp32, "bf16 autocast changed the computation");
}

/// Runs `config` with `args`, stopped after step `stop_at` (as SIGINT would), then again: it
/// resumes and finishes.
pub(crate) fn stop_and_resume(config: &Path, args: &[&str], stop_at: &str) {
    let stopped = [args, &["--stop-after-step", stop_at]].concat();
    let (output, _, stderr) = train(config, &stopped);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let (output, _, stderr) = train(config, args);
    assert!(output.status.success(), "{stderr}");
}

/// `mlm-train export --checkpoint CHECKPOINT --out OUT`, which must succeed.
fn export(checkpoint: &Path, out: &Path) {
    let (output, _, stderr) = run(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(checkpoint)
        .arg("--out")
        .arg(out));
    assert!(output.status.success(), "{stderr}");
}

/// The safetensors header of a checkpoint's or export's weights, as text.
fn safetensors_header(dir: &Path) -> String {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    String::from_utf8(bytes[8..8 + len].to_vec()).unwrap()
}

#[test]
fn fp64_runs_in_float64_resumes_bit_identically_and_exports_float32() {
    let scratch = Scratch::new("train-fp64");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(&scratch, "max_steps = 4\nprecision = \"fp64\"", checkpoint);
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("fp64 on cpu"),
        "the plan says fp64: {stderr}"
    );
    let straight = scratch.path().join("run/checkpoint-4");
    let header = safetensors_header(&straight);
    assert!(
        header.contains("\"F64\"") && !header.contains("\"F32\""),
        "float64 weights: {header}"
    );

    stop_and_resume(&config, &["--set", "training.output_dir=\"resumed\""], "2");
    assert!(
        weights(&scratch.path().join("resumed/checkpoint-4")) == weights(&straight),
        "an fp64 run resumes bit-identically (float64 optimizer state included)"
    );

    // Exports are what transformers loads by default: float32.
    let exported = scratch.path().join("hf");
    export(&straight, &exported);
    let header = safetensors_header(&exported);
    assert!(
        header.contains("\"F32\"") && !header.contains("\"F64\""),
        "{header}"
    );
}

/// A model of `model_type` from scratch, with a vocabulary of `vocab_model` trained for it:
/// it learns, resumes bit-identically, exports as the family's masked-LM class, and
/// transformers' fill-mask pipeline on the export agrees with ours on `masked_text`.
fn trains_resumes_and_exports_a_family(
    model_type: &str,
    vocab_model: &str,
    class: &str,
    masked_text: &str,
) {
    trains_resumes_and_exports_with(model_type, vocab_model, class, masked_text, &[]);
}

/// [`trains_resumes_and_exports_a_family`] with more `--set` arguments for every run.
pub(crate) fn trains_resumes_and_exports_with(
    model_type: &str,
    vocab_model: &str,
    class: &str,
    masked_text: &str,
    sets: &[&str],
) {
    let scratch = Scratch::new(&format!("train-{model_type}"));
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(&scratch, "max_steps = 8", checkpoint);
    let family = format!("model.model_type=\"{model_type}\"");
    let vocab = format!("vocab.model=\"{vocab_model}\"");
    let mut args = vec!["--set", &family, "--set", &vocab];
    args.extend(sets.iter().flat_map(|set| ["--set", set]));
    let (output, _, stderr) = train(&config, &args);
    assert!(output.status.success(), "{stderr}");
    let evals: Vec<_> = metrics(&scratch.path().join("run"))
        .into_iter()
        .filter(|r| r["split"] == "eval")
        .collect();
    let (first, last) = (&evals[0], &evals[evals.len() - 1]);
    assert!(
        last["loss"].as_f64().unwrap() < first["loss"].as_f64().unwrap(),
        "{model_type}: held-out loss falls: {first} -> {last}"
    );
    let straight = scratch.path().join("run/checkpoint-8");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(written["model_type"], model_type);
    // The checkpoint carries every tokenizer file of the corpus (BPE: vocab.json + merges.txt).
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path().join("corpus/manifest.json")).unwrap(),
    )
    .unwrap();
    for file in manifest["tokenizer_files"].as_array().unwrap() {
        let file = file.as_str().unwrap();
        assert!(
            straight.join(file).is_file(),
            "{model_type}: checkpoint lacks {file}"
        );
    }
    // RoBERTa's layout carries the slow files too; ModernBERT's is tokenizer.json only.
    if vocab_model == "bpe" && model_type == "roberta" {
        assert!(straight.join("merges.txt").is_file());
    }

    let mut resumed = args.clone();
    resumed.extend(["--set", "training.output_dir=\"resumed\""]);
    stop_and_resume(&config, &resumed, "3");
    assert!(
        weights(&scratch.path().join("resumed/checkpoint-8")) == weights(&straight),
        "{model_type}: a stopped and resumed run ends bit-identical"
    );

    let exported = scratch.path().join("hf");
    export(&straight, &exported);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exported.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(written["architectures"], serde_json::json!([class]));
    // The tokenizer admits what the position table serves: RoBERTa's 64 rows less pad + 1.
    let tokenizer: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(exported.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    let positions = if model_type == "roberta" { 62 } else { 64 };
    assert_eq!(tokenizer["model_max_length"], positions, "{model_type}");

    fills_masks_as_the_pipeline_does(&scratch, &exported, masked_text);
}

/// `mlm-train fill-mask --top-k 5` on `model` agrees with transformers' `pipeline("fill-mask")`
/// on `text` (tests/python/fill_mask_parity.py: tokens, strings, scores within 1e-5).
pub(crate) fn fills_masks_as_the_pipeline_does(scratch: &Scratch, model: &Path, text: &str) {
    let (output, stdout, stderr) = run(mlm_train()
        .args(["fill-mask", "--top-k", "5", "--model"])
        .arg(model)
        .arg(text));
    assert!(output.status.success(), "{stderr}");
    let ours = scratch.write("fill-mask.json", &stdout);
    mlm_pyref::run(
        "fill_mask_parity.py",
        [
            model.as_os_str(),
            ours.as_os_str(),
            text.as_ref(),
            "5".as_ref(),
        ],
    );
}

#[test]
fn a_roberta_with_a_bpe_vocabulary_learns_resumes_exports_and_fills_masks() {
    trains_resumes_and_exports_a_family(
        "roberta",
        "bpe",
        "RobertaForMaskedLM",
        "Patients with <mask> were treated.",
    );
}

#[test]
fn a_distilbert_with_a_wordpiece_vocabulary_learns_resumes_exports_and_fills_masks() {
    trains_resumes_and_exports_a_family(
        "distilbert",
        "wordpiece",
        "DistilBertForMaskedLM",
        "patients with [MASK] were treated.",
    );
}

/// An XLM-RoBERTa with a SentencePiece (Unigram) tokenizer, both made by transformers:
/// `fill-mask` with `<mask>` agrees with transformers' pipeline (tokens, strings, scores).
#[test]
fn an_xlm_roberta_with_a_sentencepiece_tokenizer_fills_masks_as_the_pipeline_does() {
    let scratch = Scratch::new("xlmr-fill-mask");
    let model = scratch.path().join("xlmr");
    let dir = model.display().to_string();
    mlm_pyref::run(
        "tokenizer_families.py",
        ["make", "xlmr", &dir, "--vocab-size", "300"],
    );
    mlm_pyref::run("family_parity.py", ["model-for", "xlm-roberta", &dir]);
    fills_masks_as_the_pipeline_does(&scratch, &model, "Patients with <mask> were treated.");

    // The other family's mask token is named in the error.
    let (output, _, stderr) = run(mlm_train()
        .args(["fill-mask", "--model"])
        .arg(&model)
        .arg("Patients with [MASK] were treated."));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has [MASK], but this model's mask token is <mask>"),
        "{stderr}"
    );
}

#[test]
fn a_changed_config_refuses_to_resume_unless_allowed() {
    let scratch = Scratch::new("train-changed");
    let config = tiny_config(&scratch, "max_steps = 4", "");
    let (output, _, stderr) = train(&config, &["--stop-after-step", "2"]);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let (output, _, stderr) = train(&config, &["--set", "training.learning_rate=0.002"]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--allow-config-change"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (output, _, stderr) = train(
        &config,
        &[
            "--set",
            "training.learning_rate=0.002",
            "--allow-config-change",
        ],
    );
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn the_resume_guard_follows_the_data_not_the_presentation() {
    let scratch = Scratch::new("train-guard");
    let config = tiny_config(&scratch, "max_steps = 4", "");
    let (output, _, stderr) = train(&config, &["--stop-after-step", "2"]);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    // Logging cadence is not part of the trajectory: resuming goes on.
    let (output, _, stderr) = train(
        &config,
        &[
            "--set",
            "training.logging_steps=2",
            "--stop-after-step",
            "3",
        ],
    );
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    // Other training data (20 abstracts more: the corpus is prepared again, into other
    // train shards) is refused, though no config key changed.
    let data = scratch.path().join("abstracts.jsonl");
    let mut text = std::fs::read_to_string(&data).unwrap();
    let sample = std::fs::read_to_string(workspace_root().join("data/sample/abstracts.jsonl"));
    for line in sample.unwrap().lines().skip(300).take(20) {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&data, text).unwrap();
    let (output, _, stderr) = train(&config, &[]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--allow-config-change"), "{stderr}");
}

#[test]
fn sigterm_saves_a_checkpoint_and_exits_130() {
    let scratch = Scratch::new("train-sigterm");
    let config = tiny_config(&scratch, "max_steps = 100000", "");
    let mut child = mlm_train()
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first logged step, then send SIGTERM.
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "training ended before a step was logged:\n{seen}");
        seen.push_str(&line);
        if line.starts_with("step ") {
            break;
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted at step"), "{rest}");
    let saved = std::fs::read_dir(scratch.path().join("run"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"));
    assert!(saved, "a checkpoint was saved");
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_the_step() {
    let scratch = Scratch::new("train-nan");
    let config = tiny_config(
        &scratch,
        "max_steps = 50\nmax_grad_norm = 0.0",
        "[checkpoint]\nsave_steps = 1\nkeep_last = 0",
    );
    let (output, _, stderr) = train(&config, &["--set", "training.learning_rate=1e30"]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the loss became"), "{stderr}");
    assert!(stderr.contains("at step"), "{stderr}");
    assert!(stderr.contains("last good checkpoint is"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn dry_run_prints_the_plan_and_trains_nothing() {
    let scratch = Scratch::new("train-dry");
    let config = tiny_config(&scratch, "max_steps = 8", "");
    let (output, _, stderr) = train(&config, &["--dry-run"]);
    assert!(output.status.success(), "{stderr}");
    for text in [
        "parameters",
        "tokens per step",
        "estimated",
        "nothing was trained",
    ] {
        assert!(stderr.contains(text), "{text}: {stderr}");
    }
    assert!(!scratch.path().join("run/metrics.jsonl").exists());
}

#[test]
fn sequences_longer_than_the_position_table_are_refused() {
    let scratch = Scratch::new("train-seqlen");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let (output, _, stderr) = train(&config, &["--set", "model.max_position_embeddings=16"]);
    // A config error (2), found when the config loads: before the vocabulary and the corpus.
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("max_position_embeddings = 16"), "{stderr}");
    assert!(stderr.contains("corpus.max_seq_len = 32"), "{stderr}");
    assert!(!scratch.path().join("corpus").exists(), "{stderr}");
}

#[test]
fn adapts_an_exported_checkpoint_and_refuses_a_foreign_tokenizer_or_architecture() {
    let scratch = Scratch::new("train-adapt");
    let config = tiny_config(&scratch, "max_steps = 2", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let hf = scratch.path().join("hf");
    let (output, _, stderr) = run(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(scratch.path().join("run/checkpoint-2"))
        .arg("--out")
        .arg(&hf));
    assert!(output.status.success(), "{stderr}");

    // Continue pre-training the export, on a corpus prepared with its own tokenizer.
    let adapt = [
        "--set",
        "model.init_from=\"hf\"",
        "--set",
        "corpus.tokenizer=\"hf\"",
        "--set",
        "corpus.output=\"corpus-hf\"",
        "--set",
        "training.output_dir=\"run-hf\"",
    ];
    let (output, _, stderr) = train(&config, &adapt);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("tensors loaded"), "{stderr}");

    // A corpus tokenized with another vocabulary is refused before training.
    let (output, _, stderr) = train(
        &config,
        &[
            "--set",
            "model.init_from=\"hf\"",
            "--set",
            "vocab.output=\"tokenizer-2\"",
            "--set",
            "vocab.vocab_size=300",
            "--set",
            "corpus.tokenizer=\"tokenizer-2\"",
            "--set",
            "corpus.output=\"corpus-2\"",
            "--set",
            "training.output_dir=\"run-2\"",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not match the prepared corpus"),
        "{stderr}"
    );
    assert!(!scratch.path().join("run-2/metrics.jsonl").exists());

    // A config.json whose model_type disagrees with its architectures is named as such.
    let config_json = hf.join("config.json");
    let text = std::fs::read_to_string(&config_json).unwrap();
    std::fs::write(&config_json, text.replace("\"bert\"", "\"roberta\"")).unwrap();
    let (output, _, stderr) = train(&config, &adapt);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "unsupported model (architectures [\"BertForMaskedLM\"] with model_type \"roberta\")"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn time_based_saves_and_resume_from_a_named_checkpoint() {
    let scratch = Scratch::new("train-minutes");
    // save_minutes = 0: every step is "due"; save_steps = 0 turns step-based saves off.
    let config = tiny_config(
        &scratch,
        "max_steps = 3",
        "[checkpoint]\nsave_steps = 0\nsave_minutes = 0.0\nkeep_last = 0",
    );
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let run_dir = scratch.path().join("run");
    for step in 1..=3 {
        assert!(
            run_dir.join(format!("checkpoint-{step}")).exists(),
            "{stderr}"
        );
    }
    let reference = weights(&run_dir.join("checkpoint-3"));

    // --resume DIR starts from that checkpoint (not the latest) and, the run being exact,
    // ends where the first one did.
    let (output, _, stderr) = train(
        &config,
        &["--resume", run_dir.join("checkpoint-1").to_str().unwrap()],
    );
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("checkpoint-1 at step 1"), "{stderr}");
    assert!(weights(&run_dir.join("checkpoint-3")) == reference);
}
