//! Corpora and tokenizers: `mlm-train prepare` on broken input files (each format) and on
//! broken tokenizer files. Each fails naming the file (and the line or record where there
//! is one) with the bad-record kind, and leaves no `manifest.json` (a prepared corpus is
//! complete exactly when its manifest exists).

use std::path::{Path, PathBuf};

use super::{Case, check_all};
use crate::Scratch;
use crate::prepare::{fixture, vocab_train, write_config};

/// A scratch directory whose `tok/` holds a WordPiece vocabulary trained on the fixtures.
fn with_tokenizer(name: &str) -> Scratch {
    let scratch = Scratch::new(name);
    let config = write_config(&scratch, "vocab.toml", &[fixture("abstracts.jsonl")], &[]);
    let (ok, _, stderr) = vocab_train(&config);
    assert!(ok, "{stderr}");
    scratch
}

/// `prepare` of `input` (format from its extension) into `prepared-<name>`, with `overrides`
/// of `[corpus]`; expected to fail naming `names`, with no manifest left.
fn prepare_case(
    scratch: &Scratch,
    name: &'static str,
    input: &Path,
    overrides: &[(&str, &str)],
    names: &[&str],
) -> Case {
    let output = format!("\"prepared-{name}\"");
    let mut keys = vec![("output", output.as_str())];
    keys.extend_from_slice(overrides);
    let config = write_config(
        scratch,
        &format!("{name}.toml"),
        &[input.to_path_buf()],
        &keys,
    );
    Case::new(
        name,
        ["prepare".as_ref(), "--config".as_ref(), config.as_os_str()],
    )
    .names(names)
    .absent(
        scratch
            .path()
            .join(format!("prepared-{name}/manifest.json")),
    )
}

fn write_bytes(scratch: &Scratch, name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A gzip stream of `text`, cut before its end.
fn truncated_gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    let bytes = encoder.finish().unwrap();
    bytes[..bytes.len() / 2].to_vec()
}

#[test]
fn malformed_corpus_files_are_named_with_their_line_or_record() {
    let scratch = with_tokenizer("catalogue-corpora");
    let good = std::fs::read_to_string(fixture("abstracts.jsonl")).unwrap();
    let text_mode = [("id_field", "\"unused\"")];
    let bad_xml = "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>7</PMID>\
                   <Article><ArticleTitle>Cut</Article></MedlineCitation></PubmedArticle>\
                   </PubmedArticleSet>\n";
    let files = [
        (
            "text_invalid_utf8",
            write_bytes(&scratch, "latin1.txt", b"fine line\ncaf\xe9 au lait\n"),
            &text_mode[..],
            &["latin1.txt", "line 2", "invalid_utf8"][..],
        ),
        (
            "json_trailing_garbage",
            write_bytes(
                &scratch,
                "garbage.jsonl",
                b"{\"pmid\": 1, \"title\": \"a\", \"abstract\": \"b\"} x\n",
            ),
            &[],
            &["garbage.jsonl", "line 1", "malformed_json"],
        ),
        (
            "json_not_an_object",
            write_bytes(&scratch, "array.jsonl", b"[1, 2, 3]\n"),
            &[],
            &["array.jsonl", "line 1", "malformed_json"],
        ),
        (
            "json_number_as_text",
            write_bytes(
                &scratch,
                "number.jsonl",
                b"{\"pmid\": 1, \"title\": \"a\", \"abstract\": 5}\n",
            ),
            &[],
            &["number.jsonl", "line 1", "abstract"],
        ),
        (
            "json_invalid_utf8_key",
            write_bytes(
                &scratch,
                "key.jsonl",
                b"{\"pmid\": 1, \"ti\xfftle\": \"a\", \"abstract\": \"b\"}\n",
            ),
            &[],
            &["key.jsonl", "line 1", "invalid_utf8"],
        ),
        (
            "xml_unclosed_element",
            write_bytes(&scratch, "cut.xml", bad_xml.as_bytes()),
            &[],
            &["cut.xml", "malformed_xml"],
        ),
        (
            "xml_binary_garbage",
            write_bytes(
                &scratch,
                "binary.xml",
                &[0u8, 159, 146, 150, 255, 0, 60, 62],
            ),
            &[],
            &["binary.xml"],
        ),
        (
            "truncated_gzip",
            write_bytes(&scratch, "cut.jsonl.gz", &truncated_gzip(&good)),
            &[],
            &["cut.jsonl.gz", "truncated_file"],
        ),
        (
            "parquet_random_bytes",
            write_bytes(
                &scratch,
                "random.parquet",
                b"PAR1 this is not a parquet file PAR1",
            ),
            &[],
            &["random.parquet", "malformed_parquet"],
        ),
        (
            "unknown_extension",
            write_bytes(&scratch, "abstracts.csv", b"pmid,title\n1,a\n"),
            &[],
            &["abstracts.csv"],
        ),
    ];
    let cases: Vec<Case> = files
        .iter()
        .map(|(name, file, overrides, names)| prepare_case(&scratch, name, file, overrides, names))
        .collect();
    check_all(&cases);
}

