//! Transparency: through the proxy a client gets the bytes it would get directly, streams included.

use std::convert::Infallible;

use agentcap_sim::SimConfig;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::harness::{proxy_config, rig};

/// Replaces ids and timestamps with placeholders numbered by first appearance, so two runs compare byte for byte.
fn normalize(text: &str) -> String {
    let id = regex::Regex::new(r"(ag|conv|msg|fc|tool_exec|handoff)_[0-9a-f]{32}").unwrap();
    let ts = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z").unwrap();
    let call = regex::Regex::new(r#""tool_call_id":"[A-Za-z0-9]{9}""#).unwrap();
    let mut seen: Vec<String> = Vec::new();
    let out = id.replace_all(text, |c: &regex::Captures<'_>| {
        let s = c[0].to_string();
        let n = seen.iter().position(|x| *x == s).unwrap_or_else(|| {
            seen.push(s.clone());
            seen.len() - 1
        });
        format!("{}_<{n}>", &c[1])
    });
    let out = ts.replace_all(&out, "<ts>");
    call.replace_all(&out, r#""tool_call_id":"<call>""#)
        .into_owned()
}

#[tokio::test]
async fn bodies_and_streams_match_direct_calls() {
    // Two identical twins: one called directly, one through the proxy.
    let direct = agentcap_sim::start(SimConfig::default()).await.unwrap();
    let r = rig().await;
    let steps: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (
            Method::POST,
            "/v1/agents".into(),
            Some(
                json!({"model": "m", "name": "web", "tools": [{"type": "web_search"}, {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]}),
            ),
        ),
        (
            Method::POST,
            "/v1/conversations".into(),
            Some(json!({"agent_id": "$agent", "inputs": "Who won the last cup?"})),
        ),
        (
            Method::POST,
            "/v1/conversations/$conv".into(),
            Some(json!({"inputs": "please lookup the score", "stream": true})),
        ),
        (
            Method::POST,
            "/v1/conversations/$conv".into(),
            Some(json!({"inputs": "and in words?", "stream": true})),
        ),
        (Method::GET, "/v1/conversations/$conv/history".into(), None),
        (
            Method::POST,
            "/v1/conversations".into(),
            Some(json!({"model": "m", "inputs": "x", "bogus": 1})),
        ),
        (
            Method::GET,
            "/v1/conversations/conv_00000000000000000000000000000000".into(),
            None,
        ),
    ];
    let mut outputs = Vec::new();
    for base in [direct.url(), r.proxy_url()] {
        let (mut agent, mut conv) = (String::new(), String::new());
        let mut bodies = Vec::new();
        for (m, path, body) in &steps {
            let path = path.replace("$conv", &conv);
            let body = body
                .as_ref()
                .map(|b| Bytes::from(b.to_string().replace("$agent", &agent)));
            let resp = r.send_to(&base, m.clone(), &path, body, &[]).await.unwrap();
            let text = String::from_utf8(resp.body.to_vec()).unwrap();
            if agent.is_empty() {
                agent = resp.json()["id"].as_str().unwrap().to_string();
            } else if conv.is_empty() {
                conv = resp.json()["conversation_id"].as_str().unwrap().to_string();
            }
            bodies.push((
                resp.status,
                resp.headers.get("content-type").cloned(),
                normalize(&text),
            ));
        }
        outputs.push(bodies);
    }
    assert_eq!(outputs[0].len(), outputs[1].len());
    for (i, (a, b)) in outputs[0].iter().zip(&outputs[1]).enumerate() {
        assert_eq!(a, b, "step {i} differs through the proxy");
    }
    assert!(outputs[1][2].2.contains("event: function.call.delta"));
}

#[tokio::test]
async fn exact_bytes_of_an_odd_upstream_pass_unchanged() {
    // An upstream that answers gzip-compressed JSON split in uneven chunks, with an unusual header.
    let payload =
        json!({"object": "conversation.response", "outputs": [], "extra_field": {"kept": true}})
            .to_string();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(payload.as_bytes()).unwrap();
        Bytes::from(e.finish().unwrap())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gz2 = gz.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let gz = gz2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let gz = gz.clone();
                    async move {
                        let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![
                            Ok(http_body::Frame::data(gz.slice(..3))),
                            Ok(http_body::Frame::data(gz.slice(3..))),
                        ];
                        let body = StreamBody::new(futures_util::stream::iter(chunks));
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .header("content-encoding", "gzip")
                                .header("x-odd", "1")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let proxy = agentcap_proxy::start(proxy_config(&format!("http://{addr}"), dir.path()))
        .await
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{}/v1/conversations", proxy.addr()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            b"{\"inputs\":\"x\",\"model\":\"m\"}",
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["x-odd"], "1");
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        got, gz,
        "compressed bytes pass through compressed and unchanged"
    );
    proxy.recorder().flush().await.unwrap();
    let rows = proxy
        .recorder()
        .query("SELECT response_body FROM exchanges")
        .unwrap()
        .rows;
    assert_eq!(
        crate::harness::as_json(&rows[0][0])["extra_field"],
        json!({"kept": true}),
        "the recorder decoded its copy"
    );
    proxy.shutdown().await.unwrap();
}
