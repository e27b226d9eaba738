//! Differential tests of the split fast path: `encode_words` (fast path, cache cold and
//! warm) against `encode_words_general` (the `tokenizers` pipeline) on adversarial and random
//! text, for byte-level BPE in RoBERTa's (prefix space both ways) and ModernBERT's (with and
//! without NFC) layouts and Unigram in XLM-R's (WhitespaceSplit + Metaspace, with and
//! without SentencePiece's Precompiled nmt_nfkc map) and SentencePiece's (Nmt + NFKC +
//! collapsed spaces) layouts. Any one-token difference in ids or word starts fails.

use std::path::{Path, PathBuf};

use tokenizers::models::TrainerWrapper;
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::normalizers::{NFC, NFKC, Nmt, Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, Tokenizer};

use super::FastSplit;
use crate::config::{VocabConfig, VocabLayout, VocabModel};
use crate::testutil::fixture_texts;
use crate::tokenizer::{DomainTokenizer, train};

/// Text that stresses every stage around a cut: accents and combining marks (also right
/// after a space), CJK, emoji and ZWJ sequences, control characters, long runs of spaces
/// and digits, contractions in both cases, CRLF, tabs, NBSP and other Unicode spaces,
/// characters NFKC turns into ASCII or spaces, the Metaspace replacement itself, added
/// tokens (with and without the space `lstrip` takes) and nothing at all.
pub(in crate::tokenizer) const ADVERSARIAL: &[&str] = &[
    "",
    " ",
    "      ",
    "a",
    " leading space",
    "trailing space ",
    "Hello world",
    "many     spaces   between\twords\n\nand lines",
    "crlf\r\nline\r\n\r\nend \r\n x",
    "Café naïve façade — Über straße, e\u{301} combining, \u{301}leading mark, a \u{301}b",
    "東京都の病院で臨床試験。北京和上海 mixed東京text 東 京",
    "Emoji 😀😀 ☺ 👩\u{200d}🔬 flags 🇫🇷 and \u{fffd} x😀 y",
    "control\u{0}chars\u{1}\u{7}\u{1b}[0m and \u{7f} del \u{1c}\u{1d}\u{1e}\u{1f} x \u{1} y",
    "nbsp\u{a0}here, a\u{a0} b, line\u{2028}sep, ideographic\u{3000}space, zero\u{200b}width",
    "en\u{2000}quad a\u{2000} b, diaeresis a\u{a8} b \u{a8}c, kelvin \u{212a} greek\u{37e} x",
    "ligature \u{fb01}ne \u{ff21}\u{ff22} fullwidth, \u{2581}meta \u{2581} space \u{2581}",
    "Внутривенное введение; مرضى السكري; ελληνικά ΣΑΣ",
    "don't can't I'm we'll they've she'd it's 'quoted' \"double\"",
    "IT'S DON'T WE'LL THEY'VE I'M SHE'D 'S 'T 'RE 'VE 'M 'LL 'D 's 't 're",
    "IL-6 β-blockers (p<0.05), 10µg/kg, 3.14159, 1,000,000 and x²+y²",
    "digits 1234567890123456789012345678901234567890 and 12 34 5 6",
    "!!!!!!!!!!!!????????........-----  ,,,, ;;; ((( ))) [[[ ]]]",
    "Hello <mask> world <mask>",
    "<mask> first, last <mask>",
    "a<mask>b  <mask>   <mask> x<mask> <mask>y",
    "<s> tags </s> in <pad> text <unk>",
    "Hello [MASK] world, a[MASK]b  [MASK]   [MASK] [MASK]",
    "|||IP_ADDRESS||| [unused0] x|||IP_ADDRESS|||y",
    "https://example.org/path?q=1&r=2#frag user@example.com",
    "tab\tbefore and after\t x \tY\t",
    "pneumonoultramicroscopicsilicovolcanoconiosispneumonoultramicroscopicsilicovolcanoconiosispneumonoultramicroscopicsilicovolcanoconiosis",
];

