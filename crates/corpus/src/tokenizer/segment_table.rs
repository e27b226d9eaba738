//! The inline part of the segment cache (segment_cache.rs): short segments and their few
//! tokens stored in place, one 64-byte slot each, read without a lock.
//!
//! Why: a cache hit is the common case of `prepare` (96% of the segments of a PubMed corpus
//! with new words at Heaps' rate), and a hash map of boxed keys and boxed ids costs a lock
//! and four dependent memory accesses per hit (control bytes, slot, key, ids), each a miss
//! in a table of tens of MiB: 40% of `prepare`'s time under perf. A slot holds the key and
//! the ids in one cache line, so a hit is one or two line reads.
//!
//! Concurrency: each slot is a seqlock (Boehm, "Can seqlocks get along with programming
//! language memory models?", 2012). Its first word holds a version, odd while a writer fills
//! the slot; a reader copies the slot and keeps the copy only when the version was even and
//! unchanged across the copy. Every word is an atomic, so a torn read is never undefined
//! behaviour, only discarded. A writer that finds the slot being written skips its insert:
//! this is a cache, and the segment comes back.
//!
//! Replacement: two-way, the slot the hash names and its neighbour in the same 128 bytes; a
//! new segment takes an empty one, else replaces one of the two chosen by another hash bit.

use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Longest key stored inline, in bytes (three words).
pub(super) const KEY_BYTES: usize = 24;
const KEY_WORDS: usize = KEY_BYTES / 8;
/// Most ids stored inline (two per word).
pub(super) const MAX_IDS: usize = 6;
const ID_WORDS: usize = MAX_IDS / 2;
/// Bytes a slot takes.
pub(super) const SLOT_BYTES: usize = 64;

/// `words[0]`: version (low 32 bits, odd while written) and hash tag (high 32 bits);
/// `words[1]`: key length (bits 0-7, 0 for an empty slot) and id count (bits 8-15);
/// `words[2..5]`: the key's bytes, little-endian, zero-padded; `words[5..8]`: the ids.
#[derive(Default)]
#[repr(C, align(64))]
struct Slot {
    words: [AtomicU64; 8],
}

const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);

/// A key as the slot stores it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PackedKey {
    meta_len: u64,
    words: [u64; KEY_WORDS],
}

impl PackedKey {
    fn new(key: &[u8]) -> Option<Self> {
        if key.is_empty() || key.len() > KEY_BYTES {
            return None;
        }
        let mut bytes = [0u8; KEY_BYTES];
        bytes[..key.len()].copy_from_slice(key);
        let word =
            |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap_or_default());
        Some(Self {
            meta_len: key.len() as u64,
            words: [word(0), word(1), word(2)],
        })
    }
}

/// A fixed table of inline slots; see the module comment.
pub(super) struct SegmentTable {
    slots: Box<[Slot]>,
    mask: usize,
}

impl SegmentTable {
    /// A table of the largest power of two of slots that fits in `bytes` (at least two).
    pub fn new(bytes: usize) -> Self {
        let count = (bytes / SLOT_BYTES).max(2);
        let count = if count.is_power_of_two() {
            count
        } else {
            count.next_power_of_two() / 2
        };
        Self {
            slots: (0..count).map(|_| Slot::default()).collect(),
            mask: count - 1,
        }
    }

    /// Whether `key` and `ids` fit in a slot.
    pub fn fits(key: &str, ids: usize) -> bool {
        !key.is_empty() && key.len() <= KEY_BYTES && ids <= MAX_IDS
    }

    /// The ids cached for `key` (`hash` is its hash), written to `out`; their count, or
    /// `None` when the key is not here.
    pub fn get(&self, key: &str, hash: u64, out: &mut [u32; MAX_IDS]) -> Option<usize> {
        let packed = PackedKey::new(key.as_bytes())?;
        let first = self.index(hash);
        [first, first ^ 1]
            .into_iter()
            .find_map(|i| read_slot(&self.slots[i], tag(hash), &packed, out))
    }

    /// Caches `ids` (word-start bits included) for `key`, which must [`fit`](Self::fits).
    pub fn insert(&self, key: &str, hash: u64, ids: &[u32]) {
        let Some(packed) = PackedKey::new(key.as_bytes()) else {
            return;
        };
        if ids.len() > MAX_IDS {
            return;
        }
        let first = self.index(hash);
        let pair = [first, first ^ 1];
        let stored_len = |i: usize| self.slots[i].words[1].load(Ordering::Relaxed) & 0xff;
        let slot = pair
            .into_iter()
            .find(|&i| stored_len(i) == 0)
            .unwrap_or(pair[usize::from(hash & (1 << 40) != 0)]);
        write_slot(&self.slots[slot], tag(hash), &packed, ids);
    }

    fn index(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Entries held (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.words[1].load(Ordering::Relaxed) & 0xff != 0)
            .count()
    }
}

fn tag(hash: u64) -> u64 {
    hash >> 32
}

