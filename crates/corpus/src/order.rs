//! The training order of an epoch, a pure function of (`data_seed`, epoch) and addressable:
//! the sequence at position p is computed in O(1) without visiting positions 0..p.
//!
//! Sequences are grouped in blocks of `block` consecutive indices (= the corpus' row groups,
//! so a block is one Parquet decode). The blocks are permuted (a keyed Feistel permutation;
//! the last, shorter block goes to a keyed slot), the permuted blocks are grouped into
//! windows of `window` blocks, and positions inside each window are permuted again. An epoch
//! thus reads each row group once (the reader keeps a window of row groups decoded) while a
//! batch mixes sequences from `window` random places of the corpus.

use mlm_seeds::{mix, splitmix64};

/// Default block size: the default `row_group_sequences`.
pub const DEFAULT_BLOCK: u64 = 1024;
/// Default window in blocks: `reader::DEFAULT_CACHED_ROW_GROUPS`.
pub const DEFAULT_WINDOW: u64 = 8;

/// A keyed bijection on `0..m`: a 4-round Feistel network on the smallest even number of
/// bits covering `m`, cycle-walked back into range (at most ~4 steps on average).
#[derive(Debug, Clone, Copy)]
pub struct Permutation {
    m: u64,
    half: u32,
    mask: u64,
    key: u64,
}

impl Permutation {
    pub fn new(m: u64, key: u64) -> Self {
        let bits = (64 - m.saturating_sub(1).leading_zeros()).max(2);
        let half = bits.div_ceil(2);
        Self {
            m,
            half,
            mask: (1u64 << half) - 1,
            key,
        }
    }

    fn round(&self, x: u64) -> u64 {
        let mut l = x >> self.half;
        let mut r = x & self.mask;
        for i in 0..4u64 {
            let f = splitmix64(r ^ mix(&[self.key, i])) & self.mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half) | r
    }

    /// The image of `x` (< m).
    pub fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.m);
        if self.m <= 1 {
            return x;
        }
        let mut y = self.round(x);
        while y >= self.m {
            y = self.round(y);
        }
        y
    }
}

/// The order of one epoch over `num_sequences` sequences.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    n: u64,
    block: u64,
    window: u64,
    full_blocks: u64,
    /// Length of the last, shorter block (0: none).
    short: u64,
    /// Slot of the shorter block among `full_blocks + 1` slots.
    short_slot: u64,
    slots: u64,
    blocks: Permutation,
    key: u64,
}

impl EpochOrder {
    /// The order with the default layout (blocks of 1024, windows of 8 blocks).
    pub fn new(num_sequences: u64, data_seed: u64, epoch: u64) -> Self {
        Self::with_layout(
            num_sequences,
            data_seed,
            epoch,
            DEFAULT_BLOCK,
            DEFAULT_WINDOW,
        )
    }

