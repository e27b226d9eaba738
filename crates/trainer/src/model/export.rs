//! Export to a Hugging Face directory that `transformers` loads with no conversion:
//! `config.json` (`architectures: ["BertForMaskedLM"]` or the family's masked-LM class, its
//! `model_type`) and `model.safetensors` (metadata `{"format": "pt"}`, which
//! `from_pretrained` requires of safetensors files).
//!
//! The tensors are written the way `*ForMaskedLM.save_pretrained` writes them in
//! transformers 5.24: every parameter once under its HF name, and no tied copy
//! (`cls.predictions.decoder.*`, `lm_head.decoder.*`, `vocab_projector.weight`), because
//! transformers re-ties them on load (`_tied_weights_keys`). So the load report has neither
//! missing nor unexpected keys for the MLM model.
//!
//! The pooler (BERT, RoBERTa): transformers' masked-LM classes have none
//! (`add_pooling_layer=False`), so a `bert.pooler.*` in the file is reported as UNEXPECTED by
//! `AutoModelForMaskedLM` /
//! `pipeline("fill-mask")` (transformers 5 no longer silences it), while leaving it out makes
//! `AutoModelForSequenceClassification` initialise a fresh pooler. [`ExportOptions`] chooses;
//! the default keeps it (a pretrained checkpoint's pooler is worth more to fine-tuning than a
//! quiet load report).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use tch::{Device, Kind};

use super::config::EncoderConfig;
use super::{ModelError, named_variables};

/// What [`export_hf_model_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Write the pooler (`bert.pooler.dense.*`, `roberta.pooler.dense.*`; default true).
    pub include_pooler: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            include_pooler: true,
        }
    }
}

/// Writes `config.json` and `model.safetensors` of `vs` into `dir` (created if needed), pooler
/// included. See [`export_hf_model_with`].
pub fn export_hf_model(
    vs: &tch::nn::VarStore,
    config: &EncoderConfig,
    dir: &Path,
) -> Result<(), ModelError> {
    export_hf_model_with(vs, config, dir, ExportOptions::default())
}

/// Writes `config.json` and `model.safetensors` into `dir`. Tensors keep their dtype (f32
/// unless the caller converted the `VarStore`) and are copied to the CPU. Each file is written
/// to a temporary name, fsynced and renamed, so a reader never sees half a file.
pub fn export_hf_model_with(
    vs: &tch::nn::VarStore,
    config: &EncoderConfig,
    dir: &Path,
    options: ExportOptions,
) -> Result<(), ModelError> {
    check_matches_config(vs, config)?;
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let pooler = config
        .architecture()
        .keys()
        .pooler
        .map(|name| format!("{name}."));
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, tensor) in named_variables(vs) {
        let is_pooler = pooler
            .as_ref()
            .is_some_and(|prefix| name.starts_with(prefix));
        if is_pooler && !options.include_pooler {
            continue;
        }
        let (dtype, bytes) = cpu_bytes(&name, &tensor)?;
        let shape = tensor.size().iter().map(|d| *d as usize).collect();
        tensors.push((name, dtype, shape, bytes));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|source| ModelError::Safetensors {
                    path: dir.join("model.safetensors"),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);

    let weights = dir.join("model.safetensors");
    let temporary = mlm_durable::temp_path(&weights);
    safetensors::tensor::serialize_to_file(views, Some(metadata), &temporary).map_err(
        |source| ModelError::Safetensors {
            path: temporary.clone(),
            source,
        },
    )?;
    publish(&temporary, &weights)?;

    let config_path = dir.join("config.json");
    let temporary = mlm_durable::temp_path(&config_path);
    config.for_export().write_hf(&temporary)?;
    publish(&temporary, &config_path)
}

/// The durable publish of a file written under a temporary name (fsynced, renamed, the
/// directory fsynced: `mlm_durable::publish_file`).
fn publish(temporary: &Path, path: &Path) -> Result<(), ModelError> {
    mlm_durable::publish_file(temporary, path).map_err(|error| {
        let (_, _, source) = error.into_parts();
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The variables must be the ones `config` describes (its family's
/// [`super::Architecture::variables`]: every name, every shape, nothing else), or
/// transformers would refuse the export.
fn check_matches_config(vs: &tch::nn::VarStore, config: &EncoderConfig) -> Result<(), ModelError> {
    let mut variables = vs.variables();
    for expected in config.architecture().variables(config) {
        let Some(tensor) = variables.remove(&expected.name) else {
            return Err(ModelError::MissingVariable {
                name: expected.name,
            });
        };
        if tensor.size() != expected.shape {
            return Err(ModelError::BadInput(format!(
                "{} is {:?} but config.json describes {:?} (vocab_size {}, hidden_size {}, \
                 num_hidden_layers {})",
                expected.name,
                tensor.size(),
                expected.shape,
                config.vocab_size,
                config.hidden_size,
                config.num_hidden_layers
            )));
        }
    }
    if let Some(extra) = variables.keys().min() {
        return Err(ModelError::BadInput(format!(
            "the model has {extra}, which config.json does not describe (num_hidden_layers {})",
            config.num_hidden_layers
        )));
    }
    Ok(())
}

/// A tensor's bytes on the CPU in row-major order, with its safetensors dtype (float kinds;
/// Int64 for buffers).
pub(crate) fn cpu_bytes(name: &str, tensor: &tch::Tensor) -> Result<(Dtype, Vec<u8>), ModelError> {
    let dtype = match tensor.kind() {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        other => {
            return Err(ModelError::BadInput(format!(
                "{name} has dtype {other:?}, which is not exported"
            )));
        }
    };
    let cpu = tensor.to_device(Device::Cpu).contiguous();
    let numel = cpu.numel();
    let mut bytes = vec![0u8; numel * cpu.kind().elt_size_in_bytes()];
    cpu.f_copy_data_u8(&mut bytes, numel)
        .map_err(|source| ModelError::Torch {
            operation: "copy a parameter to host memory",
            source,
        })?;
    Ok((dtype, bytes))
}
