//! `vocab extend` against Hugging Face: a WordPiece vocabulary (with `[unusedN]` slots to
//! reuse), a RoBERTa byte-level BPE one and a ModernBERT-base replica (byte-level BPE with
//! its special tokens and fillers after the BPE entries, tests/python/tokenizer_families.py),
//! each trained on the project's sample corpus and extended from it. For each: no base token changes id, every added word is one token,
//! transformers' `AutoTokenizer` loaded from the written files gives our ids on every sample
//! abstract, held-out fragmentation goes down, and a second run writes the same bytes. The
//! ignored test does the same with the real bert-base-uncased vocabulary on PubMed CDR.
//!
//! Needs the project's Python venv (`scripts/setup`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlm_corpus::tokenizer::extend::words::pieces_of;
use mlm_corpus::{
    AddedKind, CorpusConfig, DomainTokenizer, ExtendReport, HfClass, Quiet, VocabConfig,
    VocabModel, extend_vocab, train_vocab,
};
use serde_json::Value;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mlm-vocab-extend-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sample_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/abstracts.jsonl")
}

fn shared_dir() -> PathBuf {
    std::env::var_os("MLM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn corpus_of(inputs: &[PathBuf]) -> CorpusConfig {
    CorpusConfig {
        inputs: inputs.iter().map(|p| p.display().to_string()).collect(),
        text_fields: vec!["title".into(), "abstract".into()],
        id_field: Some("pmid".into()),
        validation_fraction: Some(0.1),
        ..CorpusConfig::default()
    }
}

/// Title and abstract of every record, as the corpus joins them.
fn texts_of(inputs: &[PathBuf]) -> Vec<String> {
    let mut texts = Vec::new();
    for input in inputs {
        for line in std::fs::read_to_string(input).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            texts.push(format!(
                "{}\n{}",
                v["title"].as_str().unwrap(),
                v["abstract"].as_str().unwrap()
            ));
        }
    }
    texts.push("Hello <mask> world [MASK], ÉCOLE naïve 東京 😀 and   spaces".into());
    texts
}

fn train_base(corpus: &CorpusConfig, model: VocabModel, size: usize, out: &Path) {
    let vocab = VocabConfig {
        model,
        vocab_size: size,
        output: Some(out.to_path_buf()),
        ..VocabConfig::default()
    };
    train_vocab(corpus, &vocab, &Quiet).unwrap();
}

fn extend(corpus: &CorpusConfig, base: &Path, add: usize, out: &Path) -> ExtendReport {
    let vocab = VocabConfig {
        extend_from: Some(base.to_path_buf()),
        add: Some(add),
        output: Some(out.to_path_buf()),
        ..VocabConfig::default()
    };
    extend_vocab(corpus, &vocab, &Quiet).unwrap()
}

/// No base token moved; the added words are one token each and their base ids are the base
/// tokenizer's pieces; the size grew by the appended entries.
fn assert_extension_invariants(base: &DomainTokenizer, report: &ExtendReport, add: usize) {
    let ext = &report.tokenizer;
    let sidecar = ext
        .extension()
        .expect("the sidecar is loaded with the tokenizer");
    assert_eq!(sidecar.base_fingerprint, base.fingerprint());
    assert_eq!(sidecar.base_vocab_size, base.vocab_size());
    assert_eq!(sidecar.tokens.len(), add, "exactly `add` entries");
    let replaced: Vec<u32> = sidecar
        .tokens
        .iter()
        .filter(|t| t.replaced.is_some())
        .map(|t| t.id)
        .collect();
    for (token, id) in base.inner().get_vocab(true) {
        if replaced.contains(&id) {
            assert!(token.starts_with("[unused"), "{token} was reused");
        } else {
            assert_eq!(ext.token_to_id(&token), Some(id), "{token} moved");
        }
    }
    assert_eq!(
        ext.vocab_size(),
        base.vocab_size() + sidecar.appended() as u32
    );
    assert_eq!(ext.special_ids(), base.special_ids());
    assert_eq!(report.not_single, 0);
    for t in &sidecar.tokens {
        assert_eq!(ext.id_to_token(t.id).as_deref(), Some(t.token.as_str()));
        assert!(t.base_ids.len() >= 2, "{t:?}");
        if t.kind == AddedKind::Word {
            assert_eq!(
                pieces_of(ext.inner(), &t.token).unwrap(),
                [t.id],
                "{}",
                t.token
            );
            assert_eq!(
                pieces_of(base.inner(), &t.token).unwrap(),
                t.base_ids,
                "{}",
                t.token
            );
        }
    }
    let (b, e) = (report.base_fragmentation, report.extended_fragmentation);
    assert_eq!(b.words, e.words);
    assert!(e.pieces < b.pieces, "{b:?} -> {e:?}");
}

