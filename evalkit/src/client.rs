//! The runner's HTTP client: starts conversations (streamed or not) and calls chat completions for
//! the judge, over plain HTTP or HTTPS (rustls), tagging every request for the recording proxy and
//! measuring time to first token and total time. One call is one attempt; retrying is the runner's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentcap_proxy::upstream::{ClientOptions, HttpClient};
use agentcap_wire::{ConversationEvent, ConversationUsageInfo, EntryAssembler, SseDecoder};
use bytes::Bytes;
use http::{HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

// The proxy records `SESSION` and `TAG_PREFIX` headers (in `exchanges.session` / `exchanges.tags`) and strips
// them; tags: `eval-item`, `eval-config`, `eval-attempt`, `eval-phase`. The twin puts `UPSTREAM` on every
// response (see `docs/twin.md`); seeing it on any response marks the run "simulated upstream".
use agentcap_wire::vocab::headers::{SESSION, TAG_PREFIX, UPSTREAM, UPSTREAM_SIMULATED};

/// Largest error body kept, in bytes.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Why one attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// The server answered with a non-success status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
        /// The start of the body.
        body: String,
    },
    /// No response: connection refused, reset, TLS failure…
    #[error("connection: {0}")]
    Connection(String),
    /// The response body broke off (reset mid-stream, stream without a final event).
    #[error("stream: {0}")]
    Stream(String),
    /// The stream ended with `conversation.response.error`.
    #[error("error event: {0}")]
    ErrorEvent(String),
    /// The attempt took longer than the per-attempt timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The response could not be understood (never retried).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl AttemptError {
    /// Retried: 429, 5xx, connection errors, broken streams, error events and timeouts. Other 4xx
    /// and unreadable responses are not.
    pub fn retryable(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => *status == 429 || *status >= 500,
            AttemptError::Connection(_)
            | AttemptError::Stream(_)
            | AttemptError::ErrorEvent(_)
            | AttemptError::Timeout(_) => true,
            AttemptError::Protocol(_) => false,
        }
    }

    /// A short class name, stored with every attempt.
    pub fn class(&self) -> &'static str {
        match self {
            AttemptError::Status { status: 429, .. } => "rate_limited",
            AttemptError::Status { status, .. } if *status >= 500 => "server_error",
            AttemptError::Status { .. } => "client_error",
            AttemptError::Connection(_) => "connection",
            AttemptError::Stream(_) => "stream",
            AttemptError::ErrorEvent(_) => "error_event",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Protocol(_) => "protocol",
        }
    }

    /// The HTTP status, when one arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `Retry-After`, when given.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Tags of one request.
#[derive(Debug, Clone)]
pub struct Tags {
    /// Run id (sent as the session).
    pub run_id: String,
    /// Dataset item id.
    pub item: String,
    /// Config name.
    pub config: String,
    /// Attempt id (links the attempt to the proxy's exchange).
    pub attempt: String,
    /// `answer`, `judge` or `setup`.
    pub phase: &'static str,
}

/// Token usage of one answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// Connector tokens.
    pub connector: u64,
    /// Tool name -> calls.
    pub connectors: BTreeMap<String, u64>,
}

