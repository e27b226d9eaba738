//! Dynamic loss scaling for fp16 training, as `torch.amp.GradScaler` (torch/amp/grad_scaler.py)
//! with its defaults: the loss is multiplied by the scale before backward, the gradients are
//! divided by it before clipping (`unscale_`), a step whose gradients hold an inf or NaN is
//! skipped, and the scale halves after such a step and doubles after 2,000 clean ones
//! (`_amp_update_scale_`). Everything stays on the device: the only host reads are the
//! state saved with a checkpoint and the scale logged.
//!
//! bf16 has fp32's exponent range and needs none of this; fp16 (V100, T4) does.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;

/// `GradScaler(init_scale=2.**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000)`.
const INIT_SCALE: f64 = 65536.0;
const GROWTH_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR: f64 = 0.5;
const GROWTH_INTERVAL: i64 = 2000;

/// What a checkpoint keeps of a scaler (`GradScaler.state_dict()`'s `scale` and
/// `_growth_tracker`), in `trainer_state.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradScalerState {
    pub scale: f64,
    pub growth_tracker: i64,
}

/// The loss scale and its bookkeeping, as 1-element tensors on the training device.
pub struct GradScaler {
    scale: Tensor,
    growth_tracker: Tensor,
    found_inf: Tensor,
}

impl GradScaler {
    pub fn new(device: Device) -> Self {
        Self::from_state(
            GradScalerState {
                scale: INIT_SCALE,
                growth_tracker: 0,
            },
            device,
        )
    }

    pub fn from_state(state: GradScalerState, device: Device) -> Self {
        Self {
            scale: Tensor::from_slice(&[state.scale as f32]).to_device(device),
            growth_tracker: Tensor::from_slice(&[state.growth_tracker as i32]).to_device(device),
            found_inf: Tensor::zeros([1], (Kind::Float, device)),
        }
    }

    /// `loss x scale` (`GradScaler.scale`), for backward.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss * self.scale.to_kind(loss.kind()).reshape([])
    }

    /// Divides `grads` by the scale in place and returns the flag the optimizer step is
    /// skipped on (1 when any gradient holds an inf or NaN), as `GradScaler.unscale_`.
    pub fn unscale(&mut self, grads: &[&Tensor]) -> Result<&Tensor, TrainError> {
        let _ = self.found_inf.zero_();
        // torch: inv_scale = self._scale.double().reciprocal().float().
        let inv_scale = self
            .scale
            .to_kind(Kind::Double)
            .reciprocal()
            .to_kind(Kind::Float);
        mlm_torch_ext::foreach::amp_unscale(grads, &self.found_inf, &inv_scale)
            .map_err(|e| TrainError::external("unscaling gradients (fp16)", e))?;
        Ok(&self.found_inf)
    }

    /// The flag of the last [`GradScaler::unscale`].
    pub fn found_inf(&self) -> &Tensor {
        &self.found_inf
    }

    /// Backs the scale off after a skipped step, grows it after `GROWTH_INTERVAL` clean
    /// ones (`GradScaler.update`).
    pub fn update(&mut self) -> Result<(), TrainError> {
        let _ = self
            .scale
            .f_internal_amp_update_scale_(
                &self.growth_tracker,
                &self.found_inf,
                GROWTH_FACTOR,
                BACKOFF_FACTOR,
                GROWTH_INTERVAL,
            )
            .map_err(|e| TrainError::external("updating the loss scale (fp16)", e))?;
        Ok(())
    }

    /// The state on the host (waits for the device).
    pub fn state(&self) -> GradScalerState {
        GradScalerState {
            scale: self.scale.double_value(&[0]),
            growth_tracker: self.growth_tracker.int64_value(&[0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_skips_backs_off_and_clean_steps_grow_the_scale() {
        let mut scaler = GradScaler::new(Device::Cpu);
        let loss = Tensor::from_slice(&[2.0f32]).reshape([]);
        assert_eq!(scaler.scale(&loss).double_value(&[]), 2.0 * 65536.0);

        let grad = Tensor::from_slice(&[65536.0f32, 131072.0]);
        let found = scaler.unscale(&[&grad]).unwrap().double_value(&[0]);
        assert_eq!(found, 0.0);
        assert_eq!(Vec::<f32>::try_from(&grad).unwrap(), vec![1.0, 2.0]);
        scaler.update().unwrap();
        let state = scaler.state();
        assert_eq!((state.scale, state.growth_tracker), (65536.0, 1));

        let overflow = Tensor::from_slice(&[f32::INFINITY, 1.0]);
        assert_eq!(
            scaler.unscale(&[&overflow]).unwrap().double_value(&[0]),
            1.0
        );
        scaler.update().unwrap();
        let state = scaler.state();
        assert_eq!((state.scale, state.growth_tracker), (32768.0, 0));

        // 2,000 clean steps in a row double it.
        let mut resumed = GradScaler::from_state(
            GradScalerState {
                scale: 1024.0,
                growth_tracker: 1999,
            },
            Device::Cpu,
        );
        let clean = Tensor::from_slice(&[1.0f32]);
        resumed.unscale(&[&clean]).unwrap();
        resumed.update().unwrap();
        let state = resumed.state();
        assert_eq!((state.scale, state.growth_tracker), (2048.0, 0));
    }
}
