//! `agentcap proxy`: flags and config file of the recording proxy, resolved into its typed configuration.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentcap_proxy::ProxyConfig;
use agentcap_proxy::recorder::{Durability, RecorderConfig};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;

/// Durability of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// The journal is group-committed every few milliseconds (default).
    Batched,
    /// A response's last frame reaches the client only once its record is on disk (audit grade).
    Strict,
}

/// Flags of `agentcap proxy`. Every flag may also come from `--config FILE` (TOML, same names with `_`).
#[derive(Debug, Args)]
#[command(
    about = "Run the recording proxy: forward to one upstream, record every exchange into DuckDB",
    after_help = "Examples:\n  agentcap proxy                                        # 127.0.0.1:8787 -> https://api.mistral.ai, agentcap.duckdb\n  agentcap proxy --upstream http://127.0.0.1:8080        # in front of the twin\n  agentcap proxy --durability strict --redact 'sk-[A-Za-z0-9]+'\n\nPoint your client at it: Python Mistral(server_url=\"http://127.0.0.1:8787\"), TypeScript new Mistral({serverURL: ...})."
)]
pub struct ProxyArgs {
    /// TOML file with any of these settings (flags given on the command line win).
    #[arg(long, env = "AGENTCAP_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Client listener [default: 127.0.0.1:8787].
    #[arg(long, env = "AGENTCAP_PROXY_LISTEN")]
    listen: Option<SocketAddr>,
    /// The upstream every request goes to [default: https://api.mistral.ai].
    #[arg(long, env = "AGENTCAP_UPSTREAM")]
    upstream: Option<String>,
    /// The DuckDB file [default: agentcap.duckdb].
    #[arg(long, env = "AGENTCAP_DB")]
    db: Option<PathBuf>,
    /// Admin listener for health, metrics, read-only queries and the web UI (/), loopback only [default: 127.0.0.1:8788].
    #[arg(long, env = "AGENTCAP_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Disable the admin listener.
    #[arg(long)]
    no_admin: bool,
    /// A Host name the admin listener answers to besides localhost / 127.0.0.1 / [::1] (repeatable).
    #[arg(long, value_name = "NAME")]
    admin_allow_host: Vec<String>,
    /// Most rows in one admin query's answer; more make it truncated [default: 10000].
    #[arg(long)]
    admin_max_rows: Option<usize>,
    /// Most bytes (as JSON) of rows in one admin query's answer; more make it truncated [default: 16777216].
    #[arg(long)]
    admin_max_bytes: Option<usize>,
    /// An admin query is interrupted after this long, in milliseconds [default: 30000].
    #[arg(long)]
    admin_query_timeout_ms: Option<u64>,
    /// Extra CA certificate (PEM) to trust for the upstream.
    #[arg(long, env = "AGENTCAP_UPSTREAM_CA")]
    upstream_ca: Option<PathBuf>,
    /// Serve TLS to clients with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "AGENTCAP_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "AGENTCAP_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Require clients to send `X-Agentcap-Token: TOKEN` (stripped before forwarding); the admin listener requires it too.
    #[arg(long, env = "AGENTCAP_PROXY_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Recording durability [default: batched].
    #[arg(long, value_enum, env = "AGENTCAP_DURABILITY")]
    durability: Option<DurabilityArg>,
    /// Mask matches of this regular expression in stored bodies (repeatable).
    #[arg(long, value_name = "REGEX")]
    redact: Vec<String>,
    /// Largest body stored per request or response, in bytes; bigger ones pass in full, stored truncated [default: 1048576].
    #[arg(long, env = "AGENTCAP_CAPTURE_CAP")]
    capture_cap: Option<usize>,
    /// Connecting to the upstream may take this long, in milliseconds [default: 10000].
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// The upstream's response headers must arrive within this, in milliseconds [default: 300000].
    #[arg(long)]
    response_timeout_ms: Option<u64>,
    /// A response body may sit idle this long between frames, in milliseconds [default: 600000].
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// On SIGINT/SIGTERM, in-flight exchanges get this long to finish, in milliseconds [default: 30000].
    #[arg(long)]
    shutdown_grace_ms: Option<u64>,
    /// A client connection must send each request head within this, in milliseconds; the first one counts
    /// from the accept (TLS handshake included) [default: 10000].
    #[arg(long)]
    header_read_timeout_ms: Option<u64>,
    /// A client connection with no request in flight is closed this long after its last response, in
    /// milliseconds [default: 60000].
    #[arg(long)]
    keep_alive_timeout_ms: Option<u64>,
    /// Most client connections open at once; at the cap new ones wait in the kernel's backlog
    /// [default: 10000, or what the open-file limit holds: (ulimit -n - 64) / 2].
    #[arg(long, env = "AGENTCAP_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Also shut down (gracefully, as on SIGTERM) when standard input reaches end of file: lets a parent
    /// process tie the proxy's life to its own.
    #[arg(long)]
    exit_on_stdin_close: bool,
}

/// The same settings in a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    upstream: Option<String>,
    db: Option<PathBuf>,
    admin_listen: Option<SocketAddr>,
    no_admin: Option<bool>,
    admin_allow_host: Option<Vec<String>>,
    admin_max_rows: Option<usize>,
    admin_max_bytes: Option<usize>,
    admin_query_timeout_ms: Option<u64>,
    upstream_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    auth_token: Option<String>,
    durability: Option<DurabilityArg>,
    redact: Option<Vec<String>>,
    capture_cap: Option<usize>,
    connect_timeout_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    keep_alive_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

