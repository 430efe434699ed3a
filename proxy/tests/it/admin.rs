//! The admin listener under attack, over real TCP: every attack leaves the recording unchanged and
//! the proxy recording afterwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentcap_proxy::admin::{AdminMount, Client, MountedHandler};
use agentcap_proxy::recorder::{DbAccess, QueryCancel, open_db};
use agentcap_sim::SimConfig;
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Rig, rig_with};

/// The 10^12-row cross join of the attack: runs for many minutes unless interrupted.
const CROSS_JOIN: &str = "SELECT count(*) FROM range(1000000) a, range(1000000) b";

/// One HTTP/1.1 request written by hand (every header as given), read to the end.
async fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("admin listener reachable");
    let req = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn query_body(sql: &str) -> String {
    json!({ "sql": sql }).to_string()
}

fn admin(r: &Rig) -> SocketAddr {
    r.proxy().admin_addr().expect("admin enabled")
}

/// A rig with one recorded exchange (so `exchanges` and `sse_events` have rows).
async fn recorded(tweak: impl FnOnce(&mut agentcap_proxy::ProxyConfig)) -> Rig {
    let r = rig_with(SimConfig::default(), tweak).await;
    record_one(&r).await;
    r
}

async fn record_one(r: &Rig) {
    // The token the rigs below configure (stripped and ignored by a proxy without one).
    let headers = [("x-agentcap-token", "tok"), ("accept", "text/event-stream")];
    let s = r
        .via_proxy(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": "Hello", "stream": true})),
            &headers,
        )
        .await
        .expect("streamed through the proxy");
    assert_eq!(s.status, http::StatusCode::OK);
    r.flush().await;
}

/// Everything an attack could change: row counts and contents of every table, and the settings.
fn digest(r: &Rig) -> String {
    let rows = r.rows(
        "SELECT (SELECT count(*) FROM exchanges)::VARCHAR || '/' || (SELECT count(*) FROM sse_events)::VARCHAR \
         || '/' || (SELECT md5(string_agg(CAST(e AS VARCHAR), '|' ORDER BY id)) FROM exchanges e) \
         || '/' || (SELECT string_agg(status::VARCHAR, ',' ORDER BY id) FROM exchanges) \
         || '/' || (SELECT string_agg(name || '=' || coalesce(value, ''), ',' ORDER BY name) FROM duckdb_settings())",
    );
    rows[0][0].as_str().expect("a digest").to_owned()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    crate::harness::poll_until(what, Duration::from_secs(120), async || {
        cond().then_some(())
    })
    .await
}

#[tokio::test]
async fn attacks_on_the_read_only_filter_change_nothing() {
    let r = recorded(|_| {}).await;
    let addr = admin(&r);
    let before = digest(&r);
    let exchanges = r.one("SELECT count(*) FROM exchanges");
    for sql in [
        "SELECT E'\\''; COMMIT; UPDATE exchanges SET status=418; SELECT 1 -- '",
        "SELECT E'\\''; COMMIT; DELETE FROM sse_events; SELECT 1 -- '",
        "DELETE FROM sse_events",
        "UPDATE exchanges SET status = 418",
        "SET memory_limit='1MB'",
        "RESET memory_limit",
        "DROP TABLE exchanges",
        "SELECT 1; DROP TABLE exchanges",
        "CHECKPOINT",
        "SELECT * FROM enable_profiling()",
        "SELECT * FROM query('SELECT 1')",
        "ATTACH ':memory:' AS other",
        "EXPLAIN ANALYZE SELECT 1",
        "PRAGMA enable_profiling",
    ] {
        let (status, body) = raw(
            addr,
            &format!("POST /query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json"),
            &query_body(sql),
        )
        .await;
        // The recording first: what the attack did matters more than how it was answered.
        assert_eq!(digest(&r), before, "{sql} changed the recording: {body}");
        assert_eq!(status, 400, "{sql}: {body}");
        assert_eq!(body["kind"], "refused", "{sql}: {body}");
    }
    // The proxy still records.
    record_one(&r).await;
    assert_eq!(
        r.one("SELECT count(*) FROM exchanges"),
        json!(exchanges.as_i64().unwrap() + 1)
    );
}

