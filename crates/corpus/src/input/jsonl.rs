//! JSONL: one JSON object per line; the configured text fields are joined with
//! `field_separator` (empty fields skipped), the id field (string or integer) is the id.

use std::io::BufRead;

use serde_json::Value;

use super::{BadRecord, Document, ReaderSettings, Record, RecordReader, trim_line_end};
use crate::error::BadRecordKind;
use crate::hash::content_id;

pub struct JsonlReader {
    stream: Box<dyn BufRead + Send>,
    text_fields: Vec<String>,
    separator: String,
    id_field: Option<String>,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl JsonlReader {
    pub fn new(stream: Box<dyn BufRead + Send>, settings: &ReaderSettings) -> Self {
        Self {
            stream,
            text_fields: settings.text_fields.clone(),
            separator: settings.field_separator.clone(),
            id_field: settings.id_field.clone(),
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    fn read(&mut self) -> Option<Result<Record, BadRecord>> {
        loop {
            self.buf.clear();
            match self.stream.read_until(b'\n', &mut self.buf) {
                Err(e) => {
                    return Some(Err(BadRecord::read_error(
                        format!("after line {}", self.line),
                        e,
                    )));
                }
                Ok(0) => return None,
                Ok(_) => {}
            }
            self.line += 1;
            let location = format!("line {}", self.line);
            let line = match std::str::from_utf8(trim_line_end(&self.buf)) {
                Ok(line) => line,
                Err(e) => {
                    return Some(Err(BadRecord::new(
                        BadRecordKind::InvalidUtf8,
                        location,
                        format!("invalid UTF-8: {e}"),
                    )));
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(
                parse_record(
                    line,
                    &self.text_fields,
                    &self.separator,
                    self.id_field.as_deref(),
                )
                .map_err(|(kind, message, source)| {
                    let bad = BadRecord::new(kind, location, message);
                    match source {
                        Some(source) => bad.with_source(source),
                        None => bad,
                    }
                }),
            );
        }
    }
}

type ParseError = (BadRecordKind, String, Option<serde_json::Error>);

/// Parses one JSONL line into a document.
pub fn parse_record(
    line: &str,
    text_fields: &[String],
    separator: &str,
    id_field: Option<&str>,
) -> Result<Record, ParseError> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        (
            BadRecordKind::MalformedJson,
            format!("malformed JSON: {e}"),
            Some(e),
        )
    })?;
    let Value::Object(object) = value else {
        return Err((
            BadRecordKind::MalformedJson,
            "not a JSON object".to_string(),
            None,
        ));
    };
    let mut text = String::new();
    for field in text_fields {
        match object.get(field) {
            Some(Value::String(s)) => {
                if s.trim().is_empty() {
                    continue;
                }
                if !text.is_empty() {
                    text.push_str(separator);
                }
                text.push_str(s);
            }
            None | Some(Value::Null) => {
                return Err((
                    BadRecordKind::MissingField,
                    format!("missing text field `{field}`"),
                    None,
                ));
            }
            Some(other) => {
                return Err((
                    BadRecordKind::MissingField,
                    format!(
                        "text field `{field}` is not a string but {}",
                        kind_of(other)
                    ),
                    None,
                ));
            }
        }
    }
    let id = match id_field {
        None => content_id(&text),
        Some(field) => match object.get(field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            None | Some(Value::Null) => {
                return Err((
                    BadRecordKind::MissingField,
                    format!("missing id field `{field}`"),
                    None,
                ));
            }
            Some(other) => {
                return Err((
                    BadRecordKind::MissingField,
                    format!(
                        "id field `{field}` is not a string or integer but {}",
                        kind_of(other)
                    ),
                    None,
                ));
            }
        },
    };
    Ok(Record::Doc(Document { id, text }))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl RecordReader for JsonlReader {
    fn next_record(&mut self) -> Option<Result<Record, BadRecord>> {
        if self.done {
            return None;
        }
        let record = self.read();
        if super::is_last_record(&record) {
            self.done = true;
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(id: Option<&str>) -> ReaderSettings {
        ReaderSettings {
            text_mode: crate::config::TextMode::Line,
            text_fields: vec!["title".into(), "abstract".into()],
            field_separator: " ".into(),
            id_field: id.map(String::from),
        }
    }

    fn read_all(bytes: &[u8], id: Option<&str>) -> Vec<Result<(String, String), String>> {
        let mut r = JsonlReader::new(
            Box::new(std::io::Cursor::new(bytes.to_vec())),
            &settings(id),
        );
        std::iter::from_fn(|| r.next_record())
            .map(|x| match x {
                Ok(Record::Doc(d)) => Ok((d.id, d.text)),
                Ok(Record::Dropped(r)) => Err(r.as_str().to_string()),
                Err(b) => Err(format!("{} {}: {}", b.kind.as_str(), b.location, b.message)),
            })
            .collect()
    }

    #[test]
    fn fields_join_and_ids_are_read() {
        let got = read_all(
            b"{\"pmid\": 7, \"title\": \"T.\", \"abstract\": \"A b.\"}\n\n{\"pmid\": \"x\", \"title\": \"\", \"abstract\": \"only\"}\n",
            Some("pmid"),
        );
        assert_eq!(
            got,
            [
                Ok(("7".into(), "T. A b.".into())),
                Ok(("x".into(), "only".into()))
            ]
        );
        let got = read_all(b"{\"title\": \"a\", \"abstract\": \"b\"}", None);
        assert_eq!(got, [Ok((content_id("a b"), "a b".into()))]);
    }

    #[test]
    fn bad_lines_are_named() {
        let got = read_all(
            b"{\"title\": \"a\", \"abstract\": \"b\"}\n{\"title\": \"a\",\n{\"title\": \"a\"}\n[1]\n{\"title\": 3, \"abstract\": \"b\"}\n\xff\n",
            None,
        );
        let kinds: Vec<String> = got
            .iter()
            .map(|r| match r {
                Ok(_) => "ok".to_string(),
                Err(e) => e.split(':').next().unwrap().to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ok",
                "malformed_json line 2",
                "missing_field line 3",
                "malformed_json line 4",
                "missing_field line 5",
                "invalid_utf8 line 6"
            ]
        );
        assert!(got[2].as_ref().unwrap_err().contains("`abstract`"));
    }
}
