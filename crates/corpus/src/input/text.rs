//! Plain text: a document per non-blank line (run_mlm's `line_by_line`, which also skips
//! blank lines), or paragraphs separated by blank lines. Ids are content hashes.

use std::io::BufRead;

use super::{BadRecord, Document, Record, RecordReader, trim_line_end};
use crate::config::TextMode;
use crate::error::BadRecordKind;
use crate::hash::content_id;

pub struct TextReader {
    stream: Box<dyn BufRead + Send>,
    mode: TextMode,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl TextReader {
    pub fn new(stream: Box<dyn BufRead + Send>, mode: TextMode) -> Self {
        Self {
            stream,
            mode,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next line without its line end; `Ok(None)` at the end of the file.
    fn next_line(&mut self) -> Result<Option<Result<&str, BadRecord>>, BadRecord> {
        self.buf.clear();
        let n = self
            .stream
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| BadRecord::read_error(format!("after line {}", self.line), e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        Ok(Some(std::str::from_utf8(trim_line_end(&self.buf)).map_err(
            |e| {
                BadRecord::new(
                    BadRecordKind::InvalidUtf8,
                    format!("line {line}"),
                    format!("invalid UTF-8: {e}"),
                )
            },
        )))
    }

    fn next_line_document(&mut self) -> Option<Result<Record, BadRecord>> {
        loop {
            match self.next_line() {
                Err(bad) => return Some(Err(bad)),
                Ok(None) => return None,
                Ok(Some(Err(bad))) => return Some(Err(bad)),
                Ok(Some(Ok(line))) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let text = line.to_string();
                    return Some(Ok(Record::Doc(Document {
                        id: content_id(&text),
                        text,
                    })));
                }
            }
        }
    }

    fn next_paragraph(&mut self) -> Option<Result<Record, BadRecord>> {
        let mut text = String::new();
        let mut bad: Option<BadRecord> = None;
        loop {
            let line = match self.next_line() {
                Err(e) => return Some(Err(e)),
                Ok(line) => line,
            };
            match line {
                None => break,
                Some(Ok(l)) if l.trim().is_empty() => {
                    if !text.is_empty() || bad.is_some() {
                        break;
                    }
                }
                Some(Ok(l)) => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(l);
                }
                // The whole paragraph is the bad record; report its first bad line.
                Some(Err(e)) => {
                    bad.get_or_insert(e);
                }
            }
        }
        if let Some(bad) = bad {
            return Some(Err(bad));
        }
        if text.is_empty() {
            return None;
        }
        Some(Ok(Record::Doc(Document {
            id: content_id(&text),
            text,
        })))
    }
}

impl RecordReader for TextReader {
    fn next_record(&mut self) -> Option<Result<Record, BadRecord>> {
        if self.done {
            return None;
        }
        let record = match self.mode {
            TextMode::Line => self.next_line_document(),
            TextMode::Paragraph => self.next_paragraph(),
        };
        match &record {
            None
            | Some(Err(BadRecord {
                ends_file: true, ..
            })) => self.done = true,
            _ => {}
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], mode: TextMode) -> Vec<Result<String, String>> {
        let mut r = TextReader::new(Box::new(std::io::Cursor::new(bytes.to_vec())), mode);
        std::iter::from_fn(|| r.next_record())
            .map(|x| match x {
                Ok(Record::Doc(d)) => Ok(d.text),
                Ok(Record::Dropped(r)) => Err(r.as_str().to_string()),
                Err(b) => Err(format!("{} {}", b.kind.as_str(), b.location)),
            })
            .collect()
    }

    #[test]
    fn lines_skip_blank_lines_and_crlf() {
        let got = read_all(b"one\r\n\n  \ntwo\nthree", TextMode::Line);
        assert_eq!(
            got,
            [Ok("one".into()), Ok("two".into()), Ok("three".into())]
        );
    }

    #[test]
    fn paragraphs_join_lines() {
        let got = read_all(b"\n\na b\nc\n\n\nd\n", TextMode::Paragraph);
        assert_eq!(got, [Ok("a b\nc".into()), Ok("d".into())]);
    }

    #[test]
    fn invalid_utf8_names_the_line_and_reading_goes_on() {
        let got = read_all(b"ok\nbad \xff\nafter\n", TextMode::Line);
        assert_eq!(
            got,
            [
                Ok("ok".into()),
                Err("invalid_utf8 line 2".into()),
                Ok("after".into())
            ]
        );
        let got = read_all(b"p1\n\nbad \xff\nstill p2\n\np3\n", TextMode::Paragraph);
        assert_eq!(
            got,
            [
                Ok("p1".into()),
                Err("invalid_utf8 line 3".into()),
                Ok("p3".into())
            ]
        );
    }
}
