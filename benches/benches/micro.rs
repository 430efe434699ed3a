//! Criterion micro-benches of the recording path and the eval runner's arithmetic: the response tee per
//! frame (against the same body without it), SSE decoding (MB/s, small and large events, several
//! chunkings), entry assembly from deltas, deriving an exchange's rows (streamed and non-streamed), the
//! DuckDB batch write alone (`db/*`: rows already derived), the whole writer (event rows/s by batch size;
//! non-streamed exchanges/s), judge-reply parsing and metrics over 10k items. `cargo bench --bench micro [-- FILTER]` measures with criterion; run any other way (`cargo test
//! --workspace` runs it) it is a smoke run: every case once on small inputs, without criterion's argument
//! parsing, so libtest arguments (filters, `--test-threads`) pass harmlessly — a filter selects cases by
//! substring of `group/name`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use agentcap_evalkit::grade::{Grade, JudgeParse, parse_judge_reply};
use agentcap_evalkit::metrics::{ItemResult, Outcome as ItemOutcome, compare_paired, summarize};
use agentcap_proxy::exchange::Exchange;
use agentcap_proxy::tee::ResponseTee;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use agentcap_proxy::record::{ExchangeId, HttpVersion, Msg, Outcome, RequestInfo, Timings};
use agentcap_proxy::recorder::body::Redactor;
use agentcap_proxy::recorder::derive::{DeriveCtx, Derived, ExchangeMsgs, derive};
use agentcap_proxy::recorder::{
    DbAccess, DbTuning, RECORDER_DB_THREADS, Recorder, RecorderConfig, RecorderHandle, db,
    open_db_tuned, schema,
};
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

/// A recorder on a fresh DuckDB file in a temp dir, and a runtime to await its `flush` on; made on
/// a case's first run and kept for its later ones.
type BenchRecorder = (tempfile::TempDir, Recorder, tokio::runtime::Runtime);

fn bench_recorder(batch_rows: Option<usize>) -> BenchRecorder {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = RecorderConfig::new(dir.path().join("bench.duckdb"));
    if let Some(b) = batch_rows {
        cfg.batch_rows = b;
    }
    let rec = Recorder::open(cfg).expect("recorder opens");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (dir, rec, rt)
}

/// Times `iters` rounds of sending what `batch` builds (built before the clock starts) and waiting
/// until the recorder reports it committed.
fn timed_flushes(
    h: &RecorderHandle,
    rt: &tokio::runtime::Runtime,
    iters: u64,
    mut batch: impl FnMut() -> Vec<Msg>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let msgs = batch();
        let t = Instant::now();
        for m in msgs {
            h.send(m);
        }
        rt.block_on(h.flush()).expect("flush");
        total += t.elapsed();
    }
    total
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

/// The recorder's derivation settings (defaults: 1 MiB capture cap, no `--redact`).
fn derive_ctx() -> DeriveCtx {
    DeriveCtx {
        capture_cap: 1 << 20,
        redactor: Redactor::new(Vec::new()),
        max_sse_event: agentcap_wire::DEFAULT_MAX_EVENT_SIZE,
    }
}

/// Folds an exchange's messages into its copy, as the writer thread does, and derives its rows.
fn fold_and_derive(msgs: &[Msg], ctx: &DeriveCtx) -> Derived {
    let mut x = ExchangeMsgs::new(ExchangeId::now_v7());
    for m in msgs.iter().cloned() {
        x.push(m, ctx);
    }
    derive(x, ctx)
}

