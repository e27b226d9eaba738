//! The hot path of `prepare`: a reader thread streams documents in batches through a bounded
//! channel, a tokenizer thread encodes each batch on the rayon pool, and the calling thread
//! packs the documents in order into the shards of their split. Reading, tokenizing and
//! packing + writing overlap.

use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use rayon::prelude::*;

use super::PrepareOptions;
use super::phrase_stage::PhraseStage;
use super::plan::Plan;
use super::sink::Sink;
use super::state::MatchCounts;
use super::state::PrepareState;
use crate::error::CorpusError;
use crate::input::ByteCounter;
use crate::manifest::SplitManifest;
use crate::pack::{Packer, ResumePoint};
use crate::phrases::PhraseMatcher;
use crate::phrases::matcher::Matches;
use crate::progress::{Observer, Progress};
use crate::split::{Split, Splits};
use crate::stream::{AcceptedDoc, DocumentStream, ReadStats};
use crate::tokenizer::DomainTokenizer;

/// Batches are cut at this much text too, so that a few huge documents cannot blow memory.
const BATCH_TEXT_BYTES: usize = 16 << 20;

/// What the pipeline wrote, and what the reader saw.
pub(super) struct Packed {
    pub splits: Splits<SplitManifest>,
    /// Documents that tokenized to nothing, both splits.
    pub empty: u64,
    pub stats: ReadStats,
    /// Phrase matches in the training documents (an interrupted run's included).
    pub matches: MatchCounts,
}

/// Streams, tokenizes and packs the corpus from `state` on.
pub(super) fn pack_corpus(
    plan: &Plan<'_>,
    state: PrepareState,
    options: &PrepareOptions<'_>,
    phrases: Option<&PhraseStage>,
) -> Result<Packed, CorpusError> {
    let counter = ByteCounter::default();
    let files = plan.files.clone();
    let stream = DocumentStream::open(plan.config, files, counter.clone(), options.observer)?;
    options.observer.phase("tokenizing and packing");
    let mut packing = Packing::new(plan, state, options, counter, phrases);
    let matcher = phrases.map(|p| &p.matcher);
    let stats = std::thread::scope(|scope| -> Result<ReadStats, CorpusError> {
        let (batches, reader) = spawn_reader(scope, stream, plan.config.batch_documents);
        let tokenize = Tokenize {
            tokenizer: &plan.tokenizer,
            matcher,
        };
        let encoded = spawn_tokenizer(scope, batches, tokenize, packing.resume);
        packing.pack_batches(encoded)?;
        reader
            .join()
            .map_err(|_| CorpusError::Internal("the reader thread panicked".into()))
    })?;
    packing.finish(stats)
}

/// A batch of documents read, or the error that ended reading.
type ReadBatch = Result<Vec<AcceptedDoc>, CorpusError>;

/// Reads the stream in batches on its own thread; the thread returns the read counts.
fn spawn_reader<'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut stream: DocumentStream<'scope>,
    batch_documents: usize,
) -> (Receiver<ReadBatch>, ScopedJoinHandle<'scope, ReadStats>) {
    let (tx, rx) = sync_channel(2);
    let handle = scope.spawn(move || {
        let mut batch = Vec::with_capacity(batch_documents);
        let mut text_bytes = 0;
        for item in stream.by_ref() {
            let doc = match item {
                Ok(doc) => doc,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return stream.stats().clone();
                }
            };
            text_bytes += doc.doc.text.len();
            batch.push(doc);
            if batch.len() >= batch_documents || text_bytes >= BATCH_TEXT_BYTES {
                text_bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_documents));
                if tx.send(Ok(full)).is_err() {
                    break; // the consumer stopped
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
    /// Token ids and word starts.
    tokens: Result<(Vec<u32>, Vec<bool>), CorpusError>,
    /// Unit starts and the phrases matched, in a phrase corpus.
    units: Option<(Vec<bool>, Matches)>,
}

/// What the tokenizer thread applies to each document.
#[derive(Clone, Copy)]
struct Tokenize<'a> {
    tokenizer: &'a DomainTokenizer,
    matcher: Option<&'a PhraseMatcher>,
}

impl Tokenize<'_> {
    fn encode(&self, ordinal: u64, split: Split, text: &str) -> EncodedDoc {
        let tokens = self.tokenizer.encode_words(text);
        let units = match (&tokens, self.matcher) {
            (Ok((ids, starts)), Some(matcher)) => Some(matcher.unit_starts(ids, starts)),
            _ => None,
        };
        EncodedDoc {
            ordinal,
            split,
            tokens,
            units,
        }
    }
}

/// A batch: documents read (for progress) and the documents to pack.
type EncodedBatch = Result<(u64, Vec<EncodedDoc>), CorpusError>;

