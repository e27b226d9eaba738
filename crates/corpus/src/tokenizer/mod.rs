//! The tokenizer a corpus is prepared with: Hugging Face `tokenizers` loaded from a
//! `tokenizer.json`, or built from a WordPiece `vocab.txt` exactly as transformers'
//! `BertTokenizerFast` converts one (convert_slow_tokenizer.py, `BertConverter`).

mod bert;
mod fast_bert;
mod fingerprint;
mod hf_files;
pub mod train;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::CorpusError;

pub use bert::bert_wordpiece_tokenizer;

/// The BERT special tokens every tokenizer of this project must have (by these names, or
/// the RoBERTa names `<s>`, `</s>`, `<pad>`, `<mask>`, `<unk>`).
pub const BERT_SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Ids of the special tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    pub cls: u32,
    pub sep: u32,
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
    fn bert() -> Self {
        Self {
            cls: "[CLS]".into(),
            sep: "[SEP]".into(),
            pad: "[PAD]".into(),
            mask: "[MASK]".into(),
            unk: "[UNK]".into(),
        }
    }
    fn roberta() -> Self {
        Self {
            cls: "<s>".into(),
            sep: "</s>".into(),
            pad: "<pad>".into(),
            mask: "<mask>".into(),
            unk: "<unk>".into(),
        }
    }
}

/// A loaded tokenizer with what the pipeline needs to know about it.
#[derive(Clone)]
pub struct DomainTokenizer {
    inner: Tokenizer,
    source: PathBuf,
    names: SpecialTokens,
    special: SpecialIds,
    vocab_size: u32,
    lowercase: bool,
    model_max_length: Option<usize>,
    fingerprint: String,
    /// The exact fast path of BERT WordPiece set-ups (None: always the full tokenizer).
    fast: Option<fast_bert::FastBert>,
}

impl std::fmt::Debug for DomainTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size)
            .field("lowercase", &self.lowercase)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// What `tokenizer_config.json` says (the keys we use).
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfigJson {
    do_lower_case: Option<bool>,
    model_max_length: Option<f64>,
}

fn read_tokenizer_config(dir: &Path) -> Result<TokenizerConfigJson, CorpusError> {
    let path = dir.join("tokenizer_config.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| CorpusError::json(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenizerConfigJson::default()),
        Err(e) => Err(CorpusError::io("cannot read", &path, e)),
    }
}

impl DomainTokenizer {
    /// The tokenizer file of a directory: `tokenizer.json`, else `vocab.txt`, else `None`.
    pub fn file_in(dir: &Path) -> Option<PathBuf> {
        ["tokenizer.json", "vocab.txt"]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
    }

    /// Loads `tokenizer.json`, `vocab.txt`, or a directory holding either (`tokenizer.json`
    /// preferred), with the directory's `tokenizer_config.json` (`do_lower_case`,
    /// `model_max_length`) when present. `lowercase` applies to a `vocab.txt`; for a
    /// `tokenizer.json` it must agree with its normaliser.
    pub fn load(path: &Path, lowercase: Option<bool>) -> Result<Self, CorpusError> {
        let (file, dir) = if path.is_dir() {
            let Some(file) = Self::file_in(path) else {
                return Err(CorpusError::tokenizer(
                    Some(path),
                    "the directory holds neither tokenizer.json nor vocab.txt",
                    None,
                ));
            };
            (file, path.to_path_buf())
        } else if path.is_file() {
            (
                path.to_path_buf(),
                path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            )
        } else {
            return Err(CorpusError::tokenizer(
                Some(path),
                "no such file or directory",
                None,
            ));
        };
        let config = read_tokenizer_config(&dir)?;
        let is_json = file.extension().is_some_and(|e| e == "json");
        let inner = if is_json {
            let mut t = Tokenizer::from_file(&file).map_err(|e| {
                CorpusError::tokenizer(Some(&file), "not a valid tokenizer.json", Some(e))
            })?;
            // Packing cuts sequences itself: a truncation or padding setting in the file
            // would silently cut documents.
            t.with_truncation(None).map_err(|e| {
                CorpusError::tokenizer(Some(&file), "cannot disable truncation", Some(e))
            })?;
            t.with_padding(None);
            t
        } else {
            let lower = lowercase.or(config.do_lower_case).unwrap_or(true);
            bert_wordpiece_tokenizer(&file, lower)?
        };
        let tokenizer = Self::from_tokenizer(inner, &file)?;
        if is_json
            && let Some(wanted) = lowercase
            && wanted != tokenizer.lowercase
        {
            return Err(CorpusError::tokenizer(
                Some(&file),
                format!(
                    "lowercase = {wanted} was asked but this tokenizer.json {} lowercase",
                    if tokenizer.lowercase {
                        "does"
                    } else {
                        "does not"
                    }
                ),
                None,
            ));
        }
        // transformers writes a huge sentinel when a tokenizer has no limit.
        let model_max_length = config
            .model_max_length
            .filter(|&m| m > 0.0 && m < 1e9)
            .map(|m| m as usize);
        Ok(Self {
            model_max_length,
            ..tokenizer
        })
    }

