//! The numeric precision of the forward pass, entered where the forward runs, like the
//! `ctx = torch.autocast(...)` of nanoGPT's `train.py`:
//!
//! ```ignore
//! let _autocast = precision.enter()?;
//! let logits = model.masked_logits(...);
//! ```
//!
//! Entering can fail (a device autocast does not support, a libtorch error); the run then
//! stops with an error naming the device and dtype instead of silently training in fp32 while
//! the plan says bf16. Weights, gradients and optimizer state stay fp32 either way, except
//! in `fp64`, where they and the forward are float64 (the trajectory parity test's setting).

use mlm_torch_ext::{Autocast, AutocastDevice};
use tch::{Device, Kind};

use super::RunError;
use super::config::Precision;
use super::flops::MatmulFormat;
use crate::runtime::device_label;

/// The precision a run's forward passes use on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardPrecision {
    device: Device,
    mode: Mode,
    /// fp32 matmuls on TF32 tensor cores (`training.tf32`, CUDA only).
    tf32: bool,
}

/// [`Precision`] with `auto` resolved for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fp32,
    /// bf16 autocast over fp32 weights.
    Bf16,
    /// fp16 autocast over fp32 weights, with dynamic loss scaling.
    Fp16,
    /// Weights, gradients, optimizer state and forward in float64: reference numerics.
    Fp64,
}

impl ForwardPrecision {
    /// The precision `requested` resolves to on `device`: `auto` is bf16 on GPUs with bf16
    /// tensor cores (compute capability >= 8.0, `doctor`'s check), fp32 elsewhere.
    pub fn new(requested: Precision, device: Device) -> Self {
        Self::resolve(requested, device, || match device {
            Device::Cuda(index) => mlm_torch_ext::gpu_info(index).is_ok_and(|g| g.supports_bf16()),
            _ => false,
        })
    }

    /// [`ForwardPrecision::new`] with the device's bf16 support told by `bf16_capable`.
    fn resolve(requested: Precision, device: Device, bf16_capable: impl FnOnce() -> bool) -> Self {
        let mode = match requested {
            Precision::Auto if device.is_cuda() && bf16_capable() => Mode::Bf16,
            Precision::Auto | Precision::Fp32 => Mode::Fp32,
            Precision::Bf16 => Mode::Bf16,
            Precision::Fp16 => Mode::Fp16,
            Precision::Fp64 => Mode::Fp64,
        };
        Self {
            device,
            mode,
            tf32: false,
        }
    }

    /// With `training.tf32`: fp32 matmuls of an fp32 run on a GPU use TF32 tensor cores
    /// (process-wide, as `torch.backends.cuda.matmul.allow_tf32`). No effect elsewhere.
    pub fn with_tf32(mut self, tf32: bool) -> Result<Self, RunError> {
        self.tf32 = tf32 && self.mode == Mode::Fp32 && self.device.is_cuda();
        if self.tf32 {
            mlm_torch_ext::set_float32_matmul_precision(
                mlm_torch_ext::Float32MatmulPrecision::High,
            )
            .map_err(|source| RunError::Autocast {
                device: device_label(self.device),
                dtype: "tf32",
                source,
            })?;
        }
        Ok(self)
    }

