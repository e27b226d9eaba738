//! ModernBERT's config dialect: both hub forms read as the same model, what is not built is
//! refused by key, and a config is written back in the form it came in.

use std::path::Path;

use serde_json::{Value, json};

use super::config::{LayerType, ModernBertLayout};
use crate::model::{EncoderConfig, ModelError};

fn read(keys: &Value) -> Result<EncoderConfig, ModelError> {
    EncoderConfig::from_json(&keys.to_string(), Path::new("config.json"))
}

/// A 2024 hub config (answerdotai/ModernBERT-base's keys, smaller).
fn form_2024() -> Value {
    json!({
        "architectures": ["ModernBertForMaskedLM"],
        "model_type": "modernbert",
        "vocab_size": 97, "hidden_size": 36, "intermediate_size": 50,
        "num_hidden_layers": 4, "num_attention_heads": 3,
        "global_attn_every_n_layers": 2, "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0, "local_attention": 8, "pad_token_id": 1,
        "hidden_activation": "gelu", "norm_eps": 1e-5, "norm_bias": false,
        "reference_compile": true, "repad_logits_with_grad": false
    })
}

/// The same model in transformers 5's form.
fn form_5() -> Value {
    json!({
        "architectures": ["ModernBertForMaskedLM"],
        "model_type": "modernbert",
        "vocab_size": 97, "hidden_size": 36, "intermediate_size": 50,
        "num_hidden_layers": 4, "num_attention_heads": 3,
        "layer_types": ["full_attention", "sliding_attention", "full_attention", "sliding_attention"],
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 160000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}
        },
        "local_attention": 8, "pad_token_id": 1
    })
}

#[test]
fn both_hub_forms_describe_the_same_model() {
    let [old, new] = [form_2024(), form_5()].map(|keys| read(&keys).unwrap());
    let [old_layout, new_layout] = [&old, &new].map(|c| ModernBertLayout::of(c).unwrap());
    assert_eq!(old_layout, new_layout);
    use LayerType::{Global, Local};
    assert_eq!(new_layout.layer_types, [Global, Local, Global, Local]);
    assert_eq!(new_layout.half_window, 4);
    assert_eq!(
        (new_layout.global_rope_theta, new_layout.local_rope_theta),
        (160_000.0, 10_000.0)
    );
    let shapes = |c: &EncoderConfig| c.architecture().variables(c);
    assert_eq!(shapes(&old), shapes(&new));
    // ModernBertConfig's defaults where the file is silent.
    assert_eq!(
        (new.layer_norm_eps, new.hidden_act.as_str()),
        (1e-5, "gelu")
    );
    assert_eq!(new.hidden_dropout_prob, 0.0);
    assert_eq!(new.max_position_embeddings, 8192);
}

#[test]
fn defaults_are_modernbert_base() {
    let config = read(&json!({"model_type": "modernbert"})).unwrap();
    assert_eq!(
        (
            config.vocab_size,
            config.hidden_size,
            config.intermediate_size,
            config.num_hidden_layers,
            config.pad_token_id
        ),
        (50368, 768, 1152, 22, Some(50283))
    );
    let layout = ModernBertLayout::of(&config).unwrap();
    let globals: Vec<usize> = (0..22)
        .filter(|&i| layout.layer_types[i] == LayerType::Global)
        .collect();
    assert_eq!(globals, [0, 3, 6, 9, 12, 15, 18, 21]);
    assert_eq!(layout.half_window, 64);
    // ModernBERT-base's parameter count (149 M with the tied decoder counted once).
    assert_eq!(config.num_parameters(), 149_655_232);
}

#[test]
fn a_config_is_written_back_in_the_form_it_was_read_in() {
    for form in [form_2024(), form_5()] {
        let config = read(&form).unwrap();
        let written = config.to_hf_keys();
        for (key, value) in form.as_object().unwrap() {
            assert_eq!(&written[key], value, "{key}");
        }
        for key in [
            "hidden_act",
            "layer_norm_eps",
            "type_vocab_size",
            "hidden_dropout_prob",
        ] {
            assert!(!written.contains_key(key), "{key} is not a ModernBERT key");
        }
    }
}

#[test]
fn what_is_not_built_is_refused_by_key() {
    let with = |key: &str, value: Value| {
        let mut keys = form_5();
        keys[key] = value;
        read(&keys).unwrap_err().to_string()
    };
    let scaled = json!({"full_attention": {"rope_type": "yarn", "rope_theta": 1.0, "factor": 4.0}});
    for (key, value, expect) in [
        (
            "rope_parameters",
            scaled,
            "rope_type \"yarn\" is not supported",
        ),
        (
            "layer_types",
            json!(["full_attention"]),
            "has 1 entries for num_hidden_layers 4",
        ),
        (
            "layer_types",
            json!(["full_attention", "x", "y", "z"]),
            "\"x\" is not",
        ),
        ("local_attention", json!(1), "local_attention"),
        ("norm_bias", json!("yes"), "norm_bias"),
        ("tie_word_embeddings", json!(false), "tie_word_embeddings"),
        (
            "rope_scaling",
            json!({"rope_type": "linear", "factor": 2.0}),
            "rope_scaling",
        ),
        (
            "classifier_activation",
            json!("tanh"),
            "classifier_activation",
        ),
    ] {
        let error = with(key, value);
        assert!(error.contains(expect), "{key}: {error}");
    }
}

/// A model from scratch takes `[model] family_config` in either form over its defaults.
#[test]
fn family_config_sets_the_pattern_of_a_model_from_scratch_in_either_form() {
    use crate::model::ScratchShape;
    let scratch = |family_config: Value| {
        let shape = ScratchShape {
            vocab_size: 97,
            hidden_size: 36,
            num_hidden_layers: 4,
            num_attention_heads: 3,
            intermediate_size: 50,
            dropout: None,
            max_seq_len: 24,
            max_position_embeddings: None,
            special_ids: None,
            family_config: family_config.as_object().unwrap().clone(),
        };
        let config = EncoderConfig::scratch("modernbert", &shape, Path::new("[model]")).unwrap();
        ModernBertLayout::of(&config).unwrap()
    };
    use LayerType::{Global, Local};
    assert_eq!(
        scratch(json!({})).layer_types,
        [Global, Local, Local, Global]
    );
    assert_eq!(
        scratch(json!({"global_attn_every_n_layers": 1})).layer_types,
        [Global; 4]
    );
    let given = json!({"layer_types": ["sliding_attention", "full_attention",
                                        "sliding_attention", "full_attention"]});
    assert_eq!(scratch(given).layer_types, [Local, Global, Local, Global]);
    let rope = json!({"rope_parameters": {"sliding_attention": {"rope_theta": 55.0}}});
    let layout = scratch(rope);
    assert_eq!(
        (layout.global_rope_theta, layout.local_rope_theta),
        (160_000.0, 55.0)
    );
    assert_eq!(scratch(json!({"local_attention": 8})).half_window, 4);
}
