//! Writing a tokenizer as the files transformers' `AutoTokenizer.from_pretrained(dir)` reads.

use std::path::Path;

use serde_json::json;

use super::DomainTokenizer;
use crate::error::CorpusError;
use crate::fsutil::{write_atomic, write_json};

fn is_wordpiece(tokenizer: &DomainTokenizer) -> bool {
    serde_json::to_value(tokenizer.inner().get_model())
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "WordPiece")
        })
        .unwrap_or(false)
}

/// The model vocabulary as `vocab.txt` lines, when its ids are exactly 0..n.
fn vocab_txt(tokenizer: &DomainTokenizer) -> Option<String> {
    let vocab = tokenizer.inner().get_vocab(false);
    let mut by_id: Vec<Option<&str>> = vec![None; vocab.len()];
    for (token, &id) in &vocab {
        *by_id.get_mut(id as usize)? = Some(token);
    }
    let mut text = String::new();
    for token in by_id {
        text.push_str(token?);
        text.push('\n');
    }
    Some(text)
}

pub fn write(
    tokenizer: &DomainTokenizer,
    dir: &Path,
    model_max_length: usize,
) -> Result<(), CorpusError> {
    std::fs::create_dir_all(dir).map_err(|e| CorpusError::io("cannot create", dir, e))?;
    let json = tokenizer.inner().to_string(true).map_err(|e| {
        CorpusError::tokenizer(Some(tokenizer.source()), "cannot serialise", Some(e))
    })?;
    write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
    let wordpiece = is_wordpiece(tokenizer);
    if wordpiece && let Some(text) = vocab_txt(tokenizer) {
        write_atomic(&dir.join("vocab.txt"), text.as_bytes())?;
    }
    let names = tokenizer.special_tokens();
    let map = json!({
        "cls_token": names.cls,
        "sep_token": names.sep,
        "pad_token": names.pad,
        "mask_token": names.mask,
        "unk_token": names.unk,
    });
    let mut config = map.clone();
    let object = config.as_object_mut().expect("an object literal");
    object.insert(
        "tokenizer_class".into(),
        json!(if wordpiece {
            "BertTokenizer"
        } else {
            "PreTrainedTokenizerFast"
        }),
    );
    object.insert("do_lower_case".into(), json!(tokenizer.do_lower_case()));
    object.insert("model_max_length".into(), json!(model_max_length));
    if wordpiece {
        object.insert("tokenize_chinese_chars".into(), json!(true));
        object.insert("strip_accents".into(), json!(null));
    }
    write_json(&dir.join("tokenizer_config.json"), &config)?;
    write_json(&dir.join("special_tokens_map.json"), &map)
}