impl ProxyArgs {
    /// Resolves flags over the config file over defaults, and validates.
    pub fn config(&self) -> anyhow::Result<ProxyConfig> {
        let f = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let upstream = self
            .upstream
            .clone()
            .or(f.upstream)
            .unwrap_or_else(|| "https://api.mistral.ai".into());
        let upstream: http::Uri = upstream
            .parse()
            .with_context(|| format!("--upstream {upstream:?} is not a URL"))?;
        let mut redact = Vec::new();
        for r in self.redact.iter().chain(f.redact.iter().flatten()) {
            redact.push(regex::Regex::new(r).with_context(|| format!("--redact {r:?}"))?);
        }
        let recorder = RecorderConfig {
            db_path: self
                .db
                .clone()
                .or(f.db)
                .unwrap_or_else(|| PathBuf::from("agentcap.duckdb")),
            durability: match self
                .durability
                .or(f.durability)
                .unwrap_or(DurabilityArg::Batched)
            {
                DurabilityArg::Batched => Durability::Batched,
                DurabilityArg::Strict => Durability::Strict,
            },
            capture_cap: self.capture_cap.or(f.capture_cap).unwrap_or(1 << 20),
            redact,
            ..RecorderConfig::default()
        };
        let mut cfg = ProxyConfig::new(upstream, recorder);
        if let Some(l) = self.listen.or(f.listen) {
            cfg.listen = l;
        }
        if self.no_admin || f.no_admin.unwrap_or(false) {
            cfg.admin_listen = None;
        } else if let Some(a) = self.admin_listen.or(f.admin_listen) {
            cfg.admin_listen = Some(a);
        }
        cfg.admin.allowed_hosts = self
            .admin_allow_host
            .iter()
            .chain(f.admin_allow_host.iter().flatten())
            .cloned()
            .collect();
        if let Some(n) = self.admin_max_rows.or(f.admin_max_rows) {
            cfg.admin.limits.max_rows = n;
        }
        if let Some(n) = self.admin_max_bytes.or(f.admin_max_bytes) {
            cfg.admin.limits.max_bytes = n;
        }
        if let Some(ms) = self.admin_query_timeout_ms.or(f.admin_query_timeout_ms) {
            cfg.admin.limits.timeout = Duration::from_millis(ms);
        }
        cfg.upstream_ca = self.upstream_ca.clone().or(f.upstream_ca);
        cfg.tls_cert = self.tls_cert.clone().or(f.tls_cert);
        cfg.tls_key = self.tls_key.clone().or(f.tls_key);
        cfg.auth_token = self.auth_token.clone().or(f.auth_token);
        let ms = |a: Option<u64>, b: Option<u64>, d: &mut Duration| {
            if let Some(v) = a.or(b) {
                *d = Duration::from_millis(v);
            }
        };
        ms(
            self.connect_timeout_ms,
            f.connect_timeout_ms,
            &mut cfg.connect_timeout,
        );
        ms(
            self.response_timeout_ms,
            f.response_timeout_ms,
            &mut cfg.response_timeout,
        );
        ms(
            self.idle_timeout_ms,
            f.idle_timeout_ms,
            &mut cfg.idle_timeout,
        );
        ms(
            self.shutdown_grace_ms,
            f.shutdown_grace_ms,
            &mut cfg.shutdown_grace,
        );
        ms(
            self.header_read_timeout_ms,
            f.header_read_timeout_ms,
            &mut cfg.header_read_timeout,
        );
        ms(
            self.keep_alive_timeout_ms,
            f.keep_alive_timeout_ms,
            &mut cfg.keep_alive_timeout,
        );
        cfg.max_connections = self.max_connections.or(f.max_connections);
        if !cfg.listen.ip().is_loopback() {
            tracing::warn!(listen = %cfg.listen, "the proxy listens beyond loopback: anyone who reaches it can use your upstream");
        }
        if let Err(e) = cfg.validate() {
            bail!(e);
        }
        Ok(cfg)
    }
}

/// Runs the proxy until SIGINT / SIGTERM, then drains and flushes.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let signal = crate::shutdown_signal();
    let exit_on_stdin = args.exit_on_stdin_close;
    let shutdown = async move {
        if exit_on_stdin {
            tokio::select! {
                _ = signal => {},
                _ = crate::stdin_closed() => {},
            }
        } else {
            signal.await;
        }
    };
    let mut cfg = args.config()?;
    // The web UI on the admin listener, over the live recording (the proxy only offers the hook).
    cfg.admin.mount = Some(agentcap_ui::admin_mount(agentcap_ui::UiConfig::default()));
    let upstream = cfg.upstream.to_string();
    let db = cfg.recorder.db_path.display().to_string();
    let scheme = if cfg.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let stats = agentcap_proxy::run(
        cfg,
        move |addr, admin| {
            let mut out = std::io::stdout().lock();
            let admin = admin.map(|a| format!("http://{a}")).unwrap_or_else(|| "off".into());
            let _ = writeln!(out, "agentcap proxy listening on {scheme}://{addr} -> {upstream} (db {db}, admin {admin})");
            let _ = out.flush();
        },
        shutdown,
    )
    .await
    .context("the proxy failed")?;
    eprintln!(
        "agentcap proxy stopped: {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    Ok(())
}