/// Pieces of the random texts: single characters of every class and multi-character units
/// the pipeline treats specially.
const PIECES: &[&str] = &[
    " ",
    " ",
    " ",
    " ",
    "  ",
    "a",
    "b",
    "Z",
    "S",
    "s",
    "t",
    "re",
    "'",
    "'s",
    "'S",
    "'ll",
    "0",
    "7",
    "12",
    ".",
    ",",
    "-",
    "(",
    ")",
    "<",
    ">",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\u{0}",
    "\u{1}",
    "\u{7f}",
    "\u{1f}",
    "\u{85}",
    "\u{a0}",
    "\u{2000}",
    "\u{2028}",
    "\u{3000}",
    "é",
    "e\u{301}",
    "\u{301}",
    "\u{308}",
    "\u{a8}",
    "ß",
    "Σ",
    "東",
    "😀",
    "\u{200d}",
    "🇫",
    "\u{fb01}",
    "\u{ff21}",
    "\u{212a}",
    "\u{37e}",
    "\u{2581}",
    "\u{fffd}",
    "<mask>",
    "[MASK]",
    "<s>",
    "|||IP_ADDRESS|||",
    "the",
    "cell",
    "patients",
    "with",
    "dose",
];

/// Training text: the fixture abstracts, the adversarial texts and a few other scripts.
fn training_texts() -> Vec<String> {
    let mut texts = fixture_texts();
    texts.extend(ADVERSARIAL.iter().map(|t| t.to_string()));
    texts.extend(
        [
            "Café naïve façade résumé Über straße garçon déjà vu.",
            "東京都の病院で臨床試験が行われた。北京和上海的医院。",
            "Внутривенное введение препарата вызвало гипотензию.",
            "Emoji 😀 and symbols ☺ ✓ — µg/kg, 10 °C, ± 5%, α-β blockers.",
        ]
        .map(String::from),
    );
    texts
}

fn bpe_config(layout: Option<VocabLayout>) -> VocabConfig {
    VocabConfig {
        model: VocabModel::Bpe,
        layout,
        vocab_size: 1000,
        min_frequency: 1,
        ..VocabConfig::default()
    }
}

fn wrap(inner: Tokenizer, name: &str) -> DomainTokenizer {
    DomainTokenizer::from_tokenizer(inner, Path::new(name)).unwrap()
}

/// `vocab train`'s RoBERTa layout, with `add_prefix_space` as asked (as roberta-base's
/// tokenizer loaded with `add_prefix_space=True`).
pub(in crate::tokenizer) fn roberta(add_prefix_space: bool) -> DomainTokenizer {
    let trained = train::train_bpe(&bpe_config(None), training_texts().into_iter()).unwrap();
    let mut inner = trained.inner().clone();
    inner.with_pre_tokenizer(Some(ByteLevel::new(add_prefix_space, true, true)));
    let (cls, sep) = (trained.special_ids().cls, trained.special_ids().sep);
    inner.with_post_processor(Some(
        RobertaProcessing::new(("</s>".into(), sep), ("<s>".into(), cls))
            .add_prefix_space(add_prefix_space),
    ));
    wrap(inner, "roberta")
}

/// `vocab train`'s ModernBERT layout, with GPT-NeoX's NFC normaliser when asked, and
/// ModernBERT-base's non-special `|||IP_ADDRESS|||` and `[unused0]`.
pub(in crate::tokenizer) fn modernbert(nfc: bool) -> DomainTokenizer {
    let config = bpe_config(Some(VocabLayout::ModernBert));
    let trained = train::train(&config, training_texts().into_iter()).unwrap();
    let mut inner = trained.inner().clone();
    if nfc {
        inner.with_normalizer(Some(NFC));
    }
    inner.add_tokens(&[
        AddedToken::from("|||IP_ADDRESS|||", false),
        AddedToken::from("[unused0]", false),
    ]);
    wrap(inner, "modernbert")
}