/// A consistent copy of `slot` when it holds `key`; see the module comment.
fn read_slot(slot: &Slot, tag: u64, key: &PackedKey, out: &mut [u32; MAX_IDS]) -> Option<usize> {
    let version = slot.words[0].load(Ordering::Acquire);
    if version & 1 != 0 || version >> 32 != tag {
        return None;
    }
    let meta = slot.words[1].load(Ordering::Relaxed);
    let stored = PackedKey {
        meta_len: meta & 0xff,
        words: std::array::from_fn(|i| slot.words[2 + i].load(Ordering::Relaxed)),
    };
    let id_words: [u64; ID_WORDS] =
        std::array::from_fn(|i| slot.words[2 + KEY_WORDS + i].load(Ordering::Relaxed));
    fence(Ordering::Acquire);
    if slot.words[0].load(Ordering::Relaxed) != version || stored != *key {
        return None;
    }
    let count = ((meta >> 8) & 0xff) as usize;
    for (i, id) in out.iter_mut().enumerate().take(count.min(MAX_IDS)) {
        *id = (id_words[i / 2] >> (32 * (i % 2))) as u32;
    }
    (count <= MAX_IDS).then_some(count)
}

/// Writes `key` and `ids` into `slot`, unless another writer holds it.
fn write_slot(slot: &Slot, tag: u64, key: &PackedKey, ids: &[u32]) {
    let version = slot.words[0].load(Ordering::Relaxed);
    let locked = version | 1;
    if version & 1 != 0
        || slot.words[0]
            .compare_exchange(version, locked, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    fence(Ordering::Release);
    slot.words[1].store(key.meta_len | (ids.len() as u64) << 8, Ordering::Relaxed);
    for (i, &word) in key.words.iter().enumerate() {
        slot.words[2 + i].store(word, Ordering::Relaxed);
    }
    for i in 0..ID_WORDS {
        let id = |j: usize| ids.get(j).map_or(0, |&id| u64::from(id));
        let word = id(2 * i) | id(2 * i + 1) << 32;
        slot.words[2 + KEY_WORDS + i].store(word, Ordering::Relaxed);
    }
    let next = (locked.wrapping_add(1) & 0xffff_ffff) | tag << 32;
    slot.words[0].store(next, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(table: &SegmentTable, key: &str, hash: u64) -> Option<Vec<u32>> {
        let mut out = [0; MAX_IDS];
        table.get(key, hash, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn keys_of_every_length_and_id_count_round_trip() {
        let table = SegmentTable::new(64 * 1024);
        for len in 1..=KEY_BYTES {
            let key: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let ids: Vec<u32> = (0..len % (MAX_IDS + 1))
                .map(|i| (i as u32 * 7919) | if i == 0 { 1 << 31 } else { 0 })
                .collect();
            let hash = len as u64 * 0x9e37_79b9_7f4a_7c15;
            table.insert(&key, hash, &ids);
            assert_eq!(get(&table, &key, hash), Some(ids), "length {len}");
        }
    }

    #[test]
    fn a_key_differing_in_one_byte_or_its_length_misses() {
        let table = SegmentTable::new(64 * 16);
        table.insert(" cells", 42, &[5, 6]);
        assert_eq!(get(&table, " cells", 42), Some(vec![5, 6]));
        // Same hash, different keys: the stored bytes decide, not the hash.
        assert_eq!(get(&table, " cellz", 42), None);
        assert_eq!(get(&table, " cell", 42), None);
        assert_eq!(get(&table, " cells\0", 42), None);
        // Same slot, another tag: never compared.
        assert_eq!(get(&table, " cells", 42 | 1 << 32), None);
    }

    #[test]
    fn what_does_not_fit_is_not_stored() {
        let table = SegmentTable::new(64 * 16);
        let long = "x".repeat(KEY_BYTES + 1);
        table.insert(&long, 1, &[1]);
        table.insert("many", 2, &[1; MAX_IDS + 1]);
        assert_eq!(table.len(), 0);
        assert!(!SegmentTable::fits(&long, 1));
        assert!(!SegmentTable::fits("many", MAX_IDS + 1));
        assert!(SegmentTable::fits("many", MAX_IDS));
    }

    #[test]
    fn a_full_pair_replaces_one_of_its_two_entries() {
        // Two slots: every key lands in the same pair.
        let table = SegmentTable::new(2 * SLOT_BYTES);
        table.insert("a", 0, &[1]);
        table.insert("b", 1, &[2]);
        assert_eq!(table.len(), 2);
        table.insert("c", 1 << 40, &[3]);
        assert_eq!(table.len(), 2);
        assert_eq!(get(&table, "c", 1 << 40), Some(vec![3]));
        let kept = [get(&table, "a", 0), get(&table, "b", 1)];
        assert_eq!(kept.iter().flatten().count(), 1, "{kept:?}");
    }

    #[test]
    fn concurrent_writers_never_let_a_reader_see_a_mixed_entry() {
        // Every key's ids are a function of the key; two threads overwrite the same few
        // slots with different keys while reading: a torn read would pair a key with
        // another key's ids.
        let table = SegmentTable::new(4 * SLOT_BYTES);
        let ids_of = |k: u32| [k, k + 1, k + 2, k + 3, k + 4, k + 5];
        std::thread::scope(|scope| {
            for thread in 0..2u32 {
                let table = &table;
                scope.spawn(move || {
                    for round in 0..20_000u32 {
                        let k = (round * 2 + thread) % 64;
                        let key = format!("key{k}");
                        let hash = u64::from(k) * 0x9e37_79b9_7f4a_7c15;
                        table.insert(&key, hash, &ids_of(k * 10));
                        if let Some(ids) = get(table, &key, hash) {
                            assert_eq!(ids, ids_of(k * 10));
                        }
                    }
                });
            }
        });
    }
}
