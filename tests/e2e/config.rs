//! `mlm-train --config FILE`: loading, checking and reporting config errors. A config error
//! (unreadable, not TOML, unknown key, bad type, out-of-range value) exits with status 2
//! before anything is written; a failure while working exits with 1.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::{Scratch, mlm_train, run, workspace_root};

/// Writes `text` as a config in a scratch directory and runs `mlm-train --config` on it.
/// Returns the scratch (keep it alive while using the path), the config path and the run.
fn run_config(name: &str, text: &str) -> (Scratch, PathBuf, Output, String, String) {
    let scratch = Scratch::new(name);
    let path = scratch.write("config.toml", text);
    let (output, stdout, stderr) = run(mlm_train().arg("--config").arg(&path));
    (scratch, path, output, stdout, stderr)
}

/// Asserts a config error: exit code 2, a message and no panic.
fn assert_config_error(output: &Output, stderr: &str, expected: &[&str]) {
    assert_failure(output, 2, stderr, expected);
}

/// Asserts a failed run with exit `code`, the `expected` texts on stderr and no panic.
fn assert_failure(output: &Output, code: i32, stderr: &str, expected: &[&str]) {
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn quickstart_config_resolves_to_a_plan() {
    quickstart_resolves_to_a_plan("quickstart", "BertForMaskedLM");
}

#[test]
fn the_modernbert_quickstart_resolves_to_a_plan() {
    quickstart_resolves_to_a_plan("quickstart-modernbert", "ModernBertForMaskedLM");
}

#[test]
fn the_roberta_and_distilbert_quickstarts_resolve_to_plans() {
    quickstart_resolves_to_a_plan("quickstart-roberta", "RobertaForMaskedLM");
    quickstart_resolves_to_a_plan("quickstart-distilbert", "DistilBertForMaskedLM");
}

/// The millions of parameters of the plan's `model` line.
fn planned_parameters(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("model    "))
        .unwrap_or_else(|| panic!("no model line: {stderr}"));
    let figure = line
        .split(", ")
        .nth(1)
        .and_then(|part| {
            part.strip_suffix(" M parameters")
                .or(part.split(" M ").next())
        })
        .unwrap_or_else(|| panic!("no parameter count in {line}"));
    figure
        .trim_start_matches('~')
        .parse()
        .unwrap_or_else(|_| panic!("not a number in {line}"))
}

