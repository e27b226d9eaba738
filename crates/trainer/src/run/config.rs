//! The run-config sections the trainer owns: `[model]`, `[training]`, `[eval]` and
//! `[checkpoint]`. Defaults follow Hugging Face `run_mlm.py` / `TrainingArguments` unless a
//! comment names another source; docs/config.md documents every key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{TrainError, check};
use crate::model::{architecture_for, supported_model_types};
use crate::optim::{AdamWConfig, AdamWKeys};
use crate::schedule::{RampShape, ScheduleKind};
use mlm_masking::MaskingConfig;

/// The `[training]` keys of the AdamW hyper-parameters.
const ADAMW_KEYS: AdamWKeys = AdamWKeys {
    learning_rate: "training.learning_rate",
    beta1: "training.adam_beta1",
    beta2: "training.adam_beta2",
    epsilon: "training.adam_epsilon",
    weight_decay: "training.weight_decay",
};

/// `[model]`: what to train. Either `init_from` (a Hugging Face directory to adapt, as DAPT,
/// Gururangan et al. 2020) or a model from scratch sized by the keys below.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Hugging Face model directory to continue pre-training (`config.json` + weights).
    /// `init_from = "models/bert-base-uncased"`
    pub init_from: Option<PathBuf>,
    /// A Hugging Face `config.json` for a model from scratch; when neither this nor
    /// `init_from` is given, the size keys below describe the model.
    /// `config = "models/tiny/config.json"`
    pub config: Option<PathBuf>,
    /// The family of a model from scratch: `"bert"` (when left out) | `"roberta"` |
    /// `"xlm-roberta"` | `"camembert"` | `"distilbert"`. Not with `init_from` or `config`,
    /// whose `config.json` names the family. `model_type = "roberta"`
    pub model_type: Option<String>,
    /// `hidden_size = 768` (BERT-base).
    pub hidden_size: usize,
    /// `num_hidden_layers = 12`
    pub num_hidden_layers: usize,
    /// `num_attention_heads = 12`
    pub num_attention_heads: usize,
    /// `intermediate_size = 3072` (4 x hidden, as BERT).
    pub intermediate_size: usize,
    /// Dropout of a model from scratch: on hidden states and attention probabilities (BERT,
    /// RoBERTa, DistilBERT), or ModernBERT's embedding, attention and MLP dropouts. Default:
    /// the family's config class's (0.1 for the post-LN families, 0.0 for ModernBERT).
    /// `dropout = 0.1`
    pub dropout: Option<f64>,
    /// Longest sequence the position table holds; defaults to the corpus's `max_seq_len`
    /// rounded up to 512 when left out (BERT's table size; ModernBERT: 8192, as rotary
    /// embeddings have no table).
    /// `max_position_embeddings = 512`
    pub max_position_embeddings: Option<usize>,
    /// More `config.json` keys of a model from scratch, in the family's own names, over its
    /// config class's defaults (checked as a `config.json` would be; errors name the key).
    /// ModernBERT's window and layer pattern, for instance:
    /// `family_config = { local_attention = 64, global_attn_every_n_layers = 2 }`
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub family_config: serde_json::Map<String, serde_json::Value>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            init_from: None,
            config: None,
            model_type: None,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            dropout: None,
            max_position_embeddings: None,
            family_config: serde_json::Map::new(),
        }
    }
}

