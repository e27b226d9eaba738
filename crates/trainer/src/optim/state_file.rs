//! `optimizer.safetensors`: the AdamW state as a safetensors file. Tensors are
//! `exp_avg.<param>` and `exp_avg_sq.<param>` (PyTorch's state keys); the metadata holds the
//! format marker, the optimizer step count, each parameter's own step count and the config.
//! Writing streams one tensor at a time (peak extra memory: the largest parameter); loading
//! checks every name, shape and dtype before it changes anything.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use super::AdamWConfig;
use super::adamw::Slot;
use crate::error::TrainError;

/// File name of the optimizer state inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

const FORMAT: &str = "mlm-train-adamw";
const FORMAT_VERSION: &str = "1";

/// A tensor handed to the safetensors writer, copied to host memory only when written.
struct HostView<'a> {
    tensor: &'a Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl View for HostView<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let host = self.tensor.to_device(Device::Cpu).contiguous();
        let mut bytes = vec![0u8; self.data_len()];
        host.copy_data_u8(&mut bytes, host.numel());
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    match kind {
        Kind::Float => Some(Dtype::F32),
        Kind::Double => Some(Dtype::F64),
        Kind::Half => Some(Dtype::F16),
        Kind::BFloat16 => Some(Dtype::BF16),
        _ => None,
    }
}

fn shape_of(tensor: &Tensor) -> Vec<usize> {
    tensor.size().iter().map(|&d| d as usize).collect()
}

/// Writes the state of `slots` to `path` durably (a synced temporary file renamed into
/// place, the directory synced).
pub(super) fn write(
    path: &Path,
    config: &AdamWConfig,
    steps_taken: u64,
    slots: &[Slot],
) -> Result<(), TrainError> {
    let mut views = Vec::with_capacity(2 * slots.len());
    for slot in slots {
        let dtype = dtype_of(slot.param.kind()).ok_or_else(|| TrainError::OptimizerFormat {
            path: path.to_path_buf(),
            detail: format!(
                "parameter `{}` has dtype {:?}, which the state file does not store",
                slot.name,
                slot.param.kind()
            ),
        })?;
        for (prefix, tensor) in [("exp_avg", &slot.exp_avg), ("exp_avg_sq", &slot.exp_avg_sq)] {
            let view = HostView {
                tensor,
                dtype,
                shape: shape_of(tensor),
            };
            views.push((format!("{prefix}.{}", slot.name), view));
        }
    }
    let param_steps: BTreeMap<&str, u64> = slots
        .iter()
        .map(|s| (s.name.as_str(), s.current_step()))
        .collect();
    let decay: Vec<&str> = slots
        .iter()
        .filter(|s| s.decay)
        .map(|s| s.name.as_str())
        .collect();
    let json = |value: serde_json::Result<String>| {
        value.map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })
    };
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("steps_taken".to_string(), steps_taken.to_string()),
        ("config".to_string(), json(serde_json::to_string(config))?),
        (
            "param_steps".to_string(),
            json(serde_json::to_string(&param_steps))?,
        ),
        ("decay".to_string(), json(serde_json::to_string(&decay))?),
    ]);
    // Streamed into `<path>.tmp` (safetensors writes one tensor at a time to a file it
    // creates, so not through `write_file_atomically`'s handle), then published durably.
    let temp = mlm_durable::temp_path(path);
    let written = safetensors::serialize_to_file(views, Some(metadata), &temp)
        .map_err(|source| TrainError::SafeTensors {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|()| mlm_durable::publish_file(&temp, path).map_err(TrainError::durable));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Reads `path`, checks it against `slots`, then copies the moments into them. Returns the
/// optimizer step count. Nothing in `slots` changes unless every check passes.
pub(super) fn load_into(path: &Path, slots: &mut [Slot]) -> Result<u64, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io("read", path, e))?;
    let header = read_header(path, &bytes)?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|source| TrainError::SafeTensors {
        path: path.to_path_buf(),
        source,
    })?;
    let planned = plan_restore(path, slots, &header.param_steps, &tensors)?;
    tch::no_grad(|| {
        for (slot, (step, views)) in slots.iter_mut().zip(planned) {
            let kind = slot.param.kind();
            for (target, view) in [&mut slot.exp_avg, &mut slot.exp_avg_sq]
                .into_iter()
                .zip(&views)
            {
                copy_view(target, view, kind).map_err(|source| {
                    TrainError::torch(
                        format!("restoring the optimizer state of `{}`", slot.name),
                        source,
                    )
                })?;
            }
            slot.step = step;
        }
        Ok(header.steps_taken)
    })
}

