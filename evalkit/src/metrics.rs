//! Metrics over graded items: SimpleQA's aggregate scores with confidence intervals (Wilson for
//! proportions, percentile bootstrap for the F-score), latency percentiles, token and cost totals,
//! breakdowns by topic or answer type, and paired comparisons between two configurations
//! (McNemar's exact test, paired bootstrap, Holm's correction across pairs).
//!
//! Everything here is pure and deterministic: the bootstrap draws from a small seeded PRNG
//! ([`SplitMix64`]), so the same items and seed always give the same intervals.
//!
//! Denominators follow the agreed definitions: errors (the item failed), judge errors (answered,
//! but the judge call failed) and unparseable judge replies are counted but excluded from every
//! accuracy denominator.
//!
//! ```
//! use agentcap_evalkit::metrics::{holm, mcnemar_exact, wilson};
//!
//! assert!((mcnemar_exact(1, 9) - 0.021484375).abs() < 1e-12);
//! let ci = wilson(7, 10, 1.96);
//! assert!((ci.lo - 0.3968).abs() < 1e-4 && (ci.hi - 0.8922).abs() < 1e-4);
//! assert_eq!(holm(&[0.01, 0.04, 0.03]).len(), 3);
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::grade::Grade;

/// Number of bootstrap resamples behind every bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The z value of a two-sided 95% interval, used for the Wilson intervals in [`Summary`].
pub const Z_95: f64 = 1.959_963_984_540_054;

/// What became of one item for one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "grade", rename_all = "snake_case")]
pub enum Outcome {
    /// The answer was graded.
    Graded(Grade),
    /// The judge replied, but its reply could not be read (strict parsing only).
    Unparseable,
    /// No answer: the call failed after its retries.
    Error,
    /// An answer, but no grade: the judge call failed after its retries. Counted apart from
    /// errors and, like them, outside every accuracy denominator.
    JudgeError,
}

impl Outcome {
    /// The grade, if the item was graded.
    pub fn grade(&self) -> Option<Grade> {
        match self {
            Outcome::Graded(g) => Some(*g),
            Outcome::Unparseable | Outcome::Error | Outcome::JudgeError => None,
        }
    }
}

/// One item's result for one configuration (the runner builds these from its database rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The dataset item's id; items of two configurations are paired by it.
    pub item_id: String,
    /// Graded, unparseable or failed.
    pub outcome: Outcome,
    /// Topic label of the item, if the dataset has one.
    pub topic: Option<String>,
    /// Answer-type label of the item, if the dataset has one.
    pub answer_type: Option<String>,
    /// Milliseconds to the first `message.output.delta` (stream mode); `None` in sync mode or on error.
    pub ttft_ms: Option<f64>,
    /// Milliseconds until the answer was complete; `None` for errors.
    pub total_ms: Option<f64>,
    /// Prompt tokens the answer used.
    pub prompt_tokens: u64,
    /// Completion tokens the answer used.
    pub completion_tokens: u64,
    /// Connector (tool) tokens the answer used.
    pub connector_tokens: u64,
    /// Tool executions in this answer (for example web searches).
    pub tool_executions: u32,
    /// Cost of the answer in USD; `None` when no price is known.
    pub cost_usd: Option<f64>,
}

impl Default for ItemResult {
    /// An empty result: no id, [`Outcome::Error`], no labels, no timings, zero usage.
    fn default() -> Self {
        ItemResult {
            item_id: String::new(),
            outcome: Outcome::Error,
            topic: None,
            answer_type: None,
            ttft_ms: None,
            total_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            connector_tokens: 0,
            tool_executions: 0,
            cost_usd: None,
        }
    }
}

/// A closed interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// Whether `x` lies within the interval (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        (self.lo..=self.hi).contains(&x)
    }
}

/// Latency distribution of a set of values (milliseconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Number of values.
    pub n: usize,
}

