//! mlm-masking: 80/10/10 dynamic masking, whole-word masking and collation.
//!
//! Masks are a pure function of (seed, epoch, sample index) through a counter-based
//! generator (Philox4x32-10), so resumed and multi-rank runs mask exactly as one
//! uninterrupted run; evaluation masks are fixed per held-out position.
//!
//! This crate works on plain `u32` token ids and never links libtorch (CI checks it with
//! `cargo tree`).
//!
//! ```
//! use mlm_masking::{MaskKey, Masker, MaskingConfig, SpecialTokens, collate};
//! let special = SpecialTokens { vocab_size: 30522, pad_id: 0, mask_id: 103, special_ids: vec![100, 101, 102] };
//! let masker = Masker::new(&MaskingConfig::default(), special).unwrap();
//! let seq = masker.mask(&[101, 7592, 2088, 102], None, MaskKey::train(42, 0, 17));
//! let batch = collate(&[seq], 0, 103, Some(8));
//! assert_eq!((batch.batch_size, batch.seq_len), (1, 8));
//! ```

mod collate;
mod config;
mod error;
mod masker;
mod rng;
mod special;
#[cfg(test)]
mod stats_tests;
mod units;

pub use collate::{Batch, MaskInput, collate, collate_into, padded_len};
pub use config::{MAX_SPAN_WORDS, MaskingConfig, MaskingUnit, SelectionMode};
pub use error::MaskingError;
pub use masker::{IGNORE_INDEX, MaskedSequence, Masker};
pub use rng::{EVAL_EPOCH, MaskKey};
pub use special::SpecialTokens;
pub use units::SpanLengths;
