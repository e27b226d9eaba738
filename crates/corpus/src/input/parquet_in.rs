//! Parquet input: the configured text columns (strings, joined with `field_separator`) and an
//! optional id column (string or integer), read a record batch at a time. A text column of
//! another type is refused when the file is opened, naming the column and its type.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Schema};
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

/// The top-level column `name` of `schema`, or a `missing_field` record listing the columns.
fn find_column<'s>(schema: &'s Schema, name: &str) -> Result<(usize, &'s Field), BadRecord> {
    schema.column_with_name(name).ok_or_else(|| {
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        BadRecord::new(
            BadRecordKind::MissingField,
            "schema",
            format!("no column `{name}` (columns: {})", columns.join(", ")),
        )
        .ending_file()
    })
}

/// Whether a column of this type holds text: the string types, plain or dictionary-encoded
/// (pyarrow's `string`, `large_string`, `string_view`, `dictionary<..., string>`).
fn is_string(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_string(values),
        _ => false,
    }
}

/// A text column must hold strings, as a JSONL text field must (`jsonl.rs`): numbers, bytes
/// or lists read as text would prepare a corpus of `"1 3"`s without a word of warning. A
/// column of type `null` (pyarrow's type for a column with no value at all) passes: its rows
/// are null text, refused row by row like nulls in a string column.
fn check_text_type(name: &str, data_type: &DataType) -> Result<(), BadRecord> {
    if is_string(data_type) || *data_type == DataType::Null {
        return Ok(());
    }
    Err(BadRecord::new(
        BadRecordKind::MissingField,
        "schema",
        format!("text column `{name}` is not a string but {data_type}"),
    )
    .ending_file())
}

