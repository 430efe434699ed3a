//! Charts drawn as SVG on the server: the SSE timeline of an exchange.
//!
//! Everything goes through maud (titles and labels are escaped); colours are presentation attributes, which
//! the Content-Security-Policy allows (no `style` attribute is used).

use maud::{Markup, html};

/// One SSE event on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEvent {
    /// Position in the stream.
    pub seq: i64,
    /// Event type.
    pub kind: String,
    /// Receive offset from the request's start, µs.
    pub offset_us: i64,
    /// Wire bytes.
    pub size: i64,
}

/// Fixed colours of the API's event types; others get one of [`PALETTE`] by a hash of their name.
const KNOWN: &[(&str, &str)] = &[
    ("conversation.response.started", "#6b7280"),
    ("message.output.delta", "#2563eb"),
    ("tool.execution.started", "#d97706"),
    ("tool.execution.delta", "#f59e0b"),
    ("tool.execution.done", "#b45309"),
    ("function.call.delta", "#7c3aed"),
    ("agent.handoff.started", "#db2777"),
    ("agent.handoff.done", "#be185d"),
    ("conversation.response.done", "#059669"),
    ("conversation.response.error", "#dc2626"),
];

const PALETTE: &[&str] = &[
    "#0891b2", "#65a30d", "#9333ea", "#ea580c", "#0d9488", "#4f46e5", "#a16207", "#e11d48",
];

/// The colour of an event type.
pub fn colour(kind: &str) -> &'static str {
    if let Some((_, c)) = KNOWN.iter().find(|(k, _)| *k == kind) {
        return c;
    }
    let h = kind
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[(h as usize) % PALETTE.len()]
}

const W: f64 = 960.0;
const LEFT: f64 = 20.0;
const RIGHT: f64 = 20.0;
const LANE: f64 = 14.0;
const TOP: f64 = 24.0;

fn ms(us: i64) -> String {
    let m = us as f64 / 1000.0;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else {
        format!("{m:.1} ms")
    }
}

/// The timeline: one mark (`class="ev"`) per event at its receive offset, one lane per event type (so
/// gaps within a type show), the first-token time marked, the longest gap bracketed, a time axis, and a
/// legend with counts. `span_us` is the exchange's total time (the axis extends to the last event if later);
/// `ttft_us` is marked when given.
pub fn timeline(events: &[TimelineEvent], span_us: Option<i64>, ttft_us: Option<i64>) -> Markup {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for e in events {
        match kinds.iter_mut().find(|(k, _)| *k == e.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((&e.kind, 1)),
        }
    }
    let last = events.iter().map(|e| e.offset_us).max().unwrap_or(0);
    let span = span_us.unwrap_or(0).max(last).max(1);
    let x = |us: i64| LEFT + (us.clamp(0, span) as f64 / span as f64) * (W - LEFT - RIGHT);
    let lane_of = |k: &str| kinds.iter().position(|(n, _)| *n == k).unwrap_or(0);
    let lanes_h = LANE * kinds.len().max(1) as f64;
    let axis_y = TOP + lanes_h + 6.0;
    let h = axis_y + 40.0;
    let gap = events
        .windows(2)
        .map(|w| (w[0].offset_us, w[1].offset_us))
        .max_by_key(|(a, b)| b - a)
        .filter(|(a, b)| b > a);
    let ticks: Vec<i64> = (0..=5).map(|i| span * i / 5).collect();
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (h) } width=(W) height=(h)
            role="img" aria-label="SSE timeline" {
            title { "SSE events by receive time from the request's start" }
            @for (i, (k, _)) in kinds.iter().enumerate() {
                rect x=(LEFT) y=(TOP + LANE * i as f64) width=(W - LEFT - RIGHT) height=(LANE - 2.0)
                    fill=(if i % 2 == 0 { "#f3f4f6" } else { "#fafafa" }) {
                    title { (k) }
                }
            }
            @if let Some((a, b)) = gap {
                rect.gap x=(x(a)) y=(TOP - 4.0) width=((x(b) - x(a)).max(1.0)) height=(lanes_h + 4.0)
                    fill="#fde68a" fill-opacity="0.5" {
                    title { "longest gap: " (ms(b - a)) }
                }
                text x=((x(a) + x(b)) / 2.0) y=(TOP - 8.0) text-anchor="middle" font-size="10" fill="#92400e" {
                    "gap " (ms(b - a))
                }
            }
            @for e in events {
                rect.ev x=(x(e.offset_us) - 0.75) y=(TOP + LANE * lane_of(&e.kind) as f64)
                    width="1.5" height=(LANE - 2.0) fill=(colour(&e.kind)) data-seq=(e.seq) {
                    title { "#" (e.seq) " " (e.kind) " at " (ms(e.offset_us)) ", " (e.size) " B" }
                }
            }
            @if let Some(t) = ttft_us {
                line.ttft x1=(x(t)) x2=(x(t)) y1=(TOP - 14.0) y2=(axis_y) stroke="#dc2626" stroke-width="1.5"
                    stroke-dasharray="4 2" {}
                text x=(x(t) + 3.0) y=(TOP - 14.0) font-size="10" fill="#dc2626" { "TTFT " (ms(t)) }
            }
            line x1=(LEFT) x2=(W - RIGHT) y1=(axis_y) y2=(axis_y) stroke="#374151" {}
            @for t in &ticks {
                line x1=(x(*t)) x2=(x(*t)) y1=(axis_y) y2=(axis_y + 4.0) stroke="#374151" {}
                text x=(x(*t)) y=(axis_y + 16.0) font-size="10" text-anchor="middle" fill="#374151" { (ms(*t)) }
            }
        }
        ul.legend {
            @for (k, n) in &kinds {
                li {
                    svg width="10" height="10" xmlns="http://www.w3.org/2000/svg" { rect width="10" height="10" fill=(colour(k)) {} }
                    " " (k) " × " (n)
                }
            }
        }
    }
}

