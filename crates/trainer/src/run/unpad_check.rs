//! `training.unpad` checked on a model that attention matters to: a tiny BERT or ModernBERT
//! trained through the run's own step to copy (each sequence repeats one word of its own, so
//! a masked token is predictable only from the other tokens of its sequence), then the unpadded forward against the padded one, sequence by sequence, on a
//! batch mixing lengths from 1 to 128 tokens, and a perturbation: new words in one sequence
//! must leave every other sequence's logits bit for bit as they were (no attention across
//! sequences) while moving the [MASK] predictions of the perturbed sequence (attention
//! carries them). At initialisation attention is nearly uniform and hardly moves the
//! logits, so neither comparison would see much there.
//!
//! The GPU run (FlashAttention's varlen kernel, bf16) is in `run/cuda_tests.rs`; the test
//! here runs the same checks on the CPU (rows scattered back around SDPA, fp32).

use mlm_masking::{Batch, IGNORE_INDEX};
use mlm_seeds::splitmix64;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::precision::ForwardPrecision;
use super::step::{
    StepContext, batch_tensors, forward_backward, masked_logits, unpadded_batch_tensors,
};
use crate::model::{
    EncoderConfig, MaskedLanguageModel, UnpaddedAttention, cumulative_lengths,
    init_weights_like_hf, masked_lm_loss_sum, real_positions, rows_among,
    trainable_named_variables,
};
use crate::optim::{AdamW, AdamWConfig};

const VOCAB: i64 = 61;
const PAD_ID: i64 = 0;
const MASK_ID: i64 = 4;
/// Ids below this are special; words are drawn above it.
const FIRST_WORD: u64 = 5;
const SEQ_LEN: usize = 128;
const TRAIN_ROWS: u64 = 16;
pub(super) const TRAIN_STEPS: u64 = 100;
/// The peak learning rate, reached linearly over the first 10 steps (measured with
/// transformers' BertForMaskedLM at this size: the loss falls from ln 61 = 4.1 to about 0.3
/// in 100 steps).
const LEARNING_RATE: f64 = 2e-3;
const WARMUP_STEPS: u64 = 10;
/// The compared batch: documents of very different lengths side by side.
pub(super) const LENGTHS: [usize; 8] = [128, 3, 77, 1, 120, 18, 2, 64];
/// The sequences given new words: a short one next to the longest, and a middling one.
const PERTURBED: [usize; 2] = [1, 2];

/// A small BERT (`"bert"`) or ModernBERT (`"modernbert"`: three layers, one global, local
/// ones attending 16 tokens either side, a window shorter than most rows) with head size 64,
/// which FlashAttention takes; no dropout, so that every forward is deterministic.
pub(super) fn config(model_type: &str) -> EncoderConfig {
    let base = EncoderConfig {
        vocab_size: VOCAB,
        hidden_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 256,
        max_position_embeddings: SEQ_LEN as i64,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        pad_token_id: Some(PAD_ID),
        model_type: Some(model_type.to_owned()),
        ..EncoderConfig::default()
    };
    let config = match model_type {
        "modernbert" => {
            let mut extra = serde_json::Map::new();
            extra.insert("local_attention".into(), 32.into());
            extra.insert("global_attn_every_n_layers".into(), 3.into());
            EncoderConfig {
                num_hidden_layers: 3,
                intermediate_size: 192,
                extra,
                ..base
            }
        }
        _ => base,
    };
    config.validate().expect("a valid test config");
    config
}

/// One document: its key, its length in tokens, and how far its word is moved from the
/// one its key draws (0; 1 for the perturbation, which so always gets another word).
#[derive(Debug, Clone, Copy)]
struct Document {
    key: u64,
    len: usize,
    shift: u64,
}

fn hash(key: u64, salt: u64) -> u64 {
    splitmix64(key ^ splitmix64(salt))
}

