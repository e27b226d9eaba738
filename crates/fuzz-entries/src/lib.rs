//! mlm-fuzz-entries: one function per fuzz target of `fuzz/`, each feeding arbitrary bytes to
//! a parser the way `mlm-train` does (a config file, a corpus file of each format, a shard of
//! a prepared corpus, a `tokenizer.json`, a model directory's weights, a `pytorch_model.bin`,
//! a `trainer_state.json`). A parser may refuse the bytes with its typed error; it must never
//! panic. The fuzzers (`scripts/fuzz TARGET MINUTES`, nightly) and the regression test below
//! (stable, in `scripts/test`) call the same functions, so every input a fuzzer once found
//! stays checked in CI.
//!
//! Entry points that need a file on disk write the bytes to a scratch directory of the
//! process first: the real readers open paths, and fuzzing them through the same call is the
//! point.

mod corpus;
mod model;

use std::path::{Path, PathBuf};

pub use corpus::{fast_tokenizer, jsonl, medline, parquet, shard, text, tokenizer};
pub use model::{safetensors, torch_pickle, trainer_state};

/// A fuzz target: its name (a file of `fuzz/fuzz_targets/`, a folder of `fuzz/regressions/`)
/// and its entry point.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every fuzz target, in the order `docs/reliability.md` lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "config",
        run: config,
    },
    Target {
        name: "jsonl",
        run: jsonl,
    },
    Target {
        name: "text",
        run: text,
    },
    Target {
        name: "medline",
        run: medline,
    },
    Target {
        name: "parquet",
        run: parquet,
    },
    Target {
        name: "shard",
        run: shard,
    },
    Target {
        name: "tokenizer",
        run: tokenizer,
    },
    Target {
        name: "fast_tokenizer",
        run: fast_tokenizer,
    },
    Target {
        name: "safetensors",
        run: safetensors,
    },
    Target {
        name: "torch_pickle",
        run: torch_pickle,
    },
    Target {
        name: "trainer_state",
        run: trainer_state,
    },
];

/// For a fuzz target's `init`: panics that the corpus readers contain (the parquet crate's,
/// on corrupt pages; `mlm_corpus::untrusted`) are errors users see as such, not crashes, so
/// they skip the hook libFuzzer installed (which aborts); every other panic still reaches it.
pub fn contain_decoder_panics() {
    mlm_corpus::untrusted::quiet_contained_panics();
}

/// The run config loader of every command (`--config FILE`): TOML into the validated run
/// config. Leading lines `#set KEY=VALUE` become `--set` overrides, so the fuzzer reaches
/// the override path too.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let overrides: Vec<String> = text
        .lines()
        .map_while(|line| line.strip_prefix("#set "))
        .map(str::to_owned)
        .collect();
    with_scratch(|dir| {
        let path = write(dir, "run.toml", data);
        let _ = mlm_job::RunConfig::load_with(&path, &overrides);
    });
}

/// Runs `work` with an empty directory of this process, removed afterwards (fork-mode
/// fuzzing starts a process per job: nothing may pile up in the temporary directory).
fn with_scratch<R>(work: impl FnOnce(&Path) -> R) -> R {
    let dir = std::env::temp_dir().join(format!("mlm-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
    let result = work(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `dir/name`, holding `data`.
fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("the scratch directory is writable");
    path
}

#[cfg(test)]
mod regression_tests;