/// The layers behind the parsers hold on their own: a statement that got past both parsers
/// still could not write or change a setting.
#[tokio::test]
async fn the_layers_behind_the_parsers_refuse_writes_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_db(Some(&dir.path().join("x.duckdb")), DbAccess::ReadWrite).unwrap();
    conn.execute_batch("CREATE TABLE t AS SELECT 1 AS x")
        .unwrap();
    let other = conn.try_clone().unwrap();
    for sql in [
        "SET memory_limit = '1MB'",
        "SET GLOBAL threads = 1",
        "RESET memory_limit",
        "SET lock_configuration = false",
        "SELECT * FROM enable_profiling()",
    ] {
        let e = other.execute_batch(sql).expect_err(sql).to_string();
        assert!(e.contains("locked"), "{sql}: {e}");
    }
    for sql in [
        "UPDATE t SET x = 2",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE u (x INT)",
    ] {
        other.execute_batch("BEGIN TRANSACTION READ ONLY").unwrap();
        let e = other.execute_batch(sql).expect_err(sql).to_string();
        assert!(e.contains("read-only"), "{sql}: {e}");
        other.execute_batch("ROLLBACK").unwrap();
    }
    let x: i64 = conn
        .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(x, 1);
}

#[tokio::test]
async fn only_same_origin_loopback_json_requests_with_the_token_are_served() {
    let r = recorded(|c| c.auth_token = Some("tok".into())).await;
    let addr = admin(&r);
    let port = addr.port();
    let q = query_body("SELECT count(*) AS n FROM exchanges");
    let json_ct = "Content-Type: application/json";
    let token = "X-Agentcap-Token: tok";
    let cases: Vec<(String, u16)> = vec![
        // What a web page can send without a preflight: text/plain.
        (
            format!("POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}\r\nContent-Type: text/plain"),
            415,
        ),
        (
            format!("POST /flush HTTP/1.1\r\nHost: {addr}\r\n{token}\r\nContent-Type: text/plain"),
            415,
        ),
        (
            format!("POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}"),
            415,
        ),
        // Cross-origin, whatever else is right.
        (
            format!(
                "POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}\r\n{json_ct}\r\nOrigin: http://evil.example"
            ),
            403,
        ),
        (
            format!(
                "POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}\r\n{json_ct}\r\nOrigin: http://localhost:3000"
            ),
            403,
        ),
        (
            format!("POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}\r\n{json_ct}\r\nOrigin: null"),
            403,
        ),
        (
            format!(
                "POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}\r\n{json_ct}\r\nSec-Fetch-Site: cross-site"
            ),
            403,
        ),
        // DNS rebinding: the browser sends the attacker's name.
        (
            format!("POST /query HTTP/1.1\r\nHost: evil.example:{port}\r\n{token}\r\n{json_ct}"),
            403,
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: evil.example:{port}\r\n{token}"),
            403,
        ),
        (
            format!("GET /metrics HTTP/1.1\r\nHost: localhost.evil.example\r\n{token}"),
            403,
        ),
        (format!("POST /query HTTP/1.1\r\n{token}\r\n{json_ct}"), 403),
        // The token.
        (
            format!("POST /query HTTP/1.1\r\nHost: {addr}\r\n{json_ct}"),
            401,
        ),
        (
            format!("POST /query HTTP/1.1\r\nHost: {addr}\r\nX-Agentcap-Token: tok2\r\n{json_ct}"),
            401,
        ),
        (format!("GET /health HTTP/1.1\r\nHost: {addr}"), 401),
        // Served.
        (
            format!("POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}\r\n{json_ct}"),
            200,
        ),
        (
            format!(
                "POST /query HTTP/1.1\r\nHost: localhost:{port}\r\n{token}\r\nContent-Type: application/json; charset=utf-8\r\nOrigin: http://localhost:{port}\r\nSec-Fetch-Site: same-origin"
            ),
            200,
        ),
        (
            format!("POST /query HTTP/1.1\r\nHost: [::1]:{port}\r\n{token}\r\n{json_ct}"),
            200,
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n{token}"),
            200,
        ),
    ];
    for (head, want) in cases {
        let (status, body) = raw(addr, &head, &q).await;
        assert_eq!(status, want, "{head}\n-> {body}");
        if want == 200 && head.starts_with("POST /query") {
            assert_eq!(body["rows"], json!([[1]]), "{body}");
        }
    }
    // The body is capped.
    let big = query_body(&format!("SELECT '{}'", "x".repeat(2 << 20)));
    let (status, _) = raw(
        addr,
        &format!("POST /query HTTP/1.1\r\nHost: {addr}\r\n{token}\r\n{json_ct}"),
        &big,
    )
    .await;
    assert_eq!(status, 413);
    // The client half sends the token and JSON.
    let c = Client::new(&format!("http://{addr}"), Some("tok".into()));
    let a = c
        .query("SELECT ? AS a, ? AS b", &[json!(1), json!("x")])
        .await
        .unwrap();
    assert_eq!(a.result.rows, vec![vec![json!(1), json!("x")]]);
    assert!(!a.result.truncated);
    c.flush().await.unwrap();
    let anonymous = Client::new(&format!("http://{addr}"), None);
    assert!(anonymous.health().await.is_err());
}

