//! AdamW (Loshchilov & Hutter 2019) with state this crate owns.
//!
//! The update is `torch.optim.AdamW`'s single-tensor path (torch/optim/adam.py
//! `_single_tensor_adam` with `decoupled_weight_decay=True`, amsgrad and maximize off), the
//! path PyTorch takes for CPU tensors, op for op with the same libtorch kernels, so CPU
//! results match PyTorch's bit for bit. Parameter groups are those of the Hugging Face Trainer
//! (`create_optimizer`): decay on the names [`super::applies_weight_decay`] accepts, none on
//! the others.
//!
//! State layout: one [`Slot`] per trainable parameter, sorted by name, holding the moments and
//! the per-parameter step count (PyTorch counts steps per parameter: a parameter without a
//! gradient is skipped and its count stays behind). The moments are plain tensors of the
//! parameter's shape; the roadmap's flat buffers can make them views into one buffer per
//! (device, dtype, group) without changing this API or the file format.

use std::path::Path;

use mlm_torch_ext::foreach::LearningRate;
use tch::Tensor;
use tch::nn::VarStore;

use super::state_file;
use super::{AdamWConfig, applies_weight_decay};
use crate::error::TrainError;
use crate::model::trainable_named_variables;

/// Optimizer state of one parameter.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) param: Tensor,
    pub(super) exp_avg: Tensor,
    pub(super) exp_avg_sq: Tensor,
    pub(super) decay: bool,
    /// Updates this parameter has received (`state["step"]` in PyTorch).
    pub(super) step: u64,
    /// `step` as the f32 scalar tensor on the parameter's device that the fused kernel reads
    /// and increments; made from `step` on first use and dropped when the state is loaded.
    pub(super) step_tensor: Option<Tensor>,
}

impl Slot {
    /// The updates received: the device counter's when the fused kernel keeps one (it skips
    /// steps on the device when told of a non-finite gradient, unseen by `step`).
    pub(super) fn current_step(&self) -> u64 {
        match &self.step_tensor {
            Some(tensor) => tensor.double_value(&[]) as u64,
            None => self.step,
        }
    }
}

/// AdamW over the trainable variables of a [`VarStore`].
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    steps_taken: u64,
    fused: bool,
}

impl AdamW {
    /// Takes every variable of `vs` that requires a gradient, at construction time (build the
    /// model first; loading weights into it afterwards with `copy_` is fine). Weight decay
    /// applies to >= 2-D parameters whose names are not biases or norms (HF Trainer's
    /// `get_decay_parameter_names`). The moments start at zero on each parameter's device.
    pub fn new(vs: &VarStore, config: AdamWConfig) -> Self {
        let named = trainable_named_variables(vs);
        let slots = tch::no_grad(|| {
            named
                .into_iter()
                .map(|(name, param)| Slot {
                    decay: applies_weight_decay(&name, param.dim()),
                    exp_avg: param.zeros_like(),
                    exp_avg_sq: param.zeros_like(),
                    name,
                    param,
                    step: 0,
                    step_tensor: None,
                })
                .collect()
        });
        Self {
            config,
            slots,
            steps_taken: 0,
            fused: false,
        }
    }

