//! `mlm-train export`: a checkpoint as a Hugging Face model directory that `transformers`
//! loads with no conversion (`AutoModelForMaskedLM`, `pipeline("fill-mask")`, fine-tuning).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use mlm_job::export::{export_checkpoint, load_with_tokenizer};
use mlm_trainer::model::ExportOptions;

/// Arguments of `mlm-train export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint directory (`<output_dir>/checkpoint-N`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Where to write the Hugging Face directory. It appears whole or not at all (written
    /// beside it, then renamed); an existing directory there is replaced as a whole.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Leave out `bert.pooler.*`. By default the pooler is kept for fine-tuning
    /// (`AutoModelForSequenceClassification` then finds it); transformers 5's
    /// `BertForMaskedLM` has no pooler and lists it as an unexpected key when loading.
    #[arg(long)]
    pub no_pooler: bool,
    #[command(flatten)]
    pub verify: crate::integrity::VerifyFlag,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    crate::integrity::check_model_dir(&args.checkpoint, args.verify)?;
    let loaded = load_with_tokenizer(&args.checkpoint)?;
    crate::fill_mask::warn_about_load(&args.checkpoint, &loaded.model.report);
    let options = ExportOptions {
        include_pooler: !args.no_pooler,
    };
    export_checkpoint(&loaded, &args.out, options)?;
    eprintln!(
        "exported {} to {}",
        args.checkpoint.display(),
        args.out.display()
    );
    Ok(())
}
