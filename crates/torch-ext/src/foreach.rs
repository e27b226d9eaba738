//! Multi-tensor optimizer kernels of libtorch that tch does not expose: PyTorch's fused AdamW
//! (`torch._fused_adamw_`, what `torch.optim.AdamW(fused=True)` and Hugging Face's default
//! `adamw_torch_fused` run) and the foreach form of `clip_grad_norm_`. One call updates every
//! parameter, instead of about ten kernel launches per parameter tensor.

use std::ffi::c_int;

use tch::Tensor;

use crate::{Result, TorchExtError, check};

mod ffi {
    use std::ffi::{c_int, c_void};

    unsafe extern "C" {
        pub fn mlmx_fused_adamw(
            params: *const *mut c_void,
            grads: *const *mut c_void,
            exp_avgs: *const *mut c_void,
            exp_avg_sqs: *const *mut c_void,
            steps: *const *mut c_void,
            n: usize,
            lr: f64,
            lr_tensor: *const c_void,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
            found_inf: *const c_void,
        ) -> c_int;
        pub fn mlmx_foreach_zero(tensors: *const *mut c_void, n: usize) -> c_int;
        pub fn mlmx_clip_grad_norm_device(
            grads: *const *mut c_void,
            n: usize,
            max_norm: f64,
            total_out: *mut *mut c_void,
        ) -> c_int;
        pub fn mlmx_amp_unscale(
            grads: *const *mut c_void,
            n: usize,
            found_inf: *mut c_void,
            inv_scale: *const c_void,
        ) -> c_int;
    }
}

/// The learning rate of a fused step: a number fixed when the kernel is queued, or a 0-dim
/// tensor read when it runs (f32 on the parameters' CUDA device; any float kind on the CPU,
/// where f64 keeps the number exact), which a captured CUDA graph needs to follow the schedule.
#[derive(Debug, Clone, Copy)]
pub enum LearningRate<'a> {
    Value(f64),
    Tensor(&'a Tensor),
}

/// AdamW hyper-parameters of one fused step.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep<'a> {
    pub lr: LearningRate<'a>,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// The tensors of one fused AdamW call; all lists have one entry per parameter, on the
/// parameters' devices. `steps` are f32 scalar tensors, incremented by the call.
pub struct AdamWTensors<'a> {
    pub params: &'a [&'a Tensor],
    pub grads: &'a [&'a Tensor],
    pub exp_avgs: &'a [&'a Tensor],
    pub exp_avg_sqs: &'a [&'a Tensor],
    pub steps: &'a [&'a Tensor],
}

fn pointers(tensors: &[&Tensor]) -> Vec<*mut std::ffi::c_void> {
    tensors
        .iter()
        .map(|t| t.as_ptr().cast_mut().cast())
        .collect()
}

/// One AdamW step of every parameter in `tensors`, in place (PyTorch's fused kernel). With
/// `found_inf` (a 1-element f32 tensor on the parameters' device), the kernel leaves every
/// tensor and step count as it was when it holds 1, deciding on the device: no host sync.
pub fn fused_adamw(
    tensors: &AdamWTensors<'_>,
    step: AdamWStep<'_>,
    found_inf: Option<&Tensor>,
) -> Result<()> {
    let n = tensors.params.len();
    for list in [
        tensors.grads,
        tensors.exp_avgs,
        tensors.exp_avg_sqs,
        tensors.steps,
    ] {
        if list.len() != n {
            return Err(TorchExtError::Torch {
                operation: "fused AdamW",
                message: format!("tensor lists of {n} and {} entries", list.len()),
            });
        }
    }
    let (params, grads) = (pointers(tensors.params), pointers(tensors.grads));
    let (exp_avgs, exp_avg_sqs) = (pointers(tensors.exp_avgs), pointers(tensors.exp_avg_sqs));
    let steps = pointers(tensors.steps);
    let found_inf = found_inf.map_or(std::ptr::null(), |t| t.as_ptr().cast());
    let (lr, lr_tensor) = match step.lr {
        LearningRate::Value(lr) => (lr, std::ptr::null()),
        LearningRate::Tensor(lr) => (f64::NAN, lr.as_ptr().cast()),
    };
    // SAFETY: every pointer is a live `at::Tensor*` borrowed from `tensors` (and `found_inf`
    // and `lr_tensor`, or null) for this call, all five arrays hold `n` entries (checked above), and the shim
    // catches C++ exceptions.
    let status: c_int = unsafe {
        ffi::mlmx_fused_adamw(
            params.as_ptr(),
            grads.as_ptr(),
            exp_avgs.as_ptr(),
            exp_avg_sqs.as_ptr(),
            steps.as_ptr(),
            n,
            lr,
            lr_tensor,
            step.beta1,
            step.beta2,
            step.weight_decay,
            step.eps,
            found_inf,
        )
    };
    check(status, "fused AdamW")
}

