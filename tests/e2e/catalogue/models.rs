//! Model directories (`fill-mask --model`, `export --checkpoint`, `[model] init_from`) and
//! Parquet inputs, written by `tests/python/bad_inputs.py` the way real files are written
//! (save_pretrained, safetensors, `torch.save(model.state_dict())`, pyarrow): each broken one
//! is refused naming the file and what is wrong (the tensor, the shapes, the dtype, the key),
//! with no libtorch backtrace and no export left looking complete.

use super::{Case, check_all, python_fixtures};
use crate::Scratch;
use crate::prepare::{vocab_train, write_config};
use crate::train::tiny_config;

const TEXT: &str = "aspirin [MASK] platelet aggregation.";

/// `fill-mask --model <case dir> TEXT`, expected to fail naming `names`.
fn fill_mask(case: &'static str, names: &[&str]) -> Case {
    let dir = python_fixtures().join(case);
    Case::new(
        case,
        [
            "fill-mask".as_ref(),
            "--model".as_ref(),
            dir.as_os_str(),
            TEXT.as_ref(),
        ],
    )
    .names(names)
}

#[test]
fn broken_model_directories_are_refused_naming_the_file_and_the_problem() {
    let cases = vec![
        fill_mask("no_config", &["config.json"]),
        fill_mask("bad_config_json", &["config.json", "line"]),
        fill_mask("unknown_type", &["config.json", "gpt2"]),
        fill_mask("wrong_family", &["model.safetensors", "roberta"]),
        fill_mask("no_weights", &["no_weights", "model.safetensors"]),
        fill_mask(
            "misshaped",
            &["bert.embeddings.word_embeddings.weight", "23", "24"],
        ),
        fill_mask("int_dtype", &["bert.embeddings.LayerNorm.weight", "I64"]),
        fill_mask(
            "small_vocab",
            &["small_vocab", "24 tokens", "vocab_size is 20"],
        ),
        fill_mask("truncated_st", &["model.safetensors"]),
        fill_mask("header_st", &["model.safetensors"]),
        fill_mask("truncated_zip", &["pytorch_model.bin"]),
        fill_mask("truncated_legacy", &["pytorch_model.bin"]),
        fill_mask("whole_module", &["pytorch_model.bin", "state dict"]),
        fill_mask("nested_dict", &["pytorch_model.bin"]),
        fill_mask("no_tokenizer", &["no_tokenizer", "tokenizer.json"]),
        fill_mask("no_mask_token", &["mask"]),
    ];
    check_all(&cases);
}

#[test]
fn extra_and_missing_tensors_load_as_transformers_loads_them_and_are_reported() {
    // transformers loads both with a warning: unexpected keys are not used, missing
    // parameters are initialised. We do the same and name them.
    let cases = vec![
        fill_mask("good", &[]).code(0),
        fill_mask("bin_zip", &[]).code(0),
        fill_mask("extra_tensor", &["bert.adapter.weight"]).code(0),
        fill_mask(
            "missing_tensor",
            &["bert.encoder.layer.0.attention.output.dense.weight"],
        )
        .code(0),
    ];
    check_all(&cases);
}

