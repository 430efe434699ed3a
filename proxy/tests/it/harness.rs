//! Test harness: a twin, a proxy in front of it with a DuckDB file in a temp dir, and an HTTP client.

use std::path::PathBuf;
use std::time::Duration;

use agentcap_proxy::recorder::RecorderConfig;
use agentcap_proxy::{ProxyConfig, RunningProxy};
use agentcap_sim::{RunningSim, SimConfig};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Rig {
    pub _twin: RunningSim,
    pub proxy: Option<RunningProxy>,
    pub dir: tempfile::TempDir,
    pub client: Client<HttpConnector, Full<Bytes>>,
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
}

pub fn proxy_config(upstream: &str, dir: &std::path::Path) -> ProxyConfig {
    let rec = RecorderConfig {
        db_path: dir.join("rec.duckdb"),
        ..RecorderConfig::default()
    };
    let mut cfg = ProxyConfig::new(upstream.parse().unwrap(), rec);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.shutdown_grace = Duration::from_secs(5);
    cfg
}

pub async fn rig_with(sim: SimConfig, tweak: impl FnOnce(&mut ProxyConfig)) -> Rig {
    let twin = agentcap_sim::start(sim).await.expect("twin starts");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = proxy_config(&twin.url(), dir.path());
    tweak(&mut cfg);
    let proxy = agentcap_proxy::start(cfg).await.expect("proxy starts");
    let client = Client::builder(TokioExecutor::new()).build_http();
    Rig {
        _twin: twin,
        proxy: Some(proxy),
        dir,
        client,
    }
}

pub async fn rig() -> Rig {
    rig_with(SimConfig::default(), |_| {}).await
}

impl Rig {
    pub fn proxy(&self) -> &RunningProxy {
        self.proxy.as_ref().expect("running")
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy().addr())
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("rec.duckdb")
    }

    pub async fn send_to(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            b = b.header("content-type", "application/json");
        }
        let req = b.body(Full::new(body.unwrap_or_default())).unwrap();
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

    pub async fn via_proxy(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        self.send_to(
            &self.proxy_url(),
            method,
            path,
            body.map(|v| Bytes::from(v.to_string())),
            headers,
        )
        .await
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self
            .via_proxy(method.clone(), path, body, &[])
            .await
            .expect("request succeeds");
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    pub async fn flush(&self) {
        self.proxy()
            .recorder()
            .flush()
            .await
            .expect("recorder flushes");
    }

    /// Runs a read-only query and returns its rows.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        self.proxy()
            .recorder()
            .query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows
    }

    pub fn one(&self, sql: &str) -> Value {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }
}

/// A JSON column's value: DuckDB without its JSON extension returns the JSON text as a string.
pub fn as_json(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

/// Polls `check` until it gives a value, failing with `what` after `bound`: the one way the async
/// tests wait for background work (never a timing assertion).
pub async fn poll_until<T>(
    what: &str,
    bound: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