/// One configuration in [`scatter_chart`]: a proportion (with its interval) against a latency.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPoint {
    /// Config name.
    pub name: String,
    /// Latency, ms (the x axis).
    pub x_ms: f64,
    /// Proportion in 0..=1 (the y axis).
    pub y: f64,
    /// Interval low end of `y`.
    pub lo: f64,
    /// Interval high end of `y`.
    pub hi: f64,
}

/// A proportion against a latency, one labelled point per configuration with a vertical whisker over its
/// interval (accuracy vs median latency: up and to the left is better). The x axis starts at 0.
pub fn scatter_chart(points: &[ScatterPoint], x_title: &str, y_title: &str) -> Markup {
    let (left, plot_w, plot_h) = (60.0, W - 60.0 - RIGHT - 120.0, 240.0);
    let max_x = points
        .iter()
        .map(|p| p.x_ms)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let x = |v: f64| left + (v / max_x).clamp(0.0, 1.0) * plot_w;
    let y = |p: f64| TOP + (1.0 - p.clamp(0.0, 1.0)) * plot_h;
    let h = TOP + plot_h + 44.0;
    html! {
        svg.chart.scatter xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (h) } width=(W) height=(h)
            role="img" aria-label={ (y_title) " against " (x_title) } {
            @for p in [0.0, 0.25, 0.5, 0.75, 1.0] {
                line x1=(x(0.0)) x2=(x(max_x)) y1=(y(p)) y2=(y(p)) stroke="#e5e7eb" {}
                text x=(left - 8.0) y=(y(p) + 4.0) font-size="10" text-anchor="end" fill="#374151" { (format!("{:.0}%", p * 100.0)) }
            }
            @for i in 0..=5 {
                @let v = max_x * f64::from(i) / 5.0;
                text x=(x(v)) y=(y(0.0) + 16.0) font-size="10" text-anchor="middle" fill="#374151" { (format!("{v:.0} ms")) }
            }
            text x=(x(max_x / 2.0)) y=(y(0.0) + 32.0) font-size="11" text-anchor="middle" fill="#111827" { (x_title) }
            text x="12" y=(y(0.5)) font-size="11" text-anchor="middle" fill="#111827"
                transform={ "rotate(-90 12 " (y(0.5)) ")" } { (y_title) }
            @for (i, p) in points.iter().enumerate() {
                @let c = PALETTE[i % PALETTE.len()];
                line x1=(x(p.x_ms)) x2=(x(p.x_ms)) y1=(y(p.lo)) y2=(y(p.hi)) stroke=(c) stroke-width="2" {}
                circle.point cx=(x(p.x_ms)) cy=(y(p.y)) r="5" fill=(c) {
                    title { (p.name) ": " (format!("{:.1}% [{:.1}, {:.1}] at {:.0} ms", p.y * 100.0, p.lo * 100.0, p.hi * 100.0, p.x_ms)) }
                }
                text x=(x(p.x_ms) + 8.0) y=(y(p.y) + 4.0) font-size="11" fill="#111827" { (p.name) }
            }
        }
    }
}

