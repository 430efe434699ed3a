//! The UI on a running proxy's admin listener, over TCP: the live tail pushes new exchanges without a reload,
//! and every statement, the SQL console's included, goes through the listener's query gate.

use std::net::SocketAddr;
use std::time::Duration;

use agentcap_proxy::ProxyConfig;
use agentcap_ui::UiConfig;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::harness::{Rig, rig_with};

/// A proxy whose admin listener (on 127.0.0.1:0) serves the UI, as `agentcap proxy` mounts it.
fn mounted(cfg: &mut ProxyConfig, ui: UiConfig) {
    cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin.mount = Some(agentcap_ui::admin_mount(ui));
}

fn admin(r: &Rig) -> SocketAddr {
    r.proxy().admin_addr().expect("admin listener on")
}

async fn open(r: &Rig, path: &str) -> http::Response<hyper::body::Incoming> {
    let addr = admin(r);
    let req = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    r.client.request(req).await.expect("admin listener answers")
}

async fn page(r: &Rig, path: &str) -> (StatusCode, String) {
    let resp = open(r, path).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn new_exchanges_are_pushed_to_an_open_tail_on_the_admin_listener() {
    let ui = UiConfig {
        tail_interval: Duration::from_millis(50),
        max_tails: 1,
        ..UiConfig::default()
    };
    let r = rig_with(|c| mounted(c, ui)).await;
    let _ = r.send(Method::GET, "/v1/models", Bytes::new(), &[]).await;
    r.flush().await;
    let (status, body) = page(&r, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = body.split("data-tail-after=\"").nth(1).unwrap();
    let after = &after[..after.find('"').unwrap()];
    let resp = open(&r, &format!("/tail?after={after}&stream=no")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().contains_key("content-security-policy"));
    // A second tail is over the bound.
    let (second, _) = page(&r, "/tail").await;
    assert_eq!(second, StatusCode::SERVICE_UNAVAILABLE);
    // The admin API keeps its own paths.
    let (health, body) = page(&r, "/health").await;
    assert_eq!(health, StatusCode::OK);
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    let mut body = resp.into_body();
    let _ = r
        .send(
            Method::GET,
            "/v1/models",
            Bytes::new(),
            &[("x-agentcap-session", "tailed<b>")],
        )
        .await;
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !got.contains("event: row") {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("a row arrives")
            .expect("the tail stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            got.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(got.contains("tailed&lt;b&gt;"), "{got}");
    assert_eq!(
        got.matches("event: row").count(),
        1,
        "only the new exchange: {got}"
    );
    assert!(got.contains("\nid: "), "rows carry their rowid");
    drop(body);
}

#[tokio::test]
async fn the_mounted_sql_console_runs_within_the_admin_listeners_limits() {
    let r = rig_with(|c| {
        mounted(c, UiConfig::default());
        c.admin.limits.max_rows = 3;
    })
    .await;
    let _ = r.send(Method::GET, "/v1/models", Bytes::new(), &[]).await;
    r.flush().await;
    // The admin's row cap applies to the console (a connection of the UI's own would return all ten).
    let (status, body) = page(&r, "/sql?q=SELECT+*+FROM+range(10)").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let table = body
        .split("id=\"sql-result\"")
        .nth(1)
        .expect("a result table");
    assert_eq!(table.matches("<tr>").count(), 1 + 3, "{table}");
    // Writes and file access are refused with the filter's reason; the recording is unchanged.
    for sql in [
        "DELETE+FROM+exchanges",
        "SELECT+*+FROM+read_text('/etc/passwd')",
        "SELECT+E'%5C''%3B+COMMIT%3B+DELETE+FROM+exchanges%3B+SELECT+1+--+'",
    ] {
        let (status, body) = page(&r, &format!("/sql?q={sql}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("class=\"error\""), "{sql}: {body}");
        assert!(!body.contains("sql-result"), "{sql}: {body}");
    }
    let (_, body) = page(&r, "/sql?q=SELECT+count(*)+AS+n+FROM+exchanges").await;
    assert!(body.contains("<td>1</td>"), "{body}");
}
