//! The masked-language-model loss of the data contract (DESIGN.md): the *sum* of token
//! cross-entropies over the masked positions of a micro-batch. The caller divides by the
//! masked-token count of the whole optimizer step (all micro-batches, all ranks), which makes
//! gradient accumulation and data parallelism exactly one big batch. transformers'
//! `BertForMaskedLM.forward` takes the mean over one batch instead (`CrossEntropyLoss()` with
//! `ignore_index=-100`); for a single batch, sum / count is that mean.

use tch::{Kind, Reduction, Tensor};

/// Sum of cross-entropy of `logits` `[M, V]` against `labels` `[M]` (Int64), computed in f32
/// whatever the logits' dtype (bf16 logits under autocast would lose the small differences
/// the loss is made of), or in f64 for f64 logits (the exactness tests). Labels of -100 are
/// skipped, as in `CrossEntropyLoss`. Returns a scalar tensor; 0 when there are no rows.
pub fn masked_lm_loss_sum(logits: &Tensor, labels: &Tensor) -> Tensor {
    let kind = if logits.kind() == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    logits
        .to_kind(kind)
        .cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, -100, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_token_cross_entropies() {
        let logits = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0, -1.0, 0.5]).view([2, 3]);
        let labels = Tensor::from_slice(&[2i64, 0]);
        let by_hand = |row: [f64; 3], label: usize| {
            let log_sum: f64 = row.iter().map(|x| x.exp()).sum::<f64>().ln();
            log_sum - row[label]
        };
        let expected = by_hand([0.0, 1.0, 2.0], 2) + by_hand([3.0, -1.0, 0.5], 0);
        let loss = masked_lm_loss_sum(&logits, &labels);
        assert_eq!(loss.kind(), Kind::Float);
        assert!((loss.double_value(&[]) - expected).abs() < 1e-6);
    }

    #[test]
    fn computes_in_f32_from_bf16_logits_and_skips_ignored_labels() {
        let logits = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0, -1.0, 0.5]).view([2, 3]);
        let single = masked_lm_loss_sum(&logits.narrow(0, 0, 1), &Tensor::from_slice(&[2i64]));
        let ignored = masked_lm_loss_sum(&logits, &Tensor::from_slice(&[2i64, -100]));
        assert_eq!(single.double_value(&[]), ignored.double_value(&[]));
        let bf16 = masked_lm_loss_sum(
            &logits.to_kind(Kind::BFloat16),
            &Tensor::from_slice(&[2i64, 0]),
        );
        assert_eq!(bf16.kind(), Kind::Float);
    }

    #[test]
    fn no_masked_tokens_is_zero_not_nan() {
        let logits = Tensor::zeros([0, 5], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::zeros([0], (Kind::Int64, tch::Device::Cpu));
        assert_eq!(masked_lm_loss_sum(&logits, &labels).double_value(&[]), 0.0);
    }
}
