//! The optimizer side of a training step: AdamW whose state this crate owns (so checkpoints
//! can save and restore it; tch's optimizer cannot export its state) and clipping by the
//! global gradient norm.
//!
//! Both follow PyTorch bit for bit on the CPU (`torch.optim.AdamW`'s single-tensor path,
//! `torch.nn.utils.clip_grad_norm_`); `tests/optim_parity.rs` checks that against the venv's
//! torch.

mod adamw;
mod clip;
mod grad_scaler;
mod state_file;

use serde::{Deserialize, Serialize};

pub use adamw::AdamW;
pub use clip::{
    clip_grad_norm, clip_grad_norm_device, global_grad_norm, gradients, unscale_and_clip,
};
pub use grad_scaler::{GradScaler, GradScalerState};
pub use state_file::OPTIMIZER_FILE;

use crate::error::TrainError;

/// AdamW hyper-parameters (the learning rate of each step comes from the schedule; this one
/// is the peak, recorded with the state). Defaults are the BERT paper's (Devlin et al. 2019,
/// appendix A.2: lr 1e-4, betas 0.9 / 0.999, L2 weight decay 0.01, and the original TF code's
/// epsilon 1e-6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Peak learning rate. `learning_rate = 1e-4`
    pub learning_rate: f64,
    /// Decay of the first-moment average. `beta1 = 0.9`
    pub beta1: f64,
    /// Decay of the second-moment average. `beta2 = 0.999` (RoBERTa: 0.98)
    pub beta2: f64,
    /// Added to the denominator for stability. `epsilon = 1e-6`
    pub epsilon: f64,
    /// Decoupled weight decay, applied only where [`applies_weight_decay`] says so.
    /// `weight_decay = 0.01`
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            weight_decay: 0.01,
        }
    }
}

/// The config keys AdamW's hyper-parameters were read from, so that range errors name what
/// the user wrote (`training.adam_beta2`) rather than this struct's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdamWKeys {
    pub learning_rate: &'static str,
    pub beta1: &'static str,
    pub beta2: &'static str,
    pub epsilon: &'static str,
    pub weight_decay: &'static str,
}

impl AdamWKeys {
    /// The field names of [`AdamWConfig`] itself.
    pub const FIELDS: Self = Self {
        learning_rate: "learning_rate",
        beta1: "beta1",
        beta2: "beta2",
        epsilon: "epsilon",
        weight_decay: "weight_decay",
    };
}

impl AdamWConfig {
    /// The ranges `torch.optim.AdamW` accepts (it raises on the same values).
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_as(&AdamWKeys::FIELDS)
    }

    /// [`AdamWConfig::validate`], with errors naming `keys`.
    pub fn validate_as(&self, keys: &AdamWKeys) -> Result<(), TrainError> {
        use crate::error::check;
        check::non_negative(keys.learning_rate, self.learning_rate)?;
        check::below_one(keys.beta1, self.beta1)?;
        check::below_one(keys.beta2, self.beta2)?;
        check::non_negative(keys.epsilon, self.epsilon)?;
        check::non_negative(keys.weight_decay, self.weight_decay)
    }
}

/// Whether a parameter gets weight decay: it must have at least 2 dimensions (nanoGPT's rule:
/// matrices and embeddings decay, vectors do not) and its name must not match the patterns
/// of Hugging Face `Trainer.get_decay_parameter_names` (transformers/trainer.py): `bias`,
/// `layernorm`, `rmsnorm` anywhere in the lower-cased name, or a `norm` / `*_norm` path
/// component. For BERT both rules agree: no decay on biases and LayerNorm weights.
pub fn applies_weight_decay(name: &str, ndim: usize) -> bool {
    if ndim < 2 {
        return false;
    }
    let lower = name.to_lowercase();
    let forbidden = ["bias", "layernorm", "rmsnorm"]
        .iter()
        .any(|pattern| lower.contains(pattern))
        || lower
            .split('.')
            .any(|component| component == "norm" || component.ends_with("_norm"));
    !forbidden
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_follows_hf_names_and_ndim() {
        // BERT's parameters.
        assert!(applies_weight_decay(
            "bert.embeddings.word_embeddings.weight",
            2
        ));
        assert!(applies_weight_decay(
            "bert.encoder.layer.0.attention.self.query.weight",
            2
        ));
        assert!(applies_weight_decay(
            "cls.predictions.transform.dense.weight",
            2
        ));
        assert!(!applies_weight_decay(
            "bert.encoder.layer.0.attention.self.query.bias",
            1
        ));
        assert!(!applies_weight_decay("bert.embeddings.LayerNorm.weight", 1));
        assert!(!applies_weight_decay(
            "cls.predictions.transform.LayerNorm.bias",
            1
        ));
        assert!(!applies_weight_decay("cls.predictions.bias", 1));
        // The name rule alone excludes these even when they are matrices.
        assert!(!applies_weight_decay("encoder.LayerNorm.weight", 2));
        assert!(!applies_weight_decay("model.final_layernorm.weight", 2));
        assert!(!applies_weight_decay("layers.0.input_rmsnorm.weight", 2));
        assert!(!applies_weight_decay("model.norm.weight", 2));
        assert!(!applies_weight_decay("norm.weight", 2));
        assert!(!applies_weight_decay("block.attn_norm.weight", 2));
        assert!(!applies_weight_decay("proj.bias_table", 2));
        // ... and the ndim rule excludes 1-D weights whose names do not say "norm".
        assert!(!applies_weight_decay("head.scale", 1));
        assert!(!applies_weight_decay("scalar", 0));
        // "norm" inside a longer component is not a norm layer (HF's regex agrees).
        assert!(applies_weight_decay("normalizer.weight", 2));
        assert!(applies_weight_decay("abnormal.weight", 2));
    }

    #[test]
    fn config_ranges() {
        assert!(AdamWConfig::default().validate().is_ok());
        let bad = AdamWConfig {
            beta2: 1.0,
            ..AdamWConfig::default()
        };
        let message = bad.validate().unwrap_err().to_string();
        assert_eq!(message, "beta2 = 1 must be in [0, 1)");
        let keys = AdamWKeys {
            beta2: "training.adam_beta2",
            ..AdamWKeys::FIELDS
        };
        let message = bad.validate_as(&keys).unwrap_err().to_string();
        assert_eq!(message, "training.adam_beta2 = 1 must be in [0, 1)");
        let negative = AdamWConfig {
            weight_decay: -0.1,
            ..AdamWConfig::default()
        };
        assert!(negative.validate().is_err());
        let parsed: AdamWConfig = serde_json::from_str(r#"{"beta2": 0.98}"#).unwrap();
        assert_eq!(parsed.beta2, 0.98);
        assert_eq!(parsed.epsilon, 1e-6);
        assert!(serde_json::from_str::<AdamWConfig>(r#"{"betas": 1}"#).is_err());
    }
}
