//! The masked-language model as the rest of the trainer sees it, whatever the family:
//! [`MaskedLanguageModel`] holds the config and the network its family built
//! ([`super::Architecture::build`]), checks inputs, and derives every forward the loop,
//! evaluation and fill-mask use from the four a network provides ([`MaskedLmNetwork`]).
//!
//! `masked_logits` runs the head only where labels are, which gives the same logits there as
//! the full `forward` does (the head's decoder is the biggest matmul of a small model).

use std::fmt;

use mlm_torch_ext::TorchExtError;
use tch::nn::{Path, VarStore};
use tch::{Kind, Tensor};

use super::ModelError;
use super::arch::Architecture;
use super::config::EncoderConfig;
use super::init::init_weights_like_hf;
use super::queries::MaskedQueries;
use super::unpad::TokenLayout;

/// What a family's network computes. Hidden states are `[B, T, H]` (padded) or `[N, H]`
/// (unpadded rows, model/unpad.rs).
pub trait MaskedLmNetwork: fmt::Debug + Send {
    /// The base model's forward without the pooler: final hidden states `[B, T, H]`.
    /// `attention_mask` is 1 for real tokens and 0 for padding (any integer or bool kind).
    fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor;

    /// [`Self::encode`] on the real tokens only: `[N, H]`, the rows `layout` names. Fails
    /// only where FlashAttention's varlen kernel refuses its input (`training.unpad`).
    fn encode_unpadded(
        &self,
        input_ids: &Tensor,
        layout: &TokenLayout,
        train: bool,
    ) -> Result<Tensor, TorchExtError>;

    /// Final hidden states at the masked positions only, `[M, H]`: the rows
    /// `masked_positions` (flat `b * T + t`) of [`Self::encode`]. Where `queries` groups them
    /// by sequence (model/queries.rs), a network may run its last layer on those rows alone;
    /// this default computes every row and gathers.
    fn encode_masked(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        masked_positions: &Tensor,
        _queries: Option<&MaskedQueries>,
        train: bool,
    ) -> Tensor {
        gather_rows(
            &self.encode(input_ids, attention_mask, train),
            masked_positions,
        )
    }

    /// The MLM head on hidden states `[..., H]` -> logits `[..., V]`.
    fn head(&self, hidden: &Tensor) -> Tensor;

    /// The pooler (`[B, H]`) for families whose base model has one.
    fn pooled(&self, hidden: &Tensor) -> Option<Tensor>;
}

/// A family's masked-language model.
#[derive(Debug)]
pub struct MaskedLanguageModel {
    config: EncoderConfig,
    network: Box<dyn MaskedLmNetwork>,
}

impl MaskedLanguageModel {
    /// Creates the variables under `root` with Hugging Face's names for `config`'s family,
    /// holding placeholders (zeros, norm weights one): give them values with
    /// [`init_weights_like_hf`] (seeded, device-independent, as `post_init`), or
    /// [`super::load_hf_dir`], which also initialises what the checkpoint lacks;
    /// [`Self::initialised`] does the first. The config must have passed
    /// [`EncoderConfig::validate`] (every constructor of `EncoderConfig` from a file does).
    pub fn new(root: &Path<'_>, config: &EncoderConfig) -> Self {
        Self {
            config: config.clone(),
            network: config.architecture().build(root, config),
        }
    }

    /// A model from scratch in `vs`: [`Self::new`] + [`init_weights_like_hf`] from `seed`.
    pub fn initialised(vs: &VarStore, config: &EncoderConfig, seed: u64) -> Self {
        let model = Self::new(&vs.root(), config);
        init_weights_like_hf(vs, config, seed);
        model
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    pub fn architecture(&self) -> &'static dyn Architecture {
        self.config.architecture()
    }

    /// Checks inputs before a forward pass (the forward itself panics inside libtorch on
    /// malformed input): `[B, T]` Int64 ids and mask of the same shape, `T` within the
    /// model's positions, ids within the vocabulary. Costs a device sync; use it where inputs
    /// come from outside (fill-mask, eval of a foreign set), not in the hot loop.
    pub fn check_inputs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<(), ModelError> {
        let size = input_ids.size();
        if size.len() != 2 || input_ids.kind() != Kind::Int64 {
            return Err(ModelError::BadInput(format!(
                "input_ids must be a [batch, seq_len] Int64 tensor, got {size:?} {:?}",
                input_ids.kind()
            )));
        }
        if attention_mask.size() != size {
            return Err(ModelError::BadInput(format!(
                "attention_mask has shape {:?}, input_ids {size:?}",
                attention_mask.size()
            )));
        }
        if size[1] > self.config.max_sequence_length() {
            return Err(ModelError::BadInput(format!(
                "sequence length {} exceeds the {} positions of the model \
                 (max_position_embeddings {})",
                size[1],
                self.config.max_sequence_length(),
                self.config.max_position_embeddings
            )));
        }
        self.check_ids(input_ids)
    }

