//! Loading a Hugging Face model directory into a `VarStore` whose names are HF's, following
//! what `PreTrainedModel.from_pretrained` does in transformers (modeling_utils.py):
//!
//! - weights from `model.safetensors`, a sharded `model.safetensors.index.json`,
//!   `pytorch_model.bin` or a sharded `pytorch_model.bin.index.json`, in that order of
//!   preference; `.bin` files are `torch.save` state dicts in the zip or the legacy format,
//!   read by mlm-torch-pickle (what transformers does with `torch.load(weights_only=True)`);
//! - legacy names `LayerNorm.gamma` / `LayerNorm.beta` renamed to `weight` / `bias`
//!   (`_fix_state_dict_key_on_load`), keys with or without the family's base-model prefix
//!   (`bert.`, `roberta.`, `distilbert.`);
//! - tied copies (`cls.predictions.decoder.*`, `lm_head.decoder.*`, `vocab_projector.weight`),
//!   NSP and task heads, old `position_ids` buffers ignored; anything else that matches no
//!   parameter reported as unexpected;
//! - parameters the checkpoint lacks (the MLM head of a `BertModel` checkpoint, the pooler of
//!   a `BertForMaskedLM` one) initialised as `_init_weights` does and reported;
//! - every shape checked before anything is copied (a mismatch names the parameter and both
//!   shapes and leaves the model untouched); any float dtype converted to the variable's.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlm_torch_pickle::{Dtype as PickleDtype, StateDict, StoredTensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Kind, Tensor};

use super::arch::StateKeys;
use super::config::EncoderConfig;
use super::init::init_variable_like_hf;
use super::{MaskedLanguageModel, ModelError};

/// What a load did, name by name (all lists sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model variables set from the checkpoint.
    pub loaded: Vec<String>,
    /// Model variables the checkpoint lacks, initialised as transformers would.
    pub initialised: Vec<String>,
    /// Checkpoint keys deliberately not used: tied copies of other weights, heads of other
    /// tasks (NSP, classifiers), buffers.
    pub ignored: Vec<String>,
    /// (checkpoint key, model variable) where they differ: legacy gamma/beta, `bert.` prefix.
    pub renamed: Vec<(String, String)>,
    /// Checkpoint keys that match no variable and are not known to be safe to ignore.
    pub unexpected: Vec<String>,
    /// The weight files read.
    pub files: Vec<PathBuf>,
    /// The vocabulary grown after the load (a checkpoint of the base vocabulary trained on a
    /// corpus of an extended one, `vocab extend`).
    pub vocabulary: Option<super::VocabGrowthReport>,
}

impl LoadReport {
    /// One line for logs: counts, and the names of initialised and unexpected keys.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "loaded {} tensors, initialised {}, ignored {}, renamed {}, unexpected {}",
            self.loaded.len(),
            self.initialised.len(),
            self.ignored.len(),
            self.renamed.len(),
            self.unexpected.len()
        );
        if !self.initialised.is_empty() {
            text.push_str(&format!("; initialised: {}", self.initialised.join(", ")));
        }
        if !self.unexpected.is_empty() {
            text.push_str(&format!("; unexpected: {}", self.unexpected.join(", ")));
        }
        if let Some(growth) = &self.vocabulary {
            text.push_str(&format!("; vocabulary {}", growth.summary()));
        }
        text
    }
}

/// How to initialise what the checkpoint lacks.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// Seed of [`super::init_weights_like_hf`] for missing variables.
    pub init_seed: u64,
    /// `initializer_range` and `pad_token_id` for missing variables; default: the directory's
    /// `config.json` (BERT defaults when there is none).
    pub config: Option<&'a EncoderConfig>,
}

/// Loads `dir` into `vs` with seed 0 for missing variables. See [`load_hf_dir_with`].
pub fn load_hf_dir(dir: &Path, vs: &mut tch::nn::VarStore) -> Result<LoadReport, ModelError> {
    load_hf_dir_with(dir, vs, LoadOptions::default())
}

/// Loads the weights of the Hugging Face directory `dir` into `vs` (built by
/// [`super::MaskedLanguageModel::new`] from a matching config). On error the variables are
/// unchanged.
pub fn load_hf_dir_with(
    dir: &Path,
    vs: &mut tch::nn::VarStore,
    options: LoadOptions<'_>,
) -> Result<LoadReport, ModelError> {
    let own_config;
    let config = match options.config {
        Some(config) => config,
        None => {
            own_config = config_or_default(dir)?;
            &own_config
        }
    };
    let files = find_weights(dir)?;
    let variables = vs.variables();
    check_family(dir, config, &variables)?;
    let mut report = LoadReport {
        files: files.paths().to_vec(),
        ..LoadReport::default()
    };
    match &files {
        WeightFiles::Safetensors(paths) => {
            let buffers = read_all(paths)?;
            let entries = safetensors_entries(paths, &buffers)?;
            apply(&entries, &variables, config, options.init_seed, &mut report)?;
        }
        WeightFiles::Pickle(paths) => {
            let states = read_pickles(paths)?;
            let entries = pickle_entries(paths, &states);
            apply(&entries, &variables, config, options.init_seed, &mut report)?;
        }
    }
    Ok(report)
}

