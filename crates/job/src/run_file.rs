//! The run file: one TOML file, `deny_unknown_fields` everywhere, each section owned by
//! the crate that uses it (`[runtime]` by mlm-trainer), composed here with its paths
//! resolved against the file's directory. Errors name the file, and toml's own message names
//! the line, column and key. Every section is validated as a whole when the file loads,
//! before any work; every such failure is a [`ConfigError`] (the CLI exits with status 2).

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};

use mlm_corpus::{CorpusConfig, VocabConfig, resolve_path};
use mlm_masking::{MaskingConfig, MaskingUnit};
use mlm_trainer::run::{
    CheckpointConfig, DistributedConfig, EvalConfig, LoggingConfig, ModelSection, TrainingConfig,
};
use mlm_trainer::runtime::{
    CpuMatmulResolved, RuntimeConfig, RuntimeError, ThreadCounts, configure_threads,
    keep_freed_memory,
};
use serde::Deserialize;
use tch::Device;

/// A config that cannot be used: unreadable, not TOML, an unknown key, a value of the wrong
/// type or out of range, a bad `--set`, a section the command needs missing. Nothing was done
/// before it; the CLI exits with status 2 for it, as for a usage error.
#[derive(Debug)]
pub struct ConfigError {
    /// What failed, naming the file: `invalid config configs/x.toml`.
    context: String,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl ConfigError {
    pub fn new(context: String, source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self {
            context,
            source: Some(source.into()),
        }
    }

    fn message(context: String) -> Self {
        Self {
            context,
            source: None,
        }
    }

    /// `invalid config FILE`, caused by `source`.
    fn invalid(path: &Path, source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self::new(format!("invalid config {}", path.display()), source)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

/// Where a command's config comes from: the file of `--config` and the `--set` overrides.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub overrides: Vec<String>,
}

impl ConfigSource {
    /// The config, loaded with its overrides and validated.
    pub fn load(&self) -> Result<RunConfig, ConfigError> {
        RunConfig::load_with(&self.path, &self.overrides)
    }
}

/// What a config file may contain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfigFile {
    #[serde(default)]
    runtime: RuntimeConfig,
    corpus: Option<CorpusConfig>,
    vocab: Option<VocabConfig>,
    #[serde(default)]
    model: ModelSection,
    #[serde(default)]
    masking: MaskingConfig,
    #[serde(default)]
    training: TrainingConfig,
    #[serde(default)]
    eval: EvalConfig,
    #[serde(default)]
    checkpoint: CheckpointConfig,
    #[serde(default)]
    distributed: DistributedConfig,
    #[serde(default)]
    logging: LoggingConfig,
}

/// A loaded and checked run config.
#[derive(Debug)]
pub struct RunConfig {
    /// The config file, absolute.
    pub path: PathBuf,
    pub runtime: RuntimeConfig,
    /// `[corpus]` (paths resolved against the config file's directory), when given.
    pub corpus: Option<CorpusConfig>,
    /// `[vocab]` (paths resolved), when given.
    pub vocab: Option<VocabConfig>,
    /// `[model]`, paths resolved against the config file's directory.
    pub model: ModelSection,
    pub masking: MaskingConfig,
    /// `[training]`, `output_dir` resolved against the config file's directory.
    pub training: TrainingConfig,
    pub eval: EvalConfig,
    pub checkpoint: CheckpointConfig,
    /// `[distributed]`: used when a launcher (torchrun, srun, `--nproc-per-node`) starts ranks.
    pub distributed: DistributedConfig,
    /// `[logging]`, `tensorboard_dir` resolved against the config file's directory.
    pub logging: LoggingConfig,
}

/// The phrases `prepare` matches for `[masking] unit = "phrase"`, the file resolved against
/// the config's directory.
fn phrase_spec(masking: &MaskingConfig, base: &Path) -> Option<mlm_corpus::phrases::PhraseSpec> {
    (masking.unit() == MaskingUnit::Phrase).then(|| mlm_corpus::phrases::PhraseSpec {
        file: masking.phrases.as_ref().map(|p| resolve_path(base, p)),
        pmi_ngrams: masking.pmi_ngrams,
        pmi_min_count: masking.pmi_min_count,
    })
}

impl RunConfig {
    /// Loads `path`, applies `--set key=value` overrides (`training.max_steps=100`; the value
    /// is read as TOML, or as a string when it is not valid TOML), then validates every
    /// section. Every failure is a [`ConfigError`].
    pub fn load_with(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let file = read_file(path, overrides)?;
        file.validate()
            .map_err(|source| ConfigError::new(invalid_config(path, overrides), source))?;
        let absolute = std::path::absolute(path).map_err(|source| {
            ConfigError::new(
                format!("cannot resolve config path {}", path.display()),
                source,
            )
        })?;
        // Lexically normalised, so printed paths read `runs/x`, not `configs/../runs/x`.
        Ok(Self::resolved(resolve_path(&absolute, Path::new("")), file))
    }

