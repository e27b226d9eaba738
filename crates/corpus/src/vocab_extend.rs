//! `vocab extend`: the words of the training split the base vocabulary (`[vocab] extend_from`)
//! splits worst become vocabulary entries (tokenizer/extend); the extended tokenizer's files
//! and `vocab-extension.json` go to `[vocab] output` (default `[corpus] tokenizer`), and the
//! fragmentation of held-out text is measured under both vocabularies.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{CorpusConfig, VocabConfig};
use crate::error::CorpusError;
use crate::input::ByteCounter;
use crate::progress::{Observer, Progress};
use crate::split::Split;
use crate::stream::{DocumentStream, ReadStats, corpus_files};
use crate::tokenizer::extend::words::{
    Fragmentation, WordCounts, count_words, fragmentation, merge_counts, rank_candidates,
};
use crate::tokenizer::extend::{check_extendable, extend_tokenizer};
use crate::tokenizer::{AddedKind, DomainTokenizer};

/// Held-out documents kept for the fragmentation table (a sample: the text stays in memory).
pub const FRAGMENTATION_DOCUMENTS: usize = 10_000;

/// Documents counted per parallel batch.
const BATCH: usize = 512;

/// What `extend_vocab` made.
#[derive(Debug, Clone)]
pub struct ExtendReport {
    /// The extended tokenizer, reloaded from the files written.
    pub tokenizer: DomainTokenizer,
    pub base: DomainTokenizer,
    pub output: PathBuf,
    /// Training documents whose words were counted.
    pub documents: u64,
    pub distinct_words: usize,
    /// Words seen `min_frequency` times or more that the base vocabulary splits.
    pub candidates: usize,
    /// Added words, and (byte-level BPE) merge steps added on the way to them.
    pub words: usize,
    pub merge_steps: usize,
    /// Added words that the written tokenizer does not make one token (0 unless a bug).
    pub not_single: usize,
    /// Held-out fragmentation (pieces per word) under the base and the extended vocabulary.
    pub base_fragmentation: Fragmentation,
    pub extended_fragmentation: Fragmentation,
    pub stats: ReadStats,
    pub elapsed: Duration,
}

/// The documents read: training word counts and a held-out sample.
struct Counted {
    train: WordCounts,
    documents: u64,
    held_out: WordCounts,
    held_out_documents: u64,
    stats: ReadStats,
}

/// Extends `[vocab] extend_from`'s vocabulary by `[vocab] add` entries and writes it.
pub fn extend_vocab(
    corpus: &CorpusConfig,
    vocab: &VocabConfig,
    observer: &dyn Observer,
) -> Result<ExtendReport, CorpusError> {
    let started = Instant::now();
    corpus.validate()?;
    let (base_dir, add) = vocab.validate_extend(corpus)?;
    let output = vocab.output_dir(corpus)?;
    let base = DomainTokenizer::load(&base_dir, None)?;
    check_extendable(&base)?;
    let counted = count_corpus(corpus, vocab, &base, observer)?;
    observer.phase("choosing words");
    let unk = Some(base.special_ids().unk);
    let candidates = rank_candidates(base.inner(), &counted.train, vocab.min_frequency, unk)?;
    let extended = extend_tokenizer(&base, &candidates, add)?;
    extended.write_hf_files(&output, base.model_max_length().unwrap_or(512))?;
    // Reload from disk: the report then describes exactly what was written.
    let tokenizer = DomainTokenizer::load(&output, None)?;
    let extension = tokenizer.extension().cloned().ok_or_else(|| {
        CorpusError::Internal(format!(
            "{} has no vocab-extension.json after writing it",
            output.display()
        ))
    })?;
    let words = extension
        .tokens
        .iter()
        .filter(|t| t.kind == AddedKind::Word);
    let not_single = words
        .clone()
        .filter(|t| {
            crate::tokenizer::extend::words::pieces_of(tokenizer.inner(), &t.token)
                .map_or(true, |ids| ids != [t.id])
        })
        .count();
    observer.phase("measuring fragmentation");
    let held = counted.held_out_documents;
    Ok(ExtendReport {
        base_fragmentation: fragmentation(base.inner(), &counted.held_out, held)?,
        extended_fragmentation: fragmentation(tokenizer.inner(), &counted.held_out, held)?,
        words: words.count(),
        merge_steps: extension
            .tokens
            .iter()
            .filter(|t| t.kind == AddedKind::MergeStep)
            .count(),
        not_single,
        tokenizer,
        base,
        output,
        documents: counted.documents,
        distinct_words: counted.train.len(),
        candidates: candidates.len(),
        stats: counted.stats,
        elapsed: started.elapsed(),
    })
}

/// Reads the corpus once: word counts of the training split (at most `max_documents`
/// documents) and of up to [`FRAGMENTATION_DOCUMENTS`] held-out documents.
fn count_corpus(
    corpus: &CorpusConfig,
    vocab: &VocabConfig,
    base: &DomainTokenizer,
    observer: &dyn Observer,
) -> Result<Counted, CorpusError> {
    let files = corpus_files(corpus)?;
    let bytes_total = files.iter().map(|f| f.bytes).sum();
    let counter = ByteCounter::default();
    let mut stream = DocumentStream::open(corpus, files, counter.clone(), observer)?;
    observer.phase("counting words");
    let limit = vocab.max_documents.unwrap_or(u64::MAX);
    let mut counted = Counted {
        train: WordCounts::new(),
        documents: 0,
        held_out: WordCounts::new(),
        held_out_documents: 0,
        stats: ReadStats::default(),
    };
    let (mut train, mut held_out) = (Vec::new(), Vec::new());
    let mut progress = Progress {
        bytes_total,
        ..Progress::default()
    };
    for doc in stream.by_ref() {
        let doc = doc?;
        match doc.split {
            Split::Train if counted.documents < limit => {
                counted.documents += 1;
                train.push(doc.doc.text);
            }
            Split::Validation if counted.held_out_documents < FRAGMENTATION_DOCUMENTS as u64 => {
                counted.held_out_documents += 1;
                held_out.push(doc.doc.text);
            }
            _ => {}
        }
        if train.len() == BATCH {
            merge_counts(&mut counted.train, count_words(base.inner(), &train)?);
            train.clear();
            progress.documents = counted.documents;
            progress.bytes_read = counter.get();
            observer.progress(&progress);
        }
    }
    merge_counts(&mut counted.train, count_words(base.inner(), &train)?);
    counted.held_out = count_words(base.inner(), &held_out)?;
    counted.stats = stream.stats().clone();
    if counted.documents == 0 {
        return Err(CorpusError::EmptyCorpus {
            message: "no training document to count words in".into(),
        });
    }
    Ok(counted)
}
