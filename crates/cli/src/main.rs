//! `mlm-train`: domain-adaptive masked-language-model pre-training.
//!
//! The binary is thin: it parses arguments, loads the run config and hands work to the
//! library crates. It is the only crate that uses `anyhow`; `main` prints the error chain and
//! exits with status 2 for a config error (nothing was done), 1 for any other failure.

mod config;
mod doctor;
mod eval;
mod export;
mod fill_mask;
mod prepare;
mod spawn;
mod train;
mod vocab;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mlm-train",
    version,
    about = "Domain-adaptive masked-language-model (BERT, RoBERTa, DistilBERT) pre-training on LibTorch",
    long_about = "Domain-adaptive masked-language-model (BERT, RoBERTa, XLM-RoBERTa, CamemBERT, \
        DistilBERT) pre-training on LibTorch.\n\n\
        `mlm-train --config FILE` runs the job a config describes: it trains the vocabulary when \
        [vocab] asks for one that is not there yet, prepares the corpus when it is not prepared, \
        then trains with held-out evaluation (fixed masks) before, during and after, saving \
        checkpoints; rerunning resumes from the latest one. configs/quickstart.toml runs on a \
        CPU in minutes; docs/config.md documents every key. The commands below run one stage \
        each, or work on a checkpoint (eval, export, fill-mask). `mlm-train doctor` reports \
        the libtorch, CUDA and thread set-up this binary runs with.",
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true
)]
struct Cli {
    /// Run config (TOML) of the job to run; every key is documented in docs/config.md.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Threads for libtorch's intra-op pool and for rayon; overrides `runtime.cpu_threads`.
    #[arg(long, global = true, env = "MLM_TRAIN_THREADS", value_name = "N")]
    threads: Option<NonZeroUsize>,

    /// Data parallel on this machine: start N ranks of this job (one per GPU on CUDA, Gloo
    /// on CPU), as `torchrun --nproc-per-node N --no-python mlm-train ...` would. Under
    /// torchrun or srun, leave it out: their environment is read instead (docs/distributed.md).
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
    Doctor {
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read, split, tokenize and pack the configured corpus into Parquet shards + manifest.
    Prepare(prepare::PrepareArgs),
    /// Domain vocabularies: `vocab train` trains a WordPiece or byte-level BPE tokenizer on the
    /// corpus; `vocab extend` adds the corpus words a model's vocabulary splits worst.
    #[command(subcommand)]
    Vocab(vocab::VocabCommand),
    /// Evaluate a checkpoint on the held-out set with fixed masks.
    Eval(eval::EvalArgs),
    /// Export a checkpoint as a Hugging Face model directory.
    Export(export::ExportArgs),
    /// Predict the [MASK] tokens of texts, like Hugging Face's fill-mask pipeline.
    FillMask(fill_mask::FillMaskArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(nproc) = cli.nproc_per_node {
        let args = spawn::without_nproc_flag(std::env::args_os().skip(1));
        return spawn::run_ranks(nproc.get(), &args).unwrap_or_else(|error| {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        });
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            exit_code(&error)
        }
    }
}

/// 2 for a config that cannot be used (as clap does for a usage error: nothing was done),
/// 1 for a failure while working.
fn exit_code(error: &anyhow::Error) -> ExitCode {
    if error.downcast_ref::<config::ConfigError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

fn run(cli: Cli) -> Result<()> {
    match (cli.command, cli.config) {
        (Some(Command::Doctor { json }), _) => {
            mlm_trainer::runtime::configure_threads(cli.threads.map(NonZeroUsize::get))?;
            let report = doctor::DoctorReport::collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
        (Some(Command::Prepare(args)), _) => prepare::run(&args, threads(&cli.threads)),
        (Some(Command::Vocab(command)), _) => vocab::run(&command, threads(&cli.threads)),
        (Some(Command::Eval(args)), _) => eval::run(&args, threads(&cli.threads)),
        (Some(Command::Export(args)), _) => export::run(&args),
        (Some(Command::FillMask(args)), _) => fill_mask::run(&args, threads(&cli.threads)),
        (None, Some(path)) => train::run_job(&path, threads(&cli.threads), &cli.job),
        // Reached when only an environment variable (MLM_TRAIN_THREADS) was given.
        (None, None) => Cli::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "give --config FILE or a command (see --help)",
            )
            .exit(),
    }
}

/// The `--threads` flag (or `MLM_TRAIN_THREADS`) as a plain count.
fn threads(flag: &Option<NonZeroUsize>) -> Option<usize> {
    flag.map(NonZeroUsize::get)
}
