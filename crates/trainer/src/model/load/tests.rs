use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::model::export::cpu_bytes;
use crate::model::{MaskedLanguageModel, export_hf_model, init_weights_like_hf, named_variables};

fn tiny_config() -> EncoderConfig {
    EncoderConfig {
        vocab_size: 97,
        hidden_size: 36,
        num_hidden_layers: 2,
        num_attention_heads: 3,
        intermediate_size: 50,
        max_position_embeddings: 40,
        initializer_range: 0.3,
        ..EncoderConfig::default()
    }
}

fn model(config: &EncoderConfig, seed: u64) -> (VarStore, MaskedLanguageModel) {
    let vs = VarStore::new(Device::Cpu);
    let model = MaskedLanguageModel::new(&vs.root(), config);
    init_weights_like_hf(&vs, config, seed);
    (vs, model)
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mlm-load-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) {
    let data: Vec<(String, _, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, tensor)| {
            let (dtype, bytes) = cpu_bytes(name, tensor).unwrap();
            (
                name.clone(),
                dtype,
                tensor.size().iter().map(|d| *d as usize).collect(),
                bytes,
            )
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = data
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                name.as_str(),
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::tensor::serialize_to_file(views, Some(metadata), path).unwrap();
}

fn logits(model: &MaskedLanguageModel) -> Tensor {
    let ids = Tensor::from_slice(&[2i64, 15, 33, 8, 90, 3, 2, 41, 7, 3, 0, 0]).view([2, 6]);
    model.logits(&ids, &ids.ne(0).to_kind(Kind::Int64), false)
}

fn assert_same_weights(a: &VarStore, b: &VarStore) {
    let b = b.variables();
    for (name, tensor) in named_variables(a) {
        assert!(tensor.equal(&b[&name]), "{name} differs");
    }
}

#[test]
fn export_then_load_round_trips_every_variable() {
    let scratch = Scratch::new("round-trip");
    let config = tiny_config();
    let (source, source_model) = model(&config, 1);
    export_hf_model(&source, &config, &scratch.0).unwrap();
    let (mut target, target_model) = model(&config, 2);
    let report = load_hf_dir(&scratch.0, &mut target).unwrap();
    assert_same_weights(&source, &target);
    assert!(logits(&source_model).equal(&logits(&target_model)));
    assert_eq!(report.loaded.len(), source.variables().len());
    assert!(
        report.initialised.is_empty() && report.unexpected.is_empty() && report.ignored.is_empty()
    );
    assert!(report.renamed.is_empty());
    assert_eq!(report.files, vec![scratch.0.join("model.safetensors")]);
}

#[test]
fn legacy_names_without_the_bert_prefix_and_in_half_precision_load() {
    let scratch = Scratch::new("legacy");
    let config = tiny_config();
    let (source, _) = model(&config, 3);
    let legacy: Vec<(String, Tensor)> = named_variables(&source)
        .into_iter()
        .map(|(name, tensor)| {
            let name = name
                .strip_prefix("bert.")
                .map(str::to_owned)
                .unwrap_or(name);
            let name = match name.strip_suffix("LayerNorm.weight") {
                Some(stem) => format!("{stem}LayerNorm.gamma"),
                None => name.replace("LayerNorm.bias", "LayerNorm.beta"),
            };
            (name, tensor.to_kind(Kind::Half))
        })
        .collect();
    write_safetensors(&scratch.0.join("model.safetensors"), &legacy);
    let (mut target, _) = model(&config, 4);
    let report = load_hf_dir(&scratch.0, &mut target).unwrap();
    assert!(report.initialised.is_empty(), "{}", report.summary());
    assert!(report.renamed.contains(&(
        "encoder.layer.1.output.LayerNorm.gamma".to_owned(),
        "bert.encoder.layer.1.output.LayerNorm.weight".to_owned()
    )));
    assert!(report.renamed.contains(&(
        "cls.predictions.transform.LayerNorm.beta".to_owned(),
        "cls.predictions.transform.LayerNorm.bias".to_owned()
    )));
    let target_variables = target.variables();
    for (name, tensor) in named_variables(&source) {
        let loaded = &target_variables[&name];
        assert_eq!(loaded.kind(), Kind::Float, "{name} converted to f32");
        assert!(
            loaded.equal(&tensor.to_kind(Kind::Half).to_kind(Kind::Float)),
            "{name}"
        );
    }
}

#[test]
fn a_base_model_checkpoint_gets_an_initialised_head_and_other_heads_are_ignored() {
    let scratch = Scratch::new("base");
    let config = tiny_config();
    let (source, _) = model(&config, 5);
    let mut tensors: Vec<(String, Tensor)> = named_variables(&source)
        .into_iter()
        .filter(|(name, _)| name.starts_with("bert."))
        .collect();
    tensors.push((
        "cls.seq_relationship.weight".to_owned(),
        Tensor::zeros([2, 36], (Kind::Float, Device::Cpu)),
    ));
    tensors.push((
        "bert.embeddings.position_ids".to_owned(),
        Tensor::arange(40, (Kind::Int64, Device::Cpu)).view([1, 40]),
    ));
    tensors.push((
        "something.else".to_owned(),
        Tensor::zeros([3], (Kind::Float, Device::Cpu)),
    ));
    write_safetensors(&scratch.0.join("model.safetensors"), &tensors);
    let (mut target, _) = model(&config, 6);
    let report = load_hf_dir_with(
        &scratch.0,
        &mut target,
        LoadOptions {
            init_seed: 42,
            config: Some(&config),
        },
    )
    .unwrap();
    assert_eq!(
        report.initialised,
        [
            "cls.predictions.bias",
            "cls.predictions.transform.LayerNorm.bias",
            "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.dense.weight",
        ]
    );
    assert_eq!(
        report.ignored,
        [
            "bert.embeddings.position_ids",
            "cls.seq_relationship.weight"
        ]
    );
    assert_eq!(report.unexpected, ["something.else"]);
    // The head is initialised as a fresh model with the same seed would be.
    let (fresh, _) = model(&config, 42);
    let name = "cls.predictions.transform.dense.weight";
    assert!(target.variables()[name].equal(&fresh.variables()[name]));
}

#[test]
fn a_shape_mismatch_names_the_parameter_and_both_shapes_and_changes_nothing() {
    let scratch = Scratch::new("mismatch");
    let config = tiny_config();
    let (bigger, _) = model(
        &EncoderConfig {
            intermediate_size: 64,
            ..tiny_config()
        },
        7,
    );
    export_hf_model(
        &bigger,
        &EncoderConfig {
            intermediate_size: 64,
            ..tiny_config()
        },
        &scratch.0,
    )
    .unwrap();
    let (mut target, _) = model(&config, 8);
    let (before, _) = model(&config, 8);
    let error = load_hf_dir_with(
        &scratch.0,
        &mut target,
        LoadOptions {
            init_seed: 0,
            config: Some(&config),
        },
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("bert.encoder.layer.0.intermediate.dense.bias"),
        "{text}"
    );
    assert!(text.contains("[64]") && text.contains("[50]"), "{text}");
    assert_same_weights(&before, &target);
}

#[test]
fn a_sharded_index_loads_all_shards() {
    let scratch = Scratch::new("sharded");
    let config = tiny_config();
    let (source, _) = model(&config, 9);
    let all = named_variables(&source);
    let (first, second) = all.split_at(all.len() / 2);
    write_safetensors(&scratch.0.join("model-00001-of-00002.safetensors"), first);
    write_safetensors(&scratch.0.join("model-00002-of-00002.safetensors"), second);
    let mut weight_map = serde_json::Map::new();
    for (name, _) in first {
        weight_map.insert(name.clone(), "model-00001-of-00002.safetensors".into());
    }
    for (name, _) in second {
        weight_map.insert(name.clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    std::fs::write(
        scratch.0.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let (mut target, _) = model(&config, 10);
    let report = load_hf_dir_with(
        &scratch.0,
        &mut target,
        LoadOptions {
            init_seed: 0,
            config: Some(&config),
        },
    )
    .unwrap();
    assert_eq!(report.files.len(), 2);
    assert_same_weights(&source, &target);
}

#[test]
fn the_mlm_bias_stored_only_as_the_decoder_bias_is_used() {
    let scratch = Scratch::new("decoder-bias");
    let config = tiny_config();
    let (source, _) = model(&config, 11);
    let bias = Tensor::linspace(-1.0, 1.0, 97, (Kind::Float, Device::Cpu));
    let mut tensors: Vec<(String, Tensor)> = named_variables(&source)
        .into_iter()
        .filter(|(name, _)| name != "cls.predictions.bias")
        .collect();
    tensors.push((
        "cls.predictions.decoder.bias".to_owned(),
        bias.shallow_clone(),
    ));
    tensors.push((
        "cls.predictions.decoder.weight".to_owned(),
        source.variables()["bert.embeddings.word_embeddings.weight"].copy(),
    ));
    write_safetensors(&scratch.0.join("model.safetensors"), &tensors);
    let (mut target, _) = model(&config, 12);
    let report = load_hf_dir_with(
        &scratch.0,
        &mut target,
        LoadOptions {
            init_seed: 0,
            config: Some(&config),
        },
    )
    .unwrap();
    assert!(target.variables()["cls.predictions.bias"].equal(&bias));
    assert_eq!(report.ignored, ["cls.predictions.decoder.weight"]);
    assert!(report.initialised.is_empty());
}

#[test]
fn bad_checkpoints_are_errors_naming_what_is_wrong() {
    let config = tiny_config();
    let scratch = Scratch::new("bad");
    let (mut target, _) = model(&config, 13);
    let options = LoadOptions {
        init_seed: 0,
        config: Some(&config),
    };

    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    assert!(matches!(error, ModelError::NoWeights { .. }), "{error}");

    let int_weight = vec![(
        "bert.pooler.dense.bias".to_owned(),
        Tensor::zeros([36], (Kind::Int64, Device::Cpu)),
    )];
    write_safetensors(&scratch.0.join("model.safetensors"), &int_weight);
    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    assert!(
        matches!(error, ModelError::UnsupportedDtype { .. }),
        "{error}"
    );

    let twice = vec![
        (
            "bert.pooler.dense.bias".to_owned(),
            Tensor::zeros([36], (Kind::Float, Device::Cpu)),
        ),
        (
            "pooler.dense.bias".to_owned(),
            Tensor::zeros([36], (Kind::Float, Device::Cpu)),
        ),
    ];
    write_safetensors(&scratch.0.join("model.safetensors"), &twice);
    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    assert!(
        error.to_string().contains("map to bert.pooler.dense.bias"),
        "{error}"
    );

    std::fs::write(
        scratch.0.join("model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    assert!(matches!(error, ModelError::Safetensors { .. }), "{error}");

    std::fs::remove_file(scratch.0.join("model.safetensors")).unwrap();
    // A .bin that is a pickle but not a torch.save file: the error names the file and says why.
    std::fs::write(
        scratch.0.join("pytorch_model.bin"),
        b"\x80\x02not a state dict",
    )
    .unwrap();
    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    assert!(error.to_string().ends_with("pytorch_model.bin"), "{error}");
    let ModelError::Pickle { source, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        source.to_string().contains("not a torch.save file"),
        "{source}"
    );
    // Truncated: a zip archive cut short (its central directory is at the end).
    std::fs::write(scratch.0.join("pytorch_model.bin"), b"PK\x03\x04 cut short").unwrap();
    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(chain.contains("truncated or damaged"), "{chain}");

    std::fs::remove_file(scratch.0.join("pytorch_model.bin")).unwrap();
    std::fs::write(
        scratch.0.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "../x.safetensors"}}"#,
    )
    .unwrap();
    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    assert!(matches!(error, ModelError::BadCheckpoint { .. }), "{error}");
}

#[test]
fn a_checkpoint_of_another_family_is_refused_naming_it() {
    let scratch = Scratch::new("roberta");
    std::fs::write(
        scratch.0.join("config.json"),
        r#"{"model_type": "roberta"}"#,
    )
    .unwrap();
    std::fs::write(scratch.0.join("model.safetensors"), b"not read").unwrap();
    let (mut target, _) = model(&tiny_config(), 14);
    let error = load_hf_dir(&scratch.0, &mut target).unwrap_err();
    assert!(matches!(error, ModelError::WrongFamily { .. }), "{error}");
    assert!(error.to_string().contains("roberta model"), "{error}");
}

#[test]
fn weights_of_another_family_under_a_wrong_model_type_are_refused_not_reinitialised() {
    let config = tiny_config();
    let scratch = Scratch::new("foreign-names");
    let (mut target, net) = model(&config, 15);
    let before = logits(&net);
    let distilbert_names = vec![(
        "distilbert.transformer.layer.0.attention.q_lin.weight".to_owned(),
        Tensor::zeros([36, 36], (Kind::Float, Device::Cpu)),
    )];
    write_safetensors(&scratch.0.join("model.safetensors"), &distilbert_names);
    let options = LoadOptions {
        init_seed: 0,
        config: Some(&config),
    };
    let error = load_hf_dir_with(&scratch.0, &mut target, options).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("none of its 1 tensors has a name of a bert model")
            && message.contains("q_lin"),
        "{message}"
    );
    assert!(before.equal(&logits(&net)), "the model is left as it was");
}
