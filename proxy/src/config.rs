//! The proxy's configuration: [`ProxySettings`], the schema of the config file (TOML) whose fields the
//! command line's flags overlay one by one, resolved into the typed [`ProxyConfig`], validated once at
//! start.
//!
//! Every default is defined once, beside the struct that uses it: [`ProxyConfig::new`] (listeners,
//! timeouts), [`RecorderConfig::default`] (database file, durability, capture cap),
//! [`AdminConfig::default`] (query limits) and [`DEFAULT_UPSTREAM`]. A setting left unset in both the
//! file and the flags keeps that default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::ProxyError;
use crate::admin::AdminConfig;
use crate::conn::{self, ConnLimits};
use crate::recorder::{BackgroundPriority, Durability, RecorderConfig};
use crate::ship::ShipConfig;

/// The upstream every request goes to unless configured.
pub const DEFAULT_UPSTREAM: &str = "https://api.mistral.ai";

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
    /// Shipping segments to an object store ([`crate::ship`]); `None`: off.
    pub ship: Option<ShipConfig>,
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
            ship: None,
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
        if let Some(s) = &self.ship {
            s.validate()
                .map_err(|e| ProxyError::Config(e.to_string()))?;
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

/// The proxy's settings as a config file and the command line give them: the schema of
/// `agentcap proxy --config FILE` (TOML, the flags' names with `_`).
///
/// Every field is optional; [`ProxySettings::overlay`] lays one set (the flags) over another (the file)
/// and [`ProxySettings::resolve`] fills what is still unset with the defaults of [`ProxyConfig::new`],
/// [`RecorderConfig::default`] and [`AdminConfig::default`]. A key the schema does not know is an error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// Client listener ([`ProxyConfig::listen`]).
    pub listen: Option<SocketAddr>,
    /// The upstream URL ([`DEFAULT_UPSTREAM`] when unset).
    pub upstream: Option<String>,
    /// The DuckDB file ([`RecorderConfig::db_path`]).
    pub db: Option<PathBuf>,
    /// Admin listener, loopback only ([`ProxyConfig::admin_listen`]).
    pub admin_listen: Option<SocketAddr>,
    /// `true` disables the admin listener, whatever `admin_listen` says.
    pub no_admin: Option<bool>,
    /// Host names the admin listener answers to besides the loopback ones. The overlay's names are
    /// added to the base's, not put in their place.
    pub admin_allow_host: Option<Vec<String>>,
    /// Most rows in one admin query's answer ([`crate::recorder::QueryLimits::max_rows`]).
    pub admin_max_rows: Option<usize>,
    /// Most bytes of rows in one admin query's answer ([`crate::recorder::QueryLimits::max_bytes`]).
    pub admin_max_bytes: Option<usize>,
    /// An admin query's timeout, in milliseconds ([`crate::recorder::QueryLimits::timeout`]).
    pub admin_query_timeout_ms: Option<u64>,
    /// Extra CA certificate (PEM) trusted for the upstream.
    pub upstream_ca: Option<PathBuf>,
    /// TLS to clients: certificate chain (PEM); goes with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// TLS to clients: private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The token clients must send in `X-Agentcap-Token`.
    pub auth_token: Option<String>,
    /// `batched` or `strict` ([`RecorderConfig::durability`]).
    pub durability: Option<Durability>,
    /// `idle` or `low` ([`RecorderConfig::background_priority`]).
    pub background_priority: Option<BackgroundPriority>,
    /// Regular expressions masked in stored bodies. The overlay's patterns are added to the base's.
    pub redact: Option<Vec<String>>,
    /// Largest body stored per request or response, in bytes ([`RecorderConfig::capture_cap`]).
    pub capture_cap: Option<usize>,
    /// Memory of the recording's DuckDB instance, in bytes ([`RecorderConfig::db_memory_limit`]).
    pub db_memory_limit: Option<u64>,
    /// How far the recording's tables may lag behind the traffic, in milliseconds
    /// ([`RecorderConfig::flush_interval`]).
    pub flush_interval_ms: Option<u64>,
    /// [`ProxyConfig::connect_timeout`], in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// [`ProxyConfig::response_timeout`], in milliseconds.
    pub response_timeout_ms: Option<u64>,
    /// [`ProxyConfig::idle_timeout`], in milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// [`ProxyConfig::shutdown_grace`], in milliseconds.
    pub shutdown_grace_ms: Option<u64>,
    /// [`ProxyConfig::header_read_timeout`], in milliseconds.
    pub header_read_timeout_ms: Option<u64>,
    /// [`ProxyConfig::keep_alive_timeout`], in milliseconds.
    pub keep_alive_timeout_ms: Option<u64>,
    /// [`ProxyConfig::max_connections`].
    pub max_connections: Option<usize>,
    /// OTLP/HTTP endpoint spans are exported to, as `OTEL_EXPORTER_OTLP_ENDPOINT` means it (the
    /// base URL; `/v1/traces` is appended unless the path ends with it). Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// The traces URL itself, used as is, as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` means it; it
    /// wins over [`ProxySettings::otlp_endpoint`] (the signal's own setting over the shared one).
    pub otlp_traces_endpoint: Option<String>,
    /// [`crate::otel::OtlpConfig::ca`].
    pub otlp_ca: Option<PathBuf>,
    /// Headers sent with every export, in `OTEL_EXPORTER_OTLP_HEADERS`' format (`k=v,k2=v2`).
    pub otlp_headers: Option<String>,
    /// `service.name` of the exported spans ([`crate::otel::DEFAULT_SERVICE_NAME`]).
    pub otlp_service_name: Option<String>,
    /// Export message content (always through `redact`); off by default.
    pub otlp_content: Option<bool>,
    /// Bound of the span export queue ([`crate::otel::DEFAULT_QUEUE_SPANS`]).
    pub otlp_queue_spans: Option<usize>,
    /// Ship segments to `s3://BUCKET/PREFIX` or `file:///DIR` ([`ShipConfig::dest`]).
    pub ship: Option<String>,
    /// An S3-compatible endpoint ([`ShipConfig::endpoint`]).
    pub ship_endpoint: Option<String>,
    /// [`ShipConfig::ca`].
    pub ship_ca: Option<PathBuf>,
    /// Ship at least every this many seconds ([`ShipConfig::every`]).
    pub ship_every: Option<u64>,
    /// …or once this many exchanges were committed ([`ShipConfig::every_rows`]).
    pub ship_rows: Option<u64>,
    /// The instance's name in the lake ([`ShipConfig::instance_id`]).
    pub instance_id: Option<String>,
}

