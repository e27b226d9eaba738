//! `prepare`: read -> split -> tokenize (rayon) -> pack -> Parquet shards -> manifest.
//!
//! A reader thread streams documents in batches through a bounded channel; the calling
//! thread tokenizes each batch on the rayon pool, packs it in order and writes the shards.
//! Memory is bounded by a few batches, one row group per split, the MEDLINE version bitsets
//! and (only with `deduplicate`) 8 bytes per distinct document.

pub mod state;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::CorpusConfig;
use crate::error::CorpusError;
use crate::fsutil::write_json;
use crate::input::{ByteCounter, DropReason, InputFile, ResolvedFormat};
use crate::manifest::{
    DocumentCounts, FORMAT_VERSION, MANIFEST_FILE, Manifest, SourceEntry, SplitManifest,
    SplitPolicy,
};
use crate::pack::{Block, Packer, ResumePoint};
use crate::progress::{Observer, Progress};
use crate::shard::{ShardWriter, TokenDtype};
use crate::split::Split;
use crate::stream::{AcceptedDoc, DocumentStream, ReadStats, corpus_files};
use crate::tokenizer::DomainTokenizer;
use state::{PrepareState, SplitState};

/// Options of a prepare run that are not part of the corpus config.
pub struct PrepareOptions<'a> {
    pub observer: &'a dyn Observer,
    /// Stop with [`CorpusError::Interrupted`] after writing this many shards (to test
    /// resuming; a real interruption is a crash or a kill).
    pub stop_after_shards: Option<usize>,
}

/// How a prepare ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Prepared from scratch.
    Prepared,
    /// An unfinished prepare was completed; `shards_kept` shards of it were reused.
    Resumed { shards_kept: usize },
    /// The directory already held this exact prepare: nothing was done.
    AlreadyComplete,
}

/// The result of a prepare.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    pub output: PathBuf,
    pub manifest: Manifest,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// A document's token ids and word starts.
type Encoded = (Vec<u32>, Vec<bool>);

/// Batches are cut at this much text too, so that a few huge documents cannot blow memory.
const BATCH_TEXT_BYTES: usize = 16 << 20;

/// Hash of everything that decides the output.
fn config_key(config: &CorpusConfig, tokenizer: &DomainTokenizer, files: &[InputFile]) -> String {
    let mut keyed = config.clone();
    keyed.batch_documents = 0; // only changes speed
    let inputs: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let modified = std::fs::metadata(&f.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos().to_string());
            serde_json::json!([f.path, f.bytes, modified, f.held_out])
        })
        .collect();
    let doc = serde_json::json!({
        "format_version": FORMAT_VERSION,
        "config": keyed,
        "tokenizer": tokenizer.fingerprint(),
        "inputs": inputs,
    });
    format!(
        "sha256:{}",
        crate::hash::sha256_hex(doc.to_string().as_bytes())
    )
}

/// One split's output side: the open shard and the state as of the last closed shard.
struct Sink {
    split: Split,
    dir: PathBuf,
    dtype: TokenDtype,
    row_group_rows: usize,
    shard_rows: u64,
    writer: Option<ShardWriter>,
    closed: SplitState,
    documents: u64,
    document_tokens: u64,
    empty: u64,
    sequences: u64,
    tokens: u64,
}

impl Sink {
    fn new(
        split: Split,
        dir: &Path,
        config: &CorpusConfig,
        dtype: TokenDtype,
        closed: SplitState,
    ) -> Self {
        let sequences = closed.shards.iter().map(|s| s.rows).sum();
        let tokens = closed.shards.iter().map(|s| s.tokens).sum();
        Self {
            split,
            dir: dir.to_path_buf(),
            dtype,
            row_group_rows: config.row_group_sequences,
            shard_rows: config.effective_shard_sequences() as u64,
            writer: None,
            documents: closed.documents,
            document_tokens: closed.document_tokens,
            empty: closed.empty,
            closed,
            sequences,
            tokens,
        }
    }