/// Tokenizes batches on the rayon pool in a thread of its own. Documents a resumed prepare
/// has already packed are skipped here (they are read again, never tokenized again).
fn spawn_tokenizer<'scope>(
    scope: &'scope Scope<'scope, '_>,
    batches: Receiver<ReadBatch>,
    tokenize: Tokenize<'scope>,
    resume: Splits<Option<ResumePoint>>,
) -> Receiver<EncodedBatch> {
    let (tx, rx) = sync_channel(2);
    scope.spawn(move || {
        for batch in batches.iter() {
            let encoded = batch.map(|batch| {
                let read = batch.len() as u64;
                let docs = batch
                    .into_par_iter()
                    .filter(|d| resume.get(d.split).is_none_or(|p| d.ordinal >= p.ordinal))
                    .map(|d| tokenize.encode(d.ordinal, d.split, &d.doc.text))
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

/// Both splits' packers and sinks, advanced one tokenized document at a time.
struct Packing<'a> {
    packers: Splits<Packer>,
    sinks: Splits<Sink>,
    /// Where each split's packing resumes (documents before it were packed by an earlier run).
    resume: Splits<Option<ResumePoint>>,
    checkpoint: Checkpoint<'a>,
    progress: ProgressReport<'a>,
}

impl<'a> Packing<'a> {
    fn new(
        plan: &'a Plan<'_>,
        state: PrepareState,
        options: &PrepareOptions<'a>,
        counter: ByteCounter,
        phrases: Option<&PhraseStage>,
    ) -> Self {
        let config = plan.config;
        let special = plan.tokenizer.special_ids();
        let resume = state.splits.each_ref().map(|_, s| s.resume);
        let packers = resume.map(|_, point| {
            let (mode, len) = (config.packing, config.max_seq_len);
            let packer = match point {
                Some(p) => Packer::resumed(mode, len, special.cls, special.sep, p),
                None => Packer::new(mode, len, special.cls, special.sep),
            };
            if phrases.is_some() {
                packer.with_units()
            } else {
                packer
            }
        });
        Self {
            packers,
            checkpoint: Checkpoint {
                out: &plan.out,
                key: &plan.key,
                shards_before: state.shard_count(),
                stop_after_shards: options.stop_after_shards,
            },
            sinks: state.splits.map(|split, closed| {
                Sink::new(
                    split,
                    plan,
                    closed,
                    phrases.map_or(0, |p| p.list.phrases.len()),
                )
            }),
            resume,
            progress: ProgressReport::new(options.observer, counter, plan.bytes_total()),
        }
    }

    /// Packs every batch. The receiver is consumed: dropping it on an error stops the
    /// tokenizer and reader threads.
    fn pack_batches(&mut self, batches: Receiver<EncodedBatch>) -> Result<(), CorpusError> {
        for batch in batches {
            let (read, docs) = batch?;
            self.progress.count_read(read);
            for doc in docs {
                self.pack_document(doc)?;
            }
            self.progress.report(&self.sinks);
        }
        Ok(())
    }

    fn pack_document(&mut self, doc: EncodedDoc) -> Result<(), CorpusError> {
        let (ids, starts) = doc.tokens?;
        let (units, matches) = doc.units.unzip();
        let sink = self.sinks.get_mut(doc.split);
        if ids.is_empty() {
            sink.count_empty();
            return Ok(());
        }
        let shards_before = sink.closed_shards();
        let resume = *self.resume.get(doc.split);
        self.packers.get_mut(doc.split).push(
            doc.ordinal,
            &ids,
            &starts,
            units.as_deref(),
            resume,
            &mut |block, point| sink.push(&block, point),
        )?;
        sink.count_document(ids.len());
        if let Some(matches) = &matches {
            sink.count_matches(&matches.phrases, matches.tokens);
        }
        if sink.closed_shards() > shards_before {
            mlm_faults::fault_point("prepare.after-shard");
            self.checkpoint.save(&self.sinks)?;
        }
        Ok(())
    }

    /// Packs what the packers still hold and closes the last shards.
    fn finish(mut self, stats: ReadStats) -> Result<Packed, CorpusError> {
        for (split, packer) in self.packers.iter_mut() {
            let sink = self.sinks.get_mut(split);
            packer.finish(&mut |block, point| sink.push(&block, point))?;
            sink.close_shard(None)?;
        }
        self.progress.report(&self.sinks);
        Ok(Packed {
            empty: self.sinks.train.empty() + self.sinks.validation.empty(),
            matches: self.sinks.train.matches().clone(),
            splits: self.sinks.map(|_, sink| sink.manifest()),
            stats,
        })
    }
}

/// Saves `prepare-state.json` whenever a shard closes, so that a rerun resumes from there.
struct Checkpoint<'a> {
    out: &'a Path,
    key: &'a str,
    /// Shards kept from an earlier run.
    shards_before: usize,
    /// The test hook of [`PrepareOptions::stop_after_shards`].
    stop_after_shards: Option<usize>,
}

impl Checkpoint<'_> {
    fn save(&self, sinks: &Splits<Sink>) -> Result<(), CorpusError> {
        let state = PrepareState {
            config_key: self.key.to_string(),
            splits: sinks.each_ref().map(|_, sink| sink.closed().clone()),
        };
        state.save(self.out)?;
        let written = state.shard_count() - self.shards_before;
        match self.stop_after_shards {
            // Stopping right after a save is what a kill at that moment leaves behind.
            Some(n) if written >= n => Err(CorpusError::Interrupted { shards: written }),
            _ => Ok(()),
        }
    }
}

/// The progress counters and where they go.
struct ProgressReport<'a> {
    observer: &'a dyn Observer,
    counter: ByteCounter,
    progress: Progress,
}

impl<'a> ProgressReport<'a> {
    fn new(observer: &'a dyn Observer, counter: ByteCounter, bytes_total: u64) -> Self {
        Self {
            observer,
            counter,
            progress: Progress {
                bytes_total,
                ..Progress::default()
            },
        }
    }

    fn count_read(&mut self, documents: u64) {
        self.progress.documents += documents;
    }

    /// Brings the byte and output counters up to date and hands them to the observer.
    fn report(&mut self, sinks: &Splits<Sink>) {
        self.progress.bytes_read = self.counter.get();
        self.progress.sequences = sinks.train.sequences() + sinks.validation.sequences();
        self.progress.tokens = sinks.train.tokens() + sinks.validation.tokens();
        self.observer.progress(&self.progress);
    }
}
