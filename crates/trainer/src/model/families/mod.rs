//! Every model family the trainer builds, one module each (like candle's `models/`), and
//! the one table that registers them. A new family is a module implementing
//! [`Architecture`] plus its line in [`ARCHITECTURES`] (docs/architecture.md).

mod bert;
mod distilbert;
mod modernbert;
pub(crate) mod postln;
mod roberta;

use super::arch::Architecture;

/// The registered families, looked up by `model_type` (`super::arch::architecture_for`).
pub static ARCHITECTURES: [&dyn Architecture; 4] = [
    &bert::BERT,
    &roberta::ROBERTA,
    &distilbert::DISTILBERT,
    &modernbert::MODERNBERT,
];

#[cfg(test)]
mod tests;