/// Sets every tensor to zero in place with one multi-tensor kernel (`torch._foreach_zero_`,
/// what `optimizer.zero_grad(set_to_none=False)` runs): storage is kept, so a captured CUDA
/// graph that accumulates into these gradients still finds them.
pub fn zero(tensors: &[&Tensor]) -> Result<()> {
    let pointers = pointers(tensors);
    // SAFETY: `pointers` holds live `at::Tensor*` borrowed for the call; the shim catches
    // C++ exceptions.
    let status = unsafe { ffi::mlmx_foreach_zero(pointers.as_ptr(), pointers.len()) };
    check(status, "foreach zero")
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm` (not at all when it is
/// infinite), as `torch.nn.utils.clip_grad_norm_(foreach=True)`, and returns the norm before
/// clipping as a 0-dim tensor on the device (`None` without gradients). Nothing waits for the
/// device.
pub fn clip_grad_norm_device(grads: &[&Tensor], max_norm: f64) -> Result<Option<Tensor>> {
    let pointers = pointers(grads);
    let mut total: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `pointers` holds `grads.len()` live `at::Tensor*` borrowed for the call; the shim
    // writes a heap-allocated `at::Tensor*` to `total` on success and catches C++ exceptions.
    let status = unsafe {
        ffi::mlmx_clip_grad_norm_device(pointers.as_ptr(), pointers.len(), max_norm, &raw mut total)
    };
    check(status, "clip grad norm")?;
    // SAFETY: on success `total` is a fresh `at::Tensor*` that nothing else owns; tch takes it
    // over (and deletes it on drop), as for the tensors its own generated calls return.
    let total = unsafe { Tensor::from_ptr(total.cast()) };
    Ok(total.defined().then_some(total))
}

/// `GradScaler.unscale_`'s kernel: every gradient multiplied by `inv_scale` in place, and
/// `found_inf` (1-element f32) set to 1 when any gradient holds an inf or NaN.
pub fn amp_unscale(grads: &[&Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<()> {
    let pointers = pointers(grads);
    // SAFETY: live `at::Tensor*`s borrowed for the call (`found_inf` is written through its
    // handle, which shares storage with the caller's tensor); the shim catches C++ exceptions.
    let status = unsafe {
        ffi::mlmx_amp_unscale(
            pointers.as_ptr(),
            pointers.len(),
            found_inf.as_ptr().cast_mut().cast(),
            inv_scale.as_ptr().cast(),
        )
    };
    check(status, "GradScaler unscale")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The norm of [`clip_grad_norm_device`], read on the host.
    fn clip_grad_norm(grads: &[&Tensor], max_norm: f64) -> Result<f64> {
        Ok(clip_grad_norm_device(grads, max_norm)?.map_or(0.0, |t| t.double_value(&[])))
    }

    #[test]
    fn clipping_matches_the_definition() {
        let a = Tensor::from_slice(&[3.0f32, 0.0]);
        let b = Tensor::from_slice(&[0.0f32, 4.0]);
        let norm = clip_grad_norm(&[&a, &b], 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let scaled = a.double_value(&[0]);
        assert!((scaled - 3.0 / (5.0 + 1e-6)).abs() < 1e-6, "{scaled}");
        let c = Tensor::from_slice(&[0.1f32]);
        let norm = clip_grad_norm(&[&c], f64::INFINITY).unwrap();
        assert!((norm - 0.1).abs() < 1e-7 && (c.double_value(&[0]) - 0.1).abs() < 1e-7);
    }

    #[test]
    fn one_fused_step_is_adamw() {
        // First step from zero moments: update = lr * g / (|g| + eps') = lr * sign(g), after
        // decay p *= 1 - lr * wd.
        let p = Tensor::from_slice(&[1.0f32, -2.0]);
        let g = Tensor::from_slice(&[0.5f32, -0.25]);
        let m = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let v = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let s = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let tensors = AdamWTensors {
            params: &[&p],
            grads: &[&g],
            exp_avgs: &[&m],
            exp_avg_sqs: &[&v],
            steps: &[&s],
        };
        let hyper = AdamWStep {
            lr: LearningRate::Value(0.1),
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.5,
            eps: 1e-8,
        };
        fused_adamw(&tensors, hyper, None).unwrap();
        assert_eq!(s.double_value(&[]), 1.0);
        let expected = [1.0 * (1.0 - 0.05) - 0.1, -2.0 * (1.0 - 0.05) + 0.1];
        for (i, e) in expected.iter().enumerate() {
            assert!((p.double_value(&[i as i64]) - e).abs() < 1e-5, "{i}");
        }
        let bad = AdamWTensors {
            steps: &[],
            ..tensors
        };
        assert!(fused_adamw(&bad, hyper, None).is_err());

        // With found_inf = 1 nothing moves, the step count included; with 0 it is a step.
        let before = p.copy();
        let mut found = Tensor::ones([1], (Kind::Float, Device::Cpu));
        fused_adamw(&tensors, hyper, Some(&found)).unwrap();
        assert!(p.equal(&before) && s.double_value(&[]) == 1.0);
        let _ = found.zero_();
        fused_adamw(&tensors, hyper, Some(&found)).unwrap();
        assert!(!p.equal(&before) && s.double_value(&[]) == 2.0);
    }

    /// Three steps of a parameter pair at a changing learning rate, passed as a number or
    /// written into one f64 tensor before each step (as a captured graph reads it).
    fn three_steps(by_tensor: bool) -> (Tensor, Tensor) {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 0.75]);
        let g = Tensor::from_slice(&[0.5f32, -0.25, 1e-3]);
        let (m, v) = (p.zeros_like(), p.zeros_like());
        let s = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let mut lr_tensor = Tensor::zeros([], (Kind::Double, Device::Cpu));
        for lr in [1e-3, 7.3e-4, 3.1e-4] {
            let _ = lr_tensor.fill_(lr);
            let lr = if by_tensor {
                LearningRate::Tensor(&lr_tensor)
            } else {
                LearningRate::Value(lr)
            };
            let tensors = AdamWTensors {
                params: &[&p],
                grads: &[&g],
                exp_avgs: &[&m],
                exp_avg_sqs: &[&v],
                steps: &[&s],
            };
            let hyper = AdamWStep {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                weight_decay: 0.01,
                eps: 1e-8,
            };
            fused_adamw(&tensors, hyper, None).unwrap();
        }
        (p, v)
    }

    #[test]
    fn a_learning_rate_tensor_read_at_run_time_steps_bit_identically() {
        let (by_value, v_value) = three_steps(false);
        let (by_tensor, v_tensor) = three_steps(true);
        assert!(by_value.equal(&by_tensor), "{by_value} {by_tensor}");
        assert!(v_value.equal(&v_tensor));
        // And the rate really was read: a different one moves the parameters elsewhere.
        assert!(!by_value.equal(&Tensor::from_slice(&[1.0f32, -2.0, 0.75])));
    }

    #[test]
    fn foreach_zero_zeroes_in_place() {
        let a = Tensor::from_slice(&[3.0f32, 4.0]);
        let b = Tensor::from_slice(&[1.0f64]).view([1, 1]);
        let storage = a.data_ptr();
        zero(&[&a, &b]).unwrap();
        assert_eq!(a.data_ptr(), storage);
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![0.0, 0.0]);
        assert_eq!(b.double_value(&[0, 0]), 0.0);
        zero(&[]).unwrap();
    }

    #[test]
    fn device_clipping_returns_the_norm_as_a_tensor() {
        let a = Tensor::from_slice(&[3.0f32, 4.0]);
        let norm = clip_grad_norm_device(&[&a], 1.0).unwrap().unwrap();
        assert_eq!(norm.size(), Vec::<i64>::new());
        assert!((norm.double_value(&[]) - 5.0).abs() < 1e-6);
        assert!((a.double_value(&[1]) - 4.0 / (5.0 + 1e-6)).abs() < 1e-6);
        assert!(clip_grad_norm_device(&[], 1.0).unwrap().is_none());
    }

    #[test]
    fn unscaling_divides_and_flags_non_finite_gradients() {
        let a = Tensor::from_slice(&[4.0f32, 8.0]);
        let found = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let inv = Tensor::from_slice(&[0.25f32]);
        amp_unscale(&[&a], &found, &inv).unwrap();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.0, 2.0]);
        assert_eq!(found.double_value(&[0]), 0.0);
        let b = Tensor::from_slice(&[f32::INFINITY]);
        amp_unscale(&[&a, &b], &found, &inv).unwrap();
        assert_eq!(found.double_value(&[0]), 1.0);
    }
}
