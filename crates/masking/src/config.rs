//! The `[masking]` section of the run config and its validation.

use std::path::PathBuf;

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

/// What one selection takes: `[masking] unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskingUnit {
    /// Single tokens (BERT, Hugging Face's `DataCollatorForLanguageModeling`).
    Token,
    /// Whole words, 80/10/10 per piece (BERT's whole-word masking; `whole_word_mask = true`).
    Word,
    /// Runs of whole words of Geometric(`span_geometric_p`) length clipped at
    /// `span_max_words`, 80/10/10 per span (SpanBERT, Joshi et al. 2020).
    Span,
    /// Domain phrases (from `phrases` and/or mined by PMI) and the remaining words, 80/10/10
    /// per unit (PMI-Masking, Levine et al. 2021; salient-span masking).
    Phrase,
}

impl MaskingUnit {
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Word => "word",
            Self::Span => "span",
            Self::Phrase => "phrase",
        }
    }
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
    /// What one selection takes: `"token"`, `"word"` (as `whole_word_mask = true`), `"span"`
    /// or `"phrase"`. Left out: `"word"` with `whole_word_mask = true`, else `"token"`.
    /// ```toml
    /// unit = "span"
    /// ```
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<MaskingUnit>,
    /// `unit = "span"`: the success probability of the geometric span length in words
    /// (SpanBERT: 0.2, mean 3.8 words once clipped at 10).
    /// ```toml
    /// span_geometric_p = 0.2
    /// ```
    #[serde(skip_serializing_if = "is_default_span_p")]
    pub span_geometric_p: f64,
    /// `unit = "span"`: the longest span in words (SpanBERT: 10); lengths are drawn from the
    /// geometric distribution restricted to 1..=span_max_words.
    /// ```toml
    /// span_max_words = 10
    /// ```
    #[serde(skip_serializing_if = "is_default_span_max")]
    pub span_max_words: usize,
    /// `unit = "phrase"`: a UTF-8 file of domain phrases, one a line (MeSH terms, a drug
    /// list); `#` starts a comment line. Matched to word spans once, at `prepare`.
    /// ```toml
    /// phrases = "data/mesh-terms.txt"
    /// ```
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phrases: Option<PathBuf>,
    /// `unit = "phrase"`: mine the top N n-grams (n = 2..5) of the training split's words by
    /// PMI (Levine et al. 2021), at `prepare`, into `phrases.pmi.tsv` beside the corpus.
    /// ```toml
    /// pmi_ngrams = 20000
    /// ```
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pmi_ngrams: Option<usize>,
    /// `pmi_ngrams`: an n-gram seen fewer times is not a candidate.
    /// ```toml
    /// pmi_min_count = 10
    /// ```
    #[serde(skip_serializing_if = "is_default_pmi_min_count")]
    pub pmi_min_count: u64,
    /// Move the training rate linearly from `mlm_probability` (first step) to this (last
    /// step), e.g. 0.30 -> 0.15 as BioClinical ModernBERT and mmBERT lower it. Held-out masks
    /// keep `[eval] mlm_probability`.
    /// ```toml
    /// mlm_probability_end = 0.15
    /// ```
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlm_probability_end: Option<f64>,
}

/// The largest `span_max_words` accepted (SpanBERT uses 10).
pub const MAX_SPAN_WORDS: usize = 64;

const DEFAULT_SPAN_P: f64 = 0.2;
const DEFAULT_SPAN_MAX_WORDS: usize = 10;
const DEFAULT_PMI_MIN_COUNT: u64 = 10;

fn is_default_span_p(p: &f64) -> bool {
    *p == DEFAULT_SPAN_P
}

fn is_default_span_max(n: &usize) -> bool {
    *n == DEFAULT_SPAN_MAX_WORDS
}

