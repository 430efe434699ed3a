//! SSE decoder and encoder tests, including chunking-invariance property tests.

use agentcap_wire::*;
use proptest::prelude::*;
use serde_json::json;

use crate::example_bytes;

/// Decodes a whole stream in one push plus `finish`.
fn decode_all(bytes: &[u8]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out = d.push(bytes).expect("push");
    out.extend(d.finish().expect("finish"));
    out
}

/// Decodes a stream pushed in pieces of the given sizes (cycled), then `finish`.
fn decode_chunked(bytes: &[u8], sizes: &[usize]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        let end = (pos + n).min(bytes.len());
        out.extend(d.push(&bytes[pos..end]).expect("push"));
        pos = end;
        i += 1;
    }
    out.extend(d.finish().expect("finish"));
    out
}

/// `(event, data, id, retry)` of one event.
type Fields = (Option<String>, String, Option<String>, Option<u64>);

/// The event fields, without `raw_len` (which legitimately differs between line-end styles).
fn fields(events: &[SseEvent]) -> Vec<Fields> {
    events
        .iter()
        .map(|e| (e.event.clone(), e.data.clone(), e.id.clone(), e.retry))
        .collect()
}

fn with_line_ends(bytes: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        if b == b'\n' {
            out.extend_from_slice(eol);
        } else {
            out.push(b);
        }
    }
    out
}

/// A hand-made stream exercising comments, multi-line data, ids, retry, odd fields, UTF-8.
const TRICKY: &str = "\u{feff}: keep-alive comment\n\
event: message.output.delta\n\
data: {\"a\":\"héllo wörld ✓ 🎉\"}\n\
\n\
:another comment\n\
data:no space\n\
data:  two spaces\n\
data\n\
id: 42\n\
retry: 1500\n\
unknown: field\n\
...\n\
\n\
event: only-a-name\n\
\n\
data:\n\
\n\
event: tail\n\
data: no blank line at the end";

#[test]
fn example_stream_decodes() {
    let bytes = example_bytes("stream_web_search_agent.sse");
    let events = decode_all(&bytes);
    assert_eq!(
        events.len(),
        10,
        "the `...` line must not produce or break an event"
    );
    for ev in &events {
        let data: serde_json::Value = ev.json().expect("data is JSON");
        assert_eq!(
            ev.event.as_deref(),
            data["type"].as_str(),
            "event name equals data type"
        );
        assert_eq!(ev.id, None);
        assert_eq!(ev.retry, None);
        let parsed = ConversationEvent::from_sse(ev).expect("typed event");
        assert!(!matches!(parsed, ConversationEvent::Other(_)));
    }
    assert_eq!(
        events[0].event.as_deref(),
        Some("conversation.response.started")
    );
    assert_eq!(
        events[9].event.as_deref(),
        Some("conversation.response.done")
    );
    // raw_len accounts for every byte.
    assert_eq!(events.iter().map(|e| e.raw_len).sum::<usize>(), bytes.len());
}

#[test]
fn line_end_styles_decode_identically() {
    let lf = example_bytes("stream_web_search_agent.sse");
    let expected = fields(&decode_all(&lf));
    for eol in [&b"\r\n"[..], b"\r"] {
        let other = with_line_ends(&lf, eol);
        assert_eq!(fields(&decode_all(&other)), expected);
        assert_eq!(fields(&decode_chunked(&other, &[1])), expected);
    }
    // Mixed line ends within one stream.
    let mixed = b"event: a\r\ndata: 1\r\rdata: 2\n\r\n";
    let events = decode_all(mixed);
    assert_eq!(
        fields(&events),
        vec![
            (Some("a".into()), "1".into(), None, None),
            (None, "2".into(), None, None)
        ]
    );
}

#[test]
fn tricky_stream_follows_the_whatwg_rules() {
    let events = decode_all(TRICKY.as_bytes());
    assert_eq!(
        fields(&events),
        vec![
            (
                Some("message.output.delta".into()),
                "{\"a\":\"héllo wörld ✓ 🎉\"}".into(),
                None,
                None
            ),
            (
                None,
                "no space\n two spaces\n".into(),
                Some("42".into()),
                Some(1500)
            ),
            // `event: only-a-name` has no data: dropped. `data:` alone: dispatched, empty.
            (None, String::new(), None, None),
            // Tolerance: the last event has no blank line but is returned by finish().
            (
                Some("tail".into()),
                "no blank line at the end".into(),
                None,
                None
            ),
        ]
    );
    let total: usize = events.iter().map(|e| e.raw_len).sum();
    assert_eq!(total, TRICKY.len());
}

