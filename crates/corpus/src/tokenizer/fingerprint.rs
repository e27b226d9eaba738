//! The tokenizer fingerprint: what decides which ids a text becomes, hashed so that two
//! serialisations of one tokenizer (a `vocab.txt` and the `tokenizer.json` transformers
//! converts it to, or a file saved again) agree, and any change of vocabulary, normaliser,
//! pre-tokenizer or special tokens does not.

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::BoxError;
use crate::hash::sha256_hex;

/// A text exercising case, accents, CJK, punctuation, digits, control characters and a
/// special token; its ids (with special tokens) enter the fingerprint.
const PROBE: &str = "Hello, WORLD!\tÜber naïve café — 3.14 mg/kg; IL-6 β-blockers (p<0.05).\n\
                     東京 don't [MASK] <mask> ☺ \u{7}end unaffable";

/// JSON with object keys sorted, no whitespace: one text per value.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `sha256:<hex>` of the canonical JSON of the model (vocabulary and its settings), the
/// normaliser, the pre-tokenizer, the added tokens and the probe text's ids.
pub fn fingerprint(tokenizer: &Tokenizer) -> Result<String, BoxError> {
    let mut added: Vec<Value> = tokenizer
        .get_added_tokens_decoder()
        .iter()
        .map(|(id, t)| {
            serde_json::json!([
                id,
                t.content,
                t.special,
                t.normalized,
                t.lstrip,
                t.rstrip,
                t.single_word
            ])
        })
        .collect();
    added.sort_by_key(|v| v[0].as_u64());
    let probe = tokenizer.encode_fast(PROBE, true)?.get_ids().to_vec();
    let document = serde_json::json!({
        "fingerprint_version": 1,
        "model": serde_json::to_value(tokenizer.get_model())?,
        "normalizer": serde_json::to_value(tokenizer.get_normalizer())?,
        "pre_tokenizer": serde_json::to_value(tokenizer.get_pre_tokenizer())?,
        "added_tokens": added,
        "probe_ids": probe,
    });
    let mut text = String::new();
    canonical(&document, &mut text);
    Ok(format!("sha256:{}", sha256_hex(text.as_bytes())))
}

/// Whether the normaliser lowercases (a BertNormalizer with `lowercase`, or a `Lowercase`
/// step anywhere in a normaliser sequence).
pub fn lowercases(tokenizer: &Tokenizer) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                (m.get("type").and_then(Value::as_str) == Some("BertNormalizer")
                    && m.get("lowercase").and_then(Value::as_bool) == Some(true))
                    || m.get("type").and_then(Value::as_str) == Some("Lowercase")
                    || m.values().any(walk)
            }
            Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    serde_json::to_value(tokenizer.get_normalizer()).is_ok_and(|v| walk(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": "s"}}"#)
                .unwrap();
        let mut s = String::new();
        canonical(&a, &mut s);
        assert_eq!(s, r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#);
    }
}
