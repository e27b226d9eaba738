//! `mlm-train`: domain-adaptive masked-language-model pre-training.
//!
//! The binary is thin: it parses arguments, loads the run config and hands work to the
//! library crates. It is the only crate that uses `anyhow`; `main` prints the error chain and
//! exits with status 2 for a config error (nothing was done), 1 for any other failure, and
//! 130 for a main job stopped early with a checkpoint saved.

// The CLI is the one place that presents: the workspace denies printing in library crates
// (they report through return values and observers), and this crate prints what they return.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod config;
mod config_cmd;
mod doctor;
mod dry_run;
mod eval;
mod export;
mod fill_mask;
mod inspect;
mod integrity;
mod paths;
mod plot;
mod prepare;
mod report;
mod spawn;
mod stdout;
mod train;
mod vocab;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use config::ConfigSource;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "mlm-train",
    version,
    about = "Domain-adaptive masked-language-model (BERT, RoBERTa, DistilBERT, ModernBERT) pre-training on LibTorch",
    long_about = "Domain-adaptive masked-language-model (BERT, RoBERTa, XLM-RoBERTa, CamemBERT, \
        DistilBERT, ModernBERT) pre-training on LibTorch.\n\n\
        `mlm-train --config FILE` runs the job a config describes: it trains the vocabulary when \
        [vocab] asks for one that is not there yet, prepares the corpus when it is not prepared, \
        then trains with held-out evaluation (fixed masks) before, during and after, saving \
        checkpoints; rerunning resumes from the latest one. configs/quickstart.toml (in the \
        source repository) runs on a CPU in minutes; `mlm-train config --reference` prints the \
        reference of every config key. The commands below run one stage each, or work on a \
        checkpoint (eval, export, fill-mask) or a run (plot, inspect). `mlm-train doctor` \
        reports the libtorch, CUDA and thread set-up this binary runs with. --config, --set \
        and --threads may come before or after a command.",
    after_help = "Examples:\n  \
        mlm-train --config configs/quickstart.toml\n  \
        mlm-train --config configs/pubmed.toml --dry-run\n  \
        mlm-train --config configs/pubmed.toml --set training.max_steps=1000 --threads 8\n  \
        mlm-train config --config configs/pubmed.toml",
    arg_required_else_help = true
)]
struct Cli {
    /// Run config (TOML): the job to run, or the config of `prepare`, `vocab train`, `eval`
    /// and `config`. `mlm-train config --reference` documents every key.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Override a config key, e.g. `--set training.max_steps=100` (repeatable; the value is
    /// read as TOML, or as a string when it is not valid TOML).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,

    /// Threads for libtorch's intra-op pool and for rayon; overrides `runtime.cpu_threads`.
    #[arg(long, global = true, env = "MLM_TRAIN_THREADS", value_name = "N")]
    threads: Option<NonZeroUsize>,

    /// Data parallel on this machine: start N ranks of this job (one per GPU on CUDA, Gloo
    /// on CPU), as `torchrun --nproc-per-node N --no-python mlm-train ...` would. Under
    /// torchrun or srun, leave it out: their environment is read instead.
    #[arg(long, value_name = "N", requires = "config")]
    nproc_per_node: Option<std::num::NonZeroU32>,

