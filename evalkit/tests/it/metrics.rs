//! Metrics against hand-computed values: counts and scores, Wilson intervals, percentiles,
//! McNemar's exact test, Holm's correction, paired comparisons and the seeded bootstrap.

use agentcap_evalkit::grade::Grade::{self, Correct, Incorrect, NotAttempted};
use agentcap_evalkit::metrics::{
    Interval, ItemResult, NO_KEY, Outcome, SplitMix64, Z_95, bootstrap_interval, breakdown,
    compare_paired, f_score, holm, mcnemar_exact, percentiles, summarize, wilson,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[track_caller]
fn assert_close(a: f64, b: f64, tol: f64) {
    assert!(close(a, b, tol), "{a} != {b} (tolerance {tol})");
}

fn item(id: &str, outcome: Outcome) -> ItemResult {
    ItemResult {
        item_id: id.to_string(),
        outcome,
        ..ItemResult::default()
    }
}

fn graded(id: &str, g: Grade) -> ItemResult {
    item(id, Outcome::Graded(g))
}

/// The fixed table. Ten items:
///
/// | id  | outcome       | topic   | answer type | ttft | total  | prompt | completion | conn. | tools | cost  |
/// |-----|---------------|---------|-------------|------|--------|--------|------------|-------|-------|-------|
/// | q1  | correct       | Art     | Person      | 100  | 1000   | 10     | 1          | 3     | 1     | 0.001 |
/// | q2  | correct       | Art     | Date        | 200  | 2000   | 10     | 2          | 3     | 1     | 0.001 |
/// | q3  | correct       | Science | Date        | 300  | 3000   | 10     | 3          | 0     | 1     | 0.001 |
/// | q4  | correct       | Science | Person      | 400  | 4000   | 10     | 4          | 0     | 2     | 0.001 |
/// | q5  | incorrect     | Art     | Person      | 500  | 5000   | 10     | 5          | 0     | 0     | 0.001 |
/// | q6  | incorrect     | Science | Number      | 600  | 6000   | 10     | 6          | 0     | 0     | 0.001 |
/// | q7  | not attempted | -       | -           | 700  | 7000   | 10     | 7          | 0     | 0     | 0.001 |
/// | q8  | unparseable   | Art     | Date        | 800  | 8000   | 10     | 8          | 0     | 0     | 0.001 |
/// | q9  | error         | Science | -           | -    | -      | 0      | 0          | 0     | 5 (!) | -     |
/// | q10 | correct       | Art     | Person      | -    | 10000  | 10     | 10         | 0     | 0     | 0.001 |
fn table() -> Vec<ItemResult> {
    use Outcome::{Error, Graded, Unparseable};
    let row =
        |n: u64, outcome: Outcome, topic: Option<&str>, answer_type: Option<&str>, ttft, total| {
            let error = outcome == Error;
            ItemResult {
                item_id: format!("q{n}"),
                outcome,
                topic: topic.map(str::to_string),
                answer_type: answer_type.map(str::to_string),
                ttft_ms: ttft,
                total_ms: total,
                prompt_tokens: if error { 0 } else { 10 },
                completion_tokens: if error { 0 } else { n },
                connector_tokens: if n <= 2 { 3 } else { 0 },
                tool_executions: match n {
                    1..=3 => 1,
                    4 => 2,
                    9 => 5, // the error's tool calls are not counted
                    _ => 0,
                },
                cost_usd: if error { None } else { Some(0.001) },
            }
        };
    let (art, sci) = (Some("Art"), Some("Science"));
    let (person, date) = (Some("Person"), Some("Date"));
    vec![
        row(1, Graded(Correct), art, person, Some(100.0), Some(1000.0)),
        row(2, Graded(Correct), art, date, Some(200.0), Some(2000.0)),
        row(3, Graded(Correct), sci, date, Some(300.0), Some(3000.0)),
        row(4, Graded(Correct), sci, person, Some(400.0), Some(4000.0)),
        row(5, Graded(Incorrect), art, person, Some(500.0), Some(5000.0)),
        row(
            6,
            Graded(Incorrect),
            sci,
            Some("Number"),
            Some(600.0),
            Some(6000.0),
        ),
        row(
            7,
            Graded(NotAttempted),
            None,
            None,
            Some(700.0),
            Some(7000.0),
        ),
        row(8, Unparseable, art, date, Some(800.0), Some(8000.0)),
        row(9, Error, sci, None, None, None),
        row(10, Graded(Correct), art, person, None, Some(10000.0)),
    ]
}

#[test]
fn summary_of_the_fixed_table() {
    let s = summarize(&table(), 7);
    assert_eq!(s.n, 10);
    assert_eq!((s.correct, s.incorrect, s.not_attempted), (5, 2, 1));
    assert_eq!((s.errors, s.unparseable, s.graded), (1, 1, 8));
    // accuracy = 5 / 8; errors and unparseable are out of the denominator.
    assert_close(s.accuracy, 0.625, 1e-12);
    // Wilson 5/8 at z = 1.96: p = .625, den = 1 + 3.8416/8 = 1.4802,
    // centre = (.625 + .2401) / 1.4802 = .58445, half = 1.96 * sqrt(.029297 + .015006) / 1.4802
    // = .27871 -> [0.30574, 0.86316] (z = 1.95996 moves the 5th decimal at most).
    assert_close(s.accuracy_ci.lo, 0.30574, 1e-4);
    assert_close(s.accuracy_ci.hi, 0.86316, 1e-4);
    assert_eq!(s.accuracy_ci, wilson(5, 8, Z_95));
    // accuracy given attempted = 5 / 7; Wilson 5/7 -> [0.35893, 0.91778].
    assert_close(s.accuracy_given_attempted, 5.0 / 7.0, 1e-12);
    assert_close(s.accuracy_given_attempted_ci.lo, 0.35893, 1e-4);
    assert_close(s.accuracy_given_attempted_ci.hi, 0.91778, 1e-4);
    // F = 2c / (2c + 2i + na) = 10 / 15, the harmonic mean of 5/8 and 5/7.
    assert_close(s.f_score, 10.0 / 15.0, 1e-12);
    let (acc, aga) = (0.625, 5.0 / 7.0);
    assert_close(s.f_score, 2.0 * acc * aga / (acc + aga), 1e-12);
    assert!(s.f_score_ci.contains(s.f_score), "{:?}", s.f_score_ci);
    assert!(s.f_score_ci.lo < s.f_score_ci.hi);
    assert!(s.f_score_ci.lo >= 0.0 && s.f_score_ci.hi <= 1.0);

    // ttft over q1..q8 (100..800): p50 at rank 3.5 -> 450, p90 at 6.3 -> 730, p99 at 6.93 -> 793.
    let ttft = s.ttft_ms.expect("ttft values");
    assert_eq!(ttft.n, 8);
    assert_close(ttft.p50, 450.0, 1e-9);
    assert_close(ttft.p90, 730.0, 1e-9);
    assert_close(ttft.p99, 793.0, 1e-9);
    assert_close(ttft.mean, 450.0, 1e-9);
    // total over 1000..8000 and 10000: p50 at rank 4 -> 5000, p90 at 7.2 -> 8000 + .2 * 2000 = 8400,
    // p99 at 7.92 -> 9840, mean 46000 / 9.
    let total = s.total_ms.expect("total values");
    assert_eq!(total.n, 9);
    assert_close(total.p50, 5000.0, 1e-9);
    assert_close(total.p90, 8400.0, 1e-9);
    assert_close(total.p99, 9840.0, 1e-9);
    assert_close(total.mean, 46000.0 / 9.0, 1e-9);

    assert_eq!(s.prompt_tokens, 90);
    assert_eq!(s.completion_tokens, 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 10);
    assert_eq!(s.connector_tokens, 6);
    // 5 tool executions over the 9 answered items (the error's 5 are not counted).
    assert_close(s.tool_executions_per_answer, 5.0 / 9.0, 1e-12);
    assert_close(s.cost_usd.expect("costs known"), 0.009, 1e-12);
}

#[test]
fn bootstrap_is_deterministic_for_a_seed() {
    let items = table();
    let a = summarize(&items, 42);
    let b = summarize(&items, 42);
    assert_eq!(a, b);
    let c = summarize(&items, 43);
    assert!(c.f_score_ci.contains(c.f_score));
    // Everything but the bootstrap interval is independent of the seed.
    assert_eq!((a.accuracy, a.f_score), (c.accuracy, c.f_score));
    assert_eq!(a.accuracy_ci, c.accuracy_ci);
}

#[test]
fn bootstrap_and_prng() {
    // SplitMix64's reference outputs for seed 0.
    let mut rng = SplitMix64::new(0);
    assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    let mut rng = SplitMix64::new(9);
    assert!((0..1000).all(|_| rng.below(7) < 7));
    // A continuous statistic (the mean index of 100) shows the seed matters and is repeatable.
    let mean = |s: &[usize]| s.iter().sum::<usize>() as f64 / s.len() as f64;
    let one = bootstrap_interval(100, 1, mean).expect("n > 0");
    assert_eq!(bootstrap_interval(100, 1, mean), Some(one));
    assert_ne!(bootstrap_interval(100, 2, mean), Some(one));
    // The true mean index is 49.5; the 95% interval is about +- 1.96 * 28.9 / 10.
    assert!(
        one.contains(49.5) && one.lo > 40.0 && one.hi < 60.0,
        "{one:?}"
    );
    assert_eq!(bootstrap_interval(0, 1, mean), None);
}

/// The bootstrap's intervals, pinned for fixed seeds: they change if the PRNG, the resampling,
/// the number of resamples or the quantile rule changes. The values were computed independently
/// of this crate by a separate re-implementation of the documented algorithm (SplitMix64, Lemire's
/// multiply-shift reduction, 2000 resamples of n indices, linear-interpolation 2.5% and 97.5%
/// quantiles) in Python.
#[test]
fn bootstrap_intervals_are_pinned_for_a_seed() {
    let mean = |s: &[usize]| s.iter().sum::<usize>() as f64 / s.len() as f64;
    assert_eq!(
        bootstrap_interval(100, 1, mean),
        Some(Interval {
            lo: 44.09975,
            hi: 55.423749999999984
        })
    );
    // The F-score over the table's 8 graded items (C C C C I I NA C), seed 42.
    let s = summarize(&table(), 42);
    assert_eq!(
        s.f_score_ci,
        Interval {
            lo: 2.0 / 7.0,
            hi: 14.0 / 15.0
        }
    );
    // The paired accuracy delta over a b c d e g, seed 11.
    let (base, cand) = paired_sides();
    let p = compare_paired("base", &base, "cand", &cand, 11);
    assert_eq!(
        p.accuracy_delta_ci,
        Interval {
            lo: -1.0 / 3.0,
            hi: 5.0 / 6.0
        }
    );
}

#[test]
fn degenerate_summaries() {
    let s = summarize(&[], 1);
    assert_eq!((s.n, s.graded, s.correct), (0, 0, 0));
    assert_eq!(
        (s.accuracy, s.accuracy_given_attempted, s.f_score),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(s.accuracy_ci, Interval { lo: 0.0, hi: 1.0 });
    assert_eq!(s.f_score_ci, Interval { lo: 0.0, hi: 1.0 });
    assert_eq!((s.ttft_ms, s.total_ms, s.cost_usd), (None, None, None));
    assert_eq!(s.tool_executions_per_answer, 0.0);

    // Only errors: counted, nothing graded.
    let s = summarize(&[item("x", Outcome::Error), item("y", Outcome::Error)], 1);
    assert_eq!((s.n, s.errors, s.graded), (2, 2, 0));
    assert_eq!(s.accuracy, 0.0);

    // All correct: F = 1 and every resample gives 1.
    let all: Vec<ItemResult> = (0..5).map(|i| graded(&format!("c{i}"), Correct)).collect();
    let s = summarize(&all, 1);
    assert_eq!(s.f_score, 1.0);
    assert_eq!(s.f_score_ci, Interval { lo: 1.0, hi: 1.0 });
    assert_eq!(s.accuracy_ci.hi, 1.0);

    // Only not attempted: accuracy given attempted and F are 0 (undefined), not NaN.
    let s = summarize(&[graded("n", NotAttempted)], 1);
    assert_eq!((s.accuracy_given_attempted, s.f_score), (0.0, 0.0));
    assert_eq!(s.accuracy_given_attempted_ci, Interval { lo: 0.0, hi: 1.0 });
}

#[test]
fn f_score_formula() {
    assert_eq!(f_score(0, 0, 0), 0.0);
    assert_eq!(f_score(0, 3, 2), 0.0);
    assert_close(f_score(7, 2, 1), 14.0 / 19.0, 1e-12);
}

#[test]
fn breakdown_by_topic_and_answer_type() {
    let items = table();
    let by_topic = breakdown(&items, |i| i.topic.as_deref(), 3);
    let keys: Vec<&str> = by_topic.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [NO_KEY, "Art", "Science"]);
    let art = &by_topic[1].1;
    // Art: q1 C, q2 C, q5 I, q8 unparseable, q10 C.
    assert_eq!(
        (art.n, art.correct, art.incorrect, art.unparseable),
        (5, 3, 1, 1)
    );
    assert_close(art.accuracy, 0.75, 1e-12);
    let science = &by_topic[2].1;
    // Science: q3 C, q4 C, q6 I, q9 error.
    assert_eq!(
        (
            science.n,
            science.correct,
            science.incorrect,
            science.errors
        ),
        (4, 2, 1, 1)
    );
    assert_close(science.accuracy, 2.0 / 3.0, 1e-12);
    assert_eq!(by_topic[0].1.not_attempted, 1);
    assert_eq!(
        by_topic.iter().map(|(_, s)| s.n).sum::<usize>(),
        items.len()
    );

    let by_type = breakdown(&items, |i| i.answer_type.as_deref(), 3);
    let keys: Vec<&str> = by_type.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [NO_KEY, "Date", "Number", "Person"]);
    assert_eq!(by_type[3].1.correct, 3); // q1, q4, q10
}

