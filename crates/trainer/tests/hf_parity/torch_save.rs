//! `pytorch_model.bin` in the forms real checkpoints have (tests/python/torch_save_forms.py:
//! `torch.save(model.state_dict())` as an OrderedDict with `_metadata` in the zip and the
//! legacy format, fp16 and bf16, a plain dict, tensors that are views, a sharded
//! `pytorch_model.bin.index.json`), each loaded by `load_hf_dir` to the logits of
//! transformers' `BertForMaskedLM.from_pretrained` of the same directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlm_trainer::model::{EncoderConfig, LoadReport};
use tch::Tensor;

use super::{LOGITS_TOLERANCE, load, max_abs_diff};

/// The directory the Python side wrote, once for all tests of this binary.
fn generated() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hf_torch_save");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch dir");
        mlm_pyref::run("torch_save_forms.py", [Path::new("make"), &dir]);
        dir
    })
}

fn reference(name: &str) -> Tensor {
    Tensor::read_safetensors(generated().join("reference.safetensors"))
        .expect("read reference.safetensors")
        .into_iter()
        .find_map(|(key, tensor)| (key == name).then_some(tensor))
        .unwrap_or_else(|| panic!("reference has no {name}"))
}

/// Loads `case` with our loader and checks its logits against transformers'; returns what
/// the load did.
fn assert_logits_match_transformers(case: &str) -> LoadReport {
    let dir = generated().join(case);
    let config = EncoderConfig::from_file(&dir.join("config.json")).unwrap();
    let (_vs, model, report) = load(&dir, &config);
    let logits =
        tch::no_grad(|| model.logits(&reference("input_ids"), &reference("attention_mask"), false));
    let diff = max_abs_diff(&logits, &reference(&format!("logits_{case}")));
    eprintln!("{case}: max abs diff {diff:e}");
    assert!(diff < LOGITS_TOLERANCE, "{case}: logits differ by {diff}");
    assert!(report.unexpected.is_empty(), "{case}: {}", report.summary());
    // A BertForMaskedLM checkpoint has everything but the pooler (which transformers 5's
    // BertForMaskedLM does not have).
    assert_eq!(
        report.initialised,
        ["bert.pooler.dense.bias", "bert.pooler.dense.weight"],
        "{case}: {}",
        report.summary()
    );
    report
}

const TIED: [&str; 2] = [
    "cls.predictions.decoder.bias",
    "cls.predictions.decoder.weight",
];

#[test]
fn an_ordered_dict_with_metadata_in_the_zip_format_loads_to_transformers_logits() {
    let report = assert_logits_match_transformers("ordered_zip");
    assert_eq!(report.ignored, TIED);
    assert!(report.files[0].ends_with("ordered_zip/pytorch_model.bin"));
}

#[test]
fn a_legacy_format_bin_with_an_int64_position_ids_buffer_loads_to_transformers_logits() {
    let report = assert_logits_match_transformers("ordered_legacy");
    assert_eq!(
        report.ignored,
        ["bert.embeddings.position_ids", TIED[0], TIED[1]]
    );
}

#[test]
fn half_and_bfloat16_bins_in_both_formats_load_to_transformers_logits() {
    for case in ["fp16_zip", "fp16_legacy", "bf16_zip", "bf16_legacy"] {
        assert_logits_match_transformers(case);
    }
}

#[test]
fn a_plain_dict_bin_loads_to_transformers_logits() {
    assert_logits_match_transformers("plain_dict");
}

#[test]
fn a_bin_of_offset_strided_and_transposed_views_loads_to_transformers_logits() {
    for case in ["views_zip", "views_legacy"] {
        let report = assert_logits_match_transformers(case);
        assert!(
            report
                .ignored
                .contains(&"bert.embeddings.position_ids".to_owned())
        );
    }
}

#[test]
fn a_sharded_bin_index_loads_every_shard_to_transformers_logits() {
    let report = assert_logits_match_transformers("sharded");
    assert_eq!(report.files.len(), 5);
    assert!(
        report
            .files
            .iter()
            .all(|file| file.to_string_lossy().contains("pytorch_model-0000"))
    );
}
