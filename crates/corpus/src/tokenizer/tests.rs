use super::*;
use crate::config::VocabConfig;
use crate::testutil::{TempDir, tiny_vocab, write_tiny_vocab};
use crate::tokenizer::{HfClass, TokenizerModel};

fn tiny(dir: &TempDir) -> DomainTokenizer {
    write_tiny_vocab(dir.path());
    DomainTokenizer::load(dir.path(), None).unwrap()
}

#[test]
fn vocab_txt_builds_a_bert_tokenizer() {
    let dir = TempDir::new("tok-vocab");
    let t = tiny(&dir);
    let s = t.special_ids();
    assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
    assert_eq!(s.all, [0, 1, 2, 3, 4]);
    assert_eq!(t.vocab_size() as usize, tiny_vocab().len());
    assert!(t.do_lower_case());
    let id = |w: &str| t.token_to_id(w).unwrap();
    assert_eq!(
        t.encode("The CAT sat.").unwrap(),
        [id("the"), id("cat"), id("sat"), id(".")]
    );
    assert_eq!(
        t.encode_with_special("the cat").unwrap(),
        [s.cls, id("the"), id("cat"), s.sep]
    );
    // [MASK] in text is the special token, never split.
    assert_eq!(
        t.encode("the [MASK] sat").unwrap(),
        [id("the"), s.mask, id("sat")]
    );
    assert_eq!(
        t.decode(&[s.cls, id("the"), id("cat"), id("##s"), s.sep])
            .unwrap(),
        "the cats"
    );
    assert_eq!(t.id_to_token(id("mat")).as_deref(), Some("mat"));
}

#[test]
fn word_starts_follow_pre_tokenizer_words() {
    let dir = TempDir::new("tok-words");
    let t = tiny(&dir);
    let (ids, starts) = t.encode_words("unaffable don't cats").unwrap();
    let tokens: Vec<String> = ids.iter().map(|&i| t.id_to_token(i).unwrap()).collect();
    assert_eq!(
        tokens,
        ["un", "##aff", "##able", "don", "'", "t", "cat", "##s"]
    );
    assert_eq!(starts, [true, false, false, true, true, true, true, false]);
    assert_eq!(
        word_starts(&[None, Some(0), Some(0), None, Some(1)]),
        [true, true, false, true, true]
    );
}

