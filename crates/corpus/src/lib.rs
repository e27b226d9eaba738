//! mlm-corpus: raw domain text to training data, in constant memory.
//!
//! Stream documents (plain text, JSONL, Parquet, PubMed/MEDLINE XML), split train / held-out
//! by a stable hash of the document id, tokenize in parallel, pack into `max_seq_len`
//! sequences, write Parquet shards and a `manifest.json`, and read them back in the
//! addressable order of DESIGN.md's data contract.
//!
//! This crate works on plain `u32` token ids and never links libtorch (CI checks it with
//! `cargo tree`). Its stages land with the corpus issue.
