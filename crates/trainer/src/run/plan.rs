//! The memory estimate the plan prints (the run's and `--dry-run`'s).

use super::data::BatchPlan;
use super::precision::ForwardPrecision;

/// A rough peak-memory estimate for the plan: weights, gradients and two AdamW moments
/// (16 bytes per parameter in fp32, 32 in fp64), plus the activations the family's cost
/// counts per sequence (16-bit; doubled at fp32), plus the MLM head's logits.
pub(super) fn estimate_memory(
    config: &crate::model::EncoderConfig,
    plan: &BatchPlan,
    max_seq_len: usize,
    precision: ForwardPrecision,
) -> u64 {
    let cost = config.cost(max_seq_len);
    let s = max_seq_len as f64;
    let b = plan.micro_batch as f64;
    let weight_bytes = precision.weight_kind().elt_size_in_bytes() as f64;
    // Activations are 16-bit in bf16/fp16 (the estimate's unit), else the weights' width.
    let activation_factor = if precision.is_half() {
        1.0
    } else {
        weight_bytes / 2.0
    };
    let activations = b * cost.activation_bytes_per_sequence * activation_factor;
    let head = 0.2 * s * b * config.vocab_size as f64 * weight_bytes * 2.0;
    (4.0 * weight_bytes * cost.parameters as f64 + activations + head) as u64
}