    /// Plain fp32 on `device` (what `mlm-train eval` reports: the reference numbers).
    pub fn fp32(device: Device) -> Self {
        Self {
            device,
            mode: Mode::Fp32,
            tf32: false,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// `"bf16"`, `"fp16"`, `"fp32"` (`"fp32 (tf32 matmuls)"`) or `"fp64"`.
    pub fn label(&self) -> &'static str {
        match self.mode {
            Mode::Fp32 if self.tf32 => "fp32 (tf32 matmuls)",
            Mode::Fp32 => "fp32",
            Mode::Bf16 => "bf16",
            Mode::Fp16 => "fp16",
            Mode::Fp64 => "fp64",
        }
    }

    /// fp16 needs its loss scaled ([`crate::optim::GradScaler`]).
    pub fn needs_loss_scaling(&self) -> bool {
        self.mode == Mode::Fp16
    }

    /// The number format of the forward's matmuls, for the peak MFU is measured against.
    pub fn matmul_format(&self) -> MatmulFormat {
        match self.mode {
            Mode::Bf16 | Mode::Fp16 => MatmulFormat::Half,
            Mode::Fp32 if self.tf32 => MatmulFormat::Tf32,
            Mode::Fp32 => MatmulFormat::Fp32,
            Mode::Fp64 => MatmulFormat::Fp64,
        }
    }

    #[cfg(test)]
    pub fn is_bf16(&self) -> bool {
        self.mode == Mode::Bf16
    }

    /// Whether FlashAttention's kernels run here: bf16/fp16 autocast on a CUDA device of
    /// compute capability 8.0 or newer (libtorch's flash kernels start at sm80).
    pub fn has_flash_attention(&self) -> bool {
        match self.device {
            Device::Cuda(index) if self.is_half() => {
                mlm_torch_ext::gpu_info(index).is_ok_and(|g| g.compute_capability.0 >= 8)
            }
            _ => false,
        }
    }

    /// bf16 or fp16: activations are 16-bit.
    pub fn is_half(&self) -> bool {
        matches!(self.mode, Mode::Bf16 | Mode::Fp16)
    }

    /// The dtype of the weights, gradients and optimizer state: float64 for `fp64`, else
    /// float32 (bf16 autocast keeps fp32 master weights, as `Trainer(bf16=True)` does).
    pub fn weight_kind(&self) -> Kind {
        match self.mode {
            Mode::Fp64 => Kind::Double,
            Mode::Fp32 | Mode::Bf16 | Mode::Fp16 => Kind::Float,
        }
    }

    /// Enters the precision for the forward passes made while the returned guard lives (on
    /// this thread: libtorch keeps autocast state per thread). `None` for fp32.
    pub fn enter(&self) -> Result<Option<Autocast>, RunError> {
        let (kind, dtype) = match self.mode {
            Mode::Bf16 => (Kind::BFloat16, "bf16"),
            Mode::Fp16 => (Kind::Half, "fp16"),
            Mode::Fp32 | Mode::Fp64 => return Ok(None),
        };
        let device = device_label(self.device);
        let autocast_device = match self.device {
            Device::Cpu => AutocastDevice::Cpu,
            Device::Cuda(_) => AutocastDevice::Cuda,
            _ => return Err(RunError::AutocastUnsupported { device, dtype }),
        };
        Autocast::new(autocast_device, kind)
            .map(Some)
            .map_err(|source| RunError::Autocast {
                device,
                dtype,
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_bf16_on_cuda_only() {
        assert!(!ForwardPrecision::new(Precision::Auto, Device::Cpu).is_bf16());
        let ampere = ForwardPrecision::resolve(Precision::Auto, Device::Cuda(0), || true);
        assert!(ampere.is_bf16());
        // A V100 or T4 (compute capability 7.x): fp32, as doctor's bf16 check fails there.
        let volta = ForwardPrecision::resolve(Precision::Auto, Device::Cuda(0), || false);
        assert_eq!(volta.label(), "fp32");
        // The CPU never asks.
        let cpu = ForwardPrecision::resolve(Precision::Auto, Device::Cpu, || panic!("asked"));
        assert_eq!(cpu.label(), "fp32");
        assert!(!ForwardPrecision::new(Precision::Fp32, Device::Cuda(0)).is_bf16());
        assert!(ForwardPrecision::new(Precision::Bf16, Device::Cpu).is_bf16());
        assert_eq!(ForwardPrecision::fp32(Device::Cuda(1)).label(), "fp32");
        let fp64 = ForwardPrecision::new(Precision::Fp64, Device::Cuda(0));
        assert!(!fp64.is_bf16());
        assert_eq!((fp64.label(), fp64.weight_kind()), ("fp64", Kind::Double));
        let fp32 = ForwardPrecision::new(Precision::Auto, Device::Cpu);
        assert_eq!(fp32.weight_kind(), Kind::Float);
    }

    #[test]
    fn bf16_on_the_cpu_makes_matmuls_bf16_while_the_guard_lives() {
        let precision = ForwardPrecision::new(Precision::Bf16, Device::Cpu);
        let a = tch::Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        {
            let _autocast = precision.enter().unwrap();
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        }
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let _none = ForwardPrecision::fp32(Device::Cpu).enter().unwrap();
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
    }

    #[test]
    fn fp16_on_the_cpu_makes_matmuls_half_and_asks_for_loss_scaling() {
        let precision = ForwardPrecision::new(Precision::Fp16, Device::Cpu);
        assert!(precision.needs_loss_scaling() && precision.is_half());
        assert_eq!(precision.matmul_format(), MatmulFormat::Half);
        let a = tch::Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let _autocast = precision.enter().unwrap();
        assert_eq!(a.matmul(&a).kind(), Kind::Half);
    }

    #[test]
    fn tf32_applies_to_fp32_runs_on_gpus_only() {
        let cpu = ForwardPrecision::new(Precision::Fp32, Device::Cpu);
        let cpu = cpu.with_tf32(true).unwrap();
        assert_eq!(
            (cpu.label(), cpu.matmul_format()),
            ("fp32", MatmulFormat::Fp32)
        );
        let bf16 = ForwardPrecision::resolve(Precision::Bf16, Device::Cuda(0), || true);
        assert_eq!(bf16.with_tf32(true).unwrap().label(), "bf16");
        // (An fp32 CUDA run with tf32 sets libtorch's global matmul precision; scripts/gpu-check
        // runs it on a GPU.)
        let gpu = ForwardPrecision::resolve(Precision::Fp32, Device::Cuda(0), || true);
        let gpu = ForwardPrecision { tf32: true, ..gpu };
        assert_eq!(
            (gpu.label(), gpu.matmul_format()),
            ("fp32 (tf32 matmuls)", MatmulFormat::Tf32)
        );
    }

    #[test]
    fn a_device_without_autocast_is_an_error_naming_device_and_dtype() {
        let precision = ForwardPrecision::new(Precision::Bf16, Device::Mps);
        let message = precision.enter().unwrap_err().to_string();
        assert!(
            message.contains("bf16") && message.contains("mps"),
            "{message}"
        );
    }
}
