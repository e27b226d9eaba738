//! End-to-end tests of the library pipeline on project-written fixtures.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::{BadRecordPolicy, Packing};
use crate::hash::is_held_out;
use crate::input::ByteCounter;
use crate::progress::Quiet;
use crate::reader::{PreparedCorpus, Sequence};
use crate::shard::TokenDtype;
use crate::split::Split;
use crate::testutil::{TempDir, write_tiny_vocab};
use crate::tokenizer::DomainTokenizer;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A config over `inputs` into `dir/out` with the tiny vocabulary in `dir/tok`.
fn config(dir: &TempDir, inputs: &[PathBuf]) -> CorpusConfig {
    config_with(dir, inputs, |tok| {
        write_tiny_vocab(tok);
    })
}

/// A config over `inputs` into `dir/out` with the tokenizer `write_tokenizer` writes into
/// `dir/tok`.
fn config_with(dir: &TempDir, inputs: &[PathBuf], write_tokenizer: fn(&Path)) -> CorpusConfig {
    let tok = dir.path().join("tok");
    std::fs::create_dir_all(&tok).unwrap();
    write_tokenizer(&tok);
    CorpusConfig {
        inputs: inputs.iter().map(|p| s(p)).collect(),
        text_fields: vec!["title".into(), "abstract".into()],
        id_field: Some("pmid".into()),
        tokenizer: Some(tok),
        output: Some(dir.path().join("out")),
        max_seq_len: 16,
        shard_sequences: 8,
        row_group_sequences: 4,
        validation_fraction: Some(0.2),
        batch_documents: 7,
        ..CorpusConfig::default()
    }
}

/// Keeps every fixture document in train: a fraction this small holds none of them out (the
/// hash is fixed), and 0 is refused since training needs held-out documents.
fn train_only(cfg: &mut CorpusConfig) {
    cfg.validation_fraction = Some(1e-9);
}

fn run(config: &CorpusConfig) -> Result<PrepareReport, CorpusError> {
    prepare(
        config,
        &PrepareOptions {
            observer: &Quiet,
            stop_after_shards: None,
        },
    )
}

fn read_split(dir: &Path, split: Split) -> Vec<Sequence> {
    let corpus = PreparedCorpus::open(dir).unwrap();
    let mut reader = corpus.split(split).unwrap();
    (0..reader.len()).map(|i| reader.get(i).unwrap()).collect()
}

/// Documents of the JSONL fixture as the config reads them: (id, text).
fn jsonl_docs(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = ["title", "abstract"]
                .iter()
                .map(|f| v[f].as_str().unwrap())
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            (v["pmid"].as_str().unwrap().to_string(), text)
        })
        .collect()
}

/// The content of packed sequences: ids and word starts without [CLS] / [SEP] (wrap and
/// separators), plus the sequence lengths.
fn content(seqs: &[Sequence], sep: u32) -> (Vec<u32>, Vec<usize>) {
    let mut ids = Vec::new();
    for q in seqs {
        ids.extend(
            q.input_ids[1..q.input_ids.len() - 1]
                .iter()
                .copied()
                .filter(|&t| t != sep),
        );
    }
    (ids, seqs.iter().map(|q| q.input_ids.len()).collect())
}

fn gzip(src: &Path, dst: &Path) {
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(dst).unwrap(),
        flate2::Compression::default(),
    );
    e.write_all(&std::fs::read(src).unwrap()).unwrap();
    e.finish().unwrap();
}

