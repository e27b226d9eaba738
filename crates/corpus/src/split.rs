//! The two splits of a prepared corpus.

use serde::{Deserialize, Serialize};

/// Training or held-out data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
}

impl Split {
    pub const ALL: [Split; 2] = [Split::Train, Split::Validation];

    /// `train` / `validation`: the shard file prefix (the split names `datasets` recognises).
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Split::Train => 0,
            Split::Validation => 1,
        }
    }

    /// `train-00003.parquet`
    pub fn shard_name(self, index: usize) -> String {
        format!("{}-{index:05}.parquet", self.as_str())
    }
}