#[test]
fn id_and_retry_edge_cases() {
    let s = "id: a\0b\ndata: x\n\nretry: 12x\ndata: y\n\nid\ndata: z\n\n";
    let mut d = SseDecoder::new();
    let events = d.push(s.as_bytes()).unwrap();
    assert_eq!(events[0].id, None, "an id containing NUL is ignored");
    assert_eq!(events[1].retry, None, "a non-numeric retry is ignored");
    assert_eq!(
        events[2].id.as_deref(),
        Some(""),
        "`id` alone sets an empty id"
    );
    assert_eq!(d.last_event_id(), Some(""));
    assert_eq!(d.bytes_pushed(), s.len() as u64);
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let events = decode_all(b"data: a\xffb\n\n");
    assert_eq!(events[0].data, "a\u{fffd}b");
}

#[test]
fn split_inside_crlf_and_inside_a_utf8_char() {
    let s = "data: é\r\n\r\n".as_bytes();
    // Split between the two bytes of 'é' and between CR and LF.
    let mut d = SseDecoder::new();
    let mut events = d.push(&s[..7]).unwrap();
    assert!(events.is_empty());
    events.extend(d.push(&s[7..9]).unwrap()); // "\xa9\r"
    assert!(events.is_empty());
    events.extend(d.push(&s[9..11]).unwrap()); // "\n\r"
    assert!(
        events.is_empty(),
        "a CR at the end of a chunk waits for the next byte"
    );
    events.extend(d.push(&s[11..]).unwrap()); // "\n"
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "é");
    assert_eq!(events[0].raw_len, s.len());
    assert_eq!(d.finish().unwrap(), None);
}

#[test]
fn finish_handles_partial_lines_and_trailing_cr() {
    let mut d = SseDecoder::new();
    assert!(d.push(b"event: x\ndata: partial").unwrap().is_empty());
    let ev = d.finish().unwrap().expect("pending event returned");
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("x"), "partial")
    );

    let mut d = SseDecoder::new();
    assert!(d.push(b"data: y\r\r").unwrap().is_empty());
    let ev = d.finish().unwrap().expect("CR at the end is a line end");
    assert_eq!((ev.data.as_str(), ev.raw_len), ("y", 9));

    let mut d = SseDecoder::new();
    assert!(d.push(b": only a comment").unwrap().is_empty());
    assert_eq!(d.finish().unwrap(), None);
    assert_eq!(SseDecoder::new().finish().unwrap(), None);
}

#[test]
fn oversized_events_are_rejected() {
    // One long line without any newline.
    let mut d = SseDecoder::with_max_event_size(64);
    let err = d.push(&[b'x'; 65]).unwrap_err();
    assert_eq!(err, SseError::EventTooLarge { limit: 64 });
    // The decoder stays failed.
    assert!(d.push(b"\n\n").is_err());

    // The same line trickling in byte by byte.
    let mut d = SseDecoder::with_max_event_size(64);
    let mut failed = false;
    for _ in 0..100 {
        if d.push(b"y").is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "an endless line must hit the limit");

    // Many short data lines adding up.
    let mut d = SseDecoder::with_max_event_size(64);
    let lines = "data: 0123456789\n".repeat(10);
    assert!(matches!(
        d.push(lines.as_bytes()),
        Err(SseError::EventTooLarge { limit: 64 })
    ));
    assert!(d.finish().is_err());

    // Events under the limit pass, however many there are.
    let mut d = SseDecoder::with_max_event_size(64);
    let many = "data: 0123456789\n\n".repeat(1000);
    assert_eq!(d.push(many.as_bytes()).unwrap().len(), 1000);
    assert_eq!(SseDecoder::new().push(b"").unwrap(), vec![]);
    assert_eq!(DEFAULT_MAX_EVENT_SIZE, 16 * 1024 * 1024);
}