/// A document's tokens: its word, repeated.
fn tokens(doc: Document) -> Vec<i64> {
    let word = FIRST_WORD + (hash(doc.key, 0) + doc.shift) % (VOCAB as u64 - FIRST_WORD);
    vec![word as i64; doc.len]
}

/// Which positions of a document are [MASK]: about 15%, at least one, never the first of
/// a longer document (each keeps a word to be predicted from).
fn mask_positions(doc: Document) -> Vec<usize> {
    let mut masked: Vec<usize> = (1..doc.len)
        .filter(|&t| hash(doc.key, 1000 + t as u64) % 100 < 15)
        .collect();
    if masked.is_empty() {
        masked.push(doc.len / 2);
    }
    masked
}

/// `docs` collated into rows of [`SEQ_LEN`]: [MASK] at their mask positions; predicted are
/// those (`all_positions = false`, with their words as labels) or every real position (the
/// logits of every token, to compare sequence by sequence).
fn collate_docs(docs: &[Document], all_positions: bool) -> Batch {
    let cells = docs.len() * SEQ_LEN;
    let mut input_ids = vec![PAD_ID; cells];
    let mut attention_mask = vec![0; cells];
    let mut labels = vec![IGNORE_INDEX; cells];
    for (row, &doc) in docs.iter().enumerate() {
        let start = row * SEQ_LEN;
        input_ids[start..start + doc.len].copy_from_slice(&tokens(doc));
        attention_mask[start..start + doc.len].fill(1);
        for t in mask_positions(doc) {
            labels[start + t] = input_ids[start + t];
            input_ids[start + t] = MASK_ID;
        }
    }
    let predicted = |i: &usize| {
        if all_positions {
            attention_mask[*i] != 0
        } else {
            labels[*i] != IGNORE_INDEX
        }
    };
    let positions: Vec<usize> = (0..cells).filter(predicted).collect();
    Batch {
        batch_size: docs.len(),
        seq_len: SEQ_LEN,
        masked_positions: positions.iter().map(|&i| i as i64).collect(),
        masked_labels: positions.iter().map(|&i| labels[i]).collect(),
        masked_is_mask_token: positions.iter().map(|&i| input_ids[i] == MASK_ID).collect(),
        input_ids,
        attention_mask,
        labels,
    }
}

/// Training step `step`'s documents: full rows, a few tokens, anything between.
fn training_docs(step: u64) -> Vec<Document> {
    (0..TRAIN_ROWS)
        .map(|row| {
            let key = hash(step, row);
            let spread = (hash(key, 7) % SEQ_LEN as u64) as usize;
            let len = match key % 4 {
                0 => SEQ_LEN,
                1 => 1 + spread % 8,
                2 => 1 + spread,
                _ => SEQ_LEN / 2 + spread / 2,
            };
            Document { key, len, shift: 0 }
        })
        .collect()
}

/// The compared batch ([`LENGTHS`]), with the document at `perturbed` given another word
/// (the same length and [MASK] positions).
fn eval_docs(perturbed: Option<usize>) -> Vec<Document> {
    LENGTHS
        .iter()
        .enumerate()
        .map(|(i, &len)| Document {
            key: hash(7, i as u64),
            len,
            shift: u64::from(perturbed == Some(i)),
        })
        .collect()
}

/// A model of `config` on `device`, seeded as Hugging Face initialises.
pub(super) fn fresh_model(
    config: &EncoderConfig,
    device: Device,
) -> (VarStore, MaskedLanguageModel) {
    let vs = VarStore::new(device);
    let model = MaskedLanguageModel::new(&vs.root(), config);
    init_weights_like_hf(&vs, config, 11);
    (vs, model)
}

