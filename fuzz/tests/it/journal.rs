//! The journal reader (`recorder::journal::parse_segment`) on arbitrary bytes and on valid
//! segments with damage: it never panics, believes no length field beyond the input, recovers
//! every record the damage did not touch, and what it recovers re-encodes to the same bytes.

use std::ops::Range;
use std::time::{Duration, UNIX_EPOCH};

use agentcap_proxy::record::{ExchangeId, HttpVersion, Msg, Outcome, RequestInfo, Timings};
use agentcap_proxy::recorder::body::Redactor;
use agentcap_proxy::recorder::journal::{
    Parsed, SEGMENT_HEADER_LEN, encode_record, parse_segment, segment_header,
};
use bytes::Bytes;

use crate::Rng;

/// One message of kind `k`, with a body of `len` bytes drawn from `rng`.
fn message(rng: &mut Rng, k: usize, len: usize) -> Msg {
    let id = ExchangeId::from_u128(u128::from(rng.next()) << 64 | u128::from(rng.next()));
    let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let seq = rng.below(1000) as u32;
    match k % 5 {
        0 => Msg::Request {
            info: Box::new(RequestInfo {
                id,
                started_at: UNIX_EPOCH + Duration::from_micros(rng.next() >> 12),
                method: "POST".into(),
                path: "/v1/conversations".into(),
                query: rng.one_in(2).then(|| "a=1".into()),
                client_addr: "127.0.0.1:1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                key_fingerprint: None,
                session: rng.one_in(2).then(|| "s".into()),
                tags: vec![("run".into(), String::from_utf8_lossy(&body).into_owned())],
            }),
        },
        1 => Msg::RequestBody {
            id,
            seq,
            bytes: Bytes::from(body),
        },
        2 => Msg::Response {
            id,
            seq,
            status: 200,
            headers: vec![("x-n".into(), len.to_string())],
            at_us: rng.next(),
            upstream_version: Some(HttpVersion::Http11),
        },
        3 => Msg::ResponseBody {
            id,
            seq,
            at_us: rng.next(),
            bytes: Bytes::from(body),
        },
        _ => Msg::End {
            id,
            seq,
            outcome: Outcome::Complete,
            error: rng.one_in(2).then(|| "e".into()),
            timings: Timings {
                response_headers_us: Some(rng.next()),
                total_us: rng.next(),
                upstream_us: rng.next(),
            },
            bytes_in: rng.next(),
            bytes_out: rng.next(),
        },
    }
}

fn encode(msg: &Msg) -> Vec<u8> {
    let mut v = Vec::new();
    encode_record(msg, &mut v, &Redactor::default());
    v
}

/// A valid segment of `n` records; returns it with each record's span.
fn segment(rng: &mut Rng, n: usize) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buf = segment_header().to_vec();
    let mut spans = Vec::new();
    for k in 0..n {
        let len = rng.below(200);
        let start = buf.len();
        buf.extend_from_slice(&encode(&message(rng, k, len)));
        spans.push(start..buf.len());
    }
    (buf, spans)
}

/// What must hold for any input.
fn check_shape(input: &[u8], p: &Parsed) {
    assert_eq!(p.msgs.len(), p.spans.len());
    assert!(p.valid_len <= input.len());
    // Spans and damage lie inside the input, in order, without overlapping.
    let mut regions: Vec<Range<usize>> = p.spans.iter().chain(&p.damage).cloned().collect();
    regions.extend(p.tail.clone());
    regions.sort_by_key(|r| r.start);
    let mut end = 0;
    for r in &regions {
        assert!(
            r.start >= end && r.start <= r.end && r.end <= input.len(),
            "{regions:?}"
        );
        end = r.end;
    }
    if let Some(t) = &p.tail {
        assert_eq!(t.end, input.len());
    }
    // Memory stays bounded by the input: no record is larger than what it was read from.
    let decoded: usize = p.spans.iter().map(|s| s.len()).sum();
    assert!(decoded <= input.len());
    // A record of the current format re-encodes to exactly the bytes it was read from.
    if p.version == 2 {
        for (m, s) in p.msgs.iter().zip(&p.spans) {
            assert_eq!(encode(m), &input[s.clone()], "record at {s:?}");
        }
    }
}