#[test]
fn wilson_intervals() {
    // 7/10 at z = 1.96: den = 1.38416, centre = (.7 + .19208) / 1.38416 = .644492,
    // half = 1.96 * sqrt(.021 + .009604) / 1.38416 = .247718 -> [0.39677, 0.89221].
    let ci = wilson(7, 10, 1.96);
    assert_close(ci.lo, 0.39677, 1e-5);
    assert_close(ci.hi, 0.89221, 1e-5);
    assert_eq!(wilson(0, 0, 1.96), Interval { lo: 0.0, hi: 1.0 });
    // 0/10 -> [0, 0.27754]; 10/10 -> [0.72246, 1].
    let zero = wilson(0, 10, 1.96);
    assert_eq!(zero.lo, 0.0);
    assert_close(zero.hi, 0.27754, 1e-5);
    let ten = wilson(10, 10, 1.96);
    assert_close(ten.lo, 0.72246, 1e-5);
    assert_eq!(ten.hi, 1.0);
    // More successes than trials count as n.
    assert_eq!(wilson(12, 10, 1.96), ten);
}

#[test]
fn percentiles_interpolate_linearly() {
    assert_eq!(percentiles(&[]), None);
    assert_eq!(percentiles(&[f64::NAN]), None);
    let one = percentiles(&[5.0]).expect("one value");
    assert_eq!(
        (one.p50, one.p90, one.p99, one.mean, one.n),
        (5.0, 5.0, 5.0, 5.0, 1)
    );
    // Unsorted input; positions .5*3 = 1.5, .9*3 = 2.7, .99*3 = 2.97.
    let p = percentiles(&[4.0, 1.0, 3.0, 2.0]).expect("values");
    assert_close(p.p50, 2.5, 1e-12);
    assert_close(p.p90, 3.7, 1e-12);
    assert_close(p.p99, 3.97, 1e-12);
    assert_close(p.mean, 2.5, 1e-12);
    // Non-finite values are ignored.
    let q = percentiles(&[4.0, f64::NAN, 1.0, 3.0, f64::INFINITY, 2.0]).expect("values");
    assert_eq!(p, q);
}

