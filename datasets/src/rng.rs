//! The workspace's one seedable generator: SplitMix64 (Steele, Lea & Flood 2014), tiny, fast and
//! reproducible for a seed; good enough for sampling, bootstrap resampling, fault draws and jitter,
//! never for secrets. [`SplitMix64`] is the plain sequence; [`AtomicSplitMix64`] the same sequence
//! shared by threads, every draw distinct.

use std::sync::atomic::{AtomicU64, Ordering};

/// The increment of the SplitMix64 state (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: scrambles one state value into 64 random bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits as a number in `[0, 1)` (the top 53 bits).
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A SplitMix64 sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// A number in `0..n` by multiply-shift reduction (Lemire); its bias is at most `n / 2^64`,
    /// negligible here. Returns 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// The next draw in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        unit(self.next_u64())
    }
}

/// A SplitMix64 sequence shared by threads: each call takes the next state in one atomic step, so
/// concurrent callers never draw the same value; for one thread it is the [`SplitMix64`] sequence.
#[derive(Debug)]
pub struct AtomicSplitMix64 {
    state: AtomicU64,
}

impl AtomicSplitMix64 {
    /// A generator starting from `seed` (the same sequence as [`SplitMix64::new`]).
    pub const fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the clock, for draws that need no reproducibility (retry jitter).
    pub fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self::new(nanos)
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let s = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(s)
    }

    /// The next draw in `[0, 1)`.
    pub fn next_unit(&self) -> f64 {
        unit(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_atomic_sequence_is_the_plain_one_and_shared_draws_are_distinct() {
        let mut plain = SplitMix64::new(42);
        let shared = AtomicSplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(plain.next_u64(), shared.next_u64());
        }
        let shared = std::sync::Arc::new(AtomicSplitMix64::new(7));
        let draws: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let r = shared.clone();
                    s.spawn(move || (0..1000).map(|_| r.next_u64()).collect::<Vec<_>>())
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert_eq!(distinct.len(), draws.len());
    }
}