/// A horizontal bar per (label, value), labels on the left, each value written after its bar by `fmt`
/// (costs in dollars, tokens, …); every bar's title says its label and value.
pub fn labelled_bars(bars: &[(String, f64)], fmt: fn(f64) -> String) -> Markup {
    let label_w = label_width(bars.iter().map(|(l, _)| l.as_str()));
    let plot_w = W - label_w - RIGHT - 110.0;
    let max = bars
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let w = |v: f64| {
        if max > 0.0 && v.is_finite() {
            (v / max).clamp(0.0, 1.0) * plot_w
        } else {
            0.0
        }
    };
    let h = TOP + ROW_H * bars.len().max(1) as f64;
    html! {
        svg.chart.hbars xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (h) } width=(W) height=(h)
            role="img" aria-label="bar chart" {
            @for (i, (label, v)) in bars.iter().enumerate() {
                @let y = TOP + ROW_H * i as f64;
                text x=(label_w - 8.0) y=(y + ROW_H / 2.0) font-size="12" text-anchor="end" fill="#111827" { (label) }
                rect.bar x=(label_w) y=(y + 4.0) width=(w(*v).max(1.0)) height=(ROW_H - 10.0) fill=(PALETTE[i % PALETTE.len()]) {
                    title { (label) ": " (fmt(*v)) }
                }
                text x=(label_w + w(*v) + 8.0) y=(y + ROW_H / 2.0) font-size="11" fill="#374151" { (fmt(*v)) }
            }
        }
    }
}

#[cfg(test)]
mod chart_tests {
    use super::*;

    #[test]
    fn interval_and_scatter_charts_escape_names_and_place_every_point() {
        let bar = AccuracyBar {
            name: "<script>x</script>".into(),
            accuracy: 0.5,
            lo: 0.4,
            hi: 0.6,
            n: 10,
        };
        let f = interval_chart(std::slice::from_ref(&bar), "fscore", "F with 95% intervals")
            .into_string();
        assert!(f.contains("class=\"chart fscore\"") && f.contains("F with 95% intervals"));
        assert!(!f.contains("<script>") && f.contains("&lt;script&gt;"));
        assert!(
            accuracy_chart(&[bar])
                .into_string()
                .contains("class=\"chart accuracy\"")
        );

        let pts = vec![
            ScatterPoint {
                name: "a".into(),
                x_ms: 100.0,
                y: 0.2,
                lo: 0.1,
                hi: 0.3,
            },
            ScatterPoint {
                name: "<b>".into(),
                x_ms: 300.0,
                y: 0.9,
                lo: 0.8,
                hi: 1.0,
            },
        ];
        let s = scatter_chart(&pts, "median latency", "accuracy").into_string();
        assert_eq!(s.matches("class=\"point\"").count(), 2);
        assert!(!s.contains("<b>") && s.contains("&lt;b&gt;"));
        assert_eq!(
            scatter_chart(&[], "x", "y")
                .into_string()
                .matches("class=\"point\"")
                .count(),
            0
        );
    }

    #[test]
    fn labelled_bars_write_their_values() {
        let b = labelled_bars(
            &[
                ("base".into(), 0.0123),
                ("web".into(), 0.05),
                ("none".into(), f64::NAN),
            ],
            |v| format!("${v:.4}"),
        )
        .into_string();
        assert_eq!(b.matches("class=\"bar\"").count(), 3);
        assert!(b.contains("$0.0123") && b.contains("$0.0500"));
        assert!(
            !labelled_bars(&[], |v| v.to_string())
                .into_string()
                .contains("class=\"bar\"")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64, kind: &str, offset_us: i64) -> TimelineEvent {
        TimelineEvent {
            seq,
            kind: kind.into(),
            offset_us,
            size: 10,
        }
    }

    #[test]
    fn one_mark_per_event_and_escaped_types() {
        let events = vec![
            ev(0, "conversation.response.started", 100),
            ev(1, "message.output.delta", 2_000),
            ev(2, "<script>x</script>", 50_000),
        ];
        let svg = timeline(&events, Some(60_000), Some(2_000)).into_string();
        assert_eq!(svg.matches("class=\"ev\"").count(), 3);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("TTFT 2.00 ms"));
        assert!(svg.contains("gap 48.0 ms"));
    }

