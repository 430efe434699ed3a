//! The proxy's typed configuration, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use crate::ProxyError;
use crate::admin::AdminConfig;
use crate::conn::{self, ConnLimits};
use crate::recorder::RecorderConfig;

/// The client listener's connection cap unless configured (or lowered to fit the open-file limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The admin listener's connection cap.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

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
    /// A client connection must deliver each request head within this (the first one counted from the
    /// accept, TLS handshake included; on HTTP/1.1 later ones from the end of the previous response).
    pub header_read_timeout: Duration,
    /// A client connection without a request in flight is closed this long after its last response ended.
    pub keep_alive_timeout: Duration,
    /// Most client connections open at once (accepting pauses at the cap). `None`: [`DEFAULT_MAX_CONNECTIONS`],
    /// or fewer if the open-file limit cannot hold that many (see [`ProxyConfig::max_connections`]).
    pub max_connections: Option<usize>,
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
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: None,
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
            ("header read timeout", self.header_read_timeout),
            ("keep-alive timeout", self.keep_alive_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be positive"));
            }
        }
        if self.max_connections == Some(0) {
            return bad("--max-connections must be positive".into());
        }
        Ok(())
    }

    /// The client listener's connection cap: `max_connections` when set, otherwise
    /// [`DEFAULT_MAX_CONNECTIONS`] or, when the open-file limit is lower, what fits in it (two descriptors per
    /// connection, one to the client and one to the upstream, plus a reserve).
    pub fn max_connections(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| match conn::open_file_limit() {
                Some(l) => DEFAULT_MAX_CONNECTIONS.min(conn::fitting_max_connections(l)),
                None => DEFAULT_MAX_CONNECTIONS,
            })
    }

    /// The limits of the client listener.
    pub fn client_limits(&self) -> ConnLimits {
        ConnLimits {
            header_read_timeout: self.header_read_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            max_connections: self.max_connections(),
        }
    }

    /// The limits of the admin listener: the client's timeouts, at most [`ADMIN_MAX_CONNECTIONS`] connections.
    pub fn admin_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            ..self.client_limits()
        }
    }

    /// The upstream's base path without a trailing slash ("" for none).
    pub fn base_path(&self) -> &str {
        self.upstream.path().trim_end_matches('/')
    }
}
