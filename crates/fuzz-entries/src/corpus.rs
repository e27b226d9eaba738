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

/// Text the `fast_tokenizer` target's tokenizers are trained on: PubMed-like sentences, other
/// scripts, contractions, the pieces the fast path cuts around.
const FAST_TRAINING: &[&str] = &[
    "Aspirin inhibits platelet aggregation in 12 of 14 patients with coronary disease.",
    "The patients were treated with a dose of 10 mg/kg (p < 0.05); don't stop it's fine.",
    "Café naïve façade résumé Über straße garçon déjà vu, e\u{301} combining.",
    "東京都の病院で臨床試験が行われた。北京和上海的医院。Emoji 😀 and ☺ ✓ — µg/kg ± 5%.",
    "Внутривенное введение препарата вызвало гипотензию. ΣΑΣ ελληνικά",
    "IT'S DON'T WE'LL THEY'VE I'M SHE'D 1234567890 3.14159 1,000,000  \t\r\n  spaces",
];

/// Small tokenizers of every family the split fast path takes (built once a process):
/// byte-level BPE in RoBERTa's layout with `add_prefix_space` both ways and in ModernBERT's
/// with NFC, and a SentencePiece-layout Unigram (Nmt, NFKC, collapsed spaces, Metaspace).
fn fast_tokenizers() -> &'static [DomainTokenizer] {
    static TOKENIZERS: std::sync::OnceLock<Vec<DomainTokenizer>> = std::sync::OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let texts = || FAST_TRAINING.iter().map(|t| t.to_string());
        let bpe = |layout| mlm_corpus::VocabConfig {
            model: mlm_corpus::VocabModel::Bpe,
            layout,
            vocab_size: 400,
            min_frequency: 1,
            ..Default::default()
        };
        let roberta = mlm_corpus::tokenizer::train::train(&bpe(None), texts()).expect("trains");
        let modern = bpe(Some(mlm_corpus::VocabLayout::ModernBert));
        let modern = mlm_corpus::tokenizer::train::train(&modern, texts()).expect("trains");
        let mut prefixed = tokenizer_json(&roberta);
        prefixed["pre_tokenizer"]["add_prefix_space"] = true.into();
        let mut nfc = tokenizer_json(&modern);
        nfc["normalizer"] = serde_json::json!({"type": "NFC"});
        let all = [prefixed, nfc, unigram_json()].map(|json| {
            with_scratch(|dir| {
                let file = write(dir, "tokenizer.json", json.to_string().as_bytes());
                DomainTokenizer::load(&file, None).expect("a valid tokenizer.json")
            })
        });
        let mut all: Vec<DomainTokenizer> = [roberta, modern].into_iter().chain(all).collect();
        all.retain(DomainTokenizer::has_split_fast_path);
        assert_eq!(all.len(), 5, "every fixture takes the split fast path");
        all
    })
}

fn tokenizer_json(tokenizer: &DomainTokenizer) -> serde_json::Value {
    let text = tokenizer.inner().to_string(false).expect("serialisable");
    serde_json::from_str(&text).expect("JSON")
}

/// A SentencePiece-layout Unigram over letters, a few words and punctuation (XLM-R's
/// specials, `<mask>` with `lstrip`).
fn unigram_json() -> serde_json::Value {
    let mut vocab: Vec<(String, f64)> = ["<s>", "<pad>", "</s>", "<unk>"]
        .iter()
        .map(|t| (t.to_string(), 0.0))
        .collect();
    let words = [
        "the", "patients", "with", "dose", "it", "s", "don", "t", "12", "mg",
    ];
    for (i, w) in words.iter().enumerate() {
        vocab.push((format!("\u{2581}{w}"), -3.0 - i as f64 / 10.0));
        vocab.push((w.to_string(), -5.0 - i as f64 / 10.0));
    }
    let singles = ('a'..='z').chain('0'..='9').chain(".,;:'()-<>".chars());
    for (i, c) in singles.enumerate() {
        vocab.push((c.to_string(), -8.0 - i as f64 / 100.0));
    }
    vocab.push(("\u{2581}".into(), -4.0));
    vocab.push(("<mask>".into(), 0.0));
    let added = |id: usize, content: &str, lstrip: bool| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": lstrip,
            "rstrip": false, "normalized": false, "special": true})
    };
    let metaspace = serde_json::json!({"type": "Metaspace", "replacement": "\u{2581}",
        "prepend_scheme": "always", "split": true});
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(0, "<s>", false), added(1, "<pad>", false),
            added(2, "</s>", false), added(3, "<unk>", false),
            added(vocab.len() - 1, "<mask>", true)],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Nmt"}, {"type": "NFKC"},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": metaspace,
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
            "trim_offsets": true, "add_prefix_space": true},
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false},
    })
}

/// Arbitrary text (lossy UTF-8) through the split fast path of byte-level BPE and Unigram
/// tokenizers (tokenizer/fast_split.rs) and through the `tokenizers` pipeline: ids and word
/// starts must be equal, with the segment cache cold and warm. Panics on a difference.
pub fn fast_tokenizer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for tokenizer in fast_tokenizers() {
        let general = tokenizer.encode_words_general(&text).ok();
        for pass in ["cold", "warm"] {
            let fast = tokenizer.encode_words(&text).ok();
            assert_eq!(
                fast,
                general,
                "{pass}: fast path differs from tokenizers on {text:?} ({})",
                tokenizer.source().display()
            );
        }
    }
}
