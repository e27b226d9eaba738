//! `vocab train`: a WordPiece or byte-level BPE vocabulary (`[vocab] model`, `layout`) from the
//! training split of the configured corpus
//! (held-out documents are left out, so the vocabulary does not see the evaluation text).

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use crate::config::{CorpusConfig, VocabConfig, VocabLayout};
use crate::error::CorpusError;
use crate::input::ByteCounter;
use crate::progress::{Observer, Progress};
use crate::split::Split;
use crate::stream::{DocumentStream, ReadStats, corpus_files};
use crate::tokenizer::DomainTokenizer;
use crate::tokenizer::train;

/// What `train_vocab` made.
#[derive(Debug, Clone)]
pub struct VocabReport {
    pub tokenizer: DomainTokenizer,
    /// Directory the files were written to.
    pub output: PathBuf,
    /// Documents the vocabulary was trained on.
    pub documents: u64,
    pub stats: ReadStats,
    pub elapsed: Duration,
}

/// `model_max_length` written into the trained tokenizer's `tokenizer_config.json`
/// (bert-base's position table; `layout = "modernbert"`: ModernBERT-base's 8,192).
pub const TRAINED_MODEL_MAX_LENGTH: usize = 512;

fn trained_model_max_length(vocab: &VocabConfig) -> usize {
    match vocab.effective_layout() {
        Some(VocabLayout::ModernBert) => crate::tokenizer::train::MODERNBERT_MODEL_MAX_LENGTH,
        _ => TRAINED_MODEL_MAX_LENGTH,
    }
}

/// Writes the tokenizer files into a hidden directory beside `output`, then publishes it as
/// `output` (synced, renamed, the parent synced: `mlm_durable::publish_dir`) when that is
/// absent or empty, so that a kill never leaves some of the files
/// (`mlm-train` trains a vocabulary only when `output` holds no tokenizer file, and would
/// otherwise take half a tokenizer for a trained one). Into a directory that holds other
/// files they are moved one by one, `tokenizer.json` last.
fn write_whole(
    tokenizer: &DomainTokenizer,
    output: &Path,
    model_max_length: usize,
) -> Result<(), CorpusError> {
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let temp = output.with_file_name(format!(".{name}.tmp-vocab"));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(|e| CorpusError::io("cannot remove", &temp, e))?;
    }
    let written = tokenizer.write_hf_files(&temp, model_max_length)?;
    mlm_faults::fault_point("vocab.after-tokenizer-write");
    let empty = std::fs::read_dir(output).map_or(true, |mut entries| entries.next().is_none());
    if empty {
        match mlm_durable::publish_dir(&temp, output) {
            Ok(()) => return Ok(()),
            // Not renamed (`output` was not free after all): the files are moved instead.
            Err(error) if error.operation() == mlm_durable::Operation::Rename => {}
            Err(error) => return Err(CorpusError::durable(error)),
        }
    }
    std::fs::create_dir_all(output).map_err(|e| CorpusError::io("cannot create", output, e))?;
    let (main, others): (Vec<_>, Vec<_>) = written.iter().partition(|n| *n == "tokenizer.json");
    for file in others.into_iter().chain(main) {
        // Each rename made durable before the next: `tokenizer.json` is really last.
        mlm_durable::publish_file(&temp.join(file), &output.join(file))
            .map_err(CorpusError::durable)?;
    }
    std::fs::remove_dir_all(&temp).map_err(|e| CorpusError::io("cannot remove", &temp, e))
}

/// Trains the vocabulary and writes its Hugging Face files into `[vocab] output` (default:
/// `[corpus] tokenizer`): `tokenizer.json`, `vocab.txt` (WordPiece) or `vocab.json` +
/// `merges.txt` (RoBERTa-layout BPE; the ModernBERT layout has `tokenizer.json` only),
/// `tokenizer_config.json` and `special_tokens_map.json`.
pub fn train_vocab(
    corpus: &CorpusConfig,
    vocab: &VocabConfig,
    observer: &dyn Observer,
) -> Result<VocabReport, CorpusError> {
    let started = Instant::now();
    corpus.validate()?;
    vocab.validate()?;
    if vocab.extend_from.is_some() {
        return Err(CorpusError::config(
            "vocab",
            "extend_from",
            "is set: this [vocab] extends a vocabulary, run `mlm-train vocab extend`",
        ));
    }
    let output = vocab.output_dir(corpus)?;
    let files = corpus_files(corpus)?;
    let bytes_total = files.iter().map(|f| f.bytes).sum();
    let counter = ByteCounter::default();
    let mut stream = DocumentStream::open(corpus, files, counter.clone(), observer)?;
    observer.phase("counting words");
    let limit = vocab.max_documents.unwrap_or(u64::MAX);
    let (tx, rx) = sync_channel::<String>(4096);
    let (trained, read) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<(u64, ReadStats), CorpusError> {
            let mut documents = 0u64;
            let mut progress = Progress {
                bytes_total,
                ..Progress::default()
            };
            for doc in stream.by_ref() {
                let doc = doc?;
                if doc.split != Split::Train {
                    continue;
                }
                if documents >= limit {
                    break;
                }
                documents += 1;
                if documents.is_multiple_of(1000) {
                    progress.documents = documents;
                    progress.bytes_read = counter.get();
                    observer.progress(&progress);
                }
                if tx.send(doc.doc.text).is_err() {
                    break;
                }
            }
            drop(tx);
            progress.documents = documents;
            progress.bytes_read = counter.get();
            observer.progress(&progress);
            Ok((documents, stream.stats().clone()))
        });
        let trained = train::train(vocab, rx.into_iter());
        let read = reader
            .join()
            .map_err(|_| CorpusError::Internal("the reader thread panicked".into()));
        (trained, read)
    });
    // A read error explains a failed or partial training better than the trainer's error.
    let (documents, stats) = read??;
    let tokenizer = trained?;
    if documents == 0 {
        return Err(CorpusError::EmptyCorpus {
            message: "no training document to learn a vocabulary from".into(),
        });
    }
    mlm_faults::fault_point("vocab.before-tokenizer-write");
    write_whole(&tokenizer, &output, trained_model_max_length(vocab))?;
    // Reload from disk: the report then describes exactly what was written.
    let tokenizer = DomainTokenizer::load(&output, None)?;
    Ok(VocabReport {
        tokenizer,
        output,
        documents,
        stats,
        elapsed: started.elapsed(),
    })
}
