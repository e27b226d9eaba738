//! The native Unigram against the `tokenizers` library, segment by segment.

use tokenizers::models::unigram::Unigram;
use tokenizers::{AddedToken, Tokenizer};

use super::*;
use crate::tokenizer::DomainTokenizer;
use crate::tokenizer::fast_split::tests::{
    nmt_nfkc_precompiled, random_ascii, sentencepiece, xlmr,
};

/// ASCII pieces: words, runs of spaces, tabs and line feeds, digits, punctuation, the
/// Metaspace replacement's neighbours, characters the vocabulary may lack.
const ASCII_PIECES: &[&str] = &[
    " ", " ", " ", "  ", "   ", "a", "b", "Z", "e", "s", "t", "re", "'", "'s", "0", "7", "12", ".",
    ",", "-", "(", ")", "<", ">", "/", "\t", "\n", "the", "cell", "patients", "with", "dose", "~",
    "`", "^", "{", "|", "Q", "X",
];

/// Added tokens' contents and bytes left to the library: one in every fourth text.
const DECLINED_PIECES: &[&str] = &["<mask>", "<s>", "<unk>", "\r", "\u{b}", "\u{0}", "\u{e9}"];

/// Native ids and word starts equal the library's on `text`, or the native path declines.
fn check(tok: &DomainTokenizer, native: &UnigramViterbi, text: &str, what: &str) -> bool {
    let (mut ids, mut starts) = (vec![9], vec![true]);
    if !native.encode(text, &mut ids, &mut starts) {
        assert_eq!((ids, starts), (vec![9], vec![true]), "{what}: {text:?}");
        return false;
    }
    let library = tok.encode_words_general(text).unwrap();
    assert_eq!(
        (ids[1..].to_vec(), starts[1..].to_vec()),
        library,
        "{what}: {text:?}"
    );
    true
}

/// A hand-made Unigram where ties, unknown characters (fused), byte fallback and a piece
/// written twice all matter: `ab` = `a` + `b` exactly, `~` and `^` are not in it.
fn tie_unigram(byte_fallback: bool) -> DomainTokenizer {
    let mut vocab: Vec<(String, f64)> = vec![
        ("<unk>".into(), 0.0),
        ("\u{2581}".into(), -2.0),
        ("a".into(), -1.0),
        ("b".into(), -1.5),
        ("ab".into(), -2.5),
        ("\u{2581}a".into(), -1.25),
        ("b".into(), -0.5),
        ("~~".into(), -3.0),
        ("<s>".into(), 0.0),
        ("<pad>".into(), 0.0),
        ("</s>".into(), 0.0),
        ("<mask>".into(), 0.0),
    ];
    for c in 'c'..='z' {
        vocab.push((c.to_string(), -4.0));
    }
    if byte_fallback {
        vocab.push(("<0x7E>".into(), -5.0));
    }
    let model = Unigram::from(vocab, Some(0), byte_fallback).unwrap();
    let mut tk = Tokenizer::new(model);
    tk.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::metaspace::Metaspace::new(
        '\u{2581}',
        tokenizers::pre_tokenizers::metaspace::PrependScheme::Always,
        true,
    )));
    let specials = ["<unk>", "<s>", "<pad>", "</s>", "<mask>"];
    tk.add_special_tokens(&specials.map(|t| AddedToken::from(t, true)));
    DomainTokenizer::from_tokenizer(tk, std::path::Path::new("tie")).unwrap()
}

#[test]
fn native_unigram_equals_the_library_on_random_ascii() {
    let mut all = vec![
        ("xlmr", xlmr(None)),
        ("sentencepiece nmt nfkc", sentencepiece(None)),
        ("tie", tie_unigram(false)),
        ("tie byte_fallback", tie_unigram(true)),
    ];
    if let Some(p) = nmt_nfkc_precompiled() {
        all.push(("xlmr precompiled", xlmr(Some(p.clone()))));
        all.push(("sentencepiece precompiled", sentencepiece(Some(p))));
    }
    for (what, tok) in all {
        let native = UnigramViterbi::new(tok.inner()).expect(what);
        let mut taken = 0;
        for seed in 0..3000 {
            taken += usize::from(check(
                &tok,
                &native,
                &random_ascii(seed, ASCII_PIECES, DECLINED_PIECES),
                what,
            ));
        }
        for text in super::super::fast_split::tests::ADVERSARIAL {
            check(&tok, &native, text, what);
        }
        for text in ["ab", " ab", "a b", "~", "~~~ ~", "a~^b~", "^^", "abab bab"] {
            assert!(check(&tok, &native, text, what), "{what}: {text:?}");
        }
        assert!(taken >= 2100, "{what}: {taken} of 3000 taken");
    }
}
