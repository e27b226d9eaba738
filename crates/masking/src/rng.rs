//! Counter-based randomness: masks are a pure function of a [`MaskKey`] and a position.
//!
//! The generator is Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as
//! easy as 1, 2, 3", SC'11; the Random123 library), the generator cuRAND and PyTorch's CUDA
//! backend use. A counter-based generator has no state to save or to advance: word `i` of a
//! stream is computed directly from (key, counter = i), so a resumed run, any number of
//! loader threads and any split of a global batch across ranks draw exactly the same numbers
//! as one uninterrupted single-process run (the data contract in DESIGN.md).

use mlm_seeds::splitmix64;

/// Identifies the masks of one sequence: a training sample (seed, epoch, sample index) or a
/// held-out position ([`MaskKey::eval`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaskKey {
    pub seed: u64,
    pub epoch: u64,
    pub sample_index: u64,
}

/// The epoch value reserved for evaluation keys, so that an evaluation mask never equals a
/// training mask even when `eval_seed` equals the training seed (no training run reaches
/// epoch 2^64 - 1).
pub const EVAL_EPOCH: u64 = u64::MAX;

impl MaskKey {
    /// Key of sample `sample_index` (its position in the epoch's order) of `epoch`.
    pub fn train(seed: u64, epoch: u64, sample_index: u64) -> Self {
        Self {
            seed,
            epoch,
            sample_index,
        }
    }

    /// Key of held-out sequence `position`: the same at every evaluation, so held-out numbers
    /// of different checkpoints are measured on the same masks.
    pub fn eval(eval_seed: u64, position: u64) -> Self {
        Self {
            seed: eval_seed,
            epoch: EVAL_EPOCH,
            sample_index: position,
        }
    }

    /// Philox key of (seed, epoch). SplitMix64's finaliser is a bijection of u64, so for a
    /// fixed seed distinct epochs give distinct keys, and for a fixed epoch distinct seeds do.
    fn philox_key(self) -> [u32; 2] {
        let k = splitmix64(self.seed ^ splitmix64(self.epoch));
        [k as u32, (k >> 32) as u32]
    }
}

/// Blocks computed side by side by [`Stream::fill`].
const LANES: usize = 8;

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// One Philox4x32-10 block: 128 random bits from a 128-bit counter and a 64-bit key.
#[inline(always)]
pub(crate) fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let (hi0, lo0) = mulhilo(PHILOX_M0, c[0]);
        let (hi1, lo1) = mulhilo(PHILOX_M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Independent uses of randomness within one sequence; each is its own counter space, so
/// e.g. the 80/10/10 draw of a token never depends on which other tokens were selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Purpose {
    /// One word per position: token (or word-start) selection.
    Select = 0,
    /// One block per position: [MASK] / random / keep, and the random id.
    Replace = 1,
}

/// The random stream of one sequence for one purpose. Counter layout:
/// `[block index, purpose, sample_index low, sample_index high]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stream {
    key: [u32; 2],
    purpose: u32,
    sample: [u32; 2],
}

impl Stream {
    pub(crate) fn new(key: MaskKey, purpose: Purpose) -> Self {
        Self {
            key: key.philox_key(),
            purpose: purpose as u32,
            sample: [key.sample_index as u32, (key.sample_index >> 32) as u32],
        }
    }

    /// Block `index` of the stream (4 words). Sequences are far shorter than 2^32 tokens;
    /// the index wraps rather than panics beyond that.
    #[inline(always)]
    pub(crate) fn block(&self, index: usize) -> [u32; 4] {
        philox4x32_10(
            [index as u32, self.purpose, self.sample[0], self.sample[1]],
            self.key,
        )
    }

    /// Words `4 * first_block ..` of the stream into `out` (bulk generation: a whole chunk
    /// of positions is drawn before it is used). Blocks are computed `LANES` at a time in
    /// struct-of-arrays form, which the compiler turns into SIMD multiplies (pmuludq).
    #[inline]
    pub(crate) fn fill(&self, first_block: usize, out: &mut [u32]) {
        let mut groups = out.chunks_exact_mut(4 * LANES);
        let mut block = first_block;
        for group in &mut groups {
            let words = self.blocks_soa(block);
            for (lane, quad) in group.chunks_exact_mut(4).enumerate() {
                for (w, dst) in quad.iter_mut().enumerate() {
                    *dst = words[w][lane];
                }
            }
            block += LANES;
        }
        for (i, chunk) in groups.into_remainder().chunks_mut(4).enumerate() {
            let words = self.block(block + i);
            chunk.copy_from_slice(&words[..chunk.len()]);
        }
    }

