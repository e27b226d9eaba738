//! Special tokens and the vocabulary tables built from them: which ids may be selected, and
//! which ids a random replacement draws from.

use serde::{Deserialize, Serialize};

use crate::MaskingError;

/// The ids the masker must know. `special_ids` lists every special token ([CLS], [SEP],
/// [PAD], [MASK], [UNK], ...); pad and mask are added to it if missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SpecialTokens {
    pub vocab_size: u32,
    pub pad_id: u32,
    pub mask_id: u32,
    pub special_ids: Vec<u32>,
}

impl SpecialTokens {
    /// From a tokenizer lookup that may have found no pad or mask token: a missing mask
    /// token is an error (as in `DataCollatorForLanguageModeling.__post_init__`).
    pub fn new(
        vocab_size: u32,
        pad_id: Option<u32>,
        mask_id: Option<u32>,
        special_ids: Vec<u32>,
    ) -> Result<Self, MaskingError> {
        let mask_id = mask_id.ok_or(MaskingError::MissingMaskToken)?;
        let pad_id = pad_id.ok_or(MaskingError::MissingPadToken)?;
        let special = Self {
            vocab_size,
            pad_id,
            mask_id,
            special_ids,
        };
        special.validate()?;
        Ok(special)
    }

    /// Every id in range, mask distinct from pad, a non-empty vocabulary.
    pub fn validate(&self) -> Result<(), MaskingError> {
        let vocab_size = self.vocab_size;
        if vocab_size == 0 {
            return Err(MaskingError::EmptyVocabulary);
        }
        let check = |key: String, id: u32| {
            if id < vocab_size {
                Ok(())
            } else {
                Err(MaskingError::SpecialIdOutOfRange {
                    key,
                    id,
                    vocab_size,
                })
            }
        };
        check("mask_id".into(), self.mask_id)?;
        check("pad_id".into(), self.pad_id)?;
        for (i, &id) in self.special_ids.iter().enumerate() {
            check(format!("special_ids[{i}]"), id)?;
        }
        if self.mask_id == self.pad_id {
            return Err(MaskingError::MaskIsPad(self.mask_id));
        }
        Ok(())
    }
}

/// Per-id facts the masking loop looks up: one bit per id (a 30 k vocabulary is 4 KiB, in L1)
/// and the sorted non-special ids random replacements draw from.
#[derive(Debug, Clone)]
pub(crate) struct VocabTable {
    vocab_size: usize,
    unmaskable: Vec<u64>,
    replacements: Vec<u32>,
}

impl VocabTable {
    pub(crate) fn new(special: &SpecialTokens) -> Self {
        let vocab_size = special.vocab_size as usize;
        // One extra bit, always set, at index vocab_size: out-of-range ids are clamped onto it,
        // so the lookup needs no branch.
        let mut unmaskable = vec![0u64; (vocab_size + 1).div_ceil(64)];
        unmaskable[vocab_size >> 6] |= 1 << (vocab_size & 63);
        let ids = special
            .special_ids
            .iter()
            .chain([&special.pad_id, &special.mask_id]);
        for &id in ids {
            let id = id as usize;
            if id < vocab_size {
                unmaskable[id >> 6] |= 1 << (id & 63);
            }
        }
        let replacements = (0..special.vocab_size)
            .filter(|&id| unmaskable[id as usize >> 6] >> (id & 63) & 1 == 0)
            .collect();
        Self {
            vocab_size,
            unmaskable,
            replacements,
        }
    }

    /// May this id be selected? Special tokens, pad and mask never; ids outside the
    /// vocabulary (corrupt input) are never selected either, so they cannot become labels.
    #[inline(always)]
    pub(crate) fn maskable(&self, id: u32) -> bool {
        let id = (id as usize).min(self.vocab_size);
        self.unmaskable[id >> 6] >> (id & 63) & 1 == 0
    }

    /// The non-special ids, ascending.
    pub(crate) fn replacements(&self) -> &[u32] {
        &self.replacements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bert_like() -> SpecialTokens {
        SpecialTokens {
            vocab_size: 200,
            pad_id: 0,
            mask_id: 103,
            special_ids: vec![100, 101, 102],
        }
    }

    #[test]
    fn table_marks_specials_pad_and_mask() {
        let t = VocabTable::new(&bert_like());
        for id in [0, 100, 101, 102, 103, 200, 5000, u32::MAX] {
            assert!(!t.maskable(id), "{id}");
        }
        for id in [1, 64, 99, 104, 199] {
            assert!(t.maskable(id), "{id}");
        }
        assert_eq!(t.replacements().len(), 195);
        assert!(t.replacements().iter().all(|&id| t.maskable(id)));
    }

    #[test]
    fn errors_name_the_id() {
        let mut s = bert_like();
        s.special_ids.push(250);
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "special token special_ids[3] = 250 is out of range for vocab_size 200"
        );
        let s = SpecialTokens {
            mask_id: 200,
            ..bert_like()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("special token mask_id = 200")
        );
        let s = SpecialTokens {
            mask_id: 0,
            ..bert_like()
        };
        assert_eq!(s.validate().unwrap_err(), MaskingError::MaskIsPad(0));
        assert_eq!(
            SpecialTokens::new(200, Some(0), None, vec![]).unwrap_err(),
            MaskingError::MissingMaskToken
        );
        assert!(
            SpecialTokens::new(200, Some(0), None, vec![])
                .unwrap_err()
                .to_string()
                .contains("no mask token")
        );
        assert_eq!(
            SpecialTokens::new(200, None, Some(1), vec![]).unwrap_err(),
            MaskingError::MissingPadToken
        );
        assert_eq!(
            SpecialTokens::new(0, Some(0), Some(1), vec![]).unwrap_err(),
            MaskingError::EmptyVocabulary
        );
        SpecialTokens::new(200, Some(0), Some(103), vec![101, 102]).unwrap();
    }
}
