//! A stream's `sse_events` rows handed out in chunks while it is folded
//! (`recorder::derive::ExchangeMsgs::take_event_chunk`) on arbitrary stream bytes, frame splits and
//! chunk sizes: the chunks and the rows `derive` returns at the end are, together, exactly the rows
//! of the same exchange derived without chunks (same order, `seq` from 0 without a gap, nothing
//! twice), `event_count` counts them all, and no chunk is smaller than asked.

use std::time::UNIX_EPOCH;

use agentcap_proxy::record::{ExchangeId, Msg, Outcome, RequestInfo, Timings};
use agentcap_proxy::recorder::body::Redactor;
use agentcap_proxy::recorder::derive::{DeriveCtx, EventRow, ExchangeMsgs, derive};
use bytes::Bytes;

use crate::{Rng, fuzz};

/// The messages of a streamed conversation turn whose response body is `body`, cut at `cuts`.
fn messages(body: &[u8], cuts: &[usize]) -> Vec<Msg> {
    let id = ExchangeId::from_u128(7);
    let mut msgs = vec![
        Msg::Request {
            info: Box::new(RequestInfo {
                id,
                started_at: UNIX_EPOCH,
                method: "POST".into(),
                path: "/v1/conversations".into(),
                query: None,
                client_addr: "127.0.0.1:1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                key_fingerprint: None,
                session: None,
                tags: vec![],
            }),
        },
        Msg::Response {
            id,
            seq: 1,
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            at_us: 10,
            upstream_version: None,
        },
    ];
    let mut seq = 2;
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&body.len())) {
        if to > from {
            msgs.push(Msg::ResponseBody {
                id,
                seq,
                at_us: 100 + u64::from(seq),
                bytes: Bytes::copy_from_slice(&body[from..to]),
            });
            seq += 1;
            from = to;
        }
    }
    msgs.push(Msg::End {
        id,
        seq,
        outcome: Outcome::Complete,
        error: None,
        timings: Timings {
            response_headers_us: Some(10),
            total_us: 1000,
            upstream_us: 900,
        },
        bytes_in: 0,
        bytes_out: body.len() as u64,
    });
    msgs
}

#[test]
fn derive_chunks() {
    let ev = |t: &str, d: &str| format!("event: {t}\ndata: {d}\n\n");
    let mut turn = ev(
        "conversation.response.started",
        r#"{"type":"conversation.response.started","conversation_id":"c"}"#,
    );
    for i in 0..40 {
        turn += &ev(
            "message.output.delta",
            &format!(
                r#"{{"type":"message.output.delta","output_index":0,"id":"m","content_index":0,"content":"{i} "}}"#
            ),
        );
    }
    turn += "data: not json\n\n: comment\n\ndata: [DONE]\n\n";
    let seeds: &[&[u8]] = &[turn.as_bytes(), b"data: x\n\ndata: y\n\n", b""];
    fuzz("derive_chunks", seeds, |input: &[u8]| {
        let mut rng = Rng::new(input.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        }));
        let ctx = DeriveCtx {
            // Small, so that the stream is derived frame by frame after its first bytes.
            capture_cap: [0, 16, 200][rng.below(3)],
            redactor: Redactor::default(),
            max_sse_event: 1 << 16,
        };
        let mut cuts: Vec<usize> = (0..rng.below(12))
            .map(|_| rng.below(input.len() + 1))
            .collect();
        cuts.sort_unstable();
        let msgs = messages(input, &cuts);

        let mut whole = ExchangeMsgs::new(msgs[0].exchange_id());
        for m in msgs.clone() {
            whole.push(m, &ctx);
        }
        let reference = derive(whole, &ctx);

        let mut x = ExchangeMsgs::new(msgs[0].exchange_id());
        let mut rows: Vec<EventRow> = Vec::new();
        for m in msgs {
            x.push(m, &ctx);
            let min = 1 + rng.below(5);
            if let Some(chunk) = x.take_event_chunk(min) {
                assert!(
                    chunk.len() >= min,
                    "a chunk of {} rows, {min} asked",
                    chunk.len()
                );
                rows.extend(chunk);
            }
        }
        assert_eq!(x.events_taken(), rows.len());
        let d = derive(x, &ctx);
        rows.extend(d.events.iter().cloned());
        assert_eq!(
            rows, reference.events,
            "chunked rows differ from the whole derivation"
        );
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.seq as usize, i, "seq has a gap or a repeat");
        }
        assert_eq!(d.exchange.event_count, reference.exchange.event_count);
        assert_eq!(d.exchange.event_count, Some(rows.len() as i32));
        assert_eq!(d.entries, reference.entries);
        assert_eq!(d.usage, reference.usage);
    });
}
