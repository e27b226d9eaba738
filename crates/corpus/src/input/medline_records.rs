//! The byte scanner that cuts a MEDLINE XML stream into its top-level records
//! (`PubmedArticle`, `PubmedBookArticle`, `DeleteCitation`) and finds their PMIDs without
//! parsing them: shared by the reader (`medline.rs`, which parses each record on its own) and
//! the version resolution (`medline_versions.rs`, which only needs the PMIDs).

use std::io::BufRead;

use super::BadRecord;
use crate::error::BadRecordKind;

/// The kinds of top-level records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Article,
    Book,
    Delete,
}

impl RecordKind {
    fn name(self) -> &'static [u8] {
        match self {
            Self::Article => b"PubmedArticle",
            Self::Book => b"PubmedBookArticle",
            Self::Delete => b"DeleteCitation",
        }
    }
}

/// One top-level record's bytes and where it starts.
#[derive(Debug)]
pub struct RawRecord {
    pub kind: RecordKind,
    pub bytes: Vec<u8>,
    /// 1-based number of the record in the file (all kinds counted).
    pub number: u64,
    /// 1-based line of its start tag.
    pub line: u64,
}

impl RawRecord {
    pub fn location(&self) -> String {
        format!("record {} (line {})", self.number, self.line)
    }
}

const CHUNK: usize = 256 * 1024;

/// Cuts an XML stream into top-level records without parsing what lies between them.
pub struct RecordSplitter {
    stream: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    pos: usize,
    /// Line number at `buf[pos]`.
    line: u64,
    eof: bool,
    records: u64,
    failed: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        if hay.len() - at < needle.len() {
            return None;
        }
        from = at + 1;
    }
    None
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl RecordSplitter {
    pub fn new(stream: Box<dyn BufRead + Send>) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            pos: 0,
            line: 1,
            eof: false,
            records: 0,
            failed: false,
        }
    }

    /// Moves `pos` to `to`, counting lines on the way.
    fn advance(&mut self, to: usize) {
        self.line += count_lines(&self.buf[self.pos..to]);
        self.pos = to;
    }

    /// Appends the next chunk of the stream to `buf` (dropping consumed bytes first).
    fn fill(&mut self) -> Result<(), BadRecord> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut appended = 0;
        while appended < CHUNK {
            let available = match self.stream.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(BadRecord::read_error(
                        format!("after record {}", self.records),
                        e,
                    ));
                }
            };
            if available.is_empty() {
                self.eof = true;
                break;
            }
            let n = available.len();
            self.buf.extend_from_slice(available);
            self.stream.consume(n);
            appended += n;
        }
        Ok(())
    }

    fn next_raw(&mut self) -> Result<Option<RawRecord>, BadRecord> {
        loop {
            let Some(offset) = self.buf[self.pos..].iter().position(|&b| b == b'<') else {
                self.advance(self.buf.len());
                if self.eof {
                    return Ok(None);
                }
                self.fill()?;
                continue;
            };
            let start = self.pos + offset;
            // Enough bytes to read the longest tag name we look for and the byte after it.
            if self.buf.len() - start < 20 && !self.eof {
                self.advance(start);
                self.fill()?;
                continue;
            }
            let tag = &self.buf[start + 1..];
            let kind = [RecordKind::Article, RecordKind::Book, RecordKind::Delete]
                .into_iter()
                .find(|k| {
                    let name = k.name();
                    tag.starts_with(name)
                        && tag
                            .get(name.len())
                            .is_some_and(|&b| b == b'>' || b == b'/' || b.is_ascii_whitespace())
                });
            let Some(kind) = kind else {
                self.advance(start + 1);
                continue;
            };
            self.advance(start);
            self.records += 1;
            let number = self.records;
            let line = self.line;
            let mut close = b"</".to_vec();
            close.extend_from_slice(kind.name());
            close.push(b'>');
            let mut searched = 0;
            loop {
                if let Some(i) = find(&self.buf[self.pos + searched..], &close) {
                    let end = self.pos + searched + i + close.len();
                    let bytes = self.buf[self.pos..end].to_vec();
                    self.advance(end);
                    return Ok(Some(RawRecord {
                        kind,
                        bytes,
                        number,
                        line,
                    }));
                }
                if self.eof {
                    return Err(BadRecord::new(
                        BadRecordKind::MalformedXml,
                        format!("record {number} (line {line})"),
                        format!(
                            "<{}> is not closed before the end of the file (truncated file?)",
                            String::from_utf8_lossy(kind.name())
                        ),
                    )
                    .ending_file());
                }
                searched = (self.buf.len() - self.pos).saturating_sub(close.len());
                self.fill()?;
            }
        }
    }
}

impl Iterator for RecordSplitter {
    type Item = Result<RawRecord, BadRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_raw() {
            Ok(r) => r.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The PMID of an article record: the first `<PMID>` element, which the MEDLINE DTD puts
/// first in `MedlineCitation` (references elsewhere in the record come after it).
pub fn first_pmid(bytes: &[u8]) -> Option<u64> {
    let at = find(bytes, b"<PMID")?;
    pmid_after(&bytes[at..])
}

/// All PMIDs of a `DeleteCitation` record.
pub fn all_pmids(bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(at) = find(rest, b"<PMID") {
        if let Some(p) = pmid_after(&rest[at..]) {
            out.push(p);
        }
        rest = &rest[at + 5..];
    }
    out
}

/// Parses `<PMID ...>digits</PMID>` at the start of `bytes`.
fn pmid_after(bytes: &[u8]) -> Option<u64> {
    let gt = bytes.iter().position(|&b| b == b'>')?;
    if bytes
        .get(5)
        .is_some_and(|&b| b != b'>' && !b.is_ascii_whitespace())
    {
        return None; // e.g. <PMIDList>
    }
    let digits = &bytes[gt + 1..];
    let digits = &digits[..digits.iter().position(|&b| b == b'<')?];
    std::str::from_utf8(digits).ok()?.trim().parse().ok()
}
