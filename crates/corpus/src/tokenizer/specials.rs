//! The special tokens of a tokenizer: which token plays `cls`, `sep`, `pad`, `mask` and `unk`,
//! and their ids. Packing wraps sequences in the tokenizer's own cls / sep (`[CLS]`/`[SEP]`
//! for BERT and ModernBERT, `<s>`/`</s>` for RoBERTa, XLM-R and CamemBERT), the trainer pads with its pad id
//! (RoBERTa's position ids also start after it) and masks with its mask id.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::hf_config::HfTokenizerConfig;
use crate::error::CorpusError;

/// The BERT special tokens, by name (bert-base, PubMedBERT, DistilBERT, `vocab train`'s
/// WordPiece).
pub const BERT_SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The RoBERTa special tokens, in roberta-base's id order (`<s>` 0, `<pad>` 1, `</s>` 2,
/// `<unk>` 3; `<mask>` is the last id). XLM-R and CamemBERT use the same names.
pub const ROBERTA_SPECIAL_TOKENS: [&str; 5] = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

/// ModernBERT's special tokens (BERT's names), in answerdotai/ModernBERT-base's id order:
/// `[UNK]` 50280, `[CLS]` 50281, `[SEP]` 50282, `[PAD]` 50283, `[MASK]` 50284, after its BPE
/// entries (`vocab train`'s `layout = "modernbert"` appends them in this order).
pub const MODERNBERT_SPECIAL_TOKENS: [&str; 5] = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"];

/// Ids of the special tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    /// First token of every sequence (`[CLS]`, `<s>`).
    pub cls: u32,
    /// Last token of every sequence and the separator between documents (`[SEP]`, `</s>`).
    pub sep: u32,
    /// Padding (`[PAD]`, `<pad>`): also RoBERTa's `padding_idx` (its position ids start at
    /// pad + 1, modeling_roberta.py `create_position_ids_from_input_ids`).
    pub pad: u32,
    pub mask: u32,
    pub unk: u32,
    /// Every special token id (the five above and any other added special token), ascending.
    pub all: Vec<u32>,
}

/// The names of the five special tokens in a tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub cls: String,
    pub sep: String,
    pub pad: String,
    pub mask: String,
    pub unk: String,
}

impl SpecialTokens {
    pub fn bert() -> Self {
        let [pad, unk, cls, sep, mask] = BERT_SPECIAL_TOKENS.map(String::from);
        Self {
            cls,
            sep,
            pad,
            mask,
            unk,
        }
    }

    pub fn roberta() -> Self {
        let [cls, pad, sep, unk, mask] = ROBERTA_SPECIAL_TOKENS.map(String::from);
        Self {
            cls,
            sep,
            pad,
            mask,
            unk,
        }
    }

    /// (role, name) pairs.
    pub fn roles(&self) -> [(&'static str, &str); 5] {
        [
            ("cls", &self.cls),
            ("sep", &self.sep),
            ("pad", &self.pad),
            ("mask", &self.mask),
            ("unk", &self.unk),
        ]
    }

    /// Whether these are RoBERTa's names (`<s>`, `</s>`...): its bos / eos are then cls / sep.
    pub fn is_roberta(&self) -> bool {
        *self == Self::roberta()
    }
}

/// The special tokens of `inner`: the names its `tokenizer_config.json` /
/// `special_tokens_map.json` give (`cls_token`...), else BERT's or RoBERTa's names,
/// whichever family's `cls` and `mask` the vocabulary holds.
pub fn detect(
    inner: &Tokenizer,
    config: &HfTokenizerConfig,
    source: &Path,
) -> Result<(SpecialTokens, SpecialIds), CorpusError> {
    let err = |m: String| CorpusError::tokenizer(Some(source), m, None);
    let family = [SpecialTokens::bert(), SpecialTokens::roberta()]
        .into_iter()
        .find(|n| inner.token_to_id(&n.cls).is_some() && inner.token_to_id(&n.mask).is_some());
    let name = |role: &str, default: Option<&String>| -> Result<String, CorpusError> {
        match (config.token(role), default) {
            (Some(token), _) => Ok(token.content.clone()),
            (None, Some(default)) => Ok(default.clone()),
            (None, None) => Err(err(format!(
                "has neither [CLS]/[MASK] nor <s>/<mask> tokens, and no {role}_token in \
                 tokenizer_config.json or special_tokens_map.json"
            ))),
        }
    };
    let names = SpecialTokens {
        cls: name("cls", family.as_ref().map(|f| &f.cls))?,
        sep: name("sep", family.as_ref().map(|f| &f.sep))?,
        pad: name("pad", family.as_ref().map(|f| &f.pad))?,
        mask: name("mask", family.as_ref().map(|f| &f.mask))?,
        unk: name("unk", family.as_ref().map(|f| &f.unk))?,
    };
    let mut ids = [0u32; 5];
    for (slot, (role, token)) in ids.iter_mut().zip(names.roles()) {
        *slot = inner.token_to_id(token).ok_or_else(|| {
            err(format!(
                "has no {token} token (its {role}_token) in the vocabulary"
            ))
        })?;
    }
    let [cls, sep, pad, mask, unk] = ids;
    let mut all: Vec<u32> = ids.to_vec();
    all.extend(
        inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id),
    );
    all.sort_unstable();
    all.dedup();
    let special = SpecialIds {
        cls,
        sep,
        pad,
        mask,
        unk,
        all,
    };
    Ok((names, special))
}
