//! `mlm-train vocab train` and `mlm-train prepare` end to end: a vocabulary trained on the
//! project's fixtures, shards compared with the Python reference packing
//! (tests/python/packing_reference.py: transformers' tokenizer + run_mlm's group_texts
//! without the tail drop) and read back by pyarrow and `datasets`, MEDLINE versions, and bad
//! input named by file and line.

use std::path::{Path, PathBuf};

use crate::{Scratch, mlm_train, run, workspace_root};

/// The scratch directory (a child module may read `Scratch`'s field).
fn dir(scratch: &Scratch) -> &Path {
    &scratch.0
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    workspace_root()
        .join("crates/corpus/tests/fixtures")
        .join(name)
}

/// A config in `scratch` with `[corpus]` over `inputs` and a small `[vocab]`; `overrides`
/// replace or add `[corpus]` keys (TOML values). Relative paths (tokenizer, output) resolve
/// against the config's directory.
pub(crate) fn write_config(
    scratch: &Scratch,
    name: &str,
    inputs: &[PathBuf],
    overrides: &[(&str, &str)],
) -> PathBuf {
    let vocab = "vocab_size = 90\nmin_frequency = 1\n";
    write_config_with_vocab(scratch, name, inputs, overrides, vocab)
}

/// [`write_config`] with `vocab` as the `[vocab]` section's body.
fn write_config_with_vocab(
    scratch: &Scratch,
    name: &str,
    inputs: &[PathBuf],
    overrides: &[(&str, &str)],
    vocab: &str,
) -> PathBuf {
    let inputs: Vec<String> = inputs
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let inputs = format!("[{}]", inputs.join(", "));
    let mut keys: Vec<(&str, &str)> = vec![
        ("inputs", &inputs),
        ("text_fields", "[\"title\", \"abstract\"]"),
        ("id_field", "\"pmid\""),
        ("tokenizer", "\"tok\""),
        ("output", "\"prepared\""),
        ("max_seq_len", "24"),
        ("validation_fraction", "0.2"),
    ];
    for &(key, value) in overrides {
        match keys.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => keys.push((key, value)),
        }
    }
    let corpus: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    scratch.write(name, &format!("[vocab]\n{vocab}\n[corpus]\n{corpus}"))
}

pub(crate) fn prepare(config: &Path) -> (bool, String, String) {
    let (out, stdout, stderr) = run(mlm_train().arg("prepare").arg("--config").arg(config));
    (out.status.success(), stdout, stderr)
}

pub(crate) fn vocab_train(config: &Path) -> (bool, String, String) {
    let (out, stdout, stderr) = run(mlm_train().args(["vocab", "train", "--config"]).arg(config));
    (out.status.success(), stdout, stderr)
}

