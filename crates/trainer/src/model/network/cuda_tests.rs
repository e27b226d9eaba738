//! The CUDA paths of the model, run on a GPU machine (`--ignored cuda_`): the same weights
//! give the same logits, loss and gradients on CUDA as on the CPU in fp32; under bf16 autocast
//! the attention mask stays representable (no NaN from fully padded rows) and training is
//! finite. Shapes are chosen so that CUDA's fused SDPA kernels (not the math fallback) run.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::model::{
    export_hf_model, init_weights_like_hf, load_hf_dir, masked_lm_loss_sum, named_variables,
};

fn cuda() -> Device {
    assert!(tch::Cuda::is_available(), "these tests need a CUDA GPU");
    Device::Cuda(0)
}

/// head_dim 64: eligible for the fused (memory-efficient) attention kernels on CUDA.
fn config() -> EncoderConfig {
    EncoderConfig {
        vocab_size: 1009,
        hidden_size: 256,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 1024,
        max_position_embeddings: 128,
        initializer_range: 0.1,
        ..EncoderConfig::default()
    }
}

fn model_on(device: Device, config: &EncoderConfig) -> (VarStore, MaskedLanguageModel) {
    let vs = VarStore::new(device);
    let model = MaskedLanguageModel::new(&vs.root(), config);
    init_weights_like_hf(&vs, config, 17);
    (vs, model)
}

/// 4 rows of 128: full, half padded, one real token, all padding.
fn batch() -> (Tensor, Tensor, Tensor, Tensor) {
    let lengths = [128i64, 64, 1, 0];
    let ids = Tensor::randint_low(1, 1009, [4, 128], (Kind::Int64, Device::Cpu));
    let positions = Tensor::arange(128, (Kind::Int64, Device::Cpu)).view([1, 128]);
    let mask = positions
        .lt_tensor(&Tensor::from_slice(&lengths).view([4, 1]))
        .to_kind(Kind::Int64);
    let ids = ids * &mask;
    let masked = Tensor::from_slice(&[3i64, 40, 127, 130, 150, 191, 256]);
    let labels = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10, 11]);
    (ids, mask, masked, labels)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu).to_kind(Kind::Double)
        - b.to_device(Device::Cpu).to_kind(Kind::Double))
    .abs()
    .max()
    .double_value(&[])
}

