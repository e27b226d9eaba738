//! One split's output side of `prepare`: the open shard, the counters, and the split's state
//! as of its last closed shard (what `prepare-state.json` records).

use std::path::PathBuf;

use super::plan::Plan;
use super::state::{MatchCounts, SplitState};
use crate::error::CorpusError;
use crate::manifest::SplitManifest;
use crate::pack::{Block, ResumePoint};
use crate::shard::{ShardWriter, TokenDtype};
use crate::split::Split;

pub(super) struct Sink {
    split: Split,
    dir: PathBuf,
    dtype: TokenDtype,
    row_group_rows: usize,
    /// Shards carry `unit_start` (a corpus prepared with phrases).
    with_units: bool,
    shard_rows: u64,
    writer: Option<ShardWriter>,
    closed: SplitState,
    documents: u64,
    document_tokens: u64,
    empty: u64,
    /// Phrase matches of the documents counted (a corpus prepared with phrases).
    matches: MatchCounts,
    sequences: u64,
    tokens: u64,
}

impl Sink {
    /// A sink that goes on after `closed` (the default state for a fresh prepare), counting
    /// the matches of a list of `phrases` (0 without phrases).
    pub fn new(split: Split, plan: &Plan<'_>, closed: SplitState, phrases: usize) -> Self {
        let sequences = closed.shards.iter().map(|s| s.rows).sum();
        let tokens = closed.shards.iter().map(|s| s.tokens).sum();
        Self {
            split,
            dir: plan.out.clone(),
            dtype: plan.dtype(),
            row_group_rows: plan.config.row_group_sequences,
            with_units: plan.config.phrases.is_some(),
            shard_rows: plan.config.effective_shard_sequences() as u64,
            writer: None,
            documents: closed.documents,
            document_tokens: closed.document_tokens,
            empty: closed.empty,
            matches: closed.phrase_matches.clone().sized(phrases),
            closed,
            sequences,
            tokens,
        }
    }

    /// Appends a sequence, closing the shard when it is full (`point` is where packing
    /// resumes after it).
    pub fn push(&mut self, block: &Block, point: ResumePoint) -> Result<(), CorpusError> {
        let writer = match self.writer.take() {
            Some(writer) => writer,
            None => self.open_shard()?,
        };
        let writer = self.writer.insert(writer);
        writer.push(block)?;
        let full = writer.rows() >= self.shard_rows;
        self.sequences += 1;
        self.tokens += block.input_ids.len() as u64;
        if full {
            self.close_shard(Some(point))?;
        }
        Ok(())
    }

    fn open_shard(&self) -> Result<ShardWriter, CorpusError> {
        let path = self
            .dir
            .join(self.split.shard_name(self.closed.shards.len()));
        ShardWriter::create(&path, self.dtype, self.row_group_rows, self.with_units)
    }

    /// Finishes the open shard, if any, and records the split's state as of its end.
    pub fn close_shard(&mut self, point: Option<ResumePoint>) -> Result<(), CorpusError> {
        if let Some(writer) = self.writer.take() {
            let info = writer.finish()?;
            self.closed.shards.push(info);
            self.closed.resume = point;
            self.closed.documents = self.documents;
            self.closed.document_tokens = self.document_tokens;
            self.closed.empty = self.empty;
            self.closed.phrase_matches.clone_from(&self.matches);
        }
        Ok(())
    }

    /// A document all of whose `tokens` were pushed.
    pub fn count_document(&mut self, tokens: usize) {
        self.documents += 1;
        self.document_tokens += tokens as u64;
    }

    /// The phrase matches of a document counted by [`Self::count_document`]: counted with
    /// it, so that the state of a closed shard holds the matches of the same documents.
    pub fn count_matches(&mut self, phrases: &[u32], tokens: u64) {
        self.matches.add(phrases, tokens);
    }

    pub fn matches(&self) -> &MatchCounts {
        &self.matches
    }

    /// A document that tokenized to nothing (it is counted, never packed).
    pub fn count_empty(&mut self) {
        self.empty += 1;
    }

    /// The state as of the last closed shard.
    pub fn closed(&self) -> &SplitState {
        &self.closed
    }

    pub fn closed_shards(&self) -> usize {
        self.closed.shards.len()
    }

    pub fn empty(&self) -> u64 {
        self.empty
    }

    pub fn sequences(&self) -> u64 {
        self.sequences
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    pub fn manifest(&self) -> SplitManifest {
        SplitManifest {
            sequences: self.sequences,
            tokens: self.tokens,
            document_tokens: self.document_tokens,
            documents: self.documents,
            shards: self.closed.shards.clone(),
        }
    }
}
