//! Streaming readers of the input formats. Each reader yields one [`Record`] at a time from
//! one file; gzip is detected by its magic bytes, so `.gz` and plain files read alike.

pub mod discover;
pub mod jsonl;
pub mod medline;
pub mod medline_records;
pub mod medline_versions;
pub mod parquet_in;
pub mod text;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{BadRecordKind, BoxError};

pub use discover::{InputFile, discover_inputs};

/// A document as read: its id (the configured id field, the PMID, or a content hash) and
/// its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub text: String,
}

/// Why a record read without error is not a document. The snake_case name is its key in
/// the manifest's `documents.dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// A MEDLINE record without an abstract.
    NoAbstract,
    /// A MEDLINE record replaced by a later version of the same PMID.
    Superseded,
    /// A MEDLINE record removed by a later `DeleteCitation`.
    Deleted,
    /// A `PubmedBookArticle` (book chapters are not journal abstracts).
    BookArticle,
    /// Text equal to an earlier document's (`deduplicate = true`).
    Duplicate,
    /// A training document whose id is also in `validation_inputs`.
    InValidation,
    /// No text, or text that tokenizes to no token.
    Empty,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAbstract => "no_abstract",
            Self::Superseded => "superseded",
            Self::Deleted => "deleted",
            Self::BookArticle => "book_article",
            Self::Duplicate => "duplicate",
            Self::InValidation => "in_validation",
            Self::Empty => "empty",
        }
    }
}

/// One item of an input file.
#[derive(Debug)]
pub enum Record {
    Doc(Document),
    Dropped(DropReason),
}

/// A bad record: what is wrong and where. `ends_file` is set when nothing after it in the
/// file can be read (truncated gzip, I/O error, unreadable file).
#[derive(Debug)]
pub struct BadRecord {
    pub kind: BadRecordKind,
    pub location: String,
    pub message: String,
    pub source: Option<BoxError>,
    pub ends_file: bool,
}

/// Whether a reader's `record` is its last: the end of its input, or an error after which
/// nothing more of the file can be read (`ends_file`). Readers stop there for good.
pub(crate) fn is_last_record(record: &Option<Result<Record, BadRecord>>) -> bool {
    matches!(
        record,
        None | Some(Err(BadRecord {
            ends_file: true,
            ..
        }))
    )
}

impl BadRecord {
    pub fn new(
        kind: BadRecordKind,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            location: location.into(),
            message: message.into(),
            source: None,
            ends_file: false,
        }
    }

    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn ending_file(mut self) -> Self {
        self.ends_file = true;
        self
    }

    /// A read error after `location`: the rest of the file is lost.
    pub fn read_error(location: impl Into<String>, error: std::io::Error) -> Self {
        let message = if error.kind() == std::io::ErrorKind::UnexpectedEof {
            "the file ends early (truncated gzip stream?)".to_string()
        } else {
            format!("read error: {error}")
        };
        Self::new(BadRecordKind::TruncatedFile, location, message)
            .with_source(error)
            .ending_file()
    }

    /// The error this record becomes under `on_bad_record = "fail"`.
    pub fn into_error(self, path: &Path) -> crate::CorpusError {
        crate::CorpusError::BadRecord {
            path: path.to_path_buf(),
            location: self.location,
            kind: self.kind,
            message: self.message,
            source: self.source,
        }
    }
}

/// A reader of one input file.
pub trait RecordReader: Send {
    /// The next record; `None` at the end of the file (and after a record with `ends_file`).
    fn next_record(&mut self) -> Option<Result<Record, BadRecord>>;
}

/// Counts the (compressed) bytes read from files, for progress and ETA.
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct CountingReader<R> {
    inner: R,
    counter: ByteCounter,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// Size of read buffers: large enough that system calls and gzip block handling amortise.
const READ_BUFFER: usize = 256 * 1024;

/// Opens `path` for streaming, decompressing gzip (detected by its magic bytes; multi-member
/// streams such as `cat a.gz b.gz` included).
pub fn open_stream(path: &Path, counter: &ByteCounter) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut file, &mut magic)?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    let counting = CountingReader {
        inner: file,
        counter: counter.clone(),
    };
    if n == 2 && magic == [0x1f, 0x8b] {
        let decoder =
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER, counting));
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, decoder)))
    } else {
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, counting)))
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Splits `buf` at line ends: removes a trailing `\n` and `\r\n`.
pub(crate) fn trim_line_end(buf: &[u8]) -> &[u8] {
    let buf = buf.strip_suffix(b"\n").unwrap_or(buf);
    buf.strip_suffix(b"\r").unwrap_or(buf)
}

/// A reader that yields nothing but one bad record (an unreadable file).
pub(crate) struct FailedReader(pub Option<BadRecord>);

impl RecordReader for FailedReader {
    fn next_record(&mut self) -> Option<Result<Record, BadRecord>> {
        self.0.take().map(Err)
    }
}

/// Opens the reader of `input`'s format. An unreadable file becomes a reader yielding one
/// `unreadable_file` bad record, so that the skip / fail policy applies to it too.
pub fn open_reader(
    input: &InputFile,
    settings: &ReaderSettings,
    counter: &ByteCounter,
    medline_keep: Option<Arc<medline_versions::FileVerdicts>>,
) -> Box<dyn RecordReader> {
    let unreadable = |e: &dyn std::fmt::Display| -> Box<dyn RecordReader> {
        Box::new(FailedReader(Some(
            BadRecord::new(
                BadRecordKind::UnreadableFile,
                "open",
                format!("cannot open: {e}"),
            )
            .ending_file(),
        )))
    };
    match input.format {
        ResolvedFormat::Parquet => {
            match parquet_in::ParquetReader::open(&input.path, settings, counter) {
                Ok(r) => Box::new(r),
                Err(bad) => Box::new(FailedReader(Some(bad))),
            }
        }
        format => match open_stream(&input.path, counter) {
            Err(e) => unreadable(&e),
            Ok(stream) => match format {
                ResolvedFormat::Text => Box::new(text::TextReader::new(stream, settings.text_mode)),
                ResolvedFormat::Jsonl => Box::new(jsonl::JsonlReader::new(stream, settings)),
                ResolvedFormat::Medline => Box::new(medline::MedlineReader::new(
                    stream,
                    settings.field_separator.clone(),
                    medline_keep,
                )),
                ResolvedFormat::Parquet => unreachable!("handled above"),
            },
        },
    }
}

/// A concrete format (after `auto` detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedFormat {
    Text,
    Jsonl,
    Parquet,
    Medline,
}

/// Reader settings taken from `[corpus]`.
#[derive(Debug, Clone)]
pub struct ReaderSettings {
    pub text_mode: crate::config::TextMode,
    pub text_fields: Vec<String>,
    pub field_separator: String,
    pub id_field: Option<String>,
}

impl ReaderSettings {
    pub fn from_config(config: &crate::config::CorpusConfig) -> Self {
        Self {
            text_mode: config.text_mode,
            text_fields: config.text_fields.clone(),
            field_separator: config.field_separator.clone(),
            id_field: config.id_field.clone(),
        }
    }
}