/// Trains `model` [`TRAIN_STEPS`] steps through the run's step (`forward_backward` with
/// `unpad`, fused AdamW) in `precision`. Returns the first and last steps' mean losses.
pub(super) fn train(
    vs: &VarStore,
    model: &MaskedLanguageModel,
    precision: ForwardPrecision,
    unpad: Option<UnpaddedAttention>,
) -> (f64, f64) {
    let mut optimizer = AdamW::new(
        vs,
        AdamWConfig {
            learning_rate: LEARNING_RATE,
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
    );
    optimizer.set_fused(true);
    let losses: Vec<f64> = (0..TRAIN_STEPS)
        .map(|step| {
            let batch = collate_docs(&training_docs(step), false);
            let masked = batch.masked_tokens() as f64;
            let ctx = StepContext {
                precision,
                seed: 3,
                step,
                first_micro_batch: 0,
                normaliser: masked,
                reducer: None,
                scaler: None,
                unpad,
            };
            optimizer.zero_grad();
            let sum = forward_backward(model, &[batch], &ctx).expect("a training step");
            let warmup = ((step + 1) as f64 / WARMUP_STEPS as f64).min(1.0);
            optimizer.step_unless(LEARNING_RATE * warmup, None);
            sum.double_value(&[]) / masked
        })
        .collect();
    (losses[0], losses[losses.len() - 1])
}

/// The largest absolute difference, in f64 on the host.
pub(super) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let host = |t: &Tensor| t.to_device(Device::Cpu).to_kind(Kind::Double);
    (host(a) - host(b)).abs().max().double_value(&[])
}

/// Every real token's logits of `docs` (`[N, V]`, sequence after sequence), padded or
/// unpadded with `attention`.
fn logits(
    model: &MaskedLanguageModel,
    docs: &[Document],
    precision: ForwardPrecision,
    attention: Option<UnpaddedAttention>,
) -> Tensor {
    let batch = collate_docs(docs, true);
    let device = precision.device();
    let tensors = match attention {
        Some(attention) => unpadded_batch_tensors(&batch, device, attention),
        None => batch_tensors(&batch, device),
    };
    tch::no_grad(|| masked_logits(model, &tensors, precision, false)).expect("a forward")
}

/// Row ranges of each sequence of [`LENGTHS`] among the real tokens.
fn sequence_rows() -> Vec<(i64, i64)> {
    let mask: Vec<i64> = LENGTHS
        .iter()
        .flat_map(|&len| (0..SEQ_LEN).map(move |t| i64::from(t < len)))
        .collect();
    let (cumulative, _) = cumulative_lengths(&mask, SEQ_LEN);
    cumulative
        .windows(2)
        .map(|w| (i64::from(w[0]), i64::from(w[1] - w[0])))
        .collect()
}

/// The largest difference of each sequence's rows.
fn per_sequence(a: &Tensor, b: &Tensor) -> Vec<f64> {
    sequence_rows()
        .into_iter()
        .map(|(start, len)| max_abs_diff(&a.narrow(0, start, len), &b.narrow(0, start, len)))
        .collect()
}

/// The rows of document `doc`'s [MASK] tokens among the real tokens of [`LENGTHS`].
fn mask_rows(doc: usize, device: Device) -> Tensor {
    let batch = collate_docs(&eval_docs(None), false);
    let real = real_positions(&batch.attention_mask);
    let start = (doc * SEQ_LEN) as i64;
    let own: Vec<i64> = (batch.masked_positions.iter().copied())
        .filter(|p| (start..start + SEQ_LEN as i64).contains(p))
        .collect();
    let rows = rows_among(&real, &own).expect("[MASK] positions are real tokens");
    Tensor::from_slice(&rows).to(device)
}

/// What the comparison of the unpadded forward with the padded one found.
#[derive(Debug)]
pub(super) struct UnpadReport {
    /// The largest |logit| of the fp32 padded forward: the scale tolerances refer to.
    pub scale: f64,
    /// Per sequence of [`LENGTHS`]: unpadded against padded, both in the run's precision.
    pub against_padded: Vec<f64>,
    /// Per sequence: unpadded and padded against the fp32 padded forward.
    pub unpadded_error: Vec<f64>,
    pub padded_error: Vec<f64>,
    /// The unpadded forward twice on the same batch (0 when it is deterministic).
    pub repeat: f64,
    /// Per perturbed sequence: the largest change of any *other* sequence's logits.
    pub leak: Vec<f64>,
    /// Per perturbed sequence: the largest change of its own [MASK] predictions.
    pub moved: Vec<f64>,
    /// Gradients of the masked-LM loss on the compared batch: |unpadded - padded| / |padded|.
    pub gradients: f64,
}