    /// Wraps an in-memory tokenizer (`source` names it in messages).
    pub fn from_tokenizer(inner: Tokenizer, source: &Path) -> Result<Self, CorpusError> {
        let err = |m: String| CorpusError::tokenizer(Some(source), m, None);
        let names = [SpecialTokens::bert(), SpecialTokens::roberta()]
            .into_iter()
            .find(|n| inner.token_to_id(&n.cls).is_some() && inner.token_to_id(&n.mask).is_some())
            .ok_or_else(|| err("has neither [CLS]/[MASK] nor <s>/<mask> tokens".into()))?;
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| err(format!("has no {token} token")))
        };
        let (cls, sep, pad, mask, unk) = (
            id(&names.cls)?,
            id(&names.sep)?,
            id(&names.pad)?,
            id(&names.mask)?,
            id(&names.unk)?,
        );
        let mut all: Vec<u32> = vec![cls, sep, pad, mask, unk];
        all.extend(
            inner
                .get_added_tokens_decoder()
                .iter()
                .filter(|(_, t)| t.special)
                .map(|(id, _)| *id),
        );
        all.sort_unstable();
        all.dedup();
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m + 1);
        if vocab_size < 6 {
            return Err(err(format!("has a vocabulary of {vocab_size} tokens")));
        }
        let lowercase = fingerprint::lowercases(&inner);
        let fingerprint = fingerprint::fingerprint(&inner).map_err(|e| {
            CorpusError::tokenizer(Some(source), "cannot compute the fingerprint", Some(e))
        })?;
        Ok(Self {
            inner,
            source: source.to_path_buf(),
            names,
            special: SpecialIds {
                cls,
                sep,
                pad,
                mask,
                unk,
                all,
            },
            vocab_size,
            lowercase,
            model_max_length: None,
            fingerprint,
            fast: None,
        }
        .with_fast_path())
    }

    fn with_fast_path(mut self) -> Self {
        self.fast = fast_bert::FastBert::new(&self.inner);
        self
    }

    /// Whether the exact BERT fast path is in use (see tokenizer/fast_bert.rs).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Hash of the vocabulary, the normaliser / pre-tokenizer settings, the added tokens and
    /// the ids of a probe text; unchanged when the same tokenizer is saved again.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Size of the id space (largest id + 1): the model's `vocab_size`.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    pub fn special_ids(&self) -> &SpecialIds {
        &self.special
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.names
    }

    /// Whether the normaliser lowercases.
    pub fn do_lower_case(&self) -> bool {
        self.lowercase
    }

    /// `model_max_length` of the tokenizer's `tokenizer_config.json`, when it gives one.
    pub fn model_max_length(&self) -> Option<usize> {
        self.model_max_length
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The wrapped Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Byte offsets (`encode`, not `encode_fast`): `encode_fast` leaves word ids empty.
    fn encode_raw(&self, text: &str, special: bool) -> Result<tokenizers::Encoding, CorpusError> {
        self.inner
            .encode(text, special)
            .map_err(|e| CorpusError::tokenizer(Some(&self.source), "cannot encode text", Some(e)))
    }

    /// Token ids of `text`, no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, CorpusError> {
        Ok(self.encode_raw(text, false)?.get_ids().to_vec())
    }

    /// Token ids of `text` as `[CLS] ... [SEP]` (the tokenizer's post-processor).
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>, CorpusError> {
        Ok(self.encode_raw(text, true)?.get_ids().to_vec())
    }

    /// Token ids of `text` (no special tokens) and whether each token starts a word: the
    /// first token, and every token whose word id (the pre-tokenizer's word) differs from
    /// the previous token's; a token without a word id counts as its own word.
    /// BERT WordPiece set-ups take an exact fast path (tokenizer/fast_bert.rs).
    pub fn encode_words(&self, text: &str) -> Result<(Vec<u32>, Vec<bool>), CorpusError> {
        let Some(fast) = &self.fast else {
            let encoding = self.encode_raw(text, false)?;
            return Ok((
                encoding.get_ids().to_vec(),
                word_starts(encoding.get_word_ids()),
            ));
        };
        let mut ids = Vec::with_capacity(text.len() / 4);
        let mut starts = Vec::with_capacity(text.len() / 4);
        fast.encode_words(text, &mut ids, &mut starts, |piece, ids, starts| {
            let encoding = self.encode_raw(piece, false)?;
            ids.extend_from_slice(encoding.get_ids());
            starts.extend(word_starts(encoding.get_word_ids()));
            Ok::<(), CorpusError>(())
        })?;
        Ok((ids, starts))
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Text of `ids` without special tokens, as transformers' `decode(skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, CorpusError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| CorpusError::tokenizer(Some(&self.source), "cannot decode ids", Some(e)))
    }

    /// Writes `tokenizer.json`, `vocab.txt` (WordPiece), `tokenizer_config.json` and
    /// `special_tokens_map.json` into `dir`, which transformers' `AutoTokenizer` loads.
    pub fn write_hf_files(&self, dir: &Path, model_max_length: usize) -> Result<(), CorpusError> {
        hf_files::write(self, dir, model_max_length)
    }
}

/// Word starts from word ids (see [`DomainTokenizer::encode_words`]).
pub fn word_starts(word_ids: &[Option<u32>]) -> Vec<bool> {
    let mut out = Vec::with_capacity(word_ids.len());
    let mut previous: Option<u32> = None;
    for (i, &w) in word_ids.iter().enumerate() {
        out.push(i == 0 || w.is_none() || w != previous);
        previous = w;
    }
    out
}

#[cfg(test)]
mod tests;
