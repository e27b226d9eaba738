//! mlm-trainer: masked-language-model training on LibTorch through `tch`.
//!
//! Today this crate holds the runtime set-up every command shares ([`runtime`]: device choice
//! and thread pools). The model, optimizer, training loop, checkpoints and evaluation follow
//! the data contract in DESIGN.md and land here next; the seams they need are kept: one place
//! that knows about devices and threads, the libtorch shim behind `mlm-torch-ext`.

pub mod checkpoint;
pub mod error;
pub mod model;
pub mod optim;
pub mod run;
pub mod runtime;
pub mod schedule;

pub use error::TrainError;
