//! `mlm-train inspect PATH`: what is inside a prepared corpus (manifest, token counts,
//! decoded sequences with word starts), a checkpoint (step, metrics, model, tokenizer; its
//! config against another checkpoint's with `--against`) or a Hugging Face model directory
//! (family, sizes, weights, tokenizer). The kind is told by the files in PATH.

mod corpus;
mod masks;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::HumanBytes;
use mlm_corpus::{DomainTokenizer, Split};
use mlm_trainer::model::EncoderConfig;

use crate::config::ConfigSource;
use crate::paths::shown;
use crate::prepare::count;

/// Arguments of `mlm-train inspect`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    mlm-train inspect runs/quickstart/corpus --sequences 3\n  \
    mlm-train inspect runs/quickstart/corpus --config configs/quickstart.toml --masks-at-step 100\n  \
    mlm-train inspect runs/quickstart/checkpoint-400 --against runs/other/checkpoint-400\n  \
    mlm-train inspect pubmed-bert")]
pub struct InspectArgs {
    /// A prepared corpus (manifest.json), a checkpoint (trainer_state.json) or a Hugging Face
    /// model directory (config.json).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Another checkpoint or model directory: its config is compared key by key.
    #[arg(long, value_name = "PATH")]
    pub against: Option<PathBuf>,
    /// Decoded sequences to show of a prepared corpus.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub sequences: u64,
    /// Show the held-out split's sequences instead of the training split's.
    #[arg(long)]
    pub validation: bool,
    /// Also show the first sequences optimizer step N trains on, with the masks it applies
    /// (one process; needs the run's `--config FILE` for the seeds and batch size).
    #[arg(long, value_name = "N")]
    pub masks_at_step: Option<u64>,
    #[command(flatten)]
    pub verify: crate::integrity::VerifyFlag,
}

/// What a directory holds.
enum Kind {
    Corpus,
    Checkpoint,
    Model,
}

fn kind_of(path: &Path) -> Result<Kind> {
    let has = |name: &str| path.join(name).is_file();
    if has("manifest.json") {
        Ok(Kind::Corpus)
    } else if has("trainer_state.json") {
        Ok(Kind::Checkpoint)
    } else if has("config.json") {
        Ok(Kind::Model)
    } else if !path.is_dir() {
        bail!("{} is not a directory", path.display())
    } else {
        bail!(
            "{} holds no manifest.json (a prepared corpus), trainer_state.json (a checkpoint) \
             or config.json (a model directory)",
            path.display()
        )
    }
}

/// `config`: the run config, for `--masks-at-step`.
pub fn run(args: &InspectArgs, config: Option<&ConfigSource>) -> Result<()> {
    let kind = kind_of(&args.path)?;
    match kind {
        Kind::Corpus => crate::integrity::check_corpus_dir(&args.path, args.verify)?,
        Kind::Checkpoint | Kind::Model => {
            crate::integrity::check_model_dir(&args.path, args.verify)?;
        }
    }
    let mut text = match kind {
        Kind::Corpus => {
            let split = if args.validation {
                Split::Validation
            } else {
                Split::Train
            };
            let config = config.map(ConfigSource::load).transpose()?;
            let masks = config.as_ref().zip(args.masks_at_step);
            corpus::describe(&args.path, args.sequences, split, masks)?
        }
        Kind::Checkpoint => describe_checkpoint(&args.path)?,
        Kind::Model => format!(
            "model directory {}\n{}",
            shown(&args.path).display(),
            describe_model(&args.path)?
        ),
    };
    if let Some(other) = &args.against {
        text += &compare(&args.path, other)?;
    }
    crate::stdout::print(&text)
}

