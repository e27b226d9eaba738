//! `prepare` with a RoBERTa byte-level BPE tokenizer: sequences are `<s> ... </s>`, documents
//! are joined with `</s>` (run_mlm's RoBERTa set-up), the manifest records the family, the
//! prepared directory holds RoBERTa's files, and a resume is byte-identical at every shard.
//! With ModernBERT's layout (`[CLS]`/`[SEP]` after the BPE entries): `[CLS] ... [SEP]`.

use super::resume::assert_resumes_identically;
use super::*;
use crate::testutil::{write_tiny_bpe, write_tiny_modernbert};
use crate::tokenizer::TokenizerModel;

fn bpe_config(dir: &TempDir) -> CorpusConfig {
    config_with(dir, &[fixture("abstracts.jsonl")], write_tiny_bpe)
}

/// The sequences packing must make of `docs`: `cls block sep` over the stream
/// `d1 sep d2 sep ...` (concat) or over each document (document), with word starts.
fn expected(
    tok: &DomainTokenizer,
    docs: &[String],
    max_seq_len: usize,
    packing: Packing,
) -> Vec<(Vec<u32>, Vec<bool>)> {
    let s = tok.special_ids();
    let mut streams: Vec<Vec<(u32, bool)>> = vec![Vec::new()];
    for (i, text) in docs.iter().enumerate() {
        let (ids, starts) = tok.encode_words(text).unwrap();
        if packing == Packing::Document {
            streams.push(Vec::new());
        } else if i > 0 {
            streams[0].push((s.sep, true));
        }
        streams
            .last_mut()
            .unwrap()
            .extend(ids.into_iter().zip(starts));
    }
    let mut out = Vec::new();
    for stream in streams.iter().filter(|s| !s.is_empty()) {
        for chunk in stream.chunks(max_seq_len - 2) {
            let mut ids = vec![s.cls];
            let mut starts = vec![true];
            for (j, &(id, start)) in chunk.iter().enumerate() {
                ids.push(id);
                starts.push(start || j == 0);
            }
            ids.push(s.sep);
            starts.push(true);
            out.push((ids, starts));
        }
    }
    out
}

/// Sequences as ids and word starts.
type Sequences = Vec<(Vec<u32>, Vec<bool>)>;

/// The prepared train split of `out` and what `tok` gives the fixture abstracts packed the
/// same way.
fn train_split_and_expected(
    out: &std::path::Path,
    tok: &DomainTokenizer,
    max_seq_len: usize,
    packing: Packing,
) -> (Sequences, Sequences) {
    let docs: Vec<String> = jsonl_docs(&fixture("abstracts.jsonl"))
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let got = read_split(out, Split::Train)
        .into_iter()
        .map(|q| (q.input_ids, q.word_starts))
        .collect();
    (got, expected(tok, &docs, max_seq_len, packing))
}

#[test]
fn bpe_sequences_are_s_wrapped_and_documents_joined_with_eos() {
    for packing in [Packing::Concat, Packing::Document] {
        let dir = TempDir::new("prep-bpe");
        let mut cfg = bpe_config(&dir);
        cfg.packing = packing;
        train_only(&mut cfg);
        let m = run(&cfg).unwrap().manifest;
        let out = cfg.output.clone().unwrap();
        assert_eq!(m.tokenizer_model, Some(TokenizerModel::Bpe));
        let s = &m.special_ids;
        assert_eq!((s.cls, s.pad, s.sep, s.unk), (0, 1, 2, 3));
        assert_eq!(s.mask, m.vocab_size - 1);
        assert_eq!(
            (m.special_tokens.cls.as_str(), m.special_tokens.sep.as_str()),
            ("<s>", "</s>")
        );
        for file in ["tokenizer.json", "vocab.json", "merges.txt"] {
            assert!(m.tokenizer_files.iter().any(|f| f == file), "{file}");
            assert!(out.join(file).is_file(), "{file}");
        }
        assert!(!out.join("vocab.txt").exists());
        let tok = DomainTokenizer::load(&out, None).unwrap();
        assert_eq!(tok.fingerprint(), m.tokenizer_fingerprint);
        let (got, wanted) = train_split_and_expected(&out, &tok, cfg.max_seq_len, packing);
        assert_eq!(got, wanted, "{packing:?}");
        // The tiny vocabulary splits words: continuations are tested.
        assert!(got.iter().any(|(_, starts)| starts.contains(&false)));
        if packing == Packing::Concat {
            let separators: usize = got
                .iter()
                .map(|(ids, _)| {
                    ids[1..ids.len() - 1]
                        .iter()
                        .filter(|&&t| t == s.sep)
                        .count()
                })
                .sum();
            assert_eq!(
                separators,
                jsonl_docs(&fixture("abstracts.jsonl")).len() - 1
            );
        }
    }
}

#[test]
fn modernbert_sequences_are_cls_sep_wrapped_and_documents_joined_with_sep() {
    let dir = TempDir::new("prep-modernbert");
    let mut cfg = config_with(&dir, &[fixture("abstracts.jsonl")], write_tiny_modernbert);
    train_only(&mut cfg);
    let m = run(&cfg).unwrap().manifest;
    let out = cfg.output.clone().unwrap();
    let s = &m.special_ids;
    assert_eq!(
        (s.unk, s.cls, s.sep, s.pad, s.mask),
        (295, 296, 297, 298, 299)
    );
    assert_eq!(m.special_tokens, crate::tokenizer::SpecialTokens::bert());
    assert_eq!(m.tokenizer_model, Some(TokenizerModel::Bpe));
    assert!(!out.join("vocab.json").exists() && !out.join("vocab.txt").exists());
    let tok = DomainTokenizer::load(&out, None).unwrap();
    assert_eq!(tok.fingerprint(), m.tokenizer_fingerprint);
    assert_eq!(
        tok.model_input_names().unwrap(),
        ["input_ids", "attention_mask"]
    );
    let (got, wanted) = train_split_and_expected(&out, &tok, cfg.max_seq_len, cfg.packing);
    assert_eq!(got, wanted);
    assert!(
        got.iter()
            .all(|(ids, _)| ids[0] == 296 && ids.last() == Some(&297))
    );
}

#[test]
fn bpe_prepare_resumes_byte_identically_at_every_shard() {
    // Fewer, larger shards than the other tests: each stop is two prepares with fsyncs.
    assert_resumes_identically(
        |dir| CorpusConfig {
            shard_sequences: 32,
            ..bpe_config(dir)
        },
        &[],
    );
}

#[test]
fn another_family_replaces_the_tokenizer_files() {
    let dir = TempDir::new("prep-family-switch");
    let mut cfg = config(&dir, &[fixture("abstracts.jsonl")]);
    let out = cfg.output.clone().unwrap();
    run(&cfg).unwrap();
    assert!(out.join("vocab.txt").is_file());
    let bpe = dir.path().join("bpe");
    std::fs::create_dir_all(&bpe).unwrap();
    write_tiny_bpe(&bpe);
    cfg.tokenizer = Some(bpe);
    let m = run(&cfg).unwrap().manifest;
    assert!(
        !out.join("vocab.txt").exists(),
        "a WordPiece leftover beside a BPE tokenizer"
    );
    assert!(out.join("merges.txt").is_file());
    assert_eq!(m.special_tokens.cls, "<s>");
    assert_eq!(
        DomainTokenizer::load(&out, None).unwrap().fingerprint(),
        m.tokenizer_fingerprint
    );
}
