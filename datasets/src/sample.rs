//! Reproduces the subsets openai/simple-evals evaluates with `--examples k`: it calls
//! `random.Random(0).sample(examples, k)`, so this module re-implements the parts of CPython 3's
//! `random` module that call depends on — MT19937 seeded from an integer the way
//! `random.seed(int)` does, `getrandbits`, `_randbelow_with_getrandbits`, and both branches of
//! `Random.sample` — to return exactly the same indices in the same order.

/// Returns the indices `random.Random(seed).sample(range(n), k)` would return in CPython 3
/// (3.2 or later, where integer seeding and `sample` have been stable). With `n` = the number of
/// SimpleQA rows (4,326) and `seed` = 0, this is the ordered row subset simple-evals uses for
/// `num_examples = k`.
///
/// # Panics
/// If `k > n` (Python raises `ValueError` there). Use [`try_simple_evals_sample`] to get `None`
/// instead.
pub fn simple_evals_sample(n: usize, k: usize, seed: u64) -> Vec<usize> {
    try_simple_evals_sample(n, k, seed)
        .unwrap_or_else(|| panic!("sample larger than population: k = {k}, n = {n}"))
}

/// Like [`simple_evals_sample`], but returns `None` when `k > n`.
pub fn try_simple_evals_sample(n: usize, k: usize, seed: u64) -> Option<Vec<usize>> {
    PyRandom::new(seed).sample_indices(n, k)
}

/// State size of MT19937, in 32-bit words.
const N: usize = 624;
/// Middle word offset of MT19937.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A CPython-compatible `random.Random`, limited to what `sample` needs.
#[derive(Clone)]
pub struct PyRandom {
    state: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// Seeds like `random.Random(seed)` for a non-negative integer seed: the seed is split into
    /// little-endian 32-bit words (at least one, so 0 gives `[0]`) and fed to MT19937's
    /// `init_by_array`.
    pub fn new(seed: u64) -> PyRandom {
        let low = seed as u32;
        let high = (seed >> 32) as u32;
        if high == 0 {
            PyRandom::from_key(&[low])
        } else {
            PyRandom::from_key(&[low, high])
        }
    }

    /// MT19937 `init_by_array`: the reference seeding from a key of 32-bit words.
    fn from_key(key: &[u32]) -> PyRandom {
        let mut rng = PyRandom::from_u32(19_650_218);
        let mt = &mut rng.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000; // guarantees a non-zero state
        rng
    }

    /// MT19937 `init_genrand`: fills the state from a single 32-bit value.
    fn from_u32(s: u32) -> PyRandom {
        let mut state = [0u32; N];
        state[0] = s;
        for i in 1..N {
            let prev = state[i - 1] ^ (state[i - 1] >> 30);
            state[i] = prev.wrapping_mul(1_812_433_253).wrapping_add(i as u32);
        }
        PyRandom { state, index: N }
    }

    /// Regenerates all `N` words of the state.
    fn twist(&mut self) {
        let mt = &mut self.state;
        for i in 0..N {
            let y = (mt[i] & UPPER_MASK) | (mt[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[i] = mt[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random.getrandbits(k)` for `k <= 64`: one 32-bit output per started 32-bit word, least
    /// significant word first, with the last word keeping only its top bits.
    ///
    /// # Panics
    /// If `k > 64`.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits supports at most 64 bits, got {k}");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let low = u64::from(self.next_u32());
        let high = u64::from(self.next_u32() >> (64 - k));
        (high << 32) | low
    }

    /// `Random._randbelow_with_getrandbits(n)`: rejection sampling with `n.bit_length()` bits.
    /// Returns 0 for `n == 0` without consuming output (Python would loop forever there).
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let k = u64::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `Random.sample(range(n), k)`: `k` distinct indices in selection order, or `None` if
    /// `k > n`.
    ///
    /// Like CPython, it keeps a partial Fisher–Yates pool when `n` is at most a "set size"
    /// (21, plus `4 ** ceil(log(3k, 4))` for `k > 5`) and otherwise redraws on collision; the
    /// two branches consume the generator differently, so both are needed to match Python.
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        let mut result = Vec::with_capacity(k);
        if (n as u128) <= set_size(k) {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow((n - i) as u64) as usize;
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n as u64) as usize;
                while !selected.insert(j) {
                    j = self.randbelow(n as u64) as usize;
                }
                result.push(j);
            }
        }
        Some(result)
    }
}

/// CPython's `sample` threshold: `21`, plus `4 ** ceil(log(3k, 4))` when `k > 5`. The logarithm
/// is computed in floating point exactly as Python does (`log(x) / log(4)`), so rounding agrees.
fn set_size(k: usize) -> u128 {
    let mut size: u128 = 21;
    if k > 5 {
        let x = (3 * k as u128) as f64;
        let exponent = (x.ln() / 4f64.ln()).ceil() as u32;
        size = size.saturating_add(4u128.checked_pow(exponent).unwrap_or(u128::MAX));
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_size_matches_python_formula() {
        // 21 + 4 ** ceil(log(3k, 4)): k=6 -> log4(18)=2.08 -> 64; k=21 -> log4(63)=2.99 -> 64;
        // k=22 -> log4(66)=3.02 -> 256.
        assert_eq!(set_size(0), 21);
        assert_eq!(set_size(5), 21);
        assert_eq!(set_size(6), 21 + 64);
        assert_eq!(set_size(21), 21 + 64);
        assert_eq!(set_size(22), 21 + 256);
        assert_eq!(set_size(1000), 21 + 4096);
    }

    #[test]
    fn sample_is_a_set_of_distinct_in_range_indices() {
        for (n, k) in [(10, 10), (30, 7), (4326, 500), (1, 1), (5, 0)] {
            let s = simple_evals_sample(n, k, 42);
            assert_eq!(s.len(), k);
            let mut sorted = s.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), k);
            assert!(s.iter().all(|&i| i < n));
        }
    }

    #[test]
    fn k_larger_than_n_is_rejected() {
        assert!(try_simple_evals_sample(3, 4, 0).is_none());
        assert!(std::panic::catch_unwind(|| simple_evals_sample(3, 4, 0)).is_err());
    }

    #[test]
    fn getrandbits_edges() {
        let mut a = PyRandom::new(7);
        let mut b = a.clone();
        assert_eq!(a.getrandbits(0), 0);
        let word = u64::from(b.next_u32());
        assert_eq!(a.getrandbits(32), word);
        assert!(a.getrandbits(1) <= 1);
        assert_eq!(a.randbelow(1), 0);
    }
}
