//! `mlm-train export`: a checkpoint as a Hugging Face model directory that `transformers`
//! loads with no conversion (`AutoModelForMaskedLM`, `pipeline("fill-mask")`, fine-tuning).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mlm_corpus::DomainTokenizer;
use mlm_trainer::model::load_model_dir;
use mlm_trainer::model::{ExportOptions, export_hf_model_with};

/// Arguments of `mlm-train export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint directory (`<output_dir>/checkpoint-N`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Where to write the Hugging Face directory (created; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Leave out `bert.pooler.*`. By default the pooler is kept for fine-tuning
    /// (`AutoModelForSequenceClassification` then finds it); transformers 5's
    /// `BertForMaskedLM` has no pooler and lists it as an unexpected key when loading.
    #[arg(long)]
    pub no_pooler: bool,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let built = load_model_dir(&args.checkpoint, tch::Device::Cpu)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    let tokenizer = DomainTokenizer::load(&args.checkpoint, None)
        .with_context(|| format!("loading the tokenizer of {}", args.checkpoint.display()))?;
    crate::fill_mask::check_loaded(&args.checkpoint, &tokenizer, &built)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let options = ExportOptions {
        include_pooler: !args.no_pooler,
    };
    export_hf_model_with(&built.vs, &built.config, &args.out, options)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    tokenizer
        .write_hf_files(&args.out, built.config.max_sequence_length() as usize)
        .with_context(|| format!("writing the tokenizer to {}", args.out.display()))?;
    eprintln!(
        "exported {} to {}",
        args.checkpoint.display(),
        args.out.display()
    );
    Ok(())
}
