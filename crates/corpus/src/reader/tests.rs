//! The prepared-corpus reader on corpora `prepare` wrote, and on shards it did not write.

use std::sync::Arc;

use arrow::array::{BooleanArray, Int32Array, StringArray, UInt16Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{Field, Schema};

use super::*;
use crate::testutil::{TempDir, write_tiny_vocab};

/// A data loader moves readers to its worker threads.
#[test]
fn readers_are_send() {
    fn send<T: Send>() {}
    send::<SplitReader>();
    send::<PreparedCorpus>();
}

/// The fixture abstracts prepared into `dir/out` (uint16 ids), without `integrity.json` (as a
/// corpus prepared before it existed), so that a shard can be swapped.
fn prepared(dir: &TempDir) -> PathBuf {
    let tok = dir.path().join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    write_tiny_vocab(&tok);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/abstracts.jsonl");
    let config = crate::CorpusConfig {
        inputs: vec![fixture.display().to_string()],
        text_fields: vec!["title".into(), "abstract".into()],
        id_field: Some("pmid".into()),
        tokenizer: Some(tok),
        output: Some(dir.path().join("out")),
        max_seq_len: 16,
        validation_fraction: Some(0.2),
        ..crate::CorpusConfig::default()
    };
    let options = crate::PrepareOptions {
        observer: &crate::Quiet,
        stop_after_shards: None,
    };
    let out = crate::prepare(&config, &options).unwrap().output;
    std::fs::remove_file(out.join("integrity.json")).unwrap();
    out
}

/// A `name: list<values>` column with non-null items, as the shard writer writes its columns.
fn list(name: &str, offsets: &OffsetBuffer<i32>, values: ArrayRef) -> (Field, ArrayRef) {
    let item = Arc::new(Field::new_list_field(values.data_type().clone(), false));
    let list = ListArray::try_new(item.clone(), offsets.clone(), values, None).unwrap();
    (
        Field::new(name, DataType::List(item), false),
        Arc::new(list),
    )
}

/// Values of a column: `n` of them.
type Values = fn(usize) -> ArrayRef;

/// The two columns of a shard of `rows` sequences of two tokens each, holding `ids` and
/// `starts`.
fn columns(rows: usize, ids: Values, starts: Values) -> [(Field, ArrayRef); 2] {
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(2, rows));
    [
        list(INPUT_IDS, &offsets, ids(2 * rows)),
        list(WORD_START, &offsets, starts(2 * rows)),
    ]
}