/// Step, data position, held-out metrics and schedule from `trainer_state.json`, then the
/// model and tokenizer.
fn describe_checkpoint(dir: &Path) -> Result<String> {
    let state = read_json(&dir.join("trainer_state.json"))?;
    let number = |key: &str| state[key].as_u64().unwrap_or(0);
    let mut s = format!("checkpoint {}\n", shown(dir).display());
    let _ = writeln!(
        s,
        "step        {} (epoch {}, position {}), {} tokens seen",
        number("global_step"),
        number("epoch"),
        number("epoch_position"),
        count(number("tokens_seen"))
    );
    if let Some(eval) = state["last_eval"].as_object() {
        let metric = |key: &str| eval.get(key).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "held-out    loss {:.4}, perplexity {:.3}, accuracy {:.4}, top5 {:.4} (last \
             evaluation)",
            metric("loss"),
            metric("perplexity"),
            metric("accuracy"),
            metric("top5_accuracy")
        );
    }
    if let (Some(best), Some(metric)) = (
        state["best_checkpoint"].as_str(),
        state["best_metric"].as_f64(),
    ) {
        let _ = writeln!(s, "best        {best} (held-out loss {metric:.4})");
    }
    let schedule = &state["schedule"];
    let _ = writeln!(
        s,
        "schedule    {}, peak lr {}, warmup {} of {} steps",
        schedule["kind"].as_str().unwrap_or("?"),
        schedule["peak_lr"],
        schedule["warmup_steps"],
        schedule["total_steps"]
    );
    let _ = writeln!(
        s,
        "trajectory  {}",
        state["config_hash"].as_str().unwrap_or("?")
    );
    Ok(s + &describe_model(dir)?)
}

/// Family, sizes, weight files and tokenizer of a model directory.
fn describe_model(dir: &Path) -> Result<String> {
    let config = EncoderConfig::from_file(&dir.join("config.json"))?;
    let model_type = config.model_type();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model       {} (model_type {model_type}), {:.2} M parameters",
        config.masked_lm_class(),
        config.num_parameters() as f64 / 1e6
    );
    let _ = writeln!(
        s,
        "sizes       hidden {}, layers {}, heads {}, intermediate {}, vocab {}, positions {}",
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
        config.vocab_size,
        config.max_position_embeddings
    );
    let _ = writeln!(s, "files       {}", files_with_sizes(dir)?);
    match DomainTokenizer::file_in(dir) {
        Some(_) => {
            let t = DomainTokenizer::load(dir, None)?;
            let _ = writeln!(
                s,
                "tokenizer   {} {} tokens ({}), lowercase {}",
                t.model().as_str(),
                count(u64::from(t.vocab_size())),
                t.hf_class().name(),
                if t.do_lower_case() { "yes" } else { "no" }
            );
        }
        None => {
            let _ = writeln!(s, "tokenizer   none in the directory");
        }
    }
    Ok(s)
}

/// `model.safetensors 4.2 MiB, config.json 612 B, ...`, by name.
fn files_with_sizes(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push(format!("{name} {}", HumanBytes(entry.metadata()?.len())));
        }
    }
    files.sort();
    Ok(files.join(", "))
}

/// The keys whose values differ between the two directories' configs: `run_config.toml` of
/// checkpoints, else `config.json`.
fn compare(path: &Path, other: &Path) -> Result<String> {
    let (ours, theirs) = (flat_config(path)?, flat_config(other)?);
    let mut s = format!("\nconfig against {}:\n", shown(other).display());
    let mut keys: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
    keys.sort();
    keys.dedup();
    let missing = "(not set)".to_string();
    let mut differences = 0;
    for key in keys {
        let (a, b) = (
            ours.get(key).unwrap_or(&missing),
            theirs.get(key).unwrap_or(&missing),
        );
        if a != b {
            differences += 1;
            let _ = writeln!(s, "  {key}: {a} -> {b}");
        }
    }
    if differences == 0 {
        s += "  the same\n";
    }
    Ok(s)
}

/// The directory's config as `section.key` -> value (TOML or JSON spelling).
fn flat_config(dir: &Path) -> Result<BTreeMap<String, String>> {
    let run_config = dir.join("run_config.toml");
    let value = if run_config.is_file() {
        let text = std::fs::read_to_string(&run_config)
            .with_context(|| format!("reading {}", run_config.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", run_config.display()))?;
        serde_json::to_value(table)?
    } else {
        read_json(&dir.join("config.json"))?
    };
    let mut flat = BTreeMap::new();
    flatten("", &value, &mut flat);
    Ok(flat)
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value.as_object() {
        Some(object) => {
            for (key, inner) in object {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, inner, out);
            }
        }
        None => {
            out.insert(prefix.to_string(), value.to_string());
        }
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_flatten_to_dotted_keys() {
        let mut flat = BTreeMap::new();
        let value = serde_json::json!({"training": {"seed": 1, "lr": 0.5}, "top": "x"});
        flatten("", &value, &mut flat);
        let keys: Vec<&str> = flat.keys().map(String::as_str).collect();
        assert_eq!(keys, ["top", "training.lr", "training.seed"]);
        assert_eq!(flat["top"], "\"x\"");
    }
}