    #[test]
    fn empty_timeline_renders() {
        let svg = timeline(&[], None, None).into_string();
        assert_eq!(svg.matches("class=\"ev\"").count(), 0);
    }
}

/// One configuration's accuracy with its 95% interval, for [`accuracy_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyBar {
    /// Config name.
    pub name: String,
    /// Accuracy in 0..=1.
    pub accuracy: f64,
    /// Interval low end.
    pub lo: f64,
    /// Interval high end.
    pub hi: f64,
    /// Graded items.
    pub n: usize,
}

const LABEL_W: f64 = 180.0;

/// Room for row labels of 12px text: [`LABEL_W`] at least, wider for long labels (up to 360).
fn label_width<'a>(labels: impl Iterator<Item = &'a str>) -> f64 {
    let chars = labels.map(|l| l.chars().count()).max().unwrap_or(0);
    (chars as f64 * 6.8 + 16.0).clamp(LABEL_W, 360.0)
}
const ROW_H: f64 = 28.0;

/// Accuracy per configuration on a 0–100% axis: a dot at the estimate, a whisker over the interval.
pub fn accuracy_chart(bars: &[AccuracyBar]) -> Markup {
    interval_chart(bars, "accuracy", "accuracy with 95% intervals")
}

/// Any proportion per row (accuracy, F-score, …) on a 0–100% axis, drawn as [`accuracy_chart`] draws
/// accuracy; `class` is added to the `svg`'s classes and `label` is its accessible name.
pub fn interval_chart(bars: &[AccuracyBar], class: &str, label: &str) -> Markup {
    let label_w = label_width(bars.iter().map(|b| b.name.as_str()));
    let plot_w = W - label_w - RIGHT - 90.0;
    let x = |v: f64| label_w + v.clamp(0.0, 1.0) * plot_w;
    let h = TOP + ROW_H * bars.len().max(1) as f64 + 30.0;
    let axis_y = TOP + ROW_H * bars.len().max(1) as f64;
    html! {
        svg class={ "chart " (class) } xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (h) } width=(W) height=(h)
            role="img" aria-label=(label) {
            @for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
                line x1=(x(t)) x2=(x(t)) y1=(TOP - 8.0) y2=(axis_y) stroke="#e5e7eb" {}
                text x=(x(t)) y=(axis_y + 16.0) font-size="10" text-anchor="middle" fill="#374151" { (format!("{:.0}%", t * 100.0)) }
            }
            @for (i, b) in bars.iter().enumerate() {
                @let y = TOP + ROW_H * i as f64 + ROW_H / 2.0 - 6.0;
                @let c = PALETTE[i % PALETTE.len()];
                text x=(label_w - 8.0) y=(y + 4.0) font-size="12" text-anchor="end" fill="#111827" { (b.name) }
                line.ci x1=(x(b.lo)) x2=(x(b.hi)) y1=(y) y2=(y) stroke=(c) stroke-width="3" {}
                line x1=(x(b.lo)) x2=(x(b.lo)) y1=(y - 6.0) y2=(y + 6.0) stroke=(c) stroke-width="2" {}
                line x1=(x(b.hi)) x2=(x(b.hi)) y1=(y - 6.0) y2=(y + 6.0) stroke=(c) stroke-width="2" {}
                circle.acc cx=(x(b.accuracy)) cy=(y) r="5" fill=(c) {
                    title { (b.name) ": " (format!("{:.1}% [{:.1}, {:.1}], n = {}", b.accuracy * 100.0, b.lo * 100.0, b.hi * 100.0, b.n)) }
                }
                text x=(x(1.0) + 10.0) y=(y + 4.0) font-size="11" fill="#374151" { (format!("{:.1}%", b.accuracy * 100.0)) }
            }
        }
    }
}

