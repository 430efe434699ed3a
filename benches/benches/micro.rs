//! Criterion micro-benches of the recording path: SSE decoding (MB/s, small and large events, several
//! chunkings), entry assembly from deltas, deriving an exchange's rows, and the DuckDB writer (event rows/s by
//! batch size). `cargo bench --bench micro [-- FILTER]` measures with criterion; run any other way (`cargo test
//! --workspace` runs it) it is a smoke run: every case once on small inputs, without criterion's argument
//! parsing, so libtest arguments (filters, `--test-threads`) pass harmlessly — a filter selects cases by
//! substring of `group/name`.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use agentcap_proxy::record::{ExchangeId, HttpVersion, Msg, Outcome, RequestInfo, Timings};
use agentcap_proxy::recorder::body::Redactor;
use agentcap_proxy::recorder::derive::{DeriveCtx, ExchangeMsgs, derive};
use agentcap_proxy::recorder::{Recorder, RecorderConfig};
use agentcap_wire::{ConversationEvent, EntryAssembler, SseDecoder, encode_conversation_event};
use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use serde_json::{Value, json};

/// A streamed turn: started, `deltas` small `message.output.delta` events (a word each), done.
fn turn_events(deltas: usize) -> Vec<Value> {
    let mut v = vec![
        json!({"type": "conversation.response.started", "conversation_id": "conv_0000000000000000000000000000"}),
    ];
    for i in 0..deltas {
        v.push(json!({
            "type": "message.output.delta", "output_index": 0, "id": "msg_0000000000000000000000000000",
            "content_index": 0, "model": "mistral-medium-latest", "agent_id": null, "role": "assistant",
            "content": format!(" word{i}")
        }));
    }
    v.push(json!({"type": "conversation.response.done", "usage": {"prompt_tokens": 12, "completion_tokens": deltas, "total_tokens": 12 + deltas}}));
    v
}

/// `count` events of about `size` bytes of data each (one long delta string).
fn large_events(count: usize, size: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({
                "type": "message.output.delta", "output_index": 0, "id": "msg_1", "content_index": 0,
                "content": format!("{i}{}", "x".repeat(size))
            })
        })
        .collect()
}

fn wire(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| encode_conversation_event(e).to_vec())
        .collect()
}

/// One benchmark: `run(iters)` performs `iters` iterations and returns the time they took (setup excluded).
struct Case {
    group: &'static str,
    name: String,
    throughput: Throughput,
    /// Few long iterations (the writer): flat sampling, 10 samples.
    slow: bool,
    run: Box<dyn FnMut(u64) -> Duration>,
}

impl Case {
    fn new(
        group: &'static str,
        name: impl Into<String>,
        throughput: Throughput,
        run: impl FnMut(u64) -> Duration + 'static,
    ) -> Case {
        Case {
            group,
            name: name.into(),
            throughput,
            slow: false,
            run: Box::new(run),
        }
    }

    /// A case whose iterations are independent pure computations, timed as a whole.
    fn pure<T>(
        group: &'static str,
        name: impl Into<String>,
        throughput: Throughput,
        mut f: impl FnMut() -> T + 'static,
    ) -> Case {
        Case::new(group, name, throughput, move |iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            t.elapsed()
        })
    }
}

fn sse_decode(full: bool, out: &mut Vec<Case>) {
    let inputs = [
        ("small", wire(&turn_events(if full { 4000 } else { 100 }))),
        (
            "large",
            wire(&large_events(if full { 16 } else { 2 }, 64 * 1024)),
        ),
    ];
    for (kind, bytes) in inputs {
        for chunk in [16usize, 256, 1460, 16 * 1024, usize::MAX] {
            let label = if chunk == usize::MAX {
                "whole".to_owned()
            } else {
                format!("{chunk}B")
            };
            let bytes = bytes.clone();
            let size = chunk.min(bytes.len());
            out.push(Case::pure(
                "sse_decode",
                format!("{kind}/{label}"),
                Throughput::Bytes(bytes.len() as u64),
                move || {
                    let mut d = SseDecoder::new();
                    let mut n = 0;
                    for part in bytes.chunks(size) {
                        n += d.push(part).map(|v| v.len()).unwrap_or(0);
                    }
                    n
                },
            ));
        }
    }
}

fn assemble(full: bool, out: &mut Vec<Case>) {
    let values = turn_events(if full { 1000 } else { 50 });
    let events: Vec<ConversationEvent> = values
        .iter()
        .map(|v| ConversationEvent::from_value(v.clone()).expect("valid event"))
        .collect();
    let sse = SseDecoder::new().push(&wire(&values)).expect("decodes");
    let n = Throughput::Elements(events.len() as u64);
    out.push(Case::pure(
        "assemble",
        "from_events",
        n.clone(),
        move || {
            let mut a = EntryAssembler::new();
            for e in &events {
                a.push(e);
            }
            a.finish()
        },
    ));
    out.push(Case::pure("assemble", "parse_and_assemble", n, move || {
        let mut a = EntryAssembler::new();
        for e in &sse {
            if let Ok(ev) = ConversationEvent::from_sse(e) {
                a.push(&ev);
            }
        }
        a.finish()
    }));
}

