//! `mlm-train --config FILE --dry-run`: what each stage would do, doing none of it. The
//! vocabulary and corpus stages are described, not run; when the corpus is prepared the
//! trainer plans the run exactly (it reads the manifest and builds the model, writing
//! nothing), otherwise the plan's figures are estimated from the inputs' sizes and the
//! output says so.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::HumanBytes;
use mlm_corpus::input::{InputFile, ResolvedFormat, discover_inputs};
use mlm_corpus::{CorpusConfig, DomainTokenizer, Packing};
use mlm_trainer::model::SpecialIds;
use mlm_trainer::run::{CorpusEstimate, estimated_plan};

use crate::config::RunConfig;
use crate::paths::shown;
use crate::train::print_plan;
use mlm_job::{CorpusStage, Stages, VocabStage};

/// What a dry run could say about the stages before training.
pub enum Described {
    /// The corpus is prepared (its manifest is there): the trainer can plan exactly.
    Prepared(PathBuf),
    /// The vocabulary or the corpus would be made first: the plan was estimated.
    Estimated,
}

/// Prints what the vocabulary and prepare stages would do (the stages a run would run,
/// decided by the same `Stages::of`) and, when the corpus is not prepared yet, the
/// estimated plan.
pub fn describe_stages(config: &RunConfig, device: tch::Device) -> Result<Described> {
    let stages = Stages::of(config)?;
    match &stages.vocab {
        VocabStage::NotAsked => {}
        VocabStage::Present { dir } => {
            eprintln!("vocab    {} (present: kept)", shown(dir).display());
        }
        VocabStage::Train {
            dir,
            vocab_size,
            model,
        } => eprintln!(
            "vocab    would train a {vocab_size}-token {model} vocabulary into {}",
            shown(dir).display()
        ),
        VocabStage::Extend { from, add, dir } => eprintln!(
            "vocab    would extend {} by {add} entries into {}",
            shown(from).display(),
            shown(dir).display()
        ),
    }
    let output = match &stages.corpus {
        CorpusStage::Prepared { output } => {
            eprintln!(
                "corpus   {} (prepared: its manifest is there; a changed [corpus] prepares again)",
                shown(output).display()
            );
            return Ok(Described::Prepared(output.clone()));
        }
        CorpusStage::Prepare { output } => output,
    };
    let corpus = config.corpus()?;
    let inputs = corpus_inputs(corpus)?;
    let bytes: u64 = inputs.iter().map(|input| input.bytes).sum();
    eprintln!(
        "corpus   would prepare {} input files ({}) into {}",
        inputs.len(),
        HumanBytes(bytes),
        shown(output).display()
    );
    print_estimate(config, &inputs, device)?;
    Ok(Described::Estimated)
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

/// The plan as the run prints it, computed by the trainer's own planning code
/// (`estimated_plan`) from token and sequence counts estimated from the inputs' sizes.
fn print_estimate(config: &RunConfig, inputs: &[InputFile], device: tch::Device) -> Result<()> {
    let corpus = config.corpus()?;
    let counts = CorpusCounts::new(corpus, inputs);
    let (vocab_size, special_ids) = vocabulary(config)?;
    let estimate = CorpusEstimate {
        vocab_size,
        max_seq_len: corpus.max_seq_len,
        special_ids,
        // An estimate short of one step would refuse a run that may well fill one.
        train_sequences: counts
            .train_sequences
            .max((config.training.batch_size * config.training.gradient_accumulation_steps) as u64),
        eval_sequences: counts.eval_sequences,
    };
    let plan = estimated_plan(
        &config.model,
        &config.training,
        &config.logging,
        config.masking.mlm_probability,
        device,
        &estimate,
    )?;
    print_plan(&plan);
    eprintln!(
        "estimate the corpus is not prepared yet: ~{} tokens; token and sequence counts are \
         estimated from the inputs' sizes (bytes per token by format), rough to +-30%; \
         prepare it (`mlm-train prepare`) for the exact plan",
        counts.tokens
    );
    Ok(())
}

/// Token and sequence counts expected from the inputs.
struct CorpusCounts {
    tokens: u64,
    train_sequences: u64,
    eval_sequences: u64,
}

impl CorpusCounts {
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

/// The vocabulary the model will have: `[vocab]`'s size (special ids unknown until it is
/// trained: the family's defaults stand in), else the corpus tokenizer's.
fn vocabulary(config: &RunConfig) -> Result<(u64, Option<SpecialIds>)> {
    let corpus = config.corpus()?;
    Ok(match (&config.vocab, &corpus.tokenizer) {
        (Some(vocab), _) => (vocab.vocab_size as u64, None),
        (None, Some(path)) => {
            let tokenizer = DomainTokenizer::load(path, None)?;
            let ids = tokenizer.special_ids();
            let special = SpecialIds {
                pad: ids.pad,
                cls: ids.cls,
                sep: ids.sep,
            };
            (u64::from(tokenizer.vocab_size()), Some(special))
        }
        (None, None) => (30_522, None),
    })
}
