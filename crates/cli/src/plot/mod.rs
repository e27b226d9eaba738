//! `mlm-train plot RUN_DIR...`: PNG charts of the runs' `metrics.jsonl` (train loss, learning
//! rate, gradient norm, held-out loss, perplexity and accuracies), each against optimizer
//! steps and against tokens seen, several runs on one chart. The main job draws its own run's
//! charts at the end (`[logging] plots`).

mod chart;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use chart::{Chart, Series};

/// Arguments of `mlm-train plot`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    mlm-train plot runs/quickstart\n  \
    mlm-train plot runs/lr-1e-3 runs/lr-5e-4 --out plots/lr")]
pub struct PlotArgs {
    /// Run directories (each a `training.output_dir` holding `metrics.jsonl`); several are
    /// drawn on the same charts, one colour each.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Where the PNGs go; defaults to `RUN_DIR/plots` for one run, `./plots` for several.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &PlotArgs) -> Result<()> {
    let out = match (&args.out, args.runs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [one]) => one.join("plots"),
        (None, _) => PathBuf::from("plots"),
    };
    let written = write_plots(&args.runs, &out)?;
    let lines: String = written
        .iter()
        .map(|path| format!("{}\n", crate::paths::shown(path).display()))
        .collect();
    crate::stdout::print(&lines)
}

/// One chart per metric (what it is, where it is in `metrics.jsonl`).
struct Metric {
    file: &'static str,
    title: &'static str,
    split: &'static str,
    key: &'static str,
    /// Drawn on a log scale (perplexity spans orders of magnitude).
    log_scale: bool,
}

const METRICS: [Metric; 8] = [
    metric(
        "train_loss",
        "training loss (masked tokens)",
        "train",
        "loss",
    ),
    metric("learning_rate", "learning rate", "train", "learning_rate"),
    metric(
        "grad_norm",
        "gradient norm (before clipping)",
        "train",
        "grad_norm",
    ),
    metric("eval_loss", "held-out loss", "eval", "loss"),
    Metric {
        log_scale: true,
        ..metric(
            "eval_perplexity",
            "held-out perplexity",
            "eval",
            "perplexity",
        )
    },
    metric(
        "eval_accuracy",
        "held-out masked-token accuracy",
        "eval",
        "accuracy",
    ),
    metric(
        "eval_top5_accuracy",
        "held-out top-5 accuracy",
        "eval",
        "top5_accuracy",
    ),
    metric(
        "eval_mask_accuracy",
        "held-out accuracy at [MASK] inputs",
        "eval",
        "mask_accuracy",
    ),
];

const fn metric(
    file: &'static str,
    title: &'static str,
    split: &'static str,
    key: &'static str,
) -> Metric {
    Metric {
        file,
        title,
        split,
        key,
        log_scale: false,
    }
}

/// Writes one PNG per metric that any of `runs` logged into `out`; returns their paths.
pub fn write_plots(runs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    let logs = runs
        .iter()
        .map(|dir| RunLog::read(dir))
        .collect::<Result<Vec<_>>>()?;
    let labels = labels(runs);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for metric in &METRICS {
        let series: Vec<Series> = logs
            .iter()
            .zip(&labels)
            .map(|(log, label)| log.series(metric, label))
            .filter(|series| !series.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let path = out.join(format!("{}.png", metric.file));
        let chart = Chart {
            title: metric.title,
            y_label: metric.key,
            log_scale: metric.log_scale,
            rising: metric.key.ends_with("accuracy"),
            series: &series,
        };
        chart
            .draw(&path)
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    if written.is_empty() {
        bail!("no metrics to plot: the metrics.jsonl files hold no train or eval records");
    }
    Ok(written)
}

/// Legend labels: the run directories' names, or their whole paths where names repeat.
fn labels(runs: &[PathBuf]) -> Vec<String> {
    let names: Vec<String> = runs
        .iter()
        .map(|dir| {
            let shown = crate::paths::shown(dir);
            shown.file_name().map_or_else(
                || shown.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let unique = names
        .iter()
        .all(|name| names.iter().filter(|other| *other == name).count() == 1);
    if unique {
        names
    } else {
        runs.iter()
            .map(|dir| crate::paths::shown(dir).display().to_string())
            .collect()
    }
}

/// The records of one run's `metrics.jsonl`.
struct RunLog {
    records: Vec<serde_json::Value>,
}

impl RunLog {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} a run directory?)",
                path.display(),
                dir.display()
            )
        })?;
        // A torn last line (a run killed mid-write) is skipped, as a resume would cut it.
        let records = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        Ok(Self { records })
    }

    /// The metric's finite values with their step and, where logged, tokens seen.
    fn series(&self, metric: &Metric, label: &str) -> Series {
        let points = self
            .records
            .iter()
            .filter(|record| record["split"] == metric.split)
            .filter_map(|record| {
                let step = record["step"].as_u64()?;
                let value = record[metric.key].as_f64().filter(|v| v.is_finite())?;
                let value_ok = !metric.log_scale || value > 0.0;
                value_ok.then(|| (step, record["tokens_seen"].as_u64(), value))
            })
            .collect();
        Series {
            label: label.to_string(),
            points,
        }
    }
}
