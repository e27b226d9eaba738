//! mlm-seeds: the pure 64-bit mixers behind every seeded choice of mlm-train (epoch orders,
//! permutations, mask keys, weight init). One copy, so that the crates cannot drift apart:
//! a changed constant here would silently change every split, order and mask.
//!
//! ```
//! assert_eq!(mlm_seeds::splitmix64(0), 0xE220_A839_7B1D_CDAF);
//! assert_ne!(mlm_seeds::mix(&[1, 2]), mlm_seeds::mix(&[2, 1]));
//! ```

/// SplitMix64's output function (Steele, Lea, Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA'14): a bijective, well-mixing 64-bit hash.
// `#[inline]`: called from other crates (per sequence in epoch orders and mask keys), and
// without LTO a non-generic function is inlined across crates only when marked.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes several words into one key, order-sensitively: `mix(&[a, b]) != mix(&[b, a])` in
/// general, and `mix(&[key, 1])`, `mix(&[key, 2])` are independent sub-keys of `key`.
#[inline]
pub fn mix(words: &[u64]) -> u64 {
    // SHA-512's first initial hash word: an arbitrary constant with no structure.
    words.iter().fold(0x6A09_E667_F3BC_C908, |acc, &w| {
        splitmix64(acc ^ splitmix64(w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_implementation() {
        // The first outputs of Vigna's splitmix64.c for seed 0: the state advances by the
        // golden gamma, and next() returns the output function of the advanced state.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn splitmix64_is_injective_on_a_sample() {
        let mut outputs: Vec<u64> = (0..10_000).map(splitmix64).collect();
        outputs.sort_unstable();
        outputs.dedup();
        assert_eq!(outputs.len(), 10_000);
    }

    #[test]
    fn mix_is_pinned_and_order_sensitive() {
        // Pinned: epoch orders and permutations of prepared corpora depend on these values.
        assert_eq!(mix(&[]), 0x6A09_E667_F3BC_C908);
        assert_eq!(mix(&[0]), splitmix64(0x6A09_E667_F3BC_C908 ^ splitmix64(0)));
        assert_eq!(mix(&[1, 2]), splitmix64(mix(&[1]) ^ splitmix64(2)));
        assert_ne!(mix(&[1, 2]), mix(&[2, 1]));
        assert_ne!(mix(&[7, 1]), mix(&[7, 2]));
    }
}