#[test]
fn exporting_or_adapting_a_broken_model_leaves_no_output_looking_complete() {
    let scratch = Scratch::new("catalogue-models-out");
    let fixtures = python_fixtures();
    let out = scratch.path().join("exported");
    let export = |name: &'static str, case: &str| {
        let checkpoint = fixtures.join(case);
        Case::new(
            name,
            [
                "export".as_ref(),
                "--checkpoint".as_ref(),
                checkpoint.as_os_str(),
            ],
        )
        .more_args(&["--out".as_ref(), out.as_os_str()])
        .names(&[case])
        .absent(out.join("config.json"))
        .absent(out.join("model.safetensors"))
    };
    // Adapting the truncated checkpoint with its own tokenizer (no [vocab]): the corpus is
    // prepared, then the weights are refused.
    let truncated = format!("{:?}", fixtures.join("truncated_zip").display().to_string());
    let text = std::fs::read_to_string(tiny_config(&scratch, "max_steps = 2", "")).unwrap();
    let model = text.find("[model]").unwrap();
    let model_end = text[model..].find("\n\n").unwrap() + model;
    let adapt = format!(
        "{}[model]\ninit_from = {truncated}{}",
        &text[..model],
        &text[model_end..]
    )
    .replace("[vocab]\nvocab_size = 400\noutput = \"tokenizer\"\n", "")
    .replace(
        "tokenizer = \"tokenizer\"",
        &format!("tokenizer = {truncated}"),
    );
    let adapt = scratch.write("adapt.toml", &adapt);
    let run_dir = scratch.path().join("run");
    let cases = vec![
        export("export_truncated_bin", "truncated_zip"),
        export("export_misshaped", "misshaped"),
        Case::new(
            "adapt_truncated_bin",
            ["--config".as_ref(), adapt.as_os_str()],
        )
        .names(&["pytorch_model.bin"])
        .absent(run_dir.join("checkpoint-0"))
        .absent(run_dir.join("checkpoint-2")),
    ];
    check_all(&cases);
}

#[test]
fn broken_parquet_inputs_are_named() {
    let scratch = Scratch::new("catalogue-parquet");
    let vocab = write_config(
        &scratch,
        "vocab.toml",
        &[crate::prepare::fixture("abstracts.jsonl")],
        &[],
    );
    assert!(vocab_train(&vocab).0);
    let corpus = python_fixtures().join("corpus");
    let prepared = |name: &str| {
        scratch
            .path()
            .join(format!("prepared-{name}/manifest.json"))
    };
    let case = |name: &'static str, file: &str, names: &[&str]| {
        let output = format!("\"prepared-{name}\"");
        let keys = [("output", output.as_str())];
        let config = write_config(
            &scratch,
            &format!("{name}.toml"),
            &[corpus.join(file)],
            &keys,
        );
        Case::new(
            name,
            ["prepare".as_ref(), "--config".as_ref(), config.as_os_str()],
        )
        .names(names)
        .absent(prepared(name))
    };
    let cases = vec![
        case(
            "parquet_missing_column",
            "missing_column.parquet",
            &["missing_column.parquet", "abstract"],
        ),
        case(
            "parquet_truncated",
            "truncated.parquet",
            &["truncated.parquet", "malformed_parquet"],
        ),
    ];
    check_all(&cases);
    // A text column must hold strings, as a JSONL text field must: other types are refused
    // when the file is opened, naming the column and its type, before any shard is written
    // (they used to be cast, preparing a corpus of numbers).
    let wrong_types = [
        ("parquet_int64_text", "int_text.parquet", "Int64"),
        ("parquet_binary_text", "binary_text.parquet", "Binary"),
        ("parquet_list_text", "list_text.parquet", "List(Utf8"),
    ];
    let cases: Vec<Case> = wrong_types
        .into_iter()
        .map(|(name, file, data_type)| {
            let refusal = format!("text column `abstract` is not a string but {data_type}");
            let shard = scratch
                .path()
                .join(format!("prepared-{name}/train-00000.parquet"));
            case(name, file, &[file, "schema: missing_field"])
                .names(&[refusal.as_str()])
                .absent(shard)
        })
        .collect();
    check_all(&cases);
    // Accepted: pyarrow's default compression (Snappy), and the strings of every layout
    // (large_string, dictionary-encoded as pandas categoricals are, string_view).
    for (name, file) in [
        ("parquet_snappy", "snappy.parquet"),
        (
            "parquet_large_and_dictionary_strings",
            "large_dictionary.parquet",
        ),
        ("parquet_string_view", "string_view.parquet"),
    ] {
        let output = format!("\"prepared-{name}\"");
        let config = write_config(
            &scratch,
            &format!("{name}.toml"),
            &[corpus.join(file)],
            &[("output", &output)],
        );
        let case = Case::new(
            name,
            ["prepare".as_ref(), "--config".as_ref(), config.as_os_str()],
        )
        .code(0);
        check_all(&[case]);
        assert!(prepared(name).exists(), "{name}");
    }
}