/// The messages the hot path sends for one streamed conversation start with `deltas` delta events,
/// cut into frames of about `frame` bytes.
fn stream_exchange(deltas: usize, frame: usize) -> Vec<Msg> {
    let id = ExchangeId::now_v7();
    let info = RequestInfo {
        id,
        started_at: SystemTime::now(),
        method: "POST".into(),
        path: "/v1/conversations".into(),
        query: None,
        client_addr: "127.0.0.1:40000".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        key_fingerprint: Some("0123456789ab".into()),
        session: None,
        tags: Vec::new(),
    };
    let mut msgs = vec![
        Msg::Request {
            info: Box::new(info),
        },
        Msg::RequestBody {
            id,
            seq: 1,
            bytes: Bytes::from(
                json!({"model": "mistral-medium-latest", "inputs": "hello", "stream": true})
                    .to_string(),
            ),
        },
        Msg::Response {
            id,
            seq: 2,
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            at_us: 300,
            upstream_version: Some(HttpVersion::Http11),
        },
    ];
    let body = wire(&turn_events(deltas));
    let mut seq = 3;
    let mut at = 300;
    for part in body.chunks(frame) {
        at += 20;
        msgs.push(Msg::ResponseBody {
            id,
            seq,
            at_us: at,
            bytes: Bytes::copy_from_slice(part),
        });
        seq += 1;
    }
    msgs.push(Msg::End {
        id,
        seq,
        outcome: Outcome::Complete,
        error: None,
        timings: Timings {
            response_headers_us: Some(300),
            total_us: at + 10,
            upstream_us: at,
        },
        bytes_in: 64,
        bytes_out: body.len() as u64,
    });
    msgs
}

fn derive_rows(full: bool, out: &mut Vec<Case>) {
    let mut x = ExchangeMsgs::new(ExchangeId::now_v7());
    for m in stream_exchange(if full { 500 } else { 20 }, 512) {
        x.push(m);
    }
    let ctx = DeriveCtx {
        capture_cap: 1 << 20,
        redactor: Redactor::new(Vec::new()),
        max_sse_event: agentcap_wire::DEFAULT_MAX_EVENT_SIZE,
    };
    let rows = derive(&x, &ctx).row_count();
    out.push(Case::pure(
        "derive",
        format!("stream_exchange/{rows}_rows"),
        Throughput::Elements(rows as u64),
        move || derive(&x, &ctx),
    ));
}

/// The writer end to end: `exchanges × events` through a recorder (journal with group commit, derivation,
/// DuckDB appenders), timed until `flush` says it is committed. Elements are `sse_events` rows.
fn writer(full: bool, out: &mut Vec<Case>) {
    let (exchanges, deltas) = if full { (40, 498) } else { (2, 48) };
    let events_per_iter = (exchanges * (deltas + 2)) as u64;
    let sizes: &[usize] = if full {
        &[1_000, 10_000, 50_000]
    } else {
        &[1_000]
    };
    for &batch_rows in sizes {
        let mut state: Option<(tempfile::TempDir, Recorder, tokio::runtime::Runtime)> = None;
        let mut case = Case::new(
            "writer",
            format!("event_rows/batch_{batch_rows}"),
            Throughput::Elements(events_per_iter),
            move |iters| {
                let (_, rec, rt) = state.get_or_insert_with(|| {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let rec = Recorder::open(RecorderConfig {
                        batch_rows,
                        ..RecorderConfig::new(dir.path().join("bench.duckdb"))
                    })
                    .expect("recorder opens");
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    (dir, rec, rt)
                });
                let h = rec.handle();
                let before = h.stats().sse_events_written;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let msgs: Vec<Vec<Msg>> = (0..exchanges)
                        .map(|_| stream_exchange(deltas, 1460))
                        .collect();
                    let t = Instant::now();
                    for m in msgs.into_iter().flatten() {
                        h.send(m);
                    }
                    rt.block_on(h.flush()).expect("flush");
                    total += t.elapsed();
                }
                let stats = h.stats();
                assert_eq!(stats.records_dropped, 0);
                assert_eq!(
                    stats.sse_events_written - before,
                    iters * events_per_iter,
                    "{stats:?}"
                );
                total
            },
        );
        case.slow = true;
        out.push(case);
    }
}

fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    sse_decode(full, &mut v);
    assemble(full, &mut v);
    derive_rows(full, &mut v);
    writer(full, &mut v);
    v
}

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        let mut c = Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        let mut all = cases(true);
        let groups: Vec<&'static str> = {
            let mut g: Vec<&'static str> = all.iter().map(|c| c.group).collect();
            g.dedup();
            g
        };
        for group in groups {
            let mut g = c.benchmark_group(group);
            for case in all.iter_mut().filter(|c| c.group == group) {
                g.throughput(case.throughput.clone());
                if case.slow {
                    g.sampling_mode(SamplingMode::Flat).sample_size(10);
                }
                let run = &mut case.run;
                g.bench_function(case.name.as_str(), |b| b.iter_custom(&mut *run));
            }
            g.finish();
        }
        c.final_summary();
    } else {
        // Smoke run: positional arguments are substring filters; flags (libtest's) are ignored.
        let filters: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let mut ran = 0;
        for mut case in cases(false) {
            let id = format!("{}/{}", case.group, case.name);
            if !filters.is_empty() && !filters.iter().any(|f| id.contains(f.as_str())) {
                continue;
            }
            (case.run)(1);
            println!("smoke {id} ... ok");
            ran += 1;
        }
        println!("micro benches (smoke run): {ran} cases ran once, ok");
    }
}