/// A Unigram of `vocab_size` entries trained on `texts` with `normalizer` and `pre` (the
/// trainer sees their output), XLM-R's specials (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3,
/// `<mask>` last with `lstrip`) and RobertaProcessing.
fn unigram(
    texts: Vec<String>,
    vocab_size: u32,
    normalizer: Option<NormalizerWrapper>,
    pre: PreTokenizerWrapper,
) -> Tokenizer {
    let specials = ["<s>", "<pad>", "</s>", "<unk>"].map(|t| AddedToken::from(t, true));
    let trainer = UnigramTrainer::builder()
        .vocab_size(vocab_size)
        .special_tokens(specials.to_vec())
        .unk_token(Some("<unk>".into()))
        .show_progress(false)
        .build()
        .unwrap();
    let mut tk = Tokenizer::new(Unigram::default());
    tk.with_normalizer(normalizer);
    tk.with_pre_tokenizer(Some(pre));
    tk.train(
        &mut TrainerWrapper::UnigramTrainer(trainer),
        texts.into_iter(),
    )
    .unwrap();
    tk.add_special_tokens(&[AddedToken::from("<mask>", true).lstrip(true)]);
    tk.with_post_processor(Some(RobertaProcessing::new(
        ("</s>".into(), 2),
        ("<s>".into(), 0),
    )));
    tk
}

fn metaspace() -> Metaspace {
    Metaspace::new('\u{2581}', PrependScheme::Always, true)
}

/// XLM-R's pre-tokenizer: WhitespaceSplit, then Metaspace (`prepend_scheme = "always"`).
fn xlmr_pre() -> PreTokenizerWrapper {
    PreSequence::new(vec![WhitespaceSplit.into(), metaspace().into()]).into()
}

/// transformers' `XLMRobertaTokenizer` set-up (no normaliser), or xlm-roberta-base's
/// `tokenizer.json` (SentencePiece's nmt_nfkc Precompiled map) when `precompiled` is given.
pub(in crate::tokenizer) fn xlmr(precompiled: Option<Precompiled>) -> DomainTokenizer {
    xlmr_on(training_texts(), 800, precompiled)
}

fn xlmr_on(texts: Vec<String>, vocab_size: u32, p: Option<Precompiled>) -> DomainTokenizer {
    wrap(
        unigram(texts, vocab_size, p.map(Into::into), xlmr_pre()),
        "xlmr",
    )
}

/// tokenizers' `SentencePieceUnigramTokenizer`: Nmt, NFKC, runs of spaces collapsed,
/// Metaspace; or with a Precompiled map in place of Nmt + NFKC (transformers' newer
/// SentencePiece conversion).
pub(in crate::tokenizer) fn sentencepiece(precompiled: Option<Precompiled>) -> DomainTokenizer {
    let collapse = Replace::new(
        tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
        " ",
    )
    .unwrap();
    let normalizers: Vec<NormalizerWrapper> = match precompiled {
        Some(p) => vec![p.into(), collapse.into()],
        None => vec![Nmt.into(), NFKC.into(), collapse.into()],
    };
    let normalizer = Sequence::new(normalizers).into();
    let tk = unigram(training_texts(), 800, Some(normalizer), metaspace().into());
    wrap(tk, "sentencepiece")
}

/// SentencePiece's nmt_nfkc map as the `spm_precompiled` crate ships it (its test.json,
/// from a real SentencePiece model), found beside the crate's sources in cargo's registry;
/// `None` when cargo keeps its sources elsewhere.
pub(in crate::tokenizer) fn nmt_nfkc_precompiled() -> Option<Precompiled> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    for registry in std::fs::read_dir(home.join("registry/src")).ok()?.flatten() {
        for krate in std::fs::read_dir(registry.path()).ok()?.flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            let file = krate.path().join("test.json");
            if name.starts_with("spm_precompiled-") && file.is_file() {
                let json = std::fs::read_to_string(file).ok()?;
                return serde_json::from_str(&json).ok();
            }
        }
    }
    None
}

