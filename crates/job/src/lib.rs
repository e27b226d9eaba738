//! A job of `mlm-train` as a library, below the CLI: the run file ([`run_file`]: the schema
//! of one TOML file, its paths resolved, every section validated) and the stages before
//! training ([`stages`]: the vocabulary and the prepared corpus, decided once for a run and
//! for its dry run, rank 0 preparing while the other ranks wait, a device per rank), the
//! export's atomic publish ([`export`]), the fill-mask pipeline ([`fill_mask`]) and the
//! locks that keep one job per directory ([`locks`]). The CLI
//! parses flags, calls these, and presents what they report.

pub mod export;
pub mod fill_mask;
pub mod locks;
pub mod run_file;
pub mod stages;

pub use run_file::{ConfigError, ConfigSource, RunConfig};
pub use stages::{
    CorpusStage, StageError, StageProgress, StageReporter, Stages, VocabStage,
    prepared_on_rank_zero, rank_device, run_stages,
};
