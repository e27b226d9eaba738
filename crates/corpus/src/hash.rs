//! Stable hashes: document ids, the held-out split and permutation keys. Everything here is
//! a pure function of its inputs, identical on every machine and release (SHA-256 here,
//! SplitMix64 in `mlm_seeds`), so splits and epoch orders never change under a user.

use sha2::{Digest, Sha256};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of `bytes` as 64 hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The id of a document that has none: `sha256:` and the first 16 bytes of the SHA-256 of
/// its text, so that identical texts get identical ids (and land on the same split side).
pub fn content_id(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("sha256:{}", hex(&digest[..16]))
}

/// First 8 bytes (little-endian) of SHA-256(`domain` || `data`).
pub fn hash64(domain: &[u8], data: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(data);
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Whether the document with `id` is held out: u = the top 53 bits of
/// SHA-256(`"mlm-corpus split v1\0"` || `seed` as 8 little-endian bytes || `id` as UTF-8)'s
/// first 8 bytes read little-endian, divided by 2^53; held out when u < `fraction`.
/// (The 53-bit form converts to f64 exactly, so Python's `hashlib` reproduces it bit for bit.)
pub fn is_held_out(id: &str, seed: u64, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let mut domain = b"mlm-corpus split v1\0".to_vec();
    domain.extend_from_slice(&seed.to_le_bytes());
    let h = hash64(&domain, id.as_bytes());
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    u < fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(content_id("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn held_out_fraction_is_about_right_and_stable() {
        let held = (0..20_000)
            .filter(|i| is_held_out(&i.to_string(), 0, 0.1))
            .count();
        assert!((1800..2200).contains(&held), "{held}");
        assert_eq!(is_held_out("12345", 7, 0.3), is_held_out("12345", 7, 0.3));
        assert!(!is_held_out("x", 0, 0.0));
        let other_seed = (0..20_000)
            .filter(|i| is_held_out(&i.to_string(), 0, 0.1) != is_held_out(&i.to_string(), 1, 0.1))
            .count();
        assert!(other_seed > 1000, "the seed changes the held-out set");
    }
}
