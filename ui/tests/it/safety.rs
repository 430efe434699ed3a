//! Recorded content is hostile; requests from other sites and other Hosts are refused; every response carries
//! the security headers; a non-loopback listener needs a token.

use agentcap_ui::{UiConfig, guard};
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::harness::{HOSTILE, Reply, drive, get, get_with, rig, rows};

/// Markup from recorded content that must never appear unescaped.
fn assert_inert(path: &str, r: &Reply) {
    for bad in [
        "<script>window",
        "<img src=x",
        "onerror=\"window",
        "href=\"javascript:",
        "<svg onload",
    ] {
        assert!(!r.body.contains(bad), "{path} contains {bad:?} unescaped");
    }
    assert!(
        !r.body.contains("<script>")
            || r.body.matches("<script").count()
                == r.body.matches("<script src=\"/assets/ui.js\"").count(),
        "{path}: the only script element is the embedded asset"
    );
}

fn assert_secure(path: &str, r: &Reply) {
    let h = |n: &str| r.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(h("content-security-policy"), guard::CSP, "{path}");
    assert!(guard::CSP.contains("script-src 'self'") && !guard::CSP.contains("unsafe-inline"));
    assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
}

#[tokio::test]
async fn hostile_content_is_escaped_on_every_page() {
    let mut r = rig().await;
    let story = drive(&r).await;
    let (st, db) = r.stop_and_open(UiConfig::default()).await;
    let ids = rows(db.as_ref(), "SELECT id FROM exchanges ORDER BY started_at");
    assert!(ids.len() >= 7, "the session was recorded: {ids:?}");
    let mut paths = vec![
        "/".to_string(),
        "/?session=sess-1".to_string(),
        "/conversations".to_string(),
        format!("/conversations/{}", story.root),
        format!("/conversations/{}", story.branch),
    ];
    for id in &ids {
        paths.push(format!("/exchanges/{}", id[0].as_str().unwrap()));
    }
    let mut escaped_seen = 0;
    for p in &paths {
        let reply = get(&st, p).await;
        assert_eq!(reply.status, StatusCode::OK, "{p}: {}", reply.body);
        assert_inert(p, &reply);
        assert_secure(p, &reply);
        if reply
            .body
            .contains("&lt;script&gt;window.pwned=1&lt;/script&gt;")
        {
            escaped_seen += 1;
        }
    }
    // The hostile text is shown (escaped) in the list (session), the request bodies, the streamed answer
    // that quotes the function result, and the conversation tree.
    assert!(
        escaped_seen >= 4,
        "the hostile text is shown as text on {escaped_seen} pages"
    );
    let conv = get(&st, &format!("/conversations/{}", story.root)).await;
    assert!(
        conv.body.contains("&lt;script&gt;window.pwned=1"),
        "the function result is shown"
    );
    let home = get(&st, "/").await;
    assert!(
        home.body.contains("&lt;img src=x onerror="),
        "the hostile session is shown in the list"
    );
    let _ = HOSTILE;
}

