//! `mlm-train eval`. (Scaffold: filled in by its issue.)

use anyhow::{Result, bail};
use clap::Args;

/// Arguments of `mlm-train eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {}

pub fn run(_args: &EvalArgs, _threads: Option<usize>) -> Result<()> {
    bail!("`mlm-train eval` is not in this build yet")
}