/// An id column is cast to its text (integer ids are common: PMIDs); only nested types,
/// which have no such text, are refused.
fn check_id_type(name: &str, data_type: &DataType) -> Result<(), BadRecord> {
    if !data_type.is_nested() {
        return Ok(());
    }
    Err(BadRecord::new(
        BadRecordKind::MissingField,
        "schema",
        format!("id column `{name}` is not a string or integer but {data_type}"),
    )
    .ending_file())
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
        for name in &settings.text_fields {
            let (index, field) = find_column(&schema, name)?;
            check_text_type(name, field.data_type())?;
            roots.push(index);
        }
        if let Some(name) = &settings.id_field {
            let (index, field) = find_column(&schema, name)?;
            check_id_type(name, field.data_type())?;
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
        // Text columns are strings (checked at open): the cast only turns large, view and
        // dictionary layouts into plain Utf8. An id column is cast to its text (`123`).
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
    use std::path::PathBuf;
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, DictionaryArray, Float64Array, Int64Array, LargeStringArray,
        ListBuilder, NullArray, RecordBatch, StringArray, StringBuilder, StringViewArray,
    };
    use arrow::datatypes::{Int8Type, Int32Type};
    use parquet::arrow::ArrowWriter;

    use super::*;
    use crate::testutil::TempDir;

    /// Writes `columns` as a Parquet file the way pyarrow does (the Arrow schema stored in the
    /// footer, so that large, view and dictionary strings read back as such).
    fn write_parquet(dir: &TempDir, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
        let path = dir.path().join(name);
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let arrays = columns.into_iter().map(|(_, array)| array).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    fn settings(text_fields: &[&str], id_field: Option<&str>) -> ReaderSettings {
        ReaderSettings {
            text_mode: crate::config::TextMode::Line,
            text_fields: text_fields.iter().map(|f| (*f).to_owned()).collect(),
            field_separator: " ".into(),
            id_field: id_field.map(str::to_owned),
        }
    }

    /// Every record of `path`, as `id=text`, a drop reason or `kind location: message`.
    fn read_all(path: &Path, settings: &ReaderSettings) -> Result<Vec<String>, BadRecord> {
        let mut r = ParquetReader::open(path, settings, &ByteCounter::default())?;
        Ok(std::iter::from_fn(|| r.next_record())
            .map(|x| match x {
                Ok(Record::Doc(d)) => format!("{}={}", d.id, d.text),
                Ok(Record::Dropped(r)) => r.as_str().to_string(),
                Err(b) => format!("{} {}: {}", b.kind.as_str(), b.location, b.message),
            })
            .collect())
    }

    #[test]
    fn reads_text_and_integer_ids_and_flags_nulls() {
        let dir = TempDir::new("pq-in");
        let path = write_parquet(
            &dir,
            "in.parquet",
            vec![
                ("id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
                (
                    "text",
                    Arc::new(StringArray::from(vec![Some("hello"), None, Some("world")])),
                ),
                ("other", Arc::new(StringArray::from(vec!["x", "y", "z"]))),
            ],
        );
        let counter = ByteCounter::default();
        let settings = settings(&["text"], Some("id"));
        let mut r = ParquetReader::open(&path, &settings, &counter).unwrap();
        while r.next_record().is_some() {}
        assert_eq!(counter.get(), std::fs::metadata(&path).unwrap().len());
        assert_eq!(
            read_all(&path, &settings).unwrap(),
            [
                "1=hello",
                "missing_field row 2: text column `text` is null",
                "3=world"
            ]
        );
        let bad = ReaderSettings {
            text_fields: vec!["body".into()],
            ..settings
        };
        let err = ParquetReader::open(&path, &bad, &counter).err().unwrap();
        assert!(err.message.contains("no column `body`"), "{}", err.message);
    }

    /// The Arrow type the reader gets for `column` of `path`.
    fn stored_type(path: &Path, column: &str) -> DataType {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let field = builder.schema().field_with_name(column).unwrap();
        field.data_type().clone()
    }

    /// A list<string> column (`[["a", "b"], ...]`), as pyarrow writes a list of keywords.
    fn string_lists() -> ArrayRef {
        let mut lists = ListBuilder::new(StringBuilder::new());
        for _ in 0..2 {
            lists.values().append_value("a");
            lists.values().append_value("b");
            lists.append(true);
        }
        Arc::new(lists.finish())
    }

    /// The same text in every string layout pyarrow writes, each read as text; every other
    /// type refused when the file is opened, naming the column and its type (as JSONL refuses
    /// `"abstract": 5`), not read as the text of its values (`1`, `[a, b]`).
    #[test]
    fn text_columns_must_hold_strings_of_any_layout() {
        let dir = TempDir::new("pq-types");
        let dictionary = |keys: Vec<i32>| -> ArrayRef {
            let values = StringArray::from(vec!["Aspirin.", "Renal failure."]);
            Arc::new(DictionaryArray::<Int32Type>::try_new(keys.into(), Arc::new(values)).unwrap())
        };
        let large_dictionary: ArrayRef = Arc::new(
            DictionaryArray::<Int8Type>::try_new(
                vec![1i8, 0].into(),
                Arc::new(LargeStringArray::from(vec!["Aspirin.", "Renal failure."])),
            )
            .unwrap(),
        );
        let texts = ["Aspirin.", "Renal failure."];
        let read: Vec<(&str, ArrayRef)> = vec![
            ("string", Arc::new(StringArray::from(texts.to_vec()))),
            (
                "large_string",
                Arc::new(LargeStringArray::from(texts.to_vec())),
            ),
            (
                "string_view",
                Arc::new(StringViewArray::from(texts.to_vec())),
            ),
            ("dictionary", dictionary(vec![0, 1])),
            ("large_dictionary", large_dictionary),
        ];
        for (name, column) in read {
            let written = column.data_type().clone();
            let path = write_parquet(
                &dir,
                &format!("{name}.parquet"),
                vec![
                    ("pmid", Arc::new(Int64Array::from(vec![7, 8]))),
                    ("abstract", column),
                ],
            );
            assert_eq!(stored_type(&path, "abstract"), written, "{name}");
            let got = read_all(&path, &settings(&["abstract"], Some("pmid")));
            let expected = if name == "large_dictionary" {
                ["7=Renal failure.", "8=Aspirin."]
            } else {
                ["7=Aspirin.", "8=Renal failure."]
            };
            assert_eq!(got.unwrap(), expected, "{name}");
        }
        let refused: Vec<(&str, ArrayRef)> = vec![
            ("Int64", Arc::new(Int64Array::from(vec![1, 3]))),
            ("Binary", Arc::new(BinaryArray::from(vec![&b"a"[..], b"b"]))),
            ("List(Utf8)", string_lists()),
            ("Float64", Arc::new(Float64Array::from(vec![1.5, 2.0]))),
            ("Boolean", Arc::new(BooleanArray::from(vec![true, false]))),
        ];
        for (type_name, column) in refused {
            let path = write_parquet(
                &dir,
                "refused.parquet",
                vec![
                    ("title", Arc::new(StringArray::from(texts.to_vec()))),
                    ("abstract", column),
                ],
            );
            let bad = read_all(&path, &settings(&["title", "abstract"], None)).unwrap_err();
            assert_eq!(
                (bad.kind, bad.location.as_str(), bad.ends_file),
                (BadRecordKind::MissingField, "schema", true),
                "{type_name}"
            );
            let message = format!("text column `abstract` is not a string but {type_name}");
            assert_eq!(bad.message, message);
            let error = bad.into_error(&path).to_string();
            let shown = format!("{}: schema: missing_field: {message}", path.display());
            assert_eq!(error, shown);
        }
    }

    /// Only text columns must be strings: an integer id column is read as its digits (above),
    /// and a column of type `null` (pyarrow's type for a column without any value) is null
    /// text, refused row by row as nulls in a string column are.
    #[test]
    fn an_all_null_text_column_is_refused_row_by_row_and_nested_ids_at_open() {
        let dir = TempDir::new("pq-nulls");
        let path = write_parquet(
            &dir,
            "nulls.parquet",
            vec![
                ("pmid", Arc::new(StringArray::from(vec!["a", "b"]))),
                ("title", Arc::new(NullArray::new(2))),
                ("keywords", string_lists()),
            ],
        );
        let got = read_all(&path, &settings(&["title"], Some("pmid"))).unwrap();
        let null = |row| format!("missing_field row {row}: text column `title` is null");
        assert_eq!(got, [null(1), null(2)]);
        let bad = read_all(&path, &settings(&["pmid"], Some("keywords"))).unwrap_err();
        assert_eq!(
            bad.message,
            "id column `keywords` is not a string or integer but List(Utf8)"
        );
    }
}