#[test]
fn mcnemar_exact_p_values() {
    // n = 10, k = 1: 2 * (1 + 10) / 1024.
    assert_close(mcnemar_exact(1, 9), 0.021484375, 1e-12);
    assert_close(mcnemar_exact(9, 1), 0.021484375, 1e-12);
    assert_eq!(mcnemar_exact(0, 0), 1.0);
    // 2 * (1 + 10 + 45 + 120 + 210 + 252) / 1024 > 1 -> capped.
    assert_eq!(mcnemar_exact(5, 5), 1.0);
    assert_eq!(mcnemar_exact(0, 1), 1.0);
    assert_close(mcnemar_exact(0, 5), 0.0625, 1e-12);
    assert_close(mcnemar_exact(1, 3), 0.625, 1e-12);
    // 2 * (1 + 12 + 66) / 4096.
    assert_close(mcnemar_exact(2, 10), 0.03857421875, 1e-12);
    // Exact rational arithmetic gives 0.0329926184264762 and 2.18170264079147e-05.
    assert_close(mcnemar_exact(30, 50), 0.032_992_618_426_476_18, 1e-12);
    let big = mcnemar_exact(1000, 1200);
    assert!(close(big, 2.181_702_640_791_471e-5, 1e-9 * 2.2e-5), "{big}");
    // Beyond f64's range of 2^-n it stays finite.
    let tiny = mcnemar_exact(0, 5000);
    assert!((0.0..1e-300).contains(&tiny), "{tiny}");
}

