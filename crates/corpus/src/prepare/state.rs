//! The resume state of an unfinished prepare (`prepare-state.json`), rewritten after every
//! finished shard. It says which shards are complete and where packing of each split stood
//! when its last shard closed; a rerun with the same config key re-reads the inputs
//! (parsing only) up to those points and tokenizes and writes from there on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CorpusError;
use crate::fsutil::{read_json, write_json};
use crate::pack::ResumePoint;
use crate::shard::ShardInfo;
use crate::split::Splits;

pub const STATE_FILE: &str = "prepare-state.json";

/// One split's progress as of its last finished shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitState {
    pub shards: Vec<ShardInfo>,
    /// Where packing goes on (None: from the start).
    pub resume: Option<ResumePoint>,
    /// Documents packed completely before `resume`'s document.
    pub documents: u64,
    pub document_tokens: u64,
    /// Documents that tokenized to nothing before `resume`'s document.
    pub empty: u64,
    /// Phrase matches in the documents of `documents` (a corpus prepared with phrases): a
    /// resumed prepare does not tokenize those documents again, so it starts from these.
    #[serde(default, skip_serializing_if = "MatchCounts::is_empty")]
    pub phrase_matches: MatchCounts,
}

/// Phrase matches counted over a split's documents: per phrase of the list, and the tokens
/// they cover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchCounts {
    pub per_phrase: Vec<u64>,
    pub tokens: u64,
}

impl MatchCounts {
    /// No phrase counted (and so nothing to record in a state file).
    pub fn is_empty(&self) -> bool {
        self.tokens == 0 && self.per_phrase.iter().all(|&c| c == 0)
    }

    /// These counts over a list of `phrases` (zeros for a fresh prepare, or for a state file
    /// of a version that did not record them).
    pub fn sized(mut self, phrases: usize) -> Self {
        self.per_phrase.resize(phrases, 0);
        self
    }

    pub fn add(&mut self, phrases: &[u32], tokens: u64) {
        for &p in phrases {
            if let Some(count) = self.per_phrase.get_mut(p as usize) {
                *count += 1;
            }
        }
        self.tokens += tokens;
    }
}

/// `prepare-state.json`: `{"config_key": .., "train": {..}, "validation": {..}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareState {
    pub config_key: String,
    #[serde(flatten)]
    pub splits: Splits<SplitState>,
}

impl PrepareState {
    /// The state of a prepare that has not closed a shard yet.
    pub fn new(config_key: String) -> Self {
        Self {
            config_key,
            splits: Splits::default(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// The finished shards of both splits, train first.
    pub fn shards(&self) -> impl Iterator<Item = &ShardInfo> {
        self.splits.iter().flat_map(|(_, s)| &s.shards)
    }

    pub fn shard_count(&self) -> usize {
        self.shards().count()
    }

    /// The state in `dir` if it belongs to `config_key` and its shards are all there with
    /// their recorded sizes.
    pub fn load_matching(dir: &Path, config_key: &str) -> Option<Self> {
        let state: Self = read_json(&Self::path(dir)).ok()?;
        if state.config_key != config_key {
            return None;
        }
        let intact = state
            .shards()
            .all(|s| std::fs::metadata(dir.join(&s.file)).is_ok_and(|m| m.len() == s.bytes));
        intact.then_some(state)
    }

    pub fn save(&self, dir: &Path) -> Result<(), CorpusError> {
        write_json(&Self::path(dir), self)
    }
}

/// Whether `name` is a file a prepare writes (and may therefore delete when it restarts).
pub fn is_prepare_output(name: &str) -> bool {
    let shard = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| {
                r.strip_suffix(".parquet")
                    .or_else(|| r.strip_suffix(".parquet.tmp"))
            })
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    };
    shard("train-")
        || shard("validation-")
        || name == STATE_FILE
        || name == format!("{STATE_FILE}.tmp")
        || name == "manifest.json.tmp"
}

/// Deletes prepare outputs in `dir` except the files named in `keep`.
pub fn clean(dir: &Path, keep: &[&str]) -> Result<(), CorpusError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CorpusError::io("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CorpusError::io("cannot list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_prepare_output(&name) && !keep.contains(&name.as_str()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| CorpusError::io("cannot remove", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_files_are_outputs() {
        for name in [
            "train-00000.parquet",
            "validation-00012.parquet.tmp",
            STATE_FILE,
        ] {
            assert!(is_prepare_output(name), "{name}");
        }
        for name in [
            "train.parquet",
            "train-x.parquet",
            "notes.txt",
            "tokenizer.json",
            "manifest.json",
        ] {
            assert!(!is_prepare_output(name), "{name}");
        }
    }

    #[test]
    fn the_state_file_keeps_its_layout() {
        let mut state = PrepareState::new("sha256:k".into());
        state.splits.validation.documents = 3;
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["config_key"], "sha256:k");
        assert_eq!(json["validation"]["documents"], 3);
        assert_eq!(json["train"]["shards"], serde_json::json!([]));
        let back: PrepareState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
    }
}