    #[command(flatten)]
    job: train::JobFlags,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report the libtorch version and location, CUDA, GPUs, bf16 support and thread counts.
    #[command(
        after_help = "Examples:\n  mlm-train doctor\n  mlm-train doctor --json\n  mlm-train doctor --fault-points"
    )]
    Doctor {
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// List the named fault points (`MLM_TRAIN_FAULT=<name>[@<hit>]` kills the process
        /// there, for crash-consistency tests) instead.
        #[arg(long)]
        fault_points: bool,
    },
    /// Read, split, tokenize and pack the configured corpus into Parquet shards + manifest.
    #[command(after_help = "Examples:\n  \
        mlm-train prepare --config configs/pubmed.toml\n  \
        mlm-train prepare --config configs/pubmed.toml --set corpus.max_seq_len=512 \
        --set corpus.output=runs/pubmed/corpus-512")]
    Prepare(prepare::PrepareArgs),
    /// Domain vocabularies: train one, or extend a model's (`vocab train`, `vocab extend`).
    #[command(
        subcommand,
        after_help = "Examples:\n  mlm-train vocab train --config configs/quickstart.toml\n  \
            mlm-train vocab extend --config configs/pubmed.toml --set vocab.add=4000"
    )]
    Vocab(vocab::VocabCommand),
    /// Evaluate a checkpoint on the held-out set with fixed masks.
    #[command(after_help = "Examples:\n  \
        mlm-train eval --config configs/pubmed.toml --checkpoint runs/pubmed/checkpoint-12500\n  \
        mlm-train eval --config configs/pubmed.toml --checkpoint pubmed-bert --json \
        --set eval.max_eval_samples=500")]
    Eval(eval::EvalArgs),
    /// Export a checkpoint as a Hugging Face model directory.
    #[command(after_help = "Examples:\n  \
        mlm-train export --checkpoint runs/pubmed/checkpoint-12500 --out pubmed-bert")]
    Export(export::ExportArgs),
    /// Predict the [MASK] tokens of texts, like Hugging Face's fill-mask pipeline.
    #[command(after_help = "Examples:\n  \
        mlm-train fill-mask --model pubmed-bert \"aspirin inhibits [MASK] aggregation.\"\n  \
        mlm-train fill-mask --model runs/quickstart/checkpoint-400 --top-k 3 \
        \"the patient was treated with [MASK].\"")]
    FillMask(fill_mask::FillMaskArgs),
    /// Draw PNG charts of runs' metrics (loss, learning rate, held-out metrics).
    Plot(plot::PlotArgs),
    /// Print the resolved config (every default filled in), or the config reference.
    Config(config_cmd::ConfigArgs),
    /// Show what a prepared corpus, a checkpoint or a model directory holds.
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    // A corrupt Parquet page can panic inside the parquet crate; the reader contains it and
    // reports the file, so its panic location is not printed on top.
    mlm_corpus::untrusted::quiet_contained_panics();
    let cli = Cli::parse();
    if let Some(nproc) = cli.nproc_per_node {
        if cli.command.is_some() {
            eprintln!(
                "error: --nproc-per-node starts ranks of the main job (--config FILE), not of a command"
            );
            return ExitCode::from(2);
        }
        let args = spawn::without_nproc_flag(std::env::args_os().skip(1));
        return spawn::run_ranks(nproc.get(), &args).unwrap_or_else(|error| {
            report::print_error(&error);
            ExitCode::FAILURE
        });
    }
    let code = match run(cli) {
        Ok(train::JobEnd::Completed) => 0,
        // 128 + SIGINT, as a shell reports a job ended by Ctrl-C: stopped, not failed.
        Ok(train::JobEnd::Interrupted) => 130,
        Err(error) => {
            report::print_error(&error);
            exit_code(&error)
        }
    };
    end_process(code)
}

/// 2 for a config that cannot be used (as clap does for a usage error: nothing was done),
/// 1 for a failure while working.
fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<config::ConfigError>().is_some() {
        2
    } else {
        1
    }
}

/// Ends the process with `code`, without the C and C++ exit handlers. Everything of this
/// program is dropped by then (`run` returned: files closed and synced, threads joined);
/// what the handlers would still do is libtorch's static destructors deregistering every
/// operator, which took 0.2 s at the end of every command (`mlm-train --version` spent
/// 0.2 s between printing and `exit_group`; a `prepare` of 100 MB, 0.4 s after its summary).
fn end_process(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; the standard streams are flushed above and no
    // value of this program is alive that would need its destructor run.
    unsafe { libc::_exit(i32::from(code)) }
}

