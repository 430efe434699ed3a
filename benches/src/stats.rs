//! Latency samples and their summaries: exact nearest-rank percentiles over every sample (no histogram
//! bucketing), in microseconds with sub-microsecond resolution.

use serde::Serialize;

/// Percentiles of one set of samples, in microseconds. Empty sets give `n = 0` and zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

/// Reads one percentile of a summary.
pub type Pick = fn(&Summary) -> f64;

/// The percentiles a report shows, in order, with their names.
pub const SHOWN: [(&str, Pick); 5] = [
    ("p50", |s| s.p50_us),
    ("p90", |s| s.p90_us),
    ("p99", |s| s.p99_us),
    ("p99.9", |s| s.p999_us),
    ("max", |s| s.max_us),
];

impl Summary {
    /// Summarises samples given in nanoseconds (signed, so differences can be summarised too).
    pub fn of_ns(samples: &[i64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut v = samples.to_vec();
        v.sort_unstable();
        let us = |ns: i64| ns as f64 / 1000.0;
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        Summary {
            n: v.len(),
            min_us: us(v[0]),
            p50_us: us(rank(&v, 0.50)),
            p90_us: us(rank(&v, 0.90)),
            p99_us: us(rank(&v, 0.99)),
            p999_us: us(rank(&v, 0.999)),
            max_us: us(v[v.len() - 1]),
            mean_us: sum / v.len() as f64 / 1000.0,
        }
    }

    /// Summarises unsigned nanosecond samples.
    pub fn of_unsigned_ns(samples: &[u64]) -> Summary {
        let v: Vec<i64> = samples
            .iter()
            .map(|&x| i64::try_from(x).unwrap_or(i64::MAX))
            .collect();
        Summary::of_ns(&v)
    }

    /// Summarises plain counts (events per request, …): the `_us` fields then hold counts.
    pub fn of_counts(counts: &[usize]) -> Summary {
        let v: Vec<i64> = counts
            .iter()
            .map(|&c| i64::try_from(c).unwrap_or(i64::MAX).saturating_mul(1000))
            .collect();
        Summary::of_ns(&v)
    }

    /// `self − base`, percentile by percentile (what the target adds over the baseline); `None` when either
    /// side has no samples.
    pub fn minus(&self, base: &Summary) -> Option<Delta> {
        if self.n == 0 || base.n == 0 {
            return None;
        }
        Some(Delta {
            p50_us: self.p50_us - base.p50_us,
            p90_us: self.p90_us - base.p90_us,
            p99_us: self.p99_us - base.p99_us,
            p999_us: self.p999_us - base.p999_us,
            max_us: self.max_us - base.max_us,
            mean_us: self.mean_us - base.mean_us,
        })
    }

    /// `self / base`, percentile by percentile (`None` where the baseline is 0 or either side has no samples).
    pub fn ratio(&self, base: &Summary) -> Ratio {
        let r =
            |a: f64, b: f64| (self.n > 0 && base.n > 0 && b.abs() > f64::EPSILON).then(|| a / b);
        Ratio {
            p50: r(self.p50_us, base.p50_us),
            p90: r(self.p90_us, base.p90_us),
            p99: r(self.p99_us, base.p99_us),
            p999: r(self.p999_us, base.p999_us),
            max: r(self.max_us, base.max_us),
        }
    }
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at least `q` of all samples at or below it.
fn rank(sorted: &[i64], q: f64) -> i64 {
    let n = sorted.len();
    let k = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[k - 1]
}

/// A percentile-wise difference, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Delta {
    /// Median difference.
    pub p50_us: f64,
    /// 90th percentile difference.
    pub p90_us: f64,
    /// 99th percentile difference.
    pub p99_us: f64,
    /// 99.9th percentile difference.
    pub p999_us: f64,
    /// Difference of the maxima.
    pub max_us: f64,
    /// Difference of the means.
    pub mean_us: f64,
}

/// A percentile-wise ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Ratio {
    /// Ratio of the medians.
    pub p50: Option<f64>,
    /// Ratio of the 90th percentiles.
    pub p90: Option<f64>,
    /// Ratio of the 99th percentiles.
    pub p99: Option<f64>,
    /// Ratio of the 99.9th percentiles.
    pub p999: Option<f64>,
    /// Ratio of the maxima.
    pub max: Option<f64>,
}

/// A duration in microseconds for people: `850 µs`, `12.3 ms`, `1.25 s` (negative values keep their sign).
pub fn fmt_us(us: f64) -> String {
    let a = us.abs();
    if a < 10.0 {
        format!("{us:.2} µs")
    } else if a < 1000.0 {
        format!("{us:.0} µs")
    } else if a < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if a < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// A ratio for people: `1.04×`, or `–` when undefined.
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).map(|x| x * 1000).collect();
        let s = Summary::of_ns(&v);
        assert_eq!(s.n, 100);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p90_us, 90.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(s.p999_us, 100.0);
        assert_eq!(s.max_us, 100.0);
        assert_eq!(s.mean_us, 50.5);
        let one = Summary::of_ns(&[7000]);
        assert_eq!((one.p50_us, one.p99_us, one.max_us), (7.0, 7.0, 7.0));
        assert_eq!(Summary::of_ns(&[]), Summary::default());
    }

    #[test]
    fn signed_samples_and_unsorted_input() {
        let s = Summary::of_ns(&[3000, -2000, 1000, 0]);
        assert_eq!(s.min_us, -2.0);
        assert_eq!(s.p50_us, 0.0);
        assert_eq!(s.max_us, 3.0);
    }

    #[test]
    fn differences_and_ratios() {
        let a = Summary::of_ns(&[2000, 4000]);
        let b = Summary::of_ns(&[1000, 2000]);
        let d = a.minus(&b).unwrap();
        assert_eq!((d.p50_us, d.max_us), (1.0, 2.0));
        assert!(a.minus(&Summary::default()).is_none());
        let r = a.ratio(&b);
        assert_eq!(r.p50, Some(2.0));
        assert_eq!(a.ratio(&Summary::default()).p50, None);
        assert_eq!(fmt_ratio(r.p99), "2.00×");
        assert_eq!(fmt_ratio(None), "–");
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(fmt_us(3.456), "3.46 µs");
        assert_eq!(fmt_us(850.2), "850 µs");
        assert_eq!(fmt_us(1234.0), "1.23 ms");
        assert_eq!(fmt_us(12_345.0), "12.3 ms");
        assert_eq!(fmt_us(1_250_000.0), "1.25 s");
        assert_eq!(fmt_us(-42.0), "-42 µs");
    }

    #[test]
    fn counts() {
        let s = Summary::of_counts(&[10, 20, 30]);
        assert_eq!((s.p50_us, s.max_us), (20.0, 30.0));
    }
}
