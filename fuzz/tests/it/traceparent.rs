//! The W3C `traceparent` parser on arbitrary header values, and the span mapping that reads it from
//! recorded request headers: the parser never panics; a value it accepts has non-zero ids, formats
//! back to the same fields it was read from and parses again to itself; the exchange's span is a
//! child of exactly the accepted caller span (no spans for an unsampled caller), and of none when
//! the value is refused.

use agentcap_proxy::otel::spans::{SpanOptions, spans_of};
use agentcap_proxy::recorder::derive::{Derived, ExchangeRow};
use agentcap_wire::trace_context::TraceParent;

use crate::fuzz;

#[test]
fn traceparent() {
    let seeds: &[&[u8]] = &[
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future-fields",
        b" 00-00000000000000000000000000000000-00f067aa0ba902b7-01\t",
        b"ff-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01, 00-x",
    ];
    fuzz("traceparent", seeds, |input: &[u8]| {
        let value = String::from_utf8_lossy(input);
        let parsed = TraceParent::parse(&value);
        if let Some(t) = parsed {
            assert_ne!(t.trace_id, [0; 16]);
            assert_ne!(t.parent_id, [0; 8]);
            let header = t.to_header();
            assert_eq!(header.len(), 55);
            let trimmed = value.trim_matches([' ', '\t']);
            assert_eq!(&header[2..], &trimmed[2..55], "{value:?}");
            assert_eq!(TraceParent::parse(&header), Some(t));
        }
        let headers = serde_json::json!({ "traceparent": value }).to_string();
        let d = Derived {
            exchange: ExchangeRow {
                id: "019a0000-0000-7000-8000-000000000001".into(),
                started_at_us: Some(1),
                operation: "conversations.start".into(),
                request_headers: Some(headers),
                outcome: "complete".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let spans = spans_of(&d, &SpanOptions::default());
        match parsed {
            Some(t) if !t.sampled() => assert!(spans.is_empty()),
            Some(t) => {
                assert_eq!(spans[0].parent_span_id, Some(t.parent_id));
                assert_eq!(spans[0].trace_id, t.trace_id);
            }
            None => assert_eq!(spans[0].parent_span_id, None),
        }
    });
}
