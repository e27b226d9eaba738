//! Every supported family against transformers' own masked-LM class
//! (tests/python/family_parity.py): a random tiny `<Family>ForMaskedLM` saved by
//! `save_pretrained` loads with nothing missing or unexpected, gives the same logits on a padded
//! batch (RoBERTa's position ids count real tokens only) and the same masked-LM loss, and our
//! export of it reloads in `AutoModelForMaskedLM` as the family's class with the same logits.
//!
//! Needs the project's Python venv (`scripts/setup`).

use std::path::{Path, PathBuf};

use mlm_trainer::model::{
    ARCHITECTURES, LoadedModel, MaskedQueries, export_hf_model, load_model_dir, masked_lm_class,
    masked_lm_loss_sum,
};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// The `model_type`s with a parity test below (a registered family without one fails
/// `every_registered_model_type_has_a_parity_test`).
const FAMILIES: &[&str] = &[
    "bert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "distilbert",
    "modernbert",
];

/// fp32 CPU tolerance for logits (O(1..10)); the loss is compared within 1e-5.
const LOGITS_TOLERANCE: f64 = 1e-4;

fn scratch(family: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("family_parity")
        .join(family);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn python(args: &[&str]) {
    mlm_pyref::run("family_parity.py", args);
}

fn tensor(path: &Path, name: &str) -> Tensor {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
        .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// One family: load, logits, loss, export, reload. `family` is the fixture
/// (tests/python/family_parity.py's FAMILY), `model_type` what its config says.
fn check_family(family: &str) {
    let model_type = family.strip_suffix("-2024").unwrap_or(family);
    let dir = scratch(family);
    let out = dir.display().to_string();
    python(&["make", family, &out]);
    let reference = dir.join("reference.safetensors");
    let [ids, mask, labels, logits] =
        ["input_ids", "attention_mask", "labels", "logits"].map(|name| tensor(&reference, name));

    let loaded = load_model_dir(&dir.join("model"), Device::Cpu)
        .unwrap_or_else(|e| panic!("{family}: load: {e}"));
    let report = &loaded.report;
    // Only the pooler (which the MLM classes lack; ours keeps one frozen for export) is new.
    let initialised_beyond_pooler = report.initialised.iter().any(|k| !k.contains(".pooler."));
    assert_eq!(loaded.config.model_type(), model_type);
    assert!(
        report.unexpected.is_empty() && !initialised_beyond_pooler,
        "{family}: a full MLM checkpoint loads with nothing unexpected or missing: {}",
        report.summary()
    );
    loaded.model.check_inputs(&ids, &mask).unwrap();
    let ours = tch::no_grad(|| loaded.model.logits(&ids, &mask, false));
    let diff = max_abs_diff(&ours, &logits);
    assert!(diff < LOGITS_TOLERANCE, "{family}: logits differ by {diff}");

    check_fp64(
        family,
        &loaded,
        &ids,
        &mask,
        &tensor(&reference, "logits64"),
    );

    let positions = labels.view([-1]).ne(-100).nonzero().view([-1]);
    let targets = labels.view([-1]).index_select(0, &positions);
    let expected = tensor(&reference, "loss").double_value(&[0]);
    // Every row through the last layer, and the masked rows alone (model/queries.rs).
    let (batch, seq_len) = ids.size2().unwrap();
    let flat = Vec::<i64>::try_from(&positions).unwrap();
    let queries = MaskedQueries::new(&flat, batch as usize, seq_len as usize, |host| host);
    assert!(queries.is_some(), "{family}: the fixture masks tokens");
    for grouped in [None, queries.as_ref()] {
        let masked = tch::no_grad(|| {
            (loaded.model).masked_logits_grouped(&ids, &mask, &positions, grouped, false)
        });
        let vocab = logits.size()[2];
        let expected_rows = logits.view([-1, vocab]).index_select(0, &positions);
        let diff = max_abs_diff(&masked, &expected_rows);
        assert!(
            diff < LOGITS_TOLERANCE,
            "{family} (grouped {}): masked logits differ by {diff}",
            grouped.is_some()
        );
        let loss =
            masked_lm_loss_sum(&masked, &targets).double_value(&[]) / targets.size()[0] as f64;
        assert!(
            (loss - expected).abs() < 1e-5,
            "{family} (grouped {}): masked-LM loss {loss} vs transformers {expected}",
            grouped.is_some()
        );
    }

    let exported = dir.join("export");
    export_hf_model(&loaded.vs, &loaded.config, &exported).unwrap();
    python(&["reload", family, &out, &exported.display().to_string()]);
    let reload: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reload.json")).unwrap()).unwrap();
    assert_eq!(
        reload["class"],
        masked_lm_class(model_type).expect("a registered model_type"),
        "{family}: exported class"
    );
    assert_eq!(
        reload["missing"],
        serde_json::json!([]),
        "{family}: {reload}"
    );
    let unexpected_beyond_pooler = reload["unexpected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| !key.as_str().unwrap().contains(".pooler."))
        .count();
    assert_eq!(unexpected_beyond_pooler, 0, "{family}: {reload}");
    let reloaded = tensor(&dir.join("reload.safetensors"), "logits");
    let diff = max_abs_diff(&reloaded, &logits.to_kind(Kind::Float));
    assert!(
        diff < LOGITS_TOLERANCE,
        "{family}: exported logits differ by {diff}"
    );
}

/// The same checkpoint in fp64 against transformers' `model.double()`: within 1e-10.
fn check_fp64(family: &str, loaded: &LoadedModel, ids: &Tensor, mask: &Tensor, expected: &Tensor) {
    let dir = scratch(&format!("{family}-fp64"));
    export_hf_model(&loaded.vs, &loaded.config, &dir).unwrap();
    let mut double = load_model_dir(&dir, Device::Cpu).unwrap();
    double.vs.double();
    let ours = tch::no_grad(|| double.model.logits(ids, mask, false));
    assert_eq!(ours.kind(), Kind::Double);
    let diff = max_abs_diff(&ours, expected);
    assert!(diff < 1e-10, "{family}: fp64 logits differ by {diff}");
}

#[test]
fn every_registered_model_type_has_a_parity_test() {
    let registered: Vec<&str> = ARCHITECTURES
        .iter()
        .flat_map(|arch| arch.model_types())
        .map(|known| known.model_type)
        .collect();
    assert_eq!(registered, FAMILIES);
}

// One test per family, so that the harness runs them in parallel.
#[test]
fn bert_matches_transformers_and_exports_as_its_own_class() {
    check_family(FAMILIES[0]);
}

#[test]
fn roberta_matches_transformers_and_exports_as_its_own_class() {
    check_family(FAMILIES[1]);
}

#[test]
fn xlm_roberta_matches_transformers_and_exports_as_its_own_class() {
    check_family(FAMILIES[2]);
}

#[test]
fn camembert_matches_transformers_and_exports_as_its_own_class() {
    check_family(FAMILIES[3]);
}

#[test]
fn distilbert_matches_transformers_and_exports_as_its_own_class() {
    check_family(FAMILIES[4]);
}

#[test]
fn modernbert_matches_transformers_and_exports_as_its_own_class() {
    check_family(FAMILIES[5]);
}

#[test]
fn modernbert_in_the_2024_hub_form_with_every_bias_matches_transformers() {
    check_family("modernbert-2024");
}

/// An edit of a checkpoint's `config.json`.
type ConfigChange = fn(&mut Value);

/// The negative control of the ModernBERT rows: the same checkpoint with its window widened
/// past the sequence (local layers attending globally) or its rotary bases swapped gives other
/// logits, so the parity above depends on both.
#[test]
fn modernbert_parity_depends_on_the_window_and_the_rotary_bases() {
    let dir = scratch("modernbert-controls");
    let out = dir.display().to_string();
    python(&["make", "modernbert", &out]);
    let reference = dir.join("reference.safetensors");
    let [ids, mask, logits] =
        ["input_ids", "attention_mask", "logits"].map(|name| tensor(&reference, name));
    let config_path = dir.join("model").join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let variants: [(&str, ConfigChange); 2] = [
        ("window ignored", |c| c["local_attention"] = 1000.into()),
        ("rotary bases swapped", |c| {
            let rope = &mut c["rope_parameters"];
            let global = rope["full_attention"]["rope_theta"].take();
            rope["full_attention"]["rope_theta"] = rope["sliding_attention"]["rope_theta"].take();
            rope["sliding_attention"]["rope_theta"] = global;
        }),
    ];
    for (what, change) in variants {
        let mut config: Value = serde_json::from_str(&original).unwrap();
        change(&mut config);
        std::fs::write(&config_path, config.to_string()).unwrap();
        let loaded = load_model_dir(&dir.join("model"), Device::Cpu).unwrap();
        let ours = tch::no_grad(|| loaded.model.logits(&ids, &mask, false));
        let real = mask.unsqueeze(-1).to_kind(Kind::Float);
        let diff = max_abs_diff(&(&ours * &real), &(&logits * &real));
        assert!(
            diff > 100.0 * LOGITS_TOLERANCE,
            "{what}: logits moved only by {diff}"
        );
    }
}