    fn check_ids(&self, input_ids: &Tensor) -> Result<(), ModelError> {
        if input_ids.numel() == 0 {
            return Ok(());
        }
        let (low, high) = (
            input_ids.min().int64_value(&[]),
            input_ids.max().int64_value(&[]),
        );
        if low < 0 || high >= self.config.vocab_size {
            return Err(ModelError::BadInput(format!(
                "token ids span [{low}, {high}] but vocab_size is {}",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// Final hidden states `[B, T, H]` ([`MaskedLmNetwork::encode`]).
    pub fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.network.encode(input_ids, attention_mask, train)
    }

    /// The MLM head on hidden states `[..., H]` -> logits `[..., V]`.
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        self.network.head(hidden)
    }

    /// The pooler's output `[B, H]`, for families whose base model has one.
    pub fn pooled(&self, hidden: &Tensor) -> Option<Tensor> {
        self.network.pooled(hidden)
    }

    /// The masked-LM class's `forward(...).logits`: `[B, T, V]`.
    pub fn logits(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.head(&self.encode(input_ids, attention_mask, train))
    }

    /// Logits at the masked positions only, `[M, V]`: the hidden states are gathered at the
    /// flat positions `b * T + t` (Int64, `[M]`) first and the head runs on those rows alone.
    pub fn masked_logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        masked_positions: &Tensor,
        train: bool,
    ) -> Tensor {
        self.masked_logits_grouped(input_ids, attention_mask, masked_positions, None, train)
    }

    /// [`Self::masked_logits`] where `queries` (the same positions grouped by sequence) lets
    /// the family's network run its last layer on the masked rows alone
    /// ([`MaskedLmNetwork::encode_masked`]): the same logits up to rounding.
    pub fn masked_logits_grouped(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        masked_positions: &Tensor,
        queries: Option<&MaskedQueries>,
        train: bool,
    ) -> Tensor {
        let rows =
            self.network
                .encode_masked(input_ids, attention_mask, masked_positions, queries, train);
        self.head(&rows)
    }

    /// [`Self::masked_logits`] with the encoder on the real tokens only (model/unpad.rs), the
    /// head on the rows `masked_rows` (indices into the real tokens, from
    /// [`super::unpad::rows_among`]). The same logits as the padded forward, up to rounding;
    /// dropout draws on other shapes.
    pub fn masked_logits_unpadded(
        &self,
        input_ids: &Tensor,
        layout: &TokenLayout,
        masked_rows: &Tensor,
        train: bool,
    ) -> Result<Tensor, TorchExtError> {
        let rows = self.network.encode_unpadded(input_ids, layout, train)?;
        Ok(self.head(&rows.index_select(0, masked_rows)))
    }
}

/// Whether a network may run its last layer on the masked rows alone, and on what: the last
/// layer, the layers before it and the grouping, where `queries` groups the rows and the last
/// layer draws no dropout in this pass (evaluation, or dropout 0). Its draws would otherwise
/// fall on other shapes than transformers' and a run would lose its parity with it
/// (model/queries.rs). None: compute every row, then gather.
pub(crate) fn last_layer_on_masked_rows<'a, L>(
    layers: &'a [L],
    queries: Option<&'a MaskedQueries>,
    train: bool,
    draws_dropout: impl Fn(&L) -> bool,
) -> Option<(&'a L, &'a [L], &'a MaskedQueries)> {
    let (last, earlier) = layers.split_last()?;
    let queries = queries?;
    (!(train && draws_dropout(last))).then_some((last, earlier, queries))
}

/// The rows at flat positions `b * T + t` (`[M]`) of hidden states `[B, T, H]`: `[M, H]`.
pub(crate) fn gather_rows(hidden: &Tensor, flat_positions: &Tensor) -> Tensor {
    let width = hidden
        .size()
        .last()
        .copied()
        .expect("hidden states have a width");
    hidden.reshape([-1, width]).index_select(0, flat_positions)
}

#[cfg(test)]
mod cuda_tests;
#[cfg(test)]
mod masked_rows_tests;
#[cfg(test)]
pub(crate) mod tests;
