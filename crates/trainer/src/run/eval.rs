//! Held-out evaluation with fixed masks. The held-out sequence at position i is always masked
//! by `MaskKey::eval(eval_seed, i)`, so two checkpoints are compared on exactly the same
//! masked tokens (Hugging Face's `run_mlm.py` re-masks its eval set at every evaluation, so
//! its numbers move with the masks as well as with the model).

use std::path::Path;

use mlm_corpus::{DomainTokenizer, Manifest, PreparedCorpus, Split, SplitReader};
use mlm_masking::{Batch, MaskKey, Masker, MaskingConfig, collate};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::RunError;
use super::config::EvalConfig;
use super::data::masker_for;
use super::precision::ForwardPrecision;
use super::step::{BatchTensors, batch_tensors, masked_logits};
use crate::model::{MaskedLanguageModel, load_model_dir, masked_lm_loss_sum};

/// The metrics of one evaluation. `perplexity = exp(loss)`, with `loss` the mean
/// cross-entropy over every masked token (not the mean of per-batch means).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub loss: f64,
    pub perplexity: f64,
    /// Top-1 accuracy over every masked position (the 80/10/10 mix).
    pub accuracy: f64,
    pub top5_accuracy: f64,
    /// Top-1 accuracy over the positions whose input is [MASK] only.
    pub mask_accuracy: f64,
    pub masked_tokens: u64,
    pub mask_tokens: u64,
    pub sequences: u64,
}

/// Pure reduction of summed counts into metrics (unit-tested without a model).
pub fn finish_metrics(sums: &EvalSums) -> EvalMetrics {
    let ratio = |hits: f64, total: u64| {
        if total == 0 {
            f64::NAN
        } else {
            hits / total as f64
        }
    };
    let loss = ratio(sums.loss_sum, sums.masked_tokens);
    EvalMetrics {
        loss,
        perplexity: loss.exp(),
        accuracy: ratio(sums.top1_hits, sums.masked_tokens),
        top5_accuracy: ratio(sums.top5_hits, sums.masked_tokens),
        mask_accuracy: ratio(sums.mask_top1_hits, sums.mask_tokens),
        masked_tokens: sums.masked_tokens,
        mask_tokens: sums.mask_tokens,
        sequences: sums.sequences,
    }
}

/// Running sums over evaluation batches (f64: exact for counts, stable for the loss).
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalSums {
    pub loss_sum: f64,
    pub top1_hits: f64,
    pub top5_hits: f64,
    pub mask_top1_hits: f64,
    pub masked_tokens: u64,
    pub mask_tokens: u64,
    pub sequences: u64,
}

/// The held-out batches, masked once.
pub struct EvalSet {
    batches: Vec<Batch>,
}

/// How to build an [`EvalSet`].
pub struct EvalSetSpec {
    /// `[masking]` at `[eval]`'s rate and unit: the held-out masks do not follow the
    /// training recipe, so runs with different recipes are scored on the same masks.
    pub masker: Masker,
    pub eval_seed: u64,
    pub max_samples: Option<u64>,
    pub batch_size: usize,
    pub whole_word: bool,
    pub pad_id: u32,
    pub mask_id: u32,
    pub pad_to_multiple_of: Option<usize>,
}

impl EvalSetSpec {
    /// The spec a run's `[masking]` and `[eval]` sections give for a corpus.
    pub fn new(
        masking: &MaskingConfig,
        eval: &EvalConfig,
        manifest: &Manifest,
    ) -> Result<Self, RunError> {
        let held_out = eval.masking(masking);
        Ok(Self {
            masker: masker_for(&held_out, manifest)?,
            eval_seed: masking.eval_seed,
            max_samples: eval.max_eval_samples,
            batch_size: eval.eval_batch_size,
            whole_word: held_out.unit() == mlm_masking::MaskingUnit::Word,
            pad_id: manifest.special_ids.pad,
            mask_id: manifest.special_ids.mask,
            pad_to_multiple_of: masking.pad_to_multiple_of,
        })
    }
}

impl EvalSet {
    /// Reads and masks the first `max_samples` held-out sequences, in stored order.
    pub fn build(reader: &mut SplitReader, spec: &EvalSetSpec) -> Result<Self, RunError> {
        let total = spec
            .max_samples
            .map_or(reader.len(), |m| m.min(reader.len()));
        if total == 0 {
            return Err(RunError::EmptyEvalSet);
        }
        let mut batches = Vec::new();
        let mut pending = Vec::with_capacity(spec.batch_size);
        for position in 0..total {
            let sequence = reader.get(position)?;
            let word_starts = spec.whole_word.then_some(sequence.word_starts.as_slice());
            pending.push(spec.masker.mask(
                &sequence.input_ids,
                word_starts,
                MaskKey::eval(spec.eval_seed, position),
            ));
            if pending.len() == spec.batch_size || position + 1 == total {
                batches.push(collate(
                    &pending,
                    spec.pad_id,
                    spec.mask_id,
                    spec.pad_to_multiple_of,
                ));
                pending.clear();
            }
        }
        Ok(Self { batches })
    }

    pub fn sequences(&self) -> u64 {
        self.batches.iter().map(|b| b.batch_size as u64).sum()
    }
}

