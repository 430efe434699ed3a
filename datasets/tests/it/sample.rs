//! `simple_evals_sample` must reproduce CPython's `random.Random(0).sample(rows, k)` exactly; the
//! oracle is the shared `simple_evals_subset_indices.json` computed with CPython 3.11.7.

use agentcap_datasets::manifest;
use agentcap_datasets::sample::simple_evals_sample;
use serde_json::Value;

use crate::shared;

#[test]
fn matches_the_cpython_oracle_for_every_k() {
    let text =
        std::fs::read_to_string(shared("simpleqa/simple_evals_subset_indices.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    let population = oracle["population"].as_u64().unwrap() as usize;
    let m = manifest::find("simpleqa").unwrap();
    assert_eq!(population, m.rows);
    let seed = m.subset.unwrap().seed;

    let subsets = oracle["subsets"].as_object().unwrap();
    let mut ks: Vec<usize> = subsets.keys().map(|k| k.parse().unwrap()).collect();
    ks.sort_unstable();
    for required in [5, 10, 100, 1000] {
        assert!(ks.contains(&required), "oracle lacks k={required}");
    }
    for k in ks {
        let want: Vec<usize> = subsets[&k.to_string()]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(want.len(), k);
        assert_eq!(simple_evals_sample(population, k, seed), want, "k = {k}");
    }
}

/// The pool branch of CPython's `sample`: for n = 4326 it is taken when
/// `21 + 4 ** ceil(log(3k, 4)) >= n`, i.e. from k = 1366 on, so the oracle's k <= 1000 (the set
/// branch) never reach it. Fixtures produced with CPython 3.11.7:
///
/// ```text
/// python3 -c 'import random, hashlib
/// for k in (2000, 4326):
///     random.seed(0); s = random.sample(range(4326), k)
///     print(k, s[:20], s[-20:], hashlib.sha256(",".join(map(str, s)).encode()).hexdigest())'
/// ```
#[test]
fn matches_cpython_on_the_pool_branch() {
    use sha2::{Digest, Sha256};
    let first20 = [
        3155, 3445, 331, 2121, 4188, 3980, 3317, 2484, 3904, 2933, 1789, 4134, 1140, 2308, 1144,
        776, 2052, 1203, 2540, 809,
    ];
    let cases: [(usize, [usize; 20], &str); 2] = [
        (
            2000,
            [
                2487, 20, 2118, 437, 839, 2103, 455, 1092, 690, 1539, 3415, 3753, 42, 472, 2761,
                1968, 3603, 3332, 1853, 3588,
            ],
            "6a0c00cd1c0049af7f3f868ec54c00e9f155e848e37a2e5bf8af24bb7e46a9be",
        ),
        (
            4326,
            [
                672, 1823, 3127, 4175, 3458, 61, 1741, 3215, 1064, 1817, 1231, 384, 2766, 1441,
                1273, 3934, 1480, 3197, 440, 1292,
            ],
            "d68b17ac46cfd5b9d0b17eb40a828ee105bf522712b040ef20cdbfa3a4129057",
        ),
    ];
    for (k, last20, sha) in cases {
        let s = simple_evals_sample(4326, k, 0);
        assert_eq!(s.len(), k);
        assert_eq!(s[..20], first20, "k = {k}");
        assert_eq!(s[k - 20..], last20, "k = {k}");
        let text = s.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        assert_eq!(hex::encode(Sha256::digest(text.as_bytes())), sha, "k = {k}");
    }
    // k = n is a permutation of the whole population.
    let mut all = simple_evals_sample(4326, 4326, 0);
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..4326));
}
