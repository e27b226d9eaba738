//! `mlm-train export`. (Scaffold: filled in by its issue.)

use anyhow::{Result, bail};
use clap::Args;

/// Arguments of `mlm-train export`.
#[derive(Debug, Args)]
pub struct ExportArgs {}

pub fn run(_args: &ExportArgs) -> Result<()> {
    bail!("`mlm-train export` is not in this build yet")
}