impl ModelSection {
    /// Checks the section as a whole when the config loads; errors name the full key
    /// (`model.dropout = 1.5 must be in [0, 1)`). The size keys are checked even when
    /// `init_from` or `config` makes them unused, so a typo never waits for a later run.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.check_one_source()?;
        self.check_model_type()?;
        check::at_least("model.hidden_size", self.hidden_size, 1)?;
        check::at_least("model.num_hidden_layers", self.num_hidden_layers, 1)?;
        check::at_least("model.num_attention_heads", self.num_attention_heads, 1)?;
        check::at_least("model.intermediate_size", self.intermediate_size, 1)?;
        self.check_heads_divide_hidden()?;
        if let Some(dropout) = self.dropout {
            check::below_one("model.dropout", dropout)?;
        }
        if let Some(positions) = self.max_position_embeddings {
            check::at_least("model.max_position_embeddings", positions, 1)?;
        }
        Ok(())
    }

    /// The family of a model from scratch (BERT unless `model_type` says otherwise).
    pub fn scratch_model_type(&self) -> &str {
        self.model_type
            .as_deref()
            .unwrap_or(crate::model::DEFAULT_MODEL_TYPE)
    }

    /// The sizes of a model from scratch for a corpus of `vocab_size` tokens and sequences of
    /// up to `max_seq_len` (the real run's plan and the dry run's estimate share this).
    pub fn scratch_shape(
        &self,
        vocab_size: u64,
        max_seq_len: usize,
        special_ids: Option<crate::model::SpecialIds>,
    ) -> crate::model::ScratchShape {
        crate::model::ScratchShape {
            vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            dropout: self.dropout,
            max_seq_len,
            max_position_embeddings: self.max_position_embeddings,
            special_ids,
            family_config: self.family_config.clone(),
        }
    }

    /// `model_type` names a supported family, and only for a model from scratch: a
    /// `config.json` (`init_from`, `config`) names its own.
    fn check_model_type(&self) -> Result<(), TrainError> {
        let Some(model_type) = &self.model_type else {
            return Ok(());
        };
        let value = format!("{model_type:?}");
        check::require(
            "model.model_type",
            &value,
            architecture_for(model_type).is_some(),
            || format!("is not a supported family ({})", supported_model_types()),
        )?;
        check::require(
            "model.model_type",
            &value,
            self.init_from.is_none() && self.config.is_none(),
            || {
                "applies to a model from scratch only: the config.json of model.init_from or \
                 model.config names the family"
                    .to_owned()
            },
        )
    }

    /// `init_from` brings its own `config.json`; a second one could only disagree with it,
    /// and so could `family_config`.
    fn check_one_source(&self) -> Result<(), TrainError> {
        if let (Some(_), Some(config)) = (&self.init_from, &self.config) {
            return Err(TrainError::invalid_config(
                "model.config",
                format!("{:?}", config.display().to_string()),
                "cannot be given together with model.init_from (which has its own config.json)",
            ));
        }
        let has_file = self.init_from.is_some() || self.config.is_some();
        if has_file && !self.family_config.is_empty() {
            return Err(TrainError::invalid_config(
                "model.family_config",
                serde_json::Value::Object(self.family_config.clone()).to_string(),
                "applies to a model from scratch only: edit the config.json of model.init_from \
                 or model.config instead",
            ));
        }
        Ok(())
    }

    /// Each attention head gets `hidden_size / num_attention_heads` dimensions.
    fn check_heads_divide_hidden(&self) -> Result<(), TrainError> {
        check::require(
            "model.hidden_size",
            &self.hidden_size,
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            || {
                format!(
                    "must be a multiple of model.num_attention_heads = {}",
                    self.num_attention_heads
                )
            },
        )
    }
}

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 autocast on GPUs with bf16 tensor cores (compute capability 8.0 and newer, what
    /// `mlm-train doctor` checks), fp32 elsewhere (older GPUs and the CPU).
    #[default]
    Auto,
    Fp32,
    /// bf16 autocast (weights and optimizer state stay fp32).
    Bf16,
    /// fp16 autocast with dynamic loss scaling (`torch.amp.GradScaler`'s defaults), for GPUs
    /// without bf16 (V100, T4): Hugging Face Trainer's `fp16=True`.
    Fp16,
    /// float64 weights, gradients, optimizer state and forward: reference numerics for
    /// parity checks and debugging (several times slower than fp32).
    Fp64,
}

/// What happens to the last global batch of an epoch when it is not full. The same policy
/// applies on every rank, so data-parallel runs see identical batches (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LastBatch {
    /// Dropped, as Hugging Face Trainer with `dataloader_drop_last`; every step has B sequences.
    #[default]
    Drop,
    /// Kept as a smaller step (the loss is still normalised by that step's masked tokens).
    Keep,
}

