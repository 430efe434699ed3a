//! The admin listener (loopback only): health, metrics and read-only SQL over the recorder's database.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::conn;
use crate::recorder::RecorderHandle;

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    /// The recorder.
    pub rec: RecorderHandle,
    /// When the proxy started.
    pub started: Instant,
    /// The upstream URL (for `/health`).
    pub upstream: String,
    /// The DuckDB file.
    pub db_path: String,
}

fn reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    st: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    Ok(match (method, path.as_str()) {
        (Method::GET, "/health") => reply(
            StatusCode::OK,
            &json!({"status": "ok", "upstream": st.upstream, "db": st.db_path, "uptime_s": st.started.elapsed().as_secs()}),
        ),
        (Method::GET, "/metrics") => reply(
            StatusCode::OK,
            &serde_json::to_value(st.rec.stats()).unwrap_or(Value::Null),
        ),
        (Method::POST, "/flush") => match st.rec.flush().await {
            Ok(()) => reply(StatusCode::OK, &json!({"flushed": true})),
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": e.to_string()}),
            ),
        },
        (Method::POST, "/query") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return Ok(reply(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": e.to_string()}),
                    ));
                }
            };
            let sql = match serde_json::from_slice::<Value>(&body) {
                Ok(v) => v.get("sql").and_then(Value::as_str).map(str::to_string),
                Err(_) => String::from_utf8(body.to_vec()).ok(),
            };
            let Some(sql) = sql else {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "send {\"sql\": \"SELECT ...\"}"}),
                ));
            };
            let rec = st.rec.clone();
            match tokio::task::spawn_blocking(move || rec.query(&sql)).await {
                Ok(Ok(r)) => reply(
                    StatusCode::OK,
                    &json!({"columns": r.columns, "rows": r.rows}),
                ),
                Ok(Err(e)) => reply(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown admin endpoint", "endpoints": ["GET /health", "GET /metrics", "POST /query", "POST /flush"]}),
        ),
    })
}

/// Serves the admin endpoints until `stop` flips (under the listener's limits, see [`crate::conn`]).
pub async fn serve(listener: conn::Listener, st: Arc<AdminState>, stop: watch::Receiver<bool>) {
    let drain = conn::serve(listener, stop, move |req, _peer| handle(st.clone(), req)).await;
    drain.start();
    let _ = tokio::time::timeout(ADMIN_DRAIN, drain.finished()).await;
}

/// On shutdown, how long admin requests in progress get to finish.
const ADMIN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
