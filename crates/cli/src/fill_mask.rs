//! `mlm-train fill-mask`: the [MASK] predictions of a checkpoint or Hugging Face directory,
//! printed as JSON in the shape of transformers' `pipeline("fill-mask")`
//! (pipelines/fill_mask.py `postprocess`): per mask, the top k of
//! `{score, token, token_str, sequence}`; a list per mask when a text holds several masks,
//! and a list per text when several texts are given.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use mlm_job::export::load_with_tokenizer;
use mlm_job::fill_mask::{Candidate, fill_mask};
use mlm_trainer::model::LoadReport;

use crate::stdout::outln;

/// Arguments of `mlm-train fill-mask`.
#[derive(Debug, Args)]
pub struct FillMaskArgs {
    /// Checkpoint or Hugging Face model directory (config.json, weights, tokenizer).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Predictions per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Texts with at least one mask token: the model's own (`[MASK]` for BERT, DistilBERT and
    /// ModernBERT, `<mask>` for the RoBERTa family).
    #[arg(required = true, value_name = "TEXT")]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub verify: crate::integrity::VerifyFlag,
}

/// Weights the load initialised or did not use are named, as transformers'
/// `from_pretrained` warns about missing and unexpected keys.
pub(crate) fn warn_about_load(dir: &Path, report: &LoadReport) {
    if !report.initialised.is_empty() || !report.unexpected.is_empty() {
        eprintln!("warning: {}: {}", dir.display(), report.summary());
    }
}

pub fn run(args: &FillMaskArgs, threads: Option<usize>) -> Result<()> {
    mlm_trainer::runtime::configure_threads(threads)?;
    crate::integrity::check_model_dir(&args.model, args.verify)?;
    let loaded = load_with_tokenizer(&args.model)?;
    warn_about_load(&args.model, &loaded.model.report);
    let per_text = args
        .texts
        .iter()
        .map(|text| fill_mask(&loaded.model.model, &loaded.tokenizer, text, args.top_k))
        .collect::<Result<Vec<_>, _>>()?;
    print_pipeline_json(per_text)
}

/// Prints `per_text` as the pipeline does.
fn print_pipeline_json(per_text: Vec<Vec<Vec<Candidate>>>) -> Result<()> {
    // The pipeline's nesting: drop the mask level for single-mask texts, the text level for a
    // single text.
    let shaped: Vec<serde_json::Value> = per_text
        .into_iter()
        .map(|mut per_mask| {
            if per_mask.len() == 1 {
                serde_json::to_value(per_mask.remove(0))
            } else {
                serde_json::to_value(per_mask)
            }
        })
        .collect::<Result<_, _>>()?;
    let output = if shaped.len() == 1 {
        shaped.into_iter().next().unwrap_or_default()
    } else {
        serde_json::Value::Array(shaped)
    };
    outln!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