/// transformers' ids for `texts` from the files in `dir` equal ours; returns its view
/// (tokenizer_families.py `encode`).
fn assert_transformers_agrees(dir: &Path, texts: &[String], scratch: &Scratch) -> Value {
    let ours = DomainTokenizer::load(dir, None).unwrap();
    let file = scratch.join("texts.json");
    std::fs::write(&file, serde_json::to_string(texts).unwrap()).unwrap();
    let out = mlm_pyref::run(
        "tokenizer_families.py",
        ["encode".as_ref(), dir.as_os_str(), file.as_os_str()],
    );
    let reference: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        reference["len"].as_u64(),
        Some(u64::from(ours.vocab_size()))
    );
    let rows = reference["rows"].as_array().unwrap();
    for (text, row) in texts.iter().zip(rows) {
        let expected: Vec<u32> = row["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ours.encode(text).unwrap(), expected, "{text:?}");
    }
    reference
}

fn file_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Extends `base_dir` twice into the same directory: the same files, byte for byte.
fn extend_twice(corpus: &CorpusConfig, base_dir: &Path, add: usize, out: &Path) -> ExtendReport {
    let first = extend(corpus, base_dir, add, out);
    let bytes = file_bytes(out);
    let again = extend(corpus, base_dir, add, out);
    assert_eq!(
        file_bytes(out),
        bytes,
        "a second extension by the same K changed the files"
    );
    assert_eq!(again.tokenizer.fingerprint(), first.tokenizer.fingerprint());
    first
}

