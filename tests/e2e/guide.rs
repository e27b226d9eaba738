//! docs/guide.md, run: every `sh` block of the guide, in order, in one bash session, in a
//! directory laid out like the repository with small stand-ins for what the guide downloads
//! (PubMed baseline files: the sample abstracts as gzipped MEDLINE XML; bert-base-uncased: a
//! tiny BERT this test trains and exports) and `configs/pubmed.toml` scaled down to run in
//! seconds. The fine-tuning step runs through the project's Python venv.

use std::io::Write;
use std::path::Path;

use crate::train::{tiny_config, train};
use crate::{Scratch, mlm_train, run, workspace_root};

/// The `sh` blocks of the guide, in order.
fn guide_commands() -> String {
    let guide = std::fs::read_to_string(workspace_root().join("docs/guide.md")).unwrap();
    let mut script = String::new();
    let mut in_block = false;
    for line in guide.lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, command) => {
                script.push_str(command);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

/// `configs/pubmed.toml` with its recipe scaled down to a few CPU steps (same paths).
fn scaled_down_pubmed_config() -> String {
    let text = std::fs::read_to_string(workspace_root().join("configs/pubmed.toml")).unwrap();
    let mut config: toml::Table = toml::from_str(&text).unwrap();
    let mut set = |section: &str, key: &str, value: toml::Value| {
        config[section]
            .as_table_mut()
            .unwrap()
            .insert(key.into(), value);
    };
    set("runtime", "device", "cpu".into());
    set("corpus", "validation_fraction", 0.1.into());
    set("corpus", "max_seq_len", 32.into());
    for (key, value) in [
        ("batch_size", 4),
        ("gradient_accumulation_steps", 1),
        ("max_steps", 6),
        ("logging_steps", 1),
    ] {
        set("training", key, value.into());
    }
    for (key, value) in [
        ("eval_steps", 3),
        ("eval_batch_size", 16),
        ("max_eval_samples", 32),
    ] {
        set("eval", key, value.into());
    }
    set("checkpoint", "save_steps", 3.into());
    toml::to_string(&config).unwrap()
}

/// The first `n` sample abstracts as one gzipped MEDLINE XML baseline file.
fn write_medline_sample(path: &Path, n: usize) {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let sample =
        std::fs::read_to_string(workspace_root().join("data/sample/abstracts.jsonl")).unwrap();
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<PubmedArticleSet>\n");
    for line in sample.lines().take(n) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        xml += &format!(
            "<PubmedArticle><MedlineCitation><PMID Version=\"1\">{}</PMID><Article>\
             <ArticleTitle>{}</ArticleTitle><Abstract><AbstractText>{}</AbstractText>\
             </Abstract></Article></MedlineCitation></PubmedArticle>\n",
            record["pmid"]
                .as_str()
                .map_or_else(|| record["pmid"].to_string(), str::to_string),
            escape(record["title"].as_str().unwrap()),
            escape(record["abstract"].as_str().unwrap())
        );
    }
    xml += "</PubmedArticleSet>\n";
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(xml.as_bytes()).unwrap();
    gz.finish().unwrap();
}

/// The repository layout the guide assumes, in `root`.
fn lay_out(scratch: &Scratch) {
    let root = scratch.path();
    for dir in ["configs", "data/pubmed", "models", "scripts"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(
        root.join("configs/pubmed.toml"),
        scaled_down_pubmed_config(),
    )
    .unwrap();
    write_medline_sample(&root.join("data/pubmed/pubmed25n0001.xml.gz"), 300);
    let script = "scripts/finetune-classifier.py";
    std::fs::copy(workspace_root().join(script), root.join(script)).unwrap();
    std::os::unix::fs::symlink(workspace_root().join(".venv"), root.join(".venv")).unwrap();
    // bert-base-uncased's stand-in: a tiny BERT trained for two steps and exported.
    let base = Scratch::new("guide-base");
    let config = tiny_config(&base, "max_steps = 2", "");
    let (output, _, stderr) = train(&config, &[]);
    assert!(output.status.success(), "{stderr}");
    let (output, _, stderr) = run(mlm_train()
        .args(["export", "--checkpoint"])
        .arg(base.path().join("run/checkpoint-2"))
        .arg("--out")
        .arg(root.join("models/bert-base-uncased")));
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn the_guide_runs_end_to_end() {
    let scratch = Scratch::new("guide");
    lay_out(&scratch);
    let script = format!("set -euo pipefail\n{}", guide_commands());
    assert!(
        script.contains("mlm-train --config configs/pubmed.toml\n"),
        "{script}"
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_mlm-train"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (output, stdout, stderr) = run(std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch.path())
        .env("PATH", path)
        .env("MLM_TRAIN_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error"));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("training accuracy"), "{stdout}");
    let classifier = scratch.path().join("pubmed-bert-classifier/config.json");
    let config = std::fs::read_to_string(&classifier).unwrap();
    assert!(config.contains("BertForSequenceClassification"), "{config}");
    assert!(
        scratch
            .path()
            .join("runs/pubmed/plots/train_loss.png")
            .exists()
    );
    assert!(scratch.path().join("runs/pubmed/checkpoint-6").exists());
}
