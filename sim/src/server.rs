//! The twin's HTTP server: listener, routing, auth and faults, and every Agents / Conversations operation.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::capture::{Capture, Origin};
use crate::config::{FaultKind, SimConfig};
use crate::det::SeqRng;
use crate::engine::{self, Speaker, TurnInput};
use crate::http::{Body, Query, error_body, full, json_response, no_content, read_body};
use crate::ids;
use crate::knowledge::Knowledge;
use crate::state::{AgentRecord, AgentVersion, Alias, Conversation, Party, State};
use crate::turn::{self, Emitter, Ended};
use crate::validate::{self, Problems};
use crate::{SimError, chat};
use agentcap_wire::vocab::{Operation, headers};

/// Header that injects a fault into one request.
pub const FAULT_HEADER: &str = headers::SIM_FAULT;

/// The twin's shared state and configuration.
#[derive(Debug)]
pub struct Sim {
    /// Configuration (validated).
    pub cfg: SimConfig,
    /// Agents and conversations.
    pub state: Mutex<State>,
    /// Knowledge mode dataset.
    pub knowledge: Option<Knowledge>,
    /// Body capture file.
    pub capture: Option<Capture>,
    /// Requests served over HTTP/2 (so tests can tell which protocol a client negotiated).
    pub h2_requests: std::sync::atomic::AtomicU64,
    rng: SeqRng,
}

/// A running twin; dropping it without [`RunningSim::shutdown`] leaves it serving until the runtime ends.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    sim: Arc<Sim>,
}

impl RunningSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.sim.cfg.tls_ca_out.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The shared state (for tests and embedding).
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the accept loop ends (it ends on shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

impl Sim {
    /// Builds the twin from a config: validates it, loads the knowledge file, opens the capture.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        cfg.validate()?;
        let knowledge = match &cfg.knowledge {
            Some(p) => Some(
                Knowledge::load(p, cfg.seed, cfg.p_closed, cfg.p_search, cfg.abstain_ratio)
                    .map_err(|e| {
                        SimError::Config(format!("knowledge file {}: {e}", p.display()))
                    })?,
            ),
            None => None,
        };
        let capture = match &cfg.capture {
            Some(p) => Some(
                Capture::open(p)
                    .map_err(|e| SimError::Io(format!("capture file {}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(Self {
            rng: SeqRng::new(cfg.seed),
            cfg,
            state: Mutex::new(State::default()),
            knowledge,
            capture,
            h2_requests: Default::default(),
        })
    }

    fn draw_fault(&self) -> Option<FaultKind> {
        if self.cfg.fault_rates.is_empty() {
            return None;
        }
        let u = self.rng.next_unit();
        let mut acc = 0.0;
        for f in &self.cfg.fault_rates {
            acc += f.rate;
            if u < acc {
                return Some(f.kind);
            }
        }
        None
    }
}

/// Binds `cfg.listen` and serves until shut down.
pub async fn start(cfg: SimConfig) -> Result<RunningSim, SimError> {
    let listen = cfg.listen;
    let sim = Arc::new(Sim::new(cfg)?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| SimError::Io(format!("bind {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SimError::Io(e.to_string()))?;
    let tls = match &sim.cfg.tls_ca_out {
        Some(path) => {
            let t = crate::tls::generate()?;
            std::fs::write(path, &t.ca_pem)
                .map_err(|e| SimError::Io(format!("write CA to {}: {e}", path.display())))?;
            Some(t.acceptor)
        }
        None => None,
    };
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let sim2 = sim.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let sim = sim2.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let sim = sim.clone();
                            async move { handle(sim, req).await.map(announce) }
                        });
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let served = match tls {
                            None => builder.serve_connection(TokioIo::new(stream), svc).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                                Err(e) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                            },
                        };
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
    });
    Ok(RunningSim {
        addr,
        stop: Some(stop_tx),
        task,
        sim,
    })
}

/// Marks a response as the twin's (`x-agentcap-upstream: simulated`), whatever the route or status.
fn announce(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        headers::UPSTREAM,
        HeaderValue::from_static(headers::UPSTREAM_SIMULATED),
    );
    r
}

/// What a handler returns: a response, or a cut connection.
type Reply = Result<Response<Body>, std::io::Error>;

struct Ctx {
    sim: Arc<Sim>,
    origin: Origin,
    fault: Option<FaultKind>,
}

impl Ctx {
    fn json(&self, status: StatusCode, v: Value) -> Reply {
        if let Some(c) = &self.sim.capture {
            c.json(&self.origin, status.as_u16(), &v);
        }
        Ok(json_response(status, &v))
    }

    fn not_found(&self, what: &str) -> Reply {
        self.json(
            StatusCode::NOT_FOUND,
            error_body(
                &format!("{what} not found"),
                "invalid_request_error",
                json!("not_found"),
            ),
        )
    }

    fn bad_request(&self, msg: &str) -> Reply {
        self.json(
            StatusCode::BAD_REQUEST,
            error_body(msg, "invalid_request_error", Value::Null),
        )
    }