    /// Appends a sequence; returns true when that closed a shard.
    fn push(&mut self, block: &Block, point: ResumePoint) -> Result<bool, CorpusError> {
        if self.writer.is_none() {
            let path = self
                .dir
                .join(self.split.shard_name(self.closed.shards.len()));
            self.writer = Some(ShardWriter::create(&path, self.dtype, self.row_group_rows)?);
        }
        let writer = self.writer.as_mut().expect("created above");
        writer.push(block)?;
        self.sequences += 1;
        self.tokens += block.input_ids.len() as u64;
        if writer.rows() < self.shard_rows {
            return Ok(false);
        }
        self.close_shard(Some(point))?;
        Ok(true)
    }

    fn close_shard(&mut self, point: Option<ResumePoint>) -> Result<(), CorpusError> {
        if let Some(writer) = self.writer.take() {
            let info = writer.finish()?;
            self.closed.shards.push(info);
            self.closed.resume = point;
            self.closed.documents = self.documents;
            self.closed.document_tokens = self.document_tokens;
            self.closed.empty = self.empty;
        }
        Ok(())
    }

    fn manifest(&self) -> SplitManifest {
        SplitManifest {
            sequences: self.sequences,
            tokens: self.tokens,
            document_tokens: self.document_tokens,
            documents: self.documents,
            shards: self.closed.shards.clone(),
        }
    }
}

