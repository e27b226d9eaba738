//! Parity of the optimizer side with PyTorch and transformers (tests/python/adamw_parity.py):
//! AdamW steps against `torch.optim.AdamW` with the Hugging Face Trainer's parameter groups
//! (decay names from `Trainer.get_decay_parameter_names`), `clip_grad_norm` against
//! `torch.nn.utils.clip_grad_norm_`, and every schedule against transformers'
//! `get_*_schedule*` functions stepped through `LambdaLR` as the Trainer steps them.
//!
//! The Rust side writes parameters and gradients as safetensors into a temp dir, runs the
//! script once (shared by all tests here), and reads its results back.
//! Needs the project's Python venv (`.venv/bin/python` with torch + transformers): `scripts/setup`.

// The parity helpers report the differences they compare (`--nocapture` shows them).
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use mlm_trainer::optim::{AdamW, AdamWConfig, clip_grad_norm};
use mlm_trainer::schedule::{RampShape, Schedule, ScheduleKind};
use serde_json::{Value, json};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 7;
const HIDDEN_IN: i64 = 4;
const HIDDEN: i64 = 5;
/// Gradient scale of each AdamW step: ordinary, tiny (epsilon matters), large, moderate.
const GRAD_SCALES: [f32; 4] = [1.0, 1e-3, 5.0, 0.3];
const CLIP_MAX_NORMS: [f64; 3] = [1.0, 0.05, 1e6];

/// Parameter names and shapes of the Python `Tiny` module (BERT-like names).
fn parameters() -> Vec<(&'static str, Vec<i64>)> {
    vec![
        ("cls.predictions.bias", vec![VOCAB]),
        ("embeddings.word_embeddings.weight", vec![VOCAB, HIDDEN_IN]),
        ("encoder.layer.0.LayerNorm.bias", vec![HIDDEN]),
        ("encoder.layer.0.LayerNorm.weight", vec![HIDDEN]),
        ("encoder.layer.0.dense.bias", vec![HIDDEN]),
        ("encoder.layer.0.dense.weight", vec![HIDDEN, HIDDEN_IN]),
    ]
}

/// This parameter never gets a gradient (PyTorch then skips it and keeps no state).
const NO_GRAD: &str = "cls.predictions.bias";

fn adamw_config() -> AdamWConfig {
    AdamWConfig {
        learning_rate: 1e-2,
        beta1: 0.9,
        beta2: 0.98,
        epsilon: 1e-6,
        weight_decay: 0.1,
    }
}

/// The learning rate of each AdamW step; the second is 0 (as in a warmup's first step), so
/// a step that only moves the moments is covered too.
const STEP_LRS: [f64; 4] = [1e-2, 0.0, 5e-3, 2e-2];

fn schedules() -> Vec<Schedule> {
    let s = |kind, warmup_steps, total_steps, decay_steps, min_lr_ratio| Schedule {
        kind,
        peak_lr: 3e-4,
        warmup_steps,
        total_steps,
        decay_steps,
        min_lr_ratio,
        warmup_type: RampShape::Linear,
        decay_type: RampShape::Cosine,
    };
    // WSD with every warmup and decay shape (ModernBERT's recipe: 1-sqrt decay).
    let shaped = |warmup_type, decay_type| Schedule {
        warmup_type,
        decay_type,
        ..s(ScheduleKind::WarmupStableDecay, 5, 30, 12, 0.02)
    };
    use RampShape::{Cosine as CosineRamp, Linear as LinearRamp, OneMinusSqrt};
    use ScheduleKind::*;
    let mut shapes = Vec::new();
    for warmup_type in [LinearRamp, CosineRamp, OneMinusSqrt] {
        for decay_type in [LinearRamp, CosineRamp, OneMinusSqrt] {
            shapes.push(shaped(warmup_type, decay_type));
        }
    }
    shapes.push(Schedule {
        decay_type: OneMinusSqrt,
        ..s(WarmupStableDecay, 0, 9, 9, 0.0)
    });
    shapes
        .into_iter()
        .chain([
            s(Linear, 0, 10, 0, 0.0),
            s(Linear, 3, 17, 0, 0.0),
            s(Linear, 10, 10, 0, 0.0),
            s(Cosine, 0, 1, 0, 0.0),
            s(Cosine, 3, 17, 0, 0.0),
            s(Cosine, 4, 25, 0, 0.1),
            s(Constant, 0, 8, 0, 0.0),
            s(Constant, 5, 12, 0, 0.0),
            s(WarmupStableDecay, 3, 20, 6, 0.0),
            s(WarmupStableDecay, 4, 30, 10, 0.05),
            s(WarmupStableDecay, 0, 9, 9, 0.0),
        ])
        .collect()
}