#[test]
fn holm_step_down() {
    let adj = holm(&[0.01, 0.04, 0.03]);
    for (a, b) in adj.iter().zip([0.03, 0.06, 0.06]) {
        assert_close(*a, b, 1e-15);
    }
    assert_eq!(holm(&[]), Vec::<f64>::new());
    assert_eq!(holm(&[0.2]), [0.2]);
    // Capped at 1 and monotone: 2 * .6 = 1.2 -> 1; .7 -> max(1, .7) = 1.
    assert_eq!(holm(&[0.6, 0.7]), [1.0, 1.0]);
    // Order of the input is kept: .01 * 2 = .02, then max(.02, .04) = .04.
    let adj = holm(&[0.04, 0.01]);
    assert_close(adj[0], 0.04, 1e-15);
    assert_close(adj[1], 0.02, 1e-15);
    // Monotone along the sorted order even when m - k times p would decrease.
    let adj = holm(&[0.001, 0.011, 0.012, 0.5]);
    assert_close(adj[0], 0.004, 1e-12);
    assert_close(adj[1], 0.033, 1e-12);
    assert_close(adj[2], 0.033, 1e-12); // 2 * .012 = .024 lifted to .033
    assert_close(adj[3], 0.5, 1e-12);
}

/// Baseline and candidate over the same items in different orders, with an error on one side,
/// an item only the candidate has, and one only the baseline has.
fn paired_sides() -> (Vec<ItemResult>, Vec<ItemResult>) {
    let timed = |mut i: ItemResult, ms: f64, ttft: Option<f64>| {
        if i.outcome != Outcome::Error {
            i.total_ms = Some(ms);
            i.ttft_ms = ttft;
        }
        i
    };
    let base = vec![
        timed(graded("a", Correct), 1000.0, None),
        timed(graded("b", Correct), 1000.0, None),
        timed(graded("c", Incorrect), 1000.0, None),
        timed(graded("d", NotAttempted), 1000.0, None),
        timed(graded("e", Correct), 1000.0, None),
        timed(item("f", Outcome::Error), 0.0, None),
        timed(graded("g", Incorrect), 1000.0, None),
        timed(graded("only-base", Correct), 1000.0, None),
    ];
    let cand = vec![
        timed(graded("h", Correct), 1200.0, Some(10.0)),
        timed(graded("g", Correct), 1500.0, Some(10.0)),
        timed(graded("f", Correct), 1500.0, Some(10.0)),
        timed(graded("e", Correct), 1500.0, Some(10.0)),
        timed(graded("d", Correct), 1500.0, Some(10.0)),
        timed(item("d2", Outcome::Unparseable), 1500.0, Some(10.0)),
        timed(graded("c", Correct), 1500.0, Some(10.0)),
        timed(graded("b", Correct), 1500.0, Some(10.0)),
        timed(graded("a", NotAttempted), 2500.0, Some(10.0)),
    ];
    (base, cand)
}

