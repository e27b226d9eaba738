//! The RoBERTa / XLM-R / CamemBERT / ModernBERT tokenizer families against Hugging Face:
//! tokenizers that tests/python/tokenizer_families.py trains with `tokenizers` and saves with
//! `transformers` (byte-level BPE as roberta-base's slow files or tokenizer.json, Unigram as
//! XLM-R and as `SentencePieceUnigramTokenizer`, ModernBERT-base's byte-level BPE with
//! `[CLS]`/`[SEP]` specials at the end, with and without NFC), and the byte-level BPEs `vocab train` makes (both
//! layouts). For each: our ids and word starts equal `AutoTokenizer(...,
//! add_special_tokens=False)` and its `word_ids()` on adversarial text (the `tokenizers`
//! library's where there is a tokenizer.json; the two agree but for Unigram ties within one
//! ulp, see `a_unigram_tie_within_one_ulp_...`), the special ids,
//! vocabulary size and framing agree, and the files we write load in `AutoTokenizer` with
//! the same ids (and back in ours with the same fingerprint). `prepare` with the ModernBERT
//! replica packs exactly transformers' `[CLS] ... [SEP]` encodings.
//!
//! Needs the project's Python venv (`scripts/setup`).

use std::path::{Path, PathBuf};

use mlm_corpus::{
    CorpusConfig, DomainTokenizer, HfClass, Packing, PrepareOptions, PreparedCorpus, Quiet, Split,
    TokenizerModel, VocabConfig, VocabLayout, VocabModel, prepare, train_vocab,
};
use serde_json::{Value, json};

/// Text that stresses normalisers and pre-tokenizers: accents and combining marks, CJK,
/// emoji, control characters, many kinds of whitespace, very long words, special tokens
/// written in the text, and nothing at all.
const ADVERSARIAL: &[&str] = &[
    "",
    " ",
    "     ",
    "\t\n\r\n",
    "Hello world",
    " Hello world ",
    "many    spaces   between\twords\n\nand lines",
    "Café naïve façade — Über straße, e\u{301} combining, \u{301}leading mark",
    "東京都の病院で臨床試験。北京和上海 mixed東京text",
    "Emoji 😀😀 ☺ 👩\u{200d}🔬 flags 🇫🇷 and \u{fffd}",
    "control\u{0}chars\u{1}\u{7}\u{1b}[0m and \u{7f} del",
    "nbsp\u{a0}here, line\u{2028}sep, ideographic\u{3000}space, zero\u{200b}width",
    "Внутривенное введение; مرضى السكري; ελληνικά ΣΑΣ",
    "don't can't I'm we'll they've she'd it's 'quoted' \"double\"",
    "IL-6 β-blockers (p<0.05), 10µg/kg, 3.14159, 1,000,000 and x²+y²",
    "Hello <mask> world",
    "<mask> first, last <mask>",
    "a<mask>b  <mask>   <mask>",
    "<s> tags </s> in <pad> text <unk>",
    "[CLS] tags [SEP] in [PAD] text [UNK] and [MASK]",
    "Hello [MASK] world, a[MASK]b  [MASK]   [MASK] [MASK]",
    "|||IP_ADDRESS||| <|endoftext|><|padding|> [unused0] [unused1000] [unused",
    "https://example.org/path?q=1&r=2#frag user@example.com",
    "!!!!!!!!!!!!????????........-----",
    "pneumonoultramicroscopicsilicovolcanoconiosispneumonoultramicroscopicsilicovolcanoconiosispneumonoultramicroscopicsilicovolcanoconiosis",
];

/// A fresh directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mlm-corpus-families-{}-{name}", std::process::id()));
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

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Texts for the tests: the adversarial ones plus very long words.
fn adversarial() -> Vec<String> {
    let mut texts: Vec<String> = ADVERSARIAL.iter().map(|s| s.to_string()).collect();
    texts.push("a".repeat(3000));
    texts.push(format!("{} tail", "ab\u{e9}".repeat(700)));
    texts.push("東".repeat(500));
    texts
}

