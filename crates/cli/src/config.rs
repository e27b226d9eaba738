//! The run config: one TOML file, `deny_unknown_fields` everywhere, each section owned by
//! the crate that uses it (`[runtime]` by mlm-trainer). Errors name the file, and toml's
//! own message names the line, column and key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mlm_corpus::{CorpusConfig, VocabConfig};
use mlm_masking::MaskingConfig;
use mlm_trainer::run::{CheckpointConfig, EvalConfig, ModelSection, TrainingConfig};
use mlm_trainer::runtime::RuntimeConfig;
use serde::Deserialize;

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
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &[])
    }

    /// Loads `path`, then applies `--set key=value` overrides (`training.max_steps=100`;
    /// the value is read as TOML, or as a string when it is not valid TOML).
    pub fn load_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        // Parsed from the text first so that errors carry the line and column.
        let mut file: RunConfigFile =
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("invalid config {}", path.display()))?;
            for assignment in overrides {
                apply_override(&mut table, assignment)?;
            }
            file = toml::Value::Table(table).try_into().with_context(|| {
                format!(
                    "invalid config {} after --set {}",
                    path.display(),
                    overrides.join(" --set ")
                )
            })?;
        }
        let path = std::path::absolute(path)
            .with_context(|| format!("cannot resolve config path {}", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut corpus = file.corpus;
        if let Some(corpus) = &mut corpus {
            corpus.resolve_paths(&base);
        }
        let mut vocab = file.vocab;
        if let Some(vocab) = &mut vocab {
            vocab.resolve_paths(&base);
        }
        let mut model = file.model;
        model.init_from = model.init_from.map(|p| base.join(p));
        model.config = model.config.map(|p| base.join(p));
        let mut training = file.training;
        training.output_dir = base.join(&training.output_dir);
        Ok(Self {
            path,
            runtime: file.runtime,
            corpus,
            vocab,
            model,
            masking: file.masking,
            training,
            eval: file.eval,
            checkpoint: file.checkpoint,
        })
    }

    /// `[corpus]`, or an error saying the command needs it.
    pub fn corpus(&self) -> Result<&CorpusConfig> {
        self.corpus
            .as_ref()
            .with_context(|| format!("{} has no [corpus] section", self.path.display()))
    }

    /// The prepared corpus directory (`corpus.output`).
    pub fn prepared_dir(&self) -> Result<PathBuf> {
        Ok(self.corpus()?.output_dir()?.to_path_buf())
    }

    /// The resolved config as TOML (saved with every checkpoint as `run_config.toml`).
    pub fn resolved_toml(&self) -> Result<String> {
        let mut table = toml::Table::new();
        let mut put = |name: &str, value: Result<toml::Value, toml::ser::Error>| -> Result<()> {
            table.insert(
                name.to_string(),
                value.with_context(|| format!("serialising [{name}]"))?,
            );
            Ok(())
        };
        if let Some(corpus) = &self.corpus {
            put("corpus", toml::Value::try_from(corpus))?;
        }
        if let Some(vocab) = &self.vocab {
            put("vocab", toml::Value::try_from(vocab))?;
        }
        put("model", toml::Value::try_from(&self.model))?;
        put("masking", toml::Value::try_from(&self.masking))?;
        put("training", toml::Value::try_from(&self.training))?;
        put("eval", toml::Value::try_from(&self.eval))?;
        put("checkpoint", toml::Value::try_from(&self.checkpoint))?;
        Ok(format!(
            "# Resolved from {}\n{}",
            self.path.display(),
            toml::to_string(&table).context("serialising the resolved config")?
        ))
    }
}

/// Sets `section.key = value` in `table`, creating tables on the way.
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .with_context(|| format!("--set {assignment}: expected key=value"))?;
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
        .with_context(|| format!("--set {assignment}: empty key"))?;
    let mut current = table;
    for part in parts {
        current = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("--set {assignment}: `{part}` is not a table"))?;
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
}