#[test]
fn every_input_token_appears_once_in_order_in_its_split() {
    let dir = TempDir::new("prep-tokens");
    let jsonl = fixture("abstracts.jsonl");
    let cfg = config(&dir, std::slice::from_ref(&jsonl));
    let report = run(&cfg).unwrap();
    assert_eq!(report.outcome, Outcome::Prepared);
    let out = cfg.output.unwrap();
    let tok = DomainTokenizer::load(&out, None).unwrap();
    let m = &report.manifest;
    assert_eq!(m.tokenizer_fingerprint, tok.fingerprint());
    assert_eq!(m.token_dtype, TokenDtype::Uint16);
    assert!(
        m.train.shards.len() > 2,
        "several shards: {:?}",
        m.train.shards
    );
    for split in Split::ALL {
        let docs: Vec<(String, String)> = jsonl_docs(&jsonl)
            .into_iter()
            .filter(|(id, _)| (is_held_out(id, 0, 0.2)) == (split == Split::Validation))
            .collect();
        let mut expected = Vec::new();
        for (_, text) in &docs {
            expected.extend(tok.encode(text).unwrap());
        }
        let seqs = read_split(&out, split);
        let (got, lens) = content(&seqs, m.special_ids.sep);
        assert_eq!(got, expected, "{split:?}");
        // Full blocks except the last.
        assert!(lens[..lens.len() - 1].iter().all(|&l| l == 16), "{lens:?}");
        let sm = m.split(split);
        assert_eq!(sm.documents as usize, docs.len());
        assert_eq!(sm.document_tokens as usize, expected.len());
        assert_eq!(sm.sequences as usize, seqs.len());
        assert_eq!(
            sm.tokens as usize,
            seqs.iter().map(|q| q.input_ids.len()).sum::<usize>()
        );
        assert_eq!(sm.shards.iter().map(|x| x.rows).sum::<u64>(), sm.sequences);
        // Separators: one between consecutive documents.
        let seps: usize = seqs
            .iter()
            .map(|q| {
                q.input_ids[1..q.input_ids.len() - 1]
                    .iter()
                    .filter(|&&t| t == m.special_ids.sep)
                    .count()
            })
            .sum();
        assert_eq!(seps, docs.len() - 1);
        for shard in &sm.shards {
            assert_eq!(
                crate::fsutil::sha256_file(&out.join(&shard.file)).unwrap(),
                shard.sha256
            );
        }
    }
    assert_eq!(m.documents.records, 40);
    assert_eq!(m.documents.train + m.documents.validation, 40);
    assert!(m.documents.validation > 0);
    PreparedCorpus::open(&out).unwrap().verify().unwrap();
}

#[test]
fn word_starts_match_the_tokenizer_words() {
    let dir = TempDir::new("prep-words");
    let mut cfg = config(&dir, &[fixture("abstracts.jsonl")]);
    train_only(&mut cfg);
    cfg.max_seq_len = 12;
    run(&cfg).unwrap();
    let out = cfg.output.unwrap();
    let tok = DomainTokenizer::load(&out, None).unwrap();
    // Rebuild the expected stream of (id, word start) with separators, then cut it.
    let mut stream: Vec<(u32, bool)> = Vec::new();
    for (i, (_, text)) in jsonl_docs(&fixture("abstracts.jsonl")).iter().enumerate() {
        if i > 0 {
            stream.push((3, true));
        }
        let (ids, starts) = tok.encode_words(text).unwrap();
        stream.extend(ids.into_iter().zip(starts));
    }
    let seqs = read_split(&out, Split::Train);
    for (k, (q, chunk)) in seqs.iter().zip(stream.chunks(10)).enumerate() {
        let mut ids = vec![2];
        let mut starts = vec![true];
        for (j, &(id, start)) in chunk.iter().enumerate() {
            ids.push(id);
            starts.push(start || j == 0);
        }
        ids.push(3);
        starts.push(true);
        assert_eq!(
            (&q.input_ids, &q.word_starts),
            (&ids, &starts),
            "sequence {k}"
        );
    }
    assert_eq!(seqs.len(), stream.len().div_ceil(10));
}

#[test]
fn document_packing_keeps_documents_apart() {
    let dir = TempDir::new("prep-doc");
    let mut cfg = config(&dir, &[fixture("abstracts.jsonl")]);
    cfg.packing = Packing::Document;
    train_only(&mut cfg);
    let report = run(&cfg).unwrap();
    let out = cfg.output.unwrap();
    let tok = DomainTokenizer::load(&out, None).unwrap();
    let mut expected: Vec<Vec<u32>> = Vec::new();
    for (_, text) in jsonl_docs(&fixture("abstracts.jsonl")) {
        for w in tok.encode(&text).unwrap().chunks(14) {
            expected.push([&[2], w, &[3]].concat());
        }
    }
    let got: Vec<Vec<u32>> = read_split(&out, Split::Train)
        .into_iter()
        .map(|q| q.input_ids)
        .collect();
    assert_eq!(got, expected);
    assert_eq!(report.manifest.packing, Packing::Document);
}