/// `tokenizer_families.py make KIND DIR [args]`.
fn make(kind: &str, dir: &Path, args: &[&str]) {
    let mut all: Vec<&std::ffi::OsStr> = vec!["make".as_ref(), kind.as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    mlm_pyref::run("tokenizer_families.py", all);
}

/// `tokenizer_families.py encode DIR TEXTS.json`: transformers' view of `texts`.
fn reference(dir: &Path, texts: &[String], scratch: &Scratch) -> Value {
    let file = scratch.join("texts.json");
    std::fs::write(&file, serde_json::to_string(texts).unwrap()).unwrap();
    let out = mlm_pyref::run(
        "tokenizer_families.py",
        ["encode".as_ref(), dir.as_os_str(), file.as_os_str()],
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// Our ids and word starts equal the reference's, text by text.
fn assert_same_encodings(tok: &DomainTokenizer, reference: &Value, texts: &[String], what: &str) {
    let rows = reference["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), texts.len());
    for (text, row) in texts.iter().zip(rows) {
        let starts: Vec<bool> = row["starts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        let (our_ids, our_starts) = tok.encode_words(text).unwrap();
        let expected = ids(&row["ids"]);
        if our_ids != expected {
            let tokens = |ids: &[u32]| -> Vec<String> {
                ids.iter()
                    .map(|&i| tok.id_to_token(i).unwrap_or_default())
                    .collect()
            };
            panic!(
                "{what}: ids differ on {text:?}\n  ours         {:?}\n  reference    {:?}",
                tokens(&our_ids),
                tokens(&expected)
            );
        }
        assert_eq!(our_starts, starts, "{what}: word starts differ on {text:?}");
    }
}

/// The special ids, vocabulary size and special-token encodings (one text, a pair) agree
/// with transformers'. Our `all` also holds the added tokens flagged special that no role
/// names (ModernBERT's `<|endoftext|>`), which transformers' `all_special_ids` leaves out.
fn assert_same_specials(tok: &DomainTokenizer, reference: &Value, what: &str) {
    let s = tok.special_ids();
    let r = &reference["special"];
    for (role, id) in [
        ("cls", s.cls),
        ("sep", s.sep),
        ("pad", s.pad),
        ("mask", s.mask),
        ("unk", s.unk),
    ] {
        assert_eq!(r[role].as_u64(), Some(u64::from(id)), "{what}: {role}");
    }
    let mut all = ids(&reference["all_special_ids"]);
    all.extend(ids(&reference["special_added"]));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, s.all, "{what}");
    assert_eq!(
        reference["len"].as_u64(),
        Some(u64::from(tok.vocab_size())),
        "{what}: len(tokenizer)"
    );
    assert_eq!(
        tok.encode_with_special("a b").unwrap(),
        ids(&reference["with_special"]),
        "{what}: with special tokens"
    );
    let pair = tok.inner().encode(("a", "b"), true).unwrap();
    assert_eq!(pair.get_ids(), ids(&reference["pair"]), "{what}: a pair");
}

/// [`check_named_family`] for a family with RoBERTa's `<s>` and `<mask>`.
fn check_family(kind: &str, class: &str, model: TokenizerModel) {
    check_named_family(kind, class, model, ["<s>", "<mask>"]);
}

/// One family: the Python-made tokenizer in ours (its cls and mask named `[cls, mask]`),
/// then our files in transformers. Returns the scratch directory (the source is
/// `source` in it), our tokenizer and transformers' view of the source.
fn check_named_family(
    kind: &str,
    class: &str,
    model: TokenizerModel,
    [cls, mask]: [&str; 2],
) -> (Scratch, DomainTokenizer, Value) {
    let scratch = Scratch::new(kind);
    let source = scratch.join("source");
    make(kind, &source, &[]);
    let texts = adversarial();
    let tok = DomainTokenizer::load(&source, None).unwrap();
    assert_eq!(tok.model(), model, "{kind}");
    assert!(
        !tok.has_fast_path(),
        "{kind}: the WordPiece fast path is WordPiece's only (BPE and Unigram take the split one)"
    );
    assert_eq!(tok.special_tokens().cls, cls, "{kind}");
    assert_eq!(tok.special_tokens().mask, mask, "{kind}");
    let source_ref = reference(&source, &texts, &scratch);
    assert_same_encodings(&tok, &source_ref, &texts, kind);
    if source_ref["special"]["cls"].is_u64() {
        assert_same_specials(&tok, &source_ref, kind);
    }

    // Our files: transformers loads them with no conversion and the same ids.
    let written = scratch.join("written");
    let files = tok.write_hf_files(&written, 512).unwrap();
    assert_eq!(tok.hf_class().name(), class, "{kind}");
    // The slow files of a RobertaTokenizer; a PreTrainedTokenizerFast is its tokenizer.json.
    let slow = files.iter().any(|f| f == "vocab.json") && files.iter().any(|f| f == "merges.txt");
    assert_eq!(slow, class == "RobertaTokenizer", "{kind}: {files:?}");
    assert!(!files.iter().any(|f| f == "vocab.txt"), "{kind}: {files:?}");
    let written_ref = reference(&written, &texts, &scratch);
    let loaded_as = if class == "PreTrainedTokenizerFast" {
        "TokenizersBackend" // transformers 5's name for it
    } else {
        class
    };
    assert_eq!(written_ref["class"], loaded_as, "{kind}");
    assert_eq!(
        written_ref["model_input_names"], source_ref["model_input_names"],
        "{kind}"
    );
    assert_same_encodings(&tok, &written_ref, &texts, &format!("{kind} written"));
    assert_same_specials(&tok, &written_ref, &format!("{kind} written"));
    let again = DomainTokenizer::load(&written, None).unwrap();
    assert_eq!(again.fingerprint(), tok.fingerprint(), "{kind}");
    assert_eq!(again.special_ids(), tok.special_ids(), "{kind}");
    (scratch, tok, source_ref)
}

#[test]
fn roberta_slow_files_match_transformers() {
    check_family("roberta-files", "RobertaTokenizer", TokenizerModel::Bpe);
}

#[test]
fn roberta_tokenizer_json_matches_transformers() {
    check_family("roberta-json", "RobertaTokenizer", TokenizerModel::Bpe);
}

#[test]
fn roberta_with_a_prefix_space_matches_transformers() {
    check_family("roberta-prefix", "RobertaTokenizer", TokenizerModel::Bpe);
}

#[test]
fn xlm_roberta_unigram_matches_transformers() {
    check_family("xlmr", "XLMRobertaTokenizer", TokenizerModel::Unigram);
}

/// A Unigram tie within one ulp of the scores (`xlmr-ulp-tie`): transformers 5's
/// XLMRobertaTokenizer reads tokenizer.json's scores with Python's float parser, the
/// `tokenizers` library (and transformers 4, and `PreTrainedTokenizerFast`) with serde_json's,
/// which reads some 17-digit scores 1 ulp off. We follow `tokenizers`, by the same parser:
/// the reference counts the texts where transformers differs only by that.
#[test]
fn a_unigram_tie_within_one_ulp_breaks_as_the_tokenizers_library_breaks_it() {
    let scratch = Scratch::new("ulp-tie");
    let dir = scratch.join("xlmr-ulp-tie");
    make("xlmr-ulp-tie", &dir, &[]);
    let tok = DomainTokenizer::load(&dir, None).unwrap();
    let texts: Vec<String> = ["6111", "x 6111-6121 y", "16111"].map(String::from).into();
    let r = reference(&dir, &texts, &scratch);
    assert_eq!(r["score_parse_ties"], 2, "the tie no longer flips: {r}");
    assert_same_encodings(&tok, &r, &texts, "xlmr-ulp-tie");
    let (ids, _) = tok.encode_words("6111").unwrap();
    let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    assert_eq!(pieces, ["\u{2581}6", "11", "1"]);
}

#[test]
fn sentencepiece_unigram_matches_transformers() {
    check_family(
        "spm-unigram",
        "PreTrainedTokenizerFast",
        TokenizerModel::Unigram,
    );
}

/// ModernBERT-base's layout as our tokenizer sees it: `[UNK]` .. `[MASK]` consecutive after
/// the BPE entries and `<|endoftext|>`, `[unusedN]` fillers up to a multiple of 64 after
/// them, `[CLS] ... [SEP]` framing, `[MASK]` owning the space before it.
fn assert_modernbert_layout(tok: &DomainTokenizer, fillers: bool, what: &str) {
    let s = tok.special_ids();
    let u = s.unk;
    assert_eq!(
        (s.cls, s.sep, s.pad, s.mask),
        (u + 1, u + 2, u + 3, u + 4),
        "{what}"
    );
    assert_eq!(tok.hf_class(), HfClass::Generic, "{what}");
    if fillers {
        assert_eq!(tok.vocab_size() % 64, 0, "{what}");
        let last = tok.id_to_token(tok.vocab_size() - 1).unwrap();
        assert!(last.starts_with("[unused"), "{what}: {last}");
        assert_eq!(tok.id_to_token(u - 1).as_deref(), Some("<|endoftext|>"));
    } else {
        assert_eq!(s.mask, tok.vocab_size() - 1, "{what}");
    }
    let a = tok.encode("a").unwrap();
    assert_eq!(
        tok.encode_with_special("a").unwrap(),
        [&[s.cls][..], &a, &[s.sep]].concat(),
        "{what}"
    );
    let hello = tok.encode("hello").unwrap();
    assert_eq!(
        tok.encode("hello [MASK]").unwrap(),
        [&hello[..], &[s.mask]].concat(),
        "{what}: [MASK] takes the space before it"
    );
}

#[test]
fn modernbert_matches_transformers() {
    for kind in ["modernbert", "modernbert-nfc"] {
        let (_scratch, tok, r) = check_named_family(
            kind,
            "PreTrainedTokenizerFast",
            TokenizerModel::Bpe,
            ["[CLS]", "[MASK]"],
        );
        assert_modernbert_layout(&tok, true, kind);
        let inputs = ["input_ids", "attention_mask"];
        assert_eq!(r["model_input_names"], json!(inputs), "{kind}");
        assert_eq!(tok.model_input_names().unwrap(), inputs, "{kind}");
        let names = tok.special_tokens();
        assert_eq!(
            [&names.unk, &names.sep, &names.pad],
            ["[UNK]", "[SEP]", "[PAD]"]
        );
        // Our `all`: the five, <|padding|> and <|endoftext|> (special added tokens).
        let s = tok.special_ids();
        let mut all = vec![1, s.unk - 1, s.unk, s.cls, s.sep, s.pad, s.mask];
        all.sort_unstable();
        assert_eq!(s.all, all, "{kind}");
        // NFC composes "e" + U+0301 into "é" before the byte-level split.
        let composed = tok.encode("e\u{301}").unwrap() == tok.encode("\u{e9}").unwrap();
        assert_eq!(composed, kind == "modernbert-nfc");
    }
}

/// The fixture abstracts as a corpus (10% held out).
fn fixture_corpus() -> CorpusConfig {
    CorpusConfig {
        inputs: vec![fixture("abstracts.jsonl").display().to_string()],
        text_fields: vec!["title".into(), "abstract".into()],
        id_field: Some("pmid".into()),
        validation_fraction: Some(0.1),
        ..CorpusConfig::default()
    }
}

/// The fixture's documents as the corpus reads them: title and abstract joined by a space.
fn fixture_docs() -> Vec<String> {
    std::fs::read_to_string(fixture("abstracts.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let fields = [
                v["title"].as_str().unwrap(),
                v["abstract"].as_str().unwrap(),
            ];
            let present: Vec<&str> = fields
                .into_iter()
                .filter(|t| !t.trim().is_empty())
                .collect();
            present.join(" ")
        })
        .collect()
}

#[test]
fn prepare_packs_transformers_modernbert_encodings() {
    let scratch = Scratch::new("prepare-modernbert");
    let source = scratch.join("source");
    make("modernbert", &source, &[]);
    let out = scratch.join("prepared");
    // One sequence per document: each is `[CLS] document [SEP]`, comparable one to one.
    let corpus = CorpusConfig {
        tokenizer: Some(source.clone()),
        output: Some(out.clone()),
        max_seq_len: 4096,
        packing: Packing::Document,
        validation_fraction: Some(0.2),
        ..fixture_corpus()
    };
    let options = PrepareOptions {
        observer: &Quiet,
        stop_after_shards: None,
    };
    let m = prepare(&corpus, &options).unwrap().manifest;
    let docs = fixture_docs();
    let r = reference(&source, &docs, &scratch);
    assert_eq!(m.tokenizer_model, Some(TokenizerModel::Bpe));
    let (s, names) = (&m.special_ids, &m.special_tokens);
    assert_eq!(
        [&names.cls, &names.sep, &names.pad, &names.mask, &names.unk],
        ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"]
    );
    for (role, id) in [
        ("cls", s.cls),
        ("sep", s.sep),
        ("pad", s.pad),
        ("mask", s.mask),
        ("unk", s.unk),
    ] {
        assert_eq!(r["special"][role].as_u64(), Some(u64::from(id)), "{role}");
    }
    assert_eq!(r["len"].as_u64(), Some(u64::from(m.vocab_size)));
    let prepared = PreparedCorpus::open(&out).unwrap();
    let mut got = Vec::new();
    for split in [Split::Train, Split::Validation] {
        let mut reader = prepared.split(split).unwrap();
        for i in 0..reader.len() {
            let q = reader.get(i).unwrap();
            got.push((q.input_ids, q.word_starts));
        }
    }
    let mut expected: Vec<(Vec<u32>, Vec<bool>)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let starts = row["starts"].as_array().unwrap().iter();
            let starts = starts.map(|b| b.as_bool().unwrap());
            (
                [&[s.cls][..], &ids(&row["ids"]), &[s.sep]].concat(),
                std::iter::once(true).chain(starts).chain([true]).collect(),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got.len(), docs.len());
    assert_eq!(
        got, expected,
        "prepared sequences vs transformers' [CLS] doc [SEP]"
    );
    // The prepared directory's tokenizer files: the same tokenizer, there and here.
    let written = reference(&out, &docs, &scratch);
    assert_eq!(written["class"], "TokenizersBackend");
    assert_eq!(written["rows"], r["rows"]);
    assert_eq!(written["model_input_names"], r["model_input_names"]);
    let again = DomainTokenizer::load(&out, None).unwrap();
    assert_eq!(again.fingerprint(), m.tokenizer_fingerprint);
}

#[test]
fn vocab_train_modernbert_layout_writes_a_tokenizer_that_transformers_loads() {
    let scratch = Scratch::new("vocab-modernbert");
    let output = scratch.join("tok");
    let vocab = VocabConfig {
        model: VocabModel::Bpe,
        layout: Some(VocabLayout::ModernBert),
        vocab_size: 300,
        min_frequency: 1,
        output: Some(output.clone()),
        ..VocabConfig::default()
    };
    let tok = train_vocab(&fixture_corpus(), &vocab, &Quiet)
        .unwrap()
        .tokenizer;
    assert_eq!(tok.vocab_size(), 300);
    assert_eq!(tok.special_ids().unk, 295, "[UNK] first of the last five");
    assert_modernbert_layout(&tok, false, "vocab train modernbert");
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert!(output.join(file).is_file(), "{file}");
    }
    for file in ["vocab.json", "merges.txt", "vocab.txt"] {
        assert!(!output.join(file).exists(), "{file}");
    }
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(output.join(name)).unwrap()).unwrap()
    };
    let config = read("tokenizer_config.json");
    assert_eq!(config["tokenizer_class"], "PreTrainedTokenizerFast");
    assert_eq!(config["model_max_length"], 8192);
    assert_eq!(
        config["model_input_names"],
        json!(["input_ids", "attention_mask"])
    );
    for (role, name) in tok.special_tokens().roles() {
        assert_eq!(config[format!("{role}_token")], name, "{role}");
    }
    assert_eq!(
        read("special_tokens_map.json")["mask_token"]["lstrip"],
        true
    );
    let mut texts = adversarial();
    texts.extend(fixture_docs());
    let r = reference(&output, &texts, &scratch);
    assert_eq!(r["class"], "TokenizersBackend");
    assert_eq!(
        r["model_input_names"],
        json!(["input_ids", "attention_mask"])
    );
    assert_same_specials(&tok, &r, "vocab train modernbert");
    assert_same_encodings(&tok, &r, &texts, "vocab train modernbert");
}