    /// Runs the update with PyTorch's fused multi-tensor kernel (`torch.optim.AdamW(fused=True)`,
    /// Hugging Face's default `adamw_torch_fused`): one launch per parameter group instead of
    /// about ten per parameter. Same state and file format; results differ from the
    /// single-tensor path only by rounding (the kernel fuses the arithmetic).
    pub fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
    }

    pub fn is_fused(&self) -> bool {
        self.fused
    }

    /// One update of every parameter that has a gradient, with learning rate `lr` (from the
    /// schedule: `schedule.lr_at(self.steps_taken())`). Parameters without a gradient are
    /// skipped, as in PyTorch.
    pub fn step(&mut self, lr: f64) {
        self.step_unless(lr, None);
    }

    /// [`AdamW::step`], skipped when `found_inf` (a 1-element f32 tensor on the parameters'
    /// device, `GradScaler`'s flag) holds 1: the fused kernel decides on the device, without
    /// waiting for it; the single-tensor path reads the flag on the host. A skipped step
    /// changes no parameter, moment or per-parameter step count (`steps_taken` still counts it,
    /// as Hugging Face's `global_step` does).
    pub fn step_unless(&mut self, lr: f64, found_inf: Option<&Tensor>) {
        if self.fused {
            self.queue_fused(LearningRate::Value(lr), found_inf);
            self.steps_taken += 1;
            return;
        }
        self.steps_taken += 1;
        if found_inf.is_some_and(|flag| flag.double_value(&[0]) != 0.0) {
            return;
        }
        let AdamWConfig {
            beta1,
            beta2,
            epsilon,
            weight_decay,
            ..
        } = self.config;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                slot.step += 1;
                let decay = if slot.decay { weight_decay } else { 0.0 };
                if decay != 0.0 {
                    let _ = slot.param.g_mul_scalar_(1.0 - lr * decay);
                }
                let _ = slot.exp_avg.lerp_(&grad, 1.0 - beta1);
                // PyTorch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2). tch's
                // addcmul_ has no `value`; the CPU kernel computes self + (value * t1) * t2,
                // so pre-scaling t1 by value (then value 1) rounds identically.
                let _ = slot.exp_avg_sq.g_mul_scalar_(beta2);
                let _ = slot.exp_avg_sq.addcmul_(&(&grad * (1.0 - beta2)), &grad);
                // Python floats: bias corrections in f64 with the same pow as CPython.
                let step = slot.step as f64;
                let bias_correction1 = 1.0 - beta1.powf(step);
                let bias_correction2 = 1.0 - beta2.powf(step);
                let step_size = lr / bias_correction1;
                let bias_correction2_sqrt = bias_correction2.powf(0.5);
                let mut denom = slot.exp_avg_sq.sqrt() / bias_correction2_sqrt;
                let _ = denom.g_add_scalar_(epsilon);
                // param.addcdiv_(exp_avg, denom, value=-step_size): self + (value * t1) / t2.
                let _ = slot.param.addcdiv_(&(&slot.exp_avg * -step_size), &denom);
            }
        });
    }

    /// The fused update reading its learning rate from `lr` (a 0-dim tensor: f32 on a CUDA
    /// device, f64 on the CPU) when the kernel runs, without counting the step: the body of
    /// a captured CUDA graph, queued once at capture and run at every replay. The caller
    /// counts each real step with [`AdamW::count_step`]. Every parameter's step counter must
    /// exist before capture (one eager step makes them). Fused optimizers only.
    pub fn queue_update(&mut self, lr: &Tensor, found_inf: Option<&Tensor>) {
        assert!(self.fused, "queue_update needs the fused optimizer");
        self.queue_fused(LearningRate::Tensor(lr), found_inf);
    }

    /// Counts a step whose update [`AdamW::queue_update`] queued (or a graph replayed).
    pub fn count_step(&mut self) {
        self.steps_taken += 1;
    }

    fn queue_fused(&mut self, lr: LearningRate<'_>, found_inf: Option<&Tensor>) {
        let config = self.config;
        tch::no_grad(|| {
            for decay in [true, false] {
                let mut grads = Vec::new();
                let mut group = Vec::new();
                for slot in self.slots.iter_mut().filter(|s| s.decay == decay) {
                    let grad = slot.param.grad();
                    if !grad.defined() {
                        continue;
                    }
                    if slot.step_tensor.is_none() {
                        let step = Tensor::from(slot.step as f32).to_device(slot.param.device());
                        slot.step_tensor = Some(step);
                    }
                    slot.step += 1;
                    grads.push(grad);
                    group.push(&*slot);
                }
                if group.is_empty() {
                    continue;
                }
                let params: Vec<&Tensor> = group.iter().map(|s| &s.param).collect();
                let exp_avgs: Vec<&Tensor> = group.iter().map(|s| &s.exp_avg).collect();
                let exp_avg_sqs: Vec<&Tensor> = group.iter().map(|s| &s.exp_avg_sq).collect();
                let steps: Vec<&Tensor> = group
                    .iter()
                    .map(|s| s.step_tensor.as_ref().expect("made above"))
                    .collect();
                let grads: Vec<&Tensor> = grads.iter().collect();
                let tensors = mlm_torch_ext::foreach::AdamWTensors {
                    params: &params,
                    grads: &grads,
                    exp_avgs: &exp_avgs,
                    exp_avg_sqs: &exp_avg_sqs,
                    steps: &steps,
                };
                let hyper = mlm_torch_ext::foreach::AdamWStep {
                    lr,
                    beta1: config.beta1,
                    beta2: config.beta2,
                    weight_decay: if decay { config.weight_decay } else { 0.0 },
                    eps: config.epsilon,
                };
                // Like the single-tensor path's in-place ops, a libtorch failure here (e.g. CUDA
                // out of memory) is not recoverable mid-update.
                mlm_torch_ext::foreach::fused_adamw(&tensors, hyper, found_inf)
                    .unwrap_or_else(|e| panic!("fused AdamW step failed: {e}"));
            }
        });
    }

    /// Zeroes the gradients of the optimized parameters (tch keeps them allocated, PyTorch's
    /// `set_to_none=False`; the same numbers whenever every parameter gets a gradient each
    /// step, which is the case for the MLM loss).
    pub fn zero_grad(&mut self) {
        // In place, as torch.optim.Optimizer.zero_grad(set_to_none=False) for gradients
        // without a graph: no `detach_` (tch's `Tensor::zero_grad`), which libtorch refuses
        // on DDP's gradients, views into the Reducer's buckets.
        // One multi-tensor kernel (`_foreach_zero_`) instead of a launch per parameter; storage
        // is kept, which a captured CUDA graph accumulating into the gradients relies on.
        let _no_grad = tch::no_grad_guard();
        let grads: Vec<Tensor> = self
            .slots
            .iter()
            .map(|slot| slot.param.grad())
            .filter(Tensor::defined)
            .collect();
        let grads: Vec<&Tensor> = grads.iter().collect();
        mlm_torch_ext::foreach::zero(&grads)
            .unwrap_or_else(|e| panic!("zeroing the gradients failed: {e}"));
    }

    /// Optimizer steps taken (restored by [`AdamW::load`]); the Hugging Face `global_step`.
    pub fn steps_taken(&self) -> u64 {
        self.steps_taken
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Names of the optimized parameters, sorted, with whether each gets weight decay.
    pub fn parameters(&self) -> impl Iterator<Item = (&str, bool)> {
        self.slots.iter().map(|s| (s.name.as_str(), s.decay))
    }

    /// The first and second moments of a parameter (for inspection and tests).
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        self.slot(name).map(|s| (&s.exp_avg, &s.exp_avg_sq))
    }

    /// Updates a parameter has received (PyTorch's per-parameter `state["step"]`).
    pub fn param_steps(&self, name: &str) -> Option<u64> {
        self.slot(name).map(Slot::current_step)
    }

    /// Writes the state to `path` (`optimizer.safetensors`): tensors `exp_avg.<param>` and
    /// `exp_avg_sq.<param>`, metadata with the step counts and the config. The file is synced
    /// to disk before this returns.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        state_file::write(path, &self.config, self.steps_taken, &self.slots)
    }

    /// Restores the state written by [`AdamW::save`]. The file must hold exactly this
    /// optimizer's parameters with the same shapes and dtypes; otherwise the error names the
    /// first parameter that differs and nothing is changed. The hyper-parameters stay those
    /// this optimizer was built with (a changed config is the caller's decision).
    pub fn load(&mut self, path: &Path) -> Result<(), TrainError> {
        self.steps_taken = state_file::load_into(path, &mut self.slots)?;
        for slot in &mut self.slots {
            slot.step_tensor = None;
        }
        Ok(())
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.slots[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, nn};

    /// The path and leaf of a dotted name (tch composes names from path components).
    fn at<'a>(vs: &'a VarStore, name: &'a str) -> (nn::Path<'a>, &'a str) {
        let (dirs, leaf) = name.rsplit_once('.').unwrap_or(("", name));
        let path = dirs
            .split('.')
            .filter(|c| !c.is_empty())
            .fold(vs.root(), |p, c| p / c);
        (path, leaf)
    }

    fn var(vs: &VarStore, name: &str, value: &Tensor) {
        let (path, leaf) = at(vs, name);
        let _ = path.var_copy(leaf, value);
    }

    fn zeros(vs: &VarStore, name: &str, dims: &[i64]) {
        let (path, leaf) = at(vs, name);
        let _ = path.zeros(leaf, dims);
    }

    /// A VarStore with hand-named variables (no model module needed).
    fn store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let weight = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.25, 1.5, -0.75]).view([2, 3]);
        var(&vs, "layer.weight", &weight);
        var(&vs, "layer.bias", &Tensor::from_slice(&[0.1f32, -0.2]));
        var(&vs, "LayerNorm.weight", &Tensor::from_slice(&[1.0f32, 1.0]));
        let _ = vs.root().zeros_no_train("buffer", &[2]);
        vs
    }

    fn backward(vs: &VarStore, scale: f64) {
        let vars = vs.variables();
        let loss = (&vars["layer.weight"] * scale).square().sum(Kind::Float)
            + (&vars["layer.bias"] * 3.0).sum(Kind::Float)
            + (&vars["LayerNorm.weight"] * -2.0).sum(Kind::Float);
        loss.backward();
    }

    #[test]
    fn groups_by_name_and_ndim_and_skips_buffers() {
        let vs = store();
        let opt = AdamW::new(&vs, AdamWConfig::default());
        let params: Vec<(&str, bool)> = opt.parameters().collect();
        assert_eq!(
            params,
            vec![
                ("LayerNorm.weight", false),
                ("layer.bias", false),
                ("layer.weight", true)
            ]
        );
    }

    #[test]
    fn first_step_is_sign_times_lr_plus_decay() {
        // After one step Adam moves each coordinate by lr * g / (|g| + eps') = ~lr * sign(g).
        let vs = store();
        let config = AdamWConfig {
            weight_decay: 0.1,
            epsilon: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(&vs, config);
        let before = vs.variables()["layer.weight"].copy();
        backward(&vs, 1.0);
        opt.step(0.01);
        let after = &vs.variables()["layer.weight"];
        let expected = &before * (1.0 - 0.01 * 0.1) - before.sign() * 0.01;
        let diff = (after - expected).abs().max().double_value(&[]);
        assert!(diff < 1e-7, "diff {diff}");
        // No decay on the bias: it moves by exactly -lr * sign(3).
        let bias = vs.variables()["layer.bias"].copy();
        let expected_bias = Tensor::from_slice(&[0.1f32 - 0.01, -0.2 - 0.01]);
        assert!(bias.allclose(&expected_bias, 1e-6, 1e-7, false));
        assert_eq!(opt.steps_taken(), 1);
        assert_eq!(opt.param_steps("layer.weight"), Some(1));
    }

    #[test]
    fn parameters_without_gradients_are_skipped() {
        let vs = store();
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        let vars = vs.variables();
        vars["layer.weight"].sum(Kind::Float).backward();
        let ln_before = vars["LayerNorm.weight"].copy();
        opt.step(0.1);
        assert!(vars["LayerNorm.weight"].equal(&ln_before));
        assert_eq!(opt.param_steps("LayerNorm.weight"), Some(0));
        assert_eq!(opt.param_steps("layer.weight"), Some(1));
    }

    #[test]
    fn zero_grad_clears_gradients() {
        let vs = store();
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        backward(&vs, 1.0);
        opt.zero_grad();
        let grad = vs.variables()["layer.weight"].grad();
        assert_eq!(grad.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mlm-adamw-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn save_load_is_bit_identical_and_resumes_exactly() {
        let dir = scratch("resume");
        let path = dir.join("optimizer.safetensors");
        let config = AdamWConfig {
            weight_decay: 0.05,
            ..AdamWConfig::default()
        };
        // Uninterrupted: 5 steps.
        let full = store();
        let mut opt_full = AdamW::new(&full, config);
        for step in 0..5 {
            opt_full.zero_grad();
            backward(&full, 1.0 + f64::from(step));
            opt_full.step(0.01);
        }
        // Interrupted after 3: save weights + state, restore into a fresh store, 2 more.
        let first = store();
        let mut opt_first = AdamW::new(&first, config);
        for step in 0..3 {
            opt_first.zero_grad();
            backward(&first, 1.0 + f64::from(step));
            opt_first.step(0.01);
        }
        opt_first.save(&path).unwrap();
        let mut second = store();
        second.copy(&first).unwrap();
        let mut opt_second = AdamW::new(&second, config);
        opt_second.load(&path).unwrap();
        assert_eq!(opt_second.steps_taken(), 3);
        for (name, _) in opt_first.parameters() {
            let (m1, v1) = opt_first.moments(name).unwrap();
            let (m2, v2) = opt_second.moments(name).unwrap();
            assert!(m1.equal(m2) && v1.equal(v2), "{name} differs after load");
            assert_eq!(opt_first.param_steps(name), opt_second.param_steps(name));
        }
        for step in 3..5 {
            opt_second.zero_grad();
            backward(&second, 1.0 + f64::from(step));
            opt_second.step(0.01);
        }
        let a = full.variables();
        let b = second.variables();
        for name in ["layer.weight", "layer.bias", "LayerNorm.weight"] {
            assert!(a[name].equal(&b[name]), "{name}: resumed run differs");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `steps` AdamW steps of a fresh store, fused or not, optionally saved and reloaded into
    /// a fresh optimizer after `reload_after` steps.
    fn run(fused: bool, steps: u32, reload_after: Option<u32>) -> VarStore {
        let config = AdamWConfig {
            weight_decay: 0.05,
            ..AdamWConfig::default()
        };
        let vs = store();
        let mut opt = AdamW::new(&vs, config);
        opt.set_fused(fused);
        for step in 0..steps {
            if reload_after == Some(step) {
                let dir = scratch(&format!("fused-{fused}-{step}"));
                let path = dir.join("optimizer.safetensors");
                opt.save(&path).unwrap();
                opt = AdamW::new(&vs, config);
                opt.set_fused(fused);
                opt.load(&path).unwrap();
                let _ = std::fs::remove_dir_all(&dir);
            }
            opt.zero_grad();
            backward(&vs, 1.0 + f64::from(step));
            opt.step(0.01);
        }
        assert_eq!(opt.steps_taken(), u64::from(steps));
        vs
    }

    #[test]
    fn fused_path_agrees_with_the_single_tensor_path_and_resumes_exactly() {
        let single = run(false, 5, None).variables();
        let fused = run(true, 5, None).variables();
        let resumed = run(true, 5, Some(3)).variables();
        for name in ["layer.weight", "layer.bias", "LayerNorm.weight"] {
            let diff = (&single[name] - &fused[name]).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{name}: fused differs by {diff}");
            assert!(
                fused[name].equal(&resumed[name]),
                "{name}: fused resume differs"
            );
        }
        // Decay reached the 2-D weight only, in both paths: the bias moved by its gradient alone.
        assert!(!single["layer.weight"].equal(&store().variables()["layer.weight"]));
    }

    #[test]
    fn load_rejects_another_model() {
        let dir = scratch("mismatch");
        let path = dir.join("optimizer.safetensors");
        let vs = store();
        let opt = AdamW::new(&vs, AdamWConfig::default());
        opt.save(&path).unwrap();

        // A parameter with another shape.
        let other = VarStore::new(Device::Cpu);
        zeros(&other, "layer.weight", &[3, 3]);
        zeros(&other, "layer.bias", &[2]);
        zeros(&other, "LayerNorm.weight", &[2]);
        let mut wrong_shape = AdamW::new(&other, AdamWConfig::default());
        let message = wrong_shape.load(&path).unwrap_err().to_string();
        assert!(
            message.contains("layer.weight") && message.contains("[3, 3]"),
            "{message}"
        );

        // A parameter the file lacks.
        let bigger = store();
        zeros(&bigger, "extra.weight", &[2, 2]);
        let mut missing = AdamW::new(&bigger, AdamWConfig::default());
        let message = missing.load(&path).unwrap_err().to_string();
        assert!(message.contains("extra.weight"), "{message}");

        // A file with a parameter the model lacks.
        let smaller = VarStore::new(Device::Cpu);
        zeros(&smaller, "layer.weight", &[2, 3]);
        let mut unexpected = AdamW::new(&smaller, AdamWConfig::default());
        let message = unexpected.load(&path).unwrap_err().to_string();
        assert!(
            message.contains("matches no trainable parameter"),
            "{message}"
        );
        assert_eq!(unexpected.steps_taken(), 0);

        // Not a safetensors file at all.
        std::fs::write(dir.join("junk.safetensors"), b"not a tensor file").unwrap();
        let mut fresh = AdamW::new(&store(), AdamWConfig::default());
        assert!(fresh.load(&dir.join("junk.safetensors")).is_err());
        assert!(fresh.load(&dir.join("absent.safetensors")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kind_is_preserved() {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[2, 2], nn::Init::Const(1.0));
        let opt = AdamW::new(&vs, AdamWConfig::default());
        assert_eq!(opt.moments("w").unwrap().0.kind(), Kind::Float);
    }
}
