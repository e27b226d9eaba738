//! `mlm-train fill-mask`. (Scaffold: filled in by its issue.)

use anyhow::{Result, bail};
use clap::Args;

/// Arguments of `mlm-train fill-mask`.
#[derive(Debug, Args)]
pub struct FillMaskArgs {}

pub fn run(_args: &FillMaskArgs, _threads: Option<usize>) -> Result<()> {
    bail!("`mlm-train fill-mask` is not in this build yet")
}