    /// The config with its paths resolved against the directory of `path` (absolute).
    fn resolved(path: PathBuf, file: RunConfigFile) -> Self {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut corpus = file.corpus;
        if let Some(corpus) = &mut corpus {
            corpus.resolve_paths(&base);
            corpus.phrases = phrase_spec(&file.masking, &base);
        }
        let mut vocab = file.vocab;
        if let Some(vocab) = &mut vocab {
            vocab.resolve_paths(&base);
        }
        let mut model = file.model;
        model.init_from = model.init_from.map(|p| resolve_path(&base, &p));
        model.config = model.config.map(|p| resolve_path(&base, &p));
        let mut training = file.training;
        training.output_dir = resolve_path(&base, &training.output_dir);
        let mut logging = file.logging;
        logging.tensorboard_dir = logging.tensorboard_dir.map(|p| resolve_path(&base, &p));
        Self {
            path,
            runtime: file.runtime,
            corpus,
            vocab,
            model,
            masking: file.masking,
            training,
            eval: file.eval,
            checkpoint: file.checkpoint,
            distributed: file.distributed,
            logging,
        }
    }

    /// Applies `[runtime]`: the thread pools (`--threads` wins over `runtime.cpu_threads`),
    /// the device and, on the CPU, `cpu_keep_freed_memory` and `cpu_matmul`, for the commands
    /// that run a model.
    pub fn apply_runtime(
        &self,
        threads_flag: Option<usize>,
    ) -> Result<AppliedRuntime, RuntimeError> {
        let threads = configure_threads(threads_flag.or(self.runtime.cpu_threads))?;
        let device = self.runtime.device.resolve()?;
        let mut cpu_matmul = None;
        if device == Device::Cpu {
            if self.runtime.cpu_keep_freed_memory {
                keep_freed_memory();
            }
            cpu_matmul = Some(self.runtime.cpu_matmul.apply()?);
        }
        Ok(AppliedRuntime {
            threads,
            device,
            cpu_matmul,
        })
    }

    /// `[corpus]`, or an error saying the command needs it.
    pub fn corpus(&self) -> Result<&CorpusConfig, ConfigError> {
        let corpus = self.corpus.as_ref().ok_or_else(|| {
            ConfigError::message(format!("{} has no [corpus] section", self.path.display()))
        })?;
        Ok(corpus)
    }

    /// The prepared corpus directory (`corpus.output`).
    pub fn prepared_dir(&self) -> Result<PathBuf, ConfigError> {
        let dir = self
            .corpus()?
            .output_dir()
            .map_err(|source| ConfigError::invalid(&self.path, source))?;
        Ok(dir.to_path_buf())
    }