/// Aggregate results of one configuration (or one breakdown group).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// All items, errors and unparseable ones included.
    pub n: usize,
    /// Items graded correct.
    pub correct: usize,
    /// Items graded incorrect.
    pub incorrect: usize,
    /// Items graded not attempted.
    pub not_attempted: usize,
    /// Items that failed (no answer).
    pub errors: usize,
    /// Items answered whose judge call failed (no grade).
    #[serde(default)]
    pub judge_errors: usize,
    /// Items whose judge reply could not be read.
    pub unparseable: usize,
    /// `correct + incorrect + not_attempted`.
    pub graded: usize,
    /// `correct / graded` (0 when nothing was graded).
    pub accuracy: f64,
    /// 95% Wilson interval of `accuracy`.
    pub accuracy_ci: Interval,
    /// `correct / (correct + incorrect)` (0 when nothing was attempted).
    pub accuracy_given_attempted: f64,
    /// 95% Wilson interval of `accuracy_given_attempted`.
    pub accuracy_given_attempted_ci: Interval,
    /// Harmonic mean of `accuracy` and `accuracy_given_attempted`, which equals
    /// `2c / (2c + 2i + na)`; 0 when undefined.
    pub f_score: f64,
    /// 95% percentile-bootstrap interval of `f_score` over the graded items
    /// ([`BOOTSTRAP_RESAMPLES`] resamples, seeded).
    pub f_score_ci: Interval,
    /// Time-to-first-token distribution over the items that have one.
    pub ttft_ms: Option<Percentiles>,
    /// Total-time distribution over the items that have one.
    pub total_ms: Option<Percentiles>,
    /// Sum of prompt tokens.
    pub prompt_tokens: u64,
    /// Sum of completion tokens.
    pub completion_tokens: u64,
    /// Sum of connector tokens.
    pub connector_tokens: u64,
    /// Tool executions per answered (non-error) item; 0 when there is none.
    pub tool_executions_per_answer: f64,
    /// Sum of the known costs; `None` when no item carries a cost.
    pub cost_usd: Option<f64>,
}

/// The counts behind SimpleQA's scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    correct: usize,
    incorrect: usize,
    not_attempted: usize,
}

impl Counts {
    fn add(&mut self, g: Grade) {
        match g {
            Grade::Correct => self.correct += 1,
            Grade::Incorrect => self.incorrect += 1,
            Grade::NotAttempted => self.not_attempted += 1,
        }
    }

    fn f_score(self) -> f64 {
        f_score(self.correct, self.incorrect, self.not_attempted)
    }
}

/// SimpleQA's F-score from the counts: `2c / (2c + 2i + na)`, the harmonic mean of overall
/// accuracy `c / (c + i + na)` and accuracy given attempted `c / (c + i)`; 0 when the denominator
/// is 0.
pub fn f_score(correct: usize, incorrect: usize, not_attempted: usize) -> f64 {
    let den = 2 * correct + 2 * incorrect + not_attempted;
    if den == 0 {
        0.0
    } else {
        (2 * correct) as f64 / den as f64
    }
}

/// `num / den`, or 0 when `den` is 0.
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Summarises one configuration's items; `bootstrap_seed` seeds the F-score bootstrap.
pub fn summarize(items: &[ItemResult], bootstrap_seed: u64) -> Summary {
    let mut counts = Counts::default();
    let mut errors = 0;
    let mut judge_errors = 0;
    let mut unparseable = 0;
    let mut graded = Vec::with_capacity(items.len());
    for item in items {
        match &item.outcome {
            Outcome::Graded(g) => {
                counts.add(*g);
                graded.push(*g);
            }
            Outcome::Unparseable => unparseable += 1,
            Outcome::Error => errors += 1,
            Outcome::JudgeError => judge_errors += 1,
        }
    }
    let Counts {
        correct,
        incorrect,
        not_attempted,
    } = counts;
    let attempted = correct + incorrect;

    let f_score_ci = bootstrap_interval(graded.len(), bootstrap_seed, |sample| {
        let mut c = Counts::default();
        for &i in sample {
            c.add(graded[i]);
        }
        c.f_score()
    })
    .unwrap_or(Interval { lo: 0.0, hi: 1.0 });

    let ttft: Vec<f64> = items.iter().filter_map(|i| i.ttft_ms).collect();
    let total: Vec<f64> = items.iter().filter_map(|i| i.total_ms).collect();
    let answered = items.len() - errors;
    let tools: u64 = items
        .iter()
        .filter(|i| i.outcome != Outcome::Error)
        .map(|i| u64::from(i.tool_executions))
        .sum();
    let costs: Vec<f64> = items.iter().filter_map(|i| i.cost_usd).collect();

    Summary {
        n: items.len(),
        correct,
        incorrect,
        not_attempted,
        errors,
        judge_errors,
        unparseable,
        graded: graded.len(),
        accuracy: ratio(correct, graded.len()),
        accuracy_ci: wilson(correct, graded.len(), Z_95),
        accuracy_given_attempted: ratio(correct, attempted),
        accuracy_given_attempted_ci: wilson(correct, attempted, Z_95),
        f_score: counts.f_score(),
        f_score_ci,
        ttft_ms: percentiles(&ttft),
        total_ms: percentiles(&total),
        prompt_tokens: items.iter().map(|i| i.prompt_tokens).sum(),
        completion_tokens: items.iter().map(|i| i.completion_tokens).sum(),
        connector_tokens: items.iter().map(|i| i.connector_tokens).sum(),
        tool_executions_per_answer: if answered == 0 {
            0.0
        } else {
            tools as f64 / answered as f64
        },
        cost_usd: if costs.is_empty() {
            None
        } else {
            Some(costs.iter().sum())
        },
    }
}