/// Compares `model`'s unpadded forward (`attention`) with the padded one in `precision`.
pub(super) fn compare(
    vs: &VarStore,
    model: &MaskedLanguageModel,
    precision: ForwardPrecision,
    attention: UnpaddedAttention,
) -> UnpadReport {
    let device = precision.device();
    let docs = eval_docs(None);
    let fp32 = logits(model, &docs, ForwardPrecision::fp32(device), None);
    let padded = logits(model, &docs, precision, None);
    let unpadded = logits(model, &docs, precision, Some(attention));
    let again = logits(model, &docs, precision, Some(attention));
    let (mut leak, mut moved) = (Vec::new(), Vec::new());
    for doc in PERTURBED {
        let changed = logits(model, &eval_docs(Some(doc)), precision, Some(attention));
        let others = per_sequence(&changed, &unpadded);
        let rest = others.iter().enumerate().filter(|(i, _)| *i != doc);
        leak.push(rest.map(|(_, d)| *d).fold(0.0, f64::max));
        let rows = mask_rows(doc, device);
        moved.push(max_abs_diff(
            &changed.index_select(0, &rows),
            &unpadded.index_select(0, &rows),
        ));
    }
    UnpadReport {
        scale: fp32.abs().max().double_value(&[]),
        against_padded: per_sequence(&unpadded, &padded),
        unpadded_error: per_sequence(&unpadded, &fp32),
        padded_error: per_sequence(&padded, &fp32),
        repeat: max_abs_diff(&unpadded, &again),
        leak,
        moved,
        gradients: gradient_difference(vs, model, precision, attention),
    }
}

/// The masked-LM loss's gradients on the compared batch, unpadded against padded: the
/// norm of the difference over the norm of the padded ones, all trainable weights together.
fn gradient_difference(
    vs: &VarStore,
    model: &MaskedLanguageModel,
    precision: ForwardPrecision,
    attention: UnpaddedAttention,
) -> f64 {
    let batch = collate_docs(&eval_docs(None), false);
    let device = precision.device();
    let gradients = |tensors: super::step::BatchTensors| {
        for (_, p) in trainable_named_variables(vs) {
            let _ = p.grad().defined().then(|| p.grad().zero_());
        }
        let logits = masked_logits(model, &tensors, precision, false).expect("a forward");
        masked_lm_loss_sum(&logits, &tensors.masked_labels).backward();
        let grads: Vec<Tensor> = trainable_named_variables(vs)
            .into_iter()
            .filter(|(_, p)| p.grad().defined())
            .map(|(_, p)| p.grad().to_kind(Kind::Double).reshape([-1]))
            .collect();
        Tensor::cat(&grads, 0)
    };
    let padded = gradients(batch_tensors(&batch, device));
    let unpadded = gradients(unpadded_batch_tensors(&batch, device, attention));
    let norm = |t: &Tensor| t.norm().double_value(&[]);
    norm(&(&unpadded - &padded)) / norm(&padded)
}