/// The step counts of the file's metadata.
struct Header {
    steps_taken: u64,
    param_steps: HashMap<String, u64>,
}

/// Checks the format marker and version and reads the step counts.
fn read_header(path: &Path, bytes: &[u8]) -> Result<Header, TrainError> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|source| TrainError::SafeTensors {
            path: path.to_path_buf(),
            source,
        })?;
    let format_error = |detail: String| TrainError::OptimizerFormat {
        path: path.to_path_buf(),
        detail,
    };
    let info = metadata
        .metadata()
        .as_ref()
        .ok_or_else(|| format_error("no metadata".into()))?;
    let field = |key: &str| {
        info.get(key)
            .ok_or_else(|| format_error(format!("metadata has no `{key}`")))
    };
    if field("format")? != FORMAT {
        return Err(format_error(format!("format is `{}`", field("format")?)));
    }
    if field("format_version")? != FORMAT_VERSION {
        return Err(format_error(format!(
            "format_version {} is not {FORMAT_VERSION}",
            field("format_version")?
        )));
    }
    Ok(Header {
        steps_taken: field("steps_taken")?
            .parse()
            .map_err(|_| format_error("steps_taken is not a number".into()))?,
        param_steps: serde_json::from_str(field("param_steps")?)
            .map_err(|_| format_error("param_steps is not a map of step counts".into()))?,
    })
}

/// Each slot's step count and its two moment tensors in the file, every shape and dtype
/// checked, and no tensor in the file left over.
fn plan_restore<'a>(
    path: &Path,
    slots: &[Slot],
    param_steps: &HashMap<String, u64>,
    tensors: &SafeTensors<'a>,
) -> Result<Vec<(u64, Vec<TensorView<'a>>)>, TrainError> {
    let missing = |param: &str, tensor: String| TrainError::MissingOptimizerState {
        path: path.to_path_buf(),
        param: param.to_owned(),
        tensor,
    };
    let mut expected = std::collections::HashSet::new();
    let mut planned = Vec::with_capacity(slots.len());
    for slot in slots {
        let step = *param_steps
            .get(&slot.name)
            .ok_or_else(|| missing(&slot.name, "param_steps".into()))?;
        let mut views = Vec::with_capacity(2);
        for prefix in ["exp_avg", "exp_avg_sq"] {
            let name = format!("{prefix}.{}", slot.name);
            let view = tensors
                .tensor(&name)
                .map_err(|_| missing(&slot.name, name.clone()))?;
            check_moment(path, slot, &name, &view)?;
            views.push(view);
            expected.insert(name);
        }
        planned.push((step, views));
    }
    let mut names = tensors.names();
    names.sort();
    if let Some(extra) = names.into_iter().find(|name| !expected.contains(*name)) {
        return Err(TrainError::UnexpectedOptimizerState {
            path: path.to_path_buf(),
            name: extra.to_string(),
        });
    }
    Ok(planned)
}

/// A moment has its parameter's shape and dtype.
fn check_moment(
    path: &Path,
    slot: &Slot,
    name: &str,
    view: &TensorView<'_>,
) -> Result<(), TrainError> {
    let want_shape = shape_of(&slot.param);
    let want_dtype = dtype_of(slot.param.kind());
    if view.shape() == want_shape.as_slice() && Some(view.dtype()) == want_dtype {
        return Ok(());
    }
    Err(TrainError::OptimizerStateMismatch {
        path: path.to_path_buf(),
        name: name.to_owned(),
        param: slot.name.clone(),
        expected: format!("{:?} {:?}", slot.param.kind(), want_shape),
        found: format!("{:?} {:?}", view.dtype(), view.shape()),
    })
}

fn copy_view(target: &mut Tensor, view: &TensorView<'_>, kind: Kind) -> Result<(), tch::TchError> {
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    let host = Tensor::f_from_data_size(view.data(), &shape, kind)?;
    target.f_copy_(&host)
}
