//! The fill-mask pipeline of transformers (pipelines/fill_mask.py): for each mask token of a
//! text, the top k tokens with their probabilities and the text with each filled in.

use mlm_corpus::{CorpusError, DomainTokenizer};
use mlm_trainer::model::{MaskedLanguageModel, ModelError};
use serde::Serialize;
use tch::{Kind, Tensor};

/// Why a text could not be filled.
#[derive(Debug, thiserror::Error)]
pub enum FillMaskError {
    #[error("the text {text:?} has {found}, but this model's mask token is {expected}")]
    OtherMaskToken {
        text: String,
        found: &'static str,
        expected: String,
    },
    #[error("no mask token ({expected}) in the text {text:?}")]
    NoMaskToken { text: String, expected: String },
    #[error("fill-mask on {text:?}")]
    Model {
        text: String,
        #[source]
        source: ModelError,
    },
    #[error(transparent)]
    Tokenizer(#[from] CorpusError),
}

/// One candidate for one mask, as the pipeline reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub score: f64,
    pub token: u32,
    pub token_str: String,
    pub sequence: String,
}

/// The top `top_k` candidates of each mask of `text` (one list per mask, in text order).
pub fn fill_mask(
    model: &MaskedLanguageModel,
    tokenizer: &DomainTokenizer,
    text: &str,
    top_k: usize,
) -> Result<Vec<Vec<Candidate>>, FillMaskError> {
    let ids = tokenizer.encode_with_special(text)?;
    let masks = mask_positions(tokenizer, text, &ids)?;
    let probabilities = mask_probabilities(model, text, &ids, &masks)?;
    let k = top_k.clamp(1, tokenizer.vocab_size() as usize) as i64;
    let (scores, tokens) = probabilities.topk(k, -1, true, true);
    let mut per_mask = Vec::new();
    for (row, &position) in masks.iter().enumerate() {
        let mut candidates = Vec::new();
        for j in 0..k {
            let token = tokens.int64_value(&[row as i64, j]) as u32;
            let mut filled = ids.clone();
            filled[position] = token;
            candidates.push(Candidate {
                score: scores.double_value(&[row as i64, j]),
                token,
                token_str: tokenizer.decode(&[token])?,
                sequence: tokenizer.decode(&filled)?,
            });
        }
        per_mask.push(candidates);
    }
    Ok(per_mask)
}

/// Where the model's mask token is in `ids`; an error names the expected token (and the other
/// family's, when the text has that one instead).
fn mask_positions(
    tokenizer: &DomainTokenizer,
    text: &str,
    ids: &[u32],
) -> Result<Vec<usize>, FillMaskError> {
    let mask_id = tokenizer.special_ids().mask;
    let masks: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == mask_id).collect();
    if !masks.is_empty() {
        return Ok(masks);
    }
    let expected = tokenizer.id_to_token(mask_id).unwrap_or_default();
    let other = ["[MASK]", "<mask>"]
        .into_iter()
        .find(|other| *other != expected && text.contains(other));
    Err(match other {
        Some(found) => FillMaskError::OtherMaskToken {
            text: text.to_owned(),
            found,
            expected,
        },
        None => FillMaskError::NoMaskToken {
            text: text.to_owned(),
            expected,
        },
    })
}

/// The softmax over the vocabulary at each mask, `[masks, V]`.
fn mask_probabilities(
    model: &MaskedLanguageModel,
    text: &str,
    ids: &[u32],
    masks: &[usize],
) -> Result<Tensor, FillMaskError> {
    let input: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let input_ids = Tensor::from_slice(&input).view([1, -1]);
    let attention = input_ids.ones_like();
    // A text longer than the position table, or a tokenizer larger than the model's
    // vocabulary, is an error here rather than a libtorch panic in the forward.
    model
        .check_inputs(&input_ids, &attention)
        .map_err(|source| FillMaskError::Model {
            text: text.to_owned(),
            source,
        })?;
    let positions: Vec<i64> = masks.iter().map(|&i| i as i64).collect();
    let positions = Tensor::from_slice(&positions);
    Ok(tch::no_grad(|| {
        model
            .masked_logits(&input_ids, &attention, &positions, false)
            .to_kind(Kind::Float)
            .softmax(-1, Kind::Float)
    }))
}
