//! The optimizer side of a training step: AdamW whose state this crate owns (so checkpoints
//! can save and restore it; tch's optimizer cannot export its state) and clipping by the
//! global gradient norm.
//!
//! Both follow PyTorch bit for bit on the CPU (`torch.optim.AdamW`'s single-tensor path,
//! `torch.nn.utils.clip_grad_norm_`); `tests/optim_parity.rs` checks that against the venv's
//! torch.

mod adamw;
mod clip;
mod state_file;

use serde::{Deserialize, Serialize};

pub use adamw::AdamW;
pub use clip::{clip_grad_norm, clip_grad_norm_foreach, global_grad_norm};
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

impl AdamWConfig {
    /// The ranges `torch.optim.AdamW` accepts (it raises on the same values).
    pub fn validate(&self) -> Result<(), TrainError> {
        let check = |key: &str, value: f64, ok: bool, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(TrainError::InvalidConfig {
                    key: key.to_string(),
                    value: value.to_string(),
                    reason: reason.to_string(),
                })
            }
        };
        let lr = self.learning_rate;
        check(
            "learning_rate",
            lr,
            lr.is_finite() && lr >= 0.0,
            "must be >= 0",
        )?;
        let (b1, b2) = (self.beta1, self.beta2);
        check("beta1", b1, (0.0..1.0).contains(&b1), "must be in [0, 1)")?;
        check("beta2", b2, (0.0..1.0).contains(&b2), "must be in [0, 1)")?;
        let eps = self.epsilon;
        check(
            "epsilon",
            eps,
            eps.is_finite() && eps >= 0.0,
            "must be >= 0",
        )?;
        let wd = self.weight_decay;
        check(
            "weight_decay",
            wd,
            wd.is_finite() && wd >= 0.0,
            "must be >= 0",
        )
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
        assert!(message.contains("beta2 = 1"), "{message}");
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
