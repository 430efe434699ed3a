//! Server time of the UI's pages over a big recording: the exchanges page with filters, a conversation page, an
//! exchange page (SSE timeline) and an eval run page. A bench binary printing medians, not a test.
//!
//! ```text
//! cargo bench -p agentcap-ui --bench pages                                  # release: the figures to quote
//! AGENTCAP_UI_BENCH_EXCHANGES=100000 cargo bench -p agentcap-ui --bench pages
//! cargo test -p agentcap-ui --bench pages                                   # the same in a debug build
//! ```
//!
//! Environment: `AGENTCAP_UI_BENCH_EXCHANGES` (default 1,000,000; a multiple of 10), `AGENTCAP_UI_BENCH_DIR`
//! (where the recording is built and kept for the next run; default `<target dir>/ui-bench`),
//! `AGENTCAP_UI_BENCH_ITERS` (timed renders per page, default 15), `AGENTCAP_UI_BENCH_PAGES` (comma-separated
//! label prefixes: only those pages), `AGENTCAP_UI_BENCH_TRACE` (set: print each statement's time).
//!
//! The generator goes through the real recorder: it opens `Recorder` on the file and sends, per exchange, the
//! messages the proxy's hot path sends (`Request`, `RequestBody`, `Response`, one `ResponseBody` per frame,
//! `End`), so the journal, the derivation (SSE decoding, entry assembly, conversations, usage) and the DuckDB
//! batches all run as they do behind a proxy. The recording is conversations of ten turns (a start, then nine
//! appends) among eight agents and a bare model, a hundred sessions, one exchange every two seconds of wall
//! time. Two conversations in three are streamed: fifteen events a turn (started, thirteen deltas, done), so
//! the recording holds ten SSE events per exchange on average (10,000,000 for 1,000,000 exchanges). The third
//! gets JSON responses. Sending paces itself on the recorder: at most two batches of 1,000 exchanges are
//! outstanding (a flush per batch), so nothing spills. Then a real eval run (mini-qa through two configs on
//! the twin, via the embedded proxy) is added to the same file for the run page.
//!
//! Each page is rendered once to warm up and then `ITERS` times by calling `agentcap_ui::handle` directly on a
//! read-only connection (`agentcap ui --db`): server time, without the network.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentcap_ui::{ConnDb, Db, UiConfig, UiState};
use http::{Request, StatusCode};
use http_body_util::BodyExt;

#[path = "support/recording.rs"]
mod recording;

use recording::{TURNS, agent_id, bench_dir, conv_id, env_u64, generate, streamed};

const CONFIGS: &str = r#"
[[config]]
name = "closed"
model = "mistral-medium-latest"

[[config]]
name = "web"
agent = { model = "mistral-medium-latest", tools = ["web_search"] }
"#;

/// Adds a real eval run to the file (the embedded proxy records its exchanges there too).
async fn add_run(path: &Path) {
    let twin = agentcap_sim::start(agentcap_sim::SimConfig::default())
        .await
        .expect("twin starts");
    let configs = agentcap_evalkit::ConfigFile::parse("bench", CONFIGS).expect("configs");
    let mut spec = agentcap_evalkit::RunSpec::new("mini-qa", configs, CONFIGS, twin.url(), path);
    spec.simulated_upstream = true;
    let out = agentcap_evalkit::run(spec, agentcap_evalkit::Stop::new())
        .await
        .expect("the eval run succeeds");
    eprintln!("eval run {} added", out.report.run.run_id);
    drop(out);
    twin.shutdown().await;
}

/// A [`Db`] that prints each statement's time (`AGENTCAP_UI_BENCH_TRACE=1`: which query a slow page waits on).
struct Traced(ConnDb);

impl Db for Traced {
    fn query(
        &self,
        sql: &str,
        params: &[agentcap_ui::Param],
    ) -> Result<agentcap_proxy::recorder::QueryResult, agentcap_ui::UiError> {
        let t = Instant::now();
        let r = self.0.query(sql, params);
        let head: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!(
            "    {:>8.1} ms  {}",
            t.elapsed().as_secs_f64() * 1e3,
            head.chars().take(150).collect::<String>()
        );
        r
    }

    fn with_connection(
        &self,
        f: &mut dyn FnMut(&duckdb::Connection),
    ) -> Option<Result<(), agentcap_ui::UiError>> {
        let t = Instant::now();
        let r = self.0.with_connection(f);
        eprintln!(
            "    {:>8.1} ms  (eval history on a lent connection)",
            t.elapsed().as_secs_f64() * 1e3
        );
        r
    }
}

