//! The reader against `torch.load(weights_only=True)` on files that `torch.save` wrote in the
//! forms real checkpoints have (tests/python/torch_save_forms.py): for every tensor the same
//! name, order, dtype, shape, strides, storage offset and storage sharing, and bit-identical
//! contiguous bytes. Also: truncated and corrupted real files are errors, never panics, and
//! files with foreign globals are refused by name without running anything.
//!
//! Needs the project's Python venv (`scripts/setup`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlm_torch_pickle::{Format, StateDict, StoredTensor};
use safetensors::SafeTensors;
use serde_json::Value;

struct Generated {
    dir: PathBuf,
    expected: Value,
}

/// What the Python side wrote, once for all tests of this binary.
fn generated() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("torch_save_forms");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch dir");
        mlm_pyref::run("torch_save_forms.py", [Path::new("make"), &dir]);
        let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
        let expected = serde_json::from_str(&text).expect("valid JSON");
        Generated { dir, expected }
    })
}

/// Every .bin file of `case` reads as torch.load reads it; returns how many files.
fn assert_matches_torch_load(case: &str, format: Format) -> usize {
    let generated = generated();
    let files = generated.expected["cases"][case]
        .as_object()
        .unwrap_or_else(|| panic!("no case {case}"));
    for (file, expected) in files {
        let path = generated.dir.join(case).join(file);
        let state = StateDict::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.format(), format, "{file}");
        let expected = expected.as_object().unwrap();
        assert_eq!(state.len(), expected.len(), "{case}/{file}: tensor count");
        let reference = std::fs::read(path.with_extension("bin.expected.safetensors")).unwrap();
        let reference = SafeTensors::deserialize(&reference).unwrap();
        let tensors: Vec<StoredTensor<'_>> = state.tensors().collect();
        for (index, tensor) in tensors.iter().enumerate() {
            let name = tensor.name();
            let theirs = &expected[name];
            let context = format!("{case}/{file}: {name}");
            assert_eq!(theirs["index"], index, "{context}: order");
            assert_eq!(theirs["dtype"], tensor.dtype().name(), "{context}");
            assert_eq!(
                theirs["shape"],
                serde_json::json!(tensor.shape()),
                "{context}"
            );
            assert_eq!(
                theirs["stride"],
                serde_json::json!(tensor.strides()),
                "{context}"
            );
            assert_eq!(theirs["offset"], tensor.storage_offset(), "{context}");
            let owner = tensors
                .iter()
                .find(|other| other.storage_index() == tensor.storage_index())
                .unwrap();
            assert_eq!(theirs["storage_owner"], owner.name(), "{context}: sharing");
            let view = reference.tensor(name).unwrap();
            assert_eq!(view.shape(), tensor.shape(), "{context}");
            assert!(
                *tensor.contiguous_bytes() == *view.data(),
                "{context}: bytes differ from torch.load's"
            );
        }
    }
    files.len()
}

#[test]
fn an_ordered_dict_with_metadata_in_the_zip_format_matches_torch_load() {
    assert_matches_torch_load("ordered_zip", Format::Zip);
}

#[test]
fn an_ordered_dict_in_the_legacy_format_matches_torch_load() {
    assert_matches_torch_load("ordered_legacy", Format::Legacy);
}

#[test]
fn half_precision_in_both_formats_matches_torch_load() {
    assert_matches_torch_load("fp16_zip", Format::Zip);
    assert_matches_torch_load("fp16_legacy", Format::Legacy);
}

#[test]
fn bfloat16_in_both_formats_matches_torch_load() {
    assert_matches_torch_load("bf16_zip", Format::Zip);
    assert_matches_torch_load("bf16_legacy", Format::Legacy);
}

#[test]
fn a_plain_dict_matches_torch_load() {
    assert_matches_torch_load("plain_dict", Format::Zip);
}

#[test]
fn offset_strided_transposed_and_broadcast_views_match_torch_load_in_both_formats() {
    assert_matches_torch_load("views_zip", Format::Zip);
    assert_matches_torch_load("views_legacy", Format::Legacy);
    let path = generated().dir.join("views_zip/pytorch_model.bin");
    let state = StateDict::read(path).unwrap();
    let query = state
        .get("bert.encoder.layer.0.attention.self.query.weight")
        .unwrap();
    let value = state
        .get("bert.encoder.layer.0.attention.self.value.weight")
        .unwrap();
    assert_eq!(
        query.storage_index(),
        value.storage_index(),
        "one fused storage"
    );
    assert_eq!(value.storage_offset(), 2 * 32 * 32);
    let transposed = state
        .get("bert.encoder.layer.1.intermediate.dense.weight")
        .unwrap();
    assert!(!transposed.is_contiguous());
}

#[test]
fn the_shards_of_a_sharded_checkpoint_match_torch_load() {
    assert_eq!(assert_matches_torch_load("sharded", Format::Zip), 5);
}

#[test]
fn pickle_protocol_4_matches_torch_load() {
    assert_matches_torch_load("protocol4", Format::Zip);
}

#[test]
fn the_tied_decoder_shares_the_word_embeddings_storage() {
    let state = StateDict::read(generated().dir.join("ordered_zip/pytorch_model.bin")).unwrap();
    let embeddings = state.get("bert.embeddings.word_embeddings.weight").unwrap();
    let decoder = state.get("cls.predictions.decoder.weight").unwrap();
    assert_eq!(embeddings.storage_index(), decoder.storage_index());
    assert!(state.storage_count() < state.len());
}

#[test]
fn foreign_globals_in_real_files_are_refused_by_name_and_never_run() {
    let hostile = generated().dir.join("hostile");
    let error = StateDict::read(hostile.join("numpy.bin")).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("unsupported pickle global `numpy._core.multiarray._reconstruct` (only a state dict of tensors can be read)"),
        "{error}"
    );
    for file in ["command_zip.bin", "command_legacy.bin"] {
        let error = StateDict::read(hostile.join(file)).unwrap_err();
        assert!(error.to_string().contains("`posix.system`"), "{error}");
    }
}

/// The real files of the two formats, whole.
fn real_files() -> Vec<Vec<u8>> {
    ["ordered_zip", "ordered_legacy"]
        .iter()
        .map(|case| std::fs::read(generated().dir.join(case).join("pytorch_model.bin")).unwrap())
        .collect()
}

#[test]
fn truncated_real_files_are_errors_not_panics() {
    for bytes in real_files() {
        let lengths = (0..bytes.len())
            .step_by(53)
            .chain(bytes.len() - 300..bytes.len());
        for len in lengths {
            let result = StateDict::from_bytes("cut.bin", bytes[..len].to_vec());
            assert!(result.is_err(), "cut at {len} of {}", bytes.len());
        }
    }
}

#[test]
fn corrupted_real_files_never_panic() {
    for (which, bytes) in real_files().into_iter().enumerate() {
        // The pickle and the zip directory are where corruption matters: bias towards them.
        let hot = bytes.len().min(8192);
        for trial in 0..400u64 {
            let mut corrupted = bytes.clone();
            for flip in 0..3 {
                let r = mlm_seeds::mix(&[which as u64, trial, flip]);
                let at = if r.is_multiple_of(2) {
                    (r >> 8) as usize % hot
                } else {
                    bytes.len() - 1 - (r >> 8) as usize % hot
                };
                corrupted[at] = (r >> 40) as u8;
            }
            if let Ok(state) = StateDict::from_bytes("corrupted.bin", corrupted) {
                state
                    .tensors()
                    .for_each(|tensor| drop(tensor.contiguous_bytes()));
            }
        }
    }
}
