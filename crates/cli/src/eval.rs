//! `mlm-train eval`: held-out metrics of a checkpoint with the run's fixed evaluation masks.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mlm_trainer::run::{CheckpointEval, EvalMetrics, evaluate_checkpoint};

use crate::config::ConfigSource;

/// Arguments of `mlm-train eval`, besides the global `--config FILE` (the run config: its
/// [masking] and [eval] sections fix the evaluation masks) and `--set`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint (or Hugging Face model directory) to evaluate.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Another prepared corpus to evaluate on (its held-out split); default: the config's.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print the metrics as JSON (`loss`, `perplexity`, `accuracy`, `top5_accuracy`,
    /// `mask_accuracy`, `masked_tokens`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EvalArgs, source: &ConfigSource, threads: Option<usize>) -> Result<()> {
    let config = source.load()?;
    let (_, device) = config.apply_runtime(threads)?;
    let corpus_dir = match &args.data {
        Some(dir) => dir.clone(),
        None => config.prepared_dir()?,
    };
    // Evaluation runs in fp32 here: the numbers of `eval` are the reference ones.
    let metrics = evaluate_checkpoint(&CheckpointEval {
        checkpoint: &args.checkpoint,
        corpus_dir: &corpus_dir,
        masking: &config.masking,
        eval: &config.eval,
        device,
    })
    .with_context(|| {
        format!(
            "evaluating {} on {}",
            args.checkpoint.display(),
            corpus_dir.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print_table(&metrics);
    }
    Ok(())
}

fn print_table(metrics: &EvalMetrics) {
    println!("loss            {:.5}", metrics.loss);
    println!("perplexity      {:.4}", metrics.perplexity);
    println!("accuracy        {:.4}", metrics.accuracy);
    println!("top5_accuracy   {:.4}", metrics.top5_accuracy);
    println!("mask_accuracy   {:.4}", metrics.mask_accuracy);
    println!("masked_tokens   {}", metrics.masked_tokens);
    println!("sequences       {}", metrics.sequences);
}