/// `[training]`: the optimisation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Run directory: checkpoints, `metrics.jsonl`, the resolved config.
    /// `output_dir = "runs/pubmed"`
    pub output_dir: PathBuf,
    /// Seeds model initialisation, masks and dropout. `seed = 42`
    pub seed: u64,
    /// Seeds the data order; defaults to `seed`. `data_seed = 7`
    pub data_seed: Option<u64>,
    /// Sequences per micro-batch on one device. `batch_size = 32`
    pub batch_size: usize,
    /// Micro-batches per optimizer step. `gradient_accumulation_steps = 8`
    pub gradient_accumulation_steps: usize,
    /// Optimizer steps to run; wins over `epochs` when both are given. `max_steps = 10000`
    pub max_steps: Option<u64>,
    /// Passes over the training split when `max_steps` is left out. `epochs = 3.0`
    pub epochs: f64,
    /// Peak learning rate. `learning_rate = 5e-5` (run_mlm / TrainingArguments default).
    pub learning_rate: f64,
    /// Decoupled weight decay on >= 2-D non-LayerNorm weights. `weight_decay = 0.01` (BERT).
    pub weight_decay: f64,
    /// `adam_beta1 = 0.9`
    pub adam_beta1: f64,
    /// `adam_beta2 = 0.999` (BERT; RoBERTa uses 0.98).
    pub adam_beta2: f64,
    /// `adam_epsilon = 1e-8` (TrainingArguments; RoBERTa uses 1e-6).
    pub adam_epsilon: f64,
    /// `lr_schedule = "linear"` | `"cosine"` | `"constant"` | `"warmup_stable_decay"`.
    pub lr_schedule: ScheduleKind,
    /// Warmup steps; wins over `warmup_ratio`. `warmup_steps = 10000` (BERT).
    pub warmup_steps: Option<u64>,
    /// Warmup as a fraction of all steps. `warmup_ratio = 0.06` (RoBERTa).
    pub warmup_ratio: f64,
    /// Fraction of steps spent decaying in `warmup_stable_decay`. `decay_ratio = 0.1`
    pub decay_ratio: f64,
    /// Floor of the decay, as a fraction of the peak. `min_lr_ratio = 0.0`
    pub min_lr_ratio: f64,
    /// `warmup_stable_decay`'s warmup: `"linear"` | `"cosine"` | `"1-sqrt"`.
    /// `warmup_type = "linear"`
    pub warmup_type: RampShape,
    /// `warmup_stable_decay`'s decay: `"linear"` | `"cosine"` | `"1-sqrt"` (ModernBERT's).
    /// `decay_type = "cosine"`
    pub decay_type: RampShape,
    /// Clip the global gradient norm to this; 0 turns clipping off. `max_grad_norm = 1.0`
    pub max_grad_norm: f64,
    /// Log train loss / lr / throughput every N steps. `logging_steps = 50`
    pub logging_steps: u64,
    /// `last_batch = "drop"` | `"keep"`.
    pub last_batch: LastBatch,
    /// `precision = "auto"` (bf16 autocast on CUDA, fp32 on CPU) | `"fp32"` | `"bf16"` |
    /// `"fp64"` (float64 everywhere: reference numerics for parity checks).
    pub precision: Precision,
    /// Batches prepared ahead of the GPU on the loader thread. `prefetch = 4`
    pub prefetch: usize,
    /// AdamW and gradient clipping through PyTorch's fused multi-tensor kernels (Hugging
    /// Face's default `adamw_torch_fused`); `false` runs the single-tensor path, op for op
    /// `torch.optim.AdamW(foreach=False)`. `fused_optimizer = true`
    pub fused_optimizer: bool,
    /// fp32 matmuls on TF32 tensor cores (Ampere and newer GPUs), for `precision = "fp32"`
    /// runs: `torch.backends.cuda.matmul.allow_tf32 = True`, Trainer's `tf32=True`. Off by
    /// default, as in PyTorch and Trainer. `tf32 = true`
    pub tf32: bool,
    /// Sort each megabatch of up to 50 global batches of the epoch order by sequence length,
    /// longest first, as Trainer's `group_by_length = True`, so the batches of `packing =
    /// "document"` pad little. Changes which sequences share a batch, not which are seen in
    /// an epoch. `group_by_length = true`
    pub group_by_length: bool,
    /// Capture the step as CUDA graphs after 3 warm-up steps and replay them: the step's
    /// hundreds of kernel launches become a replay per micro-batch and one for the update.
    /// Micro-batches get fixed shapes: padded to the
    /// corpus's `max_seq_len`, and a fixed count of masked slots (exact for `masking.selection
    /// = "exact"`, mean + 6 sd otherwise; a batch over it runs the plain step). Needs one
    /// process, `fused_optimizer` and no `unpad`. On the CPU the same fixed-shape step runs
    /// without capture. `cuda_graphs = true`
    pub cuda_graphs: bool,
    /// Run the encoder on the real tokens of each training batch only: the feed-forward, the
    /// attention output projection and the LayerNorms skip the padding (attention runs on the
    /// padded batch). For `packing = "document"`; batches without padding run as before.
    /// `unpad = true`
    pub unpad: bool,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("runs/mlm"),
            seed: 42,
            data_seed: None,
            batch_size: 8,
            gradient_accumulation_steps: 1,
            max_steps: None,
            epochs: 3.0,
            learning_rate: 5e-5,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            lr_schedule: ScheduleKind::Linear,
            warmup_steps: None,
            warmup_ratio: 0.0,
            decay_ratio: 0.1,
            min_lr_ratio: 0.0,
            warmup_type: RampShape::Linear,
            decay_type: RampShape::Cosine,
            max_grad_norm: 1.0,
            logging_steps: 500,
            last_batch: LastBatch::Drop,
            precision: Precision::Auto,
            prefetch: 4,
            fused_optimizer: true,
            tf32: false,
            group_by_length: false,
            cuda_graphs: false,
            unpad: false,
        }
    }
}

