//! Building the model a run trains: a Hugging Face checkpoint to adapt (`model.init_from`),
//! or a fresh BERT sized by `[model]` with the corpus's vocabulary. Shapes are checked
//! against the prepared corpus before any weight is touched.

use std::path::Path;

use mlm_corpus::{DomainTokenizer, Manifest, PreparedCorpus};
use tch::Device;
use tch::nn::VarStore;

use super::RunError;
use super::config::ModelSection;
use crate::model::{
    BertConfig, BertForMaskedLM, LoadOptions, LoadReport, init_weights_like_hf, load_hf_dir,
    load_hf_dir_with,
};

/// A model ready to train, with where its weights came from.
pub struct BuiltModel {
    pub vs: VarStore,
    pub model: BertForMaskedLM,
    pub config: BertConfig,
    /// `None` for a model from scratch.
    pub load_report: Option<LoadReport>,
}

/// The Hugging Face config of the model `[model]` describes, for a corpus's manifest.
pub fn resolve_config(section: &ModelSection, manifest: &Manifest) -> Result<BertConfig, RunError> {
    let config = if let Some(dir) = &section.init_from {
        BertConfig::from_file(&dir.join("config.json"))?
    } else if let Some(path) = &section.config {
        BertConfig::from_file(path)?
    } else {
        if !section
            .hidden_size
            .is_multiple_of(section.num_attention_heads.max(1))
        {
            return Err(RunError::InvalidConfig(format!(
                "model.hidden_size = {} is not a multiple of model.num_attention_heads = {}",
                section.hidden_size, section.num_attention_heads
            )));
        }
        let positions = section
            .max_position_embeddings
            .unwrap_or_else(|| manifest.max_seq_len.max(512));
        let json = serde_json::json!({
            "architectures": ["BertForMaskedLM"],
            "model_type": "bert",
            "vocab_size": manifest.vocab_size,
            "hidden_size": section.hidden_size,
            "num_hidden_layers": section.num_hidden_layers,
            "num_attention_heads": section.num_attention_heads,
            "intermediate_size": section.intermediate_size,
            "hidden_act": "gelu",
            "hidden_dropout_prob": section.dropout,
            "attention_probs_dropout_prob": section.dropout,
            "max_position_embeddings": positions,
            "type_vocab_size": 2,
            "initializer_range": 0.02,
            "layer_norm_eps": 1e-12,
            "pad_token_id": manifest.special_ids.pad,
        });
        let config: BertConfig = serde_json::from_value(json)
            .map_err(|e| RunError::InvalidConfig(format!("building the [model] config: {e}")))?;
        config
            .validate()
            .map_err(|problem| problem.at(Path::new("[model] section")))?;
        config
    };
    let vocab = config.vocab_size as u32;
    if vocab != manifest.vocab_size {
        return Err(RunError::VocabMismatch {
            model: vocab,
            corpus: manifest.vocab_size,
        });
    }
    if manifest.max_seq_len > config.max_position_embeddings as usize {
        return Err(RunError::SequenceTooLong {
            seq_len: manifest.max_seq_len,
            positions: config.max_position_embeddings as usize,
        });
    }
    Ok(config)
}

/// When adapting a checkpoint, its tokenizer must be the one the corpus was prepared with.
pub fn check_init_tokenizer(
    section: &ModelSection,
    corpus: &PreparedCorpus,
) -> Result<(), RunError> {
    if let Some(dir) = &section.init_from
        && has_tokenizer(dir)
    {
        let tokenizer = DomainTokenizer::load(dir, None)?;
        corpus.check_tokenizer(&tokenizer)?;
    }
    Ok(())
}

fn has_tokenizer(dir: &Path) -> bool {
    dir.join("tokenizer.json").exists() || dir.join("vocab.txt").exists()
}

/// Creates the model on `device`: initialised as Hugging Face does from `seed`, then
/// overwritten by the checkpoint's weights when adapting one.
pub fn build_model(
    section: &ModelSection,
    config: &BertConfig,
    device: Device,
    seed: u64,
) -> Result<BuiltModel, RunError> {
    let mut vs = VarStore::new(device);
    let model = BertForMaskedLM::new(&vs.root(), config);
    init_weights_like_hf(&vs, config, seed);
    let load_report = match &section.init_from {
        Some(dir) => Some(load_hf_dir_with(
            dir,
            &mut vs,
            LoadOptions {
                init_seed: seed,
                config: Some(config),
            },
        )?),
        None => None,
    };
    Ok(BuiltModel {
        vs,
        model,
        config: config.clone(),
        load_report,
    })
}

/// Loads a checkpoint (`checkpoint-N/`) or a Hugging Face model directory for inference:
/// `config.json` plus its weights, on `device`.
pub fn load_model_dir(dir: &Path, device: Device) -> Result<BuiltModel, RunError> {
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let mut vs = VarStore::new(device);
    let model = BertForMaskedLM::new(&vs.root(), &config);
    init_weights_like_hf(&vs, &config, 0);
    let report = load_hf_dir(dir, &mut vs)?;
    Ok(BuiltModel {
        vs,
        model,
        config,
        load_report: Some(report),
    })
}
