//! The pages: routing, the shared layout and formatting helpers.

mod conversations;
mod exchange;
pub(crate) mod exchanges;
mod extra;

pub use extra::SQL_ROWS;
mod runs;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use maud::{DOCTYPE, Markup, html};

use crate::web::{self, Query, UiBody};
use crate::{UiError, UiState, tail};

/// The embedded stylesheet and script (no third-party code, no build step).
const CSS: &str = include_str!("../../assets/ui.css");
const JS: &str = include_str!("../../assets/ui.js");

/// Routes a request that passed the guards.
pub async fn dispatch(state: &UiState, path: &str, q: &Query) -> Response<UiBody> {
    let result = match path {
        "/" | "/exchanges" => exchanges::page(state, q).await,
        "/tail" => return tail::stream(state, q).await,
        "/conversations" => conversations::list(state).await,
        "/runs" => runs::list(state).await,
        "/compare" => runs::compare(state, q).await,
        "/agents" => extra::agents(state).await,
        "/usage" => extra::usage(state, q).await,
        "/sql" => extra::sql(state, q).await,
        "/assets/ui.css" => return asset(CSS, "text/css; charset=utf-8"),
        "/assets/ui.js" => return asset(JS, "text/javascript; charset=utf-8"),
        _ => {
            if let Some(id) = segment(path, "/exchanges/") {
                exchange::page(state, &id, q).await
            } else if let Some(id) = segment(path, "/conversations/") {
                conversations::show(state, &id).await
            } else if let Some((run, item)) = run_item(path) {
                runs::item(state, &run, &item).await
            } else if let Some(id) = segment(path, "/runs/") {
                runs::run(state, &id).await
            } else {
                Err(UiError::NotFound(format!("nothing at {path}")))
            }
        }
    };
    match result {
        Ok(m) => web::html(StatusCode::OK, m),
        Err(UiError::NotFound(what)) => web::html(
            StatusCode::NOT_FOUND,
            layout("Not found", html! { p.notfound { (what) } }),
        ),
        Err(UiError::BadRequest(why)) => web::html(
            StatusCode::BAD_REQUEST,
            layout("Bad request", html! { p.error { (why) } }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "agentcap ui: page failed");
            web::html(
                StatusCode::INTERNAL_SERVER_ERROR,
                layout(
                    "Error",
                    html! { p.error { "The page failed: " (e.to_string()) } },
                ),
            )
        }
    }
}

/// The decoded rest of `path` after `prefix`, when it is one non-empty segment.
fn segment(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some(
        percent_encoding::percent_decode_str(rest)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// `/runs/<run>/items/<item>`, decoded.
fn run_item(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/runs/")?;
    let (run, item) = rest.split_once("/items/")?;
    if run.is_empty() || item.is_empty() || run.contains('/') || item.contains('/') {
        return None;
    }
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((dec(run), dec(item)))
}

fn asset(body: &'static str, ctype: &'static str) -> Response<UiBody> {
    let mut r = Response::new(web::full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

/// The page frame: navigation, stylesheet, script.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agentcap" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/assets/ui.css";
                script src="/assets/ui.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "agentcap" }
                    nav {
                        a href="/" { "Exchanges" }
                        a href="/conversations" { "Conversations" }
                        a href="/runs" { "Eval runs" }
                        a href="/agents" { "Agents" }
                        a href="/usage" { "Usage" }
                        a href="/sql" { "SQL" }
                    }
                    span.ro { "read-only" }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The page a request without a valid token gets.
pub fn unauthorized() -> Markup {
    layout(
        "Token required",
        html! {
            p { "This UI requires the token it was started with: open "
                code { "/login?token=<token>" }
                " once (it sets a cookie), or send "
                code { "Authorization: Bearer <token>" } "." }
        },
    )
}

/// A duration in µs for a table cell.
pub fn fmt_us(us: Option<i64>) -> String {
    match us {
        None => String::new(),
        Some(us) if us.abs() < 1_000 => format!("{us} µs"),
        Some(us) if us.abs() < 1_000_000 => format!("{:.1} ms", us as f64 / 1_000.0),
        Some(us) => format!("{:.2} s", us as f64 / 1_000_000.0),
    }
}

/// A byte count.
pub fn fmt_bytes(n: Option<i64>) -> String {
    match n {
        None => String::new(),
        Some(n) if n < 1024 => format!("{n} B"),
        Some(n) if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        Some(n) => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// An RFC 3339 timestamp shortened for a cell (`2026-12-03 00:01:02.123`).
pub fn fmt_ts(ts: Option<&str>) -> String {
    let Some(ts) = ts else {
        return String::new();
    };
    let t = ts.replace('T', " ");
    let t = t.trim_end_matches('Z');
    match t.find('.') {
        Some(dot) => t[..(dot + 4).min(t.len())].to_string(),
        None => t.to_string(),
    }
}

/// At most `max` bytes of `s` (cut on a character boundary), and whether it was cut.
pub fn clip(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_us(Some(999)), "999 µs");
        assert_eq!(fmt_us(Some(12_345)), "12.3 ms");
        assert_eq!(fmt_us(Some(2_500_000)), "2.50 s");
        assert_eq!(
            fmt_ts(Some("2026-12-03T00:01:02.123456Z")),
            "2026-12-03 00:01:02.123"
        );
        assert_eq!(clip("héllo", 2), ("h", true));
        assert_eq!(clip("ab", 5), ("ab", false));
    }
}