#[test]
fn splits_are_deterministic_disjoint_and_explicit_inputs_win() {
    let dir = TempDir::new("prep-split");
    let jsonl = fixture("abstracts.jsonl");
    let collect = |cfg: &CorpusConfig| -> Vec<(String, Split)> {
        let files = crate::stream::corpus_files(cfg).unwrap();
        crate::stream::DocumentStream::open(cfg, files, ByteCounter::default(), &Quiet)
            .unwrap()
            .map(|d| d.map(|d| (d.doc.id, d.split)).unwrap())
            .collect()
    };
    let cfg = config(&dir, std::slice::from_ref(&jsonl));
    let a = collect(&cfg);
    assert_eq!(a, collect(&cfg));
    let held: Vec<&String> = a
        .iter()
        .filter(|(_, s)| *s == Split::Validation)
        .map(|(i, _)| i)
        .collect();
    assert!(!held.is_empty() && held.len() < 20);
    let mut reseeded = cfg.clone();
    reseeded.split_seed = 5;
    assert_ne!(collect(&reseeded), a);

    // Explicit held-out inputs: their documents are validation and never train.
    let valid = dir.write(
        "valid.jsonl",
        std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let mut explicit = cfg;
    explicit.validation_fraction = None;
    explicit.validation_inputs = vec![s(&valid)];
    let b = collect(&explicit);
    let val: std::collections::HashSet<&String> = b
        .iter()
        .filter(|(_, s)| *s == Split::Validation)
        .map(|(i, _)| i)
        .collect();
    let train: std::collections::HashSet<&String> = b
        .iter()
        .filter(|(_, s)| *s == Split::Train)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(val.len(), 3);
    assert!(val.is_disjoint(&train));
    assert_eq!(train.len(), 37);
    let report = run(&explicit).unwrap();
    assert_eq!(
        report.manifest.documents.dropped.get("in_validation"),
        Some(&3)
    );
    assert_eq!(report.manifest.split.method, "inputs");
}

#[test]
fn medline_versions_deletions_and_missing_abstracts() {
    let dir = TempDir::new("prep-medline");
    // The baseline gzip-compressed, the update plain: both are read alike.
    let base = dir.path().join("pubmed-sample-0001.xml.gz");
    gzip(&fixture("medline/pubmed-sample-0001.xml"), &base);
    let update = fixture("medline/pubmed-sample-0002.xml");
    let mut cfg = config(&dir, &[base, update]);
    train_only(&mut cfg);
    cfg.id_field = None;
    let files = crate::stream::corpus_files(&cfg).unwrap();
    let mut stream =
        crate::stream::DocumentStream::open(&cfg, files, ByteCounter::default(), &Quiet).unwrap();
    let docs: Vec<(String, String)> = stream
        .by_ref()
        .map(|d| d.map(|d| (d.doc.id, d.doc.text)).unwrap())
        .collect();
    assert_eq!(
        docs,
        [
            (
                "1004".to_string(),
                "Protein binding in cancer cells & mice. Gene expression is the study. Patients were treated with a dose of 102 cells. The kinase inhibits the receptor.".to_string()
            ),
            ("1001".into(), "Aspirin and the cat, revised. The revised cat sat on the revised mat.".into()),
            ("1005".into(), "Liver tumour results. Mice with liver tumour were treated.".into()),
        ]
    );
    let dropped = &stream.stats().dropped;
    for (reason, n) in [
        ("superseded", 1),
        ("deleted", 1),
        ("no_abstract", 1),
        ("book_article", 1),
    ] {
        assert_eq!(dropped.get(reason), Some(&n), "{reason}: {dropped:?}");
    }
    let report = run(&cfg).unwrap();
    assert_eq!(report.manifest.documents.train, 3);
    assert_eq!(report.manifest.documents.records, 7);
    assert_eq!(report.manifest.sources.len(), 2);
}

#[test]
fn gzip_and_plain_inputs_give_identical_shards() {
    let dir = TempDir::new("prep-gzip");
    let gz = dir.path().join("abstracts.jsonl.gz");
    gzip(&fixture("abstracts.jsonl"), &gz);
    let plain = run(&config(&dir, &[fixture("abstracts.jsonl")]))
        .unwrap()
        .manifest;
    let dir2 = TempDir::new("prep-gzip2");
    std::fs::copy(&gz, dir2.path().join("a.jsonl.gz")).unwrap();
    let zipped = run(&config(&dir2, &[dir2.path().join("a.jsonl.gz")]))
        .unwrap()
        .manifest;
    let hashes = |m: &Manifest| {
        m.train
            .shards
            .iter()
            .map(|x| x.sha256.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes(&plain), hashes(&zipped));
}

#[test]
fn text_and_parquet_inputs() {
    let dir = TempDir::new("prep-text");
    let mut cfg = config(&dir, &[fixture("notes.txt")]);
    cfg.text_mode = crate::config::TextMode::Paragraph;
    cfg.text_fields = vec!["text".into()];
    cfg.id_field = None;
    train_only(&mut cfg);
    let m = run(&cfg).unwrap().manifest;
    assert_eq!(m.documents.train, 12);
    let tok = DomainTokenizer::load(cfg.output.as_ref().unwrap(), None).unwrap();
    let text = std::fs::read_to_string(fixture("notes.txt")).unwrap();
    let expected: Vec<u32> = text
        .split("\n\n")
        .flat_map(|p| tok.encode(p.trim()).unwrap())
        .collect();
    let (got, _) = content(&read_split(cfg.output.as_ref().unwrap(), Split::Train), 3);
    assert_eq!(got, expected);

    // The same documents from a Parquet file (written by the shard writer's Arrow stack).
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let paras: Vec<&str> = text.split("\n\n").map(str::trim).collect();
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![std::sync::Arc::new(StringArray::from(paras))],
    )
    .unwrap();
    let pq = dir.path().join("notes.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let dir2 = TempDir::new("prep-parquet");
    let mut cfg2 = config(&dir2, &[pq]);
    cfg2.text_fields = vec!["text".into()];
    cfg2.id_field = None;
    train_only(&mut cfg2);
    let (got2, _) = {
        run(&cfg2).unwrap();
        content(&read_split(cfg2.output.as_ref().unwrap(), Split::Train), 3)
    };
    assert_eq!(got2, expected);
}

#[test]
fn bad_records_fail_with_location_or_are_skipped_and_counted() {
    let dir = TempDir::new("prep-bad");
    let good = std::fs::read_to_string(fixture("abstracts.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "{\"pmid\": \"x\", \"title\": \"broken\"");
    lines.insert(5, "{\"pmid\": \"y\", \"title\": \"no abstract field\"}");
    let bad = dir.write("bad.jsonl", lines.join("\n") + "\n");
    let mut cfg = config(&dir, std::slice::from_ref(&bad));
    let e = run(&cfg).unwrap_err().to_string();
    assert!(e.contains("bad.jsonl: line 3: malformed_json"), "{e}");
    assert!(PreparedCorpus::open(cfg.output.as_ref().unwrap()).is_err());
    cfg.on_bad_record = BadRecordPolicy::Skip;
    let m = run(&cfg).unwrap().manifest;
    assert_eq!(m.documents.dropped.get("malformed_json"), Some(&1));
    assert_eq!(m.documents.dropped.get("missing_field"), Some(&1));
    assert_eq!(m.documents.train + m.documents.validation, 40);

    // A truncated gzip stream: named under fail, counted under skip.
    let gz = dir.path().join("full.jsonl.gz");
    gzip(&fixture("abstracts.jsonl"), &gz);
    let bytes = std::fs::read(&gz).unwrap();
    let cut = dir.write("cut.jsonl.gz", &bytes[..bytes.len() * 2 / 3]);
    let mut cfg = config(&dir, std::slice::from_ref(&cut));
    let e = run(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("cut.jsonl.gz") && e.contains("truncated_file"),
        "{e}"
    );
    cfg.on_bad_record = BadRecordPolicy::Skip;
    let m = run(&cfg).unwrap().manifest;
    assert_eq!(m.documents.dropped.get("truncated_file"), Some(&1));
    assert!(m.documents.train + m.documents.validation < 40);

    // An input that matches nothing, and a file that cannot be opened (a dangling link a
    // glob still lists).
    let mut cfg = config(&dir, std::slice::from_ref(&bad));
    cfg.inputs = vec![s(&dir.path().join("missing*.jsonl"))];
    assert!(
        run(&cfg)
            .unwrap_err()
            .to_string()
            .contains("matches no file")
    );
    std::os::unix::fs::symlink(
        dir.path().join("gone.jsonl"),
        dir.path().join("links/dangling.jsonl"),
    )
    .or_else(|_| {
        std::fs::create_dir_all(dir.path().join("links"))?;
        std::os::unix::fs::symlink(
            dir.path().join("gone.jsonl"),
            dir.path().join("links/dangling.jsonl"),
        )
    })
    .unwrap();
    let good_copy = dir.write("links/good.jsonl", &good);
    cfg.inputs = vec![s(&dir.path().join("links/*.jsonl"))];
    let e = run(&cfg).unwrap_err().to_string();
    assert!(e.contains("dangling.jsonl: open: unreadable_file"), "{e}");
    cfg.on_bad_record = BadRecordPolicy::Skip;
    let m = run(&cfg).unwrap().manifest;
    assert_eq!(m.documents.dropped.get("unreadable_file"), Some(&1));
    assert_eq!(m.sources[1].path, s(&good_copy));
}

#[test]
fn empty_corpus_and_too_long_sequences_are_errors() {
    let dir = TempDir::new("prep-empty");
    let empty = dir.write("empty.txt", "\n\n   \n");
    let mut cfg = config(&dir, &[empty]);
    cfg.id_field = None;
    let e = run(&cfg).unwrap_err().to_string();
    assert!(e.contains("empty corpus"), "{e}");

    let mut cfg = config(&dir, &[fixture("abstracts.jsonl")]);
    std::fs::write(
        cfg.tokenizer
            .as_ref()
            .unwrap()
            .join("tokenizer_config.json"),
        "{\"model_max_length\": 32, \"do_lower_case\": true}",
    )
    .unwrap();
    cfg.max_seq_len = 64;
    let e = run(&cfg).unwrap_err().to_string();
    assert!(e.contains("max_seq_len") && e.contains("32"), "{e}");
}

#[test]
fn random_access_and_fingerprint_checks() {
    let dir = TempDir::new("prep-reader");
    let cfg = config(&dir, &[fixture("abstracts.jsonl")]);
    run(&cfg).unwrap();
    let out = cfg.output.unwrap();
    let corpus = PreparedCorpus::open(&out).unwrap();
    let sequential = read_split(&out, Split::Train);
    let mut reader = corpus.split(Split::Train).unwrap();
    reader.set_cached_row_groups(1);
    let n = reader.len();
    let order = crate::order::EpochOrder::with_layout(n, 1, 0, 4, 2);
    for p in 0..n {
        let i = order.index_at(p);
        assert_eq!(reader.get(i).unwrap(), sequential[i as usize]);
    }
    assert!(matches!(reader.get(n), Err(CorpusError::OutOfRange { .. })));
    corpus
        .check_tokenizer(&DomainTokenizer::load(&corpus.tokenizer_path(), None).unwrap())
        .unwrap();
    let other = DomainTokenizer::load(
        &cfg.tokenizer.as_ref().unwrap().join("vocab.txt"),
        Some(false),
    )
    .unwrap();
    let e = corpus.check_tokenizer(&other).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
    // A shard of another size is refused at open.
    let shard = out.join(&corpus.manifest().train.shards[0].file);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&shard)
        .unwrap();
    f.write_all(b"x").unwrap();
    assert!(
        PreparedCorpus::open(&out)
            .unwrap_err()
            .to_string()
            .contains("bytes")
    );
}

#[test]
fn deduplication_drops_exact_repeats() {
    let dir = TempDir::new("prep-dedup");
    let text = std::fs::read_to_string(fixture("abstracts.jsonl")).unwrap();
    let twice = dir.write("twice.jsonl", format!("{text}{text}"));
    let mut cfg = config(&dir, &[twice]);
    cfg.deduplicate = true;
    let m = run(&cfg).unwrap().manifest;
    assert_eq!(m.documents.dropped.get("duplicate"), Some(&40));
    assert_eq!(m.documents.train + m.documents.validation, 40);
}

mod families;
mod resume;