fn all_finite(t: &Tensor) -> bool {
    bool::try_from(t.isfinite().all()).expect("a bool")
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_fp32_matches_cpu_forward_loss_and_gradients() {
    let device = cuda();
    let config = config();
    let (cpu_vs, cpu_model) = model_on(Device::Cpu, &config);
    let (gpu_vs, gpu_model) = model_on(device, &config);
    // The seeded initialisation is device-independent.
    for (name, tensor) in named_variables(&cpu_vs) {
        assert!(
            tensor.equal(&gpu_vs.variables()[&name].to_device(Device::Cpu)),
            "{name}"
        );
    }
    let (ids, mask, masked, labels) = batch();
    let cpu_logits = tch::no_grad(|| cpu_model.logits(&ids, &mask, false));
    let gpu_logits = tch::no_grad(|| gpu_model.logits(&ids.to(device), &mask.to(device), false));
    assert!(all_finite(&gpu_logits), "fully padded row gave NaN on CUDA");
    let per_row: Vec<f64> = (0..4)
        .map(|row| max_abs_diff(&cpu_logits.get(row), &gpu_logits.get(row)))
        .collect();
    eprintln!(
        "fp32 logits cpu vs cuda, max abs diff per row (full, half, one token, no token): {per_row:?}"
    );
    // Row 3 has no real token: its outputs are finite but arbitrary (which value a fused
    // kernel gives a row whose keys are all masked is its own business) and carry no label.
    assert!(per_row[..3].iter().all(|diff| *diff < 1e-4), "{per_row:?}");

    let cpu_loss = masked_lm_loss_sum(
        &cpu_model.masked_logits(&ids, &mask, &masked, false),
        &labels,
    );
    let gpu_loss = masked_lm_loss_sum(
        &gpu_model.masked_logits(&ids.to(device), &mask.to(device), &masked.to(device), false),
        &labels.to(device),
    );
    let loss_diff = (cpu_loss.double_value(&[]) - gpu_loss.double_value(&[])).abs();
    eprintln!(
        "fp32 loss cpu {} vs cuda {}: diff {loss_diff:e}",
        cpu_loss.double_value(&[]),
        gpu_loss.double_value(&[])
    );
    assert!(loss_diff < 1e-4);
    cpu_loss.backward();
    gpu_loss.backward();
    let gpu_variables = gpu_vs.variables();
    for (name, tensor) in named_variables(&cpu_vs) {
        let (cpu_grad, gpu_grad) = (tensor.grad(), gpu_variables[&name].grad());
        assert_eq!(cpu_grad.defined(), gpu_grad.defined(), "{name}");
        if cpu_grad.defined() {
            // Absolute floor: some gradients are zero in exact arithmetic (the key bias: softmax
            // ignores a per-row constant) and are rounding noise on both devices.
            let scale = cpu_grad.abs().max().double_value(&[]);
            let diff = max_abs_diff(&cpu_grad, &gpu_grad);
            assert!(
                diff <= 1e-3 * scale + 1e-5,
                "{name}: grad diff {diff:e} (max |grad| {scale:e})"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_bf16_autocast_trains_with_finite_values_close_to_fp32() {
    let device = cuda();
    let config = config();
    let (vs, model) = model_on(device, &config);
    let (ids, mask, masked, labels) = batch();
    let (ids, mask, masked, labels) = (
        ids.to(device),
        mask.to(device),
        masked.to(device),
        labels.to(device),
    );
    let fp32 = tch::no_grad(|| model.logits(&ids, &mask, false));
    let (bf16, loss) = {
        let _autocast =
            mlm_torch_ext::Autocast::new(mlm_torch_ext::AutocastDevice::Cuda, Kind::BFloat16)
                .unwrap();
        let bf16 = tch::no_grad(|| model.logits(&ids, &mask, false));
        let logits = model.masked_logits(&ids, &mask, &masked, true);
        assert_eq!(logits.kind(), Kind::BFloat16, "autocast reached the head");
        (bf16, masked_lm_loss_sum(&logits, &labels))
    };
    assert!(
        all_finite(&bf16),
        "bf16 logits (fully padded row included) must be finite"
    );
    let scale = fp32.abs().max().double_value(&[]);
    let diff = max_abs_diff(&fp32, &bf16);
    eprintln!("bf16 autocast vs fp32 logits: max abs diff {diff:e} (max |logit| {scale:.3})");
    assert!(diff < 0.05 * scale, "{diff}");
    assert_eq!(loss.kind(), Kind::Float);
    assert!(loss.double_value(&[]).is_finite());
    loss.backward();
    for (name, tensor) in named_variables(&vs) {
        let grad = tensor.grad();
        if grad.defined() {
            assert_eq!(
                grad.kind(),
                Kind::Float,
                "{name}: fp32 master weights get fp32 grads"
            );
            assert!(all_finite(&grad), "{name}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_model_exports_and_loads_into_a_cpu_model() {
    let device = cuda();
    let config = config();
    let (gpu_vs, _) = model_on(device, &config);
    let dir = std::env::temp_dir().join(format!("mlm-cuda-export-{}", std::process::id()));
    export_hf_model(&gpu_vs, &config, &dir).unwrap();
    let mut cpu_vs = VarStore::new(Device::Cpu);
    let _model = MaskedLanguageModel::new(&cpu_vs.root(), &config);
    let report = load_hf_dir(&dir, &mut cpu_vs).unwrap();
    assert!(report.initialised.is_empty(), "{}", report.summary());
    let mut gpu_to_cuda = VarStore::new(device);
    let _model = MaskedLanguageModel::new(&gpu_to_cuda.root(), &config);
    load_hf_dir(&dir, &mut gpu_to_cuda).unwrap();
    let (cpu, cuda) = (cpu_vs.variables(), gpu_to_cuda.variables());
    for (name, tensor) in named_variables(&gpu_vs) {
        assert!(tensor.to_device(Device::Cpu).equal(&cpu[&name]), "{name}");
        assert!(tensor.equal(&cuda[&name]), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A ModernBERT of head size 64 whose window (32 tokens each side) is shorter than the rows.
fn modernbert_config() -> EncoderConfig {
    let mut extra = serde_json::Map::new();
    extra.insert("local_attention".into(), 64.into());
    extra.insert("global_attn_every_n_layers".into(), 3.into());
    EncoderConfig {
        model_type: Some("modernbert".to_owned()),
        intermediate_size: 384,
        num_hidden_layers: 3,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        pad_token_id: Some(0),
        extra,
        ..config()
    }
}

/// ModernBERT unpadded on CUDA in bf16: FlashAttention's varlen kernel with the window in it
/// (`window_size_left = right = 32`) gives the masked logits of the padded forward (SDPA with
/// the window as a mask) and of the fp32 model, within bf16's rounding; and a global-only
/// model on the same weights gives other logits, so the
/// window matters on these rows.
#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_modernbert_varlen_with_the_window_matches_the_padded_attention() {
    use crate::model::{TokenLayout, cumulative_lengths, index_tensor, real_positions, rows_among};
    let device = cuda();
    let config = modernbert_config();
    let (_vs, model) = model_on(device, &config);
    let (ids, mask, masked, _) = batch();
    let mask_values = Vec::<i64>::try_from(mask.reshape([-1])).unwrap();
    let real = real_positions(&mask_values);
    let rows = rows_among(&real, &Vec::<i64>::try_from(&masked).unwrap()).unwrap();
    let (cumulative, longest) = cumulative_lengths(&mask_values, 128);
    let layout = |mask: &Tensor| {
        TokenLayout::new(index_tensor(&real).to(device), mask)
            .with_varlen(Tensor::from_slice(&cumulative).to(device), longest)
    };
    let (ids, mask, masked) = (ids.to(device), mask.to(device), masked.to(device));
    let rows = index_tensor(&rows).to(device);
    let fp32 = tch::no_grad(|| model.masked_logits(&ids, &mask, &masked, false));
    let (padded, varlen) = {
        let _autocast =
            mlm_torch_ext::Autocast::new(mlm_torch_ext::AutocastDevice::Cuda, Kind::BFloat16)
                .unwrap();
        tch::no_grad(|| {
            (
                model.masked_logits(&ids, &mask, &masked, false),
                model
                    .masked_logits_unpadded(&ids, &layout(&mask), &rows, false)
                    .expect("the varlen kernel runs"),
            )
        })
    };
    let scale = fp32.abs().max().double_value(&[]);
    let (to_padded, to_fp32) = (max_abs_diff(&varlen, &padded), max_abs_diff(&varlen, &fp32));
    eprintln!(
        "modernbert varlen vs padded bf16: {to_padded:e}, vs fp32: {to_fp32:e} (max |logit| {scale:.3})"
    );
    assert!(to_padded < 0.05 * scale && to_fp32 < 0.05 * scale);

    let mut global_only = config;
    global_only
        .extra
        .insert("global_attn_every_n_layers".into(), 1.into());
    let (_wide_vs, wide) = model_on(device, &global_only);
    let unwindowed = tch::no_grad(|| wide.masked_logits(&ids, &mask, &masked, false));
    // Both fp32, the same weights (seeded by name): only the window differs.
    let moved = max_abs_diff(&unwindowed, &fp32);
    assert!(
        moved > 1e-3 * scale,
        "the window changes the logits: {moved}"
    );
}
