//! `mlm-train prepare --config FILE`: the `[corpus]` section's inputs become Parquet shards
//! and a manifest (mlm-corpus does the work; this module draws progress and the summary).

use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressStyle};
use mlm_corpus::{Manifest, Observer, Outcome, PrepareOptions, PrepareReport, Progress};
use mlm_job::locks;

use crate::config::ConfigSource;

/// Arguments of `mlm-train prepare` (`--config FILE`, whose `[corpus]` section says what to
/// read and where to write, and `--set` are global flags).
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// When another job is writing the same corpus output, wait for it to end instead of
    /// refusing at once.
    #[arg(long)]
    pub wait_for_lock: bool,
}

pub fn run(args: &PrepareArgs, source: &ConfigSource, threads: Option<usize>) -> Result<()> {
    let config = source.load()?;
    let corpus = config.corpus()?.clone();
    mlm_trainer::runtime::configure_threads(threads.or(config.runtime.cpu_threads))?;
    let output = config.prepared_dir()?;
    let when_held = locks::when_held(args.wait_for_lock);
    let _lock = locks::lock_dir(&output, locks::PREPARE_LOCK, when_held, &|m| {
        eprintln!("{m}")
    })
    .with_context(|| format!("locking the corpus output {}", output.display()))?;
    let view = ProgressView::new("prepare");
    let report = mlm_corpus::prepare(
        &corpus,
        &PrepareOptions {
            observer: &view,
            stop_after_shards: None,
        },
    );
    view.finish();
    let report =
        report.with_context(|| format!("preparing [corpus] of {}", config.path.display()))?;
    crate::stdout::print(&summary(&report))
}

/// Progress on stderr: an indicatif bar on a terminal (ETA by bytes read), plain lines
/// every few seconds otherwise (logs of batch jobs).
pub(crate) struct ProgressView {
    bar: Option<ProgressBar>,
    label: &'static str,
    started: Instant,
    last_line: Mutex<Option<Instant>>,
}

/// How often plain progress lines are printed.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl ProgressView {
    pub(crate) fn new(label: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ETA {eta}  {msg}",
                )
                .expect("a valid template"),
            );
            bar.set_prefix(label);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            label,
            started: Instant::now(),
            last_line: Mutex::new(None),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn rates(&self, p: &Progress) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{} docs ({}/s), {} tokens ({}/s), {}/s",
            count(p.documents),
            count((p.documents as f64 / secs) as u64),
            count(p.tokens),
            count((p.tokens as f64 / secs) as u64),
            HumanBytes((p.bytes_read as f64 / secs) as u64)
        )
    }
}

impl mlm_job::StageProgress for ProgressView {
    fn finish(&self) {
        ProgressView::finish(self);
    }
}

impl Observer for ProgressView {
    fn phase(&self, name: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(name.to_string()),
            None => eprintln!("{}: {name}", self.label),
        }
    }

    fn progress(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_read.min(p.bytes_total));
            bar.set_message(self.rates(p));
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let done = p.bytes_read as f64 / p.bytes_total.max(1) as f64;
        let elapsed = self.started.elapsed();
        let eta = if done > 0.0 {
            format!(
                ", ETA {}",
                HumanDuration(elapsed.mul_f64((1.0 - done).max(0.0) / done))
            )
        } else {
            String::new()
        };
        eprintln!(
            "{}: {:.1}% of {}, {}{eta}",
            self.label,
            100.0 * done.min(1.0),
            HumanBytes(p.bytes_total),
            self.rates(p)
        );
    }

    fn warning(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

/// 1234567 -> "1,234,567".
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary table printed when a prepare ends: what was done, the tokenizer and packing,
/// the splits, and where the records went.
fn summary(report: &PrepareReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {}",
        outcome_text(report.outcome),
        report.output.display()
    );
    write_format(&mut s, &report.manifest);
    let _ = writeln!(s);
    write_splits(&mut s, &report.manifest);
    let _ = writeln!(s);
    write_records(&mut s, report);
    if let Some(fast) = &report.fast_path {
        let share = |n: u64, of: u64| 100.0 * n as f64 / of.max(1) as f64;
        let _ = writeln!(
            s,
            "fast path   {} documents: {} whole by the library ({:.2}%, they hold an added \
             token with whitespace or rstrip); {} segments: {} first seen and encoded natively \
             ({:.1}%), {} by the library ({:.1}%), the rest from the cache",
            count(fast.documents),
            count(fast.library_documents),
            share(fast.library_documents, fast.documents),
            count(fast.segments),
            count(fast.native_segments),
            share(fast.native_segments, fast.segments),
            count(fast.library_segments),
            share(fast.library_segments, fast.segments),
        );
    }
    s
}

fn outcome_text(outcome: Outcome) -> String {
    match outcome {
        Outcome::Prepared => "prepared".to_string(),
        Outcome::Resumed { shards_kept } => {
            format!("prepared (resumed: {shards_kept} finished shards kept)")
        }
        Outcome::AlreadyComplete => {
            "already complete (same config, tokenizer and inputs): nothing to do".into()
        }
    }
}

/// A serde enum's name as the config spells it (`"concat"`, `"uint16"`).
fn spelled(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn write_format(s: &mut String, m: &Manifest) {
    let _ = writeln!(
        s,
        "tokenizer   vocab {}, lowercase {}, fingerprint {}",
        count(u64::from(m.vocab_size)),
        if m.do_lower_case { "yes" } else { "no" },
        m.tokenizer_fingerprint
    );
    let _ = writeln!(
        s,
        "packing     {}, max_seq_len {}, input_ids {}",
        spelled(m.packing),
        m.max_seq_len,
        spelled(m.token_dtype)
    );
}

pub(crate) fn write_splits(s: &mut String, m: &Manifest) {
    let _ = writeln!(
        s,
        "{:<11} {:>12} {:>12} {:>15} {:>7}",
        "split", "documents", "sequences", "tokens", "shards"
    );
    for (name, split) in [("train", &m.train), ("validation", &m.validation)] {
        let _ = writeln!(
            s,
            "{:<11} {:>12} {:>12} {:>15} {:>7}",
            name,
            count(split.documents),
            count(split.sequences),
            count(split.tokens),
            split.shards.len()
        );
    }
}

fn write_records(s: &mut String, report: &PrepareReport) {
    let m = &report.manifest;
    let _ = writeln!(
        s,
        "records     {} read from {} files",
        count(m.documents.records),
        m.sources.len()
    );
    let dropped: Vec<String> = m
        .documents
        .dropped
        .iter()
        .map(|(reason, n)| format!("{reason} {}", count(*n)))
        .collect();
    let dropped = if dropped.is_empty() {
        "none".to_string()
    } else {
        dropped.join(", ")
    };
    let _ = writeln!(s, "dropped     {dropped}");
    let secs = report.elapsed.as_secs_f64();
    let tokens = m.train.tokens + m.validation.tokens;
    if report.outcome != Outcome::AlreadyComplete && secs > 0.0 {
        let rate = count((tokens as f64 / secs) as u64);
        let _ = writeln!(s, "time        {secs:.1} s ({rate} tokens/s)");
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
    }
}
