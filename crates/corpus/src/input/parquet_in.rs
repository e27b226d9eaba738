//! Parquet input: the configured text columns (joined with `field_separator`) and an optional
//! id column (string or integer), read a record batch at a time.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{BadRecord, ByteCounter, Document, ReaderSettings, Record, RecordReader};
use crate::error::BadRecordKind;
use crate::hash::content_id;
use crate::shard::check_column_chunks;
use crate::untrusted::guarded;

const BATCH_ROWS: usize = 1024;

pub struct ParquetReader {
    batches: ParquetRecordBatchReader,
    text_fields: Vec<String>,
    separator: String,
    id_field: Option<String>,
    /// Decoded columns of the current batch (text columns, then the id column).
    texts: Vec<ArrayRef>,
    ids: Option<ArrayRef>,
    next_in_batch: usize,
    batch_rows: usize,
    row: u64,
    total_rows: u64,
    file_bytes: u64,
    counted_bytes: u64,
    counter: ByteCounter,
    done: bool,
}

fn malformed(location: impl Into<String>, e: impl std::fmt::Display) -> BadRecord {
    BadRecord::new(BadRecordKind::MalformedParquet, location, e.to_string())
}

/// Runs `decode` (a call into the parquet crate), turning a panic into a `malformed_parquet`
/// record that ends the file ([`guarded`]: parquet still panics on some corrupt pages).
fn without_panic<T>(location: &str, decode: impl FnOnce() -> T) -> Result<T, BadRecord> {
    guarded(decode).map_err(|message| {
        malformed(location, format!("the Parquet decoder failed: {message}")).ending_file()
    })
}

impl ParquetReader {
    pub fn open(
        path: &Path,
        settings: &ReaderSettings,
        counter: &ByteCounter,
    ) -> Result<Self, BadRecord> {
        let file = File::open(path).map_err(|e| {
            BadRecord::new(
                BadRecordKind::UnreadableFile,
                "open",
                format!("cannot open: {e}"),
            )
            .with_source(e)
            .ending_file()
        })?;
        let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let builder = without_panic("footer", || ParquetRecordBatchReaderBuilder::try_new(file))?
            .map_err(|e| malformed("footer", &e).with_source(e).ending_file())?;
        check_column_chunks(builder.metadata(), file_bytes)
            .map_err(|e| malformed("footer", e).ending_file())?;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        let wanted = settings.text_fields.iter().chain(settings.id_field.iter());
        for name in wanted {
            let Some((index, field)) = schema.column_with_name(name) else {
                return Err(BadRecord::new(
                    BadRecordKind::MissingField,
                    "schema",
                    format!(
                        "no column `{name}` (columns: {})",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .ending_file());
            };
            if matches!(
                field.data_type(),
                DataType::List(_) | DataType::Struct(_) | DataType::Map(_, _)
            ) {
                return Err(BadRecord::new(
                    BadRecordKind::MissingField,
                    "schema",
                    format!("column `{name}` is {} , not text", field.data_type()),
                )
                .ending_file());
            }
            roots.push(index);
        }
        let total_rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let batches = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| malformed("footer", &e).with_source(e).ending_file())?;
        Ok(Self {
            batches,
            text_fields: settings.text_fields.clone(),
            separator: settings.field_separator.clone(),
            id_field: settings.id_field.clone(),
            texts: Vec::new(),
            ids: None,
            next_in_batch: 0,
            batch_rows: 0,
            row: 0,
            total_rows,
            file_bytes,
            counted_bytes: 0,
            counter: counter.clone(),
            done: false,
        })
    }

    fn load_batch(&mut self) -> Option<Result<(), BadRecord>> {
        let location = format!("after row {}", self.row);
        let next = without_panic(&location, || self.batches.next());
        let batch = match next {
            Err(bad) => return Some(Err(bad)),
            Ok(next) => next?,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                return Some(Err(malformed(format!("after row {}", self.row), &e)
                    .with_source(e)
                    .ending_file()));
            }
        };
        let to_text = |name: &str| -> Result<ArrayRef, BadRecord> {
            let column = batch.column_by_name(name).ok_or_else(|| {
                malformed("schema", format!("column `{name}` vanished")).ending_file()
            })?;
            arrow::compute::cast(column, &DataType::Utf8).map_err(|e| {
                malformed(format!("column `{name}`"), &e)
                    .with_source(e)
                    .ending_file()
            })
        };
        let mut texts = Vec::with_capacity(self.text_fields.len());
        for name in &self.text_fields {
            match to_text(name) {
                Ok(a) => texts.push(a),
                Err(e) => return Some(Err(e)),
            }
        }
        self.ids = match self.id_field.as_deref().map(to_text).transpose() {
            Ok(ids) => ids,
            Err(e) => return Some(Err(e)),
        };
        self.texts = texts;
        self.batch_rows = batch.num_rows();
        self.next_in_batch = 0;
        Some(Ok(()))
    }