    /// The resolved config as TOML (saved with every checkpoint as `run_config.toml`).
    pub fn resolved_toml(&self) -> Result<String, ConfigError> {
        let mut table = toml::Table::new();
        let mut put =
            |name: &str, value: Result<toml::Value, toml::ser::Error>| -> Result<(), ConfigError> {
                let value = value
                    .map_err(|source| ConfigError::new(format!("serialising [{name}]"), source))?;
                table.insert(name.to_string(), value);
                Ok(())
            };
        // In the order a job uses them (the table keeps insertion order).
        put("runtime", Ok(self.runtime_table()))?;
        if let Some(vocab) = &self.vocab {
            put("vocab", toml::Value::try_from(vocab))?;
        }
        if let Some(corpus) = &self.corpus {
            put("corpus", toml::Value::try_from(corpus))?;
        }
        put("model", toml::Value::try_from(&self.model))?;
        put("masking", toml::Value::try_from(&self.masking))?;
        put("training", toml::Value::try_from(&self.training))?;
        put("eval", toml::Value::try_from(&self.eval))?;
        put("checkpoint", toml::Value::try_from(&self.checkpoint))?;
        put("distributed", toml::Value::try_from(&self.distributed))?;
        put("logging", toml::Value::try_from(&self.logging))?;
        Ok(format!(
            "# Resolved from {}.\n# Keys left out take a value derived \
             when the job runs (`mlm-train config --reference`).\n{}",
            self.path.display(),
            toml::to_string(&table).map_err(|source| ConfigError::new(
                "serialising the resolved config".to_owned(),
                source
            ))?
        ))
    }
}

/// What [`RunConfig::apply_runtime`] set up.
#[derive(Debug, Clone)]
pub struct AppliedRuntime {
    pub threads: ThreadCounts,
    pub device: Device,
    /// The library of fp32 linear layers, on the CPU (`None` on a GPU).
    pub cpu_matmul: Option<CpuMatmulResolved>,
}

impl RunConfig {
    /// `[runtime]` as written in a config (`cpu_threads` only when set: its default is
    /// every core of the machine the job runs on).
    fn runtime_table(&self) -> toml::Value {
        let mut runtime = toml::Table::new();
        let device = self.runtime.device.to_string();
        runtime.insert("device".into(), toml::Value::String(device));
        if let Some(threads) = self.runtime.cpu_threads {
            let threads = i64::try_from(threads).unwrap_or(i64::MAX);
            runtime.insert("cpu_threads".into(), toml::Value::Integer(threads));
        }
        let keep = toml::Value::Boolean(self.runtime.cpu_keep_freed_memory);
        runtime.insert("cpu_keep_freed_memory".into(), keep);
        let matmul = toml::Value::String(self.runtime.cpu_matmul.to_string());
        runtime.insert("cpu_matmul".into(), matmul);
        toml::Value::Table(runtime)
    }
}

impl RunConfigFile {
    /// Every section at once, in the order a job uses them; the first out-of-range value
    /// is the error, naming its full key (`training.batch_size = 0 must be >= 1`).
    fn validate(&self) -> Result<(), Box<dyn Error + Send + Sync>> {
        self.runtime.validate()?;
        if let Some(vocab) = &self.vocab {
            vocab.validate()?;
        }
        if let Some(corpus) = &self.corpus {
            corpus.validate()?;
            if corpus.phrases.is_some() {
                return Err(
                    "corpus.phrases is not a key: masking phrases are set in [masking] \
                            (phrases = \"FILE\", pmi_ngrams = N), and prepare reads them there"
                        .into(),
                );
            }
            // `vocab extend`'s keys: a half-written extension is refused before any work.
            if let Some(vocab) = self
                .vocab
                .as_ref()
                .filter(|v| v.extend_from.is_some() || v.add.is_some())
            {
                vocab.validate_extend(corpus)?;
            }
        }
        self.masking.validate()?;
        self.model.validate()?;
        self.check_positions()?;
        self.training.validate()?;
        self.eval.validate()?;
        self.checkpoint.validate()?;
        self.distributed.validate()?;
        self.logging.validate()?;
        Ok(())
    }
}

impl RunConfigFile {
    /// A model from scratch must have a position for every token of a sequence: caught here,
    /// before the corpus is prepared (hours on PubMed), rather than when training starts.
    /// (RoBERTa's position offset and a checkpoint's own table are checked when the model is
    /// built, once the tokenizer's pad id and the checkpoint's config.json are known.)
    fn check_positions(&self) -> Result<(), Box<dyn Error + Send + Sync>> {
        let (Some(corpus), Some(positions)) = (&self.corpus, self.model.max_position_embeddings)
        else {
            return Ok(());
        };
        let from_scratch = self.model.init_from.is_none() && self.model.config.is_none();
        if from_scratch && corpus.max_seq_len > positions {
            return Err(format!(
                "corpus.max_seq_len = {} is longer than model.max_position_embeddings = \
                 {positions}: the model would have no position for the last tokens",
                corpus.max_seq_len
            )
            .into());
        }
        Ok(())
    }
}

/// Reads and parses `path` and applies the `--set` overrides.
fn read_file(path: &Path, overrides: &[String]) -> Result<RunConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        ConfigError::new(format!("cannot read config {}", path.display()), source)
    })?;
    // Parsed from the text first so that errors carry the line and column.
    let file: RunConfigFile =
        toml::from_str(&text).map_err(|source| ConfigError::invalid(path, source))?;
    if overrides.is_empty() {
        return Ok(file);
    }
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|source| ConfigError::invalid(path, source))?;
    for assignment in overrides {
        apply_override(&mut table, assignment)?;
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|source| ConfigError::new(invalid_config(path, overrides), source))
}

