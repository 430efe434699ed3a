//! Metrics (placeholder until the metrics module of the evalkit core lands): summaries with Wilson
//! and bootstrap intervals, paired comparisons with McNemar's exact test, Holm's correction.

use crate::grade::Grade;

/// What became of one item.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "grade", rename_all = "snake_case")]
pub enum Outcome {
    /// Graded by the grader.
    Graded(Grade),
    /// The judge's reply could not be read.
    Unparseable,
    /// The item failed (after retries); never graded.
    Error,
}

/// One item's result for one config.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ItemResult {
    /// Dataset item id.
    pub item_id: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Topic label.
    pub topic: Option<String>,
    /// Answer-type label.
    pub answer_type: Option<String>,
    /// Time to the first `message.output.delta` (stream mode).
    pub ttft_ms: Option<f64>,
    /// Time to the end of the answer.
    pub total_ms: Option<f64>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Connector tokens.
    pub connector_tokens: u64,
    /// Tool executions in the answer.
    pub tool_executions: u32,
    /// Estimated cost.
    pub cost_usd: Option<f64>,
}

/// A confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// Latency percentiles.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Number of values.
    pub n: usize,
}

/// Per-config summary.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub struct Summary {
    pub n: usize,
    pub correct: usize,
    pub incorrect: usize,
    pub not_attempted: usize,
    pub errors: usize,
    pub unparseable: usize,
    pub graded: usize,
    pub accuracy: f64,
    pub accuracy_ci: Interval,
    pub accuracy_given_attempted: f64,
    pub accuracy_given_attempted_ci: Interval,
    pub f_score: f64,
    pub f_score_ci: Interval,
    pub ttft_ms: Option<Percentiles>,
    pub total_ms: Option<Percentiles>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub connector_tokens: u64,
    pub tool_executions_per_answer: f64,
    pub cost_usd: Option<f64>,
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const B: usize = 2000;

fn f_of(c: usize, i: usize, na: usize) -> f64 {
    let d = 2 * c + 2 * i + na;
    if d == 0 {
        0.0
    } else {
        2.0 * c as f64 / d as f64
    }
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Summarises one config's items.
pub fn summarize(items: &[ItemResult], bootstrap_seed: u64) -> Summary {
    let grades: Vec<Grade> = items
        .iter()
        .filter_map(|i| match i.outcome {
            Outcome::Graded(g) => Some(g),
            _ => None,
        })
        .collect();
    let count = |g: Grade| grades.iter().filter(|x| **x == g).count();
    let (c, i, na) = (
        count(Grade::Correct),
        count(Grade::Incorrect),
        count(Grade::NotAttempted),
    );
    let graded = c + i + na;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut rng = SplitMix(bootstrap_seed);
    let mut fs = Vec::with_capacity(B);
    if graded > 0 {
        for _ in 0..B {
            let (mut bc, mut bi, mut bn) = (0, 0, 0);
            for _ in 0..graded {
                match grades[rng.below(graded)] {
                    Grade::Correct => bc += 1,
                    Grade::Incorrect => bi += 1,
                    Grade::NotAttempted => bn += 1,
                }
            }
            fs.push(f_of(bc, bi, bn));
        }
    }
    fs.sort_by(f64::total_cmp);
    let answered: Vec<&ItemResult> = items
        .iter()
        .filter(|i| i.outcome != Outcome::Error)
        .collect();
    let ttft: Vec<f64> = answered.iter().filter_map(|i| i.ttft_ms).collect();
    let total: Vec<f64> = answered.iter().filter_map(|i| i.total_ms).collect();
    let costs: Vec<f64> = items.iter().filter_map(|i| i.cost_usd).collect();
    Summary {
        n: items.len(),
        correct: c,
        incorrect: i,
        not_attempted: na,
        errors: items.iter().filter(|x| x.outcome == Outcome::Error).count(),
        unparseable: items
            .iter()
            .filter(|x| x.outcome == Outcome::Unparseable)
            .count(),
        graded,
        accuracy: ratio(c, graded),
        accuracy_ci: wilson(c, graded, 1.959_963_984_540_054),
        accuracy_given_attempted: ratio(c, c + i),
        accuracy_given_attempted_ci: wilson(c, c + i, 1.959_963_984_540_054),
        f_score: f_of(c, i, na),
        f_score_ci: Interval {
            lo: quantile_sorted(&fs, 0.025),
            hi: if fs.is_empty() {
                0.0
            } else {
                quantile_sorted(&fs, 0.975)
            },
        },
        ttft_ms: percentiles(&ttft),
        total_ms: percentiles(&total),
        prompt_tokens: items.iter().map(|i| i.prompt_tokens).sum(),
        completion_tokens: items.iter().map(|i| i.completion_tokens).sum(),
        connector_tokens: items.iter().map(|i| i.connector_tokens).sum(),
        tool_executions_per_answer: if answered.is_empty() {
            0.0
        } else {
            answered
                .iter()
                .map(|i| f64::from(i.tool_executions))
                .sum::<f64>()
                / answered.len() as f64
        },
        cost_usd: (!costs.is_empty()).then(|| costs.iter().sum()),
    }
}

/// Summary per key value; `None` goes under `"(none)"`; sorted by key.
pub fn breakdown(
    items: &[ItemResult],
    key: fn(&ItemResult) -> Option<&str>,
    seed: u64,
) -> Vec<(String, Summary)> {
    let mut groups: std::collections::BTreeMap<String, Vec<ItemResult>> = Default::default();
    for i in items {
        groups
            .entry(key(i).unwrap_or("(none)").to_string())
            .or_default()
            .push(i.clone());
    }
    groups
        .into_iter()
        .map(|(k, v)| {
            let s = summarize(&v, seed);
            (k, s)
        })
        .collect()
}

/// A paired comparison of two configs on the same items.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub struct Paired {
    pub baseline: String,
    pub candidate: String,
    pub n_paired: usize,
    pub accuracy_delta: f64,
    pub accuracy_delta_ci: Interval,
    pub b: usize,
    pub c: usize,
    pub mcnemar_p: f64,
    pub holm_p: f64,
    pub became_correct: Vec<String>,
    pub became_incorrect: Vec<String>,
    pub ttft_p50_delta_ms: Option<f64>,
    pub total_p50_delta_ms: Option<f64>,
    pub total_mean_delta_ms: Option<f64>,
}

