//! mlm-trainer: masked-language-model training of encoders on LibTorch through `tch`,
//! following the data contract in DESIGN.md: the model behind its family seam ([`model`]:
//! `Architecture`, one module per family), the optimizer and schedules ([`optim`],
//! [`schedule`]), checkpoints ([`checkpoint`]), the run with its evaluation ([`run`]), and the
//! one place that knows about devices and threads ([`runtime`]); the libtorch shim is behind
//! `mlm-torch-ext`.

pub mod checkpoint;
pub mod error;
pub mod model;
pub mod optim;
pub mod run;
pub mod runtime;
pub mod schedule;

pub use error::TrainError;
