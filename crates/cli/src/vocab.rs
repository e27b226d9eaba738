//! `mlm-train vocab ...`. (Scaffold: filled in by its issue.)

use anyhow::{Result, bail};
use clap::Subcommand;

/// `mlm-train vocab` subcommands.
#[derive(Debug, Subcommand)]
pub enum VocabCommand {
    /// Train a WordPiece tokenizer on the configured corpus.
    Train {},
}

pub fn run(_command: &VocabCommand, _threads: Option<usize>) -> Result<()> {
    bail!("`mlm-train vocab` is not in this build yet")
}
