use super::*;

fn parse(text: &str) -> Result<EncoderConfig, ModelError> {
    EncoderConfig::from_json(text, Path::new("config.json"))
}

const MINILM: &str = r#"{
  "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
  "architectures": ["BertModel"],
  "attention_probs_dropout_prob": 0.1,
  "gradient_checkpointing": false,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 384,
  "initializer_range": 0.02,
  "intermediate_size": 1536,
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 6,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "transformers_version": "4.8.2",
  "type_vocab_size": 2,
  "use_cache": true,
  "vocab_size": 30522
}"#;

#[test]
fn reads_a_real_config_and_keeps_unknown_keys() {
    let config = parse(MINILM).unwrap();
    assert_eq!(config.hidden_size, 384);
    assert_eq!(config.num_hidden_layers, 6);
    assert_eq!(config.head_dim(), 32);
    assert_eq!(config.activation(), Activation::Gelu);
    assert_eq!(config.extra["transformers_version"], "4.8.2");
    assert_eq!(config.extra["gradient_checkpointing"], false);
    assert!(
        !config.extra.contains_key("hidden_size"),
        "known keys are not duplicated"
    );
}

#[test]
fn round_trips_every_key_through_write_hf() {
    let dir = std::env::temp_dir().join(format!("mlm-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    parse(MINILM).unwrap().write_hf(&path).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let original: Value = serde_json::from_str(MINILM).unwrap();
    assert_eq!(written, original);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_keys_take_bert_base_defaults() {
    let config = parse(r#"{"model_type": "bert", "vocab_size": 100}"#).unwrap();
    assert_eq!(config.vocab_size, 100);
    assert_eq!(config.hidden_size, 768);
    assert_eq!(config.layer_norm_eps, 1e-12);
    assert_eq!(config.pad_token_id, Some(0));
}

#[test]
fn refuses_unsupported_families_and_foreign_architectures_by_name() {
    let error = parse(r#"{"model_type": "gpt2"}"#).unwrap_err();
    assert!(
        matches!(error, ModelError::UnsupportedFamily { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("gpt2"), "{error}");
    assert!(error.to_string().contains("xlm-roberta"), "{error}");
    let error = parse(r#"{"architectures": ["DistilBertForMaskedLM"]}"#).unwrap_err();
    assert!(
        error.to_string().contains("DistilBertForMaskedLM"),
        "{error}"
    );
    assert!(error.to_string().contains("config.json"), "{error}");
}

#[test]
fn roberta_configs_read_with_roberta_defaults_and_export_as_their_class() {
    let config = parse(
        r#"{"model_type": "xlm-roberta", "architectures": ["XLMRobertaForMaskedLM"],
            "max_position_embeddings": 514, "type_vocab_size": 1, "vocab_size": 250002}"#,
    )
    .unwrap();
    assert_eq!(config.architecture().name(), "RoBERTa");
    assert_eq!(
        config.pad_token_id,
        Some(1),
        "RobertaConfig's default pad id"
    );
    assert_eq!(config.max_sequence_length(), 512, "514 less pad + 1");
    let exported = config.for_export();
    assert_eq!(
        exported.architectures.as_deref(),
        Some(&["XLMRobertaForMaskedLM".to_owned()][..])
    );
    let error = parse(r#"{"model_type": "roberta", "max_position_embeddings": 2}"#);
    assert!(
        error
            .unwrap_err()
            .to_string()
            .contains("max_position_embeddings"),
        "a table with no room past the padding offset"
    );
}

#[test]
fn distilbert_configs_translate_their_keys_both_ways() {
    let text = r#"{"model_type": "distilbert", "architectures": ["DistilBertForMaskedLM"],
        "dim": 64, "n_layers": 3, "n_heads": 4, "hidden_dim": 128, "dropout": 0.2,
        "attention_dropout": 0.05, "activation": "gelu", "vocab_size": 99,
        "max_position_embeddings": 40, "pad_token_id": 0, "sinusoidal_pos_embds": false,
        "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "tie_weights_": true,
        "initializer_range": 0.02}"#;
    let config = parse(text).unwrap();
    assert_eq!(config.architecture().name(), "DistilBERT");
    let sizes = (
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
    );
    assert_eq!(sizes, (64, 3, 4));
    assert_eq!(config.intermediate_size, 128);
    assert_eq!(config.hidden_dropout_prob, 0.2);
    assert_eq!(config.attention_probs_dropout_prob, 0.05);
    assert_eq!(config.layer_norm_eps, 1e-12);
    let dir = std::env::temp_dir().join(format!("distil-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    config.write_hf(&dir.join("config.json")).unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let original: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        written, original,
        "written back in DistilBERT's own keys, nothing added"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let error = parse(r#"{"model_type": "distilbert", "sinusoidal_pos_embds": true}"#);
    assert!(
        error
            .unwrap_err()
            .to_string()
            .contains("sinusoidal_pos_embds")
    );
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            r#"{"hidden_size": 100, "num_attention_heads": 3}"#,
            "num_attention_heads",
        ),
        (r#"{"hidden_act": "mish"}"#, "hidden_act"),
        (r#"{"hidden_dropout_prob": 1.5}"#, "hidden_dropout_prob"),
        (r#"{"vocab_size": 10, "pad_token_id": 10}"#, "pad_token_id"),
        (
            r#"{"position_embedding_type": "relative_key"}"#,
            "position_embedding_type",
        ),
        (r#"{"is_decoder": true}"#, "is_decoder"),
        (r#"{"tie_word_embeddings": false}"#, "tie_word_embeddings"),
        (r#"{"num_hidden_layers": 0}"#, "num_hidden_layers"),
    ];
    for (text, key) in cases {
        let error = parse(text).unwrap_err();
        match &error {
            ModelError::InvalidConfig { key: found, .. } => assert_eq!(*found, key, "{error}"),
            other => panic!("{text}: {other}"),
        }
    }
}

#[test]
fn malformed_json_reports_line_and_file() {
    let error = parse("{\n  \"vocab_size\": \"many\"\n}").unwrap_err();
    let source = std::error::Error::source(&error).expect("the JSON error is kept");
    let text = format!("{error}: {source}");
    assert!(
        text.contains("config.json") && text.contains("line 2"),
        "{text}"
    );
}

#[test]
fn null_pad_token_means_no_padding_row() {
    let config = parse(r#"{"pad_token_id": null}"#).unwrap();
    assert_eq!(config.padding_idx(), None);
}

#[test]
fn export_copy_names_the_masked_lm_class() {
    let config = parse(MINILM).unwrap().for_export();
    assert_eq!(
        config.architectures.as_deref(),
        Some(&["BertForMaskedLM".to_owned()][..])
    );
    assert_eq!(config.model_type.as_deref(), Some("bert"));
}

#[test]
fn counts_bert_base_parameters() {
    let config = EncoderConfig::default();
    // embeddings 23,837,184 + 12 layers x 7,087,872 + pooler 590,592 + head 622,650
    assert_eq!(
        config.num_parameters(),
        23_837_184 + 12 * 7_087_872 + 590_592 + 622_650
    );
}
