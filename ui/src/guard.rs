//! Who may talk to the UI: the Host and Origin checks against DNS rebinding and cross-site requests, the
//! optional token (bearer header or the cookie `/login` sets), and the headers every response carries.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

/// The Content-Security-Policy of every response: no inline script or style, assets from this origin only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Name of the cookie `/login?token=` sets.
pub const COOKIE: &str = "agentcap_ui_token";

/// Adds the security headers every response carries.
pub fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// `true` for an address only this machine can reach.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]:port`), lowercased; `None` when malformed.
pub fn host_name(value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let host = if let Some(rest) = v.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &rest[..end]
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) if is_port(p) => h,
            Some(_) => return None,
            None => v,
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// `true` when `host` (from [`host_name`]) names this machine's loopback, the listen address, or one of the
/// configured extra names.
pub fn host_allowed(host: &str, listen: &SocketAddr, extra: &[String]) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && (ip.is_loopback() || (ip == listen.ip() && !ip.is_unspecified()))
    {
        return true;
    }
    extra.iter().any(|e| e.eq_ignore_ascii_case(host))
}

/// `true` when the `Origin` value is this server's own origin, given the request's `Host` value.
pub fn same_origin(origin: &str, host_value: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host_value.trim()))
}

/// Compares two secrets in time independent of where they differ (both are hashed first, so their lengths
/// do not leak either).
pub fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The token the request presents: `Authorization: Bearer T`, or the login cookie.
pub fn presented_token(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    for v in h.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(';') {
            if let Some((k, val)) = part.trim().split_once('=')
                && k == COOKIE
            {
                // `/login` stores the token percent-encoded (a cookie value cannot hold every character).
                return Some(
                    percent_encoding::percent_decode_str(val)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8790").as_deref(), Some("localhost"));
        assert_eq!(host_name("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("Evil.Example"), Some("evil.example".into()));
        assert_eq!(host_name("a b"), None);
        assert_eq!(host_name("x:port"), None);
        assert_eq!(host_name(""), None);
    }

    #[test]
    fn allowed_hosts() {
        let listen: SocketAddr = "127.0.0.1:8790".parse().unwrap();
        assert!(host_allowed("localhost", &listen, &[]));
        assert!(host_allowed("127.0.0.2", &listen, &[]));
        assert!(host_allowed("::1", &listen, &[]));
        assert!(!host_allowed("evil.example", &listen, &[]));
        assert!(!host_allowed("localhost.evil.example", &listen, &[]));
        let any: SocketAddr = "0.0.0.0:8790".parse().unwrap();
        assert!(!host_allowed("0.0.0.0", &any, &[]));
        let lan: SocketAddr = "10.0.0.5:8790".parse().unwrap();
        assert!(host_allowed("10.0.0.5", &lan, &[]));
        assert!(host_allowed("ui.lan", &lan, &["ui.lan".into()]));
    }

    #[test]
    fn tokens() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("", "abc"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; agentcap_ui_token=s3cret"),
        );
        assert_eq!(presented_token(&h).as_deref(), Some("s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(presented_token(&h).as_deref(), Some("xyz"));
    }
}
