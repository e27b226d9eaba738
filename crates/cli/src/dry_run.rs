//! `mlm-train --config FILE --dry-run`: what each stage would do, doing none of it. The
//! vocabulary and corpus stages are described, not run; when the corpus is prepared the
//! trainer plans the run exactly (it reads the manifest and builds the model, writing
//! nothing), otherwise the plan's figures are estimated from the inputs' sizes and the
//! output says so.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::HumanBytes;
use mlm_corpus::input::{InputFile, ResolvedFormat, discover_inputs};
use mlm_corpus::{CorpusConfig, DomainTokenizer, Packing};
use mlm_trainer::model::{BertConfig, Family};

use crate::config::RunConfig;
use crate::paths::shown;

/// Where the stages before training stand.
pub enum Stages {
    /// The corpus is prepared (its manifest is there): the trainer can plan exactly.
    Prepared(PathBuf),
    /// The vocabulary or the corpus would be made first: the plan was estimated.
    Estimated,
}

/// Prints what the vocabulary and prepare stages would do and, when the corpus is not
/// prepared yet, the estimated plan.
pub fn describe_stages(config: &RunConfig) -> Result<Stages> {
    let corpus = config.corpus()?;
    let vocab_missing = match &config.vocab {
        Some(vocab) => {
            let dir = vocab.output_dir(corpus)?;
            let missing = DomainTokenizer::file_in(&dir).is_none();
            if missing {
                eprintln!(
                    "vocab    would train a {}-token {} vocabulary into {}",
                    vocab.vocab_size,
                    vocab.model.as_str(),
                    shown(&dir).display()
                );
            } else {
                eprintln!("vocab    {} (present: kept)", shown(&dir).display());
            }
            missing
        }
        None => false,
    };
    let output = corpus
        .output_dir()
        .map_err(|source| anyhow::anyhow!(source))?
        .to_path_buf();
    if !vocab_missing && output.join("manifest.json").exists() {
        eprintln!(
            "corpus   {} (prepared: its manifest is there; a changed [corpus] prepares again)",
            shown(&output).display()
        );
        return Ok(Stages::Prepared(output));
    }
    let inputs = corpus_inputs(corpus)?;
    let bytes: u64 = inputs.iter().map(|input| input.bytes).sum();
    eprintln!(
        "corpus   would prepare {} input files ({}) into {}",
        inputs.len(),
        HumanBytes(bytes),
        shown(&output).display()
    );
    print_estimate(config, &inputs)?;
    Ok(Stages::Estimated)
}

/// The input files `prepare` would read, with their sizes.
fn corpus_inputs(corpus: &CorpusConfig) -> Result<Vec<InputFile>> {
    let mut seen = HashSet::new();
    let mut files = discover_inputs(&corpus.inputs, corpus.format, false, &mut seen)
        .context("listing corpus.inputs")?;
    files.extend(
        discover_inputs(&corpus.validation_inputs, corpus.format, true, &mut seen)
            .context("listing corpus.validation_inputs")?,
    );
    Ok(files)
}

/// Input bytes per token, by format, measured on this project's sample corpus and PubMed
/// files with a BERT WordPiece vocabulary (rough: it depends on the language, the fields
/// read and the vocabulary): plain text ~4.5, JSONL ~6 (keys and escapes; the sample corpus: 5.9), Parquet ~1.8
/// (compressed), MEDLINE XML ~16 (mostly markup around title and abstract); gzip divides by
/// ~3.5 (XML: ~8).
fn bytes_per_token(input: &InputFile) -> f64 {
    let gzip = input.path.to_string_lossy().ends_with(".gz");
    let (plain, gzip_ratio) = match input.format {
        ResolvedFormat::Text => (4.5, 3.5),
        ResolvedFormat::Jsonl => (6.0, 3.5),
        ResolvedFormat::Parquet => (1.8, 1.0),
        ResolvedFormat::Medline => (16.0, 8.0),
    };
    if gzip { plain / gzip_ratio } else { plain }
}