impl ProxySettings {
    /// Parses a config file's text (TOML). Unknown keys and values of the wrong type are errors that
    /// name the key.
    pub fn from_toml(text: &str) -> Result<ProxySettings, ProxyError> {
        toml::from_str(text).map_err(|e| ProxyError::Config(e.to_string()))
    }

    /// Reads and parses a config file; errors name the file.
    pub fn from_file(path: &Path) -> Result<ProxySettings, ProxyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProxyError::Config(format!("reading {}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| ProxyError::Config(format!("parsing {}: {e}", path.display())))
    }

    /// `over` laid on `self` field by field: a field set in `over` wins; the lists (`admin_allow_host`,
    /// `redact`) are `over`'s entries followed by `self`'s.
    pub fn overlay(self, over: ProxySettings) -> ProxySettings {
        fn both(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.into_iter().chain(b).flatten().collect()),
            }
        }
        macro_rules! pick {
            ($($field:ident),* $(,)?) => {
                ProxySettings {
                    $($field: over.$field.or(self.$field),)*
                    admin_allow_host: both(over.admin_allow_host, self.admin_allow_host),
                    redact: both(over.redact, self.redact),
                }
            };
        }
        pick!(
            listen,
            upstream,
            db,
            admin_listen,
            no_admin,
            admin_max_rows,
            admin_max_bytes,
            admin_query_timeout_ms,
            upstream_ca,
            tls_cert,
            tls_key,
            auth_token,
            durability,
            background_priority,
            capture_cap,
            db_memory_limit,
            flush_interval_ms,
            connect_timeout_ms,
            response_timeout_ms,
            idle_timeout_ms,
            shutdown_grace_ms,
            header_read_timeout_ms,
            keep_alive_timeout_ms,
            max_connections,
            otlp_endpoint,
            otlp_traces_endpoint,
            otlp_ca,
            otlp_headers,
            otlp_service_name,
            otlp_content,
            otlp_queue_spans,
            ship,
            ship_endpoint,
            ship_ca,
            ship_every,
            ship_rows,
            instance_id,
        )
    }

    /// The config file at `file` (if any) with `flags` laid over it, resolved: what `agentcap proxy`
    /// runs with.
    pub fn load(file: Option<&Path>, flags: ProxySettings) -> Result<ProxyConfig, ProxyError> {
        let base = match file {
            Some(p) => ProxySettings::from_file(p)?,
            None => ProxySettings::default(),
        };
        base.overlay(flags).resolve()
    }

    /// The typed configuration: unset fields keep their defaults; the result is validated. Warns when
    /// the client listener is not on loopback.
    pub fn resolve(self) -> Result<ProxyConfig, ProxyError> {
        let bad = |m: String| ProxyError::Config(m);
        let upstream = self.upstream.as_deref().unwrap_or(DEFAULT_UPSTREAM);
        let upstream: Uri = upstream
            .parse()
            .map_err(|e| bad(format!("upstream {upstream:?} is not a URL: {e}")))?;
        let mut recorder = RecorderConfig::default();
        if let Some(db) = self.db {
            recorder.db_path = db;
        }
        if let Some(d) = self.durability {
            recorder.durability = d;
        }
        if let Some(p) = self.background_priority {
            recorder.background_priority = p;
        }
        if let Some(c) = self.capture_cap {
            recorder.capture_cap = c;
        }
        if let Some(m) = self.db_memory_limit {
            recorder.db_memory_limit = m;
        }
        if let Some(ms) = self.flush_interval_ms {
            recorder.flush_interval = Duration::from_millis(ms);
        }
        for r in self.redact.iter().flatten() {
            recorder
                .redact
                .push(regex::Regex::new(r).map_err(|e| bad(format!("redact {r:?}: {e}")))?);
        }
        let set = |e: &Option<String>| {
            e.as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
        };
        let traces_url = match (set(&self.otlp_traces_endpoint), set(&self.otlp_endpoint)) {
            (Some(url), _) => Some(url),
            (None, Some(base)) => Some(crate::otel::traces_url(&base)),
            (None, None) => None,
        };
        if let Some(url) = traces_url {
            let mut o = crate::otel::OtlpConfig::new(&url);
            if let Some(h) = &self.otlp_headers {
                o.headers = crate::otel::parse_headers(h).map_err(|e| bad(e.to_string()))?;
            }
            if let Some(n) = self.otlp_service_name.filter(|n| !n.is_empty()) {
                o.service_name = n;
            }
            o.content = self.otlp_content.unwrap_or(false);
            o.ca = self.otlp_ca;
            if let Some(n) = self.otlp_queue_spans {
                o.queue_spans = n;
            }
            o.validate().map_err(|e| bad(e.to_string()))?;
            recorder.otlp = Some(o);
        }
        let mut cfg = ProxyConfig::new(upstream, recorder);
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if self.no_admin == Some(true) {
            cfg.admin_listen = None;
        } else if let Some(a) = self.admin_listen {
            cfg.admin_listen = Some(a);
        }
        cfg.admin.allowed_hosts = self.admin_allow_host.unwrap_or_default();
        let limits = &mut cfg.admin.limits;
        if let Some(n) = self.admin_max_rows {
            limits.max_rows = n;
        }
        if let Some(n) = self.admin_max_bytes {
            limits.max_bytes = n;
        }
        let ms = |v: Option<u64>, d: &mut Duration| {
            if let Some(v) = v {
                *d = Duration::from_millis(v);
            }
        };
        ms(self.admin_query_timeout_ms, &mut limits.timeout);
        cfg.upstream_ca = self.upstream_ca;
        cfg.tls_cert = self.tls_cert;
        cfg.tls_key = self.tls_key;
        cfg.auth_token = self.auth_token;
        ms(self.connect_timeout_ms, &mut cfg.connect_timeout);
        ms(self.response_timeout_ms, &mut cfg.response_timeout);
        ms(self.idle_timeout_ms, &mut cfg.idle_timeout);
        ms(self.shutdown_grace_ms, &mut cfg.shutdown_grace);
        ms(self.header_read_timeout_ms, &mut cfg.header_read_timeout);
        ms(self.keep_alive_timeout_ms, &mut cfg.keep_alive_timeout);
        cfg.max_connections = self.max_connections;
        if let Some(dest) = self.ship {
            let mut sc = ShipConfig::new(dest);
            sc.endpoint = self.ship_endpoint;
            sc.ca = self.ship_ca;
            if let Some(s) = self.ship_every {
                sc.every = Duration::from_secs(s);
            }
            if let Some(n) = self.ship_rows {
                sc.every_rows = n;
            }
            sc.instance_id = self.instance_id;
            cfg.ship = Some(sc);
        } else if self.ship_endpoint.is_some()
            || self.ship_every.is_some()
            || self.ship_rows.is_some()
        {
            return Err(bad(
                "--ship-endpoint, --ship-every and --ship-rows go with --ship".into(),
            ));
        }
        if !cfg.listen.ip().is_loopback() {
            tracing::warn!(listen = %cfg.listen, "the proxy listens beyond loopback: anyone who reaches it can use your upstream");
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_recorders_and_the_proxys() {
        let cfg = ProxySettings::default().resolve().unwrap();
        let rec = RecorderConfig::default();
        assert_eq!(cfg.recorder.db_path, rec.db_path);
        assert_eq!(cfg.recorder.durability, rec.durability);
        assert_eq!(cfg.recorder.background_priority, rec.background_priority);
        assert_eq!(cfg.recorder.capture_cap, rec.capture_cap);
        assert_eq!(cfg.recorder.channel_capacity, rec.channel_capacity);
        assert_eq!(cfg.recorder.flush_interval, rec.flush_interval);
        assert!(cfg.recorder.redact.is_empty());
        let admin = AdminConfig::default();
        assert_eq!(cfg.admin.limits, admin.limits);
        assert_eq!(cfg.admin.allowed_hosts, admin.allowed_hosts);
        let new = ProxyConfig::new(DEFAULT_UPSTREAM.parse().unwrap(), rec);
        assert_eq!(cfg.upstream, new.upstream);
        assert_eq!(cfg.listen, new.listen);
        assert_eq!(cfg.admin_listen, new.admin_listen);
        assert_eq!(cfg.connect_timeout, new.connect_timeout);
        assert_eq!(cfg.response_timeout, new.response_timeout);
        assert_eq!(cfg.idle_timeout, new.idle_timeout);
        assert_eq!(cfg.shutdown_grace, new.shutdown_grace);
        assert_eq!(cfg.header_read_timeout, new.header_read_timeout);
        assert_eq!(cfg.keep_alive_timeout, new.keep_alive_timeout);
        assert_eq!(cfg.max_connections, new.max_connections);
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = ProxySettings::from_toml(
            r#"
            upstream = "http://127.0.0.1:9/base"
            db = "file.duckdb"
            durability = "strict"
            background_priority = "low"
            capture_cap = 100
            idle_timeout_ms = 1234
            flush_interval_ms = 50
            admin_max_rows = 7
            admin_allow_host = ["file.local"]
            redact = ["file-[0-9]+"]
            "#,
        )
        .unwrap();
        let flags = ProxySettings {
            db: Some("flag.duckdb".into()),
            capture_cap: Some(200),
            admin_allow_host: Some(vec!["flag.local".into()]),
            redact: Some(vec!["flag-[0-9]+".into()]),
            ..ProxySettings::default()
        };
        let cfg = file.overlay(flags).resolve().unwrap();
        // Set by the flags only, by both (flags win), by the file only, by neither.
        assert_eq!(cfg.recorder.db_path, PathBuf::from("flag.duckdb"));
        assert_eq!(cfg.recorder.capture_cap, 200);
        assert_eq!(cfg.upstream.to_string(), "http://127.0.0.1:9/base");
        assert_eq!(cfg.recorder.durability, Durability::Strict);
        assert_eq!(cfg.recorder.background_priority, BackgroundPriority::Low);
        assert_eq!(cfg.idle_timeout, Duration::from_millis(1234));
        assert_eq!(cfg.recorder.flush_interval, Duration::from_millis(50));
        assert_eq!(cfg.admin.limits.max_rows, 7);
        let defaults = ProxyConfig::new(cfg.upstream.clone(), RecorderConfig::default());
        assert_eq!(cfg.connect_timeout, defaults.connect_timeout);
        assert_eq!(cfg.listen, defaults.listen);
        // Lists add up, the flags' entries first.
        assert_eq!(cfg.admin.allowed_hosts, ["flag.local", "file.local"]);
        let redact: Vec<&str> = cfg.recorder.redact.iter().map(|r| r.as_str()).collect();
        assert_eq!(redact, ["flag-[0-9]+", "file-[0-9]+"]);
    }

    #[test]
    fn no_admin_from_either_side_disables_the_admin_listener() {
        let file = ProxySettings::from_toml("no_admin = true").unwrap();
        let flags = ProxySettings {
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..ProxySettings::default()
        };
        assert_eq!(
            file.overlay(flags.clone()).resolve().unwrap().admin_listen,
            None
        );
        let file = ProxySettings::from_toml("admin_listen = \"127.0.0.1:9999\"").unwrap();
        let cfg = file.overlay(flags).resolve().unwrap();
        assert_eq!(
            cfg.admin_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let e = ProxySettings::from_toml("capture_cap = 10\nupstream_url = \"http://x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `upstream_url`"), "{e}");
        assert!(
            e.contains("upstream"),
            "the error lists the known keys: {e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, "listen_addr = \"127.0.0.1:1\"\n").unwrap();
        let e = ProxySettings::load(Some(&path), ProxySettings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_addr") && e.contains("proxy.toml"), "{e}");
        let e = ProxySettings::from_toml("durability = \"sometimes\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sometimes") || e.contains("unknown variant"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_configuration_errors() {
        for s in [
            ProxySettings {
                upstream: Some("ftp://x".into()),
                ..Default::default()
            },
            ProxySettings {
                redact: Some(vec!["(".into()]),
                ..Default::default()
            },
            ProxySettings {
                idle_timeout_ms: Some(0),
                ..Default::default()
            },
            ProxySettings {
                otlp_endpoint: Some("udp://collector".into()),
                ..Default::default()
            },
            ProxySettings {
                otlp_endpoint: Some("http://127.0.0.1:4318".into()),
                otlp_headers: Some("no-equals-sign".into()),
                ..Default::default()
            },
        ] {
            assert!(matches!(s.resolve(), Err(ProxyError::Config(_))));
        }
    }

    /// `AWS_CA_BUNDLE` (`--ship-ca`'s variable) is often set machine-wide: without `--ship` it is
    /// ignored, not an error.
    #[test]
    fn a_ship_ca_without_ship_is_ignored() {
        let s = ProxySettings {
            ship_ca: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            ..Default::default()
        };
        assert_eq!(s.resolve().unwrap().ship, None);
    }

    #[test]
    fn otlp_export_is_off_unless_an_endpoint_is_given() {
        assert_eq!(
            ProxySettings::default().resolve().unwrap().recorder.otlp,
            None
        );
        let file = ProxySettings::from_toml(
            r#"
            otlp_endpoint = "http://127.0.0.1:6006/"
            otlp_headers = "authorization=Bearer%20abc, x-team = ml"
            otlp_content = true
            "#,
        )
        .unwrap();
        let flags = ProxySettings {
            otlp_service_name: Some("edge".into()),
            ..Default::default()
        };
        let o = file
            .overlay(flags)
            .resolve()
            .unwrap()
            .recorder
            .otlp
            .unwrap();
        assert_eq!(o.endpoint, "http://127.0.0.1:6006/v1/traces");
        // The traces URL of its own is used as is, and wins over the shared base URL.
        let own = ProxySettings {
            otlp_endpoint: Some("http://127.0.0.1:6006".into()),
            otlp_traces_endpoint: Some("http://127.0.0.1:4318/custom/path".into()),
            ..Default::default()
        };
        assert_eq!(
            own.resolve().unwrap().recorder.otlp.unwrap().endpoint,
            "http://127.0.0.1:4318/custom/path"
        );
        assert_eq!(
            o.headers,
            [
                ("authorization".to_owned(), "Bearer abc".to_owned()),
                ("x-team".to_owned(), "ml".to_owned())
            ]
        );
        assert_eq!(o.service_name, "edge");
        assert!(o.content);
        assert_eq!(
            crate::otel::traces_url("https://c.example/v1/traces"),
            "https://c.example/v1/traces"
        );
    }
}
