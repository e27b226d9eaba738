//! What a model costs, from one place: each family's [`super::Architecture::cost`], built
//! from the variables it declares ([`super::Architecture::variables`], which the tests hold
//! equal to the built network's), as nanoGPT derives its counts from the model itself.
//!
//! FLOPs follow the PaLM paper's appendix B (Chowdhery et al. 2022) and nanoGPT's
//! `estimate_mfu`: a forward is 2 FLOPs per multiply-accumulate of every matmul weight plus
//! the attention scores and weighted sum (2 x 2 x attended length x hidden per token and
//! layer); backward is twice the forward. Embedding lookups are gathers, not FLOPs. The MLM
//! head runs only at masked positions, as ours does (Hugging Face's `*ForMaskedLM` runs it at
//! every position; that extra work is not counted for it either, so MFU ratios are tokens/s
//! ratios).

use super::arch::VariableShape;

/// Training FLOPs per token of a model shape: `per_token` for every non-padding token (the
/// encoder), `per_masked_token` added for each masked one (the MLM head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelFlops {
    pub per_token: f64,
    pub per_masked_token: f64,
}

impl ModelFlops {
    /// The FLOPs of training on `tokens` non-padding tokens of which `masked` are masked.
    pub fn training_flops(&self, tokens: u64, masked: u64) -> f64 {
        tokens as f64 * self.per_token + masked as f64 * self.per_masked_token
    }

    /// FLOPs per token at a masked share of `masked_share` (0.15 for BERT's recipe).
    pub fn per_token_at(&self, masked_share: f64) -> f64 {
        self.per_token + masked_share * self.per_masked_token
    }
}

/// A model's size and work at one sequence length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Every parameter (the pooler included, the tied decoder counted once).
    pub parameters: i64,
    /// The parameters MLM training updates (all but frozen ones such as the pooler).
    pub trainable_parameters: i64,
    pub flops: ModelFlops,
    /// Activation bytes one sequence keeps for the backward pass, at 16-bit (double it for
    /// fp32): the plan's memory estimate.
    pub activation_bytes_per_sequence: f64,
}

impl Cost {
    /// Parameter counts of `variables`, with the FLOPs and activations the family computed.
    pub fn of(variables: &[VariableShape], flops: ModelFlops, activation_bytes: f64) -> Self {
        Self {
            parameters: variables.iter().map(VariableShape::numel).sum(),
            trainable_parameters: variables
                .iter()
                .filter(|v| v.trainable)
                .map(VariableShape::numel)
                .sum(),
            flops,
            activation_bytes_per_sequence: activation_bytes,
        }
    }
}

/// Multiply-accumulates per token of the matmul weights among `variables` whose names start
/// with `prefix`: every 2-D variable that is not an embedding table (`nn.Linear` weights are
/// `[out, in]`, one MAC per element and token).
pub fn matmul_macs(variables: &[VariableShape], prefix: &str) -> f64 {
    variables
        .iter()
        .filter(|v| v.name.starts_with(prefix) && v.shape.len() == 2)
        .filter(|v| !v.name.contains("embeddings"))
        .map(|v| v.numel() as f64)
        .sum()
}

/// Training FLOPs of `macs` multiply-accumulates: x 2 (multiply-add) x 3 (forward + backward).
pub fn training_flops_of_macs(macs: f64) -> f64 {
    6.0 * macs
}

/// Attention's own multiply-accumulates per token and layer: scores (q . k) and the weighted
/// sum of values over `attended` keys, `2 x attended x hidden`.
pub fn attention_macs(attended: usize, hidden: i64) -> f64 {
    2.0 * attended as f64 * hidden as f64
}

/// Activation bytes per sequence of one transformer layer at 16-bit, after Korthikanti et al.
/// 2022: `s h (34 + 5 a s / h)` (s tokens, hidden h, a heads), for the standard layer with a
/// 4h feed-forward.
pub fn layer_activation_bytes(seq_len: usize, hidden: i64, heads: i64) -> f64 {
    let (s, h, a) = (seq_len as f64, hidden as f64, heads as f64);
    s * h * (34.0 + 5.0 * a * s / h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_split_frozen_from_trainable() {
        let variables = [
            VariableShape::new("a.weight", &[3, 4]),
            VariableShape::new("pooler.weight", &[2, 2]).frozen(),
        ];
        let flops = ModelFlops {
            per_token: 1.0,
            per_masked_token: 2.0,
        };
        let cost = Cost::of(&variables, flops, 0.0);
        assert_eq!((cost.parameters, cost.trainable_parameters), (16, 12));
        assert_eq!(cost.flops.training_flops(10, 2), 14.0);
        assert_eq!(cost.flops.per_token_at(0.5), 2.0);
    }

    #[test]
    fn matmul_weights_are_two_dimensional_non_embedding_variables_under_the_prefix() {
        let variables = [
            VariableShape::new("l.0.dense.weight", &[8, 4]),
            VariableShape::new("l.0.dense.bias", &[8]),
            VariableShape::new("l.0.embeddings.weight", &[100, 4]),
            VariableShape::new("l.1.dense.weight", &[8, 4]),
        ];
        assert_eq!(matmul_macs(&variables, "l.0."), 32.0);
        assert_eq!(training_flops_of_macs(32.0), 192.0);
    }
}
