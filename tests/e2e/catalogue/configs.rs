//! Configs: wrong types, out-of-range values, unknown keys, conflicting keys, broken TOML,
//! missing files. A config that cannot be used exits with 2 before any work; a file it names
//! that is missing fails the job (1) with the file named and nothing left looking done.
//! (tests/e2e/config.rs holds the full table of out-of-range values, key by key.)

use std::path::{Path, PathBuf};

use super::{Case, check_all};
use crate::Scratch;
use crate::train::tiny_config;

/// The tiny job's config with each `(from, to)` replaced, written as `name`.
fn variant(scratch: &Scratch, name: &str, base: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(base).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "the tiny config has {from:?}");
        text = text.replacen(from, to, 1);
    }
    scratch.write(name, &text)
}

/// `mlm-train --config FILE --dry-run`: loads and checks everything, does nothing.
fn dry_run(name: &'static str, config: &Path) -> Case {
    Case::new(
        name,
        [
            "--dry-run".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    )
}

#[test]
fn configs_with_wrong_types_and_values_are_refused_naming_file_line_and_key() {
    let scratch = Scratch::new("catalogue-config-types");
    let base = tiny_config(&scratch, "max_steps = 4", "");
    let edit = |name: &'static str, from, to| {
        let file = format!("{name}.toml");
        (name, variant(&scratch, &file, &base, &[(from, to)]))
    };
    let cases = [
        (
            edit(
                "string_for_integer",
                "batch_size = 4",
                "batch_size = \"four\"",
            ),
            &["string_for_integer.toml", "line", "batch_size"][..],
        ),
        (
            edit(
                "float_for_integer",
                "max_seq_len = 32",
                "max_seq_len = 32.5",
            ),
            &["float_for_integer.toml", "max_seq_len"],
        ),
        (
            edit(
                "table_for_list",
                "inputs = [\"abstracts.jsonl\"]",
                "inputs = { a = 1 }",
            ),
            &["table_for_list.toml", "inputs"],
        ),
        (
            edit("negative_size", "hidden_size = 32", "hidden_size = -32"),
            &["negative_size.toml", "hidden_size"],
        ),
        (
            edit(
                "string_for_bool",
                "[eval]",
                "[masking]\nwhole_word_mask = \"yes\"\n\n[eval]",
            ),
            &["string_for_bool.toml", "whole_word_mask"],
        ),
        (
            edit(
                "negative_rate",
                "learning_rate = 1e-3",
                "learning_rate = -1e-3",
            ),
            &["negative_rate.toml", "training.learning_rate"],
        ),
        (
            edit(
                "fraction_over_one",
                "validation_fraction = 0.1",
                "validation_fraction = 1.5",
            ),
            &["fraction_over_one.toml", "validation_fraction"],
        ),
        (
            edit("unknown_device", "device = \"cpu\"", "device = \"tpu\""),
            &["unknown_device.toml", "tpu"],
        ),
    ];
    let cases: Vec<Case> = cases
        .into_iter()
        .map(|((name, config), names)| dry_run(name, &config).code(2).names(names))
        .collect();
    check_all(&cases);
}