#[tokio::test]
async fn huge_answers_are_truncated() {
    let r = recorded(|c| c.admin.limits.max_bytes = 200_000).await;
    let c = Client::new(&format!("http://{}", admin(&r)), None);
    let a = c.query("SELECT * FROM range(20000000)", &[]).await.unwrap();
    assert_eq!(a.result.rows.len(), 10_000);
    assert!(a.result.truncated);
    assert!(a.result.truncated_reason.unwrap().contains("row cap"));
    let a = c
        .query("SELECT repeat('x', 1000) AS s FROM range(1000)", &[])
        .await
        .unwrap();
    assert!(a.result.truncated);
    assert!(a.result.rows.len() < 200, "{}", a.result.rows.len());
    assert!(a.result.truncated_reason.unwrap().contains("byte cap"));
    let a = c.query("SELECT * FROM range(3)", &[]).await.unwrap();
    assert_eq!(a.result.rows.len(), 3);
    assert!(!a.result.truncated);
}

#[tokio::test]
async fn a_cross_join_is_interrupted_by_the_timeout() {
    let r = recorded(|c| c.admin.limits.timeout = Duration::from_millis(300)).await;
    let before = digest(&r);
    let c = Client::new(&format!("http://{}", admin(&r)), None);
    // Bounded so that a query the timeout does not stop fails the test instead of hanging it (the
    // bound is generous: the 300 ms timeout is what must stop it; no timing is asserted).
    let answer = tokio::time::timeout(Duration::from_secs(120), c.query(CROSS_JOIN, &[]))
        .await
        .expect("the cross join was not interrupted within 120 s");
    match answer {
        Err(agentcap_proxy::admin::ClientError::Refused {
            status,
            kind,
            message,
        }) => {
            assert_eq!((status, kind.as_str()), (504, "timeout"), "{message}");
            assert!(message.contains("timeout"), "{message}");
        }
        other => panic!("the cross join was not interrupted: {other:?}"),
    }
    wait_for("the query to end", || {
        r.proxy().recorder().running_queries() == 0
    })
    .await;
    assert_eq!(digest(&r), before);
    record_one(&r).await;
}