    /// Blocks `first .. first + LANES`, word-major: `out[w][lane]` is word w of block
    /// `first + lane`. Same arithmetic as [`philox4x32_10`], lane by lane.
    #[inline(always)]
    fn blocks_soa(&self, first: usize) -> [[u32; LANES]; 4] {
        let mut c0: [u32; LANES] = std::array::from_fn(|l| (first + l) as u32);
        let mut c1 = [self.purpose; LANES];
        let mut c2 = [self.sample[0]; LANES];
        let mut c3 = [self.sample[1]; LANES];
        let mut k = self.key;
        for round in 0..10 {
            if round > 0 {
                k[0] = k[0].wrapping_add(PHILOX_W0);
                k[1] = k[1].wrapping_add(PHILOX_W1);
            }
            for l in 0..LANES {
                let p0 = u64::from(PHILOX_M0) * u64::from(c0[l]);
                let p1 = u64::from(PHILOX_M1) * u64::from(c2[l]);
                let (n0, n2) = (
                    (p1 >> 32) as u32 ^ c1[l] ^ k[0],
                    (p0 >> 32) as u32 ^ c3[l] ^ k[1],
                );
                (c0[l], c1[l], c2[l], c3[l]) = (n0, p1 as u32, n2, p0 as u32);
            }
        }
        [c0, c1, c2, c3]
    }
}

/// Maps a uniform 64-bit word onto `0..n` by multiply-shift (Lemire, "Fast random integer
/// generation in an interval", 2019); the bias is at most n / 2^64.
#[inline(always)]
pub(crate) fn below(word: u64, n: usize) -> usize {
    ((u128::from(word) * n as u128) >> 64) as usize
}

/// Threshold for a Bernoulli(p) draw on a 32-bit word: `u64::from(word) < threshold(p)`.
/// p = 1 gives 2^32, which every word is below.
pub(crate) fn threshold(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, "philox4x32 10" lines).
    #[test]
    fn philox_matches_random123_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn fill_equals_blockwise_words_for_any_start() {
        let s = Stream::new(MaskKey::train(7, 3, 11), Purpose::Select);
        let mut all = [0u32; 40];
        s.fill(0, &mut all);
        let mut tail = [0u32; 14];
        s.fill(5, &mut tail);
        assert_eq!(&tail[..], &all[20..34]);
        assert_eq!(s.block(2), [all[8], all[9], all[10], all[11]]);
    }

    #[test]
    fn keys_differ_by_epoch_seed_and_purpose() {
        let a = Stream::new(MaskKey::train(1, 0, 5), Purpose::Select).block(0);
        assert_ne!(
            a,
            Stream::new(MaskKey::train(1, 1, 5), Purpose::Select).block(0)
        );
        assert_ne!(
            a,
            Stream::new(MaskKey::train(2, 0, 5), Purpose::Select).block(0)
        );
        assert_ne!(
            a,
            Stream::new(MaskKey::train(1, 0, 6), Purpose::Select).block(0)
        );
        assert_ne!(
            a,
            Stream::new(MaskKey::train(1, 0, 5), Purpose::Replace).block(0)
        );
        assert_ne!(MaskKey::eval(1, 5), MaskKey::train(1, 0, 5));
    }

    #[test]
    fn words_are_uniform_enough() {
        // Mean of 2^20 words / 2^32 is 0.5 +- 0.5/sqrt(12 * 2^20) = 0.5 +- 2.8e-4.
        let s = Stream::new(MaskKey::train(42, 0, 0), Purpose::Select);
        let mut buf = vec![0u32; 1 << 20];
        s.fill(0, &mut buf);
        let mean =
            buf.iter().map(|&w| f64::from(w)).sum::<f64>() / buf.len() as f64 / 4_294_967_296.0;
        assert!((mean - 0.5).abs() < 5.0 * 2.8e-4, "mean {mean}");
        // Each bit set about half the time: a broken mixer (e.g. a stuck lane) fails this.
        for bit in 0..32 {
            let ones = buf.iter().filter(|&&w| w >> bit & 1 == 1).count() as f64 / buf.len() as f64;
            assert!((ones - 0.5).abs() < 5.0 * 0.5 / 1024.0, "bit {bit}: {ones}");
        }
    }

    #[test]
    fn threshold_and_below_edges() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), 1 << 32);
        assert!(u64::from(u32::MAX) < threshold(1.0));
        assert_eq!(below(0, 10), 0);
        assert_eq!(below(u64::MAX, 10), 9);
    }
}
