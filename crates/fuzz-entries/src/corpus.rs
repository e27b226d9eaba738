//! Corpus inputs: the four readers of `prepare`, the prepared-shard reader of training and
//! the tokenizer loader.

use std::io::Cursor;

use mlm_corpus::config::TextMode;
use mlm_corpus::input::{
    ByteCounter, ReaderSettings, RecordReader, jsonl::JsonlReader, medline::MedlineReader,
    parquet_in::ParquetReader, text::TextReader,
};
use mlm_corpus::{DomainTokenizer, SplitReader, TokenDtype};

use super::{with_scratch, write};

/// At most this many records are read from one input: a reader that never ends (returns
/// records forever without consuming input) is a bug the fuzzer reports as a timeout.
const MAX_RECORDS: usize = 100_000;

/// The settings `prepare` reads PubMed-style JSONL and Parquet with (`[corpus]
/// text_fields = ["title", "abstract"]`, `id_field = "pmid"`).
fn settings(text_mode: TextMode) -> ReaderSettings {
    ReaderSettings {
        text_mode,
        text_fields: vec!["title".into(), "abstract".into()],
        field_separator: "\n".into(),
        id_field: Some("pmid".into()),
    }
}

/// Reads every record (documents, drops and bad records alike) until the reader ends.
fn drain(mut reader: impl RecordReader) {
    for _ in 0..MAX_RECORDS {
        if reader.next_record().is_none() {
            return;
        }
    }
}

fn stream(data: &[u8]) -> Box<dyn std::io::BufRead + Send> {
    Box::new(Cursor::new(data.to_vec()))
}

/// A JSONL corpus file (`format = "jsonl"`).
pub fn jsonl(data: &[u8]) {
    drain(JsonlReader::new(stream(data), &settings(TextMode::Line)));
}

/// A plain text corpus file (`format = "text"`), in both text modes (the first byte picks).
pub fn text(data: &[u8]) {
    let mode = match data.first() {
        Some(byte) if byte % 2 == 1 => TextMode::Paragraph,
        _ => TextMode::Line,
    };
    drain(TextReader::new(stream(data), mode));
}

/// A PubMed / MEDLINE baseline XML file (`format = "medline"`).
pub fn medline(data: &[u8]) {
    drain(MedlineReader::new(stream(data), "\n".into(), None));
}

/// A Parquet corpus file (`format = "parquet"`), opened from disk as `prepare` does.
pub fn parquet(data: &[u8]) {
    with_scratch(|dir| {
        let path = write(dir, "corpus.parquet", data);
        match ParquetReader::open(&path, &settings(TextMode::Line), &ByteCounter::default()) {
            Ok(reader) => drain(reader),
            Err(_bad_record) => {}
        }
    });
}

/// A prepared shard (`train-00000.parquet` of a `prepare` output), read sequence by sequence
/// as training reads it, once as a shard of `uint16` ids and once of `uint32` ids. The
/// reader refuses a shard of another schema when it opens it; a corrupt page is an error
/// naming the shard (its decoder panics are contained, as the `parquet` target's are).
pub fn shard(data: &[u8]) {
    with_scratch(|dir| {
        let path = write(dir, "train-00000.parquet", data);
        for dtype in [TokenDtype::Uint16, TokenDtype::Uint32] {
            let Ok(mut reader) = SplitReader::single_shard(&path, dtype) else {
                continue;
            };
            // A footer may claim any number of rows; the first error ends the shard.
            for index in 0..reader.len().min(MAX_RECORDS as u64) {
                if reader.get(index).is_err() {
                    break;
                }
            }
        }
    });
}

/// A `tokenizer.json` (`[corpus] tokenizer`), loaded as `prepare` loads it and then used on a
/// sentence with an unknown word, a number and non-ASCII text.
pub fn tokenizer(data: &[u8]) {
    let loaded =
        with_scratch(|dir| DomainTokenizer::load(&write(dir, "tokenizer.json", data), None));
    let Ok(tokenizer) = loaded else {
        return;
    };
    let text = "Aspirin inhibits platelet aggregation in 12 of 14 patients (Straße, 東京).";
    if let Ok(ids) = tokenizer.encode_with_special(text) {
        let _ = tokenizer.decode(&ids);
    }
    let _ = tokenizer.encode_words(text);
}