fn is_default_pmi_min_count(n: &u64) -> bool {
    *n == DEFAULT_PMI_MIN_COUNT
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
            unit: None,
            span_geometric_p: DEFAULT_SPAN_P,
            span_max_words: DEFAULT_SPAN_MAX_WORDS,
            phrases: None,
            pmi_ngrams: None,
            pmi_min_count: DEFAULT_PMI_MIN_COUNT,
            mlm_probability_end: None,
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
        if let Some(end) = self.mlm_probability_end
            && !(0.0..=1.0).contains(&end)
        {
            return Err(MaskingError::ProbabilityOutOfRange {
                key: "mlm_probability_end",
                value: end,
            });
        }
        self.validate_unit()
    }

    /// The unit a selection takes, `whole_word_mask` read as `unit = "word"`.
    pub fn unit(&self) -> MaskingUnit {
        match (self.unit, self.whole_word_mask) {
            (Some(unit), _) => unit,
            (None, true) => MaskingUnit::Word,
            (None, false) => MaskingUnit::Token,
        }
    }

    /// Whether a unit spans several tokens, so that the masker needs unit starts.
    pub fn needs_unit_starts(&self) -> bool {
        self.unit() != MaskingUnit::Token
    }

    /// The training rate of optimizer step `step` (0-based) of `total_steps`:
    /// `mlm_probability`, or with `mlm_probability_end` the straight line from it at the first
    /// step to the end rate at the last. A pure function of the step, so a resumed run and any
    /// number of ranks mask each step at the same rate.
    pub fn probability_at(&self, step: u64, total_steps: u64) -> f64 {
        match self.mlm_probability_end {
            Some(end) if total_steps > 1 => {
                let t = step.min(total_steps - 1) as f64 / (total_steps - 1) as f64;
                self.mlm_probability + (end - self.mlm_probability) * t
            }
            _ => self.mlm_probability,
        }
    }

    /// The highest training rate of the run (the rate schedule's larger end).
    pub fn peak_probability(&self) -> f64 {
        self.mlm_probability
            .max(self.mlm_probability_end.unwrap_or(0.0))
    }

    /// The unit keys agree with each other: each key names the unit it belongs to.
    fn validate_unit(&self) -> Result<(), MaskingError> {
        let unit = self.unit();
        if self.whole_word_mask && unit != MaskingUnit::Word {
            return Err(MaskingError::UnitConflict {
                key: "whole_word_mask = true",
                unit: unit.name(),
                needs: "word",
            });
        }
        if unit != MaskingUnit::Phrase {
            if self.phrases.is_some() {
                return Err(MaskingError::UnitConflict {
                    key: "phrases",
                    unit: unit.name(),
                    needs: "phrase",
                });
            }
            if self.pmi_ngrams.is_some() {
                return Err(MaskingError::UnitConflict {
                    key: "pmi_ngrams",
                    unit: unit.name(),
                    needs: "phrase",
                });
            }
        } else if self.phrases.is_none() && self.pmi_ngrams.is_none() {
            return Err(MaskingError::NoPhraseSource);
        }
        if self.pmi_ngrams == Some(0) {
            return Err(MaskingError::Zero {
                key: "pmi_ngrams",
                hint: "leave it out to mine none",
            });
        }
        if matches!(unit, MaskingUnit::Span | MaskingUnit::Phrase)
            && self.selection == SelectionMode::Exact
        {
            return Err(MaskingError::UnitConflict {
                key: "selection = \"exact\"",
                unit: unit.name(),
                needs: "token\" or \"word",
            });
        }
        if !(self.span_geometric_p > 0.0 && self.span_geometric_p <= 1.0) {
            return Err(MaskingError::SpanProbability(self.span_geometric_p));
        }
        if !(1..=MAX_SPAN_WORDS).contains(&self.span_max_words) {
            return Err(MaskingError::SpanMaxWords(self.span_max_words));
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
    fn the_rate_moves_linearly_from_start_to_end() {
        let c = MaskingConfig {
            mlm_probability: 0.3,
            mlm_probability_end: Some(0.15),
            ..Default::default()
        };
        assert_eq!(c.probability_at(0, 101), 0.3);
        assert!((c.probability_at(50, 101) - 0.225).abs() < 1e-15);
        assert!((c.probability_at(100, 101) - 0.15).abs() < 1e-15);
        assert!(
            (c.probability_at(500, 101) - 0.15).abs() < 1e-15,
            "past the end: the end"
        );
        assert_eq!(c.probability_at(0, 1), 0.3);
        assert_eq!(c.peak_probability(), 0.3);
        let fixed = MaskingConfig::default();
        assert_eq!(fixed.probability_at(7, 10), 0.15);
    }

    #[test]
    fn unit_keys_must_agree() {
        let unit = |u| MaskingConfig {
            unit: Some(u),
            ..Default::default()
        };
        assert_eq!(MaskingConfig::default().unit(), MaskingUnit::Token);
        let wwm = MaskingConfig {
            whole_word_mask: true,
            ..Default::default()
        };
        assert_eq!(wwm.unit(), MaskingUnit::Word);
        unit(MaskingUnit::Span).validate().unwrap();
        assert!(
            err(|c| {
                c.whole_word_mask = true;
                c.unit = Some(MaskingUnit::Span);
            })
            .contains("masking.whole_word_mask = true does not go with unit = \"span\"")
        );
        assert!(
            err(|c| c.unit = Some(MaskingUnit::Phrase)).contains("needs phrases"),
            "phrase unit without a source"
        );
        assert!(err(|c| c.pmi_ngrams = Some(10)).contains("masking.pmi_ngrams does not go"));
        assert!(
            err(|c| {
                c.unit = Some(MaskingUnit::Span);
                c.selection = SelectionMode::Exact;
            })
            .contains("selection = \"exact\" does not go with unit = \"span\"")
        );
        assert!(
            err(|c| {
                c.unit = Some(MaskingUnit::Span);
                c.span_geometric_p = 0.0;
            })
            .contains("span_geometric_p = 0")
        );
        assert!(err(|c| c.span_max_words = 0).contains("span_max_words = 0"));
        assert!(err(|c| c.mlm_probability_end = Some(1.5)).contains("mlm_probability_end"));
        let c: MaskingConfig =
            toml::from_str("unit = \"phrase\"\npmi_ngrams = 100\nmlm_probability_end = 0.15\n")
                .unwrap();
        c.validate().unwrap();
        assert_eq!(c.unit(), MaskingUnit::Phrase);
        let text = toml::to_string(&MaskingConfig::default()).unwrap();
        assert!(
            !text.contains("unit") && !text.contains("span") && !text.contains("pmi"),
            "keys left at their defaults are not serialised (resume keys of earlier runs): {text}"
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