/// Runs the main job or a command (a command that succeeds is [`train::JobEnd::Completed`]).
fn run(cli: Cli) -> Result<train::JobEnd> {
    let threads = threads(&cli.threads);
    let Some(command) = cli.command else {
        let Some(path) = cli.config else {
            // Reached when only an environment variable (MLM_TRAIN_THREADS) was given.
            usage_error("give --config FILE or a command (see --help)")
        };
        let source = ConfigSource {
            path,
            overrides: cli.overrides,
        };
        return train::run_job(&source, threads, &cli.job);
    };
    if let Some(flag) = cli.job.given_flag() {
        usage_error(&format!(
            "{flag} applies to the main job (`mlm-train --config FILE`), not to a command"
        ));
    }
    let source = || config_source(cli.config.clone(), cli.overrides.clone(), command.name());
    let done = match &command {
        Command::Doctor { fault_points, .. } if *fault_points => {
            no_config(&cli.config, &cli.overrides, command.name());
            doctor::print_fault_points();
            Ok(())
        }
        Command::Doctor { json, .. } => {
            no_config(&cli.config, &cli.overrides, command.name());
            doctor::run(*json, threads)
        }
        Command::Prepare(args) => prepare::run(args, &source(), threads),
        Command::Vocab(vocab) => vocab::run(vocab, &source(), threads),
        Command::Eval(args) => eval::run(args, &source(), threads),
        Command::Config(args) if args.reference => config_cmd::print_reference(),
        Command::Config(_) => config_cmd::print_resolved(&source()),
        Command::Export(args) => {
            no_config(&cli.config, &cli.overrides, command.name());
            export::run(args)
        }
        Command::FillMask(args) => {
            no_config(&cli.config, &cli.overrides, command.name());
            fill_mask::run(args, threads)
        }
        Command::Plot(args) => {
            no_config(&cli.config, &cli.overrides, command.name());
            plot::run(args)
        }
        Command::Inspect(args) if args.masks_at_step.is_some() => {
            inspect::run(args, Some(&source()))
        }
        Command::Inspect(args) => {
            no_config(&cli.config, &cli.overrides, command.name());
            inspect::run(args, None)
        }
    };
    done.map(|()| train::JobEnd::Completed)
}

impl Command {
    /// The command as typed (`vocab train`), for messages.
    fn name(&self) -> &'static str {
        match self {
            Self::Doctor { .. } => "doctor",
            Self::Prepare(_) => "prepare",
            Self::Vocab(_) => "vocab train",
            Self::Eval(_) => "eval",
            Self::Export(_) => "export",
            Self::FillMask(_) => "fill-mask",
            Self::Plot(_) => "plot",
            Self::Config(_) => "config",
            Self::Inspect(_) => "inspect",
        }
    }
}

/// The `--config` (and `--set`) of a command that needs one; a usage error without it.
fn config_source(path: Option<PathBuf>, overrides: Vec<String>, command: &str) -> ConfigSource {
    match path {
        Some(path) => ConfigSource { path, overrides },
        None => usage_error(&format!("`mlm-train {command}` needs --config FILE")),
    }
}

/// A usage error for `--config` / `--set` given to a command that reads no config.
fn no_config(path: &Option<PathBuf>, overrides: &[String], command: &str) {
    if path.is_some() || !overrides.is_empty() {
        usage_error(&format!(
            "`mlm-train {command}` reads no config: leave out --config and --set"
        ));
    }
}

/// Exits with clap's usage-error status (2) and message.
fn usage_error(message: &str) -> ! {
    Cli::command()
        .error(ErrorKind::ArgumentConflict, message)
        .exit()
}

/// The `--threads` flag (or `MLM_TRAIN_THREADS`) as a plain count.
fn threads(flag: &Option<NonZeroUsize>) -> Option<usize> {
    flag.map(NonZeroUsize::get)
}