/// Reads the stream in batches on its own thread.
fn spawn_reader<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut stream: DocumentStream<'scope>,
    batch_documents: usize,
) -> (
    Receiver<Result<Vec<AcceptedDoc>, CorpusError>>,
    std::thread::ScopedJoinHandle<'scope, ReadStats>,
) {
    let (tx, rx) = sync_channel(2);
    let handle = scope.spawn(move || {
        let mut batch = Vec::with_capacity(batch_documents);
        let mut text_bytes = 0;
        for item in stream.by_ref() {
            match item {
                Ok(doc) => {
                    text_bytes += doc.doc.text.len();
                    batch.push(doc);
                    if batch.len() >= batch_documents || text_bytes >= BATCH_TEXT_BYTES {
                        text_bytes = 0;
                        let full =
                            std::mem::replace(&mut batch, Vec::with_capacity(batch_documents));
                        if tx.send(Ok(full)).is_err() {
                            break; // the consumer stopped
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return stream.stats().clone();
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        stream.stats().clone()
    });
    (rx, handle)
}

/// One tokenized document.
struct EncodedDoc {
    ordinal: u64,
    split: Split,
    tokens: Result<Encoded, CorpusError>,
}

/// A batch: documents read (for progress) and the documents to pack.
type EncodedBatch = Result<(u64, Vec<EncodedDoc>), CorpusError>;

/// Tokenizes batches on the rayon pool in a thread of its own, so that reading,
/// tokenizing and packing + writing overlap. Documents a resumed prepare has already packed
/// are skipped here (they are read again, never tokenized again).
fn spawn_tokenizer<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    batches: Receiver<Result<Vec<AcceptedDoc>, CorpusError>>,
    tokenizer: &'scope DomainTokenizer,
    resume: [Option<ResumePoint>; 2],
) -> Receiver<EncodedBatch> {
    let (tx, rx) = sync_channel(2);
    scope.spawn(move || {
        for batch in batches.iter() {
            let encoded = batch.map(|batch| {
                let read = batch.len() as u64;
                let docs = batch
                    .into_par_iter()
                    .filter(|d| resume[d.split.index()].is_none_or(|p| d.ordinal >= p.ordinal))
                    .map(|d| EncodedDoc {
                        ordinal: d.ordinal,
                        split: d.split,
                        tokens: tokenizer.encode_words(&d.doc.text),
                    })
                    .collect();
                (read, docs)
            });
            let failed = encoded.is_err();
            if tx.send(encoded).is_err() || failed {
                break; // the consumer stopped, or the error is passed on
            }
        }
    });
    rx
}

/// Runs `prepare` for a config whose paths are resolved (see `CorpusConfig::resolve_paths`).
pub fn prepare(
    config: &CorpusConfig,
    options: &PrepareOptions<'_>,
) -> Result<PrepareReport, CorpusError> {
    let started = Instant::now();
    config.validate()?;
    let out = config.output_dir()?.to_path_buf();
    let tokenizer = DomainTokenizer::load(config.tokenizer_path()?, config.lowercase)?;
    if let Some(limit) = tokenizer.model_max_length()
        && config.max_seq_len > limit
    {
        return Err(CorpusError::config(
            "corpus",
            "max_seq_len",
            format!(
                "{} is larger than the tokenizer's model_max_length {limit} (the model has no position embeddings beyond it)",
                config.max_seq_len
            ),
        ));
    }
    let files = corpus_files(config)?;
    let key = config_key(config, &tokenizer, &files);
    std::fs::create_dir_all(&out).map_err(|e| CorpusError::io("cannot create", &out, e))?;

    let manifest_path = out.join(MANIFEST_FILE);
    if manifest_path.is_file() {
        if let Ok(manifest) = Manifest::read(&out)
            && manifest.config_key == key
        {
            return Ok(PrepareReport {
                output: out,
                manifest,
                outcome: Outcome::AlreadyComplete,
                elapsed: started.elapsed(),
            });
        }
        // Another prepare's output: remove its manifest first, so that an interruption
        // from here on leaves a directory nobody takes for complete.
        std::fs::remove_file(&manifest_path)
            .map_err(|e| CorpusError::io("cannot remove", &manifest_path, e))?;
        options.observer.warning(
            "the output directory holds a prepare of another config or input; rebuilding it",
        );
    }
    let resumed = PrepareState::load_matching(&out, &key);
    let state = match resumed.clone() {
        Some(state) => {
            let keep: Vec<&str> = state
                .train
                .shards
                .iter()
                .chain(&state.validation.shards)
                .map(|s| s.file.as_str())
                .chain([state::STATE_FILE])
                .collect();
            state::clean(&out, &keep)?;
            state
        }
        None => {
            state::clean(&out, &[])?;
            PrepareState {
                config_key: key.clone(),
                ..PrepareState::default()
            }
        }
    };
    let shards_kept = state.train.shards.len() + state.validation.shards.len();
    if shards_kept > 0 {
        options.observer.warning(&format!(
            "resuming an unfinished prepare: {shards_kept} finished shards kept"
        ));
    }
    let model_max_length = tokenizer
        .model_max_length()
        .unwrap_or(config.max_seq_len.max(512));
    tokenizer.write_hf_files(&out, model_max_length)?;
    let mut tokenizer_files = vec!["tokenizer.json".to_string()];
    if out.join("vocab.txt").is_file() {
        tokenizer_files.push("vocab.txt".into());
    }

    let dtype = TokenDtype::for_vocab(tokenizer.vocab_size());
    let special = tokenizer.special_ids().clone();
    let mut sinks = [
        Sink::new(Split::Train, &out, config, dtype, state.train.clone()),
        Sink::new(
            Split::Validation,
            &out,
            config,
            dtype,
            state.validation.clone(),
        ),
    ];
    let mut packers = [&state.train, &state.validation].map(|s| match s.resume {
        Some(p) => Packer::resumed(
            config.packing,
            config.max_seq_len,
            special.cls,
            special.sep,
            p,
        ),
        None => Packer::new(config.packing, config.max_seq_len, special.cls, special.sep),
    });
    let resume = [state.train.resume, state.validation.resume];

    let counter = ByteCounter::default();
    let bytes_total: u64 = files
        .iter()
        .map(|f| {
            if f.format == ResolvedFormat::Medline {
                2 * f.bytes
            } else {
                f.bytes
            }
        })
        .sum();
    let stream = DocumentStream::open(config, files.clone(), counter.clone(), options.observer)?;
    options.observer.phase("tokenizing and packing");
    let mut progress = Progress {
        bytes_total,
        ..Progress::default()
    };
    let mut shards_written = 0usize;

    let stats = std::thread::scope(|scope| -> Result<ReadStats, CorpusError> {
        let (batches, reader) = spawn_reader(scope, stream, config.batch_documents);
        let encoded_batches = spawn_tokenizer(scope, batches, &tokenizer, resume);
        for batch in encoded_batches.iter() {
            let (read, encoded) = batch?;
            progress.documents += read;
            for doc in encoded {
                let (ids, starts) = doc.tokens?;
                let s = doc.split.index();
                if ids.is_empty() {
                    sinks[s].empty += 1;
                    continue;
                }
                let mut closed = false;
                let mut emit = |block: Block, point: ResumePoint| -> Result<(), CorpusError> {
                    closed |= sinks[s].push(&block, point)?;
                    Ok(())
                };
                packers[s].push(doc.ordinal, &ids, &starts, resume[s], &mut emit)?;
                sinks[s].documents += 1;
                sinks[s].document_tokens += ids.len() as u64;
                if closed {
                    PrepareState {
                        config_key: key.clone(),
                        train: sinks[0].closed.clone(),
                        validation: sinks[1].closed.clone(),
                    }
                    .save(&out)?;
                    shards_written += 1;
                    if options
                        .stop_after_shards
                        .is_some_and(|n| shards_written >= n)
                    {
                        return Err(CorpusError::Interrupted {
                            shards: shards_written,
                        });
                    }
                }
            }
            progress.bytes_read = counter.get();
            progress.sequences = sinks[0].sequences + sinks[1].sequences;
            progress.tokens = sinks[0].tokens + sinks[1].tokens;
            options.observer.progress(&progress);
        }
        drop(encoded_batches);
        reader
            .join()
            .map_err(|_| CorpusError::Internal("the reader thread panicked".into()))
    })?;

    for (packer, sink) in packers.iter_mut().zip(sinks.iter_mut()) {
        packer.finish(&mut |block, point| sink.push(&block, point).map(|_| ()))?;
        sink.close_shard(None)?;
    }
    progress.bytes_read = counter.get();
    progress.sequences = sinks[0].sequences + sinks[1].sequences;
    progress.tokens = sinks[0].tokens + sinks[1].tokens;
    options.observer.progress(&progress);

    let mut dropped = stats.dropped.clone();
    let empty = sinks[0].empty + sinks[1].empty;
    if empty > 0 {
        *dropped
            .entry(DropReason::Empty.as_str().to_string())
            .or_default() += empty;
    }
    if sinks[0].sequences == 0 {
        return Err(CorpusError::EmptyCorpus {
            message: format!(
                "no training sequence: {} records read, {} held out, dropped: {}",
                stats.records,
                sinks[1].documents,
                if dropped.is_empty() {
                    "none".to_string()
                } else {
                    dropped
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        });
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        created_by: format!("mlm-corpus {}", env!("CARGO_PKG_VERSION")),
        tokenizer_fingerprint: tokenizer.fingerprint(),
        vocab_size: tokenizer.vocab_size(),
        special_ids: special,
        special_tokens: tokenizer.special_tokens().clone(),
        do_lower_case: tokenizer.do_lower_case(),
        tokenizer_files,
        max_seq_len: config.max_seq_len,
        packing: config.packing,
        token_dtype: dtype,
        row_group_sequences: config.row_group_sequences,
        train: sinks[0].manifest(),
        validation: sinks[1].manifest(),
        documents: DocumentCounts {
            records: stats.records,
            train: sinks[0].documents,
            validation: sinks[1].documents,
            dropped,
        },
        split: SplitPolicy {
            method: if config.validation_inputs.is_empty() {
                "hash"
            } else {
                "inputs"
            }
            .to_string(),
            validation_fraction: config.effective_validation_fraction(),
            split_seed: config.split_seed,
            deduplicate: config.deduplicate,
        },
        sources: files
            .iter()
            .zip(&stats.per_source)
            .map(|(f, c)| SourceEntry {
                path: f.path.display().to_string(),
                format: f.format,
                held_out: f.held_out,
                bytes: f.bytes,
                records: c.records,
                documents: c.documents,
                dropped: c.dropped,
            })
            .collect(),
        config_key: key,
        config: config.clone(),
    };
    write_json(&manifest_path, &manifest)?;
    let state_path = PrepareState::path(&out);
    if state_path.exists() {
        std::fs::remove_file(&state_path)
            .map_err(|e| CorpusError::io("cannot remove", &state_path, e))?;
    }
    Ok(PrepareReport {
        output: out,
        manifest,
        outcome: if resumed.is_some() {
            Outcome::Resumed { shards_kept }
        } else {
            Outcome::Prepared
        },
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests;