/// A model loaded from a directory for inference or export, with what the load did.
pub struct LoadedModel {
    pub vs: tch::nn::VarStore,
    pub model: MaskedLanguageModel,
    pub config: EncoderConfig,
    pub report: LoadReport,
}

/// Loads a checkpoint (`checkpoint-N/`) or a Hugging Face model directory: `config.json` and
/// its weights, on `device` (what `eval`, `export` and `fill-mask` start from).
pub fn load_model_dir(dir: &Path, device: tch::Device) -> Result<LoadedModel, ModelError> {
    let config = EncoderConfig::from_file(&dir.join("config.json"))?;
    let mut vs = tch::nn::VarStore::new(device);
    let model = MaskedLanguageModel::new(&vs.root(), &config);
    let report = load_hf_dir_with(
        dir,
        &mut vs,
        LoadOptions {
            init_seed: 0,
            config: Some(&config),
        },
    )?;
    Ok(LoadedModel {
        vs,
        model,
        config,
        report,
    })
}

/// The model in `variables` has the names of `config`'s family (a RoBERTa checkpoint cannot
/// be loaded into a BERT).
fn check_family(
    dir: &Path,
    config: &EncoderConfig,
    variables: &HashMap<String, Tensor>,
) -> Result<(), ModelError> {
    if variables.contains_key(config.architecture().keys().word_embeddings) {
        return Ok(());
    }
    Err(ModelError::WrongFamily {
        path: dir.to_path_buf(),
        model_type: config
            .model_type
            .clone()
            .unwrap_or_else(|| "bert".to_owned()),
    })
}

