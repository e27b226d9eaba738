//! The tokenizer a corpus is prepared with: Hugging Face `tokenizers` loaded from a
//! `tokenizer.json` (any model: WordPiece, byte-level BPE, Unigram), or built from the files
//! of a "slow" tokenizer exactly as transformers builds its fast tokenizer from them: a
//! WordPiece `vocab.txt` (`BertTokenizer`, bert.rs) or a RoBERTa `vocab.json` + `merges.txt`
//! (`RobertaTokenizer`, roberta.rs).

mod ascii_front;
mod bert;
mod byte_bpe;
pub mod extend;
pub mod extension;
mod family;
mod fast_bert;
mod fast_split;
mod fingerprint;
mod fx;
mod hf_config;
mod hf_files;
mod load;
mod roberta;
mod segment_cache;
mod segment_table;
mod specials;
pub mod train;
mod unigram_viterbi;
mod wordpiece_trainer;

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::error::CorpusError;

pub use bert::bert_wordpiece_tokenizer;
pub use extension::{AddedKind, EXTENSION_FILE, NewToken, VocabExtension};
pub use family::{HfClass, TokenizerModel, is_byte_level_bpe};
pub use fast_split::FastPathStats;
pub use roberta::roberta_bpe_tokenizer;
pub use specials::{
    BERT_SPECIAL_TOKENS, MODERNBERT_SPECIAL_TOKENS, ROBERTA_SPECIAL_TOKENS, SpecialIds,
    SpecialTokens,
};

use hf_config::HfTokenizerConfig;
use load::TokenizerFiles;

/// A loaded tokenizer with what the pipeline needs to know about it.
#[derive(Clone)]
pub struct DomainTokenizer {
    inner: Tokenizer,
    source: PathBuf,
    model: TokenizerModel,
    names: SpecialTokens,
    special: SpecialIds,
    vocab_size: u32,
    lowercase: bool,
    model_max_length: Option<usize>,
    /// `model_input_names` and `clean_up_tokenization_spaces` of the source's
    /// `tokenizer_config.json`, written back by [`DomainTokenizer::write_hf_files`].
    model_input_names: Option<Vec<String>>,
    clean_up_tokenization_spaces: Option<bool>,
    fingerprint: String,
    /// The exact fast path of BERT WordPiece set-ups (None: always the full tokenizer).
    fast: Option<fast_bert::FastBert>,
    /// The exact split fast path of byte-level BPE and Unigram set-ups (tokenizer/fast_split.rs;
    /// None: WordPiece's is used, or the full tokenizer).
    split: Option<fast_split::FastSplit>,
    /// What `vocab extend` added to a base vocabulary (`vocab-extension.json` beside the
    /// files), if this tokenizer is an extended one.
    extension: Option<VocabExtension>,
}