/// Deterministic values in [-1, 1) (xorshift), independent of libtorch's generator.
struct Values(u64);

impl Values {
    fn tensor(&mut self, shape: &[i64], scale: f32) -> Tensor {
        let n: i64 = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_slice(&data).view(shape)
    }
}

/// The inputs both sides use.
struct Inputs {
    initial: Vec<(String, Tensor)>,
    /// grads[k] = gradient of each parameter (except NO_GRAD) at step k.
    grads: Vec<Vec<(String, Tensor)>>,
    clip: Vec<(String, Tensor)>,
}

fn inputs() -> Inputs {
    let mut values = Values(0x9E37_79B9_7F4A_7C15);
    let initial = parameters()
        .into_iter()
        .map(|(name, shape)| (name.to_string(), values.tensor(&shape, 1.0)))
        .collect();
    let grads = GRAD_SCALES
        .iter()
        .map(|&scale| {
            parameters()
                .into_iter()
                .filter(|(name, _)| *name != NO_GRAD)
                .map(|(name, shape)| (name.to_string(), values.tensor(&shape, scale)))
                .collect()
        })
        .collect();
    let clip = parameters()
        .into_iter()
        .map(|(name, shape)| (name.to_string(), values.tensor(&shape, 0.7)))
        .collect();
    Inputs {
        initial,
        grads,
        clip,
    }
}

/// What the Python side computed (tensors as plain shapes and values, so it can be shared
/// between the test threads).
struct Reference {
    tensors: HashMap<String, (Vec<i64>, Vec<f32>)>,
    report: Value,
}

fn run_python(dir: &Path) -> Reference {
    let inputs = inputs();
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (name, tensor) in &inputs.initial {
        named.push((format!("param.{name}"), tensor.shallow_clone()));
    }
    for (k, step) in inputs.grads.iter().enumerate() {
        for (name, tensor) in step {
            named.push((format!("grad.{k}.{name}"), tensor.shallow_clone()));
        }
    }
    for (name, tensor) in &inputs.clip {
        named.push((format!("clip.{name}"), tensor.shallow_clone()));
    }
    Tensor::write_safetensors(&named, dir.join("inputs.safetensors")).unwrap();
    let config = adamw_config();
    let spec = json!({
        "adamw": {
            "shapes": {"vocab": VOCAB, "hidden_in": HIDDEN_IN, "hidden": HIDDEN},
            "lrs": STEP_LRS,
            "beta1": config.beta1,
            "beta2": config.beta2,
            "epsilon": config.epsilon,
            "weight_decay": config.weight_decay,
        },
        "clip": {
            "clip_max_norms": CLIP_MAX_NORMS,
            "clip_order": parameters().iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        },
        "schedules": schedules().iter().map(|s| {
            let mut entry = serde_json::to_value(s).unwrap();
            entry["grid_steps"] = json!(s.total_steps + 6);
            entry
        }).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    mlm_pyref::run("adamw_parity.py", [dir, dir]);
    let tensors = Tensor::read_safetensors(dir.join("outputs.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(name, tensor)| {
            let values = Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap();
            (name, (tensor.size(), values))
        })
        .collect();
    let report = serde_json::from_str(
        &std::fs::read_to_string(dir.join("outputs.json")).expect("outputs.json"),
    )
    .expect("outputs.json is JSON");
    Reference { tensors, report }
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mlm-optim-parity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let reference = run_python(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        reference
    })
}

fn expected(name: &str) -> Tensor {
    let (shape, values) = reference()
        .tensors
        .get(name)
        .unwrap_or_else(|| panic!("the Python side wrote no `{name}`"));
    Tensor::from_slice(values).view(shape.as_slice())
}

/// A VarStore holding the initial parameters under their dotted names.
fn store() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    for (name, value) in inputs().initial {
        let (dirs, leaf) = name.rsplit_once('.').unwrap();
        let path = dirs.split('.').fold(vs.root(), |p, c| p / c);
        let _ = path.var_copy(leaf, &value);
    }
    vs
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_device(Device::Cpu) - b.to_device(Device::Cpu))
        .abs()
        .max()
        .double_value(&[])
}