    fn invalid(&self, p: Problems) -> Reply {
        self.json(StatusCode::UNPROCESSABLE_ENTITY, p.into_body())
    }
}

/// The operation a request is, for the operations the twin serves ([`Operation::Other`] otherwise).
fn operation(method: &Method, path: &str, stream: bool) -> Operation {
    match Operation::classify(method.as_str(), path, stream) {
        Operation::AgentsCompletions | Operation::AgentsCompletionsStream => Operation::Other,
        op => op,
    }
}

/// The OpenAPI operation id the capture file names (`unknown` for what the twin does not serve).
fn operation_id(op: Operation) -> &'static str {
    op.operation_id().unwrap_or("unknown")
}

fn known_path(segs: &[&str]) -> bool {
    matches!(
        segs,
        ["v1", "agents"]
            | ["v1", "agents", _]
            | ["v1", "agents", _, "version" | "versions" | "aliases"]
            | ["v1", "agents", _, "versions", _]
            | ["v1", "conversations"]
            | ["v1", "conversations", _]
            | ["v1", "conversations", _, "history" | "messages" | "restart"]
            | ["v1", "chat", "completions"]
    )
}

async fn handle(sim: Arc<Sim>, req: Request<Incoming>) -> Reply {
    if req.version() == http::Version::HTTP_2 {
        sim.h2_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();

    if let Some(key) = &sim.cfg.api_key {
        let ok = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| k == key);
        if !ok {
            let v = json!({"message": "Unauthorized", "request_id": uuid::Uuid::now_v7().simple().to_string()});
            let origin = Origin {
                method: parts.method.to_string(),
                path: path.clone(),
                operation: operation_id(operation(&parts.method, &path, false)),
            };
            if let Some(c) = &sim.capture {
                c.json(&origin, 401, &v);
            }
            return Ok(json_response(StatusCode::UNAUTHORIZED, &v));
        }
    }

    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let has_body =
        matches!(parts.method, Method::POST | Method::PATCH | Method::PUT) && !bytes.is_empty();
    let parsed: Result<Value, serde_json::Error> = if has_body {
        serde_json::from_slice(&bytes)
    } else {
        Ok(Value::Null)
    };
    let stream = parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("stream"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let op = operation(&parts.method, &path, stream);
    let forced: Option<FaultKind> = parts
        .headers
        .get(headers::SIM_FAULT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let eligible = op.is_turn() || op.base() == Operation::ChatCompletions;
    let fault = forced.or_else(|| if eligible { sim.draw_fault() } else { None });
    let ctx = Ctx {
        sim: sim.clone(),
        origin: Origin {
            method: parts.method.to_string(),
            path: path.clone(),
            operation: operation_id(op),
        },
        fault,
    };

    if op == Operation::Other {
        if known_path(&segs) {
            return ctx.json(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"detail": "Method Not Allowed"}),
            );
        }
        return ctx.json(StatusCode::NOT_FOUND, json!({"detail": "Not Found"}));
    }

    match fault {
        Some(FaultKind::RateLimited) => {
            let mut r = ctx.json(StatusCode::TOO_MANY_REQUESTS, json!({"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited", "param": null, "code": "1300"}))?;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(r);
        }
        Some(FaultKind::Internal) => {
            return ctx.json(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(
                    "Internal server error (simulated upstream fault)",
                    "server_error",
                    Value::Null,
                ),
            );
        }
        Some(FaultKind::Unavailable) => {
            return ctx.json(
                StatusCode::SERVICE_UNAVAILABLE,
                error_body(
                    "Service unavailable (simulated upstream fault)",
                    "server_error",
                    Value::Null,
                ),
            );
        }
        _ => {}
    }

    let body = match parsed {
        Ok(v) => v,
        Err(e) => {
            return ctx.invalid(Problems(
                validate::json_invalid(&e)["detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            ));
        }
    };

    let id = segs.get(2).copied().unwrap_or("");
    use Operation as O;
    match op.base() {
        O::AgentsCreate => agents_create(&ctx, &body),
        O::AgentsList => agents_list(&ctx, &query, false),
        O::AgentsListPages => agents_list(&ctx, &query, true),
        O::AgentsGet => agents_get(&ctx, id, query.get("agent_version")),
        O::AgentsUpdate => agents_update(&ctx, id, &body),
        O::AgentsDelete => agents_delete(&ctx, id),
        O::AgentsUpdateVersion => agents_switch(&ctx, id, &query, &body),
        O::AgentsListVersions => agents_versions(&ctx, id, &query),
        O::AgentsGetVersion => agents_get(&ctx, id, segs.get(4).copied()),
        O::AgentsAliasUpsert => alias_put(&ctx, id, &query),
        O::AgentsAliasList => alias_list(&ctx, id),
        O::AgentsAliasDelete => alias_delete(&ctx, id, &query),
        O::ConversationsStart => conv_start(ctx, body, stream).await,
        O::ConversationsList => conv_list(&ctx, &query),
        O::ConversationsGet => conv_get(&ctx, id),
        O::ConversationsDelete => conv_delete(&ctx, id),
        O::ConversationsAppend => conv_append(ctx, id.to_string(), body, stream).await,
        O::ConversationsHistory => conv_history(&ctx, id, false),
        O::ConversationsMessages => conv_history(&ctx, id, true),
        O::ConversationsRestart => conv_restart(ctx, id.to_string(), body, stream).await,
        O::ChatCompletions => chat::completions(&ctx.sim, &ctx.origin, ctx.fault, body).await,
        _ => ctx.json(StatusCode::NOT_FOUND, json!({"detail": "Not Found"})),
    }
}

// ---------------------------------------------------------------------------------------------
// Agents

const COMPLETION_ARG_KEYS: [&str; 11] = [
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "temperature",
    "top_p",
    "max_tokens",
    "random_seed",
    "prediction",
    "response_format",
    "tool_choice",
    "reasoning_effort",
];

/// A full completion-args object: every key present, null unless set, `tool_choice` defaulting to `auto`.
pub fn full_completion_args(given: Option<&Value>) -> Value {
    let mut out = Map::new();
    for k in COMPLETION_ARG_KEYS {
        let v = given.and_then(|g| g.get(k)).cloned().unwrap_or(Value::Null);
        let v = if k == "tool_choice" && v.is_null() {
            json!("auto")
        } else {
            v
        };
        out.insert(k.to_string(), v);
    }
    Value::Object(out)
}

/// Tools as the API echoes them: `type` filled in, function tools with `strict` defaulting to false.
pub fn normalize_tools(tools: Option<&Value>) -> Value {
    let Some(Value::Array(list)) = tools else {
        return json!([]);
    };
    Value::Array(
        list.iter()
            .map(|t| {
                let mut t = t.as_object().cloned().unwrap_or_default();
                let ty = t
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("function")
                    .to_string();
                if ty == "function" {
                    let mut out = Map::new();
                    out.insert("type".into(), json!("function"));
                    let mut func = t
                        .remove("function")
                        .and_then(|f| f.as_object().cloned())
                        .unwrap_or_default();
                    func.entry("strict").or_insert(json!(false));
                    out.insert("function".into(), Value::Object(func));
                    Value::Object(out)
                } else {
                    let mut out = Map::new();
                    out.insert("type".into(), json!(ty));
                    t.remove("type");
                    out.extend(t);
                    Value::Object(out)
                }
            })
            .collect(),
    )
}

fn agent_config(
    body: &Map<String, Value>,
    prev: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let pick = |k: &str, default: Value| -> Value {
        match (body.get(k), prev.and_then(|p| p.get(k))) {
            (Some(v), Some(old)) if v.is_null() && matches!(k, "model" | "name") => old.clone(),
            (Some(v), _) => v.clone(),
            (None, Some(old)) => old.clone(),
            (None, None) => default,
        }
    };
    let mut c = Map::new();
    c.insert("model".into(), pick("model", json!("")));
    c.insert("name".into(), pick("name", json!("")));
    c.insert("description".into(), pick("description", Value::Null));
    c.insert("instructions".into(), pick("instructions", Value::Null));
    let tools = match body.get("tools") {
        Some(t) => normalize_tools(Some(t)),
        None => prev
            .and_then(|p| p.get("tools"))
            .cloned()
            .unwrap_or_else(|| json!([])),
    };
    c.insert("tools".into(), tools);
    let ca = match body.get("completion_args") {
        Some(g) => full_completion_args(Some(g)),
        None => prev
            .and_then(|p| p.get("completion_args"))
            .cloned()
            .unwrap_or_else(|| full_completion_args(None)),
    };
    c.insert("completion_args".into(), ca);
    c.insert("guardrails".into(), pick("guardrails", Value::Null));
    c.insert("handoffs".into(), pick("handoffs", Value::Null));
    c.insert("metadata".into(), pick("metadata", Value::Null));
    c.insert(
        "deployment_chat".into(),
        match body.get("deployment_chat") {
            Some(Value::Bool(b)) => json!(b),
            _ => prev
                .and_then(|p| p.get("deployment_chat"))
                .cloned()
                .unwrap_or(json!(false)),
        },
    );
    c.insert("source".into(), json!("api"));
    c.insert(
        "version_message".into(),
        body.get("version_message").cloned().unwrap_or(Value::Null),
    );
    c
}

fn agents_create(ctx: &Ctx, body: &Value) -> Reply {
    let p = validate::check_body(body, validate::CREATE_AGENT);
    if !p.is_empty() {
        return ctx.invalid(p);
    }
    let obj = body.as_object().expect("validated object");
    let now = ids::now();
    let rec = AgentRecord {
        id: ids::new_id("ag_"),
        versions: vec![AgentVersion {
            config: agent_config(obj, None),
            created_at: now.clone(),
        }],
        active: 0,
        created_at: now.clone(),
        updated_at: now,
        aliases: Vec::new(),
    };
    let out = rec.render(None);
    let mut st = ctx.sim.state.lock();
    st.agent_order.push(rec.id.clone());
    st.agents.insert(rec.id.clone(), rec);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

/// Parses the `metadata` query filter once: a JSON object filters; absent, `null` or a JSON string (the
/// Python SDK sends its "unset" sentinel as a JSON string on every list call) means no filter.
fn metadata_filter(raw: Option<&str>) -> Result<Option<Map<String, Value>>, Problems> {
    let Some(text) = raw else { return Ok(None) };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(Value::Null | Value::String(_)) => Ok(None),
        _ => Err(Problems(vec![
            json!({"type": "json_invalid", "loc": ["query", "metadata"], "msg": "Invalid JSON object", "input": text}),
        ])),
    }
}

fn metadata_matches(meta: Option<&Value>, filter: Option<&Map<String, Value>>) -> bool {
    let Some(want) = filter else { return true };
    let have = meta.and_then(Value::as_object);
    want.iter()
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

fn page_params(q: &Query, default_size: usize, max: usize) -> Result<(usize, usize), Problems> {
    let parse = |k: &str, d: usize| -> Result<usize, Problems> {
        match q.get(k) {
            None => Ok(d),
            Some(s) => s.parse::<usize>().map_err(|_| {
                Problems(vec![json!({"type": "int_parsing", "loc": ["query", k], "msg": "Input should be a valid integer, unable to parse string as an integer", "input": s})])
            }),
        }
    };
    let page = parse("page", 0)?;
    let size = parse("page_size", default_size)?;
    if size == 0 || size > max {
        return Err(Problems(vec![
            json!({"type": "less_than_equal", "loc": ["query", "page_size"], "msg": format!("Input should be between 1 and {max}"), "input": size.to_string()}),
        ]));
    }
    Ok((page, size))
}

fn agents_list(ctx: &Ctx, q: &Query, pages: bool) -> Reply {
    let (page, size) = match page_params(q, 20, 1000) {
        Ok(p) => p,
        Err(p) => return ctx.invalid(p),
    };
    let offset = if pages {
        match q.get("page_token") {
            None | Some("") => 0,
            Some(t) => match usize::from_str_radix(t.trim_start_matches("off_"), 16) {
                Ok(n) if t.starts_with("off_") => n,
                _ => return ctx.bad_request("Invalid page_token"),
            },
        }
    } else {
        page * size
    };
    let meta = match metadata_filter(q.get("metadata")) {
        Ok(m) => m,
        Err(p) => return ctx.invalid(p),
    };
    let st = ctx.sim.state.lock();
    let sources = q.all("sources");
    let mut matched = Vec::new();
    for id in st.agent_order.iter().rev() {
        let Some(rec) = st.agents.get(id) else {
            continue;
        };
        let c = rec.config(None);
        if let Some(n) = q.get("name")
            && c.get("name").and_then(Value::as_str) != Some(n)
        {
            continue;
        }
        if let Some(s) = q.get("search") {
            let s = s.to_lowercase();
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase();
            if !name.contains(&s) && !rec.id.contains(&s) {
                continue;
            }
        }
        if let Some(want) = q.get("id")
            && want != rec.id
        {
            continue;
        }
        if let Some(dc) = q.get("deployment_chat")
            && c.get("deployment_chat").and_then(Value::as_bool) != Some(dc == "true")
        {
            continue;
        }
        if !sources.is_empty()
            && !sources.contains(&c.get("source").and_then(Value::as_str).unwrap_or(""))
        {
            continue;
        }
        if !metadata_matches(c.get("metadata"), meta.as_ref()) {
            continue;
        }
        matched.push(rec.render(None));
    }
    drop(st);
    let total = matched.len();
    let data: Vec<Value> = matched.into_iter().skip(offset).take(size).collect();
    if pages {
        let next = (offset + size < total).then(|| format!("off_{:x}", offset + size));
        ctx.json(
            StatusCode::OK,
            json!({"object": "list", "data": data, "next_page_token": next}),
        )
    } else {
        ctx.json(StatusCode::OK, Value::Array(data))
    }
}

fn agents_get(ctx: &Ctx, id: &str, version: Option<&str>) -> Reply {
    let st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let v = match version {
        None => None,
        Some(s) => match rec.resolve_version(&json!(s)) {
            Some(v) => Some(v),
            None => {
                drop(st);
                return ctx.not_found(&format!("Version {s} of agent {id}"));
            }
        },
    };
    let out = rec.render(v);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

fn agents_update(ctx: &Ctx, id: &str, body: &Value) -> Reply {
    let p = validate::check_body(body, validate::UPDATE_AGENT);
    if !p.is_empty() {
        return ctx.invalid(p);
    }
    let obj = body.as_object().expect("validated object");
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let now = ids::now();
    let config = agent_config(obj, Some(rec.config(None)));
    rec.versions.push(AgentVersion {
        config,
        created_at: now.clone(),
    });
    rec.active = rec.versions.len() as u64 - 1;
    rec.updated_at = now;
    let out = rec.render(None);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

fn agents_delete(ctx: &Ctx, id: &str) -> Reply {
    let mut st = ctx.sim.state.lock();
    if st.agents.remove(id).is_none() {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    }
    st.compact_orders();
    Ok(no_content())
}

fn agents_switch(ctx: &Ctx, id: &str, q: &Query, body: &Value) -> Reply {
    let raw = q
        .get("version")
        .map(|s| json!(s))
        .or_else(|| body.get("version").cloned());
    let Some(raw) = raw else {
        return ctx.invalid(Problems(vec![json!({"type": "missing", "loc": ["query", "version"], "msg": "Field required", "input": null})]));
    };
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let Some(v) = rec.resolve_version(&raw) else {
        drop(st);
        return ctx.not_found(&format!("Version {raw} of agent {id}"));
    };
    rec.active = v;
    rec.updated_at = ids::now();
    let out = rec.render(None);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

fn agents_versions(ctx: &Ctx, id: &str, q: &Query) -> Reply {
    let (page, size) = match page_params(q, 20, 100) {
        Ok(p) => p,
        Err(p) => return ctx.invalid(p),
    };
    let st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let out: Vec<Value> = (0..rec.versions.len() as u64)
        .rev()
        .skip(page * size)
        .take(size)
        .map(|v| rec.render(Some(v)))
        .collect();
    drop(st);
    ctx.json(StatusCode::OK, Value::Array(out))
}

fn valid_alias(a: &str) -> bool {
    let b = a.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
        && (b.len() == 1 || b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
}

fn alias_json(name: &str, a: &Alias) -> Value {
    json!({"alias": name, "version": a.version, "created_at": a.created_at, "updated_at": a.updated_at})
}

fn alias_put(ctx: &Ctx, id: &str, q: &Query) -> Reply {
    let Some(alias) = q.get("alias") else {
        return ctx.invalid(Problems(vec![json!({"type": "missing", "loc": ["query", "alias"], "msg": "Field required", "input": null})]));
    };
    if !valid_alias(alias) {
        return ctx.invalid(Problems(vec![json!({"type": "string_pattern_mismatch", "loc": ["query", "alias"], "msg": "String should match pattern '^[a-z]([a-z0-9_-]*[a-z0-9])?$'", "input": alias, "ctx": {"pattern": "^[a-z]([a-z0-9_-]*[a-z0-9])?$"}})]));
    }
    let Some(version) = q.get("version").and_then(|v| v.parse::<u64>().ok()) else {
        return ctx.invalid(Problems(vec![json!({"type": "missing", "loc": ["query", "version"], "msg": "Field required", "input": null})]));
    };
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    if version as usize >= rec.versions.len() {
        drop(st);
        return ctx.not_found(&format!("Version {version} of agent {id}"));
    }
    let now = ids::now();
    let out = match rec.aliases.iter_mut().find(|(n, _)| n == alias) {
        Some((n, a)) => {
            a.version = version;
            a.updated_at = now;
            alias_json(n, a)
        }
        None => {
            let a = Alias {
                version,
                created_at: now.clone(),
                updated_at: now,
            };
            let out = alias_json(alias, &a);
            rec.aliases.push((alias.to_string(), a));
            out
        }
    };
    drop(st);
    ctx.json(StatusCode::OK, out)
}

fn alias_list(ctx: &Ctx, id: &str) -> Reply {
    let st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let out: Vec<Value> = rec.aliases.iter().map(|(n, a)| alias_json(n, a)).collect();
    drop(st);
    ctx.json(StatusCode::OK, Value::Array(out))
}

fn alias_delete(ctx: &Ctx, id: &str, q: &Query) -> Reply {
    let alias = q.get("alias").unwrap_or("");
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let before = rec.aliases.len();
    rec.aliases.retain(|(n, _)| n != alias);
    let removed = rec.aliases.len() != before;
    drop(st);
    if removed {
        Ok(no_content())
    } else {
        ctx.not_found(&format!("Alias {alias} of agent {id}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Conversations

fn id_prefix(ty: &str) -> &'static str {
    match ty {
        "function.call" => "fc_",
        "function.result" => "fr_",
        "tool.execution" => "tool_exec_",
        "agent.handoff" => "handoff_",
        _ => "msg_",
    }
}

/// Turns `inputs` (a string or entries that may omit `object`/`type`) into stored entries.
fn normalize_inputs(inputs: Option<&Value>) -> Vec<Value> {
    let now = ids::now();
    match inputs {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![
            json!({"role": "user", "content": s, "object": "entry", "type": "message.input", "created_at": now, "completed_at": null, "id": ids::new_id("msg_")}),
        ],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .map(|e| {
                let ty = e
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message.input")
                    .to_string();
                let mut out = Map::new();
                for (k, v) in e {
                    if !matches!(
                        k.as_str(),
                        "object" | "type" | "created_at" | "completed_at" | "id"
                    ) {
                        out.insert(k.clone(), v.clone());
                    }
                }
                out.insert("object".into(), json!("entry"));
                out.insert("type".into(), json!(ty));
                out.insert(
                    "created_at".into(),
                    e.get("created_at").cloned().unwrap_or_else(|| json!(now)),
                );
                out.insert(
                    "completed_at".into(),
                    e.get("completed_at").cloned().unwrap_or(Value::Null),
                );
                out.insert(
                    "id".into(),
                    e.get("id")
                        .cloned()
                        .unwrap_or_else(|| json!(ids::new_id(id_prefix(&ty)))),
                );
                Value::Object(out)
            })
            .collect(),
        Some(_) => Vec::new(),
    }
}

fn check_input_entries(entries: &[Value]) -> Problems {
    let mut p = Problems::default();
    for (i, e) in entries.iter().enumerate() {
        let ty = e.get("type").and_then(Value::as_str).unwrap_or("");
        let missing: &[&str] = match ty {
            "message.input" => &["role", "content"],
            "message.output" => &["content"],
            "function.result" => &["tool_call_id", "result"],
            "function.call" => &["tool_call_id", "name", "arguments"],
            "tool.execution" => &["name", "arguments"],
            "agent.handoff" => &[
                "previous_agent_id",
                "previous_agent_name",
                "next_agent_id",
                "next_agent_name",
            ],
            _ => {
                p.0.push(json!({"type": "union_tag_invalid", "loc": ["body", "inputs", i], "msg": format!("Input tag '{ty}' found using 'type' does not match any of the expected tags"), "input": e}));
                continue;
            }
        };
        for k in missing {
            if e.get(*k).is_none() {
                p.0.push(json!({"type": "missing", "loc": ["body", "inputs", i, ty, k], "msg": "Field required", "input": e}));
            }
        }
        if ty == "message.input"
            && let Some(r) = e.get("role")
            && !matches!(r.as_str(), Some("user" | "assistant"))
        {
            p.0.push(json!({"type": "literal_error", "loc": ["body", "inputs", i, ty, "role"], "msg": "Input should be 'user' or 'assistant'", "input": r}));
        }
    }
    p
}

fn speaker_for_agent(
    st: &State,
    agent_id: &str,
    version: Option<u64>,
    with_handoffs: bool,
) -> Option<Speaker> {
    let rec = st.agents.get(agent_id)?;
    let c = rec.config(version);
    let handoffs = if with_handoffs {
        c.get("handoffs")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|h| speaker_for_agent(st, h, None, false))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Speaker {
        agent_id: Some(agent_id.to_string()),
        agent_name: c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        model: c
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        tools: c
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        handoffs,
    })
}

fn speaker_and_instructions(st: &State, party: &Party) -> Option<(Speaker, String)> {
    match party {
        Party::Agent {
            agent_id,
            agent_version,
        } => {
            let sp = speaker_for_agent(st, agent_id, Some(*agent_version), true)?;
            let instr = st
                .agents
                .get(agent_id)?
                .config(Some(*agent_version))
                .get("instructions")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some((sp, instr))
        }
        Party::Model {
            model,
            instructions,
            tools,
            ..
        } => Some((
            Speaker {
                agent_id: None,
                agent_name: String::new(),
                model: model.clone(),
                tools: tools.as_array().cloned().unwrap_or_default(),
                handoffs: Vec::new(),
            },
            instructions.as_str().unwrap_or("").to_string(),
        )),
    }
}

/// Runs a turn on a conversation that already holds its input entries (when stored), and answers.
// The arguments are the turn's distinct inputs; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn run_turn(
    ctx: Ctx,
    conv_id: String,
    speaker: Speaker,
    instructions: String,
    history: Vec<Value>,
    inputs: Vec<Value>,
    handoff_client: bool,
    store: bool,
    stream: bool,
) -> Reply {
    let plan = engine::plan(
        &TurnInput {
            speaker: &speaker,
            history: &history,
            inputs: &inputs,
            handoff_client,
            instructions: &instructions,
        },
        ctx.sim.knowledge.as_ref(),
        ctx.sim.cfg.seed,
    );
    let sim = ctx.sim.clone();
    let store_fn = {
        let sim = sim.clone();
        let conv_id = conv_id.clone();
        move |outputs: &[Value]| {
            if !store {
                return;
            }
            let mut st = sim.state.lock();
            if let Some(c) = st.conversations.get_mut(&conv_id) {
                c.entries.extend_from_slice(outputs);
                c.updated_at = ids::now();
            }
        }
    };
    if !stream {
        return match ctx.fault {
            Some(FaultKind::Reset) => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset")),
            Some(FaultKind::Stall) => {
                tokio::time::sleep(sim.cfg.stall).await;
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "injected stall"))
            }
            Some(FaultKind::ErrorEvent) => ctx.json(StatusCode::INTERNAL_SERVER_ERROR, error_body("Simulated upstream error (injected fault)", "server_error", Value::Null)),
            _ => match turn::play(&sim, &plan, &conv_id, None, store_fn).await {
                Ended::Complete { outputs, usage } => ctx.json(StatusCode::OK, json!({"conversation_id": conv_id, "outputs": outputs, "usage": usage, "object": "conversation.response"})),
                Ended::Faulted(_) => Err(std::io::Error::other("fault")),
            },
        };
    }
    let (tx, mut rx) = mpsc::channel(64);
    let mut emitter = Emitter::new(tx, ctx.origin.clone(), ctx.fault, &plan);
    tokio::spawn(async move {
        if let Ended::Faulted(kind) =
            turn::play(&sim, &plan, &conv_id, Some(&mut emitter), store_fn).await
        {
            emitter.fail(&sim, kind).await;
        }
    });
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

fn handoff_client(body: &Value) -> bool {
    body.get("handoff_execution").and_then(Value::as_str) == Some("client")
}

/// Validates a start / append / restart body and returns its input entries, normalised.
fn turn_inputs(body: &Value, fields: &[validate::Field]) -> Result<Vec<Value>, Problems> {
    let p = validate::check_body(body, fields);
    if !p.is_empty() {
        return Err(p);
    }
    let inputs = normalize_inputs(body.get("inputs"));
    let p = check_input_entries(&inputs);
    if p.is_empty() { Ok(inputs) } else { Err(p) }
}

async fn conv_start(ctx: Ctx, body: Value, stream: bool) -> Reply {
    let inputs = match turn_inputs(&body, validate::START) {
        Ok(i) => i,
        Err(p) => return ctx.invalid(p),
    };
    let agent_id = body.get("agent_id").and_then(Value::as_str);
    let model = body.get("model").and_then(Value::as_str);
    let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let now = ids::now();
    let conv_id = ids::new_id("conv_");
    let (speaker, instructions, party) = {
        let st = ctx.sim.state.lock();
        match (agent_id, model) {
            (Some(_), Some(_)) => {
                drop(st);
                return ctx.bad_request("Provide either agent_id or model, not both");
            }
            (None, None) => {
                drop(st);
                return ctx.bad_request("Either agent_id or model must be provided");
            }
            (Some(aid), None) => {
                let Some(rec) = st.agents.get(aid) else {
                    drop(st);
                    return ctx.not_found(&format!("Agent {aid}"));
                };
                let version = match body.get("agent_version").filter(|v| !v.is_null()) {
                    None => rec.active,
                    Some(v) => match rec.resolve_version(v) {
                        Some(v) => v,
                        None => {
                            drop(st);
                            return ctx.not_found(&format!("Version {v} of agent {aid}"));
                        }
                    },
                };
                let party = Party::Agent {
                    agent_id: aid.to_string(),
                    agent_version: version,
                };
                let (sp, instr) = speaker_and_instructions(&st, &party).expect("agent exists");
                (sp, instr, party)
            }
            (None, Some(m)) => {
                let party = Party::Model {
                    model: m.to_string(),
                    instructions: body.get("instructions").cloned().unwrap_or(Value::Null),
                    tools: normalize_tools(body.get("tools")),
                    completion_args: full_completion_args(
                        body.get("completion_args").filter(|v| !v.is_null()),
                    ),
                    guardrails: body.get("guardrails").cloned().unwrap_or(Value::Null),
                };
                let (sp, instr) = speaker_and_instructions(&st, &party).expect("model party");
                (sp, instr, party)
            }
        }
    };
    if store {
        let conv = Conversation {
            id: conv_id.clone(),
            created_at: now.clone(),
            updated_at: now,
            party,
            name: body.get("name").cloned().unwrap_or(Value::Null),
            description: body.get("description").cloned().unwrap_or(Value::Null),
            metadata: body.get("metadata").cloned().unwrap_or(Value::Null),
            entries: inputs.clone(),
        };
        let mut st = ctx.sim.state.lock();
        st.conversation_order.push(conv_id.clone());
        st.conversations.insert(conv_id.clone(), conv);
    }
    run_turn(
        ctx,
        conv_id,
        speaker,
        instructions,
        Vec::new(),
        inputs,
        handoff_client(&body),
        store,
        stream,
    )
    .await
}

async fn conv_append(ctx: Ctx, id: String, body: Value, stream: bool) -> Reply {
    let inputs = match turn_inputs(&body, validate::APPEND) {
        Ok(i) => i,
        Err(p) => return ctx.invalid(p),
    };
    let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let (speaker, instructions, history) = {
        let mut st = ctx.sim.state.lock();
        let Some(conv) = st.conversations.get(&id) else {
            drop(st);
            return ctx.not_found(&format!("Conversation {id}"));
        };
        let party = conv.party.clone();
        let history = conv.entries.clone();
        let Some((sp, instr)) = speaker_and_instructions(&st, &party) else {
            drop(st);
            return ctx.not_found("The conversation's agent");
        };
        if store && let Some(c) = st.conversations.get_mut(&id) {
            c.entries.extend(inputs.iter().cloned());
            c.updated_at = ids::now();
        }
        (sp, instr, history)
    };
    run_turn(
        ctx,
        id,
        speaker,
        instructions,
        history,
        inputs,
        handoff_client(&body),
        store,
        stream,
    )
    .await
}

async fn conv_restart(ctx: Ctx, id: String, body: Value, stream: bool) -> Reply {
    let inputs = match turn_inputs(&body, validate::RESTART) {
        Ok(i) => i,
        Err(p) => return ctx.invalid(p),
    };
    let from = body
        .get("from_entry_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let new_id = ids::new_id("conv_");
    let (speaker, instructions, history) = {
        let mut st = ctx.sim.state.lock();
        let Some(conv) = st.conversations.get(&id) else {
            drop(st);
            return ctx.not_found(&format!("Conversation {id}"));
        };
        let Some(pos) = conv
            .entries
            .iter()
            .position(|e| e.get("id").and_then(Value::as_str) == Some(from))
        else {
            drop(st);
            return ctx.not_found(&format!("Entry {from} in conversation {id}"));
        };
        let mut party = conv.party.clone();
        if let (
            Party::Agent {
                agent_id,
                agent_version,
            },
            Some(v),
        ) = (
            &mut party,
            body.get("agent_version").filter(|v| !v.is_null()),
        ) {
            match st
                .agents
                .get(agent_id.as_str())
                .and_then(|r| r.resolve_version(v))
            {
                Some(n) => *agent_version = n,
                None => {
                    drop(st);
                    return ctx.not_found(&format!("Version {v} of the conversation's agent"));
                }
            }
        }
        let history: Vec<Value> = conv.entries[..=pos].to_vec();
        let now = ids::now();
        let branch = Conversation {
            id: new_id.clone(),
            created_at: now.clone(),
            updated_at: now,
            party: party.clone(),
            name: conv.name.clone(),
            description: conv.description.clone(),
            metadata: body
                .get("metadata")
                .cloned()
                .filter(|m| !m.is_null())
                .unwrap_or_else(|| conv.metadata.clone()),
            entries: history
                .iter()
                .cloned()
                .chain(inputs.iter().cloned())
                .collect(),
        };
        let Some((sp, instr)) = speaker_and_instructions(&st, &party) else {
            drop(st);
            return ctx.not_found("The conversation's agent");
        };
        if store {
            st.conversation_order.push(new_id.clone());
            st.conversations.insert(new_id.clone(), branch);
        }
        (sp, instr, history)
    };
    run_turn(
        ctx,
        new_id,
        speaker,
        instructions,
        history,
        inputs,
        handoff_client(&body),
        store,
        stream,
    )
    .await
}

fn conv_list(ctx: &Ctx, q: &Query) -> Reply {
    let (page, size) = match page_params(q, 100, 10_000) {
        Ok(p) => p,
        Err(p) => return ctx.invalid(p),
    };
    let meta = match metadata_filter(q.get("metadata")) {
        Ok(m) => m,
        Err(p) => return ctx.invalid(p),
    };
    let st = ctx.sim.state.lock();
    let mut out = Vec::new();
    let mut skipped = 0;
    for id in st.conversation_order.iter().rev() {
        let Some(c) = st.conversations.get(id) else {
            continue;
        };
        if !metadata_matches(Some(&c.metadata), meta.as_ref()) {
            continue;
        }
        if skipped < page * size {
            skipped += 1;
            continue;
        }
        out.push(c.render());
        if out.len() == size {
            break;
        }
    }
    drop(st);
    ctx.json(StatusCode::OK, Value::Array(out))
}

fn conv_get(ctx: &Ctx, id: &str) -> Reply {
    let out = ctx
        .sim
        .state
        .lock()
        .conversations
        .get(id)
        .map(Conversation::render);
    match out {
        Some(v) => ctx.json(StatusCode::OK, v),
        None => ctx.not_found(&format!("Conversation {id}")),
    }
}

fn conv_delete(ctx: &Ctx, id: &str) -> Reply {
    let mut st = ctx.sim.state.lock();
    let removed = st.conversations.remove(id).is_some();
    st.compact_orders();
    drop(st);
    if removed {
        Ok(no_content())
    } else {
        ctx.not_found(&format!("Conversation {id}"))
    }
}

fn conv_history(ctx: &Ctx, id: &str, messages_only: bool) -> Reply {
    let entries = ctx.sim.state.lock().conversations.get(id).map(|c| {
        c.entries
            .iter()
            .filter(|e| {
                !messages_only
                    || matches!(
                        e.get("type").and_then(Value::as_str),
                        Some("message.input" | "message.output")
                    )
            })
            .cloned()
            .collect::<Vec<_>>()
    });
    match entries {
        None => ctx.not_found(&format!("Conversation {id}")),
        Some(e) if messages_only => ctx.json(
            StatusCode::OK,
            json!({"object": "conversation.messages", "conversation_id": id, "messages": e}),
        ),
        Some(e) => ctx.json(
            StatusCode::OK,
            json!({"object": "conversation.history", "conversation_id": id, "entries": e}),
        ),
    }
}

/// A body from bytes (re-exported for the chat module).
pub fn bytes_body(b: Bytes) -> Body {
    full(b)
}