/// Every tokenizer under test, named; the Precompiled ones when the map is found.
pub(in crate::tokenizer) fn all_tokenizers() -> Vec<(String, DomainTokenizer)> {
    let mut all = vec![
        ("roberta".to_string(), roberta(false)),
        ("roberta add_prefix_space".to_string(), roberta(true)),
        ("modernbert".to_string(), modernbert(false)),
        ("modernbert nfc".to_string(), modernbert(true)),
        ("xlmr".to_string(), xlmr(None)),
        ("sentencepiece nmt nfkc".to_string(), sentencepiece(None)),
    ];
    match nmt_nfkc_precompiled() {
        Some(p) => {
            all.push(("xlmr precompiled".to_string(), xlmr(Some(p.clone()))));
            all.push((
                "sentencepiece precompiled".to_string(),
                sentencepiece(Some(p)),
            ));
        }
        None => eprintln!("no spm_precompiled test.json in cargo's registry: Precompiled untested"),
    }
    all
}

/// Fast path (twice: cache cold, then warm) against the library on `text`.
pub(in crate::tokenizer) fn assert_same(tok: &DomainTokenizer, text: &str, what: &str) {
    let general = tok.encode_words_general(text).unwrap();
    for pass in ["cold", "warm"] {
        let fast = tok.encode_words(text).unwrap();
        if fast != general {
            let names = |ids: &[u32]| -> Vec<String> {
                ids.iter()
                    .map(|&i| tok.id_to_token(i).unwrap_or_default())
                    .collect()
            };
            panic!(
                "{what} ({pass}): fast path differs on {text:?}\n  fast    {:?} {:?}\n  library {:?} {:?}",
                names(&fast.0),
                fast.1,
                names(&general.0),
                general.1
            );
        }
    }
}

/// A random text of `PIECES`, from `seed`.
pub(in crate::tokenizer) fn random_text(seed: u64, max_pieces: u64) -> String {
    let mut x = seed;
    let n = mlm_seeds::splitmix64(x) % max_pieces;
    (0..n)
        .map(|_| {
            x = mlm_seeds::splitmix64(x);
            PIECES[(x % PIECES.len() as u64) as usize]
        })
        .collect()
}

/// A random text of up to 40 of `pieces`, from `seed`; every fourth one also holds one of
/// `declined` (texts a native model must leave to the library).
pub(in crate::tokenizer) fn random_ascii(seed: u64, pieces: &[&str], declined: &[&str]) -> String {
    let mut x = seed;
    let n = mlm_seeds::splitmix64(x) % 40;
    let mut text: Vec<&str> = (0..n)
        .map(|_| {
            x = mlm_seeds::splitmix64(x);
            pieces[(x % pieces.len() as u64) as usize]
        })
        .collect();
    if seed.is_multiple_of(4) {
        x = mlm_seeds::splitmix64(x);
        let at = (x % (n + 1)) as usize;
        text.insert(at, declined[(x >> 32) as usize % declined.len()]);
    }
    text.concat()
}

#[test]
fn fast_path_equals_the_library_on_adversarial_and_random_text() {
    for (what, tok) in all_tokenizers() {
        assert!(tok.has_split_fast_path(), "{what}");
        for text in ADVERSARIAL {
            assert_same(&tok, text, &what);
        }
        // Adversarial texts joined, so that every one also sits mid-document.
        assert_same(&tok, &ADVERSARIAL.join(" "), &what);
        assert_same(&tok, &ADVERSARIAL.join("\n"), &what);
        for seed in 0..400 {
            assert_same(&tok, &random_text(seed, 60), &what);
        }
        let stats = tok.fast_path_stats().unwrap();
        assert!(stats.segments > stats.library_segments, "{what}: {stats:?}");
        assert!(stats.native_segments > 0, "{what}: {stats:?}");
    }
}