#[tokio::test]
async fn refusals_carry_the_security_headers_too() {
    let mut r = rig().await;
    let _ = r.send(Method::GET, "/v1/models", Bytes::new(), &[]).await;
    r.flush().await;
    let (st, _db) = r.stop_and_open(UiConfig::default()).await;
    for (path, headers, status) in [
        (
            "/",
            vec![("host", "evil.example")],
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "/",
            vec![("host", "evil.example:8790")],
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "/",
            vec![("host", "localhost.evil.example")],
            StatusCode::MISDIRECTED_REQUEST,
        ),
        ("/", vec![], StatusCode::BAD_REQUEST),
        (
            "/",
            vec![
                ("host", "127.0.0.1:8790"),
                ("origin", "http://evil.example"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "/tail",
            vec![("host", "127.0.0.1:8790"), ("origin", "null")],
            StatusCode::FORBIDDEN,
        ),
        (
            "/",
            vec![
                ("host", "127.0.0.1:8790"),
                ("origin", "http://127.0.0.1:8790"),
            ],
            StatusCode::OK,
        ),
        ("/", vec![("host", "localhost:8790")], StatusCode::OK),
        ("/", vec![("host", "[::1]:8790")], StatusCode::OK),
        ("/nope", vec![("host", "127.0.0.1")], StatusCode::NOT_FOUND),
        (
            "/exchanges/nope",
            vec![("host", "127.0.0.1")],
            StatusCode::NOT_FOUND,
        ),
        (
            "/?status=abc",
            vec![("host", "127.0.0.1")],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/?before=garbage",
            vec![("host", "127.0.0.1")],
            StatusCode::BAD_REQUEST,
        ),
        ("/assets/ui.js", vec![("host", "127.0.0.1")], StatusCode::OK),
        (
            "/assets/ui.css",
            vec![("host", "127.0.0.1")],
            StatusCode::OK,
        ),
    ] {
        let reply = get_with(&st, path, &headers).await;
        assert_eq!(reply.status, status, "{path} {headers:?}: {}", reply.body);
        assert_secure(path, &reply);
    }
    // Writes are refused whatever the path.
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("host", "127.0.0.1")
        .body(())
        .unwrap();
    let resp = agentcap_ui::handle(&st, req).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().contains_key("content-security-policy"));
}

#[tokio::test]
async fn a_token_guards_every_page_but_login() {
    let non_loopback = UiConfig {
        listen: "0.0.0.0:8790".parse().unwrap(),
        ..UiConfig::default()
    };
    assert!(
        non_loopback.validate().is_err(),
        "0.0.0.0 without a token is refused"
    );
    let lan = UiConfig {
        listen: "10.1.2.3:8790".parse().unwrap(),
        ..UiConfig::default()
    };
    assert!(lan.validate().is_err());
    assert!(
        UiConfig {
            auth_token: Some(String::new()),
            ..UiConfig::default()
        }
        .validate()
        .is_err()
    );

    let mut r = rig().await;
    r.flush().await;
    let (st, db) = r
        .stop_and_open(UiConfig {
            auth_token: Some("s3cret".into()),
            ..UiConfig::default()
        })
        .await;
    let host = ("host", "127.0.0.1:8790");
    for path in [
        "/",
        "/conversations",
        "/tail",
        "/assets/ui.js",
        "/exchanges/x",
    ] {
        let reply = get_with(&st, path, &[host]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_secure(path, &reply);
    }
    assert_eq!(
        get_with(&st, "/", &[host, ("authorization", "Bearer wrong")])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_with(&st, "/", &[host, ("authorization", "Bearer s3cret")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&st, "/login?token=wrong", &[host]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let login = get_with(&st, "/login?token=s3cret", &[host]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = login
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        get_with(&st, "/", &[host, ("cookie", &pair)]).await.status,
        StatusCode::OK
    );
    // A token with characters a cookie cannot hold round-trips through the login cookie.
    let odd = agentcap_ui::UiState::new(
        db.clone(),
        UiConfig {
            auth_token: Some("a b;c=d".into()),
            ..UiConfig::default()
        },
    )
    .unwrap();
    let login = get_with(&odd, "/login?token=a%20b%3Bc%3Dd", &[host]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = login
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let pair = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        get_with(&odd, "/", &[host, ("cookie", &pair)]).await.status,
        StatusCode::OK
    );
    // The Host check runs before the token: a rebinding page cannot even probe for it.
    assert_eq!(
        get_with(&st, "/login?token=s3cret", &[("host", "evil.example")])
            .await
            .status,
        StatusCode::MISDIRECTED_REQUEST
    );
}

#[tokio::test]
async fn large_bodies_are_cut_and_invalid_utf8_is_replaced() {
    let mut r = rig().await;
    let big = format!("{{\"inputs\": \"{}\"}}", "A".repeat(5 * 1024 * 1024));
    let _ = r
        .send(
            Method::POST,
            "/v1/conversations",
            Bytes::from(big),
            &[("x-agentcap-tag-case", "big")],
        )
        .await;
    let mut bad = b"{\"inputs\": \"caf".to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(b"\"}");
    let _ = r
        .send(
            Method::POST,
            "/v1/conversations",
            Bytes::from(bad),
            &[("x-agentcap-tag-case", "utf8")],
        )
        .await;
    r.flush().await;
    let (st, db) = r.stop_and_open(UiConfig::default()).await;
    let id = |case: &str| {
        rows(
            db.as_ref(),
            &format!(
                "SELECT id FROM exchanges WHERE json_extract_string(tags, '$.case') = '{case}'"
            ),
        )[0][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    let page = get(&st, &format!("/exchanges/{}", id("big"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.len() < 200 * 1024,
        "the page is bounded: {} bytes",
        page.body.len()
    );
    assert!(
        page.body.contains("showing the first 64.0 KiB"),
        "the cut is said"
    );
    assert!(
        page.body.contains("5.0 MiB on the wire"),
        "the wire size is said"
    );
    let listed = get(&st, "/?tag=case:big").await;
    assert_eq!(
        listed.body.matches("<tr class").count() + listed.body.matches("<tr data-id").count(),
        1
    );
    let page = get(&st, &format!("/exchanges/{}", id("utf8"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("caf\u{fffd}"),
        "invalid bytes show as U+FFFD"
    );
}

#[tokio::test]
async fn the_listener_serves_over_tcp_and_checks_the_host_it_bound() {
    let mut r = rig().await;
    let _ = r.send(Method::GET, "/v1/models", Bytes::new(), &[]).await;
    r.flush().await;
    let (st, _db) = r
        .stop_and_open(UiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..UiConfig::default()
        })
        .await;
    let ui = agentcap_ui::start(st).await.expect("binds");
    let addr = ui.addr();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let fetch = |host: String| {
        let client = client.clone();
        async move {
            let req = http::Request::builder()
                .uri(format!("http://{addr}/"))
                .header("host", host)
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            let resp = client.request(req).await.expect("the UI answers");
            (resp.status(), resp.headers().clone())
        }
    };
    let (status, headers) = fetch(addr.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-security-policy"], guard::CSP);
    assert_eq!(
        fetch(format!("localhost:{}", addr.port())).await.0,
        StatusCode::OK
    );
    assert_eq!(
        fetch(format!("rebound.example:{}", addr.port())).await.0,
        StatusCode::MISDIRECTED_REQUEST
    );
    ui.shutdown().await;
}
