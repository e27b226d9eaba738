//! `mlm-train config`: the resolved config (the file, its `--set` overrides and every default,
//! paths made absolute) as TOML that is itself a valid config, or the config reference
//! (docs/config.md, built into the binary so that an installed binary carries it).

use anyhow::Result;
use clap::Args;

use crate::config::ConfigSource;

/// The config reference, as docs/config.md in the source tree.
const REFERENCE: &str = include_str!("../../../docs/config.md");

/// Arguments of `mlm-train config` (the config itself comes from the global `--config FILE`
/// and `--set`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    mlm-train config --config configs/pubmed.toml\n  \
    mlm-train config --config configs/pubmed.toml --set training.learning_rate=1e-4 > run.toml\n  \
    mlm-train config --reference")]
pub struct ConfigArgs {
    /// Print the config reference (every section and key, its type, default and meaning)
    /// instead of a resolved config.
    #[arg(long)]
    pub reference: bool,
}

pub fn print_reference() -> Result<()> {
    crate::stdout::print(REFERENCE)
}

pub fn print_resolved(source: &ConfigSource) -> Result<()> {
    let config = source.load()?;
    crate::stdout::print(&config.resolved_toml()?)
}
