//! Building the model a run trains: a Hugging Face checkpoint to adapt (`model.init_from`),
//! or a fresh model of `model.model_type`'s family sized by `[model]` with the corpus's
//! vocabulary. Shapes are checked against the prepared corpus before any weight is touched.

use std::path::Path;

use mlm_corpus::{DomainTokenizer, Manifest, PreparedCorpus};
use tch::Device;
use tch::nn::VarStore;

use super::RunError;
use super::config::ModelSection;
use crate::model::{
    BertConfig, Family, LoadOptions, LoadReport, MaskedLanguageModel, load_hf_dir_with,
};

/// A model ready to train, with where its weights came from.
pub struct BuiltModel {
    pub vs: VarStore,
    pub model: MaskedLanguageModel,
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
        scratch_config(section, manifest)?
    };
    let vocab = config.vocab_size as u32;
    if vocab != manifest.vocab_size {
        return Err(RunError::VocabMismatch {
            model: vocab,
            corpus: manifest.vocab_size,
        });
    }
    if manifest.max_seq_len as i64 > config.max_sequence_length() {
        return Err(RunError::SequenceTooLong {
            seq_len: manifest.max_seq_len,
            positions: config.max_sequence_length().max(0) as usize,
            table: config.max_position_embeddings as usize,
        });
    }
    Ok(config)
}

/// The config of a model from scratch sized by `[model]`, in `model.model_type`'s family, with
/// the corpus's vocabulary and special ids, and the family's defaults as its transformers
/// config class has them (RoBERTa: one token type, `layer_norm_eps` 1e-5, a position table
/// `pad_token_id + 1` rows longer than the longest sequence, as roberta-base's 514).
fn scratch_config(section: &ModelSection, manifest: &Manifest) -> Result<BertConfig, RunError> {
    let model_type = section.scratch_model_type();
    let family = Family::from_model_type(model_type).unwrap_or(Family::Bert);
    let special = &manifest.special_ids;
    let offset = family.position_offset(Some(i64::from(special.pad))) as usize;
    let positions = section
        .max_position_embeddings
        .unwrap_or_else(|| manifest.max_seq_len.max(512) + offset);
    let (type_vocab_size, layer_norm_eps) = match family {
        Family::Bert => (2, 1e-12),
        Family::Roberta => (1, 1e-5),
        Family::DistilBert => (0, 1e-12),
    };
    let json = serde_json::json!({
        "architectures": [Family::masked_lm_class(model_type)],
        "model_type": model_type,
        "vocab_size": manifest.vocab_size,
        "hidden_size": section.hidden_size,
        "num_hidden_layers": section.num_hidden_layers,
        "num_attention_heads": section.num_attention_heads,
        "intermediate_size": section.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": section.dropout,
        "attention_probs_dropout_prob": section.dropout,
        "max_position_embeddings": positions,
        "type_vocab_size": type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": layer_norm_eps,
        "pad_token_id": special.pad,
        "bos_token_id": special.cls,
        "eos_token_id": special.sep,
    });
    let config: BertConfig = serde_json::from_value(json)
        .map_err(|e| RunError::InvalidConfig(format!("building the [model] config: {e}")))?;
    config
        .validate()
        .map_err(|problem| problem.at(Path::new("[model] section")))?;
    Ok(config)
}

/// When adapting a checkpoint, its tokenizer must be the one the corpus was prepared with.
pub fn check_init_tokenizer(
    section: &ModelSection,
    corpus: &PreparedCorpus,
) -> Result<(), RunError> {
    if let Some(dir) = &section.init_from
        && DomainTokenizer::file_in(dir).is_some()
    {
        let tokenizer = DomainTokenizer::load(dir, None)?;
        corpus.check_tokenizer(&tokenizer)?;
    }
    Ok(())
}

/// Creates the model on `device`: the checkpoint's weights when adapting one (what it lacks
/// initialised from `seed`), else initialised as Hugging Face does from `seed`.
pub fn build_model(
    section: &ModelSection,
    config: &BertConfig,
    device: Device,
    seed: u64,
) -> Result<BuiltModel, RunError> {
    let mut vs = VarStore::new(device);
    let Some(dir) = &section.init_from else {
        let model = MaskedLanguageModel::initialised(&vs, config, seed);
        return Ok(BuiltModel {
            vs,
            model,
            config: config.clone(),
            load_report: None,
        });
    };
    let model = MaskedLanguageModel::new(&vs.root(), config);
    let options = LoadOptions {
        init_seed: seed,
        config: Some(config),
    };
    let load_report = load_hf_dir_with(dir, &mut vs, options)?;
    Ok(BuiltModel {
        vs,
        model,
        config: config.clone(),
        load_report: Some(load_report),
    })
}
