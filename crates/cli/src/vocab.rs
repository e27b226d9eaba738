//! `mlm-train vocab train --config FILE`: a WordPiece or byte-level BPE vocabulary from the
//! training split of the `[corpus]` inputs, with the `[vocab]` section's settings.

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::config::ConfigSource;
use crate::prepare::{ProgressView, count};

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
}

pub fn run(command: &VocabCommand, source: &ConfigSource, threads: Option<usize>) -> Result<()> {
    match command {
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
            println!("wrote       {}", report.output.display());
            println!(
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
            println!("special     {}", special.join(", "));
            println!("class       {}", t.hf_class().name());
            println!(
                "trained on  {} documents of the training split ({} records read)",
                count(report.documents),
                count(report.stats.records)
            );
            println!("fingerprint {}", t.fingerprint());
            println!("time        {:.1} s", report.elapsed.as_secs_f64());
            Ok(())
        }
    }
}
