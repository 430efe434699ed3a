//! The big-recording generator the benches and examples share: conversations of ten turns sent through the real
//! recorder as the proxy's hot path sends them (see `pages.rs` for the shape of the recording). Included with
//! `#[path]` by `benches/pages.rs` and `examples/export_sizes.rs` (in a subdirectory, so cargo does not take it for a
//! bench of its own).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use agentcap_proxy::record::{HttpVersion, Msg, Outcome, RequestInfo, Timings};
use agentcap_proxy::recorder::{Recorder, RecorderConfig, RecorderHandle};
use bytes::Bytes;
use serde_json::json;

/// Turns per conversation.
pub const TURNS: u64 = 10;
/// Exchanges per flush.
const BATCH: u64 = 1_000;
/// Deltas per streamed turn (plus `started` and `done`: fifteen events).
const DELTAS: u64 = 13;
/// Agents the conversations are spread over (the ninth "agent" is a bare model).
const AGENTS: u64 = 8;

/// A `u64` from the environment (`_` separators allowed), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Where the recording is built and kept: `AGENTCAP_UI_BENCH_DIR`, or `<target dir>/ui-bench`.
pub fn bench_dir() -> PathBuf {
    if let Ok(d) = std::env::var("AGENTCAP_UI_BENCH_DIR") {
        return PathBuf::from(d);
    }
    // The test/bench binary sits in <target>/<profile>/deps.
    let exe = std::env::current_exe().expect("own path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    target.join("ui-bench")
}

/// Conversation `c`'s id.
pub fn conv_id(c: u64) -> String {
    format!("conv_{c:032x}")
}

/// Conversation `c`'s agent (`None`: a bare model).
pub fn agent_id(c: u64) -> Option<String> {
    let a = c % (AGENTS + 1);
    (a < AGENTS).then(|| format!("ag_{a:030x}"))
}

/// Whether conversation `c`'s turns are streamed (two in three).
pub fn streamed(c: u64) -> bool {
    !c.is_multiple_of(3)
}

/// Sends the messages of exchange `i` (turn `t` of conversation `c`).
pub fn send_exchange(h: &RecorderHandle, base: SystemTime, i: u64) {
    let (c, t) = (i / TURNS, i % TURNS);
    let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i));
    let conv = conv_id(c);
    let stream = streamed(c);
    let agent = agent_id(c);
    let path = if t == 0 {
        "/v1/conversations".to_string()
    } else {
        format!("/v1/conversations/{conv}")
    };
    let mut body = json!({"inputs": format!("Question {t} of conversation {c}: what happened in year {}?", 1900 + i % 120), "stream": stream});
    if t == 0 {
        match &agent {
            Some(a) => body["agent_id"] = json!(a),
            None => body["model"] = json!("mistral-medium-latest"),
        }
    }
    let body = Bytes::from(body.to_string());
    let session = format!("sess-{}", c % 100);
    h.send(Msg::Request {
        info: Box::new(RequestInfo {
            id,
            started_at: base + Duration::from_secs(2 * i),
            method: "POST".into(),
            path,
            query: None,
            client_addr: "127.0.0.1:50000".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), body.len().to_string()),
                ("x-agentcap-session".into(), session.clone()),
            ],
            key_fingerprint: Some(format!("{:012x}", c % 7)),
            session: Some(session),
            tags: vec![("suite".into(), "bench".into())],
        }),
    });
    let bytes_in = body.len() as u64;
    h.send(Msg::RequestBody {
        id,
        seq: 1,
        bytes: body,
    });
    let ctype = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    h.send(Msg::Response {
        id,
        seq: 2,
        status: 200,
        headers: vec![
            ("content-type".into(), ctype.into()),
            ("x-agentcap-upstream".into(), "simulated".into()),
        ],
        at_us: 9_000 + i % 1_000,
        upstream_version: Some(HttpVersion::Http11),
    });
    let msg = format!("msg_{i:032x}");
    let model = "mistral-medium-latest";
    let agent_json = agent.as_deref().map_or(json!(null), |a| json!(a));
    let words = [
        "The",
        " answer",
        " is",
        " in",
        " the",
        " record",
        " of",
        " year",
        " ",
        "19",
        "42",
        ",",
        " sourced.",
    ];
    let mut seq = 3;
    let mut at = 10_000 + i % 1_000;
    let mut bytes_out = 0u64;
    let mut frame = |h: &RecorderHandle, seq: &mut u32, at: u64, bytes: String| {
        bytes_out += bytes.len() as u64;
        h.send(Msg::ResponseBody {
            id,
            seq: *seq,
            at_us: at,
            bytes: Bytes::from(bytes),
        });
        *seq += 1;
    };
    if stream {
        let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
        frame(
            h,
            &mut seq,
            at,
            ev(
                "conversation.response.started",
                json!({"type": "conversation.response.started", "conversation_id": conv}),
            ),
        );
        for (k, w) in words.iter().enumerate().take(DELTAS as usize) {
            at += 20_000 + (i * 7 + k as u64) % 5_000;
            frame(
                h,
                &mut seq,
                at,
                ev(
                    "message.output.delta",
                    json!({"type": "message.output.delta", "output_index": 0, "id": msg, "content_index": 0,
                    "model": model, "agent_id": agent_json, "role": "assistant", "content": w}),
                ),
            );
        }
        at += 5_000;
        frame(
            h,
            &mut seq,
            at,
            ev(
                "conversation.response.done",
                json!({"type": "conversation.response.done",
                "usage": {"prompt_tokens": 20 + t * 30, "completion_tokens": 13, "total_tokens": 33 + t * 30}}),
            ),
        );
    } else {
        at += 250_000 + i % 50_000;
        let text: String = words.concat();
        frame(
            h,
            &mut seq,
            at,
            json!({"object": "conversation.response", "conversation_id": conv,
                "outputs": [{"type": "message.output", "object": "entry", "id": msg, "agent_id": agent_json, "model": model,
                             "role": "assistant", "content": text, "created_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:00:01Z"}],
                "usage": {"prompt_tokens": 20 + t * 30, "completion_tokens": 13, "total_tokens": 33 + t * 30}})
            .to_string(),
        );
    }
    h.send(Msg::End {
        id,
        seq,
        outcome: Outcome::Complete,
        error: None,
        timings: Timings {
            response_headers_us: Some(9_000 + i % 1_000),
            total_us: at + 300,
            upstream_us: at,
        },
        bytes_in,
        bytes_out,
    });
}