/// `configs/<name>.toml` with `--dry-run`: nothing is made; the stages are described and the
/// plan (a model of `class` from scratch) estimated from the inputs' sizes. Once the corpus
/// is prepared, the dry run plans exactly from its manifest.
fn quickstart_resolves_to_a_plan(name: &str, class: &str) {
    // A copy of configs/ and data/ in a scratch directory: the vocabulary and the prepared
    // corpus land there, not in the repository.
    let scratch = Scratch::new(&format!("{name}-dry"));
    let root = crate::workspace_root();
    std::fs::create_dir_all(scratch.path().join("configs")).unwrap();
    std::fs::create_dir_all(scratch.path().join("data/sample")).unwrap();
    let config = scratch.path().join(format!("configs/{name}.toml"));
    std::fs::copy(root.join(format!("configs/{name}.toml")), &config).unwrap();
    std::fs::copy(
        root.join("data/sample/abstracts.jsonl"),
        scratch.path().join("data/sample/abstracts.jsonl"),
    )
    .unwrap();
    let (output, _, stderr) = run(mlm_train().arg("--config").arg(&config).arg("--dry-run"));
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{name}.toml")), "{stderr}");
    assert!(
        stderr.contains(class),
        "the plan names the model class: {stderr}"
    );
    assert!(stderr.contains("threads: libtorch 1, rayon 1"), "{stderr}");
    assert!(
        stderr.contains("device   cpu (runtime.device = \"auto\")")
            || stderr.contains("device   cuda:0"),
        "{stderr}"
    );
    assert!(stderr.contains("steps    400"), "{stderr}");
    assert!(stderr.contains("(from scratch)"), "{stderr}");
    assert!(stderr.contains("nothing was trained"), "{stderr}");
    // The config's `../runs/...` paths are printed resolved, not as `configs/../runs/...`.
    assert!(!stderr.contains("/../"), "{stderr}");
    assert!(stderr.contains(&format!("runs/{name}/corpus")), "{stderr}");
    for text in [
        "vocab    would train",
        "corpus   would prepare",
        "estimate the corpus",
        // The estimate is printed as a run's plan is: memory, FLOPs and the MFU peak too.
        "memory   ~",
        "flops    ",
        "peak ",
    ] {
        assert!(stderr.contains(text), "{text}: {stderr}");
    }
    assert!(
        !scratch.path().join("runs").exists(),
        "a dry run makes nothing"
    );
    let estimated = planned_parameters(&stderr);

    for stage in [&["vocab", "train"][..], &["prepare"]] {
        let (output, _, stderr) = run(mlm_train().args(stage).arg("--config").arg(&config));
        assert!(output.status.success(), "{stage:?}: {stderr}");
    }
    let (output, _, stderr) = run(mlm_train().arg("--config").arg(&config).arg("--dry-run"));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("(prepared: its manifest is there"),
        "{stderr}"
    );
    assert!(
        stderr.contains("steps    400 (") && stderr.contains(class),
        "{stderr}"
    );
    assert!(
        !stderr.contains("estimate the corpus"),
        "the exact plan: {stderr}"
    );
    // The estimate describes the model the run builds: the same family and sizes, so the
    // same parameters but for the rows of vocabulary entries `[vocab] vocab_size` asked for
    // and training did not fill (a word-embedding row and a decoder bias each).
    let exact = planned_parameters(&stderr);
    let job: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let requested = job["vocab"]["vocab_size"].as_integer().unwrap() as f64;
    let hidden = job["model"]["hidden_size"].as_integer().unwrap() as f64;
    let manifest = scratch
        .path()
        .join(format!("runs/{name}/corpus/manifest.json"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let vocab = manifest["vocab_size"].as_f64().unwrap();
    let unfilled = (requested - vocab) * (hidden + 1.0) / 1e6;
    assert!(
        (estimated - exact - unfilled).abs() <= 0.011,
        "{name}: estimated {estimated} M parameters, the run has {exact} M ({unfilled:.3} M of \
         them for the {} vocabulary entries not trained)",
        requested - vocab
    );
    let metrics = format!("runs/{name}/metrics.jsonl");
    assert!(!scratch.path().join(metrics).exists());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let (_scratch, path, output, _, stderr) = run_config(
        "unknown-key",
        "[runtime]\ndevice = \"cpu\"\ncpu_treads = 4\n",
    );
    let file = path.display().to_string();
    assert_config_error(
        &output,
        &stderr,
        &[&file, "line 3", "unknown field `cpu_treads`"],
    );
}

#[test]
fn unknown_section_is_refused() {
    let (_scratch, _, output, _, stderr) =
        run_config("unknown-section", "[runtim]\ndevice = \"cpu\"\n");
    assert_config_error(&output, &stderr, &["line 1", "unknown field `runtim`"]);
}

#[test]
fn bad_device_value_is_explained() {
    let (_scratch, _, output, _, stderr) =
        run_config("bad-device", "[runtime]\ndevice = \"gpu\"\n");
    assert_config_error(
        &output,
        &stderr,
        &["line 2", "expected auto, cpu, cuda or cuda:N"],
    );
}

#[test]
fn missing_config_file_is_named() {
    let (output, _, stderr) = run(mlm_train().args(["--config", "configs/no-such.toml"]));
    assert_config_error(
        &output,
        &stderr,
        &["cannot read config configs/no-such.toml", "No such file"],
    );
}

#[test]
fn forcing_cuda_fails_clearly_without_a_gpu_and_works_with_one() {
    let (_scratch, _, output, stdout, stderr) =
        run_config("cuda", "[runtime]\ndevice = \"cuda\"\n");
    let (_, doctor, _) = run(mlm_train().args(["doctor", "--json"]));
    if doctor.contains("\"cuda_available\": true") {
        // The device resolves; the job then needs a [corpus] this config lacks.
        assert!(stderr.contains("device   cuda:0"), "{stdout}{stderr}");
        assert_config_error(&output, &stderr, &["has no [corpus] section"]);
    } else {
        // The config is valid; the machine lacks the device: a failure while working.
        assert_failure(
            &output,
            1,
            &stderr,
            &["runtime.device = \"cuda:0\" but CUDA is not available"],
        );
    }
}

#[test]
fn zero_threads_is_refused_with_the_key() {
    let scratch = Scratch::new("zero-threads");
    let path = scratch.write("config.toml", "[runtime]\ncpu_threads = 0\n");
    // Without the harness's thread cap, so the config's value is the one applied.
    let (output, _, stderr) = run(mlm_train()
        .arg("--config")
        .arg(&path)
        .env_remove("MLM_TRAIN_THREADS"));
    assert_config_error(&output, &stderr, &["runtime.cpu_threads = 0 must be >= 1"]);
}

/// The sections of a tiny valid job (the corpus is `docs.jsonl` beside the config), as
/// `(section, [(key, TOML value)])`, so that a row of the table changes exactly one thing.
fn base_sections() -> Vec<(&'static str, Vec<(String, String)>)> {
    let section = |name, keys: &[(&str, &str)]| {
        let keys = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (name, keys)
    };
    vec![
        section("runtime", &[("device", "\"cpu\"")]),
        section(
            "vocab",
            &[("vocab_size", "400"), ("output", "\"tokenizer\"")],
        ),
        section(
            "corpus",
            &[
                ("inputs", "[\"docs.jsonl\"]"),
                ("format", "\"jsonl\""),
                ("text_fields", "[\"title\", \"abstract\"]"),
                ("id_field", "\"pmid\""),
                ("validation_fraction", "0.1"),
                ("tokenizer", "\"tokenizer\""),
                ("max_seq_len", "32"),
                ("output", "\"corpus\""),
            ],
        ),
        section("masking", &[]),
        section(
            "model",
            &[
                ("hidden_size", "32"),
                ("num_hidden_layers", "2"),
                ("num_attention_heads", "2"),
                ("intermediate_size", "64"),
                ("max_position_embeddings", "64"),
            ],
        ),
        section(
            "training",
            &[
                ("output_dir", "\"run\""),
                ("batch_size", "4"),
                ("max_steps", "8"),
                ("learning_rate", "1e-3"),
                ("logging_steps", "1"),
            ],
        ),
        section(
            "eval",
            &[("eval_batch_size", "16"), ("max_eval_samples", "32")],
        ),
        section("checkpoint", &[]),
    ]
}

/// Writes `docs.jsonl` (the sample corpus's first documents) and `config.toml`: the base
/// config with each `section.key = value` of `changes` replacing or adding that key.
fn write_job(scratch: &Scratch, changes: &[&str]) -> PathBuf {
    let sample = std::fs::read_to_string(workspace_root().join("data/sample/abstracts.jsonl"))
        .expect("data/sample/abstracts.jsonl (scripts/make-sample-corpus)");
    let docs: Vec<&str> = sample.lines().take(240).collect();
    scratch.write("docs.jsonl", &(docs.join("\n") + "\n"));
    let mut sections = base_sections();
    for change in changes {
        let (dotted, value) = change.split_once('=').expect("section.key = value");
        let (section, key) = dotted.trim().split_once('.').expect("section.key");
        let keys = &mut sections
            .iter_mut()
            .find(|(name, _)| *name == section)
            .expect("a section of the base config")
            .1;
        keys.retain(|(k, _)| k != key);
        keys.push((key.to_string(), value.trim().to_string()));
    }
    let text: String = sections
        .iter()
        .map(|(name, keys)| {
            let lines: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            format!("[{name}]\n{lines}\n")
        })
        .collect();
    scratch.write("config.toml", &text)
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// How a row breaks the config.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// `section.key = value` lines written into the config file.
    File,
    /// The same given as `--set section.key=value`.
    Set,
}

/// Asserts that `mlm-train ARGS --config FILE` with `changes` is refused as a config error
/// naming `expected`, with nothing written besides the config and its corpus. `name` names
/// the scratch directory (unique among the tests running at once).
fn assert_refused(name: &str, args: &[&str], via: Via, changes: &[&str], expected: &str) {
    let scratch = Scratch::new(name);
    let path = match via {
        Via::File => write_job(&scratch, changes),
        Via::Set => write_job(&scratch, &[]),
    };
    let mut command = mlm_train();
    command.args(args).arg("--config").arg(&path);
    if let Via::Set = via {
        for change in changes {
            command.arg("--set").arg(change.replace(" = ", "="));
        }
    }
    let (output, stdout, stderr) = run(&mut command);
    let row = format!("{args:?} {via:?} {changes:?}");
    assert_eq!(output.status.code(), Some(2), "{row}:\n{stderr}");
    assert!(
        stderr.contains(expected),
        "{row}: lacks {expected:?}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{row}:\n{stderr}");
    assert_eq!(stdout, "", "{row}: partial output");
    assert_eq!(
        entries(scratch.path()),
        ["config.toml", "docs.jsonl"],
        "{row}: wrote something:\n{stderr}"
    );
}

#[test]
fn the_base_of_the_table_is_a_valid_job() {
    let scratch = Scratch::new("valid-base");
    let path = write_job(&scratch, &[]);
    let (output, _, stderr) = run(mlm_train().arg("--config").arg(&path).arg("--dry-run"));
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("nothing was trained"), "{stderr}");
}