#[test]
fn encoders_write_exact_bytes() {
    assert_eq!(
        &encode_event("message.output.delta", r#"{"a":1}"#)[..],
        b"event: message.output.delta\ndata: {\"a\":1}\n\n"
    );
    assert_eq!(&encode_data("[DONE]")[..], b"data: [DONE]\n\n");
    let ev = json!({"type": "conversation.response.started", "conversation_id": "conv_1"});
    assert_eq!(
        &encode_conversation_event(&ev)[..],
        b"event: conversation.response.started\n\
data: {\"type\":\"conversation.response.started\",\"conversation_id\":\"conv_1\"}\n\n"
    );
    // JSON newlines are escaped, so the payload stays on one line.
    let ev = json!({"type": "x", "text": "a\nb"});
    assert_eq!(
        &encode_conversation_event(&ev)[..],
        b"event: x\ndata: {\"type\":\"x\",\"text\":\"a\\nb\"}\n\n"
    );
    assert_eq!(
        &encode_conversation_event(&json!({"no": "type"}))[..],
        b"data: {\"no\":\"type\"}\n\n"
    );
    // Multi-line data becomes several data lines; a newline in a name cannot break framing.
    assert_eq!(
        &encode_data("a\r\nb\rc\n")[..],
        b"data: a\ndata: b\ndata: c\ndata: \n\n"
    );
    assert_eq!(
        &encode_event("bad\nname", "x")[..],
        b"event: badname\ndata: x\n\n"
    );
    let full = SseEvent {
        event: Some("e".into()),
        data: "d".into(),
        id: Some("7".into()),
        retry: Some(100),
        raw_len: 0,
    };
    assert_eq!(
        &encode_sse_event(&full)[..],
        b"event: e\nid: 7\nretry: 100\ndata: d\n\n"
    );
}

#[test]
fn typed_events_encode_and_decode_back() {
    let bytes = example_bytes("stream_web_search_agent.sse");
    let events = decode_all(&bytes);
    let mut reencoded = Vec::new();
    for ev in &events {
        let typed = ConversationEvent::from_sse(ev).unwrap();
        reencoded.extend_from_slice(&typed.to_sse());
    }
    let again = decode_all(&reencoded);
    assert_eq!(again.len(), events.len());
    for (a, b) in events.iter().zip(&again) {
        assert_eq!(a.event, b.event);
        assert_eq!(a.json().unwrap(), b.json().unwrap());
    }
    // The data line of the capture is byte-identical after a typed round trip only up to key
    // order; the text form written by to_sse is one line of compact JSON.
    assert!(again.iter().all(|e| !e.data.contains('\n')));
}

fn sample_inputs() -> Vec<Vec<u8>> {
    let example = example_bytes("stream_web_search_agent.sse");
    vec![
        with_line_ends(&example, b"\r\n"),
        with_line_ends(&example, b"\r"),
        example,
        TRICKY.as_bytes().to_vec(),
        with_line_ends(TRICKY.as_bytes(), b"\r\n"),
        b"data: a\n\rdata: b\r\n\n\r\r:c\r\ndata:\xc3\xa9\xf0\x9f\x8e\x89\n\n".to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any chunking of a stream gives exactly the events of one-shot decoding
    /// (raw_len included).
    #[test]
    fn any_chunking_matches_one_shot(
        which in 0usize..6,
        sizes in proptest::collection::vec(1usize..40, 1..50),
    ) {
        let input = &sample_inputs()[which];
        let expected = decode_all(input);
        prop_assert_eq!(decode_chunked(input, &sizes), expected);
    }

    /// Encoding arbitrary events, with any line-end style and any chunking, decodes back to
    /// the same events.
    #[test]
    fn encode_then_decode_is_identity(
        events in proptest::collection::vec(
            (
                proptest::option::of("[a-z.]{1,20}"),
                "[^\r\n]{0,30}(\n[^\r\n]{0,10}){0,3}",
                proptest::option::of("[a-zA-Z0-9]{0,8}"),
                proptest::option::of(0u64..100_000),
            ),
            0..8,
        ),
        eol in prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])],
        sizes in proptest::collection::vec(1usize..17, 1..20),
        comments in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (event, data, id, retry) in events {
            let ev = SseEvent { event, data, id, retry, raw_len: 0 };
            if comments {
                wire.extend_from_slice(b": ping\n");
            }
            wire.extend_from_slice(&encode_sse_event(&ev));
            expected.push(ev);
        }
        let wire = with_line_ends(&wire, eol);
        let decoded = decode_chunked(&wire, &sizes);
        prop_assert_eq!(fields(&decoded), fields(&expected));
        prop_assert_eq!(decoded.iter().map(|e| e.raw_len).sum::<usize>(), wire.len());
    }
}