#[test]
fn vocab_train_bpe_writes_a_roberta_tokenizer_that_transformers_loads() {
    let scratch = Scratch::new("vocab-bpe");
    let output = scratch.join("tok");
    let corpus = fixture_corpus();
    let vocab = VocabConfig {
        model: VocabModel::Bpe,
        vocab_size: 300,
        min_frequency: 1,
        output: Some(output.clone()),
        ..VocabConfig::default()
    };
    let report = train_vocab(&corpus, &vocab, &Quiet).unwrap();
    let tok = report.tokenizer;
    let s = tok.special_ids();
    // roberta-base's layout: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last.
    assert_eq!((s.cls, s.pad, s.sep, s.unk), (0, 1, 2, 3));
    assert_eq!(s.mask, tok.vocab_size() - 1);
    assert_eq!(tok.vocab_size(), 300);
    assert_eq!(tok.model(), TokenizerModel::Bpe);
    assert!(!tok.do_lower_case());
    for file in [
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert!(output.join(file).is_file(), "{file}");
    }
    let mut texts = adversarial();
    texts.push("Patients were treated with aspirin; the kinase inhibits the receptor.".into());
    let r = reference(&output, &texts, &scratch);
    assert_eq!(r["class"], "RobertaTokenizer");
    assert_same_specials(&tok, &r, "vocab train");
    assert_same_encodings(&tok, &r, &texts, "vocab train");

    // The slow files alone (no tokenizer.json) build the same tokenizer, here and there.
    let slow = scratch.join("slow");
    std::fs::create_dir_all(&slow).unwrap();
    for file in [
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(output.join(file), slow.join(file)).unwrap();
    }
    let from_slow = DomainTokenizer::load(&slow, None).unwrap();
    assert_eq!(from_slow.fingerprint(), tok.fingerprint());
    let r = reference(&slow, &texts, &scratch);
    assert_same_encodings(&from_slow, &r, &texts, "vocab train, slow files");
}