impl TrainingConfig {
    /// Checks the section as a whole when the config loads, before any work; errors name the
    /// full key (`training.batch_size = 0 must be >= 1`). The schedule is checked here when
    /// `max_steps` fixes the run's length; with `epochs` it needs the corpus size and is
    /// checked by [`checked_schedule_for`] when the run starts.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_batching()?;
        self.validate_optimizer()?;
        self.validate_schedule()?;
        self.validate_cuda_graphs()
    }

    /// What a captured step cannot do: the single-tensor optimizer reads the host every step,
    /// and unpadding changes the shapes every batch.
    fn validate_cuda_graphs(&self) -> Result<(), TrainError> {
        if !self.cuda_graphs {
            return Ok(());
        }
        check::require(
            "training.fused_optimizer",
            &false,
            self.fused_optimizer,
            || {
                "cannot go with training.cuda_graphs = true (a graph captures the fused update)"
                    .to_owned()
            },
        )?;
        check::require("training.unpad", &true, !self.unpad, || {
            "cannot go with training.cuda_graphs = true (graphs need fixed shapes)".to_owned()
        })
    }

    /// The AdamW hyper-parameters of this section.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            learning_rate: self.learning_rate,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            epsilon: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

    /// Batch sizes, step counts and the run's length.
    fn validate_batching(&self) -> Result<(), TrainError> {
        check::at_least("training.batch_size", self.batch_size, 1)?;
        check::at_least(
            "training.gradient_accumulation_steps",
            self.gradient_accumulation_steps,
            1,
        )?;
        check::at_least("training.logging_steps", self.logging_steps, 1)?;
        check::at_least("training.prefetch", self.prefetch, 1)?;
        if let Some(max_steps) = self.max_steps {
            check::at_least("training.max_steps", max_steps, 1)?;
        }
        check::positive("training.epochs", self.epochs)
    }

    /// AdamW's ranges (as `torch.optim.AdamW` checks them), stricter where a value would make
    /// training pointless or unstable: a peak of 0 never moves, an epsilon of 0 divides by
    /// zero on parameters without gradient history.
    fn validate_optimizer(&self) -> Result<(), TrainError> {
        check::positive("training.learning_rate", self.learning_rate)?;
        check::positive("training.adam_epsilon", self.adam_epsilon)?;
        self.adamw().validate_as(&ADAMW_KEYS)?;
        check::non_negative("training.max_grad_norm", self.max_grad_norm)
    }

    /// The ratios, and the whole schedule when `max_steps` gives its length.
    fn validate_schedule(&self) -> Result<(), TrainError> {
        check::fraction("training.warmup_ratio", self.warmup_ratio)?;
        check::fraction("training.decay_ratio", self.decay_ratio)?;
        check::fraction("training.min_lr_ratio", self.min_lr_ratio)?;
        self.check_wsd_ratios_fit()?;
        self.check_wsd_shapes()?;
        if let Some(max_steps) = self.max_steps {
            checked_schedule_for(self, max_steps)?;
        }
        Ok(())
    }

    /// `warmup_type` and `decay_type` shape WSD's phases only: set away from their defaults
    /// under another schedule they would be silently ignored, so they are refused.
    fn check_wsd_shapes(&self) -> Result<(), TrainError> {
        let wsd = self.lr_schedule == ScheduleKind::WarmupStableDecay;
        let shapes = [
            ("training.warmup_type", self.warmup_type, RampShape::Linear),
            ("training.decay_type", self.decay_type, RampShape::Cosine),
        ];
        for (key, shape, default) in shapes {
            let value = format!("\"{}\"", shape.as_str());
            check::require(key, &value, wsd || shape == default, || {
                "applies to lr_schedule = \"warmup_stable_decay\" only".to_owned()
            })?;
        }
        Ok(())
    }

    /// WSD with a warmup ratio: warmup and decay are both fractions of the run, so they
    /// cannot fit whatever its length when they add up to more than all of it.
    fn check_wsd_ratios_fit(&self) -> Result<(), TrainError> {
        let by_ratio =
            self.lr_schedule == ScheduleKind::WarmupStableDecay && self.warmup_steps.is_none();
        check::require(
            "training.decay_ratio",
            &self.decay_ratio,
            !by_ratio || self.warmup_ratio + self.decay_ratio <= 1.0 + 1e-12,
            || {
                format!(
                    "plus training.warmup_ratio = {} exceeds 1: warmup and decay cannot fit in \
                     the run",
                    self.warmup_ratio
                )
            },
        )
    }
}

