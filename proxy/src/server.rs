//! The client-facing listener and the request handler, written as the phases every request goes
//! through: [`request_filter`], [`upstream_request`], [`upstream_response`], [`response_body`], and
//! the exchange logged once by [`Exchange::end`] (see ARCHITECTURE.md, "Life of a recorded request").

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use agentcap_wire::vocab::headers;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::ProxyConfig;
use crate::conn;
use crate::exchange::Exchange;
use crate::forward::{self, UpstreamClient};
use crate::record::{HttpVersion, Msg, Outcome, RequestInfo};
use crate::recorder::{Durability, RecorderHandle};
use crate::tee::{
    BoxError, HeldUntilDurable, RequestTee, ResponseTee, abort_signal, aborted, error_chain,
};

/// Body type of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Shared state of the handler.
#[derive(Debug)]
pub struct Shared {
    /// Configuration.
    pub cfg: ProxyConfig,
    /// Upstream client.
    pub client: UpstreamClient,
    /// Recorder.
    pub rec: RecorderHandle,
    base_path: String,
    /// Flips to `true` when the shutdown grace period is over: in-flight exchanges end now.
    abort: watch::Receiver<bool>,
    abort_tx: watch::Sender<bool>,
}

impl Shared {
    /// Builds the handler's state.
    pub fn new(cfg: ProxyConfig, client: UpstreamClient, rec: RecorderHandle) -> Self {
        let base_path = cfg.base_path().to_string();
        let (abort_tx, abort) = watch::channel(false);
        Self {
            cfg,
            client,
            rec,
            base_path,
            abort,
            abort_tx,
        }
    }
}

fn json_error(status: StatusCode, message: &str, ty: &str, code: &str) -> Response<ProxyBody> {
    let body =
        json!({"object": "error", "message": message, "type": ty, "param": null, "code": code})
            .to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Records a response the proxy made up (502, 504, ...) and ends the exchange (logs it once). In
/// strict durability its body waits for the record, as a forwarded response's end does.
fn record_local_response(
    ex: &Arc<Exchange>,
    resp: Response<ProxyBody>,
    body: &str,
    outcome: Outcome,
    error: String,
) -> Response<ProxyBody> {
    let at_us = ex.offset_us();
    ex.response_headers_at(at_us);
    ex.record(Msg::Response {
        id: ex.id,
        seq: ex.next_seq(),
        status: resp.status().as_u16(),
        headers: forward::recorded_headers(resp.headers()),
        at_us,
        upstream_version: None,
    });
    ex.add_out(body.len());
    let bytes = Bytes::copy_from_slice(body.as_bytes());
    ex.record(Msg::ResponseBody {
        id: ex.id,
        seq: ex.next_seq(),
        at_us,
        bytes: bytes.clone(),
    });
    ex.upstream_done();
    match ex.end(outcome, Some(error)) {
        Some(ack) => resp.map(|_| HeldUntilDurable::new(bytes, ack, ex.clone()).boxed()),
        None => resp,
    }
}

fn local(status: StatusCode, message: &str, ty: &str, code: &str) -> (Response<ProxyBody>, String) {
    let body =
        json!({"object": "error", "message": message, "type": ty, "param": null, "code": code})
            .to_string();
    (json_error(status, message, ty, code), body)
}

/// Handles one client request, phase by phase (ARCHITECTURE.md, "Life of a recorded request"):
/// [`request_filter`], then [`upstream_request`], [`upstream_response`] and [`response_body`]; the
/// exchange is logged once, by [`Exchange::end`], when its response body ends (or when the proxy
/// answers by itself). Each phase that cannot go on answers the client itself.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<ProxyBody>, Infallible> {
    let t0 = Instant::now();
    let (parts, body) = req.into_parts();
    let (parts, info) = match request_filter(&shared, parts, peer) {
        ControlFlow::Continue(filtered) => filtered,
        ControlFlow::Break(refused) => return Ok(refused),
    };
    let strict = matches!(shared.cfg.recorder.durability, Durability::Strict);
    let ex = Arc::new(Exchange::new(info.id, t0, shared.rec.clone(), strict));
    // Through the exchange, so its messages keep their order across the channel and the spill.
    ex.record(Msg::Request {
        info: Box::new(info),
    });
    let resp = match upstream_request(&shared, &ex, parts, body).await {
        ControlFlow::Continue(resp) => resp,
        ControlFlow::Break(answered) => return Ok(answered),
    };
    let (rparts, rbody) = upstream_response(&ex, resp);
    Ok(response_body(&shared, ex, rparts, rbody))
}

