//! `mlm-train vocab extend` end to end, for a BERT with a WordPiece vocabulary, and a RoBERTa
//! and a ModernBERT with byte-level BPE ones: a tiny base model is trained and exported; its vocabulary is
//! extended on the corpus; the corpus is prepared again (the tokenizer's fingerprint
//! changed); the base checkpoint is adapted on it, grown to the new vocabulary (its rows
//! checked against the base in Python: base rows unchanged, new rows the mean of their
//! pieces); `eval --words` scores it; the result exports with the new `vocab_size` and
//! transformers' fill-mask pipeline agrees with ours on text with an added word. Bad `[vocab]`
//! keys and a model whose vocabulary is not the extension's base are refused.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Scratch, mlm_train, run, workspace_root};

/// A config over the first 240 sample abstracts; `vocab`, `model` and `training` are the
/// bodies of those sections.
fn config(scratch: &Scratch, name: &str, tokenizer: &str, sections: [&str; 3]) -> PathBuf {
    let [vocab, model, training] = sections;
    let sample = workspace_root().join("data/sample/abstracts.jsonl");
    let text = std::fs::read_to_string(sample).unwrap();
    scratch.write(
        "abstracts.jsonl",
        &(text.lines().take(240).collect::<Vec<_>>().join("\n") + "\n"),
    );
    let text = format!(
        r#"
[runtime]
device = "cpu"

[vocab]
{vocab}

[corpus]
inputs = ["abstracts.jsonl"]
format = "jsonl"
text_fields = ["title", "abstract"]
id_field = "pmid"
validation_fraction = 0.1
tokenizer = "{tokenizer}"
max_seq_len = 32
output = "corpus"

[model]
{model}

[masking]
whole_word_mask = true

[training]
batch_size = 4
logging_steps = 1
{training}

[eval]
eval_steps = 100
eval_batch_size = 16
max_eval_samples = 16

[checkpoint]
save_steps = 0
"#
    );
    scratch.write(name, &text)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ok(command: &mut std::process::Command) -> (String, String) {
    let (output, stdout, stderr) = run(command);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Exits with `code` (2: a config error, 1: a run error) and `message` on stderr, no panic.
fn refused(command: &mut std::process::Command, code: i32, message: &str) {
    let (output, _, stderr) = run(command);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(message), "wanted {message:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Trains and exports the base model (`base-hf`); returns the base corpus fingerprint.
/// `vocab_model` is `[vocab] model`, with `layout = "..."` after a `/` (`bpe/modernbert`).
fn base_model(scratch: &Scratch, model_type: &str, vocab_model: &str) -> String {
    let (vocab_model, layout) = match vocab_model.split_once('/') {
        Some((model, layout)) => (model, format!("\nlayout = \"{layout}\"")),
        None => (vocab_model, String::new()),
    };
    let vocab = format!(
        "model = \"{vocab_model}\"{layout}\nvocab_size = 400\nmin_frequency = 2\noutput = \"tokenizer\""
    );
    let model = format!(
        "model_type = \"{model_type}\"\nhidden_size = 32\nnum_hidden_layers = 2\n\
         num_attention_heads = 2\nintermediate_size = 64\nmax_position_embeddings = 64"
    );
    let training = "output_dir = \"run-base\"\nmax_steps = 2\nlearning_rate = 1e-3";
    let base = config(
        scratch,
        "base.toml",
        "tokenizer",
        [&vocab, &model, training],
    );
    ok(mlm_train().arg("--config").arg(&base));
    ok(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(scratch.path().join("run-base/checkpoint-2"))
        .arg("--out")
        .arg(scratch.path().join("base-hf")));
    json(&scratch.path().join("corpus/manifest.json"))["tokenizer_fingerprint"].to_string()
}

/// The extension's config: `add` entries from `base-hf`, adapting `init_from` with a learning
/// rate too small to move a weight (the checkpoint then holds the grown rows as initialised).
fn extended_config(scratch: &Scratch, add: &str, init_from: &str, name: &str) -> PathBuf {
    let vocab = format!("extend_from = \"base-hf\"\n{add}\noutput = \"tokenizer-ext\"");
    let model = format!("init_from = \"{init_from}\"");
    let training = "output_dir = \"run-ext\"\nmax_steps = 1\nlearning_rate = 1e-30";
    config(scratch, name, "tokenizer-ext", [&vocab, &model, training])
}

/// The first added word of the sidecar, as text.
fn added_word(sidecar: &Value) -> String {
    let word = sidecar["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "word")
        .expect("an added word")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    word.trim_start_matches('Ġ').to_owned()
}

fn extends_grows_and_exports(model_type: &str, vocab_model: &str, mask: &str, explicit: bool) {
    let scratch = Scratch::new(&format!("vocab-extend-{model_type}"));
    let base_fingerprint = base_model(&scratch, model_type, vocab_model);
    let ext = extended_config(&scratch, "add = 30", "base-hf", "ext.toml");
    if explicit {
        let (stdout, _) = ok(mlm_train().args(["vocab", "extend", "--config"]).arg(&ext));
        assert!(stdout.contains("added       30 entries"), "{stdout}");
        assert!(
            stdout.contains("fragmentation over") && stdout.contains("extended"),
            "{stdout}"
        );
    }
    // The main job extends (when not done yet), prepares again and grows the base model.
    let (_, stderr) = ok(mlm_train().arg("--config").arg(&ext));
    let manifest = json(&scratch.path().join("corpus/manifest.json"));
    let sidecar = &manifest["vocab_extension"];
    let appended = sidecar["tokens"].as_array().unwrap().len();
    assert_eq!(
        appended, 30,
        "a trained vocabulary has no [unusedN] slot: all appended"
    );
    assert_ne!(
        manifest["tokenizer_fingerprint"].to_string(),
        base_fingerprint,
        "prepare re-ran"
    );
    let base_size = json(&scratch.path().join("base-hf/config.json"))["vocab_size"]
        .as_u64()
        .unwrap();
    let size = base_size + 30;
    assert_eq!(manifest["vocab_size"], size);
    assert!(
        manifest["tokenizer_files"]
            .as_array()
            .unwrap()
            .contains(&"vocab-extension.json".into())
    );
    let grown = format!("vocab    grown {base_size} -> {size} rows: 30 appended, 0 reused");
    assert!(stderr.contains(&grown), "{stderr}");

    let checkpoint = scratch.path().join("run-ext/checkpoint-1");
    let base = scratch.path().join("base-hf");
    mlm_pyref::run(
        "vocab_extension.py",
        [
            "rows".as_ref(),
            base.as_os_str(),
            checkpoint.as_os_str(),
            "1e-20".as_ref(),
        ],
    );

    // Word-level evaluation of the grown model.
    let (stdout, _) = ok(mlm_train()
        .args(["eval", "--words", "--json", "--config"])
        .arg(&ext)
        .arg("--checkpoint")
        .arg(&checkpoint));
    let words: Value = serde_json::from_str(&stdout).unwrap();
    assert!(words["words"].as_u64().unwrap() > 10, "{words}");
    assert!(words["pieces_per_word"].as_f64().unwrap() >= 1.0, "{words}");
    assert!(words["loss_per_word"].as_f64().unwrap() >= words["loss_per_piece"].as_f64().unwrap());

    let exported = scratch.path().join("hf-ext");
    ok(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--out")
        .arg(&exported));
    assert_eq!(json(&exported.join("config.json"))["vocab_size"], size);
    let text = format!("Patients with {} {mask} treated.", added_word(sidecar));
    let (stdout, _) = ok(mlm_train()
        .args(["fill-mask", "--top-k", "5", "--model"])
        .arg(&exported)
        .arg(&text));
    let ours = scratch.write("fill-mask.json", &stdout);
    mlm_pyref::run(
        "fill_mask_parity.py",
        [
            exported.as_os_str(),
            ours.as_os_str(),
            text.as_ref(),
            "5".as_ref(),
        ],
    );
}

#[test]
fn a_bert_grows_to_an_extended_wordpiece_vocabulary_and_exports() {
    extends_grows_and_exports("bert", "wordpiece", "[MASK]", true);
}

#[test]
fn a_roberta_grows_to_an_extended_bpe_vocabulary_and_exports() {
    extends_grows_and_exports("roberta", "bpe", "<mask>", false);
}

/// ModernBERT: the tied token embeddings and `decoder.bias` grow; its `[CLS] ... [SEP]`
/// byte-level BPE (specials after the trained entries) keeps every id.
#[test]
fn a_modernbert_grows_to_an_extended_bpe_vocabulary_and_exports() {
    extends_grows_and_exports("modernbert", "bpe/modernbert", "[MASK]", false);
}

#[test]
fn bad_vocab_keys_and_a_foreign_base_are_refused() {
    let scratch = Scratch::new("vocab-extend-errors");
    base_model(&scratch, "bert", "wordpiece");
    let extend = |config: &Path| {
        let mut command = mlm_train();
        command.args(["vocab", "extend", "--config"]).arg(config);
        command
    };
    let zero = extended_config(&scratch, "add = 0", "base-hf", "zero.toml");
    refused(&mut extend(&zero), 2, "vocab.add = 0 must be >= 1");
    let none = extended_config(&scratch, "", "base-hf", "none.toml");
    refused(&mut extend(&none), 2, "vocab.add is missing");
    let model = "init_from = \"base-hf\"";
    let missing = config(
        &scratch,
        "missing.toml",
        "tokenizer-ext",
        ["add = 10", model, "max_steps = 1"],
    );
    refused(&mut extend(&missing), 2, "vocab.extend_from is missing");

    // A model whose vocabulary differs from the base (two tokens swapped) is not grown.
    let foreign = scratch.path().join("foreign-hf");
    std::fs::create_dir_all(&foreign).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(
            scratch.path().join("base-hf").join(file),
            foreign.join(file),
        )
        .unwrap();
    }
    let vocab = std::fs::read_to_string(scratch.path().join("base-hf/vocab.txt")).unwrap();
    let mut lines: Vec<&str> = vocab.lines().collect();
    lines.swap(100, 101);
    std::fs::write(foreign.join("vocab.txt"), lines.join("\n") + "\n").unwrap();
    let ext = extended_config(&scratch, "add = 30", "foreign-hf", "foreign.toml");
    refused(
        mlm_train().arg("--config").arg(&ext),
        1,
        "tokens) is not the base of the corpus's extended vocabulary",
    );
    assert!(!scratch.path().join("run-ext/metrics.jsonl").exists());
}