/// `[eval]`: held-out evaluation with fixed masks (the eval seed is `masking.eval_seed`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every N optimizer steps (and before the first and after the last); 0 = only
    /// before and after. `eval_steps = 500`
    pub eval_steps: u64,
    /// `eval_batch_size = 64`
    pub eval_batch_size: usize,
    /// Evaluate on the first N held-out sequences only (all when left out).
    /// `max_eval_samples = 2000`
    pub max_eval_samples: Option<u64>,
    /// The share of held-out tokens masked, whatever `masking.mlm_probability` trains at, so
    /// that runs of different recipes are scored on the same masks. `mlm_probability = 0.15`
    pub mlm_probability: f64,
    /// What the held-out masks select: `"token"` (independent tokens) or `"word"` (whole
    /// words), whatever `[masking]` trains with. `unit = "token"`
    pub unit: EvalUnit,
}

/// `[eval] unit`: what held-out masking selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalUnit {
    /// Independent tokens (BERT's and Hugging Face's collator's default).
    #[default]
    Token,
    /// Whole words (`masking.whole_word_mask`).
    Word,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            eval_steps: 500,
            eval_batch_size: 64,
            max_eval_samples: None,
            mlm_probability: 0.15,
            unit: EvalUnit::Token,
        }
    }
}

impl EvalConfig {
    /// Checks the section when the config loads; errors name the full key.
    pub fn validate(&self) -> Result<(), TrainError> {
        check::at_least("eval.eval_batch_size", self.eval_batch_size, 1)?;
        let rate = self.mlm_probability;
        check::require(
            "eval.mlm_probability",
            &rate,
            rate > 0.0 && rate < 1.0,
            || "must be in (0, 1)".to_owned(),
        )?;
        if let Some(samples) = self.max_eval_samples {
            check::at_least("eval.max_eval_samples", samples, 1)?;
        }
        Ok(())
    }
}

impl EvalConfig {
    /// `[masking]` as held-out masking uses it: `[eval]`'s rate and unit (token or word, so
    /// runs trained on spans or phrases are scored on the same masks as the rest), every
    /// other key (80/10/10, selection, the eval seed) as the run trains.
    pub fn masking(&self, masking: &MaskingConfig) -> MaskingConfig {
        // Span and phrase units never go with selection = "exact" (validation), so
        // `selection` carries over as it is.
        MaskingConfig {
            mlm_probability: self.mlm_probability,
            whole_word_mask: self.unit == EvalUnit::Word,
            unit: None,
            phrases: None,
            pmi_ngrams: None,
            mlm_probability_end: None,
            ..masking.clone()
        }
    }
}

/// `[checkpoint]`: when to save and what to keep.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save every N optimizer steps (and at the end); 0 = only at the end. `save_steps = 1000`
    pub save_steps: u64,
    /// Also save when this many minutes passed since the last save. `save_minutes = 30.0`
    pub save_minutes: Option<f64>,
    /// Checkpoints kept besides the best one. `keep_last = 2`
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            save_steps: 500,
            save_minutes: None,
            keep_last: 2,
        }
    }
}

impl CheckpointConfig {
    /// Checks the section when the config loads; errors name the full key. `save_steps = 0`
    /// (only at the end), `keep_last = 0` (keep all) and `save_minutes = 0` (at every step)
    /// are meaningful.
    pub fn validate(&self) -> Result<(), TrainError> {
        match self.save_minutes {
            Some(minutes) => check::non_negative("checkpoint.save_minutes", minutes),
            None => Ok(()),
        }
    }
}

mod schedule;

pub(super) use schedule::checked_schedule_for;

#[cfg(test)]
mod tests;
