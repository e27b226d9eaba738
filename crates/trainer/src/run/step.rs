//! One optimizer step's forward and backward passes, separate from the loader and from
//! logging. The loss of a step is (sum of masked-token cross-entropy over all its
//! micro-batches and ranks) / (masked tokens of the whole step), so gradient accumulation
//! is exactly one big batch (DESIGN.md), unlike averaging per-micro-batch means.

use mlm_masking::Batch;
use tch::{Device, Kind, Tensor};

use crate::model::{BertForMaskedLM, masked_lm_loss_sum};

/// A collated batch on the device.
pub struct BatchTensors {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub masked_positions: Tensor,
    pub masked_labels: Tensor,
    pub masked_is_mask_token: Tensor,
}

pub fn batch_tensors(batch: &Batch, device: Device) -> BatchTensors {
    let shape = [batch.batch_size as i64, batch.seq_len as i64];
    let is_mask: Vec<i64> = batch
        .masked_is_mask_token
        .iter()
        .map(|&m| i64::from(m))
        .collect();
    BatchTensors {
        input_ids: Tensor::from_slice(&batch.input_ids)
            .view(shape)
            .to_device(device),
        attention_mask: Tensor::from_slice(&batch.attention_mask)
            .view(shape)
            .to_device(device),
        masked_positions: Tensor::from_slice(&batch.masked_positions).to_device(device),
        masked_labels: Tensor::from_slice(&batch.masked_labels).to_device(device),
        masked_is_mask_token: Tensor::from_slice(&is_mask)
            .to_kind(Kind::Bool)
            .to_device(device),
    }
}

/// The dropout seed of (seed, step, rank, micro-batch): libtorch's generator is reseeded
/// with it before each forward, so a resumed run needs no saved RNG state (tch cannot export
/// the generator's state). SplitMix64 finaliser over the packed inputs.
pub fn dropout_seed(seed: u64, step: u64, rank: u32, micro_batch: usize) -> i64 {
    let mut x = seed ^ 0x6d6c_6d2d_7472_6169;
    for word in [step, u64::from(rank), micro_batch as u64] {
        x = splitmix64(x ^ word);
    }
    // manual_seed takes an i64; keep it non-negative so logs read naturally.
    (x >> 1) as i64
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the forward/backward passes of a step need besides the model.
pub struct StepContext<'a> {
    pub device: Device,
    pub seed: u64,
    pub step: u64,
    pub rank: u32,
    /// Masked tokens of the whole step over all ranks (the loss normaliser).
    pub normaliser: f64,
    pub autocast: &'a dyn Fn(&mut dyn FnMut()),
}

/// Runs forward and backward over a step's micro-batches, accumulating gradients. Returns
/// the step's summed cross-entropy (f64) for logging; the caller checks it is finite.
pub fn forward_backward(model: &BertForMaskedLM, batches: &[Batch], ctx: &StepContext<'_>) -> f64 {
    let mut loss_sum = 0.0;
    for (micro, batch) in batches.iter().enumerate() {
        if batch.masked_tokens() == 0 {
            continue;
        }
        tch::manual_seed(dropout_seed(ctx.seed, ctx.step, ctx.rank, micro));
        let tensors = batch_tensors(batch, ctx.device);
        let mut sum = None;
        (ctx.autocast)(&mut || {
            let logits = model.masked_logits(
                &tensors.input_ids,
                &tensors.attention_mask,
                &tensors.masked_positions,
                true,
            );
            sum = Some(masked_lm_loss_sum(
                &logits.to_kind(Kind::Float),
                &tensors.masked_labels,
            ));
        });
        let sum = sum.expect("forward ran");
        (&sum / ctx.normaliser).backward();
        loss_sum += sum.double_value(&[]);
    }
    loss_sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_seeds_differ_by_every_coordinate_and_repeat_exactly() {
        let base = dropout_seed(1, 10, 0, 0);
        assert_eq!(base, dropout_seed(1, 10, 0, 0));
        for other in [
            dropout_seed(2, 10, 0, 0),
            dropout_seed(1, 11, 0, 0),
            dropout_seed(1, 10, 1, 0),
            dropout_seed(1, 10, 0, 1),
        ] {
            assert_ne!(base, other);
        }
        assert!(base >= 0);
    }
}