impl std::fmt::Debug for DomainTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainTokenizer")
            .field("source", &self.source)
            .field("model", &self.model)
            .field("vocab_size", &self.vocab_size)
            .field("lowercase", &self.lowercase)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl DomainTokenizer {
    /// The tokenizer file of a directory: `tokenizer.json`, else `vocab.txt`, else
    /// `vocab.json` (with a `merges.txt`), else `None`.
    pub fn file_in(dir: &Path) -> Option<PathBuf> {
        TokenizerFiles::in_dir(dir).map(|f| f.main_file().to_path_buf())
    }

    /// Loads `tokenizer.json`, `vocab.txt`, `vocab.json` (+ `merges.txt`), or a directory
    /// holding one of them (searched in that order), with the directory's
    /// `tokenizer_config.json` and `special_tokens_map.json` when present: they name the
    /// special tokens (`cls_token`...), `model_max_length`, and for the files of a slow
    /// tokenizer `do_lower_case` (`vocab.txt`) or `add_prefix_space` / `trim_offsets`
    /// (`vocab.json`). `lowercase` applies to a `vocab.txt`; for the other files it must
    /// agree with the normaliser.
    pub fn load(path: &Path, lowercase: Option<bool>) -> Result<Self, CorpusError> {
        let (files, dir) = TokenizerFiles::find(path)?;
        let file = files.main_file();
        let config = HfTokenizerConfig::read(&dir)?;
        let inner = files.build(&config, lowercase)?;
        let tokenizer = Self::from_parts(inner, file, &config)?;
        if !matches!(files, TokenizerFiles::VocabTxt(_))
            && let Some(wanted) = lowercase
            && wanted != tokenizer.lowercase
        {
            let does = if tokenizer.lowercase {
                "does"
            } else {
                "does not"
            };
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            return Err(CorpusError::tokenizer(
                Some(file),
                format!("lowercase = {wanted} was asked but this {name} {does} lowercase"),
                None,
            ));
        }
        // transformers writes a huge sentinel when a tokenizer has no limit.
        let model_max_length = config
            .model_max_length
            .filter(|&m| m > 0.0 && m < 1e9)
            .map(|m| m as usize);
        let extension = VocabExtension::read_in(&dir)?;
        if let Some(extension) = &extension {
            tokenizer.check_extension(extension, &dir)?;
        }
        Ok(Self {
            model_max_length,
            model_input_names: config.model_input_names,
            clean_up_tokenization_spaces: config.clean_up_tokenization_spaces,
            extension,
            ..tokenizer
        })
    }

    /// A sidecar left beside other tokenizer files would make the trainer initialise the
    /// wrong rows: every entry must still be its token's id.
    fn check_extension(&self, extension: &VocabExtension, dir: &Path) -> Result<(), CorpusError> {
        let stale = extension.tokens.iter().find(|t| {
            self.token_to_id(&t.token) != Some(t.id)
                || t.base_ids.iter().any(|&id| id >= extension.base_vocab_size)
        });
        let Some(token) = stale else {
            return Ok(());
        };
        Err(CorpusError::tokenizer(
            Some(&dir.join(EXTENSION_FILE)),
            format!(
                "does not describe the tokenizer beside it ({:?} is not id {} there, or its base \
                 ids are out of range): remove it, or run `mlm-train vocab extend` again",
                token.token, token.id
            ),
            None,
        ))
    }

    /// This tokenizer with `inner` (an extension of its vocabulary by `vocab extend`) in
    /// place of its own: the same special tokens, normaliser and pre-tokenizer.
    pub(crate) fn extended(
        &self,
        inner: Tokenizer,
        extension: VocabExtension,
    ) -> Result<Self, CorpusError> {
        let fingerprint = fingerprint::fingerprint(&inner).map_err(|e| {
            CorpusError::tokenizer(
                Some(&self.source),
                "cannot compute the fingerprint",
                Some(e),
            )
        })?;
        Ok(Self {
            vocab_size: id_space(&inner),
            fingerprint,
            fast: None,
            split: None,
            extension: Some(extension),
            inner,
            ..self.clone()
        }
        .with_fast_path())
    }

    /// What `vocab extend` added, when this is an extended vocabulary.
    pub fn extension(&self) -> Option<&VocabExtension> {
        self.extension.as_ref()
    }

    /// Wraps an in-memory tokenizer (`source` names it in messages); the special tokens are
    /// BERT's or RoBERTa's by name.
    pub fn from_tokenizer(inner: Tokenizer, source: &Path) -> Result<Self, CorpusError> {
        Self::from_parts(inner, source, &HfTokenizerConfig::default())
    }

    fn from_parts(
        inner: Tokenizer,
        source: &Path,
        config: &HfTokenizerConfig,
    ) -> Result<Self, CorpusError> {
        let (names, special) = specials::detect(&inner, config, source)?;
        let model = TokenizerModel::of(&inner).ok_or_else(|| {
            CorpusError::tokenizer(Some(source), "has a model of an unknown type", None)
        })?;
        // The id space, added tokens included: the model's embedding rows. transformers'
        // `len(tokenizer)` counts tokens instead, which is the same unless ids have gaps.
        let vocab_size = id_space(&inner);
        if vocab_size < 6 {
            let message = format!("has a vocabulary of {vocab_size} tokens");
            return Err(CorpusError::tokenizer(Some(source), message, None));
        }
        let lowercase = fingerprint::lowercases(&inner);
        let fingerprint = fingerprint::fingerprint(&inner).map_err(|e| {
            CorpusError::tokenizer(Some(source), "cannot compute the fingerprint", Some(e))
        })?;
        Ok(Self {
            inner,
            source: source.to_path_buf(),
            model,
            names,
            special,
            vocab_size,
            lowercase,
            model_max_length: None,
            model_input_names: None,
            clean_up_tokenization_spaces: None,
            fingerprint,
            fast: None,
            split: None,
            extension: None,
        }
        .with_fast_path())
    }

    fn with_fast_path(mut self) -> Self {
        self.fast = fast_bert::FastBert::new(&self.inner);
        self.split = match self.fast {
            Some(_) => None,
            None => fast_split::FastSplit::new(&self.inner),
        };
        self
    }

    /// Whether the exact BERT WordPiece fast path is in use (see tokenizer/fast_bert.rs).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Whether the exact split fast path of byte-level BPE and Unigram set-ups is in use
    /// (see tokenizer/fast_split.rs).
    pub fn has_split_fast_path(&self) -> bool {
        self.split.is_some()
    }

    /// How often the split fast path has used the library so far (`None` without it).
    pub fn fast_path_stats(&self) -> Option<FastPathStats> {
        self.split.as_ref().map(fast_split::FastSplit::stats)
    }

    /// Hash of the vocabulary, the normaliser / pre-tokenizer settings, the added tokens and
    /// the ids of a probe text; unchanged when the same tokenizer is saved again.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The model: WordPiece, BPE, Unigram or WordLevel.
    pub fn model(&self) -> TokenizerModel {
        self.model
    }

    /// The transformers class that loads this tokenizer's files with the same ids (see
    /// tokenizer/family.rs): written into `tokenizer_config.json`.
    pub fn hf_class(&self) -> HfClass {
        HfClass::of(&self.inner, &self.names)
    }

    /// Size of the id space (largest id + 1), added tokens included: the model's
    /// `vocab_size` (embedding rows).
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

    /// `model_input_names` of the tokenizer's `tokenizer_config.json`, when it gives them.
    pub fn model_input_names(&self) -> Option<&[String]> {
        self.model_input_names.as_deref()
    }

    /// `clean_up_tokenization_spaces` of the tokenizer's `tokenizer_config.json`, if given.
    pub fn clean_up_tokenization_spaces(&self) -> Option<bool> {
        self.clean_up_tokenization_spaces
    }

    /// This tokenizer with the `tokenizer_config.json` keys a family's layout sets (`vocab
    /// train`'s ModernBERT layout: `["input_ids", "attention_mask"]`, true).
    pub(crate) fn with_hf_keys(
        self,
        model_input_names: Option<Vec<String>>,
        clean_up_tokenization_spaces: Option<bool>,
    ) -> Self {
        Self {
            model_input_names,
            clean_up_tokenization_spaces,
            ..self
        }
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
    /// BERT WordPiece set-ups take an exact fast path (tokenizer/fast_bert.rs), byte-level
    /// BPE and Unigram set-ups another (tokenizer/fast_split.rs).
    pub fn encode_words(&self, text: &str) -> Result<(Vec<u32>, Vec<bool>), CorpusError> {
        let mut ids = Vec::with_capacity(text.len() / 4);
        let mut starts = Vec::with_capacity(text.len() / 4);
        let library = |piece: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>| {
            let encoding = self.encode_raw(piece, false)?;
            ids.extend_from_slice(encoding.get_ids());
            starts.extend(word_starts(encoding.get_word_ids()));
            Ok::<(), CorpusError>(())
        };
        if let Some(fast) = &self.fast {
            fast.encode_words(text, &mut ids, &mut starts, library)?;
        } else if let Some(split) = &self.split {
            split.encode_words(&self.inner, text, &mut ids, &mut starts, library)?;
        } else {
            return self.encode_words_general(text);
        }
        Ok((ids, starts))
    }

    /// [`DomainTokenizer::encode_words`] through the `tokenizers` pipeline alone, never a
    /// fast path: the reference of the differential tests and the fuzz target.
    pub fn encode_words_general(&self, text: &str) -> Result<(Vec<u32>, Vec<bool>), CorpusError> {
        let encoding = self.encode_raw(text, false)?;
        Ok((
            encoding.get_ids().to_vec(),
            word_starts(encoding.get_word_ids()),
        ))
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

    /// Writes the files transformers' `AutoTokenizer.from_pretrained(dir)` loads with the
    /// same ids into `dir`: `tokenizer.json`, the family's own files (`vocab.txt` for BERT
    /// WordPiece, `vocab.json` + `merges.txt` for RoBERTa byte-level BPE),
    /// `tokenizer_config.json` (the transformers class, see [`HfClass`]) and
    /// `special_tokens_map.json`. Returns the names written.
    pub fn write_hf_files(
        &self,
        dir: &Path,
        model_max_length: usize,
    ) -> Result<Vec<String>, CorpusError> {
        hf_files::write(self, dir, model_max_length)
    }
}

/// Largest id + 1 over the model vocabulary and the added tokens.
fn id_space(inner: &Tokenizer) -> u32 {
    inner
        .get_vocab(true)
        .values()
        .copied()
        .max()
        .map_or(0, |m| m + 1)
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
