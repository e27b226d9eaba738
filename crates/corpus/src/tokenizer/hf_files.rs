//! Writing a tokenizer as the files transformers' `AutoTokenizer.from_pretrained(dir)` loads
//! with the same ids: always `tokenizer.json`, plus the slow tokenizer's own files where the
//! family has them (`vocab.txt` for WordPiece; `vocab.json` + `merges.txt` for byte-level
//! BPE, as roberta-base ships them), `tokenizer_config.json` with the class that rebuilds
//! this exact tokenizer (tokenizer/family.rs) and the keys that class reads, and
//! `special_tokens_map.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::{DomainTokenizer, HfClass};
use crate::error::CorpusError;
use crate::fsutil::{write_atomic, write_json};

/// The model vocabulary by id, when its ids are exactly 0..n.
fn vocab_by_id(tokenizer: &DomainTokenizer) -> Option<Vec<String>> {
    let vocab = tokenizer.inner().get_vocab(false);
    let mut by_id: Vec<Option<String>> = vec![None; vocab.len()];
    for (token, id) in vocab {
        *by_id.get_mut(id as usize)? = Some(token);
    }
    by_id.into_iter().collect()
}

/// `vocab.txt`: one token per line, the line number is the id.
fn vocab_txt(tokenizer: &DomainTokenizer) -> Option<String> {
    let tokens = vocab_by_id(tokenizer)?;
    Some(tokens.iter().map(|t| format!("{t}\n")).collect())
}

/// `vocab.json` (token -> id, in id order; the added tokens too, as roberta-base's has
/// `<mask>`) and `merges.txt` (`#version: 0.2` then one `left right` pair per line, the form
/// GPT-2 and RoBERTa ship and tokenizers' `BPE.read_file` reads).
fn bpe_files(tokenizer: &DomainTokenizer) -> Result<(String, String), CorpusError> {
    let err = |m: &str| CorpusError::tokenizer(Some(tokenizer.source()), m.to_string(), None);
    let mut vocab: Vec<(String, u32)> = tokenizer.inner().get_vocab(true).into_iter().collect();
    vocab.sort_by_key(|(_, id)| *id);
    let map: serde_json::Map<String, Value> =
        vocab.into_iter().map(|(t, id)| (t, json!(id))).collect();
    let model = serde_json::to_value(tokenizer.inner().get_model())
        .map_err(|_| err("cannot serialise the BPE model"))?;
    let mut merges = String::from("#version: 0.2\n");
    for merge in model["merges"]
        .as_array()
        .ok_or_else(|| err("has no merges"))?
    {
        // tokenizers writes a merge as ["a", "b"] (older files: "a b").
        let pair = match merge {
            Value::Array(p) if p.len() == 2 => format!(
                "{} {}",
                p[0].as_str().unwrap_or(""),
                p[1].as_str().unwrap_or("")
            ),
            Value::String(s) => s.clone(),
            _ => return Err(err("has a malformed merge")),
        };
        if pair.split(' ').count() != 2 || pair.contains('\n') {
            return Err(err(
                "has a merge with a space or newline, which merges.txt cannot hold",
            ));
        }
        merges.push_str(&pair);
        merges.push('\n');
    }
    let vocab_json = serde_json::to_string(&Value::Object(map))
        .map_err(|_| err("cannot serialise vocab.json"))?;
    Ok((vocab_json, merges))
}

/// A special token as transformers saves it: a string, or an `AddedToken` object when its
/// flags differ from a plain special token's (`<mask>` with `lstrip`).
fn token_value(tokenizer: &DomainTokenizer, content: &str) -> Value {
    let decoder = tokenizer.inner().get_added_tokens_decoder();
    match decoder.values().find(|t| t.content == content) {
        Some(t) if t.lstrip || t.rstrip || t.single_word || t.normalized => json!({
            "content": t.content, "lstrip": t.lstrip, "rstrip": t.rstrip,
            "single_word": t.single_word, "normalized": t.normalized, "special": t.special,
        }),
        _ => json!(content),
    }
}

/// `added_tokens_decoder` as transformers >= 4.34 writes it: what a load from `vocab.json` /
/// `vocab.txt` alone needs to give the added tokens their flags back.
fn added_tokens_decoder(tokenizer: &DomainTokenizer) -> Value {
    let decoder: BTreeMap<u32, _> = tokenizer
        .inner()
        .get_added_tokens_decoder()
        .into_iter()
        .collect();
    let map: serde_json::Map<String, Value> = decoder
        .into_iter()
        .map(|(id, t)| {
            let value = json!({
                "content": t.content, "lstrip": t.lstrip, "rstrip": t.rstrip,
                "single_word": t.single_word, "normalized": t.normalized, "special": t.special,
            });
            (id.to_string(), value)
        })
        .collect();
    Value::Object(map)
}

