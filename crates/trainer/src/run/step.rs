//! One optimizer step's forward and backward passes, separate from the loader and from
//! logging. The loss of a step is (sum of masked-token cross-entropy over all its
//! micro-batches and ranks) / (masked tokens of the whole step), so gradient accumulation
//! is exactly one big batch (DESIGN.md), unlike averaging per-micro-batch means.

use mlm_masking::Batch;
use mlm_seeds::splitmix64;
use tch::{Device, Kind, Tensor};

use super::RunError;
use super::precision::ForwardPrecision;
use crate::model::{
    MaskedLanguageModel, MaskedQueries, TokenLayout, UnpaddedAttention, cumulative_lengths,
    index_tensor, masked_lm_loss_sum, real_positions, rows_among,
};
use crate::optim::GradScaler;
use mlm_torch_ext::dist::Reducer;

/// A collated batch on the device.
pub struct BatchTensors {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub masked_positions: Tensor,
    pub masked_labels: Tensor,
    pub masked_is_mask_token: Tensor,
    /// The masked positions grouped by sequence, so that the network may run its last layer
    /// on them alone (model/queries.rs); `None` in a graphed step, whose buffers have fixed
    /// shapes.
    pub queries: Option<MaskedQueries>,
    /// `training.unpad` on a batch with padding: where its real tokens are, and the masked
    /// positions as rows among them; the forward then skips the padding.
    pub unpadded: Option<(TokenLayout, Tensor)>,
}

/// [`batch_tensors`] for the unpadded forward (`training.unpad`) with `attention`: a batch
/// without padding (`concat` packing) has nothing to skip and runs padded, unless the kernel
/// takes a window the padded attention would need as a dense mask.
pub fn unpadded_batch_tensors(
    batch: &Batch,
    device: Device,
    attention: UnpaddedAttention,
) -> BatchTensors {
    let mut tensors = batch_tensors(batch, device);
    let real = real_positions(&batch.attention_mask);
    if real.len() == batch.attention_mask.len() && attention != UnpaddedAttention::WindowedVarlen {
        return tensors;
    }
    // The collator masks real tokens only; anything else runs padded.
    let Some(rows) = rows_among(&real, &batch.masked_positions) else {
        return tensors;
    };
    let mut layout = TokenLayout::new(upload(index_tensor(&real), device), &tensors.attention_mask);
    if attention.is_varlen() {
        let (cumulative, longest) = cumulative_lengths(&batch.attention_mask, batch.seq_len);
        layout = layout.with_varlen(upload(Tensor::from_slice(&cumulative), device), longest);
    }
    tensors.unpadded = Some((layout, upload(index_tensor(&rows), device)));
    tensors
}

pub fn batch_tensors(batch: &Batch, device: Device) -> BatchTensors {
    let shape = [batch.batch_size as i64, batch.seq_len as i64];
    let is_mask: Vec<i64> = batch
        .masked_is_mask_token
        .iter()
        .map(|&m| i64::from(m))
        .collect();
    BatchTensors {
        input_ids: upload(Tensor::from_slice(&batch.input_ids).view(shape), device),
        attention_mask: upload(
            Tensor::from_slice(&batch.attention_mask).view(shape),
            device,
        ),
        masked_positions: upload(Tensor::from_slice(&batch.masked_positions), device),
        masked_labels: upload(Tensor::from_slice(&batch.masked_labels), device),
        masked_is_mask_token: upload(Tensor::from_slice(&is_mask).to_kind(Kind::Bool), device),
        queries: MaskedQueries::new(
            &batch.masked_positions,
            batch.batch_size,
            batch.seq_len,
            |host| upload(host, device),
        ),
        unpadded: None,
    }
}

/// A host tensor on `device`. To a GPU it goes through pinned memory with a non-blocking copy
/// (`pin_memory=True` + `.to(device, non_blocking=True)`, as Trainer's DataLoader does): a
/// copy from pageable memory is ordered after the kernels already queued and blocks the host
/// until they finish, a device sync per batch. libtorch's pinned allocator keeps the buffer
/// until the copy is done. Pinned through the shim's `pin_memory()` (tch's passes a device,
/// which libtorch warns about on every call); should pinning fail, the copy is a plain one.
fn upload(host: Tensor, device: Device) -> Tensor {
    if !device.is_cuda() {
        return host;
    }
    match mlm_torch_ext::pin_memory(&host) {
        Ok(pinned) => pinned.to_device_(device, pinned.kind(), true, false),
        Err(_) => host.to_device(device),
    }
}

/// The dropout seed of (seed, step, micro-batch): libtorch's generator is reseeded with it
/// before each forward, so a resumed run needs no saved RNG state (tch cannot export the
/// generator's state). `micro_batch` is the micro-batch's index in the whole step (over all
/// ranks: rank r's i-th is r x gradient_accumulation_steps + i), so a micro-batch keeps its
/// dropout at any world size. SplitMix64 finaliser over the packed inputs (the zero word is
/// a former rank coordinate, kept so that seeds, and runs, stay what they were).
pub fn dropout_seed(seed: u64, step: u64, micro_batch: usize) -> i64 {
    let mut x = seed ^ 0x6d6c_6d2d_7472_6169;
    for word in [step, 0, micro_batch as u64] {
        x = splitmix64(x ^ word);
    }
    // manual_seed takes an i64; keep it non-negative so logs read naturally.
    (x >> 1) as i64
}