impl Usage {
    fn from_wire(u: &ConversationUsageInfo) -> Usage {
        Usage {
            prompt: u.prompt(),
            completion: u.completion(),
            connector: u.connector(),
            connectors: u
                .connector_counts()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// One answered conversation turn.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The conversation's id.
    pub conversation_id: Option<String>,
    /// Text of every `message.output` entry, joined by blank lines.
    pub text: String,
    /// Time to the first `message.output.delta` (stream mode only).
    pub ttft: Option<Duration>,
    /// Time until the response was complete.
    pub total: Duration,
    /// Token usage.
    pub usage: Usage,
    /// `tool.execution` entries in the outputs.
    pub tool_executions: u32,
}

/// A judge reply.
#[derive(Debug, Clone)]
pub struct ChatReply {
    /// The assistant message's text.
    pub text: String,
    /// Time until the response was complete.
    pub total: Duration,
}

pub(crate) type Http = HttpClient<Full<Bytes>>;

/// A client of one base URL (the proxy, or the upstream itself).
#[derive(Clone)]
pub struct ApiClient {
    base: Arc<str>,
    http: Http,
    api_key: Option<Arc<str>>,
    /// Some response carried the twin's `x-agentcap-upstream` header: the upstream is the twin (shared by clones).
    simulated: Arc<AtomicBool>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The text of a content value: a string, or the `text` chunks of an array.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(chunks) => chunks
            .iter()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Answer text and tool executions of a turn's output entries.
pub fn outputs_summary(outputs: &[Value]) -> (String, u32) {
    let mut texts = Vec::new();
    let mut tools = 0u32;
    for o in outputs {
        match o.get("type").and_then(Value::as_str) {
            Some("message.output") => {
                texts.push(content_text(o.get("content").unwrap_or(&Value::Null)));
            }
            Some("tool.execution") => tools += 1,
            _ => {}
        }
    }
    (texts.join("\n\n"), tools)
}

fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A pooled HTTP/1.1 + HTTP/2 client for `http://` and `https://` (the workspace's one builder,
/// [`agentcap_proxy::upstream::http_client`]): webpki roots, 10 s to connect, idle connections closed
/// after 30 s.
pub(crate) fn http_client() -> Result<Http, String> {
    agentcap_proxy::upstream::http_client(&ClientOptions {
        pool_idle_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    })
    .map_err(|e| e.to_string())
}

impl ApiClient {
    /// A client of `base` (`http://host:port[/path]` or `https://…`); `api_key` goes in
    /// `Authorization: Bearer`.
    pub fn new(base: &str, api_key: Option<String>) -> Result<ApiClient, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("{base:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") if uri.authority().is_some() => {}
            _ => return Err(format!("{base:?} must be an http:// or https:// URL")),
        }
        let http = http_client()?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').into(),
            http,
            api_key: api_key.map(Into::into),
            simulated: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether any response so far (of this client or a clone) came from agentcap's twin.
    pub fn saw_simulated_upstream(&self) -> bool {
        self.simulated.load(Ordering::Relaxed)
    }

    fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        tags: &Tags,
    ) -> Result<Request<Full<Bytes>>, AttemptError> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(SESSION, tags.run_id.as_str())
            .header(format!("{TAG_PREFIX}eval-attempt"), tags.attempt.as_str())
            .header(format!("{TAG_PREFIX}eval-phase"), tags.phase);
        if !tags.item.is_empty() {
            b = b.header(format!("{TAG_PREFIX}eval-item"), tags.item.as_str());
        }
        if !tags.config.is_empty() {
            b = b.header(format!("{TAG_PREFIX}eval-config"), tags.config.as_str());
        }
        if let Some(k) = &self.api_key {
            b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        b.body(body)
            .map_err(|e| AttemptError::Protocol(format!("bad request: {e}")))
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, AttemptError> {
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| AttemptError::Connection(error_chain(&e)))?;
        if resp.headers().get(UPSTREAM).is_some_and(|v| {
            v.as_bytes()
                .eq_ignore_ascii_case(UPSTREAM_SIMULATED.as_bytes())
        }) {
            self.simulated.store(true, Ordering::Relaxed);
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(parse_retry_after);
        let body = read_limited(resp.into_body(), MAX_ERROR_BODY).await;
        Err(AttemptError::Status {
            status: status.as_u16(),
            retry_after,
            body,
        })
    }

    /// A JSON request with a JSON answer (agents create / get).
    pub async fn json(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        tags: &Tags,
    ) -> Result<Value, AttemptError> {
        let req = self.request(method, path, body, tags)?;
        let resp = self.send(req).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| AttemptError::Stream(error_chain(&e)))?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map_err(|e| AttemptError::Protocol(format!("response is not JSON: {e}")))
    }

    /// `POST /v1/conversations` with `body` (which carries `stream`); reads the whole answer.
    pub async fn start_conversation(
        &self,
        body: &Value,
        tags: &Tags,
    ) -> Result<Answer, AttemptError> {
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let t0 = Instant::now();
        let req = self.request(http::Method::POST, "/v1/conversations", Some(body), tags)?;
        let resp = self.send(req).await?;
        let is_sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !stream || !is_sse {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| AttemptError::Stream(error_chain(&e)))?
                .to_bytes();
            let total = t0.elapsed();
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| AttemptError::Protocol(format!("response is not JSON: {e}")))?;
            let outputs = v
                .get("outputs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let (text, tool_executions) = outputs_summary(&outputs);
            let usage = v
                .get("usage")
                .cloned()
                .and_then(|u| serde_json::from_value::<ConversationUsageInfo>(u).ok())
                .map(|u| Usage::from_wire(&u))
                .unwrap_or_default();
            return Ok(Answer {
                conversation_id: v
                    .get("conversation_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                text,
                ttft: None,
                total,
                usage,
                tool_executions,
            });
        }
        let mut body = resp.into_body();
        let mut decoder = SseDecoder::new();
        let mut assembler = EntryAssembler::new();
        let mut ttft = None;
        let mut finished = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| AttemptError::Stream(error_chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let events = decoder
                .push(&data)
                .map_err(|e| AttemptError::Protocol(format!("SSE: {e}")))?;
            for ev in events {
                if ev.is_done_sentinel() {
                    continue;
                }
                let ev = ConversationEvent::from_sse(&ev)
                    .map_err(|e| AttemptError::Protocol(format!("event: {e}")))?;
                match &ev {
                    ConversationEvent::MessageOutputDelta(_) if ttft.is_none() => {
                        ttft = Some(t0.elapsed());
                    }
                    ConversationEvent::ResponseDone(_) | ConversationEvent::ResponseError(_) => {
                        finished = true;
                    }
                    _ => {}
                }
                assembler.push(&ev);
            }
        }
        let total = t0.elapsed();
        let turn = assembler.finish();
        if let Some(err) = &turn.error {
            return Err(AttemptError::ErrorEvent(
                serde_json::to_string(err).unwrap_or_else(|_| "conversation.response.error".into()),
            ));
        }
        if !finished || turn.usage.is_none() {
            return Err(AttemptError::Stream(
                "the stream ended before conversation.response.done".into(),
            ));
        }
        let outputs: Vec<Value> = turn.outputs.iter().map(|e| e.to_value()).collect();
        let (text, tool_executions) = outputs_summary(&outputs);
        Ok(Answer {
            conversation_id: turn.conversation_id.clone(),
            text,
            ttft,
            total,
            usage: turn
                .usage
                .as_ref()
                .map(Usage::from_wire)
                .unwrap_or_default(),
            tool_executions,
        })
    }

    /// `POST /v1/chat/completions` (not streamed) with one user message.
    pub async fn chat(
        &self,
        model: &str,
        prompt: &str,
        tags: &Tags,
    ) -> Result<ChatReply, AttemptError> {
        let t0 = Instant::now();
        let body = serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
        });
        let v = self
            .json(
                http::Method::POST,
                "/v1/chat/completions",
                Some(&body),
                tags,
            )
            .await?;
        let content = v
            .pointer("/choices/0/message/content")
            .ok_or_else(|| AttemptError::Protocol("no choices[0].message.content".into()))?;
        Ok(ChatReply {
            text: content_text(content),
            total: t0.elapsed(),
        })
    }
}

async fn read_limited(mut body: hyper::body::Incoming, max: usize) -> String {
    let mut buf = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(d) = frame.into_data() {
            let room = max.saturating_sub(buf.len());
            buf.extend_from_slice(&d[..d.len().min(room)]);
            if buf.len() >= max {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
