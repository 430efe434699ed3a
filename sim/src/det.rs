//! Deterministic draws: hashes of (seed, inputs) mapped to numbers, and a seeded counter RNG.

use agentcap_datasets::rng::AtomicSplitMix64;
use sha2::{Digest, Sha256};

/// A 64-bit hash of the concatenated parts (length-prefixed, so `["ab","c"]` ≠ `["a","bc"]`).
pub fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("sha256 has 32 bytes"))
}

/// A uniform draw in `[0, 1)` from the parts.
pub fn unit(parts: &[&[u8]]) -> f64 {
    (hash64(parts) >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform index below `n` (n > 0) from the parts.
pub fn index(parts: &[&[u8]], n: usize) -> usize {
    (hash64(parts) % n as u64) as usize
}

/// A thread-safe sequence, reproducible for a seed (the workspace's one SplitMix64, shared by threads).
#[derive(Debug)]
pub struct SeqRng(AtomicSplitMix64);

impl SeqRng {
    /// A sequence starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(AtomicSplitMix64::new(seed ^ 0x9E37_79B9_7F4A_7C15))
    }

    /// The next draw in `[0, 1)`.
    pub fn next_unit(&self) -> f64 {
        self.0.next_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_in_range_and_stable() {
        let a = unit(&[b"seed", b"q"]);
        assert!((0.0..1.0).contains(&a));
        assert_eq!(a, unit(&[b"seed", b"q"]));
        assert_ne!(hash64(&[b"ab", b"c"]), hash64(&[b"a", b"bc"]));
    }

    #[test]
    fn seq_rng_is_roughly_uniform() {
        let r = SeqRng::new(7);
        let n = 10_000;
        let below = (0..n).filter(|_| r.next_unit() < 0.25).count();
        assert!((2_200..2_800).contains(&below), "{below}");
    }
}
