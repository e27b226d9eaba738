//! The `[masking]` section of the run config and its validation.

use serde::{Deserialize, Serialize};

use crate::MaskingError;

/// How many tokens of a sequence are selected for prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionMode {
    /// Each eligible token (or word) is selected on its own with `mlm_probability`, as Hugging
    /// Face's `DataCollatorForLanguageModeling` (`torch.bernoulli` over a probability matrix).
    /// The count per sequence varies (binomial); the rate over a corpus is exactly p.
    #[default]
    Independent,
    /// Exactly `max(1, round(p * n))` tokens per sequence, n = eligible (non-special) tokens,
    /// capped by `max_predictions_per_seq`, as the original BERT
    /// `create_pretraining_data.py::create_masked_lm_predictions`.
    Exact,
}

/// The `[masking]` section: how training and evaluation sequences are masked.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// Share of eligible tokens selected for prediction (BERT: 0.15; MosaicBERT and
    /// ModernBERT use 0.30).
    /// ```toml
    /// mlm_probability = 0.15
    /// ```
    pub mlm_probability: f64,
    /// Share of selected tokens replaced by the mask token.
    /// ```toml
    /// mask_replace_prob = 0.8
    /// ```
    pub mask_replace_prob: f64,
    /// Share of selected tokens replaced by a random non-special token; the rest
    /// (1 - mask_replace_prob - random_replace_prob) stay unchanged.
    /// ```toml
    /// random_replace_prob = 0.1
    /// ```
    pub random_replace_prob: f64,
    /// Select whole words (all their word pieces) instead of single pieces.
    /// ```toml
    /// whole_word_mask = true
    /// ```
    pub whole_word_mask: bool,
    /// `"independent"` (Hugging Face, default) or `"exact"` (original BERT).
    /// ```toml
    /// selection = "exact"
    /// ```
    pub selection: SelectionMode,
    /// Cap on selected tokens per sequence, `selection = "exact"` only (BERT: 20 at 128).
    /// ```toml
    /// max_predictions_per_seq = 20
    /// ```
    pub max_predictions_per_seq: Option<usize>,
    /// Pad each batch to a multiple of this length (tensor-core friendly); 1 pads only to
    /// the longest sequence of the batch.
    /// ```toml
    /// pad_to_multiple_of = 8
    /// ```
    pub pad_to_multiple_of: Option<usize>,
    /// Seed of the held-out masks: a function of (eval_seed, held-out position), the same at
    /// every evaluation.
    /// ```toml
    /// eval_seed = 42
    /// ```
    pub eval_seed: u64,
}

impl Default for MaskingConfig {
    /// BERT (Devlin et al. 2019) and Hugging Face `DataCollatorForLanguageModeling` defaults.
    fn default() -> Self {
        Self {
            mlm_probability: 0.15,
            mask_replace_prob: 0.8,
            random_replace_prob: 0.1,
            whole_word_mask: false,
            selection: SelectionMode::Independent,
            max_predictions_per_seq: None,
            pad_to_multiple_of: Some(8),
            eval_seed: 42,
        }
    }
}

impl MaskingConfig {
    /// Checks what `DataCollatorForLanguageModeling.__post_init__` checks, and the keys it
    /// does not have; each error names its key.
    pub fn validate(&self) -> Result<(), MaskingError> {
        for (key, value) in [
            ("mlm_probability", self.mlm_probability),
            ("mask_replace_prob", self.mask_replace_prob),
            ("random_replace_prob", self.random_replace_prob),
        ] {
            // NaN fails `contains` too.
            if !(0.0..=1.0).contains(&value) {
                return Err(MaskingError::ProbabilityOutOfRange { key, value });
            }
        }
        // A tiny tolerance so that e.g. 0.9 + 0.1 (1.0000000000000002 in f64) is accepted.
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-12 {
            return Err(MaskingError::ReplaceProbabilitiesOverOne {
                mask: self.mask_replace_prob,
                random: self.random_replace_prob,
            });
        }
        match (self.selection, self.max_predictions_per_seq) {
            (_, Some(0)) => {
                return Err(MaskingError::Zero {
                    key: "max_predictions_per_seq",
                    hint: "leave it out for no cap",
                });
            }
            (SelectionMode::Independent, Some(cap)) => {
                return Err(MaskingError::CapWithoutExactSelection(cap));
            }
            _ => {}
        }
        if self.pad_to_multiple_of == Some(0) {
            return Err(MaskingError::Zero {
                key: "pad_to_multiple_of",
                hint: "1 pads only to the longest sequence",
            });
        }
        Ok(())
    }