#[test]
fn paired_comparison() {
    let (base, cand) = paired_sides();
    let p = compare_paired("base", &base, "cand", &cand, 11);
    assert_eq!(
        (p.baseline.as_str(), p.candidate.as_str()),
        ("base", "cand")
    );
    // Paired and graded on both sides: a b c d e g (f is an error in the baseline).
    assert_eq!(p.n_paired, 6);
    // a: correct -> not attempted (b). c, d, g: not correct -> correct (c).
    assert_eq!((p.b, p.c), (1, 3));
    assert_eq!(p.became_incorrect, ["a"]);
    assert_eq!(p.became_correct, ["c", "d", "g"]);
    // Baseline 3/6 correct, candidate 5/6: delta = (c - b) / n = 2/6.
    assert_close(p.accuracy_delta, 2.0 / 6.0, 1e-12);
    assert!(
        p.accuracy_delta_ci.contains(p.accuracy_delta),
        "{:?}",
        p.accuracy_delta_ci
    );
    assert!(p.accuracy_delta_ci.lo >= -1.0 && p.accuracy_delta_ci.hi <= 1.0);
    // n = 4, k = 1: 2 * (1 + 4) / 16.
    assert_close(p.mcnemar_p, 0.625, 1e-12);
    assert_eq!(p.holm_p, p.mcnemar_p);
    // Latency on the 6 items present in both with a time on both sides (f has none in the
    // baseline): baseline all 1000; candidate 1500 x5 and 2500 -> median 1500, mean 1500 + 1000/6.
    assert_close(p.total_p50_delta_ms.expect("paired totals"), 500.0, 1e-9);
    assert_close(
        p.total_mean_delta_ms.expect("paired totals"),
        500.0 + 1000.0 / 6.0,
        1e-9,
    );
    // The baseline was not streamed: no ttft on its side.
    assert_eq!(p.ttft_p50_delta_ms, None);

    // Deterministic for a seed.
    assert_eq!(compare_paired("base", &base, "cand", &cand, 11), p);
}