#[test]
fn journal_reader_on_arbitrary_bytes() {
    let mut rng = Rng::new(11);
    let (seg, _) = segment(&mut rng, 6);
    let header = segment_header();
    crate::fuzz(
        "journal",
        &[&seg, &header, &seg[SEGMENT_HEADER_LEN..]],
        |input| {
            if let Ok(p) = parse_segment(input) {
                check_shape(input, &p);
            }
        },
    );
}

/// The input picks a segment (number of records, seed) and a damage (kind, place, size, bytes);
/// every record entirely outside the damage must come back, at its (shifted) place.
#[test]
fn journal_damage_never_costs_an_intact_record() {
    crate::fuzz(
        "journal_damage",
        &[
            &[8, 1, 0, 40, 7, 3],
            &[20, 2, 1, 90, 30, 9],
            &[3, 3, 2, 0, 200, 1],
            &[30, 4, 3, 77, 1, 0],
        ],
        |input| {
            let at = |i: usize| usize::from(input.get(i).copied().unwrap_or(0));
            let mut rng = Rng::new(at(1) as u64 + 1);
            let (clean, spans) = segment(&mut rng, at(0) % 40);
            let mode = at(2) % 4;
            let start = (at(3) * 257 + at(6) * 31) % (clean.len() + 1);
            let len = (1 + at(4) * 3)
                .min(clean.len() - start)
                .max(usize::from(mode == 1));
            let fill: Vec<u8> = (0..len)
                .map(|i| {
                    input
                        .get(7 + i)
                        .copied()
                        .unwrap_or_else(|| rng.next() as u8)
                })
                .collect();
            let mut buf = clean.clone();
            // Where each untouched record is after the damage (None: the damage touched it).
            let moved: Vec<Option<Range<usize>>> = match mode {
                0 => {
                    buf[start..start + len].copy_from_slice(&fill);
                    spans
                        .iter()
                        .map(|s| (s.end <= start || s.start >= start + len).then(|| s.clone()))
                        .collect()
                }
                1 => {
                    buf.splice(start..start, fill.iter().copied());
                    spans
                        .iter()
                        .map(|s| {
                            if s.end <= start {
                                Some(s.clone())
                            } else if s.start >= start {
                                Some(s.start + len..s.end + len)
                            } else {
                                None
                            }
                        })
                        .collect()
                }
                2 => {
                    buf.drain(start..start + len);
                    spans
                        .iter()
                        .map(|s| {
                            if s.end <= start {
                                Some(s.clone())
                            } else if s.start >= start + len {
                                Some(s.start - len..s.end - len)
                            } else {
                                None
                            }
                        })
                        .collect()
                }
                _ => {
                    buf.truncate(start);
                    spans
                        .iter()
                        .map(|s| (s.end <= start).then(|| s.clone()))
                        .collect()
                }
            };
            let p = parse_segment(&buf).expect("a damaged segment is never an unknown version");
            check_shape(&buf, &p);
            for (i, want) in moved.iter().enumerate() {
                let Some(want) = want else { continue };
                assert!(
                    p.spans.contains(want),
                    "record {i} at {want:?} (mode {mode}, damage {start}+{len}) was not recovered: {:?}",
                    p.spans
                );
                assert_eq!(&buf[want.clone()], &clean[spans[i].clone()]);
            }
            // Nothing is reported damaged in an undamaged segment.
            if len == 0 || (mode == 3 && start == clean.len()) {
                assert!(p.damage.is_empty() && p.tail.is_none());
            }
        },
    );
}
