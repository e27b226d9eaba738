//! ModernBERT end to end: from scratch with a ModernBERT-layout BPE (learns, resumes
//! bit-identically, exports, fills masks as transformers' pipeline does), through the loop's
//! options (whole words, unpadding, grouping by length, fp64, the fixed-shape step), and a
//! checkpoint in the hub's layout made by transformers. Vocabulary growth and data parallel
//! have their ModernBERT rows in vocab_extend.rs and distributed.rs.

use crate::train::{
    fills_masks_as_the_pipeline_does, metrics, tiny_config, train, trains_resumes_and_exports_with,
};
use crate::{Scratch, mlm_train, run};

/// A ModernBERT from scratch with a ModernBERT-layout BPE (`[CLS] ... [SEP]`, `[MASK]`), a
/// window of 8 tokens in all (shorter than the 32-token sequences) and every layer's dropout:
/// it learns, resumes bit-identically, exports as `ModernBertForMaskedLM`, and fills masks as
/// transformers' pipeline does.
#[test]
fn a_modernbert_with_a_modernbert_layout_bpe_learns_resumes_exports_and_fills_masks() {
    trains_resumes_and_exports_with(
        "modernbert",
        "bpe",
        "ModernBertForMaskedLM",
        "Patients with [MASK] were treated.",
        &[
            "vocab.layout=\"modernbert\"",
            "model.dropout=0.1",
            "model.family_config={local_attention=8, global_attn_every_n_layers=2}",
        ],
    );
}

/// A ModernBERT through the loop's options: whole-word masking, unpadded batches grouped by
/// length, fp64, then the fixed-shape step (`cuda_graphs`, eager on the CPU), then bf16
/// autocast; `eval --words`
/// and `inspect` read its checkpoint; the plan names the window and how it is computed.
#[test]
fn a_modernbert_trains_with_the_loops_options_and_is_inspected() {
    let scratch = Scratch::new("train-modernbert-options");
    let checkpoint = "[checkpoint]\nsave_steps = 0\nkeep_last = 0";
    let config = tiny_config(&scratch, "max_steps = 4", checkpoint);
    let family = [
        "--set=model.model_type=\"modernbert\"",
        "--set=vocab.model=\"bpe\"",
        "--set=vocab.layout=\"modernbert\"",
        "--set=model.family_config={local_attention=8}",
        "--set=corpus.packing=\"document\"",
        "--set=masking.whole_word_mask=true",
    ];
    let mut unpadded = family.to_vec();
    unpadded.extend([
        "--set=training.unpad=true",
        "--set=training.group_by_length=true",
        "--set=training.precision=\"fp64\"",
    ]);
    let (output, _, stderr) = train(&config, &unpadded);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "attend   local layers attend 4 tokens either side (SDPA with the window as a mask)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("unpad    encoder on the real tokens only"),
        "{stderr}"
    );
    let checkpoint = scratch.path().join("run/checkpoint-4");
    let (output, stdout, stderr) = run(mlm_train()
        .args(["eval", "--words", "--json", "--config"])
        .arg(&config)
        .args(family)
        .arg("--checkpoint")
        .arg(&checkpoint));
    assert!(output.status.success(), "{stderr}");
    let words: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        words["loss_per_word"].as_f64().unwrap().is_finite(),
        "{words}"
    );
    let (output, stdout, stderr) = run(mlm_train().arg("inspect").arg(&checkpoint));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("ModernBertForMaskedLM"), "{stdout}");

    let mut graphed = family.to_vec();
    graphed.extend([
        "--set=training.cuda_graphs=true",
        "--set=training.output_dir=\"graphed\"",
    ]);
    let (output, _, stderr) = train(&config, &graphed);
    assert!(output.status.success(), "{stderr}");

    // bf16 autocast (the CPU's, where GPUs run it): the rotary tables stay fp32, the
    // attention bias follows the query's kind.
    let mut bf16 = family.to_vec();
    bf16.extend([
        "--set=training.precision=\"bf16\"",
        "--set=training.output_dir=\"bf16\"",
    ]);
    let (output, _, stderr) = train(&config, &bf16);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("bf16 on cpu"), "{stderr}");
    let losses: Vec<f64> = metrics(&scratch.path().join("bf16"))
        .into_iter()
        .filter(|r| r["split"] == "train")
        .map(|r| r["loss"].as_f64().unwrap())
        .collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
}

/// A ModernBERT checkpoint as the hub has them (tokenizer.json of the released layout:
/// `[CLS]`, `[SEP]`, `[MASK]` with lstrip at the end, `PreTrainedTokenizerFast`; the model
/// saved by transformers): `fill-mask` agrees with transformers' pipeline.
#[test]
fn a_hub_layout_modernbert_fills_masks_as_the_pipeline_does() {
    let scratch = Scratch::new("modernbert-fill-mask");
    let model = scratch.path().join("modernbert");
    let dir = model.display().to_string();
    mlm_pyref::run("tokenizer_families.py", ["make", "modernbert", &dir]);
    mlm_pyref::run("family_parity.py", ["model-for", "modernbert", &dir]);
    for text in [
        "Patients with [MASK] were treated.",
        "Patients with[MASK] were treated.",
    ] {
        fills_masks_as_the_pipeline_does(&scratch, &model, text);
    }
}
