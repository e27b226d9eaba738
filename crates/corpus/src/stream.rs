//! The document stream of a corpus: every input file in order (held-out inputs first), the
//! bad-record policy, MEDLINE versions, exact-duplicate removal and the train / held-out
//! decision. Each accepted document gets a global ordinal (its place in this stream), which
//! is what a resumed prepare uses to find where it stopped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::config::{BadRecordPolicy, CorpusConfig};
use crate::error::CorpusError;
use crate::hash::{hash64, is_held_out};
use crate::input::medline_versions::{FileVerdicts, resolve_versions};
use crate::input::{
    ByteCounter, Document, DropReason, InputFile, ReaderSettings, Record, RecordReader,
    ResolvedFormat, discover_inputs, open_reader,
};
use crate::progress::Observer;
use crate::split::{Split, Splits};

/// An accepted document.
#[derive(Debug)]
pub struct AcceptedDoc {
    pub ordinal: u64,
    pub split: Split,
    pub doc: Document,
}

/// Per-file counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceCounts {
    /// Records read (documents, dropped and bad).
    pub records: u64,
    /// Documents accepted.
    pub documents: u64,
    /// Records dropped or bad.
    pub dropped: u64,
}

/// Counts of the read stage.
#[derive(Debug, Clone, Default)]
pub struct ReadStats {
    pub records: u64,
    pub accepted: Splits<u64>,
    pub dropped: BTreeMap<String, u64>,
    pub per_source: Vec<SourceCounts>,
}

impl ReadStats {
    fn drop(&mut self, source: usize, reason: &str) {
        *self.dropped.entry(reason.to_string()).or_default() += 1;
        self.per_source[source].dropped += 1;
    }
}

/// The input files of a config: held-out inputs first, then training inputs.
pub fn corpus_files(config: &CorpusConfig) -> Result<Vec<InputFile>, CorpusError> {
    let mut seen = HashSet::new();
    let mut files = discover_inputs(&config.validation_inputs, config.format, true, &mut seen)?;
    files.extend(discover_inputs(
        &config.inputs,
        config.format,
        false,
        &mut seen,
    )?);
    Ok(files)
}

/// How many warnings of skipped records are reported one by one (all are counted).
const MAX_WARNINGS: u64 = 20;

pub struct DocumentStream<'a> {
    files: Vec<InputFile>,
    verdicts: Vec<Option<Arc<FileVerdicts>>>,
    settings: ReaderSettings,
    policy: BadRecordPolicy,
    fraction: f64,
    split_seed: u64,
    counter: ByteCounter,
    current: Option<(usize, Box<dyn RecordReader>)>,
    next_file: usize,
    dedup: Option<HashSet<u64>>,
    held_ids: HashSet<u64>,
    ordinal: u64,
    stats: ReadStats,
    warnings: u64,
    observer: &'a dyn Observer,
    failed: bool,
}

impl<'a> DocumentStream<'a> {
    /// Opens the stream; with MEDLINE inputs this runs the version pass first.
    pub fn open(
        config: &CorpusConfig,
        files: Vec<InputFile>,
        counter: ByteCounter,
        observer: &'a dyn Observer,
    ) -> Result<Self, CorpusError> {
        let verdicts = if files.iter().any(|f| f.format == ResolvedFormat::Medline) {
            observer.phase("scanning MEDLINE versions and deletions");
            resolve_versions(&files, config.on_bad_record, &counter)?
        } else {
            vec![None; files.len()]
        };
        let stats = ReadStats {
            per_source: vec![SourceCounts::default(); files.len()],
            ..ReadStats::default()
        };
        Ok(Self {
            files,
            verdicts,
            settings: ReaderSettings::from_config(config),
            policy: config.on_bad_record,
            fraction: config.effective_validation_fraction(),
            split_seed: config.split_seed,
            counter,
            current: None,
            next_file: 0,
            dedup: config.deduplicate.then(HashSet::new),
            held_ids: HashSet::new(),
            ordinal: 0,
            stats,
            warnings: 0,
            observer,
            failed: false,
        })
    }

    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    pub fn files(&self) -> &[InputFile] {
        &self.files
    }

    fn accept(&mut self, source: usize, doc: Document) -> Option<AcceptedDoc> {
        if doc.text.trim().is_empty() {
            self.stats.drop(source, DropReason::Empty.as_str());
            return None;
        }
        if let Some(seen) = &mut self.dedup
            && !seen.insert(hash64(b"mlm-corpus dedup v1\0", doc.text.as_bytes()))
        {
            self.stats.drop(source, DropReason::Duplicate.as_str());
            return None;
        }
        let id_key = hash64(b"mlm-corpus id v1\0", doc.id.as_bytes());
        let split = if self.files[source].held_out {
            self.held_ids.insert(id_key);
            Split::Validation
        } else if self.held_ids.contains(&id_key) {
            self.stats.drop(source, DropReason::InValidation.as_str());
            return None;
        } else if is_held_out(&doc.id, self.split_seed, self.fraction) {
            Split::Validation
        } else {
            Split::Train
        };
        *self.stats.accepted.get_mut(split) += 1;
        self.stats.per_source[source].documents += 1;
        let ordinal = self.ordinal;
        self.ordinal += 1;
        Some(AcceptedDoc {
            ordinal,
            split,
            doc,
        })
    }

    fn next_doc(&mut self) -> Option<Result<AcceptedDoc, CorpusError>> {
        loop {
            if self.current.is_none() {
                if self.next_file >= self.files.len() {
                    return None;
                }
                let index = self.next_file;
                self.next_file += 1;
                let reader = open_reader(
                    &self.files[index],
                    &self.settings,
                    &self.counter,
                    self.verdicts[index].clone(),
                );
                self.current = Some((index, reader));
            }
            let (source, reader) = self.current.as_mut().expect("set above");
            let source = *source;
            match reader.next_record() {
                None => self.current = None,
                Some(Ok(Record::Doc(doc))) => {
                    self.stats.records += 1;
                    self.stats.per_source[source].records += 1;
                    if let Some(accepted) = self.accept(source, doc) {
                        return Some(Ok(accepted));
                    }
                }
                Some(Ok(Record::Dropped(reason))) => {
                    self.stats.records += 1;
                    self.stats.per_source[source].records += 1;
                    self.stats.drop(source, reason.as_str());
                }
                Some(Err(bad)) => {
                    self.stats.records += 1;
                    self.stats.per_source[source].records += 1;
                    let path = self.files[source].path.clone();
                    if bad.ends_file {
                        self.current = None;
                    }
                    match self.policy {
                        BadRecordPolicy::Fail => return Some(Err(bad.into_error(&path))),
                        BadRecordPolicy::Skip => {
                            self.stats.drop(source, bad.kind.as_str());
                            self.warnings += 1;
                            if self.warnings <= MAX_WARNINGS {
                                let mut message = format!(
                                    "skipped {}: {}: {}: {}",
                                    path.display(),
                                    bad.location,
                                    bad.kind.as_str(),
                                    bad.message
                                );
                                if self.warnings == MAX_WARNINGS {
                                    message.push_str(" (further skips are only counted)");
                                }
                                self.observer.warning(&message);
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Iterator for DocumentStream<'_> {
    type Item = Result<AcceptedDoc, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_doc();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}
