//! `mlm-train prepare`. (Scaffold: filled in by its issue.)

use anyhow::{Result, bail};
use clap::Args;

/// Arguments of `mlm-train prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {}

pub fn run(_args: &PrepareArgs, _threads: Option<usize>) -> Result<()> {
    bail!("`mlm-train prepare` is not in this build yet")
}
