//! `mlm-train --config FILE`: the main job. Stages: train the vocabulary when `[vocab]` asks
//! for one that is not there yet, prepare the corpus when its manifest is missing, then
//! train (resuming from the latest complete checkpoint) with held-out evaluation.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mlm_job::{
    StageProgress, StageReporter, VocabStage, locks, prepared_on_rank_zero, rank_device,
};
use mlm_torch_ext::launch::{self, LaunchEnv};
use mlm_trainer::run::{
    DataParallel, EvalMetrics, ResumePolicy, StepLog, TrainJob, TrainObserver, TrainOutcome,
    TrainPlan, WeightsReport, run_training,
};

use crate::config::{ConfigSource, RunConfig};
use crate::dry_run::{self, Described};
use crate::eval::EvalProgress;
use crate::prepare::ProgressView;

/// Flags of the main job (given with `--config`; `--set` is a global flag).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JobFlags {
    /// Do no work: say what each stage would do and print the plan (model size, tokens per
    /// step, steps, estimated memory); estimated from the inputs' sizes when the corpus is
    /// not prepared yet.
    #[arg(long)]
    pub dry_run: bool,
    /// Resume from this checkpoint directory instead of the latest one in `output_dir`.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Resume even though the config changed since the checkpoint was written.
    #[arg(long)]
    pub allow_config_change: bool,
    /// Stop after this optimizer step, saving a checkpoint as on SIGINT (exit status 130);
    /// the same command then resumes (time-sliced clusters).
    #[arg(long, value_name = "STEP")]
    pub stop_after_step: Option<u64>,
    /// Hash every byte of the prepared corpus against its integrity.json before training
    /// (a checkpoint is always hashed in full before a resume).
    #[arg(long)]
    pub verify: bool,
    /// When another job holds `output_dir` (or the corpus output), wait for it to end
    /// instead of refusing at once (a requeued job whose predecessor is still stopping).
    #[arg(long)]
    pub wait_for_lock: bool,
}

