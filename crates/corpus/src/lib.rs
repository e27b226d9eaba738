//! mlm-corpus: raw domain text to training data, in constant memory.
//!
//! Stream documents (plain text, JSONL, Parquet, PubMed/MEDLINE XML), split train / held-out
//! by a stable hash of the document id, tokenize in parallel, pack into `max_seq_len`
//! sequences, write Parquet shards and a `manifest.json`, and read them back in the
//! addressable order of DESIGN.md's data contract.
//!
//! This crate works on plain `u32` token ids and never links libtorch (CI checks it with
//! `cargo tree`).

pub mod config;
pub mod error;
mod fsutil;
pub mod hash;
pub mod input;
pub mod length_groups;
pub mod manifest;
pub mod order;
pub mod pack;
pub mod phrases;
pub mod prepare;
pub mod progress;
pub mod reader;
pub mod shard;
pub mod split;
pub mod stream;
pub mod tokenizer;
pub mod untrusted;
pub mod vocab;
pub mod vocab_extend;

#[cfg(test)]
mod testutil;

pub use config::{
    BadRecordPolicy, CorpusConfig, InputFormat, Packing, TextMode, VocabConfig, VocabLayout,
    VocabModel,
};
pub use error::{BadRecordKind, CorpusError};
pub use fsutil::resolve_path;
pub use length_groups::TrainOrder;
pub use manifest::{DocumentCounts, Manifest, SourceEntry, SplitManifest, SplitPolicy};
pub use order::{EpochOrder, Permutation, rank_slice};
pub use pack::{Block, Packer, ResumePoint};
pub use prepare::{Outcome, PrepareOptions, PrepareReport, prepare};
pub use progress::{Observer, Progress, Quiet};
pub use reader::{PreparedCorpus, Sequence, SplitReader};
pub use shard::{ShardInfo, TokenDtype};
pub use split::{Split, Splits};
pub use tokenizer::{
    AddedKind, DomainTokenizer, HfClass, NewToken, SpecialIds, SpecialTokens, TokenizerModel,
    VocabExtension,
};
pub use vocab::{VocabReport, train_vocab};
pub use vocab_extend::{ExtendReport, extend_vocab};