#[test]
fn wordpiece_extension_reuses_unused_slots_and_matches_transformers() {
    let scratch = Scratch::new("wordpiece");
    let corpus = corpus_of(&[sample_corpus()]);
    let trained = scratch.join("trained");
    train_base(&corpus, VocabModel::WordPiece, 600, &trained);
    // Google's layout: reserved [unusedN] slots in the model vocabulary (not added tokens).
    let base_dir = scratch.join("base");
    std::fs::create_dir_all(&base_dir).unwrap();
    let mut vocab = std::fs::read_to_string(trained.join("vocab.txt")).unwrap();
    for n in 0..8 {
        vocab.push_str(&format!("[unused{n}]\n"));
    }
    std::fs::write(base_dir.join("vocab.txt"), vocab).unwrap();
    let base = DomainTokenizer::load(&base_dir, None).unwrap();
    let out = scratch.join("extended");
    let report = extend_twice(&corpus, &base_dir, 40, &out);
    assert_extension_invariants(&base, &report, 40);
    let sidecar = report.tokenizer.extension().unwrap();
    assert_eq!(sidecar.reused(), 8, "the [unusedN] slots first");
    assert_eq!(sidecar.tokens[0].replaced.as_deref(), Some("[unused0]"));
    assert_eq!(sidecar.tokens[0].id, base.vocab_size() - 8);
    for file in [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "vocab-extension.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert_transformers_agrees(&out, &texts_of(&[sample_corpus()]), &scratch);
    // vocab.txt alone builds the same tokenizer.
    std::fs::remove_file(out.join("tokenizer.json")).unwrap();
    let from_txt = DomainTokenizer::load(&out, None).unwrap();
    assert_eq!(from_txt.fingerprint(), report.tokenizer.fingerprint());
}

#[test]
fn bpe_extension_appends_merges_and_matches_transformers() {
    let scratch = Scratch::new("bpe");
    let corpus = corpus_of(&[sample_corpus()]);
    let base_dir = scratch.join("base");
    train_base(&corpus, VocabModel::Bpe, 500, &base_dir);
    let base = DomainTokenizer::load(&base_dir, None).unwrap();
    let out = scratch.join("extended");
    let report = extend_twice(&corpus, &base_dir, 60, &out);
    assert_extension_invariants(&base, &report, 60);
    let sidecar = report.tokenizer.extension().unwrap();
    assert_eq!(sidecar.reused(), 0);
    assert!(report.words > 0 && report.words + report.merge_steps == 60);
    // The base merges are the first lines of the new merges.txt.
    let base_merges = std::fs::read_to_string(base_dir.join("merges.txt")).unwrap();
    let merges = std::fs::read_to_string(out.join("merges.txt")).unwrap();
    assert!(merges.starts_with(&base_merges) && merges.len() > base_merges.len());
    assert_transformers_agrees(&out, &texts_of(&[sample_corpus()]), &scratch);
    // vocab.json + merges.txt alone build the same tokenizer.
    std::fs::remove_file(out.join("tokenizer.json")).unwrap();
    let from_slow = DomainTokenizer::load(&out, None).unwrap();
    assert_eq!(from_slow.fingerprint(), report.tokenizer.fingerprint());
}

/// Extends the ModernBERT replica of tokenizer_families.py `make KIND` (500 BPE entries
/// trained on the sample corpus) by 60 entries.
fn check_modernbert_extension(kind: &str) {
    let scratch = Scratch::new(kind);
    let base_dir = scratch.join("base");
    let sample = sample_corpus();
    mlm_pyref::run(
        "tokenizer_families.py",
        [
            "make".as_ref(),
            kind.as_ref(),
            base_dir.as_os_str(),
            "--train".as_ref(),
            sample.as_os_str(),
            "--vocab-size".as_ref(),
            "500".as_ref(),
        ],
    );
    let base = DomainTokenizer::load(&base_dir, None).unwrap();
    // [UNK] .. [MASK] after the 500 BPE entries and <|endoftext|>, fillers up to 512.
    let s = base.special_ids();
    assert_eq!((s.unk, s.mask, base.vocab_size()), (501, 505, 512));
    let corpus = corpus_of(std::slice::from_ref(&sample));
    let out = scratch.join("extended");
    let report = extend_twice(&corpus, &base_dir, 60, &out);
    assert_extension_invariants(&base, &report, 60);
    let sidecar = report.tokenizer.extension().unwrap();
    let ids: Vec<u32> = sidecar.tokens.iter().map(|t| t.id).collect();
    let expected: Vec<u32> = (512..512 + 60).collect();
    assert_eq!(ids, expected, "after the last filler, in order");
    assert!(report.words > 0 && report.words + report.merge_steps == 60);
    let ext = &report.tokenizer;
    assert_eq!(ext.hf_class(), HfClass::Generic);
    assert_eq!(
        ext.model_input_names().unwrap(),
        ["input_ids", "attention_mask"]
    );
    for file in ["vocab.json", "merges.txt", "vocab.txt"] {
        assert!(!out.join(file).exists(), "{file}");
    }
    let a = ext.encode("a").unwrap();
    assert_eq!(
        ext.encode_with_special("a").unwrap(),
        [&[s.cls][..], &a, &[s.sep]].concat()
    );
    let reference = assert_transformers_agrees(&out, &texts_of(&[sample]), &scratch);
    for (role, id) in [
        ("cls", s.cls),
        ("sep", s.sep),
        ("pad", s.pad),
        ("mask", s.mask),
    ] {
        assert_eq!(
            reference["special"][role].as_u64(),
            Some(u64::from(id)),
            "{role}"
        );
    }
    let a_b: Vec<u32> = reference["with_special"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        ext.encode_with_special("a b").unwrap(),
        a_b,
        "[CLS] a b [SEP]"
    );
}

#[test]
fn modernbert_extension_appends_after_the_fillers_and_matches_transformers() {
    check_modernbert_extension("modernbert");
}

#[test]
fn modernbert_with_nfc_extension_matches_transformers() {
    check_modernbert_extension("modernbert-nfc");
}

#[test]
#[ignore = "needs ../shared (PubMed CDR, bert-base-uncased)"]
fn extensions_match_transformers_on_every_pubmed_cdr_abstract() {
    let data = shared_dir().join("data/pubmed-cdr");
    let inputs = [data.join("train.jsonl"), data.join("valid.jsonl")];
    let corpus = CorpusConfig {
        validation_inputs: vec![inputs[1].display().to_string()],
        validation_fraction: None,
        ..corpus_of(&inputs[..1])
    };
    let texts = texts_of(&inputs);
    let scratch = Scratch::new("pubmed");
    let bert = shared_dir().join("tokenizers/bert-base-uncased");
    let base = DomainTokenizer::load(&bert, None).unwrap();
    let out = scratch.join("bert-1000");
    let report = extend(&corpus, &bert, 1000, &out);
    assert_extension_invariants(&base, &report, 1000);
    assert_eq!(
        report.tokenizer.extension().unwrap().reused(),
        994,
        "bert-base's [unused0..993]"
    );
    assert_transformers_agrees(&out, &texts, &scratch);

    let bpe = scratch.join("bpe-8000");
    train_base(&corpus, VocabModel::Bpe, 8000, &bpe);
    let base = DomainTokenizer::load(&bpe, None).unwrap();
    let out = scratch.join("bpe-ext");
    let report = extend(&corpus, &bpe, 1000, &out);
    assert_extension_invariants(&base, &report, 1000);
    assert_transformers_agrees(&out, &texts, &scratch);
}
