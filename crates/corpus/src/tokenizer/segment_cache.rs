//! The segment -> tokens cache of the split fast path (tokenizer/fast_split.rs): what the
//! `tokenizers` library gave for a segment of text, looked up instead of encoding the same
//! segment again. Shared by the rayon workers of `prepare`, so it is sharded: a worker locks
//! one of [`SHARDS`] small maps for one lookup, and two workers rarely want the same one.
//!
//! Memory is bounded whatever the corpus: a shard that outgrows its share of the budget is
//! emptied and fills again with the segments that follow (frequent segments come back
//! within a few documents, so the hit rate barely moves; drift to new vocabulary is
//! followed).

use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::{Mutex, MutexGuard};

use super::fx::{FxHasher, FxMap};

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
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
}

impl SegmentCache {
    /// A cache holding about `budget` bytes at most.
    pub fn new(budget: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: budget / SHARDS,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let hash = BuildHasherDefault::<FxHasher>::default().hash_one(key);
        // The high bits: FxHash mixes its last input into them.
        let index = (hash >> 58) as usize % SHARDS;
        // A worker that panicked while holding the lock left a consistent map behind (an
        // insert either happened or did not).
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends the cached tokens of `key` (ids and word starts); false when not cached.
    pub fn extend_from(&self, key: &str, ids: &mut Vec<u32>, starts: &mut Vec<bool>) -> bool {
        let shard = self.shard(key);
        let Some(cached) = shard.map.get(key) else {
            return false;
        };
        ids.extend(cached.iter().map(|&id| id & !START_BIT));
        starts.extend(cached.iter().map(|&id| id & START_BIT != 0));
        true
    }

    /// Caches the tokens of `key`; empties the shard first when it is full.
    pub fn insert(&self, key: &str, ids: &[u32], starts: &[bool]) {
        let entry: Box<[u32]> = ids
            .iter()
            .zip(starts)
            .map(|(&id, &start)| if start { id | START_BIT } else { id })
            .collect();
        let cost = key.len() + 4 * entry.len() + ENTRY_OVERHEAD;
        let mut shard = self.shard(key);
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
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum()
    }
}
