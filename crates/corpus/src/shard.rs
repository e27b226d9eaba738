//! Parquet shards: `input_ids: list<uint16>` (or `list<uint32>` when the vocabulary does
//! not fit 16 bits) and `word_start: list<bool>`, plus `unit_start: list<bool>` in a corpus
//! prepared with masking phrases (phrases.rs), zstd, fixed-size row groups. A shard is
//! written under a temporary name (`<name>.tmp`) and published durably when complete
//! (`mlm_durable::publish_file`: synced, renamed, the directory synced).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, ListArray, RecordBatch, UInt16Array, UInt32Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::error::CorpusError;
use crate::fsutil::sha256_file;
use crate::pack::Block;

/// Column names.
pub const INPUT_IDS: &str = "input_ids";
pub const WORD_START: &str = "word_start";
/// Where a masking unit (a phrase, or a word outside phrases) begins.
pub const UNIT_START: &str = "unit_start";

/// The integer type of `input_ids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenDtype {
    Uint16,
    Uint32,
}

impl TokenDtype {
    /// The smallest type holding every id below `vocab_size`.
    pub fn for_vocab(vocab_size: u32) -> Self {
        if vocab_size <= 1 << 16 {
            Self::Uint16
        } else {
            Self::Uint32
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Self::Uint16 => DataType::UInt16,
            Self::Uint32 => DataType::UInt32,
        }
    }
}

/// `list<item>` with non-null items, the type of both shard columns.
fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, false)))
}

/// The columns of a shard and their types (`with_units`: the phrase corpus's third column).
fn shard_columns(dtype: TokenDtype, with_units: bool) -> Vec<(&'static str, DataType)> {
    let mut columns = vec![
        (INPUT_IDS, list_of(dtype.arrow())),
        (WORD_START, list_of(DataType::Boolean)),
    ];
    if with_units {
        columns.push((UNIT_START, list_of(DataType::Boolean)));
    }
    columns
}

/// The Arrow schema of a shard.
pub fn shard_schema(dtype: TokenDtype, with_units: bool) -> SchemaRef {
    let fields: Vec<Field> = shard_columns(dtype, with_units)
        .into_iter()
        .map(|(name, data_type)| Field::new(name, data_type, false))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Checks that a shard's schema, as read from its footer, has the columns `prepare` writes
/// with exactly the types it writes for `dtype`: the reader decodes them as those types, and
/// a shard of any other layout (another dtype, nullable items, another column type) is not
/// one of ours. Other columns are left alone: the reader never decodes them.
pub fn check_shard_schema(
    path: &Path,
    schema: &Schema,
    dtype: TokenDtype,
    with_units: bool,
) -> Result<(), CorpusError> {
    for (column, expected) in shard_columns(dtype, with_units) {
        let found = schema.field_with_name(column).ok().map(Field::data_type);
        if found != Some(&expected) {
            return Err(CorpusError::ShardSchema {
                path: path.to_path_buf(),
                column,
                expected: expected.to_string(),
                found: found.map(DataType::to_string),
            });
        }
    }
    Ok(())
}

/// A finished shard, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the prepared directory.
    pub file: String,
    pub rows: u64,
    /// Tokens, [CLS] / [SEP] included.
    pub tokens: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Writes one shard.
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    dtype: TokenDtype,
    row_group_rows: usize,
    ids: Vec<u32>,
    starts: Vec<bool>,
    /// `unit_start` values, for a shard of a phrase corpus.
    units: Option<Vec<bool>>,
    offsets: Vec<i32>,
    rows: u64,
    tokens: u64,
}

