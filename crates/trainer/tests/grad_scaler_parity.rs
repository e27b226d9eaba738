//! fp16 loss scaling against PyTorch (tests/python/grad_scaler_parity.py): our `GradScaler`
//! and fused AdamW, driven as the trainer drives them (scaled backward, unscale, clip, step
//! skipped on the device when a gradient overflowed, scale update), against
//! `torch.amp.GradScaler` with its defaults around `torch.optim.AdamW(fused=True)`, as
//! `Trainer(fp16=True)` runs them. Steps 2 and 4 overflow (inf, NaN): both sides must skip
//! them, halve the scale, reset the growth tracker, and agree on every parameter after every
//! step. Needs the project's Python venv: `scripts/setup`.

use mlm_trainer::optim::{AdamW, AdamWConfig, GradScaler, clip_grad_norm_device, gradients};
use serde_json::{Value, json};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const INIT: [f32; 3] = [0.5, -1.0, 2.0];
const LR: f64 = 1e-2;
const MAX_NORM: f64 = 1.0;

fn grads() -> Vec<[f32; 3]> {
    vec![
        [0.3, -0.2, 0.1],
        [f32::INFINITY, 1.0, 0.0],
        [2.0, 0.5, -1.5],
        [f32::NAN, 0.1, 0.2],
        [-0.4, 0.9, 0.05],
        [0.01, 0.02, -0.03],
    ]
}

fn json_number(value: f32) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        json!(value.to_string())
    }
}

fn reference() -> Vec<Value> {
    let spec = json!({
        "init": INIT,
        "grads": grads().iter().map(|g| g.iter().map(|&v| json_number(v)).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "lr": LR,
        "max_norm": MAX_NORM,
    });
    let dir = std::env::temp_dir().join(format!("grad-scaler-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spec.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let output = mlm_pyref::run("grad_scaler_parity.py", [&path]);
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn fp16_loss_scaling_skips_overflowing_steps_as_pytorch_does() {
    let expected = reference();
    let vs = VarStore::new(Device::Cpu);
    // 1 x 3: a matrix, so weight decay applies (as to BERT's weights).
    let param = vs
        .root()
        .var_copy("weight", &Tensor::from_slice(&INIT).view([1, 3]));
    let mut optimizer = AdamW::new(
        &vs,
        AdamWConfig {
            learning_rate: LR,
            epsilon: 1e-6,
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
    );
    optimizer.set_fused(true);
    let mut scaler = GradScaler::new(Device::Cpu);
    for (step, (grad, want)) in grads().iter().zip(&expected).enumerate() {
        optimizer.zero_grad();
        let loss = (&param * Tensor::from_slice(grad).view([1, 3])).sum(Kind::Float);
        scaler.scale(&loss).backward();
        let grads = gradients(&vs);
        let refs: Vec<&Tensor> = grads.iter().collect();
        let found_inf = scaler.unscale(&refs).unwrap().shallow_clone();
        clip_grad_norm_device(&vs, MAX_NORM).unwrap();
        optimizer.step_unless(LR, Some(&found_inf));
        scaler.update().unwrap();

        let ours = Vec::<f32>::try_from(param.flatten(0, -1)).unwrap();
        let theirs: Vec<f32> = serde_json::from_value(want["param"].clone()).unwrap();
        assert_eq!(ours, theirs, "parameters after step {step}");
        let state = scaler.state();
        assert_eq!(
            state.scale,
            want["scale"].as_f64().unwrap(),
            "scale after step {step}"
        );
        assert_eq!(
            state.growth_tracker,
            want["growth_tracker"].as_i64().unwrap(),
            "growth tracker after step {step}"
        );
    }
    // Two of six steps skipped: the parameter received four updates.
    assert_eq!(optimizer.param_steps("weight"), Some(4));
}
