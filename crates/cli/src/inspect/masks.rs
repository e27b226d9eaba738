//! `mlm-train inspect CORPUS --config FILE --masks-at-step N`: the first sequences optimizer
//! step N trains on and the masks it applies, from DESIGN.md's data contract: the epoch
//! order is a pure function of (`data_seed`, epoch) over the manifest's sequences (row-group
//! blocks, as the loader reads them), global batch g of an epoch is positions [gB, (g+1)B),
//! and the masks of a sequence are a pure function of (`seed`, epoch, position); with
//! `training.group_by_length`, each megabatch of the order is sorted by length. The same
//! calls the loader makes (`read_step` in mlm-trainer's `run/data.rs`), for one process
//! (B = batch_size x gradient_accumulation_steps).

use std::fmt::Write;
use std::ops::Range;

use anyhow::{Result, bail};
use mlm_corpus::order::DEFAULT_WINDOW;
use mlm_corpus::{DomainTokenizer, EpochOrder, PreparedCorpus, Split, TrainOrder};
use mlm_masking::{IGNORE_INDEX, MaskKey, MaskedSequence, Masker, SpecialTokens};
use mlm_trainer::run::{DataPosition, LastBatch, RatePlan, UnitStarts, run_steps};

use crate::config::RunConfig;

/// Step `step` (1-based, as the log counts) of the run `config` describes.
pub fn describe(
    corpus: &PreparedCorpus,
    tokenizer: &DomainTokenizer,
    config: &RunConfig,
    step: u64,
    shown: u64,
) -> Result<String> {
    let manifest = corpus.manifest();
    let training = &config.training;
    let mut reader = corpus.split(Split::Train)?;
    let sequences = reader.len();
    let global_batch = (training.batch_size * training.gradient_accumulation_steps) as u64;
    let steps_per_epoch = match training.last_batch {
        LastBatch::Drop => sequences / global_batch,
        LastBatch::Keep => sequences.div_ceil(global_batch),
    };
    if step == 0 || steps_per_epoch == 0 {
        bail!("--masks-at-step counts from 1, and the training split must hold a global batch");
    }
    let epoch = (step - 1) / steps_per_epoch;
    let start = (step - 1) % steps_per_epoch * global_batch;
    let end = (start + global_batch).min(sequences);
    let order = EpochOrder::with_layout(
        sequences,
        training.data_seed.unwrap_or(training.seed),
        epoch,
        manifest.row_group_sequences as u64,
        DEFAULT_WINDOW,
    );
    let mut order = if training.group_by_length {
        TrainOrder::grouped_by_length(order, epoch, global_batch)
    } else {
        TrainOrder::plain(order, epoch)
    };
    let masker = Masker::new(
        &config.masking,
        SpecialTokens {
            vocab_size: manifest.vocab_size,
            pad_id: manifest.special_ids.pad,
            mask_id: manifest.special_ids.mask,
            special_ids: manifest.special_ids.all.clone(),
        },
    )?;
    let at = DataPosition {
        epoch,
        position: start,
    };
    let probability = rate_at(config, sequences, steps_per_epoch, at, global_batch)?;
    let unit_starts = UnitStarts::for_unit(config.masking.unit());
    let mut s = format!(
        "\nstep {step}: epoch {epoch}, positions {start}..{end} of the epoch's order, {} at \
         rate {probability:.4}; the first {} (selected tokens as <original=>input>, a span or \
         phrase selected as one in {{ }}):\n",
        config.masking.unit().name(),
        shown.min(end - start)
    );
    for position in (start..end).take(shown as usize) {
        let row = order.row_at(position, &mut reader)?;
        let sequence = reader.get(row)?;
        let key = MaskKey::train(training.seed, epoch, position);
        let mut runs = Vec::new();
        let masked = masker.mask_with_runs(
            &sequence.input_ids,
            unit_starts.of(&sequence),
            key,
            probability,
            Some(&mut runs),
        );
        let selected = masked.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        let _ = writeln!(
            s,
            "\nposition {position} (train sequence #{row}), {selected} of {} tokens selected{}\n  {}",
            sequence.input_ids.len(),
            if runs.is_empty() {
                String::new()
            } else {
                format!(" in {} units", runs.len())
            },
            marked(tokenizer, &sequence.input_ids, &masked, &runs)
        );
    }
    Ok(s)
}

/// The training rate of the step at `at`, as the loader computes it (`RatePlan`).
fn rate_at(
    config: &RunConfig,
    sequences: u64,
    steps_per_epoch: u64,
    at: DataPosition,
    global_batch: u64,
) -> Result<f64> {
    let (_, total_steps) = run_steps(&config.training, sequences)?;
    let rate = RatePlan {
        masking: config.masking.clone(),
        steps_per_epoch,
        total_steps,
    };
    Ok(rate.at(at, global_batch))
}

/// The pieces, each selected one as `<original=>what the model sees>`, and each run of
/// several pieces selected as one unit (a span, a phrase) in `{ }`.
fn marked(
    tokenizer: &DomainTokenizer,
    original: &[u32],
    masked: &MaskedSequence,
    runs: &[Range<usize>],
) -> String {
    let piece = |id: u32| {
        tokenizer
            .id_to_token(id)
            .unwrap_or_else(|| format!("<{id}>"))
    };
    let opens = |i: usize| runs.iter().any(|r| r.start == i && r.len() > 1);
    let closes = |i: usize| runs.iter().any(|r| r.end == i + 1 && r.len() > 1);
    original
        .iter()
        .zip(&masked.input_ids)
        .zip(&masked.labels)
        .enumerate()
        .map(|(i, ((&was, &now), &label))| {
            let token = if label == IGNORE_INDEX {
                piece(was)
            } else {
                format!("<{}=>{}>", piece(was), piece(now))
            };
            let open = if opens(i) { "{ " } else { "" };
            let close = if closes(i) { " }" } else { "" };
            format!("{open}{token}{close}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}
