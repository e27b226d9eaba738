//! Building the model a run trains: a Hugging Face checkpoint to adapt (`model.init_from`),
//! or a fresh model of `model.model_type`'s family sized by `[model]` with the corpus's
//! vocabulary. Shapes are checked against the prepared corpus before any weight is touched.

use std::collections::HashMap;
use std::path::Path;

use mlm_corpus::{DomainTokenizer, Manifest, PreparedCorpus, VocabExtension};
use tch::Device;
use tch::nn::VarStore;

use super::RunError;
use super::config::ModelSection;
use crate::model::{
    EncoderConfig, LoadOptions, LoadReport, MaskedLanguageModel, NewRow, SpecialIds,
    grow_vocabulary, load_hf_dir_with,
};

/// A model ready to train, with where its weights came from.
pub struct BuiltModel {
    pub vs: VarStore,
    pub model: MaskedLanguageModel,
    pub config: EncoderConfig,
    /// `None` for a model from scratch.
    pub load_report: Option<LoadReport>,
}

/// The Hugging Face config of the model `[model]` describes, for a corpus's manifest. With
/// `growth` (a checkpoint of the base vocabulary of the corpus's extended one, see
/// [`check_init_tokenizer`]) the config has the corpus's vocabulary size.
pub fn resolve_config(
    section: &ModelSection,
    manifest: &Manifest,
    growth: Option<&VocabExtension>,
) -> Result<EncoderConfig, RunError> {
    let special = &manifest.special_ids;
    let special_ids = SpecialIds {
        pad: special.pad,
        cls: special.cls,
        sep: special.sep,
    };
    let mut config = planned_config(
        section,
        u64::from(manifest.vocab_size),
        manifest.max_seq_len,
        Some(special_ids),
    )?;
    if let Some(extension) = growth
        && config.vocab_size == i64::from(extension.base_vocab_size)
    {
        config.vocab_size = i64::from(manifest.vocab_size);
    }
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

/// The config `[model]` names: `init_from`'s or `config`'s `config.json`, else a model from
/// scratch in `model.model_type`'s family sized by `[model]`, with the corpus's vocabulary and
/// special ids (when known) and the family's defaults as its transformers config class has
/// them (RoBERTa: one token type, `layer_norm_eps` 1e-5, a position table `pad_token_id + 1`
/// rows longer than the longest sequence, as roberta-base's 514). The run and the dry run's
/// estimate both come here.
pub fn planned_config(
    section: &ModelSection,
    vocab_size: u64,
    max_seq_len: usize,
    special_ids: Option<SpecialIds>,
) -> Result<EncoderConfig, RunError> {
    if let Some(dir) = &section.init_from {
        return Ok(EncoderConfig::from_file(&dir.join("config.json"))?);
    }
    if let Some(path) = &section.config {
        return Ok(EncoderConfig::from_file(path)?);
    }
    let shape = section.scratch_shape(vocab_size, max_seq_len, special_ids);
    Ok(EncoderConfig::scratch(
        section.scratch_model_type(),
        &shape,
        Path::new("[model] section"),
    )?)
}

/// When adapting a checkpoint, its tokenizer must be the one the corpus was prepared with,
/// or the base of the corpus's extended vocabulary (`vocab extend`): every id of the model's
/// vocabulary holds the same token in the corpus's, but for the reused `[unusedN]` slots the
/// extension lists. Returns the extension to grow the model by in that case.
pub fn check_init_tokenizer(
    section: &ModelSection,
    corpus: &PreparedCorpus,
) -> Result<Option<VocabExtension>, RunError> {
    let Some(dir) = &section.init_from else {
        return Ok(None);
    };
    let manifest = corpus.manifest();
    let extension = manifest.vocab_extension.as_ref();
    if DomainTokenizer::file_in(dir).is_none() {
        // No tokenizer to compare: the checkpoint's vocabulary size decides.
        let config = EncoderConfig::from_file(&dir.join("config.json"))?;
        return Ok(extension
            .filter(|e| config.vocab_size == i64::from(e.base_vocab_size))
            .filter(|_| config.vocab_size != i64::from(manifest.vocab_size))
            .cloned());
    }
    let tokenizer = DomainTokenizer::load(dir, None)?;
    if tokenizer.fingerprint() == manifest.tokenizer_fingerprint {
        return Ok(None);
    }
    let Some(extension) = extension else {
        corpus.check_tokenizer(&tokenizer)?;
        return Ok(None);
    };
    let extended = DomainTokenizer::load(&corpus.tokenizer_path(), None)?;
    check_prefix(&tokenizer, &extended, extension)?;
    Ok(Some(extension.clone()))
}

/// The model's vocabulary is the extension's base: same size, same token at every id but the
/// reused slots.
fn check_prefix(
    model: &DomainTokenizer,
    corpus: &DomainTokenizer,
    extension: &VocabExtension,
) -> Result<(), RunError> {
    let not_prefix =
        |id: u32, model_token: String, corpus_token: String| RunError::VocabNotPrefix {
            id,
            model_token,
            corpus_token,
            base_size: extension.base_vocab_size,
            model_size: model.vocab_size(),
        };
    if model.vocab_size() != extension.base_vocab_size {
        let id = model.vocab_size().min(extension.base_vocab_size);
        return Err(not_prefix(id, String::new(), String::new()));
    }
    let reused: HashMap<u32, &str> = extension
        .tokens
        .iter()
        .filter_map(|t| Some((t.id, t.replaced.as_deref()?)))
        .collect();
    for id in 0..model.vocab_size() {
        let (ours, theirs) = (model.id_to_token(id), corpus.id_to_token(id));
        let same = match reused.get(&id) {
            Some(slot) => ours.as_deref() == Some(*slot),
            None => ours == theirs,
        };
        if !same {
            return Err(not_prefix(
                id,
                ours.unwrap_or_default(),
                theirs.unwrap_or_default(),
            ));
        }
    }
    Ok(())
}

/// Creates the model on `device`: the checkpoint's weights when adapting one (what it lacks
/// initialised from `seed`; grown to the corpus's vocabulary by `growth`), else initialised
/// as Hugging Face does from `seed`.
pub fn build_model(
    section: &ModelSection,
    config: &EncoderConfig,
    device: Device,
    seed: u64,
    growth: Option<&VocabExtension>,
) -> Result<BuiltModel, RunError> {
    if let (Some(dir), Some(extension)) = (&section.init_from, growth) {
        return build_grown(dir, config, device, seed, extension);
    }
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

/// The checkpoint loaded at its base vocabulary size, then grown to `config`'s (model/grow.rs).
fn build_grown(
    dir: &Path,
    config: &EncoderConfig,
    device: Device,
    seed: u64,
    extension: &VocabExtension,
) -> Result<BuiltModel, RunError> {
    let mut base_config = config.clone();
    base_config.vocab_size = i64::from(extension.base_vocab_size);
    let mut base_vs = VarStore::new(device);
    let _base = MaskedLanguageModel::new(&base_vs.root(), &base_config);
    let options = LoadOptions {
        init_seed: seed,
        config: Some(&base_config),
    };
    let mut load_report = load_hf_dir_with(dir, &mut base_vs, options)?;
    let vs = VarStore::new(device);
    let model = MaskedLanguageModel::new(&vs.root(), config);
    let rows: Vec<NewRow> = extension
        .tokens
        .iter()
        .map(|t| NewRow {
            id: i64::from(t.id),
            pieces: t.base_ids.iter().map(|&id| i64::from(id)).collect(),
        })
        .collect();
    load_report.vocabulary = Some(grow_vocabulary(
        &base_vs,
        &vs,
        config.architecture(),
        &rows,
    )?);
    Ok(BuiltModel {
        vs,
        model,
        config: config.clone(),
        load_report: Some(load_report),
    })
}