#[test]
fn the_cache_stays_within_its_budget() {
    let tok = roberta(false);
    let small = FastSplit::with_budget(tok.inner(), 64 * 200).unwrap();
    let mut texts = Vec::new();
    for i in 0..3000 {
        texts.push(format!("word{i} x{} {}", i * 7, random_text(i, 12)));
    }
    for text in &texts {
        let (mut ids, mut starts) = (Vec::new(), Vec::new());
        small
            .encode_words(
                tok.inner(),
                text,
                &mut ids,
                &mut starts,
                |p, ids, starts| {
                    let (i, s) = tok.encode_words_general(p)?;
                    ids.extend(i);
                    starts.extend(s);
                    Ok::<(), crate::CorpusError>(())
                },
            )
            .unwrap();
        assert_eq!((ids, starts), tok.encode_words_general(text).unwrap());
        assert!(
            small.cached_segments() <= 200,
            "{}",
            small.cached_segments()
        );
    }
}

#[test]
fn stats_count_documents_segments_and_library_calls() {
    let tok = roberta(false);
    // Segments "the", " cell", " the", " cell": the last one is cached.
    tok.encode_words("the cell the cell").unwrap();
    let s = tok.fast_path_stats().unwrap();
    // All ASCII: the native byte-level BPE takes the three misses.
    assert_eq!(
        (
            s.documents,
            s.segments,
            s.native_segments,
            s.library_segments
        ),
        (1, 4, 3, 0)
    );
    assert_eq!(s.library_documents, 0);
}

#[test]
fn a_document_with_an_rstrip_token_goes_to_the_library_whole() {
    let mut inner = roberta(false).inner().clone();
    inner.add_special_tokens(&[AddedToken::from("<x>", true).rstrip(true)]);
    let tok = wrap(inner, "rstrip");
    assert!(tok.has_split_fast_path());
    for text in ["a <x>   b c", "<x> b", "a<x>", "no token here"] {
        assert_same(&tok, text, "rstrip");
    }
    assert_eq!(tok.fast_path_stats().unwrap().library_documents, 3 * 2);
}

/// Added runs of spaces and tabs, and a user's multi-word token (which a cut would split): a
/// document holding one goes to the library whole, the others take the fast path. Also under
/// NFC, with the tokens matched on the raw text, and with ModernBERT-base's own set-up: runs
/// of ASCII whitespace matched after NFC (`normalized = true`).
#[test]
fn a_document_with_a_whitespace_token_goes_to_the_library_whole() {
    let runs = ["  ", "   ", "\t\t", " \n", "of the"];
    let mut plain = roberta(false).inner().clone();
    plain.add_tokens(&runs.map(|r| AddedToken::from(r, false)));
    let mut nfc = modernbert(true).inner().clone();
    nfc.add_tokens(&runs.map(|r| AddedToken::from(r, false).normalized(false)));
    let mut modernbert_base = modernbert(true).inner().clone();
    let whitespace_runs: Vec<AddedToken> = runs[..4]
        .iter()
        .map(|r| AddedToken::from(*r, false).normalized(true))
        .collect();
    modernbert_base.add_tokens(&whitespace_runs);
    let set_ups = [
        ("whitespace tokens", plain),
        ("raw-matched under NFC", nfc),
        ("ASCII whitespace runs matched after NFC", modernbert_base),
    ];
    for (what, inner) in set_ups {
        let tok = wrap(inner, what);
        assert!(tok.has_split_fast_path(), "{what}");
        let texts = [
            "blood  pressure was high",
            "tab\t\tseparated values",
            "one space only here",
            "one of the best",
            "ends with a newline \n",
            "caf\u{e9} \u{37e}  K\u{212a}",
        ];
        for text in texts {
            assert_same(&tok, text, what);
        }
        for seed in 0..200 {
            assert_same(&tok, &random_text(seed, 60), what);
        }
        let stats = tok.fast_path_stats().unwrap();
        assert!(stats.library_documents >= 5 * 2, "{what}: {stats:?}");
        assert!(
            stats.documents > stats.library_documents,
            "{what}: {stats:?}"
        );
    }
}

/// Only the smallest whole-document contents are searched: a document holding just the
/// shorter of two nested runs still goes to the library whole.
#[test]
fn nested_whitespace_tokens_are_found_by_the_shorter_one() {
    let mut inner = roberta(false).inner().clone();
    inner.add_tokens(&[
        AddedToken::from("   ", false),
        AddedToken::from("  ", false),
    ]);
    let tok = wrap(inner, "nested runs");
    assert_same(&tok, "a  b", "nested runs");
    assert_same(&tok, "a   b", "nested runs");
    assert_same(&tok, "a b", "nested runs");
    // Two documents with a run, each encoded cold and warm.
    assert_eq!(tok.fast_path_stats().unwrap().library_documents, 2 * 2);
}