/// Prints `report` for the test log (gpu-check keeps it).
pub(super) fn describe(name: &str, first_loss: f64, last_loss: f64, report: &UnpadReport) {
    eprintln!(
        "{name}: trained {TRAIN_STEPS} steps, loss {first_loss:.3} -> {last_loss:.3}; \
         max |logit| {:.3}",
        report.scale
    );
    eprintln!("  sequence lengths            {LENGTHS:?}");
    let show = |v: &[f64]| {
        v.iter()
            .map(|d| format!("{d:.1e}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "  unpadded vs padded          {}",
        show(&report.against_padded)
    );
    eprintln!(
        "  unpadded vs fp32 padded     {}",
        show(&report.unpadded_error)
    );
    eprintln!(
        "  padded vs fp32 padded       {}",
        show(&report.padded_error)
    );
    eprintln!(
        "  repeat {:.1e}; new words in sequences {PERTURBED:?}: others moved {}, own [MASK] \
         predictions moved {}; gradients differ by {:.1e} (relative norm)",
        report.repeat,
        show(&report.leak),
        show(&report.moved),
        report.gradients
    );
}

/// Bounds of [`assert_sound`], relative: the logits to their largest magnitude, the
/// gradients as [`UnpadReport::gradients`] measures them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tolerance {
    pub logits: f64,
    pub gradients: f64,
}

/// Asserts what holds on every device: training worked; each sequence's unpadded logits are
/// the padded ones within `tolerance.logits` x the logit scale; new words in one sequence
/// leave the others bit for bit unchanged and move its own [MASK] predictions by at least a
/// tenth of the logit scale; the gradients agree within `tolerance.gradients`.
pub(super) fn assert_sound(
    name: &str,
    losses: (f64, f64),
    report: &UnpadReport,
    tolerance: Tolerance,
) {
    let (first, last) = losses;
    assert!(
        last < 0.5 * first,
        "{name}: training did not take (loss {first} -> {last})"
    );
    let bound = tolerance.logits * report.scale;
    for (i, diff) in report.against_padded.iter().enumerate() {
        assert!(
            *diff <= bound,
            "{name}: sequence {i} ({} tokens): unpadded logits differ from padded by {diff:e} \
             (bound {bound:e})",
            LENGTHS[i]
        );
    }
    // Rows of other sequences pass the same kernels at the same shapes with the same values
    // (matmul and LayerNorm rows are independent, FlashAttention's forward is deterministic
    // and its varlen blocks stay within a sequence), so any change is attention across
    // sequences. The repeat tells a nondeterministic kernel apart from that.
    assert_eq!(
        report.repeat, 0.0,
        "{name}: the unpadded forward is not deterministic here, so the leak check below \
         cannot be bit for bit"
    );
    for (k, (leak, moved)) in report.leak.iter().zip(&report.moved).enumerate() {
        let doc = PERTURBED[k];
        assert_eq!(
            *leak, 0.0,
            "{name}: new words in sequence {doc} moved other sequences' logits by {leak:e}: \
             attention across sequences"
        );
        assert!(
            *moved >= 0.1 * report.scale,
            "{name}: new words in sequence {doc} moved its [MASK] predictions by only \
             {moved:e}: attention hardly matters to this model, so the check shows nothing"
        );
    }
    assert!(
        report.gradients <= tolerance.gradients,
        "{name}: unpadded gradients differ from padded by {:e} (relative)",
        report.gradients
    );
}

/// The checks on the CPU: rows scattered back around SDPA, fp32. The same logits up to
/// fp32 rounding (measured: identical). Ignored for its cost, not its needs: the harness of
/// run/cuda_tests.rs, run by hand when it changes
/// (`cargo test --release -p mlm-trainer unpad_check -- --ignored`).
#[test]
#[ignore = "1-3 minutes on 2 CPU cores"]
fn a_trained_models_unpadded_logits_are_the_padded_ones_sequence_by_sequence() {
    for model_type in ["bert", "modernbert"] {
        let config = config(model_type);
        let (vs, model) = fresh_model(&config, Device::Cpu);
        let precision = ForwardPrecision::fp32(Device::Cpu);
        let attention = UnpaddedAttention::Padded;
        let losses = train(&vs, &model, precision, Some(attention));
        let report = compare(&vs, &model, precision, attention);
        describe(model_type, losses.0, losses.1, &report);
        let fp32 = Tolerance {
            logits: 1e-5,
            gradients: 1e-5,
        };
        assert_sound(model_type, losses, &report, fp32);
    }
}