#[test]
fn swapping_sides_flips_the_comparison() {
    let (base, cand) = paired_sides();
    let p = compare_paired("base", &base, "cand", &cand, 5);
    let q = compare_paired("cand", &cand, "base", &base, 5);
    assert_eq!(q.n_paired, p.n_paired);
    assert_eq!((q.b, q.c), (p.c, p.b));
    assert_close(q.accuracy_delta, -p.accuracy_delta, 1e-12);
    assert_eq!(q.mcnemar_p, p.mcnemar_p);
    // Same sets, now in the candidate's order.
    assert_eq!(q.became_incorrect, ["g", "d", "c"]);
    assert_eq!(q.became_correct, ["a"]);
    assert!(q.accuracy_delta_ci.contains(q.accuracy_delta));
}

#[test]
fn nothing_paired() {
    let p = compare_paired(
        "x",
        &[graded("1", Correct)],
        "y",
        &[graded("2", Correct), item("1", Outcome::Error)],
        1,
    );
    assert_eq!((p.n_paired, p.b, p.c), (0, 0, 0));
    assert_eq!(p.accuracy_delta, 0.0);
    assert_eq!(p.accuracy_delta_ci, Interval { lo: -1.0, hi: 1.0 });
    assert_eq!(p.mcnemar_p, 1.0);
    assert!(p.became_correct.is_empty() && p.became_incorrect.is_empty());
}

#[test]
fn outcome_serde_shape() {
    let cases = [
        (
            Outcome::Graded(Correct),
            r#"{"kind":"graded","grade":"correct"}"#,
        ),
        (
            Outcome::Graded(NotAttempted),
            r#"{"kind":"graded","grade":"not_attempted"}"#,
        ),
        (Outcome::Unparseable, r#"{"kind":"unparseable"}"#),
        (Outcome::Error, r#"{"kind":"error"}"#),
    ];
    for (outcome, json) in cases {
        assert_eq!(serde_json::to_string(&outcome).expect("serialises"), json);
        let back: Outcome = serde_json::from_str(json).expect("deserialises");
        assert_eq!(back, outcome);
    }
    let items = table();
    let text = serde_json::to_string(&items).expect("serialises");
    let back: Vec<ItemResult> = serde_json::from_str(&text).expect("deserialises");
    assert_eq!(back, items);
}
