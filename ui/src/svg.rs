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