#[test]
fn set_ups_it_cannot_prove_exact_take_the_library() {
    let base = roberta(false).inner().clone();
    let mut declined: Vec<(&str, Tokenizer)> = Vec::new();
    let mut t = base.clone();
    t.with_pre_tokenizer(Some(ByteLevel::new(false, true, false)));
    declined.push(("ByteLevel without its regex", t));
    let mut t = base.clone();
    t.with_normalizer(Some(Strip::new(true, true)));
    declined.push(("Strip", t));
    let mut t = base.clone();
    t.with_normalizer(Some(NFKC));
    t.add_tokens(&[AddedToken::from("  ", false)]);
    declined.push(("spaces matched after NFKC (U+00A0 becomes one)", t));
    let mut t = base.clone();
    t.with_normalizer(Some(NFC));
    t.add_tokens(&[AddedToken::from("of the", false)]);
    declined.push(("words and a space matched after NFC", t));
    let mut t = base.clone();
    t.with_truncation(Some(tokenizers::TruncationParams::default()))
        .unwrap();
    declined.push(("truncation", t));
    let mut t = base;
    let mut model = serde_json::to_value(t.get_model()).unwrap();
    model["dropout"] = 0.5.into();
    let model: tokenizers::models::bpe::BPE = serde_json::from_str(&model.to_string()).unwrap();
    t.with_model(model);
    declined.push(("BPE dropout", t));
    let mut t = xlmr(None).inner().clone();
    let first = Metaspace::new('\u{2581}', PrependScheme::First, true);
    t.with_pre_tokenizer(Some(first));
    declined.push(("Metaspace prepend_scheme first", t));
    for (what, t) in declined {
        assert!(FastSplit::new(&t).is_none(), "{what}");
    }
}

/// Every PubMed CDR abstract (`MLM_SHARED_DIR`, default `../shared`), title + " " +
/// abstract as `prepare` reads them, through tokenizers trained on them (a 16k byte-level
/// BPE in both layouts, an 8k Unigram in XLM-R's with the nmt_nfkc map when found), fast
/// path against library.
#[test]
#[ignore = "needs ../shared; slow (trains the tokenizers)"]
fn fast_path_equals_the_library_on_pubmed_cdr() {
    let shared = std::env::var_os("MLM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let mut docs = Vec::new();
    for file in ["train.jsonl", "valid.jsonl"] {
        let text = std::fs::read_to_string(shared.join("data/pubmed-cdr").join(file)).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (title, abstract_) = (
                v["title"].as_str().unwrap(),
                v["abstract"].as_str().unwrap(),
            );
            docs.push(format!("{title} {abstract_}"));
        }
    }
    assert!(docs.len() > 2600);
    let config = |layout| VocabConfig {
        vocab_size: 16_000,
        min_frequency: 2,
        ..bpe_config(layout)
    };
    let mut tokenizers = vec![
        (
            "roberta 16k",
            train::train_bpe(&config(None), docs.clone().into_iter()).unwrap(),
        ),
        (
            "modernbert 16k",
            train::train(
                &config(Some(VocabLayout::ModernBert)),
                docs.clone().into_iter(),
            )
            .unwrap(),
        ),
    ];
    tokenizers.push((
        "xlmr 8k",
        xlmr_on(docs.clone(), 8000, nmt_nfkc_precompiled()),
    ));
    for (what, tok) in &tokenizers {
        for doc in &docs {
            assert_same(tok, doc, what);
        }
        let stats = tok.fast_path_stats().unwrap();
        eprintln!("{what}: {stats:?}");
        // Nearly every new segment is computed natively.
        assert!(
            stats.native_segments > 20 * stats.library_segments,
            "{what}: {stats:?}"
        );
    }
}
