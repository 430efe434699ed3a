//! The listener: each request is matched against the cassette and answered with the recorded
//! exchange, at the recorded pace, or with a miss (an error, or a forward to the recording proxy).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use agentcap_wire::types::errors::{ApiError, ErrorCode};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use crate::Timing;
use crate::cassette::{Cassette, Lookup, Miss, Payload, Recorded};

/// A body error (a recorded exchange that ended in an error, or a forwarded body that failed).
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body.
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The largest request body read when misses are forwarded; larger ones are refused (413).
const MAX_REQUEST_BODY: usize = 64 << 20;
/// Room above the longest recorded request body (in canonical form) for a request that spells the
/// same JSON with more whitespace; a longer request is refused (413) when misses are not forwarded.
const REQUEST_SLACK: usize = 1 << 20;
/// Connections served at once; accept waits while this many are open.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// Tag header the forwarded misses carry, so the recording marks them.
fn miss_tag() -> String {
    format!("{}replay", agentcap_wire::vocab::headers::TAG_PREFIX)
}

/// What every connection shares.
pub(crate) struct State {
    cassette: Cassette,
    max_body: usize,
    timing: Timing,
    forward_to: Option<SocketAddr>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl State {
    /// The shared state: misses go to `forward_to` (the recording proxy) when given.
    pub(crate) fn new(cassette: Cassette, timing: Timing, forward_to: Option<SocketAddr>) -> State {
        let max_body = match forward_to {
            Some(_) => MAX_REQUEST_BODY,
            None => cassette
                .longest_request()
                .saturating_add(REQUEST_SLACK)
                .min(MAX_REQUEST_BODY),
        };
        State {
            cassette,
            max_body,
            timing,
            forward_to,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

/// Accepts connections until `stopped` turns true; then ends every open connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => s,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        conns.spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    conns.shutdown().await;
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

/// An answer in the API's error shape, with `extra` fields added.
fn error(
    status: StatusCode,
    message: String,
    code: &str,
    extra: &[(&str, Value)],
) -> Response<Body> {
    let mut e = ApiError::new(message, "replay_error", Some(ErrorCode::Text(code.into())));
    for (k, v) in extra {
        e.extra.insert((*k).to_owned(), v.clone());
    }
    let body = serde_json::to_vec(&e).unwrap_or_default();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let t0 = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, state.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            // The rest of the body is not read: the connection cannot carry another request.
            let mut r = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "agentcap replay: the request body could not be read within {} bytes ({e}); \
                     no recorded request is that long",
                    state.max_body
                ),
                "replay_bad_request",
                &[],
            );
            r.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    match state.cassette.lookup(parts.method.as_str(), &target, &body) {
        Lookup::Hit(x) => {
            tracing::debug!(exchange = %x.id, %target, "replayed");
            respond(&x, state.timing, t0).await
        }
        Lookup::Miss(miss) => match state.forward_to {
            Some(addr) => forward(state, addr, parts, body, &target).await,
            None => miss_error(&miss),
        },
    }
}

fn miss_error(miss: &Miss) -> Response<Body> {
    tracing::info!(request = %miss.request, "replay miss");
    let mut extra = vec![];
    if let Some((id, req)) = &miss.closest {
        extra.push(("closest_exchange_id", Value::String(id.clone())));
        extra.push(("closest_request", Value::String(req.clone())));
    }
    if let Some(d) = &miss.difference {
        extra.push(("differing_path", Value::String(d.path.clone())));
    }
    error(
        StatusCode::NOT_IMPLEMENTED,
        miss.message(),
        "replay_miss",
        &extra,
    )
}

async fn respond(x: &Recorded, timing: Timing, t0: Instant) -> Response<Body> {
    if let Payload::Unfaithful(why) = &x.payload {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            format!("agentcap replay: the recorded exchange cannot be replayed faithfully: {why}"),
            "replay_unfaithful",
            &[("exchange_id", Value::String(x.id.clone()))],
        );
    }
    sleep_until(t0 + timing.delay(x.headers_us)).await;
    let cut: Option<BoxError> = x.cut.clone().map(Into::into);
    let body: Body = match &x.payload {
        Payload::Body(b) if cut.is_none() => full(b.clone()),
        Payload::Body(b) => {
            let items: Vec<Result<Frame<Bytes>, BoxError>> = vec![
                Ok(Frame::data(b.clone())),
                Err(cut.unwrap_or_else(|| "cut".into())),
            ];
            StreamBody::new(futures_util::stream::iter(items)).boxed_unsync()
        }
        Payload::Events(events) => {
            let events = events.clone().into_iter();
            let frames = futures_util::stream::unfold(
                (events, cut),
                move |(mut events, mut cut)| async move {
                    match events.next() {
                        Some(ev) => {
                            sleep_until(t0 + timing.delay(ev.offset_us)).await;
                            Some((Ok(Frame::data(ev.wire)), (events, cut)))
                        }
                        None => cut.take().map(|c| (Err(c), (events, None))),
                    }
                },
            );
            StreamBody::new(frames).boxed_unsync()
        }
        Payload::Unfaithful(_) => full(Bytes::new()),
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(x.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in &x.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

async fn forward(
    state: &State,
    addr: SocketAddr,
    parts: http::request::Parts,
    body: Bytes,
    target: &str,
) -> Response<Body> {
    tracing::info!(%target, "replay miss forwarded to the recording proxy");
    let uri = match format!("http://{addr}{target}").parse::<http::Uri>() {
        Ok(u) => u,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("agentcap replay: cannot forward {target}: {e}"),
                "replay_bad_request",
                &[],
            );
        }
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    for (k, v) in &parts.headers {
        if k != http::header::HOST
            && k != http::header::CONNECTION
            && k != http::header::CONTENT_LENGTH
        {
            req.headers_mut().append(k, v.clone());
        }
    }
    if let Ok(name) = HeaderName::from_bytes(miss_tag().as_bytes()) {
        req.headers_mut()
            .insert(name, HeaderValue::from_static("miss"));
    }
    match state.client.request(req).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("agentcap replay: forwarding the miss to the recording proxy failed: {e}"),
            "replay_upstream_error",
            &[],
        ),
    }
}