/// Runs the Python reference on a prepared directory.
fn python_reference(prepared: &Path, cache: &Path) -> String {
    let args = [
        prepared.as_os_str(),
        "--cache-dir".as_ref(),
        cache.as_os_str(),
    ];
    let out = mlm_pyref::run("packing_reference.py", args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn vocab_train_then_prepare_matches_the_python_reference() {
    let scratch = Scratch::new("prepare-reference");
    let config = write_config(&scratch, "run.toml", &[fixture("abstracts.jsonl")], &[]);
    let (ok, stdout, stderr) = vocab_train(&config);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("[PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4"),
        "{stdout}"
    );
    for file in [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert!(dir(&scratch).join("tok").join(file).is_file(), "{file}");
    }

    let (ok, stdout, stderr) = prepare(&config);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("prepared: "), "{stdout}");
    assert!(
        stdout.contains("train ") && stdout.contains("validation "),
        "{stdout}"
    );
    let prepared = dir(&scratch).join("prepared");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(prepared.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["max_seq_len"], 24);
    assert_eq!(manifest["packing"], "concat");
    assert_eq!(manifest["token_dtype"], "uint16");
    assert_eq!(manifest["special_ids"]["mask"], 4);
    assert_eq!(manifest["documents"]["records"], 40);
    assert!(
        manifest["tokenizer_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let shard = &manifest["train"]["shards"][0];
    assert_eq!(shard["file"], "train-00000.parquet");
    assert_eq!(shard["sha256"].as_str().unwrap().len(), 64);
    for file in ["tokenizer.json", "vocab.txt"] {
        assert!(prepared.join(file).is_file(), "{file} copied");
    }

    let reference = python_reference(&prepared, &dir(&scratch).join("hf-cache"));
    assert!(reference.contains("OK"), "{reference}");
    let continuations: u64 = reference
        .lines()
        .find_map(|l| l.strip_prefix("continuation tokens (word_start false): "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a continuation count");
    assert!(
        continuations > 0,
        "the vocabulary splits words, so word starts are tested:\n{reference}"
    );

    // The same config again: nothing to do.
    let (ok, stdout, _) = prepare(&config);
    assert!(ok && stdout.contains("already complete"), "{stdout}");

    // Document packing, same reference.
    let doc_config = write_config(
        &scratch,
        "doc.toml",
        &[fixture("abstracts.jsonl")],
        &[
            ("packing", "\"document\""),
            ("max_seq_len", "16"),
            ("output", "\"prepared-doc\""),
        ],
    );
    let (ok, stdout, stderr) = prepare(&doc_config);
    assert!(ok, "{stdout}{stderr}");
    let reference = python_reference(
        &dir(&scratch).join("prepared-doc"),
        &dir(&scratch).join("hf-cache"),
    );
    assert!(reference.contains("OK"), "{reference}");
}

#[test]
fn vocab_train_bpe_then_prepare_matches_the_python_reference() {
    let scratch = Scratch::new("prepare-bpe");
    let vocab = "model = \"bpe\"\nvocab_size = 400\nmin_frequency = 1\n";
    let config = write_config_with_vocab(
        &scratch,
        "run.toml",
        &[fixture("abstracts.jsonl")],
        &[],
        vocab,
    );
    let (ok, stdout, stderr) = vocab_train(&config);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 399"),
        "{stdout}"
    );
    assert!(stdout.contains("class       RobertaTokenizer"), "{stdout}");
    assert!(stdout.contains("bpe 400 tokens"), "{stdout}");
    let tok = dir(&scratch).join("tok");
    for file in ["tokenizer.json", "vocab.json", "merges.txt"] {
        assert!(tok.join(file).is_file(), "{file}");
    }
    assert!(!tok.join("vocab.txt").exists());

    let (ok, stdout, stderr) = prepare(&config);
    assert!(ok, "{stdout}{stderr}");
    let prepared = dir(&scratch).join("prepared");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(prepared.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["tokenizer_model"], "bpe");
    assert_eq!(manifest["special_ids"]["cls"], 0);
    assert_eq!(manifest["special_ids"]["sep"], 2);
    assert_eq!(manifest["special_ids"]["pad"], 1);
    assert_eq!(manifest["special_tokens"]["mask"], "<mask>");
    for file in ["vocab.json", "merges.txt"] {
        assert!(prepared.join(file).is_file(), "{file} written");
    }
    // pyarrow and datasets read the shards; transformers' RobertaTokenizer + group_texts
    // (with <s> ... </s> wraps and </s> between documents) rebuild them exactly.
    for (name, packing) in [("concat", "\"concat\""), ("document", "\"document\"")] {
        let out = format!("\"prepared-{name}\"");
        let config = write_config_with_vocab(
            &scratch,
            &format!("{name}.toml"),
            &[fixture("abstracts.jsonl")],
            &[("packing", packing), ("output", &out)],
            vocab,
        );
        let (ok, stdout, stderr) = prepare(&config);
        assert!(ok, "{stdout}{stderr}");
        let reference = python_reference(
            &dir(&scratch).join(format!("prepared-{name}")),
            &dir(&scratch).join("hf-cache"),
        );
        assert!(reference.contains("OK"), "{reference}");
        assert!(
            !reference.contains("continuation tokens (word_start false): 0\n"),
            "{reference}"
        );
    }
}

#[test]
fn prepare_applies_medline_revisions_and_deletions() {
    let scratch = Scratch::new("prepare-medline");
    let config = write_config(
        &scratch,
        "run.toml",
        &[fixture("abstracts.jsonl"), fixture("medline")],
        &[],
    );
    assert!(vocab_train(&config).0);
    let (ok, stdout, stderr) = prepare(&config);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("book_article 1, deleted 1, no_abstract 1, superseded 1"),
        "{stdout}"
    );
    assert!(stdout.contains("47 read from 3 files"), "{stdout}");
}

#[test]
fn bad_input_is_named_by_file_and_line_or_skipped_by_policy() {
    let scratch = Scratch::new("prepare-bad");
    let good = std::fs::read_to_string(fixture("abstracts.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(3, "{\"pmid\": \"9\", \"title\": \"cut");
    let bad = scratch.write("bad.jsonl", &(lines.join("\n") + "\n"));
    let config = write_config(&scratch, "run.toml", &[fixture("abstracts.jsonl")], &[]);
    assert!(vocab_train(&config).0);

    let fail = write_config(&scratch, "fail.toml", std::slice::from_ref(&bad), &[]);
    let (ok, _, stderr) = prepare(&fail);
    assert!(!ok);
    assert!(
        stderr.contains("bad.jsonl: line 4: malformed_json"),
        "{stderr}"
    );
    assert!(!dir(&scratch).join("prepared/manifest.json").exists());

    let skip = write_config(
        &scratch,
        "skip.toml",
        &[bad],
        &[("on_bad_record", "\"skip\"")],
    );
    let (ok, stdout, stderr) = prepare(&skip);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("malformed_json 1"), "{stdout}");
    assert!(
        stderr.contains("warning: skipped") && stderr.contains("line 4"),
        "{stderr}"
    );

    // Invalid UTF-8 and a missing field.
    let mut bytes = b"{\"pmid\": \"1\", \"title\": \"ok\", \"abstract\": \"fine\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"pmid\": \"2\", \"title\": \"bad \xff\", \"abstract\": \"x\"}\n");
    let utf8 = dir(&scratch).join("utf8.jsonl");
    std::fs::write(&utf8, bytes).unwrap();
    let (ok, _, stderr) = prepare(&write_config(&scratch, "utf8.toml", &[utf8], &[]));
    assert!(
        !ok && stderr.contains("utf8.jsonl: line 2: invalid_utf8"),
        "{stderr}"
    );
    let missing = scratch.write(
        "missing.jsonl",
        "{\"pmid\": \"1\", \"title\": \"no abstract key\"}\n",
    );
    let (ok, _, stderr) = prepare(&write_config(&scratch, "missing.toml", &[missing], &[]));
    assert!(
        !ok && stderr.contains("missing.jsonl: line 1: missing_field")
            && stderr.contains("`abstract`"),
        "{stderr}"
    );
}

#[test]
fn config_and_tokenizer_problems_are_clear_errors() {
    let scratch = Scratch::new("prepare-config");
    let config = write_config(&scratch, "run.toml", &[fixture("abstracts.jsonl")], &[]);
    assert!(vocab_train(&config).0);

    // An input with no document at all.
    let empty = scratch.write("empty.txt", "\n \n");
    let (ok, _, stderr) = prepare(&write_config(
        &scratch,
        "empty.toml",
        &[empty],
        &[("id_field", "\"unused\"")],
    ));
    assert!(!ok && stderr.contains("empty corpus"), "{stderr}");

    // No [corpus] section.
    let none = scratch.write("none.toml", "[runtime]\ndevice = \"cpu\"\n");
    let (ok, _, stderr) = prepare(&none);
    assert!(!ok && stderr.contains("no [corpus] section"), "{stderr}");

    // A misspelt key is named with its line.
    let typo = write_config(
        &scratch,
        "typo.toml",
        &[fixture("abstracts.jsonl")],
        &[("max_seq_length", "64")],
    );
    let (ok, _, stderr) = prepare(&typo);
    assert!(
        !ok && stderr.contains("max_seq_length") && stderr.contains("line"),
        "{stderr}"
    );

    // A sequence length beyond the tokenizer's model_max_length.
    let tok = dir(&scratch).join("tok/tokenizer_config.json");
    let text = std::fs::read_to_string(&tok)
        .unwrap()
        .replace("\"model_max_length\": 512", "\"model_max_length\": 16");
    std::fs::write(&tok, text).unwrap();
    let (ok, _, stderr) = prepare(&config);
    assert!(
        !ok && stderr.contains("max_seq_len") && stderr.contains("16"),
        "{stderr}"
    );

    // A broken tokenizer.json.
    std::fs::write(dir(&scratch).join("tok/tokenizer.json"), "{\"version\": ").unwrap();
    let (ok, _, stderr) = prepare(&config);
    assert!(
        !ok && stderr.contains("tokenizer.json") && stderr.contains("not a valid"),
        "{stderr}"
    );
}

/// `MLM_SHARED_DIR` (default `../shared` beside the workspace).
fn shared_dir() -> PathBuf {
    std::env::var_os("MLM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}

#[test]
#[ignore = "needs ../shared"]
fn pubmed_cdr_with_bert_base_uncased_matches_the_python_reference() {
    let shared = shared_dir();
    let scratch = Scratch::new("prepare-pubmed");
    let tokenizer = shared.join("tokenizers/bert-base-uncased");
    let config = write_config(
        &scratch,
        "run.toml",
        &[shared.join("data/pubmed-cdr/train.jsonl")],
        &[
            (
                "tokenizer",
                &format!("{:?}", tokenizer.display().to_string()),
            ),
            ("max_seq_len", "128"),
            ("validation_fraction", "0.05"),
        ],
    );
    let (ok, stdout, stderr) = prepare(&config);
    assert!(ok, "{stdout}{stderr}");
    let prepared = dir(&scratch).join("prepared");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(prepared.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["vocab_size"], 30522);
    assert_eq!(manifest["special_ids"]["cls"], 101);
    let reference = python_reference(&prepared, &dir(&scratch).join("hf-cache"));
    assert!(reference.contains("OK"), "{reference}");
}