    fn report_bytes(&mut self) {
        if self.total_rows > 0 {
            let done = (u128::from(self.file_bytes) * u128::from(self.row.min(self.total_rows))
                / u128::from(self.total_rows)) as u64;
            self.counter.add(done.saturating_sub(self.counted_bytes));
            self.counted_bytes = self.counted_bytes.max(done);
        }
    }

    fn read(&mut self) -> Option<Result<Record, BadRecord>> {
        while self.next_in_batch >= self.batch_rows {
            if let Err(e) = self.load_batch()? {
                return Some(Err(e));
            }
        }
        let i = self.next_in_batch;
        self.next_in_batch += 1;
        self.row += 1;
        if self.next_in_batch == self.batch_rows {
            self.report_bytes();
        }
        let location = format!("row {}", self.row);
        let mut text = String::new();
        for (name, column) in self.text_fields.iter().zip(&self.texts) {
            if column.is_null(i) {
                return Some(Err(BadRecord::new(
                    BadRecordKind::MissingField,
                    location,
                    format!("text column `{name}` is null"),
                )));
            }
            let s = column.as_string::<i32>().value(i);
            if s.trim().is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push_str(&self.separator);
            }
            text.push_str(s);
        }
        let id = match (&self.ids, self.id_field.as_deref()) {
            (Some(ids), Some(name)) => {
                if ids.is_null(i) {
                    return Some(Err(BadRecord::new(
                        BadRecordKind::MissingField,
                        location,
                        format!("id column `{name}` is null"),
                    )));
                }
                ids.as_string::<i32>().value(i).to_string()
            }
            _ => content_id(&text),
        };
        Some(Ok(Record::Doc(Document { id, text })))
    }
}

impl RecordReader for ParquetReader {
    fn next_record(&mut self) -> Option<Result<Record, BadRecord>> {
        if self.done {
            return None;
        }
        let record = self.read();
        if super::is_last_record(&record) {
            self.done = true;
            self.report_bytes();
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowWriter;

    use super::*;

    #[test]
    fn reads_text_and_integer_ids_and_flags_nulls() {
        let dir = std::env::temp_dir().join(format!("mlm-corpus-pq-in-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("other", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3)])),
                Arc::new(StringArray::from(vec![Some("hello"), None, Some("world")])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y"), Some("z")])),
            ],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let settings = ReaderSettings {
            text_mode: crate::config::TextMode::Line,
            text_fields: vec!["text".into()],
            field_separator: " ".into(),
            id_field: Some("id".into()),
        };
        let counter = ByteCounter::default();
        let mut r = ParquetReader::open(&path, &settings, &counter).unwrap();
        let got: Vec<String> = std::iter::from_fn(|| r.next_record())
            .map(|x| match x {
                Ok(Record::Doc(d)) => format!("{}={}", d.id, d.text),
                Ok(Record::Dropped(r)) => r.as_str().to_string(),
                Err(b) => format!("{} {}", b.kind.as_str(), b.location),
            })
            .collect();
        assert_eq!(got, ["1=hello", "missing_field row 2", "3=world"]);
        assert_eq!(counter.get(), std::fs::metadata(&path).unwrap().len());
        let bad = ReaderSettings {
            text_fields: vec!["body".into()],
            ..settings
        };
        let err = ParquetReader::open(&path, &bad, &counter).err().unwrap();
        assert!(err.message.contains("no column `body`"), "{}", err.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