fn one(db: &dyn Db, sql: &str) -> String {
    let r = db.query(sql, &[]).expect("query");
    r.rows
        .first()
        .and_then(|r| r.first())
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .expect("a value")
}

async fn render(st: &UiState, path: &str) -> (StatusCode, usize) {
    let req = Request::builder()
        .uri(path)
        .header("host", "127.0.0.1:8790")
        .body(())
        .expect("request");
    let resp = agentcap_ui::handle(st, req).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("AGENTCAP_UI_BENCH_EXCHANGES", 1_000_000).max(TURNS) / TURNS * TURNS;
    let iters = env_u64("AGENTCAP_UI_BENCH_ITERS", 15).max(1);
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join(format!("ui-{n}.duckdb"));
    let done = dir.join(format!("ui-{n}.complete"));
    if !done.exists() {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("duckdb.wal"));
        eprintln!("building {} ({n} exchanges)", path.display());
        generate(&path, n).await;
        add_run(&path).await;
        std::fs::write(&done, b"").expect("marker");
    } else {
        eprintln!("reusing {}", path.display());
    }
    let db = Arc::new(ConnDb::open_read_only(&path).expect("opens read-only"));
    let trace = std::env::var_os("AGENTCAP_UI_BENCH_TRACE").is_some();
    let source: Arc<dyn Db> = if trace {
        Arc::new(Traced(
            ConnDb::open_read_only(&path).expect("opens read-only"),
        ))
    } else {
        db.clone()
    };
    let st = UiState::new(source, UiConfig::default()).expect("ui state");
    eprintln!(
        "recording: {} exchanges, {} SSE events, {} entries, {} conversations",
        one(db.as_ref(), "SELECT count(*) FROM exchanges"),
        one(db.as_ref(), "SELECT count(*) FROM sse_events"),
        one(db.as_ref(), "SELECT count(*) FROM entries"),
        one(db.as_ref(), "SELECT count(*) FROM conversations"),
    );
    let run = one(
        db.as_ref(),
        "SELECT run_id FROM eval_runs ORDER BY created_at DESC LIMIT 1",
    );
    let mid = n / TURNS / 2;
    let mid = if streamed(mid) { mid } else { mid + 1 };
    let stream_ex = uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(mid * TURNS + 5),
    );
    // The cursor the list's "older" link of the page halfway down would carry.
    let deep = {
        let r = db
            .query(
                &format!(
                    "SELECT started_at, id FROM exchanges ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET {}",
                    n / 2
                ),
                &[],
            )
            .expect("cursor query");
        let text = |k: usize| r.rows[0][k].as_str().unwrap_or_default().to_string();
        format!("{},{}", text(0), text(1))
    };
    let pages = [
        ("exchanges, no filter", "/".to_string()),
        ("exchanges, stream=yes", "/?stream=yes".to_string()),
        (
            "exchanges, agent + stream filter",
            format!("/?agent={}&stream=yes", agent_id(1).unwrap_or_default()),
        ),
        ("exchanges, session filter", "/?session=sess-7".to_string()),
        (
            "exchanges, status=500 (no match)",
            "/?status=500".to_string(),
        ),
        ("exchanges, keyset page halfway", format!("/?before={deep}")),
        (
            "conversation (10 turns)",
            format!("/conversations/{}", conv_id(mid)),
        ),
        (
            "exchange (15-event timeline)",
            format!("/exchanges/{stream_ex}"),
        ),
        ("eval run", format!("/runs/{run}")),
        ("conversations list", "/conversations".to_string()),
        ("usage by hour", "/usage".to_string()),
    ];
    println!(
        "{n} exchanges; {iters} renders per page after one warm-up; server time (agentcap_ui::handle)"
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>9}",
        "page", "median", "min", "max", "bytes"
    );
    let only = std::env::var("AGENTCAP_UI_BENCH_PAGES").unwrap_or_default();
    for (label, path) in pages {
        if !only.is_empty() && !only.split(',').any(|p| label.starts_with(p)) {
            continue;
        }
        if trace {
            eprintln!("{label}: {path}");
        }
        let (status, _) = render(&st, &path).await;
        assert_eq!(status, StatusCode::OK, "{label}: {path}");
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..iters {
            let t = Instant::now();
            let (_, len) = render(&st, &path).await;
            times.push(t.elapsed());
            size = len;
        }
        times.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        println!(
            "{label:<36} {:>10} {:>10} {:>10} {size:>9}",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
}
