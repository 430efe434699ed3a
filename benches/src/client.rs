//! The load generator's HTTP side: targets (base URLs), a pooled HTTP/HTTPS client, and the conversation
//! requests every bench sends.

use std::path::Path;
use std::time::Duration;

use agentcap_proxy::upstream::{self, ClientOptions};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::BenchError;

/// The client every bench uses: HTTP/1.1 keep-alive (h2 when a TLS target offers it), pooled per target.
pub type HttpClient = upstream::HttpClient<Full<Bytes>>;

/// One endpoint under test: a base URL such as `http://127.0.0.1:8787` or `https://api.mistral.ai`.
#[derive(Debug, Clone)]
pub struct Target {
    /// What the report calls it (`target`, `compare`).
    pub label: String,
    /// The base URL as given.
    pub url: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
}

impl Target {
    /// Parses a base URL (`http` or `https`, a host, an optional base path; no query).
    pub fn parse(label: &str, url: &str) -> Result<Target, BenchError> {
        let bad = |why: &str| BenchError::InvalidUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("no scheme"))?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(bad("the scheme must be http or https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("a base URL has no query"));
        }
        Ok(Target {
            label: label.to_owned(),
            url: url.to_owned(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The full URI of `path` (which starts with `/`) under this target.
    pub fn uri(&self, path: &str) -> Result<Uri, BenchError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path}", self.base_path))
            .build()
            .map_err(|e| BenchError::InvalidOption(format!("path {path:?}: {e}")))
    }
}

/// Builds the client ([`agentcap_proxy::upstream::http_client`]): webpki roots plus an optional extra
/// CA (PEM), TCP_NODELAY, 10 s to connect, idle connections kept 90 s.
pub fn client(ca: Option<&Path>) -> Result<HttpClient, BenchError> {
    agentcap_proxy::upstream::http_client(&ClientOptions {
        extra_ca: ca.map(Path::to_path_buf),
        ..ClientOptions::default()
    })
    .map_err(|e| BenchError::Tls(e.to_string()))
}

/// Who answers a conversation start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaker {
    /// `agent_id`.
    Agent(String),
    /// `model`.
    Model(String),
}

impl Default for Speaker {
    fn default() -> Self {
        Speaker::Model(DEFAULT_MODEL.to_owned())
    }
}

/// The model a conversation uses when neither an agent nor a model is given.
pub const DEFAULT_MODEL: &str = "mistral-medium-latest";

/// The input sent when none is given: a question long enough for a few dozen small delta events.
pub const DEFAULT_INPUT: &str = "Give me a short overview of how server-sent events carry a streamed answer, \
    token by token, from the model to the client application.";

/// What every request of a run carries besides its body.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    /// Path under the target's base URL.
    pub path: String,
    /// `Authorization: Bearer` key, if any.
    pub api_key: Option<String>,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body, sent as is.
    pub body: Bytes,
}

impl RequestSpec {
    /// A conversation start (`POST /v1/conversations`) for `speaker` with `input`, streamed or not.
    pub fn conversation_start(speaker: &Speaker, input: &str, stream: bool) -> RequestSpec {
        let mut body = Map::new();
        body.insert("inputs".into(), json!(input));
        match speaker {
            Speaker::Agent(id) => body.insert("agent_id".into(), json!(id)),
            Speaker::Model(m) => body.insert("model".into(), json!(m)),
        };
        body.insert("stream".into(), json!(stream));
        RequestSpec {
            path: "/v1/conversations".to_owned(),
            body: Bytes::from(Value::Object(body).to_string()),
            ..RequestSpec::default()
        }
    }

    /// The request for `target`.
    pub fn request(&self, target: &Target) -> Result<Request<Full<Bytes>>, BenchError> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(target.uri(&self.path)?)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if let Some(key) = &self.api_key {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(self.body.clone()))
            .map_err(|e| BenchError::InvalidOption(format!("request: {e}")))
    }
}

/// Parses `NAME: VALUE` (as given to `--header`).
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), BenchError> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| BenchError::InvalidOption(format!("header {s:?}: expected NAME: VALUE")))?;
    let name = HeaderName::from_bytes(k.trim().as_bytes())
        .map_err(|e| BenchError::InvalidOption(format!("header name {k:?}: {e}")))?;
    let value = HeaderValue::from_str(v.trim())
        .map_err(|e| BenchError::InvalidOption(format!("header value of {k:?}: {e}")))?;
    Ok((name, value))
}

/// Parses a duration: `10s`, `500ms`, `2m`, `250us`, or a bare number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use us, ms, s or m)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_their_base_path() {
        let t = Target::parse("t", "http://127.0.0.1:8787/").unwrap();
        assert_eq!(
            t.uri("/v1/conversations").unwrap().to_string(),
            "http://127.0.0.1:8787/v1/conversations"
        );
        let t = Target::parse("t", "https://example.test/api").unwrap();
        assert_eq!(
            t.uri("/v1/conversations").unwrap().to_string(),
            "https://example.test/api/v1/conversations"
        );
        for bad in ["127.0.0.1:8080", "ftp://x/", "http://x/?a=1", "not a url"] {
            assert!(Target::parse("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conversation_bodies() {
        let s = RequestSpec::conversation_start(&Speaker::Agent("ag_1".into()), "hi", true);
        let v: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(
            v,
            json!({"inputs": "hi", "agent_id": "ag_1", "stream": true})
        );
        let s = RequestSpec::conversation_start(&Speaker::default(), "hi", false);
        let v: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(
            v,
            json!({"inputs": "hi", "model": DEFAULT_MODEL, "stream": false})
        );
        let mut s = s;
        s.api_key = Some("k".into());
        s.headers
            .push(parse_header("X-Agentcap-Session: bench").unwrap());
        let t = Target::parse("t", "http://127.0.0.1:1").unwrap();
        let r = s.request(&t).unwrap();
        assert_eq!(r.headers()["authorization"], "Bearer k");
        assert_eq!(r.headers()["x-agentcap-session"], "bench");
        assert_eq!(r.method(), Method::POST);
    }

    #[test]
    fn headers_and_durations() {
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
