//! `mlm-train vocab train --config FILE`: a WordPiece or byte-level BPE vocabulary from the
//! training split of the `[corpus]` inputs, with the `[vocab]` section's settings.
//! `mlm-train vocab extend --config FILE`: the words a model's vocabulary splits worst, added.

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::config::ConfigSource;
use crate::prepare::{ProgressView, count};
use crate::stdout::outln;

/// `mlm-train vocab` subcommands.
#[derive(Debug, Subcommand)]
pub enum VocabCommand {
    /// Train a WordPiece or byte-level BPE tokenizer ([vocab] model) on the configured corpus
    /// ([corpus] inputs, [vocab] settings) and write tokenizer.json, vocab.txt (WordPiece) or
    /// vocab.json + merges.txt (BPE) and the Hugging Face tokenizer configs.
    ///
    /// Reads `--config FILE` (a global flag): `[corpus]` (inputs) and `[vocab]` (defaults
    /// apply when absent).
    #[command(after_help = "Examples:\n  \
        mlm-train vocab train --config configs/quickstart.toml\n  \
        mlm-train vocab train --config configs/quickstart.toml --set vocab.vocab_size=8000 \
        --set vocab.output=runs/vocab-8k")]
    Train,
    /// Add the corpus words a model's vocabulary splits worst ([vocab] extend_from, add,
    /// min_frequency) as new entries, keeping every existing id: WordPiece reuses [unusedN]
    /// slots, then appends; byte-level BPE appends merges. Writes the tokenizer files and
    /// vocab-extension.json to [vocab] output (default [corpus] tokenizer), and prints the
    /// held-out fragmentation before and after.
    ///
    /// Reads `--config FILE` (a global flag): `[corpus]` (inputs) and `[vocab]`
    /// (`extend_from`, `add`).
    #[command(after_help = "Examples:\n  \
        mlm-train vocab extend --config configs/pubmed.toml --set vocab.extend_from=models/bert-base-uncased \
        --set vocab.add=4000")]
    Extend,
}

pub fn run(command: &VocabCommand, source: &ConfigSource, threads: Option<usize>) -> Result<()> {
    match command {
        VocabCommand::Extend => extend(source, threads),
        VocabCommand::Train => {
            let config = source.load()?;
            let path = &config.path;
            let corpus = config.corpus()?.clone();
            let vocab = config.vocab.clone().unwrap_or_default();
            mlm_trainer::runtime::configure_threads(threads.or(config.runtime.cpu_threads))?;
            let view = ProgressView::new("vocab");
            let report = mlm_corpus::train_vocab(&corpus, &vocab, &view);
            view.finish();
            let report =
                report.with_context(|| format!("training a vocabulary from {}", path.display()))?;
            let t = &report.tokenizer;
            let s = t.special_ids();
            outln!("wrote       {}", report.output.display());
            outln!(
                "vocabulary  {} {} tokens (asked {}), lowercase {}, min_frequency {}",
                t.model().as_str(),
                count(u64::from(t.vocab_size())),
                count(vocab.vocab_size as u64),
                if t.do_lower_case() { "yes" } else { "no" },
                vocab.min_frequency
            );
            let mut special: Vec<(u32, &str)> = t
                .special_tokens()
                .roles()
                .into_iter()
                .zip([s.cls, s.sep, s.pad, s.mask, s.unk])
                .map(|((_, name), id)| (id, name))
                .collect();
            special.sort_unstable();
            let special: Vec<String> = special.iter().map(|(id, n)| format!("{n} {id}")).collect();
            outln!("special     {}", special.join(", "));
            outln!("class       {}", t.hf_class().name());
            outln!(
                "trained on  {} documents of the training split ({} records read)",
                count(report.documents),
                count(report.stats.records)
            );
            outln!("fingerprint {}", t.fingerprint());
            outln!("time        {:.1} s", report.elapsed.as_secs_f64());
            Ok(())
        }
    }
}

/// `vocab extend`: the extension, then what it added and the fragmentation table.
fn extend(source: &ConfigSource, threads: Option<usize>) -> Result<()> {
    let config = source.load()?;
    let path = &config.path;
    let corpus = config.corpus()?.clone();
    let vocab = config.vocab.clone().unwrap_or_default();
    mlm_trainer::runtime::configure_threads(threads.or(config.runtime.cpu_threads))?;
    let view = ProgressView::new("vocab");
    let report = mlm_corpus::extend_vocab(&corpus, &vocab, &view);
    view.finish();
    let report =
        report.with_context(|| format!("extending a vocabulary from {}", path.display()))?;
    print_extension(&report, vocab.min_frequency)
}

fn print_extension(report: &mlm_corpus::ExtendReport, min_frequency: u64) -> Result<()> {
    let (base, ext) = (&report.base, &report.tokenizer);
    let Some(sidecar) = ext.extension() else {
        return Ok(());
    };
    outln!("wrote       {}", report.output.display());
    outln!(
        "base        {} {} tokens ({})",
        base.model().as_str(),
        count(u64::from(base.vocab_size())),
        base.source().display()
    );
    outln!(
        "added       {} entries: {} words, {} merge steps; {} reused [unusedN] slots, {} appended -> {} tokens",
        count(sidecar.tokens.len() as u64),
        count(report.words as u64),
        count(report.merge_steps as u64),
        count(sidecar.reused() as u64),
        count(sidecar.appended() as u64),
        count(u64::from(ext.vocab_size()))
    );
    outln!(
        "words       {} documents, {} distinct words, {} split ones seen >= {} times",
        count(report.documents),
        count(report.distinct_words as u64),
        count(report.candidates as u64),
        min_frequency
    );
    let mut best: Vec<&mlm_corpus::NewToken> = sidecar
        .tokens
        .iter()
        .filter(|t| t.kind == mlm_corpus::AddedKind::Word)
        .collect();
    best.sort_by(|a, b| {
        (b.count * b.base_ids.len() as u64).cmp(&(a.count * a.base_ids.len() as u64))
    });
    let shown: Vec<String> = best
        .iter()
        .take(8)
        .map(|t| format!("{} ({}x, {} pieces)", t.token, t.count, t.base_ids.len()))
        .collect();
    outln!("first       {}", shown.join(", "));
    if report.not_single > 0 {
        outln!(
            "warning     {} added words are not one token",
            report.not_single
        );
    }
    outln!("fingerprint {}", ext.fingerprint());
    print_fragmentation(report)?;
    outln!("time        {:.1} s", report.elapsed.as_secs_f64());
    Ok(())
}

/// Pieces per word over the held-out sample, base against extended.
fn print_fragmentation(report: &mlm_corpus::ExtendReport) -> Result<()> {
    let (b, e) = (&report.base_fragmentation, &report.extended_fragmentation);
    outln!();
    outln!(
        "fragmentation over {} held-out documents ({} words)",
        count(b.documents),
        count(b.words)
    );
    outln!("vocabulary     tokens    pieces/word   words split   pieces");
    for (name, tokens, f) in [
        ("base", report.base.vocab_size(), b),
        ("extended", report.tokenizer.vocab_size(), e),
    ] {
        outln!(
            "{name:<10} {:>10} {:>13.3} {:>12.1}% {:>8}",
            count(u64::from(tokens)),
            f.pieces_per_word(),
            100.0 * f.split_share(),
            count(f.pieces)
        );
    }
    Ok(())
}
