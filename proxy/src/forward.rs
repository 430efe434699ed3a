//! The upstream side: the pooled upstream client, and how requests are rewritten for it.

use std::time::Duration;

use agentcap_wire::vocab::headers;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, uri::PathAndQuery};
use hyper::body::Incoming;

use crate::ProxyError;
use crate::config::ProxyConfig;
use crate::recorder::body::REDACTED;
use crate::tee::RequestTee;
use crate::upstream::{self, ClientError, ClientOptions, HttpClient};

/// The pooled upstream client.
pub type UpstreamClient = HttpClient<RequestTee<Incoming>>;

/// The upstream client ([`upstream::http_client`]): webpki roots plus `--upstream-ca`, h2 when the
/// upstream offers it (ALPN), the configured connect timeout, TCP keep-alive after 60 s, idle pooled
/// connections closed after 90 s.
pub fn client(cfg: &ProxyConfig) -> Result<UpstreamClient, ProxyError> {
    upstream::http_client(&ClientOptions {
        extra_ca: cfg.upstream_ca.clone(),
        connect_timeout: cfg.connect_timeout,
        tcp_keepalive: Some(Duration::from_secs(60)),
        pool_idle_timeout: Duration::from_secs(90),
    })
    .map_err(|e| match e {
        ClientError::Ca { .. } => ProxyError::Config(format!("upstream {e}")),
        ClientError::Tls(_) => ProxyError::Internal(e.to_string()),
    })
}

/// The upstream URI for a client request: always the configured upstream's scheme and authority (an
/// absolute-form URI or a Host header never selects another host), its base path, then the request's path and query.
pub fn upstream_uri(upstream: &Uri, base_path: &str, incoming: &Uri) -> Result<Uri, http::Error> {
    let pq = incoming
        .path_and_query()
        .map(PathAndQuery::as_str)
        .unwrap_or("/");
    let pq = if pq.starts_with('/') {
        pq.to_string()
    } else {
        format!("/{pq}")
    };
    Uri::builder()
        .scheme(
            upstream
                .scheme()
                .cloned()
                .expect("validated: upstream has a scheme"),
        )
        .authority(
            upstream
                .authority()
                .cloned()
                .expect("validated: upstream has an authority"),
        )
        .path_and_query(format!("{base_path}{pq}"))
        .build()
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the `Connection` header names.
/// `Transfer-Encoding` is left to hyper, which frames each hop itself.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::TRANSFER_ENCODING);
}

/// Headers as recorded: the values of secret headers ([`headers::is_secret`]) replaced by
/// [`REDACTED`] before they leave the hot path. Forwarding is not affected: the upstream receives
/// every header of the request as the client sent it, except hop-by-hop headers and agentcap's own.
pub fn recorded_headers(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            let name = k.as_str().to_string();
            let value = if headers::is_secret(&name) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect()
}

/// First 12 hex chars of SHA-256 of the bearer key (or of the whole Authorization value if not bearer).
pub fn key_fingerprint(auth: &HeaderValue) -> String {
    use sha2::{Digest, Sha256};
    let raw = auth.as_bytes();
    let key = raw
        .strip_prefix(b"Bearer ")
        .or_else(|| raw.strip_prefix(b"bearer "))
        .unwrap_or(raw);
    let d = Sha256::digest(key);
    hex::encode(&d[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_ignores_the_clients_authority() {
        let up: Uri = "https://api.mistral.ai".parse().unwrap();
        let abs: Uri = "http://evil.example:9999/v1/agents?x=1".parse().unwrap();
        assert_eq!(
            upstream_uri(&up, "", &abs).unwrap().to_string(),
            "https://api.mistral.ai/v1/agents?x=1"
        );
        let based: Uri = "http://127.0.0.1:9/base/".parse().unwrap();
        let rel: Uri = "/v1/conversations".parse().unwrap();
        assert_eq!(
            upstream_uri(&based, "/base", &rel).unwrap().to_string(),
            "http://127.0.0.1:9/base/v1/conversations"
        );
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-custom"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn the_hot_path_and_the_recorder_redact_the_same_headers() {
        use crate::recorder::body::{Redactor, headers_json, is_sensitive_header};
        let mut names: Vec<String> = headers::SECRET.iter().map(|h| h.to_string()).collect();
        names.extend(["x-client-secret".into(), "x-db-password".into()]);
        let mut h = HeaderMap::new();
        for (i, n) in names.iter().enumerate() {
            let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
            h.insert(name, HeaderValue::from_str(&format!("value-{i}")).unwrap());
        }
        h.insert("accept", HeaderValue::from_static("*/*"));
        let recorded = recorded_headers(&h);
        let stored: serde_json::Value =
            serde_json::from_str(&headers_json(&recorded, &Redactor::default())).unwrap();
        // The recorder redacts again whatever reaches it unredacted (a replayed or hand-made record).
        let raw: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let stored_raw: serde_json::Value =
            serde_json::from_str(&headers_json(&raw, &Redactor::default())).unwrap();
        for n in &names {
            assert!(is_sensitive_header(n), "{n}");
            assert!(recorded.iter().any(|(k, v)| k == n && v == REDACTED), "{n}");
            assert_eq!(stored[n.as_str()], REDACTED, "{n}");
            assert_eq!(stored_raw[n.as_str()], REDACTED, "{n}");
        }
        assert_eq!(stored["accept"], "*/*");
        assert_eq!(stored_raw["accept"], "*/*");
    }

    #[test]
    fn secrets_are_redacted_and_fingerprinted() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-abc"));
        h.insert("cookie", HeaderValue::from_static("session=1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let r = recorded_headers(&h);
        assert!(
            r.iter()
                .all(|(_, v)| !v.contains("sk-abc") && !v.contains("session=1"))
        );
        let fp = key_fingerprint(&HeaderValue::from_static("Bearer sk-abc"));
        assert_eq!(fp.len(), 12);
        assert_eq!(fp, key_fingerprint(&HeaderValue::from_static("sk-abc")));
    }
}
