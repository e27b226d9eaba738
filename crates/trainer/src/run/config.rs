//! The run-config sections the trainer owns: `[model]`, `[training]`, `[eval]` and
//! `[checkpoint]`. Defaults follow Hugging Face `run_mlm.py` / `TrainingArguments` unless a
//! comment names another source; docs/config.md documents every key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::schedule::ScheduleKind;

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
    /// `hidden_size = 768` (BERT-base).
    pub hidden_size: usize,
    /// `num_hidden_layers = 12`
    pub num_hidden_layers: usize,
    /// `num_attention_heads = 12`
    pub num_attention_heads: usize,
    /// `intermediate_size = 3072` (4 x hidden, as BERT).
    pub intermediate_size: usize,
    /// Dropout on hidden states and attention probabilities (BERT: 0.1).
    /// `dropout = 0.1`
    pub dropout: f64,
    /// Longest sequence the position table holds; defaults to the corpus's `max_seq_len`
    /// rounded up to 512 when left out (BERT's table size).
    /// `max_position_embeddings = 512`
    pub max_position_embeddings: Option<usize>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            init_from: None,
            config: None,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            dropout: 0.1,
            max_position_embeddings: None,
        }
    }
}

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 autocast on CUDA, fp32 on the CPU.
    #[default]
    Auto,
    Fp32,
    /// bf16 autocast (weights and optimizer state stay fp32).
    Bf16,
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
    /// Clip the global gradient norm to this; 0 turns clipping off. `max_grad_norm = 1.0`
    pub max_grad_norm: f64,
    /// Log train loss / lr / throughput every N steps. `logging_steps = 50`
    pub logging_steps: u64,
    /// `last_batch = "drop"` | `"keep"`.
    pub last_batch: LastBatch,
    /// `precision = "auto"` (bf16 autocast on CUDA, fp32 on CPU) | `"fp32"` | `"bf16"`.
    pub precision: Precision,
    /// Batches prepared ahead of the GPU on the loader thread. `prefetch = 4`
    pub prefetch: usize,
    /// AdamW and gradient clipping through PyTorch's fused multi-tensor kernels (Hugging
    /// Face's default `adamw_torch_fused`); `false` runs the single-tensor path, op for op
    /// `torch.optim.AdamW(foreach=False)`. `fused_optimizer = true`
    pub fused_optimizer: bool,
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
            max_grad_norm: 1.0,
            logging_steps: 500,
            last_batch: LastBatch::Drop,
            precision: Precision::Auto,
            prefetch: 4,
            fused_optimizer: true,
        }
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
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            eval_steps: 500,
            eval_batch_size: 64,
            max_eval_samples: None,
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