/// The group name [`breakdown`] uses for items without a key.
pub const NO_KEY: &str = "(none)";

/// [`summarize`] per group of items sharing a key (topic or answer type); items whose key is
/// `None` go under [`NO_KEY`]. Sorted by key (byte order); every group uses `seed`.
pub fn breakdown(
    items: &[ItemResult],
    key: fn(&ItemResult) -> Option<&str>,
    seed: u64,
) -> Vec<(String, Summary)> {
    let mut groups: BTreeMap<&str, Vec<ItemResult>> = BTreeMap::new();
    for item in items {
        groups
            .entry(key(item).unwrap_or(NO_KEY))
            .or_default()
            .push(item.clone());
    }
    groups
        .into_iter()
        .map(|(k, v)| (k.to_string(), summarize(&v, seed)))
        .collect()
}

/// A paired comparison of a candidate configuration with a baseline on the same items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Baseline configuration name.
    pub baseline: String,
    /// Candidate configuration name.
    pub candidate: String,
    /// Items graded in both (an error or unparseable reply on either side excludes the item).
    pub n_paired: usize,
    /// Candidate accuracy minus baseline accuracy on the paired items (`(c - b) / n_paired`).
    pub accuracy_delta: f64,
    /// 95% paired percentile-bootstrap interval of `accuracy_delta` ([`BOOTSTRAP_RESAMPLES`]
    /// resamples, seeded); `[-1, 1]` when nothing is paired.
    pub accuracy_delta_ci: Interval,
    /// Paired items the baseline got correct and the candidate did not.
    pub b: usize,
    /// Paired items the candidate got correct and the baseline did not.
    pub c: usize,
    /// McNemar's exact two-sided p-value on `(b, c)`.
    pub mcnemar_p: f64,
    /// Holm-adjusted p-value across all pairs of a run; equal to `mcnemar_p` until [`holm`] is applied.
    pub holm_p: f64,
    /// Ids of the items counted in `c` (not correct in the baseline, correct in the candidate).
    pub became_correct: Vec<String>,
    /// Ids of the items counted in `b` (correct in the baseline, incorrect or not attempted in the
    /// candidate).
    pub became_incorrect: Vec<String>,
    /// Candidate minus baseline median time to first token, over items present in both with a
    /// value on both sides; `None` when there is no such item.
    pub ttft_p50_delta_ms: Option<f64>,
    /// Candidate minus baseline median total time, over items present in both with a value on
    /// both sides.
    pub total_p50_delta_ms: Option<f64>,
    /// Candidate minus baseline mean total time, on the same items as `total_p50_delta_ms`.
    pub total_mean_delta_ms: Option<f64>,
}