/// The plan as `observer.plan` prints it, from estimated token counts.
fn print_estimate(config: &RunConfig, inputs: &[InputFile]) -> Result<()> {
    let corpus = config.corpus()?;
    let estimate = CorpusEstimate::new(corpus, inputs);
    let model = estimated_model(config)?;
    let training = &config.training;
    let global_batch = (training.batch_size * training.gradient_accumulation_steps) as u64;
    let steps_per_epoch = (estimate.train_sequences / global_batch.max(1)).max(1);
    let steps = training
        .max_steps
        .unwrap_or_else(|| (steps_per_epoch as f64 * training.epochs).ceil() as u64);
    eprintln!(
        "model    {}, ~{:.2} M parameters{}",
        model.class,
        model.parameters as f64 / 1e6,
        if model.from_scratch {
            " (from scratch)"
        } else {
            ""
        }
    );
    eprintln!(
        "data     ~{} train / ~{} held-out sequences of <= {} tokens (~{} tokens)",
        estimate.train_sequences, estimate.eval_sequences, corpus.max_seq_len, estimate.tokens
    );
    eprintln!(
        "steps    {steps}{} (~{steps_per_epoch} per epoch), {global_batch} sequences = {} tokens \
         per step",
        if training.max_steps.is_some() {
            ""
        } else {
            " estimated"
        },
        global_batch * corpus.max_seq_len as u64,
    );
    eprintln!(
        "memory   >= {:.2} GiB estimated for weights, gradients and AdamW (activations not \
         counted until the corpus is prepared)",
        (16 * model.parameters) as f64 / (1u64 << 30) as f64
    );
    eprintln!(
        "estimate the corpus is not prepared yet: token and sequence counts are estimated \
         from the inputs' sizes (bytes per token by format), rough to +-30%; prepare it \
         (`mlm-train prepare`) for the exact plan"
    );
    Ok(())
}

/// Token and sequence counts expected from the inputs.
struct CorpusEstimate {
    tokens: u64,
    train_sequences: u64,
    eval_sequences: u64,
}

impl CorpusEstimate {
    fn new(corpus: &CorpusConfig, inputs: &[InputFile]) -> Self {
        let tokens_of = |held_out: bool| -> f64 {
            inputs
                .iter()
                .filter(|input| input.held_out == held_out)
                .map(|input| input.bytes as f64 / bytes_per_token(input))
                .sum()
        };
        let fraction = corpus.effective_validation_fraction();
        let (train_tokens, explicit_eval) = (tokens_of(false), tokens_of(true));
        let eval_tokens = explicit_eval + train_tokens * fraction;
        let train_tokens = train_tokens * (1.0 - fraction);
        // Packed sequences hold max_seq_len - 2 tokens besides [CLS] and [SEP]; one document
        // per sequence holds fewer (how many fewer depends on the documents' lengths).
        let per_sequence = (corpus.max_seq_len.saturating_sub(2).max(1)) as f64
            * if corpus.packing == Packing::Concat {
                1.0
            } else {
                0.5
            };
        Self {
            tokens: (train_tokens + eval_tokens) as u64,
            train_sequences: (train_tokens / per_sequence).ceil() as u64,
            eval_sequences: (eval_tokens / per_sequence).ceil() as u64,
        }
    }
}

/// The model's class and size without building it.
struct ModelEstimate {
    class: String,
    parameters: i64,
    from_scratch: bool,
}

fn estimated_model(config: &RunConfig) -> Result<ModelEstimate> {
    let section = &config.model;
    let file = section
        .init_from
        .as_ref()
        .map(|dir| dir.join("config.json"))
        .or_else(|| section.config.clone());
    let (bert, from_scratch) = match file {
        Some(path) => (BertConfig::from_file(&path)?, false),
        None => (scratch_config(config)?, true),
    };
    let class = Family::masked_lm_class(bert.model_type.as_deref().unwrap_or("bert"))
        .unwrap_or("BertForMaskedLM")
        .to_string();
    Ok(ModelEstimate {
        class,
        parameters: bert.num_parameters(),
        from_scratch,
    })
}

/// A model from scratch as `[model]` sizes it, with the vocabulary `[vocab]` asks for (or
/// the corpus tokenizer's).
fn scratch_config(config: &RunConfig) -> Result<BertConfig> {
    let section = &config.model;
    let corpus = config.corpus()?;
    let vocab_size = match (&config.vocab, &corpus.tokenizer) {
        (Some(vocab), _) => vocab.vocab_size as u64,
        (None, Some(path)) => u64::from(DomainTokenizer::load(path, None)?.vocab_size()),
        (None, None) => 30_522,
    };
    let positions = section
        .max_position_embeddings
        .unwrap_or(corpus.max_seq_len.max(512) + 2);
    let json = serde_json::json!({
        "model_type": section.scratch_model_type(),
        "vocab_size": vocab_size,
        "hidden_size": section.hidden_size,
        "num_hidden_layers": section.num_hidden_layers,
        "num_attention_heads": section.num_attention_heads,
        "intermediate_size": section.intermediate_size,
        "max_position_embeddings": positions,
    });
    Ok(BertConfig::from_json(
        &json.to_string(),
        Path::new("[model]"),
    )?)
}