/// `invalid config FILE`, with the `--set` overrides when there are any.
fn invalid_config(path: &Path, overrides: &[String]) -> String {
    let mut context = format!("invalid config {}", path.display());
    if !overrides.is_empty() {
        context += &format!(" after --set {}", overrides.join(" --set "));
    }
    context
}

/// Sets `section.key = value` in `table`, creating tables on the way.
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let usage = |problem: &str| ConfigError::message(format!("--set {assignment}: {problem}"));
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| usage("expected key=value"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| usage("empty key"))?;
    let mut current = table;
    for part in parts {
        current = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| usage(&format!("`{part}` is not a table")))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_toml_values_and_fall_back_to_strings() {
        let mut table = toml::Table::new();
        apply_override(&mut table, "training.max_steps=100").unwrap();
        apply_override(&mut table, "training.output_dir = runs/x").unwrap();
        apply_override(&mut table, "runtime.device=\"cpu\"").unwrap();
        assert_eq!(table["training"]["max_steps"].as_integer(), Some(100));
        assert_eq!(table["training"]["output_dir"].as_str(), Some("runs/x"));
        assert_eq!(table["runtime"]["device"].as_str(), Some("cpu"));
        assert!(apply_override(&mut table, "no-equals").is_err());
        assert!(apply_override(&mut table, "training.max_steps.x=1").is_err());
    }

    /// Loads `text` (written to a temporary file) with `overrides`.
    fn load_text(name: &str, text: &str, overrides: &[&str]) -> Result<RunConfig, ConfigError> {
        // One directory per call (tests run in parallel), removed afterwards.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mlm-cli-config-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let loaded = RunConfig::load_with(&path, &overrides);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    }

    /// The error's text with its causes, as `main` prints them (`{:#}` of anyhow).
    fn chain(error: &ConfigError) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text += &format!(": {cause}");
            source = cause.source();
        }
        text
    }

    #[test]
    fn every_section_is_validated_after_the_overrides() {
        let error = load_text("batch.toml", "[training]\nbatch_size = 0\n", &[]).unwrap_err();
        assert!(
            chain(&error).ends_with("training.batch_size = 0 must be >= 1"),
            "{}",
            chain(&error)
        );
        // An override fixes the file's value, or breaks a good one.
        let fixed = load_text(
            "fixed.toml",
            "[training]\nbatch_size = 0\n",
            &["training.batch_size=2"],
        );
        assert_eq!(fixed.unwrap().training.batch_size, 2);
        for (set, expected) in [
            ("runtime.cpu_threads=0", "runtime.cpu_threads = 0"),
            ("eval.eval_batch_size=0", "eval.eval_batch_size = 0"),
            ("checkpoint.save_minutes=-1", "checkpoint.save_minutes = -1"),
            ("model.dropout=1.5", "model.dropout = 1.5"),
            (
                "masking.mlm_probability=1.5",
                "masking.mlm_probability = 1.5",
            ),
            ("vocab.vocab_size=3", "vocab.vocab_size = 3"),
        ] {
            let error = load_text("set.toml", "", &[set]).unwrap_err();
            assert!(chain(&error).contains(expected), "{set}: {}", chain(&error));
        }
    }

    #[test]
    fn unreadable_and_malformed_configs_are_config_errors() {
        let missing = RunConfig::load_with(Path::new("no/such/config.toml"), &[]).unwrap_err();
        assert!(chain(&missing).starts_with("cannot read config no/such/config.toml: "));
        let cases: [(&str, &[&str]); 4] = [
            ("[training\n", &[]),
            ("[training]\nbatch_size = \"four\"\n", &[]),
            ("", &["training.batch_sise=4"]),
            ("", &["no-equals"]),
        ];
        for (text, overrides) in cases {
            let error = load_text("bad.toml", text, overrides).unwrap_err();
            let text = chain(&error);
            assert!(
                text.contains("bad.toml") || text.starts_with("--set "),
                "the error names the file or the override: {text}"
            );
        }
    }
}
