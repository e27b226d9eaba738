//! The run config: one TOML file, `deny_unknown_fields` everywhere, each section owned by
//! the crate that uses it (`[runtime]` by mlm-trainer). Errors name the file, and toml's
//! own message names the line, column and key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mlm_trainer::runtime::RuntimeConfig;
use serde::Deserialize;

/// What a config file may contain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfigFile {
    #[serde(default)]
    runtime: RuntimeConfig,
}

/// A loaded and checked run config.
#[derive(Debug)]
pub struct RunConfig {
    /// The config file, absolute.
    pub path: PathBuf,
    pub runtime: RuntimeConfig,
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let file: RunConfigFile =
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        let path = std::path::absolute(path)
            .with_context(|| format!("cannot resolve config path {}", path.display()))?;
        Ok(Self {
            path,
            runtime: file.runtime,
        })
    }
}
