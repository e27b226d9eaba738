//! `mlm-train inspect CORPUS_DIR`: the manifest's summary, token counts per split, and the
//! first sequences of a split decoded, word starts marked (what whole-word masking selects).

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use mlm_corpus::phrases::PhrasesManifest;
use mlm_corpus::{DomainTokenizer, PreparedCorpus, Split};

use crate::config::RunConfig;
use crate::prepare::{write_format, write_splits};

/// The summary and `sequences` decoded sequences of `split`; with `masks`, also the masks
/// of the first sequences of that training step under that config.
pub fn describe(
    dir: &Path,
    sequences: u64,
    split: Split,
    masks: Option<(&RunConfig, u64)>,
) -> Result<String> {
    let corpus = PreparedCorpus::open(dir)
        .with_context(|| format!("opening the prepared corpus {}", dir.display()))?;
    let manifest = corpus.manifest();
    let tokenizer = DomainTokenizer::load(&corpus.tokenizer_path(), None)
        .with_context(|| format!("loading the tokenizer of {}", dir.display()))?;
    let mut s = String::new();
    let _ = writeln!(s, "prepared corpus {}", crate::paths::shown(dir).display());
    write_format(&mut s, manifest);
    let _ = writeln!(s, "special     {}", special_tokens(&tokenizer));
    let _ = writeln!(
        s,
        "sources     {} files, {} records",
        manifest.sources.len(),
        manifest.documents.records
    );
    let _ = writeln!(s);
    write_splits(&mut s, manifest);
    if let Some(phrases) = &manifest.phrases {
        write_phrases(&mut s, dir, phrases)?;
    }
    let mut reader = corpus.split(split)?;
    let shown = sequences.min(reader.len());
    let _ = writeln!(
        s,
        "\nfirst {shown} {} sequences (`|` before each word start; whole-word masking \
         selects the pieces between two marks together):",
        split_name(split)
    );
    for position in 0..shown {
        let sequence = reader.get(position)?;
        let _ = writeln!(
            s,
            "\n#{position} ({} tokens)\n  text   {}\n  pieces {}",
            sequence.input_ids.len(),
            tokenizer.decode(&sequence.input_ids)?,
            marked_pieces(&tokenizer, &sequence.input_ids, &sequence.word_starts)
        );
        if let Some(units) = &sequence.unit_starts {
            let _ = writeln!(
                s,
                "  units  {}",
                marked_pieces(&tokenizer, &sequence.input_ids, units)
            );
        }
    }
    if let Some((config, step)) = masks {
        s += &super::masks::describe(&corpus, &tokenizer, config, step, sequences.max(1))?;
    }
    Ok(s)
}

/// Entries of the phrase list shown, by training-split matches.
const TOP_PHRASES: usize = 15;

/// The phrase list's summary and its most matched entries (`phrases.tsv`).
fn write_phrases(s: &mut String, dir: &Path, phrases: &PhrasesManifest) -> Result<()> {
    let path = dir.join(&phrases.file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the phrase list {}", path.display()))?;
    let mut rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let matches = |row: &[&str]| row.get(2).and_then(|m| m.parse::<u64>().ok()).unwrap_or(0);
    rows.sort_by_key(|row| std::cmp::Reverse(matches(row)));
    let _ = writeln!(
        s,
        "\nphrases     {} in {} ({} matches covering {} training tokens); the top {} by \
         matches (phrase, origin, matches, n-gram count, PMI):",
        phrases.phrases,
        phrases.file,
        phrases.train_matches,
        phrases.train_phrase_tokens,
        TOP_PHRASES.min(rows.len())
    );
    for row in rows.iter().take(TOP_PHRASES) {
        let _ = writeln!(s, "  {}", row.join("  "));
    }
    Ok(())
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Validation => "validation",
    }
}

/// `[CLS] 2, [SEP] 3, ...`
fn special_tokens(tokenizer: &DomainTokenizer) -> String {
    let ids = tokenizer.special_ids();
    let mut pairs: Vec<(u32, String)> = [ids.cls, ids.sep, ids.pad, ids.mask, ids.unk]
        .into_iter()
        .map(|id| (id, tokenizer.id_to_token(id).unwrap_or_default()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let pairs: Vec<String> = pairs.iter().map(|(id, t)| format!("{t} {id}")).collect();
    pairs.join(", ")
}

/// The sequence's pieces with `|` before every word start: `[CLS] |the |pat ##ient`.
fn marked_pieces(tokenizer: &DomainTokenizer, ids: &[u32], word_starts: &[bool]) -> String {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            let piece = tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| format!("<{id}>"));
            if word_starts.get(i).copied().unwrap_or(false) {
                format!("|{piece}")
            } else {
                piece
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