/// `MLM_SHARED_DIR` (default `../shared` beside the workspace).
fn shared_dir() -> PathBuf {
    std::env::var_os("MLM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
#[ignore = "needs ../shared (PubMed CDR)"]
fn bpe_and_unigram_match_transformers_on_every_pubmed_cdr_abstract() {
    let data = shared_dir().join("data/pubmed-cdr");
    let (train, valid) = (data.join("train.jsonl"), data.join("valid.jsonl"));
    let scratch = Scratch::new("pubmed");
    let texts_file = scratch.join("docs.json");
    mlm_pyref::run(
        "tokenizer_families.py",
        [
            "jsonl".as_ref(),
            train.as_os_str(),
            valid.as_os_str(),
            "--out".as_ref(),
            texts_file.as_os_str(),
        ],
    );
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&texts_file).unwrap()).unwrap();
    assert!(texts.len() > 2600, "{}", texts.len());
    let train_arg = train.display().to_string();
    for kind in [
        "roberta-json",
        "roberta-files",
        "xlmr",
        "spm-unigram",
        "modernbert",
    ] {
        let dir = scratch.join(kind);
        make(kind, &dir, &["--train", &train_arg, "--vocab-size", "8000"]);
        let tok = DomainTokenizer::load(&dir, None).unwrap();
        let r = reference(&dir, &texts, &scratch);
        assert_same_encodings(&tok, &r, &texts, kind);
    }
}