#[test]
fn fingerprint_survives_reserialisation_and_sees_changes() {
    let dir = TempDir::new("tok-fp");
    let t = tiny(&dir);
    let out = TempDir::new("tok-fp-out");
    t.write_hf_files(out.path(), 128).unwrap();
    for name in [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        assert!(out.path().join(name).is_file(), "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(out.path().join("vocab.txt")).unwrap(),
        std::fs::read_to_string(dir.path().join("vocab.txt")).unwrap()
    );
    let from_json = DomainTokenizer::load(&out.path().join("tokenizer.json"), None).unwrap();
    assert_eq!(from_json.fingerprint(), t.fingerprint());
    assert_eq!(from_json.model_max_length(), Some(128));
    // Saved again, byte-for-byte different or not, the fingerprint holds.
    let again = TempDir::new("tok-fp-again");
    from_json.write_hf_files(again.path(), 512).unwrap();
    assert_eq!(
        DomainTokenizer::load(again.path(), None)
            .unwrap()
            .fingerprint(),
        t.fingerprint()
    );

    let cased = DomainTokenizer::load(&dir.path().join("vocab.txt"), Some(false)).unwrap();
    assert!(!cased.do_lower_case());
    assert_ne!(cased.fingerprint(), t.fingerprint());
    let bigger = TempDir::new("tok-fp-bigger");
    std::fs::write(
        bigger.path().join("vocab.txt"),
        tiny_vocab().join("\n") + "\nextra\n",
    )
    .unwrap();
    assert_ne!(
        DomainTokenizer::load(bigger.path(), None)
            .unwrap()
            .fingerprint(),
        t.fingerprint()
    );
}

#[test]
fn bad_tokenizers_are_clear_errors() {
    let dir = TempDir::new("tok-bad");
    let err = |p: &std::path::Path, lower| DomainTokenizer::load(p, lower).unwrap_err().to_string();
    assert!(err(&dir.path().join("nope.json"), None).contains("no such file"));
    assert!(
        err(dir.path(), None)
            .contains("holds no tokenizer.json, vocab.txt, or vocab.json with merges.txt")
    );
    let broken = dir.write("broken/tokenizer.json", "{\"model\": 3}");
    assert!(
        err(&broken, None).contains("not a valid tokenizer.json"),
        "{}",
        err(&broken, None)
    );
    let no_mask = dir.write("nomask/vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n");
    assert!(err(&no_mask, None).contains("no [MASK]"));
    let good = TempDir::new("tok-bad-good");
    tiny(&good)
        .write_hf_files(&dir.path().join("json"), 64)
        .unwrap();
    let e = err(&dir.path().join("json/tokenizer.json"), Some(false));
    assert!(e.contains("lowercase = false"), "{e}");
    let bad_utf8 = dir.write("utf8/vocab.txt", b"[PAD]\n\xff\n");
    assert!(err(&bad_utf8, None).contains("line 2: invalid UTF-8"));
}

/// The same corpus trains the same WordPiece vocabulary, ids included, every time (tokenizers'
/// own trainer numbered its `##` symbols in hash-map order, and merges that tie follow ids).
#[test]
fn wordpiece_training_gives_one_vocabulary() {
    let texts: Vec<String> = crate::testutil::fixture_texts();
    let config = VocabConfig {
        vocab_size: 400,
        min_frequency: 1,
        ..VocabConfig::default()
    };
    let vocab = || {
        let t = crate::tokenizer::train::train_wordpiece(&config, texts.iter().cloned()).unwrap();
        let mut v: Vec<(String, u32)> = t.inner().get_vocab(true).into_iter().collect();
        v.sort_by_key(|e| e.1);
        v
    };
    let first = vocab();
    assert!(first.len() > 120, "{}", first.len());
    for _ in 0..4 {
        assert!(vocab() == first, "a second training differs");
    }
}

#[test]
fn trained_wordpiece_puts_specials_first() {
    let texts: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "Patients with cancer number {i} were treated with aspirin; the dose was {}.",
                i % 7
            )
        })
        .collect();
    let config = VocabConfig {
        vocab_size: 120,
        min_frequency: 1,
        ..VocabConfig::default()
    };
    let t = crate::tokenizer::train::train_wordpiece(&config, texts.into_iter()).unwrap();
    let s = t.special_ids();
    assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
    assert!(
        t.vocab_size() <= 120 && t.vocab_size() > 40,
        "{}",
        t.vocab_size()
    );
    let ids = t.encode_with_special("patients were treated").unwrap();
    assert_eq!((ids[0], *ids.last().unwrap()), (2, 3));
    assert!(!ids.contains(&s.unk));
    assert_eq!(t.decode(&ids).unwrap(), "patients were treated");
    // Round trip through the Hugging Face files keeps the fingerprint.
    let dir = TempDir::new("tok-train");
    t.write_hf_files(dir.path(), 512).unwrap();
    assert_eq!(
        DomainTokenizer::load(dir.path(), None)
            .unwrap()
            .fingerprint(),
        t.fingerprint()
    );
    assert_eq!(
        DomainTokenizer::load(&dir.path().join("vocab.txt"), None)
            .unwrap()
            .fingerprint(),
        t.fingerprint()
    );
}

