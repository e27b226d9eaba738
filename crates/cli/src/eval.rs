//! `mlm-train eval`: held-out metrics of a checkpoint with the run's fixed evaluation masks.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{HumanDuration, ProgressBar, ProgressStyle};
use mlm_trainer::run::{
    CheckpointEval, EvalMetrics, WordMetrics, evaluate_checkpoint_with, evaluate_checkpoint_words,
};

use crate::config::ConfigSource;
use crate::stdout::outln;

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
    /// Score whole words instead (for models with different tokenizers): mask every piece of
    /// words chosen by their text, report loss per word (the sum of its pieces' losses) and
    /// word accuracy (all pieces right).
    #[arg(long)]
    pub words: bool,
    #[command(flatten)]
    pub verify: crate::integrity::VerifyFlag,
}

pub fn run(args: &EvalArgs, source: &ConfigSource, threads: Option<usize>) -> Result<()> {
    let config = source.load()?;
    let device = config.apply_runtime(threads)?.device;
    crate::integrity::check_model_dir(&args.checkpoint, args.verify)?;
    let corpus_dir = match &args.data {
        Some(dir) => dir.clone(),
        None => config.prepared_dir()?,
    };
    crate::integrity::check_corpus_dir(&corpus_dir, args.verify)?;
    // Evaluation runs in fp32 here: the numbers of `eval` are the reference ones.
    let request = CheckpointEval {
        checkpoint: &args.checkpoint,
        corpus_dir: &corpus_dir,
        masking: &config.masking,
        eval: &config.eval,
        device,
    };
    if args.words {
        return evaluate_words(args, &request);
    }
    let mut progress = EvalProgress::new(true);
    let metrics = evaluate_checkpoint_with(&request, &mut |done, total| {
        progress.update("eval", done, total);
    });
    progress.finish();
    let metrics = metrics.with_context(|| {
        format!(
            "evaluating {} on {}",
            args.checkpoint.display(),
            corpus_dir.display()
        )
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print_table(&metrics)?;
    }
    Ok(())
}

fn print_table(metrics: &EvalMetrics) -> Result<()> {
    outln!("loss            {:.5}", metrics.loss);
    outln!("perplexity      {:.4}", metrics.perplexity);
    outln!("accuracy        {:.4}", metrics.accuracy);
    outln!("top5_accuracy   {:.4}", metrics.top5_accuracy);
    outln!("mask_accuracy   {:.4}", metrics.mask_accuracy);
    outln!("masked_tokens   {}", metrics.masked_tokens);
    outln!("sequences       {}", metrics.sequences);
    Ok(())
}

/// `eval --words`: word-level loss and accuracy.
fn evaluate_words(args: &EvalArgs, request: &CheckpointEval<'_>) -> Result<()> {
    let metrics = evaluate_checkpoint_words(request).with_context(|| {
        format!(
            "evaluating {} on {} (whole words)",
            args.checkpoint.display(),
            request.corpus_dir.display()
        )
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print_word_table(&metrics)?;
    }
    Ok(())
}

fn print_word_table(metrics: &WordMetrics) -> Result<()> {
    outln!("loss_per_word    {:.5}", metrics.loss_per_word);
    outln!("word_accuracy    {:.4}", metrics.word_accuracy);
    outln!("pieces_per_word  {:.4}", metrics.pieces_per_word);
    outln!("split_share      {:.4}", metrics.split_share);
    outln!("loss_per_piece   {:.5}", metrics.loss_per_piece);
    outln!("words            {}", metrics.words);
    outln!("sequences        {}", metrics.sequences);
    Ok(())
}

/// Progress of an evaluation on stderr: a bar on a terminal, a plain line every 10 seconds
/// otherwise (batch logs). Evaluating 20,000 held-out sequences of BERT-base takes minutes.
pub struct EvalProgress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Option<Instant>,
}

impl EvalProgress {
    /// `with_bar`: draw a bar of its own on a terminal (`eval`); the main job has one.
    pub fn new(with_bar: bool) -> Self {
        let bar = (with_bar && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "evaluating {bar:30} {pos}/{len} held-out sequences [{elapsed_precise} < {eta_precise}]",
            );
            bar.set_style(style.expect("a valid template"));
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_line: None,
        }
    }

    /// Records `done` of `total` sequences; `label` names the evaluation in plain lines.
    pub fn update(&mut self, label: &str, done: u64, total: u64) {
        if done == 0 {
            self.started = Instant::now();
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        if done == 0
            || self
                .last_line
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        self.last_line = Some(Instant::now());
        let fraction = done as f64 / total.max(1) as f64;
        let eta = self.started.elapsed().mul_f64((1.0 - fraction) / fraction);
        eprintln!(
            "{label}: {done}/{total} held-out sequences ({:.0}%), ETA {}",
            100.0 * fraction,
            HumanDuration(eta)
        );
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