/// The masked positions' logits of one collated batch, `[M, V]`, in `precision`: the one
/// forward that training and evaluation share.
pub fn masked_logits(
    model: &MaskedLanguageModel,
    tensors: &BatchTensors,
    precision: ForwardPrecision,
    train: bool,
) -> Result<Tensor, RunError> {
    let _autocast = precision.enter()?;
    Ok(match &tensors.unpadded {
        Some((layout, rows)) => model
            .masked_logits_unpadded(&tensors.input_ids, layout, rows, train)
            .map_err(|source| RunError::Unpad { source })?,
        None => model.masked_logits_grouped(
            &tensors.input_ids,
            &tensors.attention_mask,
            &tensors.masked_positions,
            tensors.queries.as_ref(),
            train,
        ),
    })
}

/// What the forward/backward passes of a step need besides the model.
pub struct StepContext<'a> {
    pub precision: ForwardPrecision,
    pub seed: u64,
    pub step: u64,
    /// The index of this rank's first micro-batch in the whole step (dropout seeds).
    pub first_micro_batch: usize,
    /// Masked tokens of the whole step over all ranks (the loss normaliser), divided by the
    /// number of ranks: the Reducer averages gradients over ranks, so each rank's loss is
    /// scaled up by the world size to make the result the sum over the step / masked tokens.
    pub normaliser: f64,
    /// Data parallel: the Reducer that all-reduces gradients during the last micro-batch's
    /// backward (the others accumulate locally, as under DDP's `no_sync`).
    pub reducer: Option<&'a Reducer>,
    /// fp16: the loss scaler whose scale multiplies the loss before backward.
    pub scaler: Option<&'a GradScaler>,
    /// `training.unpad`: the encoder runs on the real tokens only, attention as given.
    pub unpad: Option<UnpaddedAttention>,
}