#[tokio::test]
async fn a_query_whose_client_left_is_interrupted() {
    let r = recorded(|c| c.admin.limits.timeout = Duration::from_secs(3600)).await;
    let addr = admin(&r);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = query_body(CROSS_JOIN);
    let req = format!(
        "POST /query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let rec = r.proxy().recorder().clone();
    wait_for("the query to start", || rec.running_queries() == 1).await;
    drop(s);
    wait_for("the query to be interrupted", || rec.running_queries() == 0).await;
    record_one(&r).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_on_a_running_query() {
    let mut r = recorded(|c| c.admin.limits.timeout = Duration::from_secs(3600)).await;
    let addr = admin(&r);
    let rec = r.proxy().recorder().clone();
    let asker = tokio::spawn(async move {
        Client::new(&format!("http://{addr}"), None)
            .query(CROSS_JOIN, &[])
            .await
    });
    wait_for("the query to start", || rec.running_queries() == 1).await;
    let proxy = r.proxy.take().unwrap();
    // Bounded so that a regression fails instead of hanging the suite; no timing is asserted.
    tokio::time::timeout(Duration::from_secs(600), proxy.shutdown())
        .await
        .expect("the proxy shut down while a query ran")
        .expect("clean shutdown");
    wait_for("the query to end", || rec.running_queries() == 0).await;
    match asker.await.unwrap() {
        Err(agentcap_proxy::admin::ClientError::Refused { kind, .. }) => {
            assert_eq!(kind, "stopped")
        }
        Err(agentcap_proxy::admin::ClientError::Transport { .. }) => {}
        other => panic!("the query was not stopped: {other:?}"),
    }
}

#[tokio::test]
async fn json_operators_and_params_work_on_the_recording() {
    let r = recorded(|_| {}).await;
    let c = Client::new(&format!("http://{}", admin(&r)), None);
    let a = c
        .query(
            "SELECT response_headers->>'content-type' AS ct, json_extract_string(request_body, '$.model') AS m \
             FROM exchanges WHERE operation = ? LIMIT 1",
            &[json!("conversations.start_stream")],
        )
        .await
        .unwrap();
    assert_eq!(a.result.rows.len(), 1, "{:?}", a.result);
    assert_eq!(a.result.rows[0][1], json!("m"));
    assert!(
        a.result.rows[0][0]
            .as_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let a = c
        .query(
            "SELECT count(*) FROM sse_events WHERE data->>'type' = 'conversation.response.done'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(a.result.rows, vec![vec![json!(1)]]);
    // duckdb_extensions() would read the extension directory (external access is off): refused
    // with the reason, not with a file-system error.
    let e = c
        .query(
            "SELECT extension_name, loaded FROM duckdb_extensions()",
            &[],
        )
        .await
        .expect_err("duckdb_extensions() is refused");
    assert!(e.to_string().contains("built in"), "{e}");
    assert_eq!(
        std::path::Path::new(&a.db),
        std::fs::canonicalize(r.db_path()).unwrap()
    );
}

/// One HTTP/1.1 GET or POST written by hand, read to the end: the status and the whole answer text.
async fn raw_text(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("admin listener reachable");
    let req = format!("{head}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// A mount that answers `mounted PATH N` (N: exchanges counted through the gate) and counts its calls.
fn counting_mount(calls: Arc<AtomicUsize>) -> AdminMount {
    AdminMount::new(move |ctx| {
        let calls = calls.clone();
        let handler: MountedHandler = Arc::new(move |req| {
            calls.fetch_add(1, Ordering::SeqCst);
            let gate = ctx.gate.clone();
            Box::pin(async move {
                let n = tokio::task::spawn_blocking(move || {
                    gate.query_blocking("SELECT count(*) FROM exchanges", &[], &QueryCancel::new())
                })
                .await
                .unwrap()
                .expect("the gate answers");
                let text = format!("mounted {} {}", req.uri().path(), n.rows[0][0]);
                http::Response::new(Full::new(Bytes::from(text)).boxed())
            })
        });
        Ok(handler)
    })
}

#[tokio::test]
async fn a_mount_gets_other_paths_only_after_the_host_origin_and_token_checks() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mount = counting_mount(calls.clone());
    let r = recorded(|c| {
        c.auth_token = Some("tok".into());
        c.admin.mount = Some(mount);
    })
    .await;
    let addr = admin(&r);
    let port = addr.port();
    for (head, want) in [
        (
            format!("GET / HTTP/1.1\r\nHost: evil.example:{port}\r\nX-Agentcap-Token: tok"),
            403,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nX-Agentcap-Token: tok\r\nOrigin: http://evil.example"
            ),
            403,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nX-Agentcap-Token: tok\r\nSec-Fetch-Site: cross-site"
            ),
            403,
        ),
        (format!("GET / HTTP/1.1\r\nHost: {addr}"), 401),
        (
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\nCookie: agentcap_admin=tok"),
            401,
        ),
        (
            format!("GET /login?token=nope HTTP/1.1\r\nHost: {addr}"),
            401,
        ),
        (format!("GET /login HTTP/1.1\r\nHost: {addr}"), 401),
    ] {
        let (status, text) = raw_text(addr, &head).await;
        assert_eq!(status, want, "{head}\n-> {text}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "refused before the mount");
    // A browser logs in once: the cookie holds the token's digest, never the token.
    let (status, text) = raw_text(
        addr,
        &format!("GET /login?token=tok HTTP/1.1\r\nHost: {addr}"),
    )
    .await;
    assert_eq!(status, 303, "{text}");
    let cookie = text
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie is set");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("tok;"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap();
    let (status, text) = raw_text(
        addr,
        &format!("GET /runs/x HTTP/1.1\r\nHost: {addr}\r\nCookie: a=b; {cookie}"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("mounted /runs/x 1"), "{text}");
    let (status, text) = raw_text(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: localhost:{port}\r\nX-Agentcap-Token: tok"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The cookie is for GET and HEAD only: the JSON endpoints still want the header.
    let (status, text) = raw_text(
        addr,
        &format!("POST /flush HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nCookie: {cookie}"),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    // The admin API keeps its own paths.
    let (status, text) = raw_text(
        addr,
        &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_mount_that_cannot_be_built_stops_the_start() {
    let mount = AdminMount::new(|_| Err("no pages today".into()));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = agentcap_proxy::ProxyConfig::new(
        "http://127.0.0.1:9".parse().unwrap(),
        agentcap_proxy::recorder::RecorderConfig::new(dir.path().join("m.duckdb")),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin.mount = Some(mount);
    let err = agentcap_proxy::start(cfg).await.expect_err("refused");
    assert!(err.to_string().contains("no pages today"), "{err}");
}