/// Sets each parameter's gradient to exactly `grads` (d/dp sum(p * g) = g) and steps.
fn step(vs: &VarStore, optimizer: &mut AdamW, grads: &[(String, Tensor)], lr: f64) {
    optimizer.zero_grad();
    set_grads(vs, grads);
    optimizer.step(lr);
}

/// Backpropagates sum(p * g) over `grads`, leaving exactly g in each parameter's gradient.
fn set_grads(vs: &VarStore, grads: &[(String, Tensor)]) {
    let vars = vs.variables();
    let loss = grads
        .iter()
        .map(|(name, grad)| (&vars[name] * grad.to_device(vs.device())).sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, vs.device())), |acc, t| {
            acc + t
        });
    loss.backward();
}

/// Runs `steps` AdamW steps and checks the parameters after each against PyTorch.
fn check_adamw_steps(steps: usize) -> (VarStore, AdamW) {
    let vs = store();
    let mut optimizer = AdamW::new(&vs, adamw_config());
    let inputs = inputs();
    let mut worst = 0.0f64;
    for (k, (grads, lr)) in inputs.grads.iter().zip(STEP_LRS).take(steps).enumerate() {
        step(&vs, &mut optimizer, grads, lr);
        for (name, value) in vs.variables() {
            let diff = max_abs_diff(&value, &expected(&format!("after.{k}.{name}")));
            assert!(
                diff <= 1e-6,
                "step {k}: `{name}` differs from torch.optim.AdamW by {diff:e}"
            );
            worst = worst.max(diff);
        }
    }
    eprintln!("AdamW, {steps} step(s): max |ours - torch| = {worst:e}");
    (vs, optimizer)
}

#[test]
fn decay_groups_match_the_hf_trainer() {
    let vs = store();
    let optimizer = AdamW::new(&vs, adamw_config());
    let ours: Vec<&str> = optimizer
        .parameters()
        .filter(|(_, decay)| *decay)
        .map(|(name, _)| name)
        .collect();
    let theirs: Vec<&str> = reference().report["adamw"]["decay"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(
        ours,
        vec![
            "embeddings.word_embeddings.weight",
            "encoder.layer.0.dense.weight"
        ]
    );
}

#[test]
fn one_adamw_step_matches_torch() {
    check_adamw_steps(1);
}

#[test]
fn several_adamw_steps_match_torch() {
    let (_vs, optimizer) = check_adamw_steps(GRAD_SCALES.len());
    let steps = &reference().report["adamw"]["param_steps"];
    for (name, _) in parameters() {
        assert_eq!(
            optimizer.param_steps(name),
            steps[name].as_u64(),
            "step count of `{name}`"
        );
        if name == NO_GRAD {
            assert!(!reference().tensors.contains_key(&format!("exp_avg.{name}")));
            continue;
        }
        let (exp_avg, exp_avg_sq) = optimizer.moments(name).unwrap();
        let m = max_abs_diff(exp_avg, &expected(&format!("exp_avg.{name}")));
        let v = max_abs_diff(exp_avg_sq, &expected(&format!("exp_avg_sq.{name}")));
        assert!(
            m <= 1e-7 && v <= 1e-7,
            "`{name}` moments differ: {m:e} {v:e}"
        );
    }
}

#[test]
fn clip_grad_norm_matches_torch() {
    let torch_norms = reference().report["clip_norms"].as_array().unwrap();
    let inputs = inputs();
    for (index, max_norm) in CLIP_MAX_NORMS.iter().enumerate() {
        let vs = store();
        let vars = vs.variables();
        set_grads(&vs, &inputs.clip);
        let ours = clip_grad_norm(&vs, *max_norm);
        let theirs = torch_norms[index].as_f64().unwrap();
        assert_eq!(ours, theirs, "total norm with max_norm {max_norm}");
        for (name, value) in &vars {
            let diff = max_abs_diff(&value.grad(), &expected(&format!("clipped.{index}.{name}")));
            assert_eq!(
                diff, 0.0,
                "clipped gradient of `{name}` (max_norm {max_norm})"
            );
        }
    }
}

#[test]
fn schedules_match_transformers() {
    let all = reference().report["schedules"].as_array().unwrap();
    for (schedule, lrs) in schedules().iter().zip(all) {
        for (step, theirs) in lrs.as_array().unwrap().iter().enumerate() {
            let theirs = theirs.as_f64().unwrap();
            let ours = schedule.lr_at(step as u64);
            assert!(
                (ours - theirs).abs() <= 1e-15 * schedule.peak_lr,
                "{schedule:?} at step {step}: ours {ours}, transformers {theirs}"
            );
        }
    }
}
