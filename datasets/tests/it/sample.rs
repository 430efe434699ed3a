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