/// Replaces the first training shard of `out` by a Parquet file of the columns `make` gives
/// for its row count, and records its size in the manifest; returns its path.
fn swap_first_shard(out: &Path, make: impl FnOnce(usize) -> [(Field, ArrayRef); 2]) -> PathBuf {
    let mut manifest = Manifest::read(out).unwrap();
    let entry = &mut manifest.train.shards[0];
    let [ids, starts] = make(entry.rows as usize);
    let schema = Arc::new(Schema::new(vec![ids.0, starts.0]));
    let batch = RecordBatch::try_new(schema.clone(), vec![ids.1, starts.1]).unwrap();
    let path = out.join(&entry.file);
    let file = File::create(&path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    entry.bytes = std::fs::metadata(&path).unwrap().len();
    let text = serde_json::to_string_pretty(&manifest).unwrap();
    std::fs::write(out.join(crate::manifest::MANIFEST_FILE), text).unwrap();
    path
}

const U16S: Values = |n| Arc::new(UInt16Array::from(vec![7; n]));
const BOOLS: Values = |n| Arc::new(BooleanArray::from(vec![true; n]));

/// A shard whose columns are of other types than `prepare` writes is refused when it is
/// opened, naming the shard, the column and both types: never a panic in the decoder (an
/// int32 `word_start`), never ids taken from strings.
#[test]
fn a_shard_with_columns_of_other_types_is_refused_naming_them() {
    let int32s: Values = |n| Arc::new(Int32Array::from(vec![1; n]));
    let strings: Values = |n| Arc::new(StringArray::from(vec!["7"; n]));
    let cases = [
        (
            U16S,
            int32s,
            "`word_start` is List(non-null Int32), expected List(non-null Boolean)",
        ),
        (
            strings,
            BOOLS,
            "`input_ids` is List(non-null Utf8), expected List(non-null UInt16)",
        ),
    ];
    for (ids, starts, what) in cases {
        let dir = TempDir::new("reader-shard-types");
        let out = prepared(&dir);
        let path = swap_first_shard(&out, |rows| columns(rows, ids, starts));
        let corpus = PreparedCorpus::open(&out).unwrap();
        let mut reader = corpus.split(Split::Train).unwrap();
        let error = reader.get(0).unwrap_err();
        assert!(matches!(error, CorpusError::ShardSchema { .. }), "{error}");
        let message = format!(
            "prepared shard {}: column {what}: not a shard `mlm-train prepare` wrote (rerun it)",
            path.display()
        );
        assert_eq!(error.to_string(), message);
    }
}

/// Word starts belong to the ids of their own row: lists of other lengths row by row are
/// refused even where the totals agree (they would shift every mask after them).
#[test]
fn word_starts_of_another_length_than_their_row_are_refused() {
    let dir = TempDir::new("reader-shard-rows");
    let out = prepared(&dir);
    let path = swap_first_shard(&out, |rows| {
        let [ids, _] = columns(rows, U16S, BOOLS);
        let mut lengths = vec![2; rows];
        (lengths[0], lengths[1]) = (1, 3);
        let offsets = OffsetBuffer::from_lengths(lengths);
        [ids, list(WORD_START, &offsets, BOOLS(2 * rows))]
    });
    let corpus = PreparedCorpus::open(&out).unwrap();
    let error = corpus.split(Split::Train).unwrap().get(0).unwrap_err();
    let message = format!(
        "{}: row 0: word_start and input_ids differ in length",
        path.display()
    );
    assert!(error.to_string().ends_with(&message), "{error}");
}

/// A shard read on its own (the `shard` fuzz target's reader) gives the rows the corpus
/// reader gives, and is refused under the other id type.
#[test]
fn a_single_shard_reads_as_in_its_corpus() {
    let dir = TempDir::new("reader-single-shard");
    let out = prepared(&dir);
    let corpus = PreparedCorpus::open(&out).unwrap();
    let mut split = corpus.split(Split::Train).unwrap();
    let path = out.join(&corpus.manifest().train.shards[0].file);
    let mut single = SplitReader::single_shard(&path, TokenDtype::Uint16).unwrap();
    assert_eq!(single.len(), corpus.manifest().train.shards[0].rows);
    for i in 0..single.len() {
        assert_eq!(single.get(i).unwrap(), split.get(i).unwrap());
    }
    let error = SplitReader::single_shard(&path, TokenDtype::Uint32).unwrap_err();
    assert!(
        error.to_string().contains(
            "column `input_ids` is List(non-null UInt16), expected List(non-null UInt32)"
        ),
        "{error}"
    );
}

/// Sequence i is found among the shards' rows: a manifest whose counts disagree is refused
/// when the split is opened, not by an index past the last shard.
#[test]
fn a_manifest_whose_shards_do_not_add_up_is_refused() {
    let dir = TempDir::new("reader-manifest-rows");
    let out = prepared(&dir);
    let mut manifest = Manifest::read(&out).unwrap();
    let rows = manifest.train.sequences;
    manifest.train.sequences += 5;
    let text = serde_json::to_string_pretty(&manifest).unwrap();
    std::fs::write(out.join(crate::manifest::MANIFEST_FILE), text).unwrap();
    let corpus = PreparedCorpus::open(&out).unwrap();
    let error = corpus.split(Split::Train).unwrap_err().to_string();
    let message = format!(
        "the manifest's train shards hold {rows} rows, it says {} sequences",
        rows + 5
    );
    assert!(error.ends_with(&message), "{error}");
}

/// A shard whose page header is garbage is an error naming the shard and row group, once:
/// the batch reader repeats its error forever, and collecting them all never ended (and
/// filled the memory).
#[test]
fn a_corrupt_page_is_one_error_naming_the_row_group() {
    let dir = TempDir::new("reader-corrupt-page");
    let out = prepared(&dir);
    let mut manifest = Manifest::read(&out).unwrap();
    let entry = &mut manifest.train.shards[0];
    let path = out.join(&entry.file);
    let mut bytes = std::fs::read(&path).unwrap();
    // A zero byte where the second column chunk of row group 0 starts: its page header now
    // begins with thrift's end of struct, a header without a page type.
    let footer =
        ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
    let (start, _) = footer.metadata().row_group(0).column(1).byte_range();
    bytes.insert(start as usize, 0);
    std::fs::write(&path, &bytes).unwrap();
    entry.bytes = bytes.len() as u64;
    let text = serde_json::to_string_pretty(&manifest).unwrap();
    std::fs::write(out.join(crate::manifest::MANIFEST_FILE), text).unwrap();
    let corpus = PreparedCorpus::open(&out).unwrap();
    let error = corpus.split(Split::Train).unwrap().get(0).unwrap_err();
    let named = format!("{}: row group 0: ", path.display());
    assert!(error.to_string().contains(&named), "{error}");
}