#[test]
fn every_out_of_range_value_is_refused_at_load_naming_its_full_key() {
    use Via::{File, Set};
    let table: &[(Via, &[&str], &str)] = &[
        (
            File,
            &["training.adam_beta2 = 1.0"],
            "training.adam_beta2 = 1 must be in [0, 1)",
        ),
        (
            File,
            &["training.weight_decay = -0.1"],
            "training.weight_decay = -0.1 must be a finite number >= 0",
        ),
        (
            File,
            &["training.batch_size = 0"],
            "training.batch_size = 0 must be >= 1",
        ),
        (
            File,
            &["eval.eval_batch_size = 0"],
            "eval.eval_batch_size = 0 must be >= 1",
        ),
        (
            Set,
            &["training.logging_steps = 0"],
            "training.logging_steps = 0 must be >= 1",
        ),
        (
            File,
            &["runtime.cpu_threads = 0"],
            "runtime.cpu_threads = 0 must be >= 1",
        ),
        (
            File,
            &["corpus.validation_fraction = 1.0"],
            "corpus.validation_fraction = 1 ",
        ),
        (
            File,
            &["corpus.validation_fraction = 0.0"],
            "corpus.validation_fraction = 0 leaves no held-out documents",
        ),
        (
            File,
            &["corpus.max_seq_len = 2"],
            "corpus.max_seq_len = 2 is not in [3, ",
        ),
        (Set, &["vocab.vocab_size = 3"], "vocab.vocab_size = 3 "),
        (
            File,
            &["vocab.extend_from = \"model\"", "vocab.add = 0"],
            "vocab.add = 0 must be >= 1",
        ),
        (File, &["vocab.add = 10"], "vocab.extend_from is missing"),
        (
            Set,
            &["vocab.extend_from = \"tokenizer\"", "vocab.add = 5"],
            "vocab.output is the vocab.extend_from directory",
        ),
        (
            File,
            &["training.warmup_ratio = 1.5"],
            "training.warmup_ratio = 1.5 must be in [0, 1]",
        ),
        (
            File,
            &["training.warmup_steps = 20"],
            "training.warmup_steps = 20 makes the warmup (20 steps) longer than the run \
             (8 steps, training.max_steps = 8)",
        ),
        (
            File,
            &[
                "training.lr_schedule = \"wsd\"",
                "training.warmup_ratio = 0.6",
                "training.decay_ratio = 0.5",
            ],
            "training.decay_ratio = 0.5 plus training.warmup_ratio = 0.6 exceeds 1",
        ),
        (
            Set,
            &[
                "training.lr_schedule = \"wsd\"",
                "training.warmup_steps = 4",
                "training.decay_ratio = 0.6",
            ],
            "training.decay_ratio = 0.6 makes the decay (5 steps) too long: with the warmup \
             (4 steps, training.warmup_steps = 4)",
        ),
        (
            Set,
            &["training.gradient_accumulation_steps = 0"],
            "training.gradient_accumulation_steps = 0 must be >= 1",
        ),
        (
            File,
            &["model.hidden_size = 33"],
            "model.hidden_size = 33 must be a multiple of model.num_attention_heads = 2",
        ),
        (
            Set,
            &["model.dropout = 1.5"],
            "model.dropout = 1.5 must be in [0, 1)",
        ),
        (
            File,
            &["model.model_type = \"gpt2\""],
            "model.model_type = \"gpt2\" is not a supported family (bert, roberta, xlm-roberta, \
             camembert, distilbert, modernbert)",
        ),
        (
            File,
            &["model.init_from = \"hf\"", "model.model_type = \"roberta\""],
            "model.model_type = \"roberta\" applies to a model from scratch only: the config.json \
             of model.init_from or model.config names the family",
        ),
        (
            File,
            &["model.init_from = \"hf\"", "model.config = \"config.json\""],
            "model.config = \"config.json\" cannot be given together with model.init_from",
        ),
        (
            File,
            &["masking.mlm_probability = 1.5"],
            "masking.mlm_probability = 1.5",
        ),
        (
            File,
            &[
                "masking.mask_replace_prob = 0.9",
                "masking.random_replace_prob = 0.2",
            ],
            "masking.mask_replace_prob + masking.random_replace_prob",
        ),
        (
            File,
            &["checkpoint.save_minutes = -1.0"],
            "checkpoint.save_minutes = -1 must be a finite number >= 0",
        ),
        (
            Set,
            &["training.learning_rate = -1"],
            "training.learning_rate = -1 must be a finite number > 0",
        ),
        (
            File,
            &["training.max_steps = 0"],
            "training.max_steps = 0 must be >= 1",
        ),
        (
            File,
            &["training.epochs = 0.0"],
            "training.epochs = 0 must be a finite number > 0",
        ),
        (
            File,
            &["training.adam_epsilon = 0.0"],
            "training.adam_epsilon = 0 must be a finite number > 0",
        ),
        (
            File,
            &["training.min_lr_ratio = 2.0"],
            "training.min_lr_ratio = 2 must be in [0, 1]",
        ),
        (
            File,
            &["training.max_grad_norm = nan"],
            "training.max_grad_norm = NaN must be a finite number >= 0",
        ),
        (
            File,
            &["training.prefetch = 0"],
            "training.prefetch = 0 must be >= 1",
        ),
        (
            File,
            &["eval.max_eval_samples = 0"],
            "eval.max_eval_samples = 0 must be >= 1",
        ),
        (
            File,
            &["model.num_attention_heads = 0"],
            "model.num_attention_heads = 0 must be >= 1",
        ),
        // Not a range but the same kind of error: a typo, a wrong type.
        (
            Set,
            &["training.batch_sise = 4"],
            "unknown field `batch_sise`",
        ),
        (File, &["training.batch_size = \"four\""], "invalid type"),
    ];
    for (row, &(via, changes, expected)) in table.iter().enumerate() {
        assert_refused(&format!("invalid-{row}"), &[], via, changes, expected);
    }
}

#[test]
fn every_command_that_reads_a_config_validates_all_of_it_first() {
    let commands: [&[&str]; 4] = [
        &["--dry-run"],
        &["prepare"],
        &["vocab", "train"],
        &["eval", "--checkpoint", "no-such-checkpoint"],
    ];
    for (index, args) in commands.into_iter().enumerate() {
        assert_refused(
            &format!("invalid-command-{index}"),
            args,
            Via::File,
            &["training.batch_size = 0"],
            "training.batch_size = 0 must be >= 1",
        );
    }
}

#[test]
fn every_command_that_reads_a_config_takes_set_overrides() {
    let commands: [&[&str]; 5] = [
        &["--dry-run"],
        &["prepare"],
        &["vocab", "train"],
        &["eval", "--checkpoint", "no-such-checkpoint"],
        &["config"],
    ];
    for (index, args) in commands.into_iter().enumerate() {
        assert_refused(
            &format!("invalid-set-{index}"),
            args,
            Via::Set,
            &["corpus.max_seq_len = 0"],
            "corpus.max_seq_len",
        );
    }
}