/// Phase 1, request filter: refuses `CONNECT` and a missing or wrong token (neither is recorded),
/// takes agentcap's own headers off (the session and tags are kept for the record), fingerprints the
/// bearer key, removes hop-by-hop headers and `Host`. Returns the request head to forward and what the
/// recording keeps of it (secret header values already redacted); `Break` carries the refusal.
pub fn request_filter(
    shared: &Shared,
    mut parts: http::request::Parts,
    peer: SocketAddr,
) -> ControlFlow<Response<ProxyBody>, (http::request::Parts, RequestInfo)> {
    if parts.method == Method::CONNECT {
        return ControlFlow::Break(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "agentcap is not a forward proxy: CONNECT is refused",
            "invalid_request_error",
            "agentcap_connect_refused",
        ));
    }
    if let Some(token) = &shared.cfg.auth_token {
        let ok = parts
            .headers
            .get(headers::TOKEN)
            .is_some_and(|v| crate::conn::same_secret(v.as_bytes(), token.as_bytes()));
        if !ok {
            return ControlFlow::Break(json_error(
                StatusCode::UNAUTHORIZED,
                "agentcap: missing or wrong X-Agentcap-Token",
                "authentication_error",
                "agentcap_token_required",
            ));
        }
    }
    parts.headers.remove(headers::TOKEN);

    // agentcap's own headers: recorded, never forwarded.
    let session = parts
        .headers
        .remove(headers::SESSION)
        .and_then(|v| v.to_str().ok().map(str::to_string));
    let tag_names: Vec<header::HeaderName> = parts
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with(headers::TAG_PREFIX))
        .cloned()
        .collect();
    let mut tags = Vec::with_capacity(tag_names.len());
    for n in tag_names {
        let name = n.as_str()[headers::TAG_PREFIX.len()..].to_string();
        for v in parts.headers.get_all(&n) {
            tags.push((
                name.clone(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
        parts.headers.remove(&n);
    }

    let key_fingerprint = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(forward::key_fingerprint);
    forward::strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    let info = RequestInfo {
        id: Uuid::now_v7(),
        started_at: SystemTime::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        client_addr: peer.to_string(),
        headers: forward::recorded_headers(&parts.headers),
        key_fingerprint,
        session,
        tags,
    };
    ControlFlow::Continue((parts, info))
}

/// Phase 2, upstream request: rewrites the URI to the configured upstream, sends the request with its
/// body behind a [`RequestTee`] and waits for the response head (at most `response_timeout`, or
/// until the shutdown grace period runs out). When no response head comes, the proxy answers by
/// itself (400 for a failed client body, 502, 503 or 504, in the API's error shape), records that
/// answer and ends the exchange: the `Err` is that answer.
pub async fn upstream_request(
    shared: &Shared,
    ex: &Arc<Exchange>,
    mut parts: http::request::Parts,
    body: Incoming,
) -> ControlFlow<Response<ProxyBody>, Response<Incoming>> {
    parts.uri = match forward::upstream_uri(&shared.cfg.upstream, &shared.base_path, &parts.uri) {
        Ok(u) => u,
        Err(e) => {
            let (r, b) = local(
                StatusCode::BAD_REQUEST,
                &format!("agentcap: bad request target: {e}"),
                "invalid_request_error",
                "agentcap_bad_target",
            );
            return ControlFlow::Break(record_local_response(
                ex,
                r,
                &b,
                Outcome::ProxyError,
                e.to_string(),
            ));
        }
    };
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, RequestTee::new(body, ex.clone()));

    ex.upstream_sent();
    let sent = tokio::select! {
        sent = tokio::time::timeout(
            shared.cfg.response_timeout,
            shared.client.request(upstream_req),
        ) => sent,
        () = aborted(shared.abort.clone()) => {
            let msg = format!(
                "agentcap shut down: the upstream had not answered when the shutdown grace period ({} ms) ran out",
                shared.cfg.shutdown_grace.as_millis()
            );
            let (r, b) = local(
                StatusCode::SERVICE_UNAVAILABLE,
                &msg,
                "service_unavailable",
                "agentcap_shutting_down",
            );
            return ControlFlow::Break(record_local_response(ex, r, &b, Outcome::ProxyError, msg));
        }
    };
    match sent {
        Err(_) => {
            let msg = format!(
                "agentcap: the upstream {} did not answer within {:?}",
                shared.cfg.upstream, shared.cfg.response_timeout
            );
            let (r, b) = local(
                StatusCode::GATEWAY_TIMEOUT,
                &msg,
                "upstream_timeout",
                "agentcap_upstream_timeout",
            );
            ControlFlow::Break(record_local_response(ex, r, &b, Outcome::Timeout, msg))
        }
        Ok(Err(_)) if ex.client_failure().is_some() => {
            // The upstream leg failed because the client's request body did (malformed, or the client left).
            let (outcome, why) = ex.client_failure().expect("checked by the guard");
            let msg =
                format!("agentcap: the request body could not be read from the client: {why}");
            let (r, b) = local(
                StatusCode::BAD_REQUEST,
                &msg,
                "invalid_request_error",
                "agentcap_bad_request_body",
            );
            ControlFlow::Break(record_local_response(ex, r, &b, outcome, msg))
        }
        Ok(Err(e)) => {
            let cause = error_chain(&e);
            let msg = if e.is_connect() {
                format!(
                    "agentcap could not reach the upstream {}: {cause}",
                    shared.cfg.upstream
                )
            } else {
                format!(
                    "agentcap: the upstream {} failed: {cause}",
                    shared.cfg.upstream
                )
            };
            let (r, b) = local(
                StatusCode::BAD_GATEWAY,
                &msg,
                "upstream_error",
                if e.is_connect() {
                    "agentcap_upstream_unreachable"
                } else {
                    "agentcap_upstream_failed"
                },
            );
            ControlFlow::Break(record_local_response(
                ex,
                r,
                &b,
                Outcome::UpstreamError,
                msg,
            ))
        }
        Ok(Ok(resp)) => ControlFlow::Continue(resp),
    }
}

/// Phase 3, upstream response: records the response head (status, headers with secrets redacted,
/// the time it arrived, the HTTP version spoken upstream) and removes hop-by-hop headers before it
/// goes to the client.
pub fn upstream_response(
    ex: &Exchange,
    resp: Response<Incoming>,
) -> (http::response::Parts, Incoming) {
    let (mut rparts, rbody) = resp.into_parts();
    let at_us = ex.offset_us();
    ex.response_headers_at(at_us);
    ex.record(Msg::Response {
        id: ex.id,
        seq: ex.next_seq(),
        status: rparts.status.as_u16(),
        headers: forward::recorded_headers(&rparts.headers),
        at_us,
        upstream_version: HttpVersion::of(rparts.version),
    });
    forward::strip_hop_by_hop(&mut rparts.headers);
    (rparts, rbody)
}

/// Phase 4, body: the response body goes to the client through a [`ResponseTee`], which forwards
/// each frame as it arrives and hands a copy to the recorder, times out an idle body, ends the body
/// when the shutdown grace period runs out, and, when the body ends in any way, logs the exchange
/// once ([`Exchange::end`], phase 5; in strict mode the last frame waits for that record to be
/// durable).
pub fn response_body(
    shared: &Shared,
    ex: Arc<Exchange>,
    rparts: http::response::Parts,
    rbody: Incoming,
) -> Response<ProxyBody> {
    let content_length = rparts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let tee = ResponseTee::new(rbody, ex, shared.cfg.idle_timeout, content_length).abort_on(
        abort_signal(shared.abort.clone()),
        shared.cfg.shutdown_grace,
    );
    Response::from_parts(rparts, tee.boxed())
}

/// A TLS acceptor for the client listener, from PEM files.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, crate::ProxyError> {
    use std::io::BufReader;
    let err =
        |what: &str, e: &dyn std::fmt::Display| crate::ProxyError::Config(format!("{what}: {e}"));
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(
        std::fs::File::open(cert).map_err(|e| err("tls cert", &e))?,
    ))
    .collect::<Result<_, _>>()
    .map_err(|e| err("tls cert", &e))?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(
        std::fs::File::open(key).map_err(|e| err("tls key", &e))?,
    ))
    .map_err(|e| err("tls key", &e))?
    .ok_or_else(|| crate::ProxyError::Config("tls key: no private key found".into()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err("tls", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| err("tls", &e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Accepts connections until `stop` flips (under the listener's limits, see [`crate::conn`]), then lets
/// in-flight exchanges finish up to the grace period.
pub async fn serve(listener: conn::Listener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let s2 = shared.clone();
    let drain = conn::serve(listener, stop, move |req, peer| {
        handle(s2.clone(), req, peer)
    })
    .await;
    drain.start();
    let grace = shared.cfg.shutdown_grace;
    if tokio::time::timeout(grace, drain.finished()).await.is_err() {
        tracing::warn!(
            ?grace,
            "in-flight exchanges did not finish within the grace period; ending them as proxy_error"
        );
        // Every in-flight exchange ends now (recorded with the reason), its client sees an error.
        let _ = shared.abort_tx.send(true);
        if tokio::time::timeout(ABORT_WAIT, drain.finished())
            .await
            .is_err()
        {
            tracing::warn!(
                "client connections still open after the in-flight exchanges were ended"
            );
        }
    }
}

/// After the grace period, how long connections get to close once their exchanges were ended.
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
