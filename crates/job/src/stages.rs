//! The stages before training, decided once ([`Stages::of`]) and either described (a dry
//! run) or run ([`run_stages`]): the vocabulary (`[vocab]`: trained, or extended from a base
//! tokenizer, when its output has no tokenizer yet), then the prepared corpus (`prepare` is
//! a no-op when the output holds this exact preparation, and finishes an interrupted one). In
//! a data-parallel job rank 0 alone runs them while the other ranks wait
//! ([`prepared_on_rank_zero`]). What is shown while they run is the caller's
//! ([`StageReporter`]).

use std::path::{Path, PathBuf};

use mlm_corpus::{CorpusError, DomainTokenizer, Observer, PrepareReport};
use mlm_durable::WhenHeld;
use mlm_trainer::run::{DataParallel, RunError};

use crate::locks;
use crate::run_file::{ConfigError, RunConfig};

/// Why the stages before training failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what}")]
    Corpus {
        what: &'static str,
        #[source]
        source: CorpusError,
    },
    #[error("locking the prepared corpus directory")]
    Lock(#[source] mlm_durable::LockError),
    #[error("rank {rank}")]
    Rank {
        rank: u32,
        #[source]
        source: RunError,
    },
}

/// What the vocabulary stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum VocabStage {
    /// No `[vocab]`: the corpus's tokenizer is used as it is.
    NotAsked,
    /// `[vocab]`'s output has a tokenizer: kept.
    Present { dir: PathBuf },
    /// A `vocab_size`-token vocabulary is trained into `dir`.
    Train {
        dir: PathBuf,
        vocab_size: usize,
        model: String,
    },
    /// `extend_from`'s tokenizer is extended by `add` entries into `dir`.
    Extend {
        from: PathBuf,
        add: usize,
        dir: PathBuf,
    },
}

/// What the corpus stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum CorpusStage {
    /// The output has a manifest (and the vocabulary is there): `prepare` checks that it is
    /// this exact preparation (a changed `[corpus]` prepares again).
    Prepared { output: PathBuf },
    /// The corpus is prepared into `output` (or an interrupted preparation finished).
    Prepare { output: PathBuf },
}

/// The stages of a job, decided from its run file and what is on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    pub vocab: VocabStage,
    pub corpus: CorpusStage,
}

impl Stages {
    pub fn of(config: &RunConfig) -> Result<Self, StageError> {
        let corpus = config.corpus()?;
        let vocab = match &config.vocab {
            None => VocabStage::NotAsked,
            Some(vocab) => {
                let dir = vocab
                    .output_dir(corpus)
                    .map_err(|source| corpus_error("the [vocab] output", source))?;
                match (&vocab.extend_from, DomainTokenizer::file_in(&dir)) {
                    (_, Some(_)) => VocabStage::Present { dir },
                    (Some(from), None) => VocabStage::Extend {
                        from: from.clone(),
                        add: vocab.add.unwrap_or(0),
                        dir,
                    },
                    (None, None) => VocabStage::Train {
                        dir,
                        vocab_size: vocab.vocab_size,
                        model: vocab.model.as_str().to_owned(),
                    },
                }
            }
        };
        let output = config.prepared_dir()?;
        let vocab_ready = matches!(vocab, VocabStage::NotAsked | VocabStage::Present { .. });
        let corpus = if vocab_ready && output.join("manifest.json").exists() {
            CorpusStage::Prepared { output }
        } else {
            CorpusStage::Prepare { output }
        };
        Ok(Self { vocab, corpus })
    }

    /// Whether the corpus can be planned from its manifest without running anything.
    pub fn prepared_dir(&self) -> Option<&Path> {
        match &self.corpus {
            CorpusStage::Prepared { output } => Some(output),
            CorpusStage::Prepare { .. } => None,
        }
    }
}

/// Progress of one long stage, shown by the caller.
pub trait StageProgress: Observer {
    /// The stage ended (whichever way): clear a bar, print a last line.
    fn finish(&self);
}

