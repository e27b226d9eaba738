//! The native byte-level BPE against the `tokenizers` library, segment by segment.

use super::*;
use crate::tokenizer::DomainTokenizer;
use crate::tokenizer::fast_split::tests::{modernbert, random_ascii, roberta};

fn split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = pre_token_end(text.as_bytes(), start);
        out.push(&text[start..end]);
        start = end;
    }
    out
}

#[test]
fn the_gpt2_regex_on_ascii() {
    assert_eq!(split("Hello world"), ["Hello", " world"]);
    assert_eq!(
        split("don't we'll 'Sam"),
        ["don", "'t", " we", "'ll", " '", "Sam"]
    );
    assert_eq!(split("a  b"), ["a", " ", " b"]);
    assert_eq!(split("x\t\t y\n"), ["x", "\t\t", " y", "\n"]);
    assert_eq!(split("x\ty  "), ["x", "\t", "y", "  "]);
    assert_eq!(
        split(" (p<0.05), 10"),
        [" (", "p", "<", "0", ".", "05", "),", " 10"]
    );
    assert_eq!(split("'''s"), ["'''", "s"]);
}

#[test]
fn byte_chars_are_gpt2s() {
    assert_eq!(byte_char(b'a'), 'a');
    assert_eq!(byte_char(b' '), '\u{120}');
    assert_eq!(byte_char(b'\n'), '\u{10a}');
    assert_eq!(byte_char(0x7f), '\u{121}');
    assert_eq!(byte_char(0xad), '\u{143}');
}

/// ASCII pieces: every class of the regex, the contractions in both cases, runs of spaces.
const ASCII_PIECES: &[&str] = &[
    " ", " ", " ", "  ", "a", "b", "Z", "e", "s", "t", "re", "ll", "ve", "d", "m", "'", "'s", "'S",
    "'ll", "'re", "'d", "0", "7", "12", ".", ",", "-", "(", ")", "<", ">", "/", "\t", "\n", "the",
    "cell", "patients", "with", "dose", "<", "[", "|",
];

/// The added tokens' contents and bytes the native path leaves to the library: one of them
/// in every fourth text.
const DECLINED_PIECES: &[&str] = &[
    "<mask>",
    "<s>",
    "[MASK]",
    "|||IP_ADDRESS|||",
    "\u{b}",
    "\u{c}",
    "\u{0}",
    "\u{7f}",
    "\r\n",
    "\r",
];

/// Native ids and word starts equal the library's on `text`, or the native path declines.
fn check(tok: &DomainTokenizer, native: &ByteLevelBpe, text: &str, what: &str) -> bool {
    let (mut ids, mut starts) = (Vec::new(), Vec::new());
    if !native.encode(text, &mut ids, &mut starts) {
        assert!(ids.is_empty() && starts.is_empty(), "{what}: {text:?}");
        return false;
    }
    let library = tok.encode_words_general(text).unwrap();
    assert_eq!((ids, starts), library, "{what}: {text:?}");
    true
}

#[test]
fn native_bpe_equals_the_library_on_random_ascii() {
    for (what, tok) in [
        ("roberta", roberta(false)),
        ("roberta add_prefix_space", roberta(true)),
        ("modernbert", modernbert(false)),
        ("modernbert nfc", modernbert(true)),
    ] {
        let native = ByteLevelBpe::new(tok.inner()).expect(what);
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
        // Every text without a declined piece is taken.
        assert!(taken >= 2250, "{what}: {taken} of 3000 taken");
    }
}

#[test]
fn segments_it_cannot_take_are_declined() {
    let tok = roberta(false);
    let native = ByteLevelBpe::new(tok.inner()).unwrap();
    for text in [
        "",
        "caf\u{e9}",
        "a\u{b}b",
        "x <mask>",
        "<s>",
        &"a".repeat(200),
    ] {
        let (mut ids, mut starts) = (vec![7], vec![true]);
        assert!(!native.encode(text, &mut ids, &mut starts), "{text:?}");
        assert_eq!((ids, starts), (vec![7], vec![true]), "{text:?}");
    }
}