/// Builds the recording of `n` exchanges through the recorder.
pub async fn generate(path: &Path, n: u64) {
    let rec = Recorder::open(RecorderConfig::new(path)).expect("recorder opens");
    let h = rec.handle();
    let base = SystemTime::now() - Duration::from_secs(2 * n + 3_600);
    let t0 = Instant::now();
    let mut pending: Option<tokio::task::JoinHandle<()>> = None;
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        for k in i..end {
            send_exchange(&h, base, k);
        }
        i = end;
        if let Some(p) = pending.take() {
            p.await.expect("flush task");
        }
        let fh = h.clone();
        pending = Some(tokio::spawn(async move {
            fh.flush().await.expect("the recorder commits");
        }));
        if i.is_multiple_of(BATCH * 50) {
            let s = t0.elapsed().as_secs_f64();
            eprintln!(
                "  {i} exchanges in {s:.0} s ({:.0}/s)",
                i as f64 / s.max(1e-9)
            );
        }
    }
    if let Some(p) = pending.take() {
        p.await.expect("flush task");
    }
    let stats = tokio::task::spawn_blocking(move || rec.shutdown())
        .await
        .expect("shutdown thread")
        .expect("recorder stops");
    eprintln!(
        "generated {n} exchanges in {:.0} s: {}",
        t0.elapsed().as_secs_f64(),
        serde_json::to_string(&stats).unwrap_or_default()
    );
}