/// What the caller shows while the stages run.
pub trait StageReporter {
    /// The vocabulary stage starts (never called for `NotAsked` or `Present`).
    fn vocab_starting(&self, stage: &VocabStage);
    /// The progress of a long stage (`"vocab"`, `"prepare"`).
    fn progress(&self, stage: &'static str) -> Box<dyn StageProgress + '_>;
    /// The corpus is prepared.
    fn prepared(&self, report: &PrepareReport);
    /// A line to show as it is (waiting for a directory another job holds).
    fn note(&self, message: &str);
}

/// Runs the stages of `config` and returns the prepared corpus directory. The corpus
/// output is locked for the stages' duration (`when_held`: refuse or wait when another job
/// holds it).
pub fn run_stages(
    config: &RunConfig,
    reporter: &dyn StageReporter,
    when_held: WhenHeld,
) -> Result<PathBuf, StageError> {
    let stages = Stages::of(config)?;
    let corpus = config.corpus()?;
    let _lock = locks::lock_dir(
        &config.prepared_dir()?,
        locks::PREPARE_LOCK,
        when_held,
        &|message| reporter.note(message),
    )
    .map_err(StageError::Lock)?;
    match &stages.vocab {
        VocabStage::NotAsked | VocabStage::Present { .. } => {}
        stage @ VocabStage::Extend { .. } => {
            reporter.vocab_starting(stage);
            let vocab = config
                .vocab
                .as_ref()
                .expect("an Extend stage comes from [vocab]");
            mlm_corpus::extend_vocab(corpus, vocab, &mlm_corpus::Quiet).map_err(|source| {
                corpus_error("extending the vocabulary ([vocab] extend_from)", source)
            })?;
        }
        stage @ VocabStage::Train { .. } => {
            reporter.vocab_starting(stage);
            let vocab = config
                .vocab
                .as_ref()
                .expect("a Train stage comes from [vocab]");
            let progress = reporter.progress("vocab");
            let trained = mlm_corpus::train_vocab(corpus, vocab, progress.as_ref());
            progress.finish();
            trained.map_err(|source| corpus_error("training the vocabulary ([vocab])", source))?;
        }
    }
    let progress = reporter.progress("prepare");
    let report = mlm_corpus::prepare(
        corpus,
        &mlm_corpus::PrepareOptions {
            observer: progress.as_ref(),
            stop_after_shards: None,
        },
    );
    progress.finish();
    let report =
        report.map_err(|source| corpus_error("preparing the corpus ([corpus])", source))?;
    reporter.prepared(&report);
    Ok(report.output)
}

/// [`run_stages`] by rank 0 alone while the other ranks of `parallel` wait for its outcome;
/// every rank returns the prepared corpus directory.
pub fn prepared_on_rank_zero(
    config: &RunConfig,
    parallel: Option<&DataParallel>,
    reporter: &dyn StageReporter,
    when_held: WhenHeld,
) -> Result<PathBuf, StageError> {
    const STAGE: &str = "preparing the corpus";
    let rank_error = |group: &DataParallel| {
        let rank = group.rank();
        move |source| StageError::Rank { rank, source }
    };
    match parallel {
        None => run_stages(config, reporter, when_held),
        Some(group) if group.is_main() => {
            let prepared = run_stages(config, reporter, when_held);
            group
                .announce(STAGE, prepared.is_ok())
                .map_err(rank_error(group))?;
            prepared
        }
        Some(group) => {
            group.wait_for_main(STAGE).map_err(rank_error(group))?;
            Ok(config.prepared_dir()?)
        }
    }
}

/// The device of a rank: a data-parallel rank on CUDA takes the GPU of its `LOCAL_RANK`, as
/// `torch.cuda.set_device(local_rank)` does; anything else keeps the configured device. The
/// caller makes it the current device (`mlm_torch_ext::set_current_cuda_device`).
pub fn rank_device(configured: tch::Device, local_rank: Option<usize>) -> tch::Device {
    match (configured, local_rank) {
        (tch::Device::Cuda(_), Some(local_rank)) => tch::Device::Cuda(local_rank),
        (device, _) => device,
    }
}

fn corpus_error(what: &'static str, source: CorpusError) -> StageError {
    StageError::Corpus { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run file in a directory of its own (removed on drop) whose `[vocab]` is `vocab`.
    struct Job {
        dir: PathBuf,
    }

    impl Job {
        fn new(name: &str, vocab: &str) -> (Self, RunConfig) {
            let dir =
                std::env::temp_dir().join(format!("mlm-stages-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let text = format!(
                "[vocab]\n{vocab}\noutput = \"tokenizer\"\n\n[corpus]\n\
                 inputs = [\"docs.jsonl\"]\nformat = \"jsonl\"\ntokenizer = \"tokenizer\"\n\
                 output = \"corpus\"\n"
            );
            std::fs::write(dir.join("run.toml"), text).unwrap();
            let config = RunConfig::load_with(&dir.join("run.toml"), &[]).unwrap();
            (Self { dir }, config)
        }
    }

    impl Drop for Job {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn the_stages_follow_what_is_on_disk() {
        let (job, config) = Job::new("train", "vocab_size = 500");
        let stages = Stages::of(&config).unwrap();
        assert!(matches!(
            &stages.vocab,
            VocabStage::Train {
                vocab_size: 500,
                ..
            }
        ));
        // A manifest without its vocabulary is not a prepared corpus: the vocabulary comes
        // first, and the corpus is tokenized with it.
        std::fs::create_dir_all(job.dir.join("corpus")).unwrap();
        std::fs::write(job.dir.join("corpus/manifest.json"), "{}").unwrap();
        let stages = Stages::of(&config).unwrap();
        assert!(matches!(stages.corpus, CorpusStage::Prepare { .. }));
        assert_eq!(stages.prepared_dir(), None);

        std::fs::create_dir_all(job.dir.join("tokenizer")).unwrap();
        std::fs::write(job.dir.join("tokenizer/vocab.txt"), "[PAD]\n").unwrap();
        let stages = Stages::of(&config).unwrap();
        assert!(matches!(&stages.vocab, VocabStage::Present { dir } if dir.ends_with("tokenizer")));
        assert_eq!(
            stages.prepared_dir(),
            Some(job.dir.join("corpus").as_path())
        );
    }

    #[test]
    fn an_extension_is_planned_as_one_not_as_a_training() {
        let (job, config) = Job::new("extend", "extend_from = \"base\"\nadd = 64");
        let stages = Stages::of(&config).unwrap();
        match &stages.vocab {
            VocabStage::Extend { from, add, dir } => {
                assert_eq!(
                    (from, *add, dir),
                    (&job.dir.join("base"), 64, &job.dir.join("tokenizer"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(stages.corpus, CorpusStage::Prepare { .. }));
    }

    #[test]
    fn a_rank_on_cuda_takes_its_local_gpu_and_the_cpu_stays_the_cpu() {
        let cuda = tch::Device::Cuda(0);
        assert_eq!(rank_device(cuda, Some(3)), tch::Device::Cuda(3));
        assert_eq!(rank_device(cuda, None), cuda);
        assert_eq!(rank_device(tch::Device::Cpu, Some(3)), tch::Device::Cpu);
    }
}
