//! The proxy's typed configuration, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use crate::ProxyError;
use crate::admin::AdminConfig;
use crate::recorder::RecorderConfig;

/// Everything `agentcap proxy` needs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Client listener (127.0.0.1:8787 by default).
    pub listen: SocketAddr,
    /// The one upstream every request goes to (scheme, authority and an optional base path).
    pub upstream: Uri,
    /// Extra CA certificate (PEM) trusted for the upstream, besides the webpki roots.
    pub upstream_ca: Option<PathBuf>,
    /// Admin listener for health, metrics and read-only queries (loopback only); `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// When set, clients must send `X-Agentcap-Token: <token>` (stripped before forwarding), on the
    /// admin listener too.
    pub auth_token: Option<String>,
    /// The admin listener's Host allow-list, query limits and request limits.
    pub admin: AdminConfig,
    /// TLS on the client listener: certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS on the client listener: private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Connecting to the upstream may take this long (then 502).
    pub connect_timeout: Duration,
    /// The upstream's response headers must arrive within this (then 504).
    pub response_timeout: Duration,
    /// A response body may sit idle this long between frames (then the exchange ends as `timeout`).
    pub idle_timeout: Duration,
    /// On SIGINT/SIGTERM, in-flight exchanges get this long to finish.
    pub shutdown_grace: Duration,
    /// The recorder.
    pub recorder: RecorderConfig,
}

impl ProxyConfig {
    /// A config with the documented defaults for `upstream` and `db`.
    pub fn new(upstream: Uri, recorder: RecorderConfig) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            upstream,
            upstream_ca: None,
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8788))),
            auth_token: None,
            admin: AdminConfig::default(),
            tls_cert: None,
            tls_key: None,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            recorder,
        }
    }

    /// Checks the configuration once, at start.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |m: String| Err(ProxyError::Config(m));
        match self.upstream.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return bad(format!(
                    "upstream {} must be an http:// or https:// URL",
                    self.upstream
                ));
            }
        }
        if self.upstream.authority().is_none() {
            return bad(format!("upstream {} has no host", self.upstream));
        }
        if self.upstream.query().is_some() {
            return bad(format!(
                "upstream {} must not have a query string",
                self.upstream
            ));
        }
        if let Some(a) = self.admin_listen
            && !a.ip().is_loopback()
        {
            return bad(format!("the admin listener must be on loopback, not {a}"));
        }
        if let Err(e) = self.admin.validate() {
            return bad(e);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("--tls-cert and --tls-key go together".into());
        }
        if let Some(t) = &self.auth_token
            && t.is_empty()
        {
            return bad("the auth token must not be empty".into());
        }
        for (name, d) in [
            ("connect timeout", self.connect_timeout),
            ("response timeout", self.response_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be positive"));
            }
        }
        Ok(())
    }

    /// The upstream's base path without a trailing slash ("" for none).
    pub fn base_path(&self) -> &str {
        self.upstream.path().trim_end_matches('/')
    }
}
