//! Routing: auth, the operation a request is (the shared [`Operation`] vocabulary), fault injection, body
//! validation, then the operation's handler in [`crate::agents`], [`crate::conversations`] or [`crate::chat`].

use std::sync::Arc;

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::agents::{
    agents_create, agents_delete, agents_get, agents_list, agents_switch, agents_update,
    agents_versions, alias_delete, alias_list, alias_put,
};
use crate::capture::Origin;
use crate::chat;
use crate::config::FaultKind;
use crate::conversations::{
    conv_append, conv_delete, conv_get, conv_history, conv_list, conv_restart, conv_start,
};
use crate::http::{Query, error_body, json_response, read_body};
use crate::twin::{Ctx, Reply, Sim};
use crate::validate::{self, Problems};
use agentcap_wire::vocab::{Operation, headers};

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

/// Serves one request: the twin's own `GET /metrics`, or an API request (counted in the metrics
/// by operation and status class).
pub(crate) async fn handle(sim: Arc<Sim>, req: Request<Incoming>) -> Reply {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let (text, ctype) = sim.metrics.encode(accept);
        let mut r = http::Response::new(crate::http::full(text));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        return Ok(r);
    }
    let mut op = Operation::Other;
    let reply = serve(&sim, req, &mut op).await;
    sim.metrics
        .count(op, reply.as_ref().ok().map(|r| r.status().as_u16()));
    reply
}

/// Serves one API request; `op` receives the operation as soon as it is known.
async fn serve(sim: &Arc<Sim>, req: Request<Incoming>, op_out: &mut Operation) -> Reply {
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
    *op_out = op;
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
