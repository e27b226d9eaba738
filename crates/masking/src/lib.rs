//! mlm-masking: 80/10/10 dynamic masking, whole-word masking and collation.
//!
//! Masks are a pure function of (seed, epoch, sample index), so resumed and multi-rank runs
//! mask exactly as one uninterrupted run; evaluation masks are fixed per held-out position.
//!
//! This crate works on plain `u32` token ids and never links libtorch (CI checks it with
//! `cargo tree`). Its stages land with the masking issue.
