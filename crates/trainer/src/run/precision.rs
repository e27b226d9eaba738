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
use crate::runtime::device_label;

/// The precision a run's forward passes use on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardPrecision {
    device: Device,
    mode: Mode,
}

/// [`Precision`] with `auto` resolved for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fp32,
    /// bf16 autocast over fp32 weights.
    Bf16,
    /// Weights, gradients, optimizer state and forward in float64: reference numerics.
    Fp64,
}

impl ForwardPrecision {
    /// The precision `requested` resolves to on `device`: `auto` is bf16 on CUDA, fp32
    /// elsewhere.
    pub fn new(requested: Precision, device: Device) -> Self {
        let mode = match requested {
            Precision::Auto if device.is_cuda() => Mode::Bf16,
            Precision::Auto | Precision::Fp32 => Mode::Fp32,
            Precision::Bf16 => Mode::Bf16,
            Precision::Fp64 => Mode::Fp64,
        };
        Self { device, mode }
    }

    /// Plain fp32 on `device` (what `mlm-train eval` reports: the reference numbers).
    pub fn fp32(device: Device) -> Self {
        Self {
            device,
            mode: Mode::Fp32,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// `"bf16"`, `"fp32"` or `"fp64"`, as the config spells it.
    pub fn label(&self) -> &'static str {
        match self.mode {
            Mode::Fp32 => "fp32",
            Mode::Bf16 => "bf16",
            Mode::Fp64 => "fp64",
        }
    }

    pub fn is_bf16(&self) -> bool {
        self.mode == Mode::Bf16
    }

    /// The dtype of the weights, gradients and optimizer state: float64 for `fp64`, else
    /// float32 (bf16 autocast keeps fp32 master weights, as `Trainer(bf16=True)` does).
    pub fn weight_kind(&self) -> Kind {
        match self.mode {
            Mode::Fp64 => Kind::Double,
            Mode::Fp32 | Mode::Bf16 => Kind::Float,
        }
    }

    /// Enters the precision for the forward passes made while the returned guard lives (on
    /// this thread: libtorch keeps autocast state per thread). `None` for fp32.
    pub fn enter(&self) -> Result<Option<Autocast>, RunError> {
        if !self.is_bf16() {
            return Ok(None);
        }
        let device = device_label(self.device);
        let autocast_device = match self.device {
            Device::Cpu => AutocastDevice::Cpu,
            Device::Cuda(_) => AutocastDevice::Cuda,
            _ => {
                return Err(RunError::AutocastUnsupported {
                    device,
                    dtype: "bf16",
                });
            }
        };
        Autocast::new(autocast_device, Kind::BFloat16)
            .map(Some)
            .map_err(|source| RunError::Autocast {
                device,
                dtype: "bf16",
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
        assert!(ForwardPrecision::new(Precision::Auto, Device::Cuda(0)).is_bf16());
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
    fn a_device_without_autocast_is_an_error_naming_device_and_dtype() {
        let precision = ForwardPrecision::new(Precision::Bf16, Device::Mps);
        let message = precision.enter().unwrap_err().to_string();
        assert!(
            message.contains("bf16") && message.contains("mps"),
            "{message}"
        );
    }
}