/// Compares `candidate` with `baseline` item by item (matched by `item_id`; when an id repeats
/// within one side, its first occurrence is used). Pairs are taken in baseline order, so the
/// flipped id lists follow the baseline's order.
pub fn compare_paired(
    baseline_name: &str,
    baseline: &[ItemResult],
    candidate_name: &str,
    candidate: &[ItemResult],
    seed: u64,
) -> Paired {
    let mut by_id: HashMap<&str, &ItemResult> = HashMap::with_capacity(candidate.len());
    for item in candidate {
        by_id.entry(item.item_id.as_str()).or_insert(item);
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(baseline.len());
    let mut matched: Vec<(&ItemResult, &ItemResult)> = Vec::new();
    for base in baseline {
        if !seen.insert(base.item_id.as_str()) {
            continue;
        }
        if let Some(cand) = by_id.get(base.item_id.as_str()) {
            matched.push((base, cand));
        }
    }

    // (baseline correct, candidate correct) for each item graded on both sides.
    let mut pairs: Vec<(bool, bool)> = Vec::new();
    let mut became_correct = Vec::new();
    let mut became_incorrect = Vec::new();
    for (base, cand) in &matched {
        let (Some(gb), Some(gc)) = (base.outcome.grade(), cand.outcome.grade()) else {
            continue;
        };
        let (bc, cc) = (gb == Grade::Correct, gc == Grade::Correct);
        if bc && !cc {
            became_incorrect.push(base.item_id.clone());
        } else if !bc && cc {
            became_correct.push(base.item_id.clone());
        }
        pairs.push((bc, cc));
    }
    let (b, c) = (became_incorrect.len(), became_correct.len());
    let n = pairs.len();
    let delta = |sample: &[usize]| -> f64 {
        let diff: i64 = sample
            .iter()
            .map(|&i| i64::from(pairs[i].1) - i64::from(pairs[i].0))
            .sum();
        if sample.is_empty() {
            0.0
        } else {
            diff as f64 / sample.len() as f64
        }
    };
    let all: Vec<usize> = (0..n).collect();
    let accuracy_delta = delta(&all);
    let accuracy_delta_ci =
        bootstrap_interval(n, seed, delta).unwrap_or(Interval { lo: -1.0, hi: 1.0 });
    let mcnemar_p = mcnemar_exact(b, c);

    let both = |f: fn(&ItemResult) -> Option<f64>| -> (Vec<f64>, Vec<f64>) {
        matched
            .iter()
            .filter_map(|(base, cand)| Some((f(base)?, f(cand)?)))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .unzip()
    };
    let (ttft_b, ttft_c) = both(|i| i.ttft_ms);
    let (total_b, total_c) = both(|i| i.total_ms);
    let ttft = percentiles(&ttft_b).zip(percentiles(&ttft_c));
    let total = percentiles(&total_b).zip(percentiles(&total_c));

    Paired {
        baseline: baseline_name.to_string(),
        candidate: candidate_name.to_string(),
        n_paired: n,
        accuracy_delta,
        accuracy_delta_ci,
        b,
        c,
        mcnemar_p,
        holm_p: mcnemar_p,
        became_correct,
        became_incorrect,
        ttft_p50_delta_ms: ttft.map(|(x, y)| y.p50 - x.p50),
        total_p50_delta_ms: total.as_ref().map(|(x, y)| y.p50 - x.p50),
        total_mean_delta_ms: total.as_ref().map(|(x, y)| y.mean - x.mean),
    }
}

/// Holm–Bonferroni step-down adjusted p-values, in the input's order: sorted ascending, the
/// k-th smallest (0-based) is multiplied by `m - k`, made monotone non-decreasing along that
/// order, and capped at 1. Ties keep their input order. Inputs are expected in `[0, 1]`.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Wilson score interval for `successes` out of `n` at normal quantile `z` (1.96 for 95%),
/// clamped to `[0, 1]`. `n = 0` gives `[0, 1]`; `successes` above `n` counts as `n`.
pub fn wilson(successes: usize, n: usize, z: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let nf = n as f64;
    let p = successes.min(n) as f64 / nf;
    let z2 = z * z;
    let den = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / den;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / den;
    Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
    }
}

/// McNemar's exact test: the two-sided binomial p-value of `min(b, c)` discordant pairs out of
/// `b + c` under p = 1/2, i.e. `min(1, 2 * P[X <= min(b, c)])`. `b + c = 0` gives 1.
///
/// Computed in log space, so it stays finite for any count.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    // ln C(n, i) for i = 0..=k, built up term by term.
    let mut ln_choose = 0.0_f64;
    let mut logs = Vec::with_capacity(k + 1);
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        logs.push(ln_choose - ln_half_n);
    }
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * logs.iter().map(|l| (l - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// The `q`-quantile (0..=1) of sorted values with linear interpolation between closest ranks
/// (NumPy's default): position `q * (n - 1)`. `None` for an empty slice.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// p50, p90, p99 (linear interpolation, see [`quantile_sorted`]) and mean of the finite values;
/// non-finite values are ignored. `None` when no finite value remains.
pub fn percentiles(values: &[f64]) -> Option<Percentiles> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    Some(Percentiles {
        p50: quantile_sorted(&v, 0.50)?,
        p90: quantile_sorted(&v, 0.90)?,
        p99: quantile_sorted(&v, 0.99)?,
        mean: v.iter().sum::<f64>() / v.len() as f64,
        n: v.len(),
    })
}

/// Percentile bootstrap: draws [`BOOTSTRAP_RESAMPLES`] resamples of `n` indices (with
/// replacement) from a [`SplitMix64`] seeded with `seed`, evaluates `stat` on each and returns the
/// 2.5% and 97.5% quantiles. `None` when `n` is 0.
pub fn bootstrap_interval(n: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut sample = vec![0; n];
    let mut stats: Vec<f64> = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for s in sample.iter_mut() {
            *s = rng.below(n);
        }
        stats.push(stat(&sample));
    }
    stats.sort_by(f64::total_cmp);
    Some(Interval {
        lo: quantile_sorted(&stats, 0.025)?,
        hi: quantile_sorted(&stats, 0.975)?,
    })
}

/// The seeded generator of the bootstrap (the workspace's one SplitMix64).
pub use agentcap_datasets::rng::SplitMix64;
