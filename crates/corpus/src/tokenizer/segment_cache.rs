//! The segment -> tokens cache of the split fast path (tokenizer/fast_split.rs): what the
//! `tokenizers` library gave for a segment of text, looked up instead of encoding the same
//! segment again. Shared by the rayon workers of `prepare`.
//!
//! Two parts: short segments with few tokens (nearly all of them: words with their leading
//! space) live in a lock-free table of inline slots (segment_table.rs); the others in
//! [`SHARDS`] small maps, each behind its own lock, so two workers rarely want the same one.
//!
//! Memory is bounded whatever the corpus: the table has a fixed size and replaces entries;
//! a shard that outgrows its share of the budget is emptied and fills again with the
//! segments that follow (frequent segments come back within a few documents, so the hit
//! rate barely moves; drift to new vocabulary is followed).

use std::hash::Hasher;
use std::sync::{Mutex, MutexGuard};

use super::fx::{FxHasher, FxMap};
use super::segment_table::{MAX_IDS, SegmentTable};

/// Number of independently locked maps.
const SHARDS: usize = 64;

/// An entry's bookkeeping beyond its key and ids: the map slot, two boxes and allocator
/// headers (an estimate; the budget is a bound on the order of magnitude, not exact bytes).
const ENTRY_OVERHEAD: usize = 64;

/// Set on a cached id whose token starts a word (ids of a vocabulary stay below 2^31; the
/// fast path is declined otherwise).
pub(super) const START_BIT: u32 = 1 << 31;

#[derive(Default)]
struct Shard {
    map: FxMap<Box<[u32]>>,
    bytes: usize,
}

pub(super) struct SegmentCache {
    table: SegmentTable,
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
}

impl SegmentCache {
    /// A cache holding about `budget` bytes at most: half for the inline table, half for
    /// the maps.
    pub fn new(budget: usize) -> Self {
        Self {
            table: SegmentTable::new(budget / 2),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: budget / 2 / SHARDS,
        }
    }

    /// The shard of a key of hash `hash` ([`segment_hash`]). The maps hash keys with
    /// FxHash alone, so the shard index does not constrain the bits they use (a shard picked
    /// by the map's own top bits would leave every key of a shard with the same control tag,
    /// and every probe comparing keys).
    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        let index = (hash >> 32) as usize % SHARDS;
        // A worker that panicked while holding the lock left a consistent map behind (an
        // insert either happened or did not).
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends the cached tokens of `key` (ids and word starts); false when not cached.
    pub fn extend_from(&self, key: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>) -> bool {
        let hash = segment_hash(key);
        let mut inline = [0; MAX_IDS];
        if let Some(count) = self.table.get(key, hash, &mut inline) {
            append(&inline[..count], ids, starts);
            return true;
        }
        let shard = self.shard(hash);
        let Some(cached) = shard.map.get(key) else {
            return false;
        };
        append(cached, ids, starts);
        true
    }

    /// Caches the tokens of `key`; empties the shard first when it is full.
    pub fn insert(&self, key: &str, ids: &[u32], starts: &[bool]) {
        let entry: Box<[u32]> = ids
            .iter()
            .zip(starts)
            .map(|(&id, &start)| if start { id | START_BIT } else { id })
            .collect();
        let hash = segment_hash(key);
        if SegmentTable::fits(key, entry.len()) {
            self.table.insert(key, hash, &entry);
            return;
        }
        let cost = key.len() + 4 * entry.len() + ENTRY_OVERHEAD;
        let mut shard = self.shard(hash);
        if shard.bytes + cost > self.shard_budget {
            shard.map.clear();
            shard.bytes = 0;
        }
        if shard.map.insert(key.into(), entry).is_none() {
            shard.bytes += cost;
        }
    }

    /// Entries held (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let mapped: usize = self
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum();
        self.table.len() + mapped
    }
}

/// Appends cached ids, splitting off their word-start bits.
fn append(cached: &[u32], ids: &mut Vec<u32>, starts: &mut Vec<bool>) {
    ids.extend(cached.iter().map(|&id| id & !START_BIT));
    starts.extend(cached.iter().map(|&id| id & START_BIT != 0));
}

/// FxHash of the key's bytes, finished with MurmurHash3's 64-bit mixer: the table takes its
/// slot from the low bits and its tag from the high ones, and FxHash's low bits depend on
/// the last bytes alone.
fn segment_hash(key: &str) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key.as_bytes());
    let mut h = hasher.finish();
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
