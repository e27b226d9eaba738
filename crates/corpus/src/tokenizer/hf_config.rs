//! What a tokenizer directory's `tokenizer_config.json` and `special_tokens_map.json` say
//! (the keys this crate uses), read as transformers' `from_pretrained` reads them: a special
//! token is a string or an `AddedToken` object (`{"content": ..., "lstrip": ...}`), and
//! `special_tokens_map.json` wins over `tokenizer_config.json`
//! (tokenization_utils_base.py, `_from_pretrained`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::CorpusError;

/// A special token as transformers writes it: `"<mask>"` or an `AddedToken` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub content: String,
    pub lstrip: bool,
    pub rstrip: bool,
    pub single_word: bool,
    pub normalized: bool,
    pub special: bool,
}

impl TokenSpec {
    /// A plain special token: no stripping, not normalised (transformers' defaults).
    pub fn plain(content: &str) -> Self {
        Self {
            content: content.to_string(),
            lstrip: false,
            rstrip: false,
            single_word: false,
            normalized: false,
            special: true,
        }
    }

    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(Self::plain(s)),
            Value::Object(m) => {
                let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
                Some(Self {
                    content: m.get("content")?.as_str()?.to_string(),
                    lstrip: flag("lstrip"),
                    rstrip: flag("rstrip"),
                    single_word: flag("single_word"),
                    normalized: flag("normalized"),
                    // Without the flag: special (the `*_token` keys name special tokens).
                    special: m.get("special").and_then(Value::as_bool).unwrap_or(true),
                })
            }
            _ => None,
        }
    }
}

/// The keys of `tokenizer_config.json` (and `special_tokens_map.json`) this crate reads.
#[derive(Debug, Default)]
pub struct HfTokenizerConfig {
    pub do_lower_case: Option<bool>,
    pub model_max_length: Option<f64>,
    /// ByteLevel / Metaspace: a space before the first word (RoBERTa: false, XLM-R: true).
    pub add_prefix_space: Option<bool>,
    pub trim_offsets: Option<bool>,
    /// What the tokenizer returns (ModernBERT-base: `["input_ids", "attention_mask"]`, its
    /// model takes no `token_type_ids`); kept so the files written again say the same.
    pub model_input_names: Option<Vec<String>>,
    /// Whether `decode` removes the space before punctuation (ModernBERT-base: true).
    pub clean_up_tokenization_spaces: Option<bool>,
    /// `cls_token`, `sep_token`, `pad_token`, `mask_token`, `unk_token`, `bos_token`,
    /// `eos_token` by role (`cls`, `sep`...).
    pub tokens: BTreeMap<&'static str, TokenSpec>,
    /// `added_tokens_decoder`: id -> token, as transformers >= 4.34 saves it.
    pub added_tokens: BTreeMap<u32, TokenSpec>,
}

/// The special-token roles of transformers (`SPECIAL_TOKENS_ATTRIBUTES`) this crate uses.
pub const ROLES: [&str; 7] = ["cls", "sep", "pad", "mask", "unk", "bos", "eos"];

fn read_object(path: &Path) -> Result<Option<BTreeMap<String, Value>>, CorpusError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let keys = serde_json::from_str(&text).map_err(|e| CorpusError::json(path, e))?;
            Ok(Some(keys))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CorpusError::io("cannot read", path, e)),
    }
}

fn wrong_type(path: &Path, key: &str, wanted: &str) -> CorpusError {
    CorpusError::tokenizer(Some(path), format!("`{key}` is not {wanted}"), None)
}

impl HfTokenizerConfig {
    /// Reads `dir/tokenizer_config.json` and `dir/special_tokens_map.json` (both optional).
    pub fn read(dir: &Path) -> Result<Self, CorpusError> {
        let mut config = Self::default();
        let path = dir.join("tokenizer_config.json");
        if let Some(keys) = read_object(&path)? {
            config.read_config_keys(&path, &keys)?;
            config.read_tokens(&path, &keys)?;
        }
        let path = dir.join("special_tokens_map.json");
        if let Some(keys) = read_object(&path)? {
            config.read_tokens(&path, &keys)?;
        }
        Ok(config)
    }

