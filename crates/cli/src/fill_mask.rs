//! `mlm-train fill-mask`: the [MASK] predictions of a checkpoint or Hugging Face directory,
//! printed as JSON in the shape of transformers' `pipeline("fill-mask")`
//! (pipelines/fill_mask.py `postprocess`): per mask, the top k of
//! `{score, token, token_str, sequence}`; a list per mask when a text holds several masks,
//! and a list per text when several texts are given.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use mlm_corpus::DomainTokenizer;
use mlm_trainer::model::{MaskedLanguageModel, load_model_dir};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::stdout::outln;

/// Arguments of `mlm-train fill-mask`.
#[derive(Debug, Args)]
pub struct FillMaskArgs {
    /// Checkpoint or Hugging Face model directory (config.json, weights, tokenizer).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Predictions per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Texts with at least one mask token: the model's own (`[MASK]` for BERT and DistilBERT,
    /// `<mask>` for the RoBERTa family).
    #[arg(required = true, value_name = "TEXT")]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub verify: crate::integrity::VerifyFlag,
}

/// A model directory whose tokenizer has ids the model has no row for is refused (else only
/// texts that happen to use them fail); weights the load initialised or did not use are
/// named, as transformers' `from_pretrained` warns about missing and unexpected keys.
pub(crate) fn check_loaded(
    dir: &std::path::Path,
    tokenizer: &DomainTokenizer,
    built: &mlm_trainer::model::LoadedModel,
) -> Result<()> {
    let tokens = i64::from(tokenizer.vocab_size());
    if tokens > built.config.vocab_size {
        bail!(
            "{}: its tokenizer has {tokens} tokens but config.json's vocab_size is {}: the \
             tokenizer does not belong to this model",
            dir.display(),
            built.config.vocab_size
        );
    }
    let report = &built.report;
    if !report.initialised.is_empty() || !report.unexpected.is_empty() {
        eprintln!("warning: {}: {}", dir.display(), report.summary());
    }
    Ok(())
}

/// One candidate, as the pipeline prints it.
#[derive(Debug, Serialize)]
struct Candidate {
    score: f64,
    token: u32,
    token_str: String,
    sequence: String,
}

pub fn run(args: &FillMaskArgs, threads: Option<usize>) -> Result<()> {
    mlm_trainer::runtime::configure_threads(threads)?;
    crate::integrity::check_model_dir(&args.model, args.verify)?;
    let tokenizer = DomainTokenizer::load(&args.model, None)
        .with_context(|| format!("loading the tokenizer of {}", args.model.display()))?;
    let built = load_model_dir(&args.model, tch::Device::Cpu)
        .with_context(|| format!("loading {}", args.model.display()))?;
    check_loaded(&args.model, &tokenizer, &built)?;
    let mut per_text = Vec::new();
    for text in &args.texts {
        let ids = tokenizer.encode_with_special(text)?;
        let masks = mask_positions(&tokenizer, text, &ids)?;
        let probabilities = mask_probabilities(&built.model, text, &ids, &masks)?;
        let k = args.top_k.clamp(1, tokenizer.vocab_size() as usize) as i64;
        let (scores, tokens) = probabilities.topk(k, -1, true, true);
        let mut per_mask = Vec::new();
        for (row, &position) in masks.iter().enumerate() {
            let mut candidates = Vec::new();
            for j in 0..k {
                let token = tokens.int64_value(&[row as i64, j]) as u32;
                let mut filled = ids.clone();
                filled[position] = token;
                candidates.push(Candidate {
                    score: scores.double_value(&[row as i64, j]),
                    token,
                    token_str: tokenizer.decode(&[token])?,
                    sequence: tokenizer.decode(&filled)?,
                });
            }
            per_mask.push(candidates);
        }
        per_text.push(per_mask);
    }
    print_pipeline_json(per_text)
}

/// Where the model's mask token is in `ids`; an error names the expected token (and the other
/// family's, when the text has that one instead).
fn mask_positions(tokenizer: &DomainTokenizer, text: &str, ids: &[u32]) -> Result<Vec<usize>> {
    let mask_id = tokenizer.special_ids().mask;
    let masks: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == mask_id).collect();
    if !masks.is_empty() {
        return Ok(masks);
    }
    let token = tokenizer.id_to_token(mask_id).unwrap_or_default();
    let other = ["[MASK]", "<mask>"]
        .into_iter()
        .find(|other| *other != token && text.contains(other));
    match other {
        Some(other) => {
            bail!("the text {text:?} has {other}, but this model's mask token is {token}")
        }
        None => bail!("no mask token ({token}) in the text {text:?}"),
    }
}

/// The softmax over the vocabulary at each mask, `[masks, V]`.
fn mask_probabilities(
    model: &MaskedLanguageModel,
    text: &str,
    ids: &[u32],
    masks: &[usize],
) -> Result<Tensor> {
    let input: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let input_ids = Tensor::from_slice(&input).view([1, -1]);
    let attention = input_ids.ones_like();
    // A text longer than the position table, or a tokenizer larger than the model's
    // vocabulary, is an error here rather than a libtorch panic in the forward.
    model
        .check_inputs(&input_ids, &attention)
        .with_context(|| format!("fill-mask on {text:?}"))?;
    let positions: Vec<i64> = masks.iter().map(|&i| i as i64).collect();
    let positions = Tensor::from_slice(&positions);
    Ok(tch::no_grad(|| {
        model
            .masked_logits(&input_ids, &attention, &positions, false)
            .to_kind(Kind::Float)
            .softmax(-1, Kind::Float)
    }))
}

/// Prints `per_text` as the pipeline does.
fn print_pipeline_json(per_text: Vec<Vec<Vec<Candidate>>>) -> Result<()> {
    // The pipeline's nesting: drop the mask level for single-mask texts, the text level for a
    // single text.
    let shaped: Vec<serde_json::Value> = per_text
        .into_iter()
        .map(|mut per_mask| {
            if per_mask.len() == 1 {
                serde_json::to_value(per_mask.remove(0))
            } else {
                serde_json::to_value(per_mask)
            }
        })
        .collect::<Result<_, _>>()?;
    let output = if shaped.len() == 1 {
        shaped.into_iter().next().unwrap_or_default()
    } else {
        serde_json::Value::Array(shaped)
    };
    outln!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