impl JobFlags {
    /// The first main-job flag given, for the usage error when it comes with a command.
    pub fn given_flag(&self) -> Option<&'static str> {
        [
            (self.dry_run, "--dry-run"),
            (self.resume.is_some(), "--resume"),
            (self.allow_config_change, "--allow-config-change"),
            (self.stop_after_step.is_some(), "--stop-after-step"),
            (self.verify, "--verify"),
            (self.wait_for_lock, "--wait-for-lock"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// How the main job ended, when it did not fail; `main` turns it into the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Trained to the end (or a dry run described it).
    Completed,
    /// Stopped early (SIGINT, SIGTERM, `--stop-after-step`) with a checkpoint saved; the
    /// same command resumes.
    Interrupted,
}

pub fn run_job(
    source: &ConfigSource,
    threads_flag: Option<usize>,
    flags: &JobFlags,
) -> Result<JobEnd> {
    let config = source.load()?;
    let launch = launch::from_env().context("reading the launcher's environment")?;
    let is_main = launch.as_ref().is_none_or(|env| env.rank == 0);
    let device = set_up_runtime(&config, threads_flag, launch.as_ref(), is_main)?;
    let when_held = locks::when_held(flags.wait_for_lock);
    // Rank 0 holds the run directory for the whole job; a dry run writes nothing.
    let _run_lock = if is_main && !flags.dry_run {
        lock_run_dir(&config, when_held)?
    } else {
        None
    };
    // A dry run does no work, so it does not join the other ranks either.
    let parallel = match launch {
        Some(env) if !flags.dry_run => Some(Arc::new(join_job(env, &config, device)?)),
        _ => None,
    };
    let corpus_dir = if flags.dry_run {
        match dry_run::describe_stages(&config, device)? {
            Described::Prepared(dir) => dir,
            Described::Estimated => {
                eprintln!("dry run: nothing was trained, and no vocabulary or corpus was made");
                return Ok(JobEnd::Completed);
            }
        }
    } else {
        prepared_on_rank_zero(&config, parallel.as_deref(), &ConsoleStages, when_held)?
    };
    if flags.verify {
        mlm_corpus::PreparedCorpus::open(&corpus_dir)
            .and_then(|corpus| corpus.verify())
            .with_context(|| format!("verifying the prepared corpus {}", corpus_dir.display()))?;
    }
    let rank = parallel.as_ref().map(|p| p.rank());
    let job = TrainJob {
        corpus_dir,
        model: config.model.clone(),
        masking: config.masking.clone(),
        training: config.training.clone(),
        eval: config.eval.clone(),
        checkpoint: config.checkpoint.clone(),
        logging: config.logging.clone(),
        device,
        resolved_config: config.resolved_toml()?,
        resume: ResumePolicy {
            from: flags.resume.clone(),
            allow_config_change: flags.allow_config_change,
        },
        stop_after_step: flags.stop_after_step,
        parallel,
    };
    let stop = stop_on_signals()?;
    let mut console = ConsoleObserver::new();
    let mut silent = SilentObserver;
    let observer: &mut dyn TrainObserver = if is_main { &mut console } else { &mut silent };
    let outcome = run_training(&job, observer, &stop, flags.dry_run).with_context(|| {
        let who = rank.map_or(String::new(), |r| format!("rank {r}: "));
        format!("{who}training with {}", config.path.display())
    })?;
    console.finish();
    if is_main {
        if flags.dry_run {
            eprintln!("dry run: nothing was trained");
            return Ok(JobEnd::Completed);
        }
        print_outcome(&outcome);
        if config.logging.plots && !outcome.interrupted {
            draw_plots(&config.training.output_dir);
        }
    }
    Ok(if outcome.interrupted {
        JobEnd::Interrupted
    } else {
        JobEnd::Completed
    })
}

/// One job per run directory (`locks::RUN_LOCK`): refused, or waited for, when another
/// holds it.
fn lock_run_dir(
    config: &RunConfig,
    when_held: mlm_durable::WhenHeld,
) -> Result<Option<mlm_durable::DirLock>> {
    let output_dir = &config.training.output_dir;
    locks::lock_dir(output_dir, locks::RUN_LOCK, when_held, &|m| {
        eprintln!("{m}")
    })
    .with_context(|| format!("locking training.output_dir {}", output_dir.display()))
}

/// The run's charts (`mlm-train plot`); a chart that cannot be drawn is a warning, not a
/// failed run: the training it reports on succeeded.
fn draw_plots(output_dir: &Path) {
    let out = output_dir.join("plots");
    match crate::plot::write_plots(&[output_dir.to_path_buf()], &out) {
        Ok(files) => eprintln!(
            "plots    {} charts in {}",
            files.len(),
            crate::paths::shown(&out).display()
        ),
        Err(error) => eprintln!("warning: no plots: {error:#}"),
    }
}

/// Thread pools and the device (a data-parallel rank on CUDA takes the GPU of its
/// `LOCAL_RANK`), reported as the first lines of the job by rank 0.
fn set_up_runtime(
    config: &RunConfig,
    threads_flag: Option<usize>,
    launch: Option<&LaunchEnv>,
    is_main: bool,
) -> Result<tch::Device> {
    let applied = config
        .apply_runtime(threads_flag)
        .context("resolving [runtime]")?;
    let threads = applied.threads;
    let device = rank_device(applied.device, launch.map(|env| env.local_rank as usize));
    // As torch.cuda.set_device: before any CUDA work (streams, graph capture, NCCL), so that
    // everything this process queues lands on its own GPU, not on cuda:0.
    if let tch::Device::Cuda(index) = device {
        mlm_torch_ext::set_current_cuda_device(index)
            .with_context(|| format!("making cuda:{index} this process's device"))?;
    }
    if is_main {
        eprintln!("config   {}", config.path.display());
        eprintln!(
            "device   {} (runtime.device = \"{}\"), threads: libtorch {}, rayon {}",
            mlm_trainer::runtime::device_label(device),
            config.runtime.device,
            threads.libtorch_intra_op,
            threads.rayon
        );
        if let Some(matmul) = &applied.cpu_matmul {
            eprintln!("matmul   {matmul}");
        }
    }
    if let Some(env) = launch.filter(|_| is_main) {
        eprintln!(
            "ranks    {} ({:?}), meeting at {}:{}",
            env.world_size, env.launcher, env.master_addr, env.master_port
        );
    }
    Ok(device)
}

/// This process's place in the data-parallel job the launcher started.
fn join_job(env: LaunchEnv, config: &RunConfig, device: tch::Device) -> Result<DataParallel> {
    let rank = env.rank;
    DataParallel::join(env, &config.distributed, device)
        .with_context(|| format!("rank {rank}: joining the data-parallel job"))
}

/// The observer of ranks other than 0: rank 0 reports for the job.
struct SilentObserver;

impl TrainObserver for SilentObserver {
    fn plan(&mut self, _: &TrainPlan) {}
    fn step(&mut self, _: &StepLog) {}
    fn eval(&mut self, _: u64, _: &EvalMetrics) {}
    fn saved(&mut self, _: u64, _: &Path) {}
}

/// SIGINT and SIGTERM (Slurm / Kubernetes preemption) raise the flag; the run saves at the
/// next step boundary.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")?;
    Ok(stop)
}

/// The held-out metrics at the start and the end, the last checkpoint, and how to resume an
/// interrupted run.
fn print_outcome(outcome: &TrainOutcome) {
    if let (Some(first), Some(last)) = (outcome.first_eval, outcome.last_eval) {
        eprintln!("held-out   {:>12} {:>12}", "start", "end");
        for (name, a, b) in [
            ("loss", first.loss, last.loss),
            ("perplexity", first.perplexity, last.perplexity),
            ("accuracy", first.accuracy, last.accuracy),
            ("top5", first.top5_accuracy, last.top5_accuracy),
            ("mask acc", first.mask_accuracy, last.mask_accuracy),
        ] {
            eprintln!("{name:<10} {a:>12.4} {b:>12.4}");
        }
    } else if let Some(last) = outcome.last_eval {
        eprintln!(
            "held-out loss {:.4}, perplexity {:.3}, accuracy {:.4}",
            last.loss, last.perplexity, last.accuracy
        );
    }
    if let Some(dir) = &outcome.last_checkpoint {
        eprintln!("checkpoint {}", dir.display());
    }
    if let Some(ranks) = outcome.replicas {
        eprintln!("ranks      all {ranks} ended with identical weights");
    }
    if outcome.graph_steps + outcome.graph_fallbacks > 0 {
        eprintln!(
            "graphs     {} steps at the fixed shapes, {} did not fit and ran the plain step",
            outcome.graph_steps, outcome.graph_fallbacks
        );
    }
    if outcome.interrupted {
        eprintln!(
            "interrupted at step {}: checkpoint saved; run the same command to resume",
            outcome.final_step
        );
    }
}

/// The stages before training as the console shows them: a line as each starts, a progress
/// view while it runs, the prepared corpus's counts.
struct ConsoleStages;

impl StageReporter for ConsoleStages {
    fn vocab_starting(&self, stage: &VocabStage) {
        match stage {
            VocabStage::Extend { from, add, dir } => eprintln!(
                "vocab    extending {} by {add} entries into {}",
                from.display(),
                dir.display()
            ),
            VocabStage::Train {
                dir,
                vocab_size,
                model,
            } => eprintln!(
                "vocab    training a {vocab_size}-token {model} vocabulary into {}",
                dir.display()
            ),
            VocabStage::NotAsked | VocabStage::Present { .. } => {}
        }
    }

