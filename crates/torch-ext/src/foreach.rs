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
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
        ) -> c_int;
        pub fn mlmx_clip_grad_norm(
            grads: *const *mut c_void,
            n: usize,
            max_norm: f64,
            total_norm: *mut f64,
        ) -> c_int;
    }
}

/// AdamW hyper-parameters of one fused step.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub lr: f64,
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

/// One AdamW step of every parameter in `tensors`, in place (PyTorch's fused kernel).
pub fn fused_adamw(tensors: &AdamWTensors<'_>, step: AdamWStep) -> Result<()> {
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
    // SAFETY: every pointer is a live `at::Tensor*` borrowed from `tensors` for this call, all
    // five arrays hold `n` entries (checked above), and the shim catches C++ exceptions.
    let status: c_int = unsafe {
        ffi::mlmx_fused_adamw(
            params.as_ptr(),
            grads.as_ptr(),
            exp_avgs.as_ptr(),
            exp_avg_sqs.as_ptr(),
            steps.as_ptr(),
            n,
            step.lr,
            step.beta1,
            step.beta2,
            step.weight_decay,
            step.eps,
        )
    };
    check(status, "fused AdamW")
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm` (not at all when it is
/// infinite) and returns the norm before clipping, as `torch.nn.utils.clip_grad_norm_`.
pub fn clip_grad_norm(grads: &[&Tensor], max_norm: f64) -> Result<f64> {
    let pointers = pointers(grads);
    let mut total = 0.0f64;
    // SAFETY: `pointers` holds `grads.len()` live `at::Tensor*` borrowed for the call; `total`
    // is a valid f64 to write; the shim catches C++ exceptions.
    let status = unsafe {
        ffi::mlmx_clip_grad_norm(pointers.as_ptr(), pointers.len(), max_norm, &raw mut total)
    };
    check(status, "clip grad norm")?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

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
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.5,
            eps: 1e-8,
        };
        fused_adamw(&tensors, hyper).unwrap();
        assert_eq!(s.double_value(&[]), 1.0);
        let expected = [1.0 * (1.0 - 0.05) - 0.1, -2.0 * (1.0 - 0.05) + 0.1];
        for (i, e) in expected.iter().enumerate() {
            assert!((p.double_value(&[i as i64]) - e).abs() < 1e-5, "{i}");
        }
        let bad = AdamWTensors {
            steps: &[],
            ..tensors
        };
        assert!(fused_adamw(&bad, hyper).is_err());
    }
}