/// Evaluates `model` on `set` (no dropout, no gradients) in `precision`, calling
/// `progress(sequences done, sequences in the set)` after each batch.
pub fn evaluate(
    model: &MaskedLanguageModel,
    set: &EvalSet,
    precision: ForwardPrecision,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EvalMetrics, RunError> {
    let sums = evaluate_shard(model, set, precision, (0, 1), progress)?;
    Ok(finish_metrics(&sums))
}

/// The sums over this rank's share of the held-out batches (batch i belongs to rank
/// i mod world size), to be summed over ranks and finished; `progress` counts this rank's
/// share.
pub fn evaluate_shard(
    model: &MaskedLanguageModel,
    set: &EvalSet,
    precision: ForwardPrecision,
    (rank, world_size): (u32, u32),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EvalSums, RunError> {
    let mut sums = EvalSums::default();
    let shard = || {
        set.batches
            .iter()
            .skip(rank as usize)
            .step_by(world_size.max(1) as usize)
    };
    let total = shard().map(|b| b.batch_size as u64).sum();
    let _no_grad = tch::no_grad_guard();
    for batch in shard() {
        progress(sums.sequences, total);
        sums.sequences += batch.batch_size as u64;
        if batch.masked_tokens() == 0 {
            continue;
        }
        let tensors = batch_tensors(batch, precision.device());
        let logits = masked_logits(model, &tensors, precision, false)?.to_kind(Kind::Float);
        add_batch(&mut sums, &logits, &tensors);
        sums.masked_tokens += batch.masked_tokens() as u64;
        sums.mask_tokens += batch.masked_is_mask_token.iter().filter(|&&m| m).count() as u64;
    }
    Ok(sums)
}

impl EvalSums {
    /// The sums as one f64 vector (for an all-reduce), and back. Counts stay exact in f64
    /// up to 2^53.
    pub fn to_vec(self) -> Vec<f64> {
        vec![
            self.loss_sum,
            self.top1_hits,
            self.top5_hits,
            self.mask_top1_hits,
            self.masked_tokens as f64,
            self.mask_tokens as f64,
            self.sequences as f64,
        ]
    }

    pub fn from_vec(values: &[f64]) -> Self {
        Self {
            loss_sum: values[0],
            top1_hits: values[1],
            top5_hits: values[2],
            mask_top1_hits: values[3],
            masked_tokens: values[4] as u64,
            mask_tokens: values[5] as u64,
            sequences: values[6] as u64,
        }
    }
}

/// Adds one batch's summed loss and top-1 / top-5 / [MASK]-only hits (f64, on the host).
fn add_batch(sums: &mut EvalSums, logits: &Tensor, tensors: &BatchTensors) {
    let labels = &tensors.masked_labels;
    sums.loss_sum += masked_lm_loss_sum(logits, labels).double_value(&[]);
    let (_, top5) = logits.topk(5.min(logits.size()[1]), -1, true, true);
    let hits = top5.eq_tensor(&labels.unsqueeze(-1));
    let top1 = hits.select(1, 0).to_kind(Kind::Double);
    let is_mask = tensors.masked_is_mask_token.to_kind(Kind::Double);
    sums.top1_hits += top1.sum(Kind::Double).double_value(&[]);
    sums.top5_hits += hits
        .any_dim(-1, false)
        .to_kind(Kind::Double)
        .sum(Kind::Double)
        .double_value(&[]);
    sums.mask_top1_hits += (top1 * is_mask).sum(Kind::Double).double_value(&[]);
}

/// What `mlm-train eval` evaluates: a checkpoint (or Hugging Face model directory) on a
/// prepared corpus's held-out split, with the masks `[masking]` and `[eval]` fix.
pub struct CheckpointEval<'a> {
    pub checkpoint: &'a Path,
    pub corpus_dir: &'a Path,
    pub masking: &'a MaskingConfig,
    pub eval: &'a EvalConfig,
    pub device: Device,
}

/// Evaluates a checkpoint in fp32 (the reference numbers) after checking that its tokenizer
/// is the one the corpus was prepared with.
pub fn evaluate_checkpoint(request: &CheckpointEval<'_>) -> Result<EvalMetrics, RunError> {
    evaluate_checkpoint_with(request, &mut |_, _| {})
}

/// [`evaluate_checkpoint`], reporting `progress(sequences done, sequences)` as it goes.
pub fn evaluate_checkpoint_with(
    request: &CheckpointEval<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EvalMetrics, RunError> {
    let corpus = PreparedCorpus::open(request.corpus_dir)?;
    let tokenizer = DomainTokenizer::load(request.checkpoint, None)?;
    corpus.check_tokenizer(&tokenizer)?;
    let loaded = load_model_dir(request.checkpoint, request.device)?;
    let manifest = corpus.manifest();
    let spec = EvalSetSpec::new(request.masking, request.eval, manifest)?;
    let set = EvalSet::build(&mut corpus.split(Split::Validation)?, &spec)?;
    evaluate(
        &loaded.model,
        &set,
        ForwardPrecision::fp32(request.device),
        progress,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perplexity_is_exp_of_the_mean_loss_over_masked_tokens() {
        let sums = EvalSums {
            loss_sum: 30.0,
            top1_hits: 4.0,
            top5_hits: 8.0,
            mask_top1_hits: 3.0,
            masked_tokens: 10,
            mask_tokens: 8,
            sequences: 2,
        };
        let m = finish_metrics(&sums);
        assert!((m.loss - 3.0).abs() < 1e-12);
        assert!((m.perplexity - 3.0f64.exp()).abs() < 1e-9);
        assert!((m.accuracy - 0.4).abs() < 1e-12);
        assert!((m.top5_accuracy - 0.8).abs() < 1e-12);
        assert!((m.mask_accuracy - 0.375).abs() < 1e-12);
    }

    #[test]
    fn no_masked_tokens_gives_nan_not_a_division_by_zero_panic() {
        let m = finish_metrics(&EvalSums::default());
        assert!(m.loss.is_nan() && m.accuracy.is_nan());
    }
}
