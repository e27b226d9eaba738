//! `training.unpad` on a GPU, run by scripts/gpu-check (`--ignored cuda_tests`): a tiny BERT
//! and a tiny ModernBERT trained 80 steps in bf16 through the run's step with
//! FlashAttention's varlen kernel (the window in the kernel for ModernBERT's local layers),
//! then compared with the padded forward sequence by sequence on a batch of 1- to
//! 128-token documents, and perturbed: run/unpad_check.rs says what and why. Without a
//! CUDA GPU these tests fail (they are `#[ignore]`d, so only a run that asks for them sees
//! that), never pass.

use tch::Device;

use super::config::Precision;
use super::open::unpadded_attention;
use super::precision::ForwardPrecision;
use super::unpad_check::{Tolerance, assert_sound, compare, config, describe, fresh_model, train};
use crate::model::UnpaddedAttention;

fn cuda() -> Device {
    assert!(
        tch::Cuda::is_available(),
        "run::cuda_tests need a CUDA GPU: this machine has none (scripts/gpu-check runs them \
         on one)"
    );
    Device::Cuda(0)
}

/// bf16 rounds each matmul input to 8 bits of mantissa (relative 2^-9); two attention
/// kernels (varlen FlashAttention against SDPA on the padded batch) and the layers after
/// them round differently, which the logits of a tiny model carry as a few percent of
/// their largest magnitude at most (the fp32 comparison beside it in the log shows each
/// side's share; network/cuda_tests.rs bounds bf16 logits by 5% too). The gradients of a
/// trained, confident model are small sums of such rounded terms, so they get twice that;
/// a backward that mixed sequences or dropped rows would be off by the gradient itself.
/// Attention across sequences, the fault this hunts, is caught bit for bit by the
/// perturbation instead.
const BF16: Tolerance = Tolerance {
    logits: 0.05,
    gradients: 0.1,
};

fn check(model_type: &str, expected: UnpaddedAttention) {
    let device = cuda();
    let config = config(model_type);
    let precision = ForwardPrecision::new(Precision::Bf16, device);
    let attention = unpadded_attention(&config, precision);
    assert_eq!(
        attention, expected,
        "{model_type}: the run would not take FlashAttention's varlen kernel on this GPU \
         (compute capability 8.0 or newer, bf16, head size 64)"
    );
    let (vs, model) = fresh_model(&config, device);
    let losses = train(&vs, &model, precision, Some(attention));
    let report = compare(&vs, &model, precision, attention);
    describe(
        &format!("{model_type} on cuda, bf16"),
        losses.0,
        losses.1,
        &report,
    );
    assert_sound(model_type, losses, &report, BF16);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_bert_varlen_after_training_matches_padded_per_sequence_and_never_crosses_sequences() {
    check("bert", UnpaddedAttention::Varlen);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_modernbert_windowed_varlen_after_training_matches_padded_per_sequence_and_never_crosses_sequences()
 {
    check("modernbert", UnpaddedAttention::WindowedVarlen);
}