/// Compares `candidate` with `baseline` on the items graded in both.
pub fn compare_paired(
    baseline_name: &str,
    baseline: &[ItemResult],
    candidate_name: &str,
    candidate: &[ItemResult],
    seed: u64,
) -> Paired {
    let by_id: std::collections::HashMap<&str, &ItemResult> =
        candidate.iter().map(|i| (i.item_id.as_str(), i)).collect();
    let mut pairs: Vec<(bool, bool)> = Vec::new();
    let (mut became_correct, mut became_incorrect) = (Vec::new(), Vec::new());
    for a in baseline {
        let Some(b) = by_id.get(a.item_id.as_str()) else {
            continue;
        };
        let (Outcome::Graded(ga), Outcome::Graded(gb)) = (&a.outcome, &b.outcome) else {
            continue;
        };
        let (ca, cb) = (*ga == Grade::Correct, *gb == Grade::Correct);
        if ca && !cb {
            became_incorrect.push(a.item_id.clone());
        }
        if !ca && cb {
            became_correct.push(a.item_id.clone());
        }
        pairs.push((ca, cb));
    }
    let n = pairs.len();
    let b = became_incorrect.len();
    let c = became_correct.len();
    let delta = if n == 0 {
        0.0
    } else {
        (c as f64 - b as f64) / n as f64
    };
    let mut rng = SplitMix(seed);
    let mut ds = Vec::with_capacity(B);
    if n > 0 {
        for _ in 0..B {
            let mut d = 0i64;
            for _ in 0..n {
                let (x, y) = pairs[rng.below(n)];
                d += i64::from(y) - i64::from(x);
            }
            ds.push(d as f64 / n as f64);
        }
    }
    ds.sort_by(f64::total_cmp);
    let p = mcnemar_exact(b, c);
    let p50 = |v: &[ItemResult], f: fn(&ItemResult) -> Option<f64>| {
        let xs: Vec<f64> = v.iter().filter_map(f).collect();
        percentiles(&xs)
    };
    let delta_of =
        |f: fn(&ItemResult) -> Option<f64>, mean: bool| match (p50(baseline, f), p50(candidate, f))
        {
            (Some(x), Some(y)) => Some(if mean { y.mean - x.mean } else { y.p50 - x.p50 }),
            _ => None,
        };
    Paired {
        baseline: baseline_name.to_string(),
        candidate: candidate_name.to_string(),
        n_paired: n,
        accuracy_delta: delta,
        accuracy_delta_ci: Interval {
            lo: quantile_sorted(&ds, 0.025),
            hi: quantile_sorted(&ds, 0.975),
        },
        b,
        c,
        mcnemar_p: p,
        holm_p: p,
        became_correct,
        became_incorrect,
        ttft_p50_delta_ms: delta_of(|i| i.ttft_ms, false),
        total_p50_delta_ms: delta_of(|i| i.total_ms, false),
        total_mean_delta_ms: delta_of(|i| i.total_ms, true),
    }
}

/// Holm–Bonferroni adjusted p-values, in input order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p_values[*a].total_cmp(&p_values[*b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * p_values[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Wilson score interval.
pub fn wilson(successes: usize, n: usize, z: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let nf = n as f64;
    let p = successes as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
    }
}

/// Exact two-sided McNemar test (binomial on the discordant pairs).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Bin(n, 1/2), in logs for large n.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64;
    let mut sum = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        sum += (ln_choose + ln_half_n).exp();
    }
    (2.0 * sum).min(1.0)
}

/// p50 / p90 / p99 (linear interpolation) and mean; `None` when empty.
pub fn percentiles(values: &[f64]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Percentiles {
        p50: quantile_sorted(&v, 0.5),
        p90: quantile_sorted(&v, 0.9),
        p99: quantile_sorted(&v, 0.99),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        n: v.len(),
    })
}
