//! Clipping by the global L2 norm of all gradients, as `torch.nn.utils.clip_grad_norm_`
//! (torch/nn/utils/clip_grad.py, norm_type 2): the norm of the per-tensor norms, a clip
//! coefficient `max_norm / (total + 1e-6)` clamped to 1, every gradient multiplied by it. The
//! arithmetic stays in the gradients' dtype on their device, op for op as in PyTorch.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::GradScaler;
use crate::error::TrainError;
use crate::model::trainable_named_variables;

/// The defined gradients of `vs`, in name order (a fixed order keeps the summation, hence the
/// norm, reproducible; PyTorch sums in registration order, which can differ in the last bit).
pub fn gradients(vs: &VarStore) -> Vec<Tensor> {
    trainable_named_variables(vs)
        .into_iter()
        .map(|(_, var)| var.grad())
        .filter(Tensor::defined)
        .collect()
}

/// `torch.linalg.vector_norm(torch.stack([vector_norm(g) for g in grads]))` (0-dim tensor).
fn total_norm(grads: &[Tensor]) -> Option<Tensor> {
    let device = grads.first()?.device();
    let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_device(device)).collect();
    Some(Tensor::stack(&norms, 0).norm())
}

/// The global L2 norm of every gradient in `vs` (0 when there are none), without clipping.
pub fn global_grad_norm(vs: &VarStore) -> f64 {
    tch::no_grad(|| total_norm(&gradients(vs)).map_or(0.0, |t| t.double_value(&[])))
}

/// Scales all gradients of `vs` so their global L2 norm is at most `max_norm` and returns the
/// norm before clipping. A non-finite result means a non-finite gradient (PyTorch then scales
/// by NaN too): the caller should stop the step. `max_norm = f64::INFINITY` only measures.
pub fn clip_grad_norm(vs: &VarStore, max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let mut grads = gradients(vs);
        let Some(total) = total_norm(&grads) else {
            return 0.0;
        };
        if max_norm != f64::INFINITY {
            // `max_norm / tensor` is `tensor.reciprocal() * max_norm` in PyTorch (Tensor.__rdiv__).
            let coefficient = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
            for grad in &mut grads {
                let _ = grad.g_mul_(&coefficient.to_device(grad.device()));
            }
        }
        total.double_value(&[])
    })
}

/// What a step's update waits on, as the plain step and the graphed one both prepare it:
/// fp16 divides the gradients by the loss scale first (`scaler`); then clipping to
/// `max_norm` (infinite: measure only), on the device or, with `host_clip`, op by op with the
/// norm read back (the single-tensor optimizer's path). Returns the norm before clipping and
/// the flag the update is skipped on (the scaler's, else a non-finite norm), both on the
/// device; `None`s without gradients.
pub fn unscale_and_clip(
    vs: &VarStore,
    scaler: Option<&mut GradScaler>,
    max_norm: f64,
    host_clip: bool,
) -> Result<(Option<Tensor>, Option<Tensor>), TrainError> {
    let scaler_flag = match scaler {
        Some(scaler) => {
            let grads = gradients(vs);
            let grads: Vec<&Tensor> = grads.iter().collect();
            Some(scaler.unscale(&grads)?.shallow_clone())
        }
        None => None,
    };
    let norm = if host_clip {
        Some(Tensor::from(clip_grad_norm(vs, max_norm)))
    } else {
        clip_grad_norm_device(vs, max_norm)?
    };
    let found_inf = scaler_flag.or_else(|| {
        let norm = norm.as_ref()?;
        Some(
            norm.isfinite()
                .logical_not()
                .to_kind(Kind::Float)
                .reshape([1]),
        )
    });
    Ok((norm, found_inf))
}

/// [`clip_grad_norm`] through libtorch's multi-tensor kernels (`clip_grad_norm_` with
/// `foreach=True`, what PyTorch uses for CUDA tensors): three launches in all rather than two
/// per gradient; goes with the fused AdamW path. Returns the norm before clipping, 0-dim on
/// the device (`None` without gradients): nothing waits for the device.
pub fn clip_grad_norm_device(vs: &VarStore, max_norm: f64) -> Result<Option<Tensor>, TrainError> {
    tch::no_grad(|| {
        let grads = gradients(vs);
        let refs: Vec<&Tensor> = grads.iter().collect();
        mlm_torch_ext::foreach::clip_grad_norm_device(&refs, max_norm)
            .map_err(|e| TrainError::external("clipping gradients", e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn store_with_grads(values: &[(&str, &[f32])]) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
        for (name, grad) in values {
            let (dirs, leaf) = name.split_once('.').unwrap();
            let var = (vs.root() / dirs).zeros(leaf, &[grad.len() as i64]);
            loss += (&var * Tensor::from_slice(grad)).sum(Kind::Float);
        }
        let _ = vs.root().zeros_no_train("buffer", &[3]);
        loss.backward();
        vs
    }

    fn grad(vs: &VarStore, name: &str) -> Vec<f32> {
        Vec::<f32>::try_from(vs.variables()[name].grad()).unwrap()
    }

    #[test]
    fn clips_to_max_norm_and_returns_the_norm_before() {
        // Global norm of [3, 4] and [12] is 13.
        let vs = store_with_grads(&[("a.weight", &[3.0, 4.0]), ("b.bias", &[12.0])]);
        let norm = clip_grad_norm(&vs, 1.0);
        assert!((norm - 13.0).abs() < 1e-5, "{norm}");
        let coefficient = 1.0 / (13.0 + 1e-6);
        let a = grad(&vs, "a.weight");
        assert!((f64::from(a[0]) - 3.0 * coefficient).abs() < 1e-6);
        assert!((f64::from(a[1]) - 4.0 * coefficient).abs() < 1e-6);
        assert!((global_grad_norm(&vs) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn small_norms_are_left_alone() {
        let vs = store_with_grads(&[("a.weight", &[0.3, 0.4])]);
        let norm = clip_grad_norm(&vs, 1.0);
        assert!((norm - 0.5).abs() < 1e-6);
        assert_eq!(grad(&vs, "a.weight"), vec![0.3, 0.4]);
        assert!((clip_grad_norm(&vs, f64::INFINITY) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn no_gradients_means_zero() {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().zeros("w", &[2]);
        assert_eq!(clip_grad_norm(&vs, 1.0), 0.0);
        assert_eq!(global_grad_norm(&vs), 0.0);
    }

    #[test]
    fn non_finite_gradients_give_a_non_finite_norm() {
        let vs = store_with_grads(&[("a.weight", &[f32::INFINITY, 1.0])]);
        assert!(!clip_grad_norm(&vs, 1.0).is_finite());
    }
}
