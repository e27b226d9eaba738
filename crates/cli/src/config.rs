//! The run file, as the library that owns its schema reads it (`mlm_job::run_file`).

pub use mlm_job::{ConfigError, ConfigSource, RunConfig};