/// Points kept per CDF line at most (evenly spaced ranks).
const CDF_POINTS: usize = 400;

/// Latency CDFs, one step line per series (values in ms, any order), on a shared axis up to the largest
/// value, with a legend.
pub fn cdf_chart(series: &[(String, Vec<f64>)]) -> Markup {
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let plot_w = W - 60.0 - RIGHT;
    let plot_h = 220.0;
    let x = |v: f64| 60.0 + (v / max).clamp(0.0, 1.0) * plot_w;
    let y = |p: f64| TOP + (1.0 - p) * plot_h;
    let h = TOP + plot_h + 36.0;
    let lines: Vec<(String, &'static str, String)> = series
        .iter()
        .enumerate()
        .map(|(i, (name, values))| {
            let mut v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let step = n.div_ceil(CDF_POINTS).max(1);
            let mut pts = format!("{:.1},{:.1}", x(0.0), y(0.0));
            for (k, val) in v.iter().enumerate() {
                if k % step == 0 || k + 1 == n {
                    let before = k as f64 / n as f64;
                    let after = (k + 1) as f64 / n as f64;
                    pts.push_str(&format!(
                        " {:.1},{:.1} {:.1},{:.1}",
                        x(*val),
                        y(before),
                        x(*val),
                        y(after)
                    ));
                }
            }
            (name.clone(), PALETTE[i % PALETTE.len()], pts)
        })
        .collect();
    html! {
        svg.chart.cdf xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (h) } width=(W) height=(h)
            role="img" aria-label="latency CDF" {
            @for p in [0.0, 0.5, 0.9, 1.0] {
                line x1=(x(0.0)) x2=(x(max)) y1=(y(p)) y2=(y(p)) stroke="#e5e7eb" {}
                text x="52" y=(y(p) + 4.0) font-size="10" text-anchor="end" fill="#374151" { (format!("{:.0}%", p * 100.0)) }
            }
            @for i in 0..=5 {
                @let v = max * f64::from(i) / 5.0;
                text x=(x(v)) y=(y(0.0) + 16.0) font-size="10" text-anchor="middle" fill="#374151" { (format!("{v:.0} ms")) }
            }
            @for (name, c, pts) in &lines {
                polyline.cdfline points=(pts) fill="none" stroke=(c) stroke-width="1.5" { title { (name) } }
            }
        }
        ul.legend {
            @for (name, c, _) in &lines {
                li { svg width="10" height="10" xmlns="http://www.w3.org/2000/svg" { rect width="10" height="10" fill=(c) {} } " " (name) }
            }
        }
    }
}

/// A bar per (label, value), in order, on a shared scale; each bar's title says its label and value.
pub fn bar_chart(bars: &[(String, f64)]) -> Markup {
    let max = bars.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1.0);
    let plot_h = 180.0;
    let plot_w = W - 70.0 - RIGHT;
    let bw = plot_w / bars.len().max(1) as f64;
    let h = TOP + plot_h + 36.0;
    let y = |v: f64| TOP + plot_h - (v / max) * plot_h;
    html! {
        svg.chart.bars xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (h) } width=(W) height=(h)
            role="img" aria-label="bar chart" {
            @for f in [0.0, 0.5, 1.0] {
                line x1="70" x2=(W - RIGHT) y1=(y(max * f)) y2=(y(max * f)) stroke="#e5e7eb" {}
                text x="64" y=(y(max * f) + 4.0) font-size="10" text-anchor="end" fill="#374151" { (format!("{:.0}", max * f)) }
            }
            @for (i, (label, v)) in bars.iter().enumerate() {
                rect.bar x=(70.0 + bw * i as f64 + bw * 0.1) y=(y(*v)) width=((bw * 0.8).max(1.0)) height=((TOP + plot_h - y(*v)).max(0.0))
                    fill="#2563eb" { title { (label) ": " (format!("{v:.0}")) } }
            }
            @if let (Some((first, _)), Some((last, _))) = (bars.first(), bars.last()) {
                text x="70" y=(TOP + plot_h + 16.0) font-size="10" fill="#374151" { (first) }
                text x=(W - RIGHT) y=(TOP + plot_h + 16.0) font-size="10" text-anchor="end" fill="#374151" { (last) }
            }
        }
    }
}