/// Runs forward and backward over a step's micro-batches, accumulating gradients. Returns
/// the step's summed cross-entropy, a 0-dim f64 tensor on the device: nothing here waits for
/// the device, so the host can queue the next step while this one runs. The caller reads
/// it (and checks it is finite) when it logs.
pub fn forward_backward(
    model: &MaskedLanguageModel,
    batches: &[Batch],
    ctx: &StepContext<'_>,
) -> Result<Tensor, RunError> {
    let device = ctx.precision.device();
    let mut loss_sum: Option<Tensor> = None;
    for (micro, batch) in batches.iter().enumerate() {
        let syncs = ctx.reducer.filter(|_| micro + 1 == batches.len());
        // Under data parallelism every rank's last backward joins the all-reduce, even one
        // with nothing masked (its gradient is zero).
        if batch.masked_tokens() == 0 && syncs.is_none() {
            continue;
        }
        tch::manual_seed(dropout_seed(
            ctx.seed,
            ctx.step,
            ctx.first_micro_batch + micro,
        ));
        let tensors = match ctx.unpad {
            Some(attention) => unpadded_batch_tensors(batch, device, attention),
            None => batch_tensors(batch, device),
        };
        if let Some(reducer) = syncs {
            reducer.prepare_for_forward().map_err(RunError::Reducer)?;
        }
        let logits = masked_logits(model, &tensors, ctx.precision, true)?;
        let sum = masked_lm_loss_sum(&logits, &tensors.masked_labels);
        if let Some(reducer) = syncs {
            reducer.prepare_for_backward().map_err(RunError::Reducer)?;
        }
        // f_backward: under data parallelism the all-reduce finishes inside backward, and a
        // peer that died surfaces here as an error, not a panic.
        let loss = &sum / ctx.normaliser;
        match ctx.scaler {
            Some(scaler) => scaler.scale(&loss).f_backward()?,
            None => loss.f_backward()?,
        }
        let sum = sum.detach().to_kind(Kind::Double);
        loss_sum = Some(match loss_sum {
            Some(total) => total + sum,
            None => sum,
        });
    }
    Ok(loss_sum.unwrap_or_else(|| Tensor::zeros([], (Kind::Double, device))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EncoderConfig, trainable_named_variables};
    use crate::optim::{AdamW, AdamWConfig};
    use crate::run::config::Precision;
    use mlm_masking::{MaskKey, Masker, MaskingConfig, SpecialTokens, collate};
    use tch::nn::VarStore;

    fn tiny_config() -> EncoderConfig {
        EncoderConfig {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 32,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..EncoderConfig::default()
        }
    }

    /// 8 masked sequences of different lengths (micro-batches pad differently from one big
    /// batch), cut into micro-batches of `micro`, and their masked-token count.
    fn batches(micro: usize) -> (Vec<Batch>, usize) {
        let special = SpecialTokens {
            vocab_size: 50,
            pad_id: 0,
            mask_id: 4,
            special_ids: vec![0, 1, 2, 3, 4],
        };
        let masker = Masker::new(&MaskingConfig::default(), special).unwrap();
        let masked: Vec<_> = (0..8u64)
            .map(|i| {
                let len = 6 + (i as usize * 5) % 17;
                let mut ids = vec![2u32];
                ids.extend((0..len).map(|j| 5 + ((i as u32 * 31 + j as u32 * 7) % 45)));
                ids.push(3);
                masker.mask(&ids, None, MaskKey::train(3, 0, i))
            })
            .collect();
        let batches: Vec<_> = masked
            .chunks(micro)
            .map(|c| collate(c, 0, 4, Some(8)))
            .collect();
        let total: usize = batches.iter().map(Batch::masked_tokens).sum();
        assert!(total > 8, "enough masked tokens to mean something");
        (batches, total)
    }

    fn context(precision: ForwardPrecision, step: u64, normaliser: usize) -> StepContext<'static> {
        StepContext {
            precision,
            seed: 1,
            step,
            first_micro_batch: 0,
            normaliser: normaliser as f64,
            reducer: None,
            scaler: None,
            unpad: None,
        }
    }

    /// Gradients of `forward_backward` over the 8 sequences cut into micro-batches of
    /// `micro`, in f64, without dropout.
    fn gradients(micro: usize) -> Vec<(String, Tensor)> {
        let mut vs = VarStore::new(Device::Cpu);
        let model = MaskedLanguageModel::initialised(&vs, &tiny_config(), 7);
        vs.double();
        let (batches, total) = batches(micro);
        let precision = ForwardPrecision::fp32(Device::Cpu);
        let _ = forward_backward(&model, &batches, &context(precision, 0, total)).unwrap();
        trainable_named_variables(&vs)
            .into_iter()
            .map(|(name, t)| (name, t.grad().copy()))
            .collect()
    }

    /// Mean losses of `steps` AdamW steps on the same batches in `precision` (fp32 weights).
    fn train(precision: ForwardPrecision, steps: u64) -> Vec<f64> {
        let vs = VarStore::new(Device::Cpu);
        let model = MaskedLanguageModel::initialised(&vs, &tiny_config(), 7);
        let mut optimizer = AdamW::new(&vs, AdamWConfig::default());
        let (batches, total) = batches(4);
        (0..steps)
            .map(|step| {
                optimizer.zero_grad();
                let sum = forward_backward(&model, &batches, &context(precision, step, total));
                optimizer.step(1e-2);
                sum.unwrap().double_value(&[]) / total as f64
            })
            .collect()
    }

    #[test]
    fn gradient_accumulation_is_exactly_one_big_batch_in_f64() {
        let one = gradients(8);
        for micro in [1, 3, 4] {
            let accumulated = gradients(micro);
            for ((name, a), (_, b)) in one.iter().zip(&accumulated) {
                // Relative to the gradient's size; key biases have (mathematically) zero
                // gradient, so their floor is an absolute 1e-18.
                let scale = a.abs().max().double_value(&[]).max(1e-6);
                let diff = (a - b).abs().max().double_value(&[]);
                assert!(
                    diff < 1e-12 * scale,
                    "{name}: micro-batches of {micro} differ by {diff}"
                );
            }
        }
    }

    #[test]
    fn dropout_seeds_differ_by_every_coordinate_and_repeat_exactly() {
        let base = dropout_seed(1, 10, 0);
        assert_eq!(base, dropout_seed(1, 10, 0));
        for other in [
            dropout_seed(2, 10, 0),
            dropout_seed(1, 11, 0),
            dropout_seed(1, 10, 1),
        ] {
            assert_ne!(base, other);
        }
        assert!(base >= 0);
    }

    #[test]
    fn bf16_training_on_the_cpu_really_runs_the_forward_in_bf16() {
        let vs = VarStore::new(Device::Cpu);
        let model = MaskedLanguageModel::initialised(&vs, &tiny_config(), 7);
        let (batches, _) = batches(8);
        let tensors = batch_tensors(&batches[0], Device::Cpu);
        let bf16 = ForwardPrecision::new(Precision::Bf16, Device::Cpu);
        let fp32 = ForwardPrecision::new(Precision::Fp32, Device::Cpu);
        let logits = masked_logits(&model, &tensors, bf16, true).unwrap();
        assert_eq!(logits.kind(), Kind::BFloat16);
        let logits = masked_logits(&model, &tensors, fp32, true).unwrap();
        assert_eq!(logits.kind(), Kind::Float);

        // Training in bf16 learns, and follows another trajectory than fp32 (if autocast were
        // silently not entered, the two would be bit-identical).
        let bf16_losses = train(bf16, 6);
        let fp32_losses = train(fp32, 6);
        assert!(bf16_losses.iter().all(|l| l.is_finite()), "{bf16_losses:?}");
        assert!(bf16_losses[5] < bf16_losses[0], "{bf16_losses:?}");
        assert_ne!(bf16_losses, fp32_losses);
        assert!((bf16_losses[0] - fp32_losses[0]).abs() < 0.05 * fp32_losses[0]);
    }
}