fn derive_rows(full: bool, out: &mut Vec<Case>) {
    let ctx = derive_ctx();
    let msgs = stream_exchange(if full { 500 } else { 20 }, 512);
    let rows = fold_and_derive(&msgs, &ctx).row_count();
    out.push(Case::pure(
        "derive",
        format!("stream_exchange/{rows}_rows"),
        Throughput::Elements(rows as u64),
        move || fold_and_derive(&msgs, &ctx),
    ));
    // A non-streamed conversation start: both bodies parsed, two entries, usage, a conversation.
    let ctx = derive_ctx();
    let msgs = sync_exchange();
    out.push(Case::pure(
        "derive",
        "sync_exchange",
        Throughput::Elements(1),
        move || fold_and_derive(&msgs, &ctx),
    ));
    // What a borrowed or lazy scan of the bodies could save at most: the same two bodies parsed into
    // `serde_json::Value`s (what derivation does) against only validated (`IgnoredAny`), the floor of
    // any scan that still tells valid JSON from invalid.
    let bodies: Vec<Bytes> = sync_exchange()
        .into_iter()
        .filter_map(|m| match m {
            Msg::RequestBody { bytes, .. } | Msg::ResponseBody { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(bodies.len(), 2, "a request body and a response body");
    let b = bodies.clone();
    out.push(Case::pure(
        "derive",
        "sync_bodies/parse_value",
        Throughput::Elements(1),
        move || parsed::<Value>(&b),
    ));
    out.push(Case::pure(
        "derive",
        "sync_bodies/validate_only",
        Throughput::Elements(1),
        move || parsed::<serde::de::IgnoredAny>(&bodies),
    ));
}

/// How many of `bodies` deserialize as a `T`.
fn parsed<T: serde::de::DeserializeOwned>(bodies: &[Bytes]) -> usize {
    bodies
        .iter()
        .filter(|b| serde_json::from_slice::<T>(b).is_ok())
        .count()
}

/// A fresh recording (schema applied, opened like the recorder's) and a function that writes one batch of
/// derived rows into it
/// through [`db::write_batch`], the DuckDB thread's call.
fn db_writer() -> (tempfile::TempDir, impl FnMut(&[&Derived])) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Opened as the recorder opens its instance.
    let conn = open_db_tuned(
        Some(&dir.path().join("bench.duckdb")),
        DbAccess::ReadWrite,
        &[],
        DbTuning {
            threads: Some(RECORDER_DB_THREADS),
            memory_limit: Some(RecorderConfig::default().db_memory_limit),
            checkpoint_threshold: Some(RecorderConfig::default().db_checkpoint_threshold),
        },
    )
    .expect("DuckDB opens");
    schema::migrate(&conn).expect("schema");
    let write = move |batch: &[&Derived]| {
        let counts = db::write_batch(&conn, batch, false).expect("batch written");
        assert_eq!(counts.exchanges, batch.len() as u64);
    };
    (dir, write)
}

/// Builds one exchange's messages.
type MakeMsgs = Box<dyn Fn() -> Vec<Msg>>;

/// The DuckDB stage alone: batches of rows derived before the clock starts, written in one transaction
/// (appenders, the conversation updates, COMMIT; their fold into `conversations`, every 2 s at most, is not
/// in it). Elements are rows of every table.
fn db_batches(full: bool, out: &mut Vec<Case>) {
    // 200 non-streamed exchanges: one flush interval (200 ms) at 1,000 req/s.
    let (sync_small, sync_n) = if full { (200, 2_000) } else { (5, 10) };
    let (stream_n, deltas) = if full { (20, 498) } else { (2, 18) };
    let shapes: [(&'static str, usize, MakeMsgs); 3] = [
        ("sync_exchanges", sync_small, Box::new(sync_exchange)),
        ("sync_exchanges", sync_n, Box::new(sync_exchange)),
        (
            "stream_exchanges",
            stream_n,
            Box::new(move || stream_exchange(deltas, 1460)),
        ),
    ];
    for (name, n, make) in shapes {
        let ctx = derive_ctx();
        let per_exchange = fold_and_derive(&make(), &ctx).row_count();
        let rows = (n * per_exchange) as u64;
        let mut state = None;
        let mut case = Case::new(
            "db",
            format!("write_batch/{name}_{n}"),
            Throughput::Elements(rows),
            move |iters| {
                let (_, write) = state.get_or_insert_with(db_writer);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let derived: Vec<Derived> =
                        (0..n).map(|_| fold_and_derive(&make(), &ctx)).collect();
                    let batch: Vec<&Derived> = derived.iter().collect();
                    let t = Instant::now();
                    write(&batch);
                    total += t.elapsed();
                }
                total
            },
        );
        case.slow = true;
        out.push(case);
    }
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
        let mut state: Option<BenchRecorder> = None;
        let mut case = Case::new(
            "writer",
            format!("event_rows/batch_{batch_rows}"),
            Throughput::Elements(events_per_iter),
            move |iters| {
                let (_, rec, rt) = state.get_or_insert_with(|| bench_recorder(Some(batch_rows)));
                let h = rec.handle();
                let before = h.stats().sse_events_written;
                let total = timed_flushes(&h, rt, iters, || {
                    (0..exchanges)
                        .flat_map(|_| stream_exchange(deltas, 1460))
                        .collect()
                });
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

/// A response body that yields prepared frames (what the upstream connection would hand the tee).
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn request_msg(id: ExchangeId) -> Msg {
    Msg::Request {
        info: Box::new(RequestInfo {
            id,
            started_at: SystemTime::now(),
            method: "POST".into(),
            path: "/v1/conversations".into(),
            query: None,
            client_addr: "127.0.0.1:40000".into(),
            headers: Vec::new(),
            key_fingerprint: None,
            session: None,
            tags: Vec::new(),
        }),
    }
}

/// The hot path's per-frame cost: a streamed response of one SSE event per frame read through the
/// response tee (clock, counters, a `Bytes` clone and a send to a real recorder), and the same frames read
/// without it. Elements are frames; the difference of the two is what the tee adds per event.
fn tee(full: bool, out: &mut Vec<Case>) {
    let events: Vec<Bytes> = turn_events(if full { 498 } else { 20 })
        .iter()
        .map(encode_conversation_event)
        .collect();
    let n = Throughput::Elements(events.len() as u64);
    for teed in [false, true] {
        let events = events.clone();
        let mut state: Option<BenchRecorder> = None;
        out.push(Case::new(
            "tee",
            if teed {
                "response_frames"
            } else {
                "plain_frames"
            },
            n.clone(),
            move |iters| {
                let (_, rec, rt) = state.get_or_insert_with(|| bench_recorder(None));
                let h = rec.handle();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let body = Frames(events.iter().cloned().collect());
                    let id = ExchangeId::now_v7();
                    let t = Instant::now();
                    let frames = rt.block_on(async {
                        let mut k = 0usize;
                        if teed {
                            h.send(request_msg(id));
                            let ex = Arc::new(Exchange::new(id, Instant::now(), h.clone(), false));
                            let mut b = ResponseTee::new(body, ex, Duration::from_secs(60), None);
                            while let Some(f) = b.frame().await {
                                black_box(f.expect("frame"));
                                k += 1;
                            }
                        } else {
                            let mut b = body;
                            while let Some(f) = b.frame().await {
                                black_box(f.expect("frame"));
                                k += 1;
                            }
                        }
                        k
                    });
                    total += t.elapsed();
                    assert_eq!(frames, events.len());
                }
                if teed {
                    rt.block_on(h.flush()).expect("flush");
                    assert_eq!(h.stats().records_dropped, 0);
                }
                total
            },
        ));
    }
}

/// The messages of one non-streamed conversation start (request, JSON response, end).
fn sync_exchange() -> Vec<Msg> {
    let mut m = stream_exchange(0, 1 << 20);
    let id = match &m[0] {
        Msg::Request { info } => info.id,
        _ => unreachable!("stream_exchange starts with the request"),
    };
    let body = Bytes::from(
        json!({"object": "conversation.response", "conversation_id": format!("conv_{}", id.simple()),
            "outputs": [{"object": "entry", "type": "message.output", "id": "msg_0", "role": "assistant",
            "content": "A short answer.", "model": "mistral-medium-latest",
            "created_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:00:01Z"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}})
        .to_string(),
    );
    m.truncate(2);
    m.push(Msg::Response {
        id,
        seq: 2,
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        at_us: 300,
        upstream_version: Some(HttpVersion::Http11),
    });
    let len = body.len() as u64;
    m.push(Msg::ResponseBody {
        id,
        seq: 3,
        at_us: 320,
        bytes: body,
    });
    m.push(Msg::End {
        id,
        seq: 4,
        outcome: Outcome::Complete,
        error: None,
        timings: Timings {
            response_headers_us: Some(300),
            total_us: 330,
            upstream_us: 320,
        },
        bytes_in: 64,
        bytes_out: len,
    });
    m
}

/// The writer end to end for non-streamed exchanges (each: one `exchanges` row, two entries, a conversation
/// upsert, a usage row). Elements are exchanges.
fn writer_exchanges(full: bool, out: &mut Vec<Case>) {
    let per_iter = if full { 2_000 } else { 20 };
    let mut state: Option<BenchRecorder> = None;
    let mut case = Case::new(
        "writer",
        format!("sync_exchanges/{per_iter}"),
        Throughput::Elements(per_iter as u64),
        move |iters| {
            let (_, rec, rt) = state.get_or_insert_with(|| bench_recorder(None));
            let h = rec.handle();
            let before = h.stats().exchanges_written;
            let total = timed_flushes(&h, rt, iters, || {
                (0..per_iter).flat_map(|_| sync_exchange()).collect()
            });
            let stats = h.stats();
            assert_eq!(stats.records_dropped, 0);
            assert_eq!(
                stats.exchanges_written - before,
                iters * per_iter as u64,
                "{stats:?}"
            );
            total
        },
    );
    case.slow = true;
    out.push(case);
}

/// Judge replies as they come (mostly bare letters, some words, some unreadable), parsed both ways.
fn judge(full: bool, out: &mut Vec<Case>) {
    let kinds = [
        "A",
        " B\n",
        "C",
        "CORRECT",
        "NOT_ATTEMPTED",
        "Based on the gold target, the answer is A",
        "",
        "a",
    ];
    let n = if full { 10_000 } else { 100 };
    let replies: Vec<String> = (0..n).map(|i| kinds[i % kinds.len()].to_string()).collect();
    for (name, mode) in [
        ("strict", JudgeParse::Strict),
        ("simple_evals_compat", JudgeParse::SimpleEvalsCompat),
    ] {
        let replies = replies.clone();
        out.push(Case::pure(
            "judge",
            format!("parse_{name}/{n}"),
            Throughput::Elements(n as u64),
            move || {
                replies
                    .iter()
                    .filter(|r| parse_judge_reply(r, mode).is_some())
                    .count()
            },
        ));
    }
}

/// Per-config summary (Wilson CIs, bootstrap F CI, latency percentiles) and the paired comparison
/// (paired bootstrap, McNemar) over `n` items.
fn metrics(full: bool, out: &mut Vec<Case>) {
    let n = if full { 10_000 } else { 200 };
    let items = |shift: usize| -> Vec<ItemResult> {
        (0..n)
            .map(|i| ItemResult {
                item_id: format!("q{i}"),
                outcome: match (i * 7 + shift) % 10 {
                    0..=3 => ItemOutcome::Graded(Grade::Correct),
                    4..=7 => ItemOutcome::Graded(Grade::Incorrect),
                    8 => ItemOutcome::Graded(Grade::NotAttempted),
                    _ => ItemOutcome::Error,
                },
                topic: Some(format!("topic{}", i % 10)),
                answer_type: Some(format!("type{}", i % 4)),
                ttft_ms: Some((i % 97) as f64),
                total_ms: Some((i % 997) as f64),
                prompt_tokens: 20,
                completion_tokens: 10,
                ..ItemResult::default()
            })
            .collect()
    };
    let (a, b) = (items(0), items(3));
    let el = Throughput::Elements(n as u64);
    let a2 = a.clone();
    out.push(Case::pure(
        "metrics",
        format!("summarize/{n}"),
        el.clone(),
        move || summarize(&a2, 7),
    ));
    out.push(Case::pure(
        "metrics",
        format!("compare_paired/{n}"),
        el,
        move || compare_paired("base", &a, "cand", &b, 7),
    ));
}

fn cases(full: bool) -> Vec<Case> {
    let mut v = Vec::new();
    tee(full, &mut v);
    sse_decode(full, &mut v);
    assemble(full, &mut v);
    derive_rows(full, &mut v);
    db_batches(full, &mut v);
    writer(full, &mut v);
    writer_exchanges(full, &mut v);
    judge(full, &mut v);
    metrics(full, &mut v);
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