#[test]
fn corpora_with_no_documents_are_refused_and_a_gigantic_line_is_read() {
    let scratch = with_tokenizer("catalogue-empty-corpora");
    let text_mode = [("id_field", "\"unused\"")];
    let empty = write_bytes(&scratch, "empty.jsonl", b"");
    let blank = write_bytes(&scratch, "blank.txt", b"\n\n   \n\t\n");
    let no_text = write_bytes(
        &scratch,
        "no-text.jsonl",
        b"{\"pmid\": 1, \"title\": \"\", \"abstract\": \"\"}\n{\"pmid\": 2, \"title\": \"\", \"abstract\": \"  \"}\n",
    );
    let cases = vec![
        prepare_case(&scratch, "empty_file", &empty, &[], &["empty corpus"]),
        prepare_case(
            &scratch,
            "blank_lines_only",
            &blank,
            &text_mode,
            &["empty corpus"],
        ),
        prepare_case(
            &scratch,
            "documents_without_text",
            &no_text,
            &[],
            &["empty corpus"],
        ),
    ];
    check_all(&cases);
    // One 8 MB line (a dumped record without newlines) among ordinary ones: read and packed.
    let sentence = "aspirin inhibits platelet aggregation in patients with renal failure. ";
    let mut text = sentence.repeat((8 << 20) / sentence.len()) + "\n";
    text += &format!("{sentence}\n").repeat(200);
    let giant = write_bytes(&scratch, "giant.txt", text.as_bytes());
    let config = write_config(
        &scratch,
        "giant.toml",
        &[giant],
        &[("output", "\"prepared-giant\""), ("id_field", "\"unused\"")],
    );
    let case = Case::new(
        "gigantic_line",
        ["prepare".as_ref(), "--config".as_ref(), config.as_os_str()],
    )
    .code(0);
    check_all(&[case]);
    assert!(scratch.path().join("prepared-giant/manifest.json").exists());
}

#[test]
fn broken_tokenizer_files_are_named() {
    let scratch = with_tokenizer("catalogue-tokenizers");
    let tokenizer = std::fs::read_to_string(scratch.path().join("tok/tokenizer.json")).unwrap();
    let broken = |name: &str, file: &str, text: &str| -> PathBuf {
        let dir = scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        dir
    };
    let without_mask = tokenizer.replace("[MASK]", "[MASQUE]");
    let dirs = [
        (
            "tokenizer_cut",
            broken(
                "tok-cut",
                "tokenizer.json",
                &tokenizer[..tokenizer.len() / 2],
            ),
            &["tokenizer.json", "not a valid"][..],
        ),
        (
            "tokenizer_not_a_tokenizer",
            broken("tok-empty-object", "tokenizer.json", "{}"),
            &["tokenizer.json"],
        ),
        (
            "tokenizer_without_mask",
            broken("tok-no-mask", "tokenizer.json", &without_mask),
            &["tokenizer.json", "mask"],
        ),
        (
            "vocab_txt_empty",
            broken("tok-empty-vocab", "vocab.txt", ""),
            &["vocab.txt"],
        ),
        (
            "tokenizer_dir_empty",
            broken("tok-nothing", "README", "no tokenizer here"),
            &["tok-nothing", "no tokenizer.json"],
        ),
    ];
    let fixture = fixture("abstracts.jsonl");
    let mut cases: Vec<Case> = dirs
        .iter()
        .map(|(name, dir, names)| {
            let tokenizer = format!("{:?}", dir.display().to_string());
            prepare_case(
                &scratch,
                name,
                &fixture,
                &[("tokenizer", tokenizer.as_str())],
                names,
            )
        })
        .collect();
    let bad_config = broken("tok-bad-config", "tokenizer.json", &tokenizer);
    std::fs::write(
        bad_config.join("tokenizer_config.json"),
        "{\"model_max_length\": ",
    )
    .unwrap();
    let path = format!("{:?}", bad_config.display().to_string());
    cases.push(prepare_case(
        &scratch,
        "tokenizer_config_cut",
        &fixture,
        &[("tokenizer", path.as_str())],
        &["tokenizer_config.json"],
    ));
    check_all(&cases);
}
