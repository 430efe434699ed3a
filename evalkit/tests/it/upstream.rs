//! The upstream as the runner sees it: the twin labelled "simulated upstream" from its response
//! header (no flag), a judge that fails for good (the answer kept, the grade missing, graded again
//! by `resume --retry-errors`), a scripted judge whose fixed replies give exact counts in both
//! reading modes, and attempts linked to their exchanges while a run goes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentcap_evalkit::grade::JudgeParse;
use agentcap_evalkit::report::{Format, render};
use agentcap_evalkit::store::{AttemptRow, ItemRow, Store};
use agentcap_evalkit::{ConfigFile, ResumeSpec, RunSpec, Stop, resume, run};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{count, open, simpleqa, twin};

/// What the front does to the traffic it passes to the twin.
#[derive(Default)]
struct Front {
    /// Chat completions (the judge) get the twin's `500` fault.
    judge_fails: AtomicBool,
    /// The twin's `x-agentcap-upstream` response header is taken off (an upstream that does not
    /// announce itself).
    hide_twin: bool,
    /// When not empty, chat completions (the judge) never reach the twin: the reply is this map's
    /// text for the question of the grader prompt (`"no script"` for a question it lacks).
    script: HashMap<String, String>,
}

/// A plain HTTP front to the twin on 127.0.0.1:0 that applies `front`; stops with the runtime.
async fn front(twin: String, front: Arc<Front>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (client, twin, front) = (client.clone(), twin.clone(), front.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (client, twin, front) = (client.clone(), twin.clone(), front.clone());
                    async move { Ok::<_, Infallible>(pass(&client, &twin, &front, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

type Body = BoxBody<Bytes, hyper::Error>;

async fn pass(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    twin: &str,
    front: &Front,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let bad_gateway = || {
        let mut r = Response::new(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        );
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    };
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return bad_gateway();
    };
    if parts.uri.path() == "/v1/chat/completions" && !front.script.is_empty() {
        return scripted_reply(&front.script, &body);
    }
    if parts.uri.path() == "/v1/chat/completions" && front.judge_fails.load(Ordering::SeqCst) {
        parts
            .headers
            .insert("x-agentcap-sim-fault", HeaderValue::from_static("500"));
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{twin}{path}").parse().unwrap();
    parts.headers.remove(http::header::HOST);
    match client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            if front.hide_twin {
                parts.headers.remove("x-agentcap-upstream");
            }
            Response::from_parts(parts, body.boxed())
        }
        Err(_) => bad_gateway(),
    }
}

/// The chat completion a scripted judge answers: the script's reply for the grader prompt's question.
fn scripted_reply(script: &HashMap<String, String>, body: &[u8]) -> Response<Body> {
    let req: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let prompt = req
        .pointer("/messages/0/content")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let reply = agentcap_sim::chat::parse_grader_prompt(prompt)
        .and_then(|g| script.get(g.question))
        .map_or("no script", String::as_str);
    let v = serde_json::json!({
        "id": "scripted", "object": "chat.completion", "model": "judge", "created": 0,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": reply}}],
    });
    let mut r = Response::new(
        Full::new(Bytes::from(v.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

const ONE_CONFIG: &str = r#"
[[config]]
name = "closed"
model = "mistral-medium-latest"
[runner]
max_attempts = 2
initial_backoff_ms = 5
max_backoff_ms = 20
"#;

fn spec(upstream: &str, db: &std::path::Path, limit: usize) -> RunSpec {
    let mut s = RunSpec::new(
        simpleqa().display().to_string(),
        ConfigFile::parse("t", ONE_CONFIG).unwrap(),
        ONE_CONFIG,
        upstream,
        db,
    );
    s.limit = Some(limit);
    s.concurrency = Some(4);
    s
}

fn simulated_in_db(db: &std::path::Path, run_id: &str) -> bool {
    open(db)
        .query_row(
            "SELECT simulated_upstream FROM eval_runs WHERE run_id = ?",
            [run_id],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twin_is_labelled_simulated_without_the_flag_and_a_resume_keeps_it() {
    let sim = twin(Some(simpleqa()), &[]).await;
    let dir = tempfile::tempdir().unwrap();

    // Straight through the embedded proxy to the twin: no flag, yet labelled.
    let db = dir.path().join("twin.duckdb");
    let s = spec(&sim.url(), &db, 5);
    assert!(!s.simulated_upstream);
    let out = run(s, Stop::new()).await.unwrap();
    assert!(out.complete);
    assert!(out.report.run.simulated_upstream);
    for format in [Format::Table, Format::Json, Format::Markdown] {
        let text = render(&out.report, format);
        assert!(text.contains("simulated upstream"), "{format:?}:\n{text}");
    }
    let run_id = out.run_id.clone();
    drop(out);
    assert!(simulated_in_db(&db, &run_id));
    // A resume (nothing left to run) keeps the label.
    let resumed = resume(ResumeSpec::new(&run_id, &db), Stop::new())
        .await
        .unwrap();
    assert!(resumed.report.run.simulated_upstream);
    drop(resumed);
    assert!(simulated_in_db(&db, &run_id));

    // The same twin behind a front that hides its header: not labelled, unless forced.
    let hidden = front(
        sim.url(),
        Arc::new(Front {
            hide_twin: true,
            ..Front::default()
        }),
    )
    .await;
    let url = format!("http://{hidden}");
    let db = dir.path().join("hidden.duckdb");
    let out = run(spec(&url, &db, 5), Stop::new()).await.unwrap();
    assert!(out.complete);
    assert!(!out.report.run.simulated_upstream);
    assert!(!render(&out.report, Format::Table).contains("simulated upstream"));
    let mut forced = spec(&url, &db, 5);
    forced.simulated_upstream = true;
    let out = run(forced, Stop::new()).await.unwrap();
    assert!(
        out.report.run.simulated_upstream,
        "the flag still forces it"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_judge_keeps_the_answer_and_retry_errors_grades_it_again() {
    let sim = twin(Some(simpleqa()), &[]).await;
    let f = Arc::new(Front::default());
    f.judge_fails.store(true, Ordering::SeqCst);
    let url = format!("http://{}", front(sim.url(), f.clone()).await);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("judge.duckdb");

    let out = run(spec(&url, &db, 8), Stop::new()).await.unwrap();
    assert!(out.complete, "judge errors are results, not missing items");
    let s = &out.report.configs[0].summary;
    assert_eq!(
        (s.n, s.errors, s.judge_errors, s.graded, s.unparseable),
        (8, 0, 8, 0, 0)
    );
    assert_eq!((s.correct, s.incorrect, s.not_attempted), (0, 0, 0));
    assert_eq!(s.total_ms.as_ref().map(|p| p.n), Some(8), "latency is kept");
    assert!(s.prompt_tokens > 0);
    assert_eq!((out.stats.errors, out.stats.judge_errors), (0, 8));
    let table = render(&out.report, Format::Table);
    assert!(table.contains("judge errors"), "{table}");
    let run_id = out.run_id.clone();
    drop(out);
    let conversations = |db: &std::path::Path| -> Vec<(String, String)> {
        let c = open(db);
        let mut stmt = c
            .prepare(
                "SELECT item_id, conversation_id FROM eval_items WHERE run_id = ? ORDER BY item_id",
            )
            .unwrap();
        stmt.query_map([&run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = conversations(&db);
    {
        let c = open(&db);
        let q = |sql: &str| count(&c, sql, &run_id);
        assert_eq!(
            q(
                "SELECT count(*) FROM eval_items WHERE run_id = ? AND status = 'judge_error'
                 AND answer IS NOT NULL AND conversation_id IS NOT NULL AND total_ms IS NOT NULL
                 AND error_kind = 'judge_server_error' AND error LIKE 'judge: HTTP 500%'"
            ),
            8
        );
        assert_eq!(
            q("SELECT count(*) FROM eval_grades WHERE run_id = ?"),
            0,
            "no grade"
        );
        assert_eq!(
            q(
                "SELECT count(*) FROM eval_attempts WHERE run_id = ? AND phase = 'judge' AND outcome = 'failed'"
            ),
            8
        );
    }

    // The judge is healthy again: only the grades are made, no new conversation.
    f.judge_fails.store(false, Ordering::SeqCst);
    let mut r = ResumeSpec::new(&run_id, &db);
    r.retry_errors = true;
    let resumed = resume(r, Stop::new()).await.unwrap();
    assert!(resumed.complete);
    assert_eq!(resumed.stats.scheduled, 8);
    let s = &resumed.report.configs[0].summary;
    assert_eq!((s.n, s.errors, s.judge_errors, s.graded), (8, 0, 0, 8));
    assert_eq!(s.total_ms.as_ref().map(|p| p.n), Some(8));
    drop(resumed);
    assert_eq!(conversations(&db), before, "the answers are the same ones");
    let c = open(&db);
    let q = |sql: &str| count(&c, sql, &run_id);
    assert_eq!(
        q("SELECT count(*) FROM eval_attempts WHERE run_id = ? AND phase = 'answer'"),
        8,
        "no answer was asked again"
    );
    assert_eq!(
        q("SELECT count(*) FROM eval_items WHERE run_id = ? AND status = 'answered'"),
        8
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_grades g JOIN eval_attempts a ON a.attempt_id = g.judge_attempt_id
             WHERE g.run_id = ? AND a.outcome = 'ok' AND g.judge_exchange_id = a.exchange_id"
        ),
        8,
        "each new grade links to its judge exchange"
    );
    drop(c);
    sim.shutdown().await;
}

/// The scripted judge's replies, by an item's position in the sample (cycled). Read strictly they
/// are correct, incorrect, not attempted, correct (the template's word), unparseable; read as
/// simple-evals does (first `A`, `B` or `C` anywhere, else `C`) they are A, B, C, C (the `C` of
/// "CORRECT"), C (no capital letter: the default).
const SCRIPT: [&str; 5] = ["A", "B", " C\n", "CORRECT", "the grade is a"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_judge_gives_exact_counts_in_both_reading_modes() {
    let sim = twin(Some(simpleqa()), &[]).await;
    let items = agentcap_datasets::load_path(&simpleqa()).unwrap();
    let n = 23;
    let sample = agentcap_datasets::sample::simple_evals_sample(items.len(), n, 0);
    let script: HashMap<String, String> = sample
        .iter()
        .enumerate()
        .map(|(pos, &i)| (items[i].question.clone(), SCRIPT[pos % 5].to_string()))
        .collect();
    assert_eq!(script.len(), n, "the sample's questions are distinct");
    // Positions 0..23 by reply: 5 x "A", 5 x "B", 5 x " C", 4 x "CORRECT", 4 x "the grade is a".
    let f = Arc::new(Front {
        script,
        ..Front::default()
    });
    let url = format!("http://{}", front(sim.url(), f).await);
    let dir = tempfile::tempdir().unwrap();
    for (parse, want) in [
        // (correct, incorrect, not attempted, unparseable)
        (JudgeParse::Strict, (9, 5, 5, 4)),
        (JudgeParse::SimpleEvalsCompat, (5, 5, 13, 0)),
    ] {
        let db = dir.path().join(format!("{parse:?}.duckdb"));
        let mut s = spec(&url, &db, n);
        s.judge_parse = parse;
        let out = run(s, Stop::new()).await.unwrap();
        assert!(out.complete);
        let s = &out.report.configs[0].summary;
        assert_eq!(
            (s.correct, s.incorrect, s.not_attempted, s.unparseable),
            want,
            "{parse:?}"
        );
        assert_eq!((s.n, s.errors, s.judge_errors), (n, 0, 0), "{parse:?}");
        assert_eq!(s.graded, want.0 + want.1 + want.2);
        assert_eq!(s.accuracy, want.0 as f64 / s.graded as f64, "{parse:?}");
        assert_eq!(
            s.accuracy_given_attempted,
            want.0 as f64 / (want.0 + want.1) as f64,
            "{parse:?}"
        );
        let run_id = out.run_id.clone();
        drop(out);
        // Every reply is stored verbatim, next to the outcome it was read as.
        let c = open(&db);
        let mut stmt = c
            .prepare(
                "SELECT judge_reply, outcome, count(*) FROM eval_grades WHERE run_id = ?
                 GROUP BY ALL ORDER BY judge_reply",
            )
            .unwrap();
        let rows: Vec<(String, String, i64)> = stmt
            .query_map([&run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let outcomes: [&str; 5] = match parse {
            JudgeParse::Strict => [
                "correct",
                "incorrect",
                "not_attempted",
                "correct",
                "unparseable",
            ],
            JudgeParse::SimpleEvalsCompat => [
                "correct",
                "incorrect",
                "not_attempted",
                "not_attempted",
                "not_attempted",
            ],
        };
        let mut expected: Vec<(String, String, i64)> = SCRIPT
            .iter()
            .zip(outcomes)
            .zip([5, 5, 5, 4, 4])
            .map(|((reply, outcome), k)| (reply.to_string(), outcome.to_string(), k))
            .collect();
        expected.sort();
        assert_eq!(rows, expected, "{parse:?}");
    }
    sim.shutdown().await;
}

fn attempt(run_id: &str, attempt_id: &str) -> AttemptRow {
    AttemptRow {
        attempt_id: attempt_id.into(),
        run_id: run_id.into(),
        config: "c".into(),
        item_id: attempt_id.into(),
        phase: "answer".into(),
        attempt: 1,
        started_at: "2026-01-01T00:00:00Z".into(),
        duration_ms: 1.0,
        http_status: Some(200),
        outcome: "ok".into(),
        error_class: None,
        error: None,
        retry_after_ms: None,
        backoff_ms: None,
        conversation_id: None,
    }
}

/// Waits until `sql` (one integer, bound to nothing) reads `want`; fails after a minute.
async fn until(store: &Store, sql: &'static str, want: i64) {
    for _ in 0..3000 {
        let n: i64 = store
            .read(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap();
        if n == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{sql} never read {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_link_to_their_exchanges_while_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("link.duckdb")).unwrap();
    // The recorder's table, reduced to what linking reads.
    store
        .read(|c| {
            c.execute_batch(
                "CREATE TABLE exchanges (id VARCHAR, session VARCHAR, tags VARCHAR);
                 INSERT INTO exchanges VALUES ('ex_a', 'run_x', '{\"eval-attempt\":\"a\"}');",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    store.put_attempt(attempt("run_x", "a"));
    store.put_attempt(attempt("run_x", "b"));
    store.put_item(
        ItemRow {
            run_id: "run_x".into(),
            config: "c".into(),
            item_id: "a".into(),
            status: "answered".into(),
            answer_attempt_id: Some("a".into()),
            finished_at: "2026-01-01T00:00:01Z".into(),
            ..ItemRow::default()
        },
        None,
    );
    store.link_every("run_x", Duration::from_millis(10));
    // Never a call to link_exchanges (the end of a run): the writer links on its own.
    until(
        &store,
        "SELECT count(*) FROM eval_attempts WHERE attempt_id = 'a' AND exchange_id = 'ex_a'",
        1,
    )
    .await;
    until(
        &store,
        "SELECT count(*) FROM eval_items WHERE item_id = 'a' AND exchange_id = 'ex_a'",
        1,
    )
    .await;
    // b's exchange is committed later: a later pass links it.
    store
        .read(|c| {
            c.execute_batch(
                "INSERT INTO exchanges VALUES ('ex_b', 'run_x', '{\"eval-attempt\":\"b\"}');",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    until(
        &store,
        "SELECT count(*) FROM eval_attempts WHERE attempt_id = 'b' AND exchange_id = 'ex_b'",
        1,
    )
    .await;
    store.stop_linking();
    store.close();
}

/// A real DuckDB failure, not an injected one: a results file opened in DuckDB's read-only mode
/// refuses the store's schema statements, and the store reports DuckDB's refusal as an error
/// (no panic, no half-started writer); the file is unchanged and opens for writing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_results_file_is_a_clear_store_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.duckdb");
    let store = Store::open(&db).unwrap();
    store.put_attempt(attempt("run_ro", "a"));
    store.flush().await.unwrap();
    store.close();

    let conn = agentcap_evalkit::store::open_read_only(&db).unwrap();
    let err = match Store::new(conn) {
        Ok(_) => panic!("a read-only connection cannot host the store"),
        Err(e) => e,
    };
    assert!(
        matches!(err, agentcap_evalkit::store::StoreError::Db(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("read-only"), "{err}");

    let store = Store::open(&db).unwrap();
    let n: i64 = store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM eval_attempts", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(n, 1, "the file is intact");
    store.close();
}