    fn progress(&self, stage: &'static str) -> Box<dyn StageProgress + '_> {
        Box::new(ProgressView::new(stage))
    }

    fn note(&self, message: &str) {
        eprintln!("{message}");
    }

    fn prepared(&self, report: &mlm_corpus::PrepareReport) {
        let manifest = &report.manifest;
        eprintln!(
            "corpus   {} ({:?}): {} train / {} held-out sequences, vocab {}",
            report.output.display(),
            report.outcome,
            manifest.train.sequences,
            manifest.validation.sequences,
            manifest.vocab_size
        );
    }
}

/// Progress bar on a terminal, plain lines otherwise (logs, CI, Slurm).
pub struct ConsoleObserver {
    bar: Option<ProgressBar>,
    /// Plain progress lines of a long evaluation (on a terminal the bar's message says it).
    eval_progress: EvalProgress,
}

impl ConsoleObserver {
    pub fn new() -> Self {
        Self {
            bar: None,
            eval_progress: EvalProgress::new(false),
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Where the run resumes from, after the damaged checkpoints it passed over.
fn print_resume(plan: &TrainPlan) {
    for (dir, reason) in &plan.resume_check.refused {
        eprintln!("warning: refusing {}: {reason}", dir.display());
    }
    let Some(dir) = &plan.resumed_from else {
        return;
    };
    let instead = if plan.resume_check.refused.is_empty() {
        ""
    } else {
        " (the previous intact checkpoint)"
    };
    eprintln!(
        "resume   from {}{instead} at step {}",
        dir.display(),
        plan.start_step
    );
    if plan.resume_check.unverified {
        eprintln!(
            "note: {} has no integrity.json (written by an earlier version): its files were not \
             checked",
            dir.display()
        );
    }
}

/// The plan's lines: model, data, steps, memory, FLOPs, graphs, unpadding, resume (the run
/// and the dry run's estimate print the same).
pub(crate) fn print_plan(plan: &TrainPlan) {
    eprintln!(
        "model    {}, {:.2} M parameters{}",
        plan.model,
        plan.parameters as f64 / 1e6,
        match &plan.weights {
            Some(weights) => format!(", {} tensors loaded", weights.loaded),
            None => " (from scratch)".into(),
        }
    );
    if let Some(weights) = &plan.weights {
        print_weight_lists(weights);
        if let Some(growth) = &weights.vocabulary {
            eprintln!("vocab    grown {growth}");
        }
    }
    eprintln!(
        "data     {} train / {} held-out sequences of <= {} tokens",
        plan.train_sequences, plan.eval_sequences, plan.max_seq_len
    );
    eprintln!("masking  {}", plan.masking);
    eprintln!(
        "steps    {} ({} per epoch), {} sequences = {} tokens per step, {} on {}",
        plan.total_steps,
        plan.steps_per_epoch,
        plan.sequences_per_step,
        plan.tokens_per_step,
        plan.precision,
        plan.device
    );
    eprintln!(
        "memory   ~{:.2} GiB estimated (weights, gradients, AdamW, activations)",
        plan.estimated_memory_bytes as f64 / (1u64 << 30) as f64
    );
    eprintln!(
        "flops    {:.3} GFLOP per token trained; peak {}",
        plan.flops_per_token / 1e9,
        match (plan.peak_tflops, &plan.peak_source) {
            (Some(tflops), Some(source)) => format!("{tflops:.1} TFLOP/s ({source})"),
            _ => "unknown, no MFU (set logging.peak_tflops)".to_owned(),
        }
    );
    if let Some(graphs) = &plan.cuda_graphs {
        eprintln!("graphs   {graphs}");
    }
    if let Some(unpad) = &plan.unpad {
        eprintln!("unpad    encoder on the real tokens only; {unpad}");
    }
    if let Some(attention) = &plan.attention {
        eprintln!("attend   {attention}");
    }
    print_resume(plan);
}

impl TrainObserver for ConsoleObserver {
    fn plan(&mut self, plan: &TrainPlan) {
        print_plan(plan);
        if std::io::stderr().is_terminal() && plan.total_steps > plan.start_step {
            let bar = ProgressBar::new(plan.total_steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .expect("valid template"),
            );
            bar.set_position(plan.start_step);
            bar.enable_steady_tick(Duration::from_millis(500));
            self.bar = Some(bar);
        }
    }

    fn step(&mut self, log: &StepLog) {
        let mfu = log
            .mfu
            .map(|mfu| format!("  MFU {:.1}%", 100.0 * mfu))
            .unwrap_or_default();
        // Shown when it costs something: `document` packing pads each batch to its longest.
        let padding = if log.padding >= 0.01 {
            format!("  pad {:.0}%", 100.0 * log.padding)
        } else {
            String::new()
        };
        let text = format!(
            "loss {:.4}  lr {:.3e}  {:.0} tok/s{mfu}{padding}  epoch {:.2}",
            log.loss, log.learning_rate, log.tokens_per_second, log.epoch
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(log.step);
                bar.set_message(text);
            }
            None => eprintln!("step {}/{}  {text}", log.step, log.total_steps),
        }
    }

    fn eval_progress(&mut self, step: u64, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("evaluating {done}/{total} held-out sequences")),
            None => self
                .eval_progress
                .update(&format!("eval step {step}"), done, total),
        }
    }

