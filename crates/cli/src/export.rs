//! `mlm-train export`: a checkpoint as a Hugging Face model directory that `transformers`
//! loads with no conversion (`AutoModelForMaskedLM`, `pipeline("fill-mask")`, fine-tuning).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use mlm_job::export::{check_destination, export_checkpoint, load_with_tokenizer};
use mlm_trainer::model::ExportOptions;

/// Arguments of `mlm-train export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint directory (`<output_dir>/checkpoint-N`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Where to write the Hugging Face directory: a new or empty directory. It appears whole
    /// or not at all (written beside it, then renamed). A directory holding anything else is
    /// refused: an export never removes files it did not write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an earlier export at `--out` (one whose integrity.json says it is an export
    /// and that holds only the files it lists).
    #[arg(long)]
    pub overwrite: bool,
    /// Leave out `bert.pooler.*`. By default the pooler is kept for fine-tuning
    /// (`AutoModelForSequenceClassification` then finds it); transformers 5's
    /// `BertForMaskedLM` has no pooler and lists it as an unexpected key when loading.
    #[arg(long)]
    pub no_pooler: bool,
    #[command(flatten)]
    pub verify: crate::integrity::VerifyFlag,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    // Before the (slow) load: a refused destination costs nothing.
    check_destination(&args.out, args.overwrite)?;
    crate::integrity::check_model_dir(&args.checkpoint, args.verify)?;
    let loaded = load_with_tokenizer(&args.checkpoint)?;
    crate::fill_mask::warn_about_load(&args.checkpoint, &loaded.model.report);
    let options = ExportOptions {
        include_pooler: !args.no_pooler,
    };
    export_checkpoint(&loaded, &args.out, options, args.overwrite)?;
    eprintln!(
        "exported {} to {}",
        args.checkpoint.display(),
        args.out.display()
    );
    Ok(())
}
