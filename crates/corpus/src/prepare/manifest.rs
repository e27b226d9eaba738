//! The last stage of `prepare`: the manifest of what was written.

use std::collections::BTreeMap;

use super::pipeline::Packed;
use super::plan::Plan;
use crate::config::CorpusConfig;
use crate::error::CorpusError;
use crate::input::{DropReason, InputFile};
use crate::manifest::{DocumentCounts, FORMAT_VERSION, Manifest, SourceEntry, SplitPolicy};
use crate::stream::ReadStats;

/// A corpus without a training sequence is an error, not an empty manifest. When nothing at
/// all was read, the inputs are named: a file of the wrong format (binary bytes named
/// `.xml`, an empty export) is the usual cause.
pub(super) fn check_has_training_data(
    packed: &Packed,
    files: &[InputFile],
) -> Result<(), CorpusError> {
    if packed.splits.train.sequences > 0 {
        return Ok(());
    }
    let dropped = dropped(packed);
    let dropped = if dropped.is_empty() {
        "none".to_string()
    } else {
        let reasons: Vec<String> = dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        reasons.join(", ")
    };
    let inputs = if packed.stats.records == 0 {
        let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        let shown = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        let more = names.len().saturating_sub(3);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!(" from {shown}{more}")
    } else {
        String::new()
    };
    Err(CorpusError::EmptyCorpus {
        message: format!(
            "no training sequence: {} records read{inputs}, {} held out, dropped: {dropped}",
            packed.stats.records, packed.splits.validation.documents,
        ),
    })
}

/// The manifest of a prepare that packed `packed`.
pub(super) fn build(
    plan: &Plan<'_>,
    packed: Packed,
    tokenizer_files: Vec<String>,
    phrases: Option<crate::phrases::PhrasesManifest>,
) -> Manifest {
    let (config, tokenizer) = (plan.config, &plan.tokenizer);
    let documents = document_counts(&packed);
    Manifest {
        format_version: FORMAT_VERSION,
        created_by: format!("mlm-corpus {}", env!("CARGO_PKG_VERSION")),
        tokenizer_fingerprint: tokenizer.fingerprint(),
        tokenizer_model: Some(tokenizer.model()),
        vocab_size: tokenizer.vocab_size(),
        special_ids: tokenizer.special_ids().clone(),
        special_tokens: tokenizer.special_tokens().clone(),
        do_lower_case: tokenizer.do_lower_case(),
        tokenizer_files,
        vocab_extension: tokenizer.extension().cloned(),
        max_seq_len: config.max_seq_len,
        packing: config.packing,
        token_dtype: plan.dtype(),
        row_group_sequences: config.row_group_sequences,
        sources: sources(&plan.files, &packed.stats),
        train: packed.splits.train,
        validation: packed.splits.validation,
        documents,
        split: split_policy(config),
        config_key: plan.key.clone(),
        config: config.clone(),
        phrases,
    }
}

fn document_counts(packed: &Packed) -> DocumentCounts {
    DocumentCounts {
        records: packed.stats.records,
        train: packed.splits.train.documents,
        validation: packed.splits.validation.documents,
        dropped: dropped(packed),
    }
}

/// The reader's drop counts plus the documents that tokenized to nothing.
fn dropped(packed: &Packed) -> BTreeMap<String, u64> {
    let mut dropped = packed.stats.dropped.clone();
    if packed.empty > 0 {
        *dropped
            .entry(DropReason::Empty.as_str().to_string())
            .or_default() += packed.empty;
    }
    dropped
}

fn split_policy(config: &CorpusConfig) -> SplitPolicy {
    let method = if config.validation_inputs.is_empty() {
        "hash"
    } else {
        "inputs"
    };
    SplitPolicy {
        method: method.to_string(),
        validation_fraction: config.effective_validation_fraction(),
        split_seed: config.split_seed,
        deduplicate: config.deduplicate,
    }
}

fn sources(files: &[InputFile], stats: &ReadStats) -> Vec<SourceEntry> {
    files
        .iter()
        .zip(&stats.per_source)
        .map(|(f, counts)| SourceEntry {
            path: f.path.display().to_string(),
            format: f.format,
            held_out: f.held_out,
            bytes: f.bytes,
            records: counts.records,
            documents: counts.documents,
            dropped: counts.dropped,
        })
        .collect()
}
