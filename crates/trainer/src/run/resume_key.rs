//! The resume key: a hash of what a run consumes and what shapes its trajectory, saved
//! in every checkpoint so that resuming under a changed config is refused (unless told).
//!
//! It hashes contents, never paths: the prepared corpus by its manifest (tokenizer
//! fingerprint, shapes, the train shards' SHA-256), the model by its resolved `config.json`
//! and the names and sizes of the weight files it starts from, and the `[masking]` and
//! `[training]` keys that change the numbers. A run directory moved together with its config
//! and data therefore resumes; logging, evaluation and checkpoint cadence may change freely.

use mlm_corpus::Manifest;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::RunError;
use super::job::TrainJob;
use crate::model::{EncoderConfig, find_weights};
use crate::schedule::RampShape;

/// `[training]` keys that do not change the numbers a run computes.
const PRESENTATION_KEYS: [&str; 3] = ["output_dir", "logging_steps", "prefetch"];

/// The first 16 hex digits of the SHA-256 of the job's trajectory description.
pub fn resume_key(
    job: &TrainJob,
    manifest: &Manifest,
    model: &EncoderConfig,
) -> Result<String, RunError> {
    let description = json!({
        "corpus": corpus_identity(manifest),
        "model": model_identity(job, model)?,
        "masking": to_value(&job.masking)?,
        "training": training_identity(job)?,
    });
    let digest = Sha256::digest(description.to_string().as_bytes());
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// What the training data is: its tokenizer, sequence shapes, epoch-order blocks and the
/// exact bytes of every train shard.
/// `[training]` less presentation, with the global batch in place of the per-rank
/// accumulation: 2 ranks x 1 micro-batch and 1 rank x 2 micro-batches of the same size are
/// the same trajectory (resume at another world size), since micro-batches keep their
/// sequences, masks and dropout seeds.
fn training_identity(job: &TrainJob) -> Result<Value, RunError> {
    let training = &job.training;
    let world_size = job.parallel.as_ref().map_or(1, |p| p.world_size());
    let mut value = without(
        to_value(training)?,
        &[&PRESENTATION_KEYS[..], &["gradient_accumulation_steps"]].concat(),
    );
    value["micro_batches_per_step"] =
        (training.gradient_accumulation_steps as u64 * u64::from(world_size)).into();
    // Keys added after runs were checkpointed count only when set away from their default,
    // so those runs' keys, and their resumes, stay as they were.
    if let Some(object) = value.as_object_mut() {
        if !training.tf32 {
            object.remove("tf32");
        }
        if !training.group_by_length {
            object.remove("group_by_length");
        }
        if !training.cuda_graphs {
            object.remove("cuda_graphs");
        }
        if !training.unpad {
            object.remove("unpad");
        }
        if training.warmup_type == RampShape::Linear {
            object.remove("warmup_type");
        }
        if training.decay_type == RampShape::Cosine {
            object.remove("decay_type");
        }
    }
    Ok(value)
}

fn corpus_identity(manifest: &Manifest) -> Value {
    json!({
        "tokenizer": manifest.tokenizer_fingerprint,
        "vocab_size": manifest.vocab_size,
        "max_seq_len": manifest.max_seq_len,
        "packing": manifest.packing,
        "row_group_sequences": manifest.row_group_sequences,
        "train_shards": manifest.train.shards.iter().map(|s| &s.sha256).collect::<Vec<_>>(),
    })
}

/// The model's resolved config, the `[model]` keys other than paths, and the weight files
/// (names and sizes: hashing gigabytes on every start would cost more than it guards).
fn model_identity(job: &TrainJob, model: &EncoderConfig) -> Result<Value, RunError> {
    let weights = match &job.model.init_from {
        Some(dir) => find_weights(dir)?
            .paths()
            .iter()
            .map(|path| {
                let bytes = std::fs::metadata(path).map(|m| m.len()).ok();
                json!([path.file_name().map(|n| n.to_string_lossy()), bytes])
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(json!({
        "section": without(to_value(&job.model)?, &["init_from", "config"]),
        "config": to_value(model)?,
        "weights": weights,
    }))
}

fn to_value(value: &impl serde::Serialize) -> Result<Value, RunError> {
    serde_json::to_value(value)
        .map_err(|e| RunError::InvalidConfig(format!("serialising the config for its hash: {e}")))
}

fn without(mut value: Value, keys: &[&str]) -> Value {
    if let Some(object) = value.as_object_mut() {
        for key in keys {
            object.remove(*key);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_presentation_keys_leaves_the_rest() {
        let value = json!({"output_dir": "/a/b", "logging_steps": 5, "seed": 42});
        assert_eq!(
            without(value, &PRESENTATION_KEYS),
            json!({"seed": 42}),
            "paths and logging never reach the hash"
        );
    }
}