#[test]
fn configs_with_unknown_or_conflicting_keys_or_broken_toml_are_refused() {
    let scratch = Scratch::new("catalogue-config-keys");
    let base = tiny_config(&scratch, "max_steps = 4", "");
    let edit = |name: &'static str, edits: &[(&str, &str)]| {
        (
            name,
            variant(&scratch, &format!("{name}.toml"), &base, edits),
        )
    };
    let heads = [("num_attention_heads = 2", "num_attention_heads = 3")];
    let long = [("max_seq_len = 32", "max_seq_len = 128")];
    let cases = [
        (
            edit("unknown_key", &[("eval_steps = 4", "eval_step = 4")]),
            &["unknown_key.toml", "eval_step", "line"][..],
        ),
        (
            edit(
                "unknown_section",
                &[("[eval]", "[optimiser]\nname = \"adamw\"\n\n[eval]")],
            ),
            &["unknown_section.toml", "optimiser"],
        ),
        (
            edit("heads_do_not_divide_hidden", &heads),
            &[
                "heads_do_not_divide_hidden.toml",
                "num_attention_heads",
                "hidden_size",
            ],
        ),
        (
            edit("sequence_longer_than_positions", &long),
            &[
                "sequence_longer_than_positions.toml",
                "max_seq_len",
                "max_position_embeddings",
            ],
        ),
        (
            edit(
                "unterminated_string",
                &[("output_dir = \"run\"", "output_dir = \"run")],
            ),
            &["unterminated_string.toml", "line"],
        ),
        (
            edit(
                "duplicate_key",
                &[("batch_size = 4", "batch_size = 4\nbatch_size = 8")],
            ),
            &["duplicate_key.toml", "batch_size"],
        ),
    ];
    let mut cases: Vec<Case> = cases
        .into_iter()
        .map(|((name, config), names)| dry_run(name, &config).code(2).names(names))
        .collect();
    cases.push(
        Case::new("set_with_a_list_for_an_integer", ["--dry-run", "--config"])
            .more_args(&[
                base.as_os_str(),
                "--set".as_ref(),
                "training.batch_size=[1]".as_ref(),
            ])
            .code(2)
            .names(&["--set training.batch_size=[1]", "batch_size"]),
    );
    check_all(&cases);
}

#[test]
fn unreadable_configs_and_missing_files_they_name_are_reported_by_name() {
    let scratch = Scratch::new("catalogue-config-files");
    let base = tiny_config(&scratch, "max_steps = 4", "");
    let dir = scratch.path();
    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"[training]\n# caf\xe9\nbatch_size = 4\n").unwrap();
    let glob = [(
        "inputs = [\"abstracts.jsonl\"]",
        "inputs = [\"no-such-dir/*.jsonl\"]",
    )];
    let no_inputs = variant(&scratch, "no_inputs.toml", &base, &glob);
    let no_tokenizer = variant(
        &scratch,
        "no_tokenizer.toml",
        &base,
        &[
            ("[vocab]\nvocab_size = 400\noutput = \"tokenizer\"\n", ""),
            (
                "tokenizer = \"tokenizer\"",
                "tokenizer = \"no-tokenizer.json\"",
            ),
        ],
    );
    let init = [("[model]\n", "[model]\ninit_from = \"no-such-model\"\n")];
    let no_model = variant(&scratch, "no_model.toml", &base, &init);
    let run_dir = dir.join("run");
    let cases = vec![
        Case::new(
            "missing_config",
            ["--config".as_ref(), dir.join("nope.toml").as_os_str()],
        )
        .code(2)
        .names(&["cannot read config", "nope.toml"]),
        Case::new(
            "config_is_a_directory",
            ["--config".as_ref(), dir.as_os_str()],
        )
        .code(2)
        .names(&["cannot read config"]),
        Case::new("config_not_utf8", ["--config".as_ref(), latin1.as_os_str()])
            .code(2)
            .names(&["latin1.toml", "UTF-8"]),
        Case::new(
            "inputs_match_nothing",
            ["--config".as_ref(), no_inputs.as_os_str()],
        )
        .names(&["no-such-dir/*.jsonl"])
        .absent(dir.join("tokenizer/tokenizer.json"))
        .absent(dir.join("corpus/manifest.json")),
        Case::new(
            "prepare_without_its_tokenizer",
            [
                "prepare".as_ref(),
                "--config".as_ref(),
                no_tokenizer.as_os_str(),
            ],
        )
        .names(&["no-tokenizer.json"])
        .absent(dir.join("corpus/manifest.json")),
        Case::new(
            "init_from_a_missing_model",
            ["--config".as_ref(), no_model.as_os_str()],
        )
        .names(&["no-such-model"])
        .absent(run_dir.join("checkpoint-0"))
        .absent(run_dir.join("checkpoint-4")),
    ];
    check_all(&cases);
}