    fn read_config_keys(
        &mut self,
        path: &Path,
        keys: &BTreeMap<String, Value>,
    ) -> Result<(), CorpusError> {
        let boolean = |key: &str| match keys.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(path, key, "true or false")),
        };
        self.do_lower_case = boolean("do_lower_case")?;
        self.add_prefix_space = boolean("add_prefix_space")?;
        self.trim_offsets = boolean("trim_offsets")?;
        self.clean_up_tokenization_spaces = boolean("clean_up_tokenization_spaces")?;
        self.model_input_names = match keys.get("model_input_names") {
            None | Some(Value::Null) => None,
            Some(Value::Array(names)) => Some(
                names
                    .iter()
                    .map(|n| n.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| wrong_type(path, "model_input_names", "a list of strings"))?,
            ),
            Some(_) => return Err(wrong_type(path, "model_input_names", "a list of strings")),
        };
        self.model_max_length = match keys.get("model_max_length") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| wrong_type(path, "model_max_length", "a number"))?,
            ),
        };
        if let Some(Value::Object(decoder)) = keys.get("added_tokens_decoder") {
            for (id, token) in decoder {
                let key = format!("added_tokens_decoder.{id}");
                let id: u32 = id
                    .parse()
                    .map_err(|_| wrong_type(path, &key, "keyed by a token id"))?;
                let token = TokenSpec::from_value(token)
                    .ok_or_else(|| wrong_type(path, &key, "a token"))?;
                self.added_tokens.insert(id, token);
            }
        }
        Ok(())
    }

    fn read_tokens(
        &mut self,
        path: &Path,
        keys: &BTreeMap<String, Value>,
    ) -> Result<(), CorpusError> {
        for role in ROLES {
            let key = format!("{role}_token");
            match keys.get(&key) {
                None | Some(Value::Null) => {}
                Some(value) => {
                    let token = TokenSpec::from_value(value)
                        .ok_or_else(|| wrong_type(path, &key, "a token"))?;
                    self.tokens.insert(role, token);
                }
            }
        }
        Ok(())
    }

    /// The configured token of `role` (`"cls"`, `"mask"`...), if any.
    pub fn token(&self, role: &str) -> Option<&TokenSpec> {
        self.tokens.get(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn reads_strings_objects_and_the_map_wins() {
        let dir = TempDir::new("hf-config");
        dir.write(
            "tokenizer_config.json",
            r#"{"do_lower_case": false, "model_max_length": 514, "add_prefix_space": true,
                "model_input_names": ["input_ids", "attention_mask"],
                "clean_up_tokenization_spaces": true,
                "cls_token": "<s>", "mask_token": {"content": "<m>", "lstrip": true},
                "added_tokens_decoder": {"7": {"content": "<mask>", "lstrip": true, "special": true}}}"#,
        );
        dir.write(
            "special_tokens_map.json",
            r#"{"mask_token": {"content": "<mask>", "lstrip": true, "normalized": false}}"#,
        );
        let c = HfTokenizerConfig::read(dir.path()).unwrap();
        assert_eq!(c.do_lower_case, Some(false));
        assert_eq!(c.model_max_length, Some(514.0));
        assert_eq!(c.add_prefix_space, Some(true));
        assert_eq!(
            c.model_input_names.as_deref(),
            Some(&["input_ids".to_string(), "attention_mask".to_string()][..])
        );
        assert_eq!(c.clean_up_tokenization_spaces, Some(true));
        assert_eq!(c.token("cls"), Some(&TokenSpec::plain("<s>")));
        let mask = c.token("mask").unwrap();
        assert_eq!((mask.content.as_str(), mask.lstrip), ("<mask>", true));
        assert!(c.added_tokens[&7].lstrip);
        assert!(c.token("sep").is_none());

        dir.write("tokenizer_config.json", r#"{"add_prefix_space": "yes"}"#);
        let e = HfTokenizerConfig::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer_config.json")
                && e.contains("`add_prefix_space` is not true or false"),
            "{e}"
        );
        dir.write(
            "tokenizer_config.json",
            r#"{"model_input_names": ["input_ids", 3]}"#,
        );
        let e = HfTokenizerConfig::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("`model_input_names` is not a list of strings"),
            "{e}"
        );
    }
}
