//! A minimal HTTP client for the tests, plus a helper that starts a twin on 127.0.0.1:0.

use agentcap_sim::{RunningSim, SimConfig};
use agentcap_wire::sse::{SseDecoder, SseEvent};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Twin {
    pub running: RunningSim,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn events(&self) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut evs = d.push(&self.body).expect("valid SSE");
        evs.extend(d.finish().expect("valid SSE end"));
        evs
    }

    pub fn event_data(&self) -> Vec<Value> {
        self.events()
            .iter()
            .map(|e| serde_json::from_str(&e.data).expect("event data is JSON"))
            .collect()
    }
}

pub async fn twin(cfg: SimConfig) -> Twin {
    let running = agentcap_sim::start(cfg).await.expect("twin starts");
    let client = Client::builder(TokioExecutor::new()).build_http();
    Twin { running, client }
}

pub async fn default_twin() -> Twin {
    twin(SimConfig::default()).await
}

impl Twin {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.running.url()));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(v.to_string()))),
            None => b.body(Full::new(Bytes::new())),
        }
        .unwrap();
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body failed: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, body, &[])
            .await
            .expect("request succeeds")
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method.clone(), path, body).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }
}

/// Asserts an id is `prefix` + 32 lowercase hex.
pub fn assert_id(v: &Value, prefix: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {v}"));
    let hex = s
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{s} lacks prefix {prefix}"));
    assert_eq!(hex.len(), 32, "{s}");
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{s}"
    );
}

/// Asserts a timestamp has the API's shape: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn assert_ts(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    assert_eq!(s.len(), 27, "{s}");
    assert_eq!(&s[10..11], "T", "{s}");
    assert!(s.ends_with('Z'), "{s}");
}