/// `MLM_SHARED_DIR` (default `../shared` from the workspace root).
fn shared_dir() -> std::path::PathBuf {
    std::env::var_os("MLM_SHARED_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
#[ignore = "needs ../shared"]
fn bert_base_uncased_vocab_txt_and_tokenizer_json_agree() {
    let dir = shared_dir().join("tokenizers/bert-base-uncased");
    let json = DomainTokenizer::load(&dir.join("tokenizer.json"), None).unwrap();
    let vocab = DomainTokenizer::load(&dir.join("vocab.txt"), None).unwrap();
    let s = json.special_ids();
    assert_eq!(
        (s.pad, s.unk, s.cls, s.sep, s.mask),
        (0, 100, 101, 102, 103)
    );
    assert_eq!(json.vocab_size(), 30_522);
    assert_eq!(json.model_max_length(), Some(512));
    assert!(json.do_lower_case());
    // The vocab.txt build is the tokenizer transformers converts it to: same fingerprint.
    assert_eq!(json.fingerprint(), vocab.fingerprint());
    let text =
        "Naloxone reverses the antihypertensive effect of clonidine (5-20 µg/kg) in SHR rats.";
    assert_eq!(
        json.encode_words(text).unwrap(),
        vocab.encode_words(text).unwrap()
    );
    let written = TempDir::new("tok-bert-written");
    vocab.write_hf_files(written.path(), 512).unwrap();
    assert_eq!(
        DomainTokenizer::load(written.path(), None)
            .unwrap()
            .fingerprint(),
        json.fingerprint()
    );
}

#[test]
#[ignore = "needs ../shared"]
fn fast_path_equals_the_full_tokenizer_on_pubmed_cdr() {
    let shared = shared_dir();
    let dir = shared.join("tokenizers/bert-base-uncased");
    let t = DomainTokenizer::load(&dir, None).unwrap();
    assert!(t.has_fast_path());
    let mut full = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    // This tokenizer.json truncates and pads (to 128); prepare does neither.
    full.with_truncation(None).unwrap();
    full.with_padding(None);
    let mut documents = 0;
    for file in ["train.jsonl", "valid.jsonl"] {
        let text = std::fs::read_to_string(shared.join("data/pubmed-cdr").join(file)).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let doc = format!(
                "{} {}",
                v["title"].as_str().unwrap(),
                v["abstract"].as_str().unwrap()
            );
            let e = full.encode(doc.as_str(), false).unwrap();
            let expected = (e.get_ids().to_vec(), word_starts(e.get_word_ids()));
            assert_eq!(t.encode_words(&doc).unwrap(), expected, "{doc}");
            documents += 1;
        }
    }
    assert!(documents > 2000);
}

#[test]
fn trained_bpe_has_roberta_layout_and_byte_level_words() {
    let t = crate::testutil::tiny_bpe();
    let s = t.special_ids();
    assert_eq!((s.cls, s.pad, s.sep, s.unk, s.mask), (0, 1, 2, 3, 299));
    assert_eq!(s.all, [0, 1, 2, 3, 299]);
    assert_eq!(t.vocab_size(), 300);
    assert_eq!(t.model(), TokenizerModel::Bpe);
    assert!(!t.has_fast_path() && !t.do_lower_case());
    assert!(matches!(
        t.hf_class(),
        HfClass::Roberta {
            add_prefix_space: false,
            trim_offsets: true
        }
    ));
    // A word is the pre-tokenizer's: a `Ġ`-led piece run, punctuation and digits apart.
    let (ids, starts) = t.encode_words("Liver kinase, 12 cats").unwrap();
    let tokens: Vec<String> = ids.iter().map(|&i| t.id_to_token(i).unwrap()).collect();
    assert_eq!(tokens.concat(), "LiverĠkinase,Ġ12Ġcats");
    for (i, (token, start)) in tokens.iter().zip(&starts).enumerate() {
        let leads = i == 0 || token.starts_with('Ġ') || token == ",";
        assert_eq!(*start, leads, "{tokens:?} {starts:?}");
    }
    assert!(starts.contains(&false), "the tiny vocabulary splits words");
    let with = t.encode_with_special("cats").unwrap();
    assert_eq!((with[0], *with.last().unwrap()), (0, 2));
    assert_eq!(t.decode(&with).unwrap(), "cats");
    // `<mask>` takes the space before it (lstrip), as in roberta-base.
    let expected = [
        t.encode("Liver").unwrap(),
        vec![s.mask],
        t.encode(" kinase").unwrap(),
    ]
    .concat();
    assert_eq!(t.encode("Liver <mask> kinase").unwrap(), expected);
}

#[test]
fn trained_modernbert_bpe_puts_specials_last_and_round_trips() {
    use crate::config::{VocabLayout, VocabModel};
    let config = |special_tokens: Option<&[&str]>| VocabConfig {
        model: VocabModel::Bpe,
        layout: Some(VocabLayout::ModernBert),
        vocab_size: 300,
        min_frequency: 1,
        special_tokens: special_tokens.map(|t| t.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let texts = crate::testutil::fixture_texts();
    let t = train::train(&config(None), texts.clone().into_iter()).unwrap();
    let s = t.special_ids();
    // ModernBERT-base's order after the BPE entries: [UNK] [CLS] [SEP] [PAD] [MASK].
    assert_eq!(
        (s.unk, s.cls, s.sep, s.pad, s.mask),
        (295, 296, 297, 298, 299)
    );
    assert_eq!(s.all, [295, 296, 297, 298, 299]);
    assert_eq!(t.special_tokens(), &SpecialTokens::bert());
    assert_eq!(t.hf_class(), HfClass::Generic);
    assert_eq!(
        t.inner().get_vocab(false).len(),
        295,
        "specials are added tokens"
    );
    let cats = t.encode("cats").unwrap();
    let with = t.encode_with_special("cats").unwrap();
    assert_eq!(with, [&[296][..], &cats, &[297]].concat());
    let pair = t.inner().encode(("a", "b"), true).unwrap();
    let (a, b) = (t.encode("a").unwrap(), t.encode("b").unwrap());
    assert_eq!(
        pair.get_ids(),
        [&[296][..], &a, &[297], &b, &[297]].concat()
    );
    assert_eq!(
        t.encode("Liver [MASK] kinase").unwrap(),
        [
            t.encode("Liver").unwrap(),
            vec![299],
            t.encode(" kinase").unwrap()
        ]
        .concat(),
        "[MASK] takes the space before it"
    );
    // Written and loaded again: the same tokenizer, the keys ModernBERT's config has.
    let dir = TempDir::new("tok-modernbert");
    let files = t.write_hf_files(dir.path(), 8192).unwrap();
    assert!(!files.iter().any(|f| f == "vocab.json"), "{files:?}");
    let again = DomainTokenizer::load(dir.path(), None).unwrap();
    assert_eq!(again.fingerprint(), t.fingerprint());
    assert_eq!(again.special_ids(), t.special_ids());
    assert_eq!(
        again.model_input_names().unwrap(),
        ["input_ids", "attention_mask"]
    );
    assert_eq!(again.clean_up_tokenization_spaces(), Some(true));
    assert_eq!(again.model_max_length(), Some(8192));
    // special_tokens sets the order of the last ids.
    let order = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let t = train::train(&config(Some(&order)), texts.into_iter()).unwrap();
    let s = t.special_ids();
    assert_eq!(
        (s.pad, s.unk, s.cls, s.sep, s.mask),
        (295, 296, 297, 298, 299)
    );
    let e = train::train(&config(Some(&order[..4])), std::iter::empty()).unwrap_err();
    assert!(e.to_string().contains("must include [MASK]"), "{e}");
}

#[test]
fn vocab_json_and_merges_txt_build_the_roberta_tokenizer() {
    let t = crate::testutil::tiny_bpe();
    let dir = TempDir::new("tok-vocab-json");
    let files = t.write_hf_files(dir.path(), 512).unwrap();
    assert_eq!(
        files,
        [
            "tokenizer.json",
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "special_tokens_map.json"
        ]
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["tokenizer_class"], "RobertaTokenizer");
    assert_eq!(config["bos_token"], "<s>");
    assert_eq!(config["mask_token"], "<mask>");
    assert_eq!(config["added_tokens_decoder"]["299"]["lstrip"], true);
    let map: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("special_tokens_map.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(map["mask_token"]["lstrip"], true);
    let merges = std::fs::read_to_string(dir.path().join("merges.txt")).unwrap();
    assert!(merges.starts_with("#version: 0.2\n"));
    // The bare slow files, no config at all: roberta-base's defaults, `<mask>` with lstrip.
    let bare = TempDir::new("tok-vocab-json-bare");
    for name in ["vocab.json", "merges.txt"] {
        std::fs::copy(dir.path().join(name), bare.path().join(name)).unwrap();
    }
    let from_files = DomainTokenizer::load(bare.path(), None).unwrap();
    assert_eq!(from_files.fingerprint(), t.fingerprint());
    assert_eq!(from_files.special_ids(), t.special_ids());
    assert_eq!(
        DomainTokenizer::file_in(bare.path()),
        Some(bare.path().join("vocab.json"))
    );
    let by_merges = DomainTokenizer::load(&bare.path().join("merges.txt"), None).unwrap();
    assert_eq!(by_merges.fingerprint(), t.fingerprint());
    let text = "Liver <mask> kinase, 東京 😀";
    assert_eq!(
        from_files.encode_words(text).unwrap(),
        t.encode_words(text).unwrap()
    );
    // Written again from the slow files: the same vocab.json and merges.txt.
    let again = TempDir::new("tok-vocab-json-again");
    from_files.write_hf_files(again.path(), 512).unwrap();
    for name in ["vocab.json", "merges.txt"] {
        assert_eq!(
            std::fs::read(again.path().join(name)).unwrap(),
            std::fs::read(dir.path().join(name)).unwrap(),
            "{name}"
        );
    }
    // `add_prefix_space` from the config changes the tokenizer.
    bare.write("tokenizer_config.json", r#"{"add_prefix_space": true}"#);
    let prefixed = DomainTokenizer::load(bare.path(), None).unwrap();
    assert_ne!(prefixed.fingerprint(), t.fingerprint());
    assert_eq!(prefixed.encode("cats").unwrap(), t.encode(" cats").unwrap());
    std::fs::remove_file(bare.path().join("merges.txt")).unwrap();
    let e = DomainTokenizer::load(&bare.path().join("vocab.json"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no merges.txt beside it"), "{e}");
    let e = DomainTokenizer::load(bare.path(), Some(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no tokenizer.json"), "{e}");
}

#[test]
fn special_tokens_follow_the_tokenizer_config() {
    let dir = TempDir::new("tok-names");
    write_tiny_vocab(dir.path());
    // A config may name other tokens for the roles (here an ordinary word, to check).
    dir.write(
        "tokenizer_config.json",
        r#"{"mask_token": "mat", "do_lower_case": true}"#,
    );
    let t = DomainTokenizer::load(dir.path(), None).unwrap();
    assert_eq!(t.special_tokens().mask, "mat");
    assert_eq!(t.special_ids().mask, t.token_to_id("mat").unwrap());
    assert_eq!(t.special_tokens().cls, "[CLS]");
    dir.write(
        "special_tokens_map.json",
        r#"{"mask_token": {"content": "<nope>"}}"#,
    );
    let e = DomainTokenizer::load(dir.path(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no <nope> token (its mask_token) in the vocabulary"),
        "{e}"
    );
}