/// The directory's `config.json`, or BERT's defaults when it has none (for `initializer_range`
/// and `pad_token_id` of variables the checkpoint lacks).
fn config_or_default(dir: &Path) -> Result<EncoderConfig, ModelError> {
    let path = dir.join("config.json");
    if path.exists() {
        EncoderConfig::from_file(&path)
    } else {
        Ok(EncoderConfig::default())
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, ModelError> {
    paths
        .iter()
        .map(|path| {
            std::fs::read(path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// Every tensor of the safetensors files (views into `buffers`, nothing copied yet).
fn safetensors_entries<'a>(
    paths: &'a [PathBuf],
    buffers: &'a [Vec<u8>],
) -> Result<Vec<(String, Entry<'a>, &'a Path)>, ModelError> {
    let mut entries = Vec::new();
    for (path, buffer) in paths.iter().zip(buffers) {
        let file = SafeTensors::deserialize(buffer).map_err(|source| ModelError::Safetensors {
            path: path.clone(),
            source,
        })?;
        entries.extend(
            file.tensors()
                .into_iter()
                .map(|(name, view)| (name, Entry::View(view), path.as_path())),
        );
    }
    Ok(entries)
}

/// Each `torch.save` file, read into memory once: its tensors are views of those bytes until
/// they are copied into the model.
fn read_pickles(paths: &[PathBuf]) -> Result<Vec<StateDict>, ModelError> {
    paths
        .iter()
        .map(|path| {
            StateDict::read(path).map_err(|source| ModelError::Pickle {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// Every tensor of the `torch.save` state dicts (views into their files' bytes, nothing
/// copied yet).
fn pickle_entries<'a>(
    paths: &'a [PathBuf],
    states: &'a [StateDict],
) -> Vec<(String, Entry<'a>, &'a Path)> {
    paths
        .iter()
        .zip(states)
        .flat_map(|(path, state)| {
            state.tensors().map(move |tensor| {
                (
                    tensor.name().to_owned(),
                    Entry::Pickled(tensor),
                    path.as_path(),
                )
            })
        })
        .collect()
}

/// The weight files of a Hugging Face directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightFiles {
    Safetensors(Vec<PathBuf>),
    Pickle(Vec<PathBuf>),
}

impl WeightFiles {
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Self::Safetensors(paths) | Self::Pickle(paths) => paths,
        }
    }
}

/// Finds the weights of `dir` in transformers' order of preference (safetensors first).
pub fn find_weights(dir: &Path) -> Result<WeightFiles, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(WeightFiles::Safetensors(vec![single]));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return Ok(WeightFiles::Safetensors(shards(dir, &index)?));
    }
    let single = dir.join("pytorch_model.bin");
    if single.is_file() {
        return Ok(WeightFiles::Pickle(vec![single]));
    }
    let index = dir.join("pytorch_model.bin.index.json");
    if index.is_file() {
        return Ok(WeightFiles::Pickle(shards(dir, &index)?));
    }
    Err(ModelError::NoWeights {
        dir: dir.to_path_buf(),
    })
}

/// The shard files an index's `weight_map` names, each once, in first-mention order.
fn shards(dir: &Path, index: &Path) -> Result<Vec<PathBuf>, ModelError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: index.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = Vec::new();
    for file in parsed.weight_map.values() {
        // A shard must be a plain file name next to the index, never a path out of the dir.
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(ModelError::BadCheckpoint {
                path: index.to_path_buf(),
                message: format!("weight_map names \"{file}\", not a file in this directory"),
            });
        }
        let path = dir.join(file);
        if !files.contains(&path) {
            if !path.is_file() {
                return Err(ModelError::BadCheckpoint {
                    path: index.to_path_buf(),
                    message: format!("shard {file} is missing"),
                });
            }
            files.push(path);
        }
    }
    Ok(files)
}

/// A checkpoint tensor, not yet materialised: a view into a safetensors or `torch.save` file.
enum Entry<'a> {
    View(TensorView<'a>),
    Pickled(StoredTensor<'a>),
}

impl Entry<'_> {
    fn shape(&self) -> Vec<i64> {
        match self {
            Self::View(view) => view.shape().iter().map(|d| *d as i64).collect(),
            Self::Pickled(tensor) => tensor.shape().iter().map(|d| *d as i64).collect(),
        }
    }

    /// The libtorch kind for a float dtype; `Err(dtype name)` otherwise.
    fn float_kind(&self) -> Result<Kind, String> {
        match self {
            Self::View(view) => match view.dtype() {
                Dtype::F16 => Ok(Kind::Half),
                Dtype::BF16 => Ok(Kind::BFloat16),
                Dtype::F32 => Ok(Kind::Float),
                Dtype::F64 => Ok(Kind::Double),
                other => Err(other.to_string()),
            },
            Self::Pickled(tensor) => match tensor.dtype() {
                PickleDtype::F16 => Ok(Kind::Half),
                PickleDtype::BF16 => Ok(Kind::BFloat16),
                PickleDtype::F32 => Ok(Kind::Float),
                PickleDtype::F64 => Ok(Kind::Double),
                other => Err(other.to_string()),
            },
        }
    }

    fn to_tensor(&self, kind: Kind) -> Result<Tensor, tch::TchError> {
        match self {
            Self::View(view) => Tensor::f_from_data_size(view.data(), &self.shape(), kind),
            // Views (offsets, strides: a slice of a fused storage, a transpose) are made
            // contiguous here, one tensor at a time.
            Self::Pickled(tensor) => {
                Tensor::f_from_data_size(&tensor.contiguous_bytes(), &self.shape(), kind)
            }
        }
    }
}

/// Where a checkpoint key goes.
enum Target {
    Variable(String),
    Ignored,
    Unexpected,
}

/// Maps a checkpoint key to a model variable (HF's key fixing + base-model prefix).
fn resolve(key: &str, variables: &HashMap<String, Tensor>, keys: &StateKeys) -> Target {
    let fixed = legacy_fixed(key);
    let prefix = keys.base_prefix();
    for candidate in [fixed.clone(), format!("{prefix}{fixed}")] {
        if variables.contains_key(&candidate) {
            return Target::Variable(candidate);
        }
    }
    let unprefixed = fixed.strip_prefix(&prefix).unwrap_or(&fixed);
    if keys.ignored(&fixed) || keys.ignored(unprefixed) {
        Target::Ignored
    } else {
        Target::Unexpected
    }
}

/// `_fix_state_dict_key_on_load`: TF-era `gamma`/`beta` LayerNorm names.
fn legacy_fixed(key: &str) -> String {
    if let Some(stem) = key.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = key.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        key.to_owned()
    }
}

/// A checkpoint tensor with its key and the file it came from.
type Keyed<'a> = (String, Entry<'a>, &'a Path);

/// Model variable -> (checkpoint key, index into the entries) of the tensor copied into it.
type CopyPlan = BTreeMap<String, (String, usize)>;

/// Plans every copy (checking names, shapes and dtypes), then copies and initialises.
fn apply(
    entries: &[Keyed<'_>],
    variables: &HashMap<String, Tensor>,
    config: &EncoderConfig,
    seed: u64,
    report: &mut LoadReport,
) -> Result<(), ModelError> {
    let plan = plan_copies(entries, variables, config.architecture().keys(), report)?;
    check_something_matches(&plan, entries, config)?;
    check_plan(&plan, entries, variables, report)?;
    copy_planned(&plan, entries, variables, report)?;
    initialise_missing(&plan, variables, config, seed, report);
    report.ignored.sort();
    report.unexpected.sort();
    report.renamed.sort();
    Ok(())
}

/// Maps each checkpoint key to its variable; records the ignored and the unexpected keys.
fn plan_copies(
    entries: &[Keyed<'_>],
    variables: &HashMap<String, Tensor>,
    keys: &StateKeys,
    report: &mut LoadReport,
) -> Result<CopyPlan, ModelError> {
    let mut plan = CopyPlan::new();
    let mut ignored: HashMap<String, usize> = HashMap::new();
    for (index, (key, _, path)) in entries.iter().enumerate() {
        match resolve(key, variables, keys) {
            Target::Variable(name) => {
                if let Some((other, _)) = plan.insert(name.clone(), (key.clone(), index)) {
                    return Err(ModelError::BadCheckpoint {
                        path: path.to_path_buf(),
                        message: format!("both {other} and {key} map to {name}"),
                    });
                }
            }
            Target::Ignored => {
                ignored.insert(key.clone(), index);
            }
            Target::Unexpected => report.unexpected.push(key.clone()),
        }
    }
    // A checkpoint may carry a tied weight only under its tied name (e.g. the MLM bias only as
    // `cls.predictions.decoder.bias`): use it for the parameter it duplicates.
    for (tied, target) in keys.tied {
        if !plan.contains_key(*target)
            && variables.contains_key(*target)
            && let Some(index) = ignored.remove(*tied)
        {
            plan.insert((*target).to_owned(), ((*tied).to_owned(), index));
        }
    }
    report.ignored = ignored.into_keys().collect();
    Ok(plan)
}

/// A checkpoint none of whose tensors has a name of the model's family is the wrong file or a
/// wrong `model_type`: refused, rather than training a freshly initialised model.
fn check_something_matches(
    plan: &CopyPlan,
    entries: &[Keyed<'_>],
    config: &EncoderConfig,
) -> Result<(), ModelError> {
    let Some((key, _, path)) = entries.first() else {
        return Ok(());
    };
    if !plan.is_empty() {
        return Ok(());
    }
    Err(ModelError::BadCheckpoint {
        path: path.to_path_buf(),
        message: format!(
            "none of its {} tensors has a name of a {} model (the first is {key}): does \
             config.json's model_type match the weights?",
            entries.len(),
            config.model_type.as_deref().unwrap_or("bert")
        ),
    })
}

/// Every planned copy has the variable's shape and a float dtype, checked before anything is
/// copied so that an error leaves the model untouched.
fn check_plan(
    plan: &CopyPlan,
    entries: &[Keyed<'_>],
    variables: &HashMap<String, Tensor>,
    report: &mut LoadReport,
) -> Result<(), ModelError> {
    for (name, (key, index)) in plan {
        let (_, entry, path) = &entries[*index];
        let model_shape = variables[name].size();
        if entry.shape() != model_shape {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                name: name.clone(),
                checkpoint: entry.shape(),
                model: model_shape,
            });
        }
        entry
            .float_kind()
            .map_err(|dtype| ModelError::UnsupportedDtype {
                path: path.to_path_buf(),
                name: key.clone(),
                dtype,
            })?;
        if key != name {
            report.renamed.push((key.clone(), name.clone()));
        }
    }
    Ok(())
}

fn copy_planned(
    plan: &CopyPlan,
    entries: &[Keyed<'_>],
    variables: &HashMap<String, Tensor>,
    report: &mut LoadReport,
) -> Result<(), ModelError> {
    let _no_grad = tch::no_grad_guard();
    for (name, (_, index)) in plan {
        let (_, entry, _) = &entries[*index];
        let kind = entry.float_kind().unwrap_or(Kind::Float);
        let source = entry.to_tensor(kind).map_err(|source| ModelError::Torch {
            operation: "create a tensor from checkpoint data",
            source,
        })?;
        let mut variable = variables[name].shallow_clone();
        variable
            .f_copy_(&source)
            .map_err(|source| ModelError::Torch {
                operation: "copy checkpoint data into the model",
                source,
            })?;
        report.loaded.push(name.clone());
    }
    Ok(())
}

/// Variables the checkpoint lacks get transformers' `_init_weights` values.
fn initialise_missing(
    plan: &CopyPlan,
    variables: &HashMap<String, Tensor>,
    config: &EncoderConfig,
    seed: u64,
    report: &mut LoadReport,
) {
    let mut missing: Vec<&String> = variables
        .keys()
        .filter(|name| !plan.contains_key(*name))
        .collect();
    missing.sort();
    for name in missing {
        init_variable_like_hf(name, &variables[name], config, seed);
        report.initialised.push(name.clone());
    }
}

#[cfg(test)]
mod tests;
