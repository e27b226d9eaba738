//! `mlm-train eval`: held-out metrics of a checkpoint with the run's fixed evaluation masks.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mlm_trainer::run::{
    CheckpointEval, EvalMetrics, WordMetrics, evaluate_checkpoint, evaluate_checkpoint_words,
};

use crate::config::RunConfig;

/// Arguments of `mlm-train eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run config (its [masking] and [eval] sections fix the evaluation masks).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
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
    /// Override a config key, e.g. `--set eval.max_eval_samples=500` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Score whole words instead (for models with different tokenizers): mask every piece of
    /// words chosen by their text, report loss per word (the sum of its pieces' losses) and
    /// word accuracy (all pieces right).
    #[arg(long)]
    pub words: bool,
}

pub fn run(args: &EvalArgs, threads: Option<usize>) -> Result<()> {
    let config = RunConfig::load_with(&args.config, &args.overrides)?;
    let (_, device) = config.apply_runtime(threads)?;
    let corpus_dir = match &args.data {
        Some(dir) => dir.clone(),
        None => config.prepared_dir()?,
    };
    // Evaluation runs in fp32 here: the numbers of `eval` are the reference ones.
    let request = CheckpointEval {
        checkpoint: &args.checkpoint,
        corpus_dir: &corpus_dir,
        masking: &config.masking,
        eval: &config.eval,
        device,
    };
    let context = || {
        format!(
            "evaluating {} on {}",
            args.checkpoint.display(),
            corpus_dir.display()
        )
    };
    if args.words {
        let metrics = evaluate_checkpoint_words(&request).with_context(context)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&metrics)?);
        } else {
            print_word_table(&metrics);
        }
        return Ok(());
    }
    let metrics = evaluate_checkpoint(&request).with_context(|| {
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

fn print_word_table(metrics: &WordMetrics) {
    println!("loss_per_word    {:.5}", metrics.loss_per_word);
    println!("word_accuracy    {:.4}", metrics.word_accuracy);
    println!("pieces_per_word  {:.4}", metrics.pieces_per_word);
    println!("split_share      {:.4}", metrics.split_share);
    println!("loss_per_piece   {:.5}", metrics.loss_per_piece);
    println!("words            {}", metrics.words);
    println!("sequences        {}", metrics.sequences);
}