    /// The order with blocks of `block` sequences (use the manifest's `row_group_sequences`)
    /// and windows of `window` blocks (both at least 1).
    pub fn with_layout(
        num_sequences: u64,
        data_seed: u64,
        epoch: u64,
        block: u64,
        window: u64,
    ) -> Self {
        let block = block.max(1);
        let window = window.max(1);
        let key = mix(&[
            0x6d6c_6d2d_6f72_6465,
            data_seed,
            epoch,
            num_sequences,
            block,
            window,
        ]);
        let full_blocks = num_sequences / block;
        let short = num_sequences % block;
        let slots = full_blocks + u64::from(short > 0);
        let short_slot = if short > 0 {
            mix(&[key, 1]) % (full_blocks + 1)
        } else {
            0
        };
        Self {
            n: num_sequences,
            block,
            window,
            full_blocks,
            short,
            short_slot,
            slots,
            blocks: Permutation::new(full_blocks, mix(&[key, 2])),
            key,
        }
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// First position of slot `s` (s <= slots).
    fn slot_start(&self, s: u64) -> u64 {
        if self.short > 0 && s > self.short_slot {
            s * self.block - (self.block - self.short)
        } else {
            s * self.block
        }
    }

    /// The slot holding position `p`, and the offset in it.
    fn slot_of(&self, p: u64) -> (u64, u64) {
        if self.short > 0 {
            let short_start = self.short_slot * self.block;
            if p >= short_start {
                if p < short_start + self.short {
                    return (self.short_slot, p - short_start);
                }
                let q = p - short_start - self.short;
                return (self.short_slot + 1 + q / self.block, q % self.block);
            }
        }
        (p / self.block, p % self.block)
    }

    /// The first sequence index of the block in slot `s`.
    fn block_first_index(&self, s: u64) -> u64 {
        if self.short > 0 {
            if s == self.short_slot {
                return self.full_blocks * self.block;
            }
            let f = if s > self.short_slot { s - 1 } else { s };
            return self.blocks.apply(f) * self.block;
        }
        self.blocks.apply(s) * self.block
    }

    /// The sequence index at `position` (< len): a bijection on 0..len.
    pub fn index_at(&self, position: u64) -> u64 {
        assert!(
            position < self.n,
            "position {position} of an epoch of {} sequences",
            self.n
        );
        let (slot, _) = self.slot_of(position);
        let w = slot / self.window;
        let start = self.slot_start(w * self.window);
        let end = self.slot_start(((w + 1) * self.window).min(self.slots));
        let local = Permutation::new(end - start, mix(&[self.key, 3, w])).apply(position - start);
        let (slot, offset) = self.slot_of(start + local);
        self.block_first_index(slot) + offset
    }
}

/// Positions (in the epoch order) of rank `rank`'s contiguous slice of global batch
/// `global_batch`: global batch g is positions [g*B, (g+1)*B) and rank r of `world_size`
/// takes [g*B + r*B/W, g*B + (r+1)*B/W) (integer division, so uneven sizes still tile the
/// batch exactly). The caller clips the epoch's last batch to the epoch length.
pub fn rank_slice(
    global_batch: u64,
    global_batch_size: u64,
    rank: u32,
    world_size: u32,
) -> std::ops::Range<u64> {
    let world = u128::from(world_size.max(1));
    let b = u128::from(global_batch_size);
    let base = u128::from(global_batch) * b;
    let start = base + u128::from(rank) * b / world;
    let end = base + (u128::from(rank) + 1) * b / world;
    start as u64..end as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_bijection(order: &EpochOrder) -> bool {
        let n = order.len() as usize;
        let mut seen = vec![false; n];
        for p in 0..order.len() {
            let i = order.index_at(p) as usize;
            if i >= n || seen[i] {
                return false;
            }
            seen[i] = true;
        }
        true
    }

    #[test]
    fn permutations_are_bijections() {
        for m in [0u64, 1, 2, 3, 5, 64, 100, 1000, 4097] {
            let p = Permutation::new(m, 42);
            let mut image: Vec<u64> = (0..m).map(|x| p.apply(x)).collect();
            image.sort_unstable();
            assert_eq!(image, (0..m).collect::<Vec<_>>(), "m = {m}");
        }
    }

    #[test]
    fn epoch_orders_are_bijections_for_many_layouts() {
        for n in [0u64, 1, 2, 7, 64, 100, 1023, 1024, 1025, 5000] {
            for (block, window) in [(1, 1), (4, 3), (16, 8), (1024, 8), (7, 2)] {
                for epoch in 0..2 {
                    let order = EpochOrder::with_layout(n, 9, epoch, block, window);
                    assert!(
                        is_bijection(&order),
                        "n {n} block {block} window {window} epoch {epoch}"
                    );
                }
            }
        }
    }

    #[test]
    fn orders_are_deterministic_and_differ_by_seed_and_epoch() {
        let a: Vec<u64> = (0..3000)
            .map(|p| EpochOrder::with_layout(3000, 1, 0, 16, 4).index_at(p))
            .collect();
        let b: Vec<u64> = (0..3000)
            .map(|p| EpochOrder::with_layout(3000, 1, 0, 16, 4).index_at(p))
            .collect();
        assert_eq!(a, b);
        let c: Vec<u64> = (0..3000)
            .map(|p| EpochOrder::with_layout(3000, 1, 1, 16, 4).index_at(p))
            .collect();
        let d: Vec<u64> = (0..3000)
            .map(|p| EpochOrder::with_layout(3000, 2, 0, 16, 4).index_at(p))
            .collect();
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_ne!(a, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn a_window_reads_only_its_blocks() {
        // Positions of one window come from at most `window` blocks (row groups).
        let (n, block, window) = (10_000u64, 100u64, 4u64);
        let order = EpochOrder::with_layout(n, 3, 0, block, window);
        for w in 0..(n / (block * window)) {
            let blocks: std::collections::HashSet<u64> = (w * block * window
                ..(w + 1) * block * window)
                .filter(|&p| p < n)
                .map(|p| order.index_at(p) / block)
                .collect();
            assert!(
                blocks.len() <= window as usize,
                "window {w} touches {} blocks",
                blocks.len()
            );
        }
    }

    #[test]
    fn rank_slices_tile_every_global_batch() {
        for (b, world) in [(8u64, 1u32), (8, 2), (8, 4), (10, 3), (7, 7), (5, 8)] {
            for g in 0..4 {
                let mut covered = Vec::new();
                for r in 0..world {
                    covered.extend(rank_slice(g, b, r, world));
                }
                assert_eq!(
                    covered,
                    (g * b..(g + 1) * b).collect::<Vec<_>>(),
                    "b {b} world {world}"
                );
            }
        }
        assert_eq!(rank_slice(3, 8, 1, 2), 28..32);
    }
}
