//! Errors of the masking crate. Config errors name the `masking.*` key they are about; the
//! config loader adds the file and line.

/// What went wrong building a masker or masking a sequence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskingError {
    #[error("masking.{key} = {value} is outside [0, 1]")]
    ProbabilityOutOfRange { key: &'static str, value: f64 },

    #[error(
        "masking.mask_replace_prob + masking.random_replace_prob = {mask} + {random} exceeds 1 \
         (the share of selected tokens left unchanged is 1 minus their sum)"
    )]
    ReplaceProbabilitiesOverOne { mask: f64, random: f64 },

    #[error("masking.{key} = 0 must be at least 1 ({hint})")]
    Zero {
        key: &'static str,
        hint: &'static str,
    },

    #[error(
        "masking.max_predictions_per_seq = {0} applies only to selection = \"exact\" \
         (selection = \"independent\" draws every token on its own and has no cap)"
    )]
    CapWithoutExactSelection(usize),

    #[error(
        "the tokenizer has no mask token ([MASK] / <mask>): masked-language modelling needs one"
    )]
    MissingMaskToken,

    #[error("the tokenizer has no padding token ([PAD] / <pad>): batches need one")]
    MissingPadToken,

    #[error("vocab_size is 0: the tokenizer has no tokens")]
    EmptyVocabulary,

    #[error("special token {key} = {id} is out of range for vocab_size {vocab_size}")]
    SpecialIdOutOfRange {
        key: String,
        id: u32,
        vocab_size: u32,
    },

    #[error("special tokens mask_id and pad_id are both {0}: they must differ")]
    MaskIsPad(u32),

    #[error(
        "all {vocab_size} ids of the vocabulary are special: random replacement \
         (masking.random_replace_prob = {random_replace_prob}) has no token to draw"
    )]
    NoReplacementTokens {
        vocab_size: u32,
        random_replace_prob: f64,
    },

    #[error("word_starts has {word_starts} entries but input_ids has {input_ids}")]
    WordStartsLength {
        input_ids: usize,
        word_starts: usize,
    },

    #[error(
        "masking.{key} does not go with unit = \"{unit}\": it applies only to unit = \"{needs}\""
    )]
    UnitConflict {
        key: &'static str,
        unit: &'static str,
        needs: &'static str,
    },

    #[error(
        "masking.unit = \"phrase\" needs phrases: set masking.phrases = \"FILE\" (one phrase a \
         line) and/or masking.pmi_ngrams = N (mine N n-grams by PMI at prepare)"
    )]
    NoPhraseSource,

    #[error("masking.span_geometric_p = {0} must be in (0, 1] (SpanBERT: 0.2)")]
    SpanProbability(f64),

    #[error("masking.span_max_words = {0} must be in 1..=64 (SpanBERT: 10)")]
    SpanMaxWords(usize),
}
