//! The live tail over a running proxy's recording: new exchanges arrive as SSE rows without a reload.

use std::sync::Arc;
use std::time::Duration;

use agentcap_ui::{ConnDb, UiConfig, UiState};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;

use crate::harness::rig;

#[tokio::test]
async fn new_exchanges_are_pushed_to_an_open_tail() {
    let r = rig().await;
    let _ = r.send(Method::GET, "/v1/models", Bytes::new(), &[]).await;
    r.flush().await;
    let conn = r.proxy().recorder().connection().unwrap();
    let st = UiState::new(
        Arc::new(ConnDb::new(conn)),
        UiConfig {
            tail_interval: Duration::from_millis(50),
            max_tails: 1,
            ..UiConfig::default()
        },
    )
    .unwrap();
    let page = crate::harness::get(&st, "/").await;
    let after = page.body.split("data-tail-after=\"").nth(1).unwrap();
    let after = &after[..after.find('"').unwrap()];
    let req = Request::builder()
        .uri(format!("/tail?after={after}&stream=no"))
        .header("host", "localhost")
        .body(())
        .unwrap();
    let resp = agentcap_ui::handle(&st, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().contains_key("content-security-policy"));
    // A second tail is over the bound.
    let second = crate::harness::get(&st, "/tail").await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);

    let mut body = resp.into_body();
    let _ = r
        .send(
            Method::GET,
            "/v1/models",
            Bytes::new(),
            &[("x-agentcap-session", "tailed<b>")],
        )
        .await;
    r.flush().await;
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