impl ShardWriter {
    /// A shard at `path`; `with_units` adds the `unit_start` column (every pushed block must
    /// then carry unit starts).
    pub fn create(
        path: &Path,
        dtype: TokenDtype,
        row_group_rows: usize,
        with_units: bool,
    ) -> Result<Self, CorpusError> {
        let tmp = mlm_durable::temp_path(path);
        let file = File::create(&tmp).map_err(|e| CorpusError::io("cannot create", &tmp, e))?;
        let schema = shard_schema(dtype, with_units);
        let props = WriterProperties::builder()
            // Level 1: token ids barely compress (a 100 MB PubMed corpus: 35 MB of shards at
            // level 1, 32 MB at level 3, 39 MB of raw uint16), and level 3 cost 3% of the CPU.
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("1 is a valid zstd level"),
            ))
            // Token ids have too many distinct values for dictionaries to pay; zstd does it.
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_row_count(Some(row_group_rows))
            .set_created_by(format!("mlm-corpus {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| CorpusError::parquet(&tmp, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            writer,
            schema,
            dtype,
            row_group_rows,
            ids: Vec::new(),
            starts: Vec::new(),
            units: with_units.then(Vec::new),
            offsets: vec![0],
            rows: 0,
            tokens: 0,
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends a sequence; a full row group is written out.
    pub fn push(&mut self, block: &Block) -> Result<(), CorpusError> {
        self.ids.extend_from_slice(&block.input_ids);
        self.starts.extend_from_slice(&block.word_starts);
        if let Some(units) = self.units.as_mut() {
            // A block without unit starts (never from the packer of a phrase corpus) keeps
            // its word starts, so the columns stay aligned.
            units.extend_from_slice(block.unit_starts.as_deref().unwrap_or(&block.word_starts));
        }
        self.offsets.push(self.ids.len() as i32);
        self.rows += 1;
        self.tokens += block.input_ids.len() as u64;
        if self.offsets.len() > self.row_group_rows {
            self.write_row_group()?;
            mlm_faults::fault_point("prepare.mid-shard");
        }
        Ok(())
    }

    fn write_row_group(&mut self) -> Result<(), CorpusError> {
        if self.offsets.len() <= 1 {
            return Ok(());
        }
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        let ids = std::mem::take(&mut self.ids);
        let values: ArrayRef = match self.dtype {
            TokenDtype::Uint16 => Arc::new(UInt16Array::from(
                ids.iter().map(|&i| i as u16).collect::<Vec<_>>(),
            )),
            TokenDtype::Uint32 => Arc::new(UInt32Array::from(ids)),
        };
        let starts: ArrayRef = Arc::new(BooleanArray::from(std::mem::take(&mut self.starts)));
        let field = |i: usize| match self.schema.field(i).data_type() {
            DataType::List(f) => f.clone(),
            _ => unreachable!("shard columns are lists"),
        };
        let arrow_err = |e| CorpusError::Arrow {
            path: self.tmp.clone(),
            source: e,
        };
        let input_ids =
            ListArray::try_new(field(0), offsets.clone(), values, None).map_err(arrow_err)?;
        let word_start =
            ListArray::try_new(field(1), offsets.clone(), starts, None).map_err(arrow_err)?;
        let mut columns: Vec<ArrayRef> = vec![Arc::new(input_ids), Arc::new(word_start)];
        if let Some(units) = self.units.as_mut() {
            let units: ArrayRef = Arc::new(BooleanArray::from(std::mem::take(units)));
            columns.push(Arc::new(
                ListArray::try_new(field(2), offsets, units, None).map_err(arrow_err)?,
            ));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_err)?;
        self.writer
            .write(&batch)
            .map_err(|e| CorpusError::parquet(&self.tmp, e))?;
        self.writer
            .flush()
            .map_err(|e| CorpusError::parquet(&self.tmp, e))
    }

    /// Writes the rest, publishes the file (synced, renamed into place, directory synced) and
    /// hashes it.
    pub fn finish(mut self) -> Result<ShardInfo, CorpusError> {
        self.write_row_group()?;
        // The footer written, the file is closed here and synced by the publish.
        let file = self
            .writer
            .into_inner()
            .map_err(|e| CorpusError::parquet(&self.tmp, e))?;
        drop(file);
        mlm_durable::publish_file(&self.tmp, &self.path).map_err(CorpusError::durable)?;
        let bytes = std::fs::metadata(&self.path)
            .map_err(|e| CorpusError::io("cannot stat", &self.path, e))?
            .len();
        Ok(ShardInfo {
            file: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rows: self.rows,
            tokens: self.tokens,
            bytes,
            sha256: sha256_file(&self.path)?,
        })
    }
}

/// Checks that every column chunk a Parquet footer lists lies inside the file: offsets and
/// sizes not negative, and each chunk's bytes before the footer's end. The parquet crate
/// trusts these numbers (its `ColumnChunkMetaData::byte_range` asserts on a negative one, a
/// panic, and a chunk past the end fails deep in a page read), so a corrupt footer is
/// refused here, naming the row group and column, before any page is read.
pub fn check_column_chunks(metadata: &ParquetMetaData, file_bytes: u64) -> Result<(), String> {
    for (group, row_group) in metadata.row_groups().iter().enumerate() {
        for column in row_group.columns() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or_else(|| column.data_page_offset());
            let length = column.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(length).ok())
                .and_then(|(start, length)| start.checked_add(length));
            if end.is_none_or(|end| end > file_bytes) {
                return Err(format!(
                    "row group {group}: column {} says its bytes are {length} from offset \
                     {start}, outside the file's {file_bytes} bytes (a corrupt footer)",
                    column.column_path()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// The writer's own schema passes; a shard without a column is refused naming it.
    #[test]
    fn shard_schemas_are_checked_column_by_column() {
        let path = Path::new("/c/train-00000.parquet");
        for dtype in [TokenDtype::Uint16, TokenDtype::Uint32] {
            assert!(check_shard_schema(path, &shard_schema(dtype, false), dtype, false).is_ok());
        }
        let ids_only = Schema::new(vec![
            shard_schema(TokenDtype::Uint16, false).field(0).clone(),
        ]);
        let error = check_shard_schema(path, &ids_only, TokenDtype::Uint16, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "prepared shard /c/train-00000.parquet: column `word_start` is missing, expected \
             List(non-null Boolean): not a shard `mlm-train prepare` wrote (rerun it)"
        );
    }

    #[test]
    fn column_chunks_are_checked_against_the_file_size() {
        let dir = crate::testutil::TempDir::new("column-chunks");
        let path = dir.path().join("train-00000.parquet");
        let mut writer = ShardWriter::create(&path, TokenDtype::Uint16, 2, false).unwrap();
        for n in 0..5u32 {
            let block = Block {
                input_ids: (0..n + 3).collect(),
                word_starts: vec![true; n as usize + 3],
                unit_starts: None,
            };
            writer.push(&block).unwrap();
        }
        writer.finish().unwrap();
        let bytes = std::fs::metadata(&path).unwrap().len();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let metadata = reader.metadata();
        assert_eq!(metadata.num_row_groups(), 3);
        assert_eq!(check_column_chunks(metadata, bytes), Ok(()));
        // The same footer over a file that ends one byte before the last chunk does.
        let last_end = metadata
            .row_groups()
            .iter()
            .flat_map(|group| group.columns())
            .map(|column| {
                let (start, length) = column.byte_range();
                start + length
            })
            .max()
            .unwrap();
        assert_eq!(check_column_chunks(metadata, last_end), Ok(()));
        let error = check_column_chunks(metadata, last_end - 1).unwrap_err();
        assert!(error.starts_with("row group 2: column "), "{error}");
        assert!(error.contains("outside the file's"), "{error}");
    }
}