    /// The 80/10/10 split as applied: `(mask, random)`, clamped so that rounding in
    /// e.g. 0.9 + 0.1 cannot push their sum over 1.
    pub(crate) fn replace_split(&self) -> (f64, f64) {
        let mask = self.mask_replace_prob;
        (mask, self.random_replace_prob.min(1.0 - mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(edit: impl FnOnce(&mut MaskingConfig)) -> String {
        let mut c = MaskingConfig::default();
        edit(&mut c);
        c.validate()
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn defaults_are_bert_and_valid() {
        let c = MaskingConfig::default();
        c.validate().unwrap();
        assert_eq!(
            (
                c.mlm_probability,
                c.mask_replace_prob,
                c.random_replace_prob
            ),
            (0.15, 0.8, 0.1)
        );
        assert_eq!(c.selection, SelectionMode::Independent);
        assert_eq!(c.pad_to_multiple_of, Some(8));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            err(|c| c.mlm_probability = 1.5),
            "masking.mlm_probability = 1.5 is outside [0, 1]"
        );
        assert_eq!(
            err(|c| c.mask_replace_prob = -0.1),
            "masking.mask_replace_prob = -0.1 is outside [0, 1]"
        );
        assert!(
            err(|c| c.random_replace_prob = f64::NAN)
                .starts_with("masking.random_replace_prob = NaN")
        );
        let e = err(|c| {
            c.mask_replace_prob = 0.9;
            c.random_replace_prob = 0.2;
        });
        assert!(
            e.starts_with(
                "masking.mask_replace_prob + masking.random_replace_prob = 0.9 + 0.2 exceeds 1"
            ),
            "{e}"
        );
        assert!(
            err(|c| c.max_predictions_per_seq = Some(20))
                .contains("masking.max_predictions_per_seq = 20 applies only")
        );
        assert!(
            err(|c| {
                c.selection = SelectionMode::Exact;
                c.max_predictions_per_seq = Some(0);
            })
            .starts_with("masking.max_predictions_per_seq = 0 must be at least 1")
        );
        assert!(
            err(|c| c.pad_to_multiple_of = Some(0)).starts_with("masking.pad_to_multiple_of = 0")
        );
    }

    #[test]
    fn edge_values_are_accepted() {
        for (m, r) in [(0.9, 0.1), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0), (0.7, 0.3)] {
            let c = MaskingConfig {
                mask_replace_prob: m,
                random_replace_prob: r,
                ..Default::default()
            };
            c.validate().unwrap();
            let (mm, rr) = c.replace_split();
            assert!(mm + rr <= 1.0);
        }
        let c = MaskingConfig {
            selection: SelectionMode::Exact,
            max_predictions_per_seq: Some(20),
            mlm_probability: 1.0,
            ..Default::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn toml_section_round_trips_and_rejects_unknown_keys() {
        let c: MaskingConfig = toml::from_str(
            "mlm_probability = 0.3\nwhole_word_mask = true\nselection = \"exact\"\nmax_predictions_per_seq = 20\n",
        )
        .unwrap();
        assert_eq!(c.mlm_probability, 0.3);
        assert!(c.whole_word_mask);
        assert_eq!(c.selection, SelectionMode::Exact);
        assert_eq!(c.max_predictions_per_seq, Some(20));
        assert_eq!(c.mask_replace_prob, 0.8, "unset keys keep their defaults");
        let back: MaskingConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = toml::from_str::<MaskingConfig>("mlm_probabilty = 0.2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `mlm_probabilty`"), "{e}");
        let e = toml::from_str::<MaskingConfig>("selection = \"random\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("independent") && e.contains("exact"), "{e}");
    }
}
