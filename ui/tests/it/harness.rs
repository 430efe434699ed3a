//! A twin, a proxy in front of it recording into a temp dir, a scripted session (with hostile content), and
//! helpers that call the UI's `handle` directly.

use std::sync::Arc;
use std::time::Duration;

use agentcap_proxy::recorder::RecorderConfig;
use agentcap_proxy::{ProxyConfig, RunningProxy};
use agentcap_sim::{RunningSim, SimConfig};
use agentcap_ui::{ConnDb, UiConfig, UiState};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Hostile text: markup, an event handler, a `javascript:` URL, a quote-breaking attribute.
pub const HOSTILE: &str = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"><a href=\"javascript:window.pwned=3\">x</a>\"'><svg onload=alert(1)>";

pub struct Rig {
    pub _twin: RunningSim,
    pub proxy: Option<RunningProxy>,
    pub dir: tempfile::TempDir,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub async fn rig() -> Rig {
    rig_with(|_| {}).await
}

/// A rig whose proxy configuration `tweak` adjusts (e.g. an admin listener with the UI mounted).
pub async fn rig_with(tweak: impl FnOnce(&mut ProxyConfig)) -> Rig {
    let twin = agentcap_sim::start(SimConfig::default())
        .await
        .expect("twin starts");
    let dir = tempfile::tempdir().unwrap();
    let rec = RecorderConfig {
        db_path: dir.path().join("rec.duckdb"),
        ..RecorderConfig::default()
    };
    let mut cfg = ProxyConfig::new(twin.url().parse().unwrap(), rec);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.admin_listen = None;
    cfg.shutdown_grace = Duration::from_secs(5);
    tweak(&mut cfg);
    let proxy = agentcap_proxy::start(cfg).await.expect("proxy starts");
    Rig {
        _twin: twin,
        proxy: Some(proxy),
        dir,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Rig {
    pub fn proxy(&self) -> &RunningProxy {
        self.proxy.as_ref().expect("running")
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("rec.duckdb")
    }

    /// Sends raw bytes through the proxy.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Bytes) {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy().addr()))
            .header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .client
            .request(b.body(Full::new(body)).unwrap())
            .await
            .expect("request succeeds");
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Value {
        let (status, body) = self
            .send(method.clone(), path, Bytes::from(body.to_string()), headers)
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn flush(&self) {
        self.proxy()
            .recorder()
            .flush()
            .await
            .expect("recorder flushes");
    }

    /// Stops the proxy (everything committed) and opens the file read-only, as `agentcap ui --db` does.
    pub async fn stop_and_open(&mut self, cfg: UiConfig) -> (UiState, Arc<ConnDb>) {
        self.proxy
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("proxy stops");
        let db = Arc::new(ConnDb::open_read_only(&self.db_path()).expect("opens read-only"));
        (UiState::new(db.clone(), cfg).expect("valid config"), db)
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// What [`drive`] recorded.
pub struct Story {
    pub root: String,
    pub branch: String,
}

/// A scripted session: a streamed start with a web search, a function call and its (hostile) result
/// streamed back, a restart branch, a handoff, a session and tag header with hostile values.
pub async fn drive(r: &Rig) -> Story {
    let hdr = [
        ("x-agentcap-session", "sess-1"),
        ("x-agentcap-tag-suite", "ui"),
    ];
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
    let helper = r
        .json(
            Method::POST,
            "/v1/agents",
            json!({"model": "mistral-small-latest", "name": "Helper"}),
            &hdr,
        )
        .await;
    let agent = r
        .json(
            Method::POST,
            "/v1/agents",
            json!({"model": "mistral-medium-latest", "name": "Searcher", "tools": [{"type": "web_search"}, weather],
                   "handoffs": [s(&helper["id"])]}),
            &hdr,
        )
        .await;
    let agent = s(&agent["id"]);
    let start = r
        .json(
            Method::POST,
            "/v1/conversations",
            json!({"agent_id": agent, "inputs": format!("Who won the cup? {HOSTILE}")}),
            &hdr,
        )
        .await;
    let root = s(&start["conversation_id"]);
    let first_answer = s(&start["outputs"].as_array().unwrap().last().unwrap()["id"]);
    let call = r
        .json(
            Method::POST,
            &format!("/v1/conversations/{root}"),
            json!({"inputs": "What is the weather in Paris? Ask get_weather."}),
            &hdr,
        )
        .await;
    let tool_call_id = s(&call["outputs"][0]["tool_call_id"]);
    let result = json!({"inputs": [{"type": "function.result", "tool_call_id": tool_call_id, "result": HOSTILE}], "stream": true});
    let (status, body) = r
        .send(
            Method::POST,
            &format!("/v1/conversations/{root}"),
            Bytes::from(result.to_string()),
            &[
                ("x-agentcap-session", HOSTILE),
                ("x-agentcap-tag-suite", "ui"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let restart = r
        .json(
            Method::POST,
            &format!("/v1/conversations/{root}/restart"),
            json!({"from_entry_id": first_answer, "inputs": "And the one before?"}),
            &hdr,
        )
        .await;
    let branch = s(&restart["conversation_id"]);
    // A handoff, streamed.
    let (status, _) = r
        .send(
            Method::POST,
            "/v1/conversations",
            Bytes::from(
                json!({"agent_id": agent, "inputs": "handoff please", "stream": true}).to_string(),
            ),
            &hdr,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    r.flush().await;
    Story { root, branch }
}

/// Calls the UI with a loopback Host.
pub async fn get(state: &UiState, path: &str) -> Reply {
    get_with(state, path, &[("host", "127.0.0.1:8790")]).await
}

/// Calls the UI with the given headers.
pub async fn get_with(state: &UiState, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::builder().method(Method::GET).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = agentcap_ui::handle(state, b.body(()).unwrap()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("the UI sends UTF-8"),
    }
}

/// Runs SQL on the read-only state's data source.
pub fn rows(db: &dyn agentcap_ui::Db, sql: &str) -> Vec<Vec<Value>> {
    db.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
}