    fn eval(&mut self, step: u64, m: &EvalMetrics) {
        self.line(&format!(
            "eval step {step}: loss {:.4}  perplexity {:.3}  accuracy {:.4}  top5 {:.4}  \
             mask accuracy {:.4}  ({} masked tokens)",
            m.loss, m.perplexity, m.accuracy, m.top5_accuracy, m.mask_accuracy, m.masked_tokens
        ));
    }

    fn saved(&mut self, step: u64, dir: &Path) {
        self.line(&format!("saved step {step}: {}", dir.display()));
    }
}

/// The names a checkpoint load did not simply copy: initialised, ignored, and unexpected keys
/// (a stray key usually means a checkpoint of another architecture or a renamed layer).
fn print_weight_lists(weights: &WeightsReport) {
    for line in weight_lists(weights) {
        eprintln!("{line}");
    }
}

fn weight_lists(weights: &WeightsReport) -> Vec<String> {
    [
        ("initialised (not in the checkpoint)", &weights.initialised),
        (
            "ignored (not used by the masked-LM model)",
            &weights.ignored,
        ),
        (
            "unexpected (matches no parameter; not loaded)",
            &weights.unexpected,
        ),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(what, names)| format!("         {what}: {}", names.join(", ")))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_names_every_key_a_load_did_not_copy() {
        let weights = WeightsReport {
            loaded: 3,
            initialised: vec!["cls.predictions.bias".into()],
            ignored: vec![],
            unexpected: vec!["bert.stray.weight".into(), "head.x".into()],
            vocabulary: None,
        };
        let lines = weight_lists(&weights);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with("initialised (not in the checkpoint): cls.predictions.bias"));
        assert!(
            lines[1].ends_with(
                "unexpected (matches no parameter; not loaded): bert.stray.weight, head.x"
            )
        );
    }
}