/// `special_tokens_map.json`: the five roles, plus bos / eos (= cls / sep) for the `<s>`
/// families, as roberta-base and xlm-roberta-base have them.
fn special_tokens_map(tokenizer: &DomainTokenizer) -> serde_json::Map<String, Value> {
    let names = tokenizer.special_tokens();
    let mut map = serde_json::Map::new();
    if names.is_roberta() {
        map.insert("bos_token".into(), token_value(tokenizer, &names.cls));
        map.insert("eos_token".into(), token_value(tokenizer, &names.sep));
    }
    for (role, name) in names.roles() {
        map.insert(format!("{role}_token"), token_value(tokenizer, name));
    }
    map
}

/// The keys the class rebuilds the tokenizer from.
fn class_keys(class: &HfClass, config: &mut serde_json::Map<String, Value>) {
    match *class {
        HfClass::Bert {
            lowercase,
            tokenize_chinese_chars,
            strip_accents,
        } => {
            config.insert("do_lower_case".into(), json!(lowercase));
            config.insert(
                "tokenize_chinese_chars".into(),
                json!(tokenize_chinese_chars),
            );
            config.insert("strip_accents".into(), json!(strip_accents));
        }
        HfClass::Roberta {
            add_prefix_space,
            trim_offsets,
        } => {
            config.insert("add_prefix_space".into(), json!(add_prefix_space));
            config.insert("trim_offsets".into(), json!(trim_offsets));
            config.insert("errors".into(), json!("replace"));
        }
        HfClass::XlmRoberta { add_prefix_space } => {
            config.insert("add_prefix_space".into(), json!(add_prefix_space));
        }
        HfClass::Generic => {}
    }
}

/// Writes the files into `dir`; returns their names.
pub fn write(
    tokenizer: &DomainTokenizer,
    dir: &Path,
    model_max_length: usize,
) -> Result<Vec<String>, CorpusError> {
    std::fs::create_dir_all(dir).map_err(|e| CorpusError::io("cannot create", dir, e))?;
    let json = tokenizer.inner().to_string(true).map_err(|e| {
        CorpusError::tokenizer(Some(tokenizer.source()), "cannot serialise", Some(e))
    })?;
    write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
    let mut written = vec!["tokenizer.json".to_string()];
    let class = tokenizer.hf_class();
    match class {
        HfClass::Bert { .. } => {
            if let Some(text) = vocab_txt(tokenizer) {
                write_atomic(&dir.join("vocab.txt"), text.as_bytes())?;
                written.push("vocab.txt".into());
            }
        }
        HfClass::Roberta { .. } => {
            let (vocab, merges) = bpe_files(tokenizer)?;
            write_atomic(&dir.join("vocab.json"), vocab.as_bytes())?;
            write_atomic(&dir.join("merges.txt"), merges.as_bytes())?;
            written.extend(["vocab.json".into(), "merges.txt".into()]);
        }
        HfClass::XlmRoberta { .. } | HfClass::Generic => {}
    }
    let map = special_tokens_map(tokenizer);
    // tokenizer_config.json names the tokens as strings (their flags are in
    // added_tokens_decoder): transformers 5 refuses an object there, but reads one in
    // special_tokens_map.json, as transformers >= 4.34 writes them.
    let mut config: serde_json::Map<String, Value> = map
        .iter()
        .map(|(k, v)| (k.clone(), v.get("content").unwrap_or(v).clone()))
        .collect();
    config.insert("tokenizer_class".into(), json!(class.name()));
    config.insert("model_max_length".into(), json!(model_max_length));
    config.insert(
        "added_tokens_decoder".into(),
        added_tokens_decoder(tokenizer),
    );
    class_keys(&class, &mut config);
    // Kept from the source: ModernBERT's model takes no `token_type_ids`, which
    // `PreTrainedTokenizerFast` would return by default.
    if let Some(names) = tokenizer.model_input_names() {
        config.insert("model_input_names".into(), json!(names));
    }
    if let Some(clean_up) = tokenizer.clean_up_tokenization_spaces() {
        config.insert("clean_up_tokenization_spaces".into(), json!(clean_up));
    }
    if !config.contains_key("do_lower_case") {
        config.insert("do_lower_case".into(), json!(tokenizer.do_lower_case()));
    }
    write_json(&dir.join("tokenizer_config.json"), &Value::Object(config))?;
    write_json(&dir.join("special_tokens_map.json"), &Value::Object(map))?;
    written.extend([
        "tokenizer_config.json".into(),
        "special_tokens_map.json".into(),
    ]);
    if let Some(extension) = tokenizer.extension() {
        extension.write_in(dir)?;
        written.push(super::EXTENSION_FILE.into());
    }
    Ok(written)
}
