//! `agentcap proxy`: flags and config file of the recording proxy, resolved into its typed configuration.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use agentcap_proxy::ProxyConfig;
use agentcap_proxy::config::ProxySettings;
use agentcap_proxy::recorder::{BackgroundPriority, Durability};
use anyhow::Context;
use clap::{Args, ValueEnum};

/// Durability of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// The journal is group-committed every few milliseconds (default).
    Batched,
    /// A response's last frame reaches the client only once its record is on disk (audit grade).
    Strict,
}

/// How the recorder's background threads give the cores to forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackgroundArg {
    /// Linux's SCHED_IDLE: they run on the time forwarding leaves (default).
    Idle,
    /// A higher nice value: about a tenth of a busy core, whatever forwarding needs.
    Low,
}

/// Flags of `agentcap proxy`. Every flag may also come from `--config FILE` (TOML, same names with `_`:
/// [`ProxySettings`]).
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
    /// How the recorder's DuckDB thread, derivers and shipper give the cores to forwarding; the
    /// journal writer keeps the normal priority [default: idle].
    #[arg(long, value_enum)]
    background_priority: Option<BackgroundArg>,
    /// Mask matches of this regular expression in stored bodies (repeatable).
    #[arg(long, value_name = "REGEX")]
    redact: Vec<String>,
    /// Largest body stored per request or response, in bytes; bigger ones pass in full, stored truncated [default: 1048576].
    #[arg(long, env = "AGENTCAP_CAPTURE_CAP")]
    capture_cap: Option<usize>,
    /// Memory of the recording's DuckDB instance (its buffers, the recorder's writes and the admin
    /// listener's queries), in bytes; what does not fit goes to a temporary directory next to the
    /// file [default: 1073741824].
    #[arg(long, env = "AGENTCAP_DB_MEMORY_LIMIT")]
    db_memory_limit: Option<u64>,
    /// Write what was recorded to DuckDB at least this often, in milliseconds: how far queries on the
    /// live recording may lag behind the traffic (`POST /flush` on the admin listener writes at once)
    /// [default: 1000].
    #[arg(long)]
    flush_interval_ms: Option<u64>,
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
    /// Threads forwarding traffic (tokio workers) [default: one per core but one, at least one: the
    /// recorder's threads (journal, derivation, DuckDB) get the remaining core].
    #[arg(long, env = "AGENTCAP_PROXY_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
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
    /// Export OpenTelemetry traces (GenAI conventions) over OTLP/HTTP to this collector: the base URL, e.g.
    /// http://127.0.0.1:4318 (`/v1/traces` is appended unless the path ends with it). Off when unset.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// The traces URL itself, used as is (no path appended); wins over --otlp-endpoint.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    otlp_traces_endpoint: Option<String>,
    /// A CA certificate file (PEM) trusted for an https:// collector, besides the public roots.
    #[arg(long, value_name = "FILE", env = "OTEL_EXPORTER_OTLP_CERTIFICATE")]
    otlp_ca: Option<PathBuf>,
    /// Headers sent with every export: `key=value,key2=value2` (values percent-encoded).
    #[arg(
        long,
        value_name = "HEADERS",
        env = "OTEL_EXPORTER_OTLP_HEADERS",
        hide_env_values = true
    )]
    otlp_headers: Option<String>,
    /// `service.name` of the exported spans [default: agentcap].
    #[arg(long, value_name = "NAME", env = "OTEL_SERVICE_NAME")]
    otlp_service_name: Option<String>,
    /// Also export message content (inputs, outputs, tool arguments), always through --redact.
    #[arg(long)]
    otlp_content: bool,
    /// Bound of the span export queue; when full, spans are dropped and counted [default: 4096].
    #[arg(long, value_name = "SPANS")]
    otlp_queue_spans: Option<usize>,
    /// Also shut down (gracefully, as on SIGTERM) when standard input reaches end of file: lets a parent
    /// process tie the proxy's life to its own.
    #[arg(long)]
    exit_on_stdin_close: bool,
    /// Ship the recording as Parquet segments to s3://BUCKET/PREFIX (credentials, region and endpoint from the
    /// usual AWS_* variables) or file:///DIR; see the README's "Scaling out".
    #[arg(long, env = "AGENTCAP_SHIP", value_name = "URL")]
    ship: Option<String>,
    /// An S3-compatible endpoint for --ship (MinIO, R2, …), e.g. http://127.0.0.1:9000.
    #[arg(long, env = "AGENTCAP_SHIP_ENDPOINT", value_name = "URL")]
    ship_endpoint: Option<String>,
    /// A CA certificate file (PEM) trusted for an https:// object store, besides the public roots (read only
    /// with --ship).
    #[arg(long, value_name = "FILE", env = "AWS_CA_BUNDLE")]
    ship_ca: Option<PathBuf>,
    /// Ship at least every this many seconds [default: 60].
    #[arg(long, value_name = "SECONDS")]
    ship_every: Option<u64>,
    /// …or as soon as this many exchanges were recorded since the last segment [default: 10000].
    #[arg(long, value_name = "N")]
    ship_rows: Option<u64>,
    /// This instance's name in the shipped dataset [default: host name and a random suffix kept in the journal
    /// directory].
    #[arg(long, env = "AGENTCAP_INSTANCE_ID")]
    instance_id: Option<String>,
}

impl ProxyArgs {
    /// The flags as an overlay of the config file's settings (a flag not given leaves the file's value).
    fn settings(&self) -> ProxySettings {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        ProxySettings {
            listen: self.listen,
            upstream: self.upstream.clone(),
            db: self.db.clone(),
            admin_listen: self.admin_listen,
            no_admin: self.no_admin.then_some(true),
            admin_allow_host: list(&self.admin_allow_host),
            admin_max_rows: self.admin_max_rows,
            admin_max_bytes: self.admin_max_bytes,
            admin_query_timeout_ms: self.admin_query_timeout_ms,
            upstream_ca: self.upstream_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            auth_token: self.auth_token.clone(),
            durability: self.durability.map(|d| match d {
                DurabilityArg::Batched => Durability::Batched,
                DurabilityArg::Strict => Durability::Strict,
            }),
            background_priority: self.background_priority.map(|p| match p {
                BackgroundArg::Idle => BackgroundPriority::Idle,
                BackgroundArg::Low => BackgroundPriority::Low,
            }),
            redact: list(&self.redact),
            capture_cap: self.capture_cap,
            db_memory_limit: self.db_memory_limit,
            flush_interval_ms: self.flush_interval_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            response_timeout_ms: self.response_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            shutdown_grace_ms: self.shutdown_grace_ms,
            header_read_timeout_ms: self.header_read_timeout_ms,
            keep_alive_timeout_ms: self.keep_alive_timeout_ms,
            max_connections: self.max_connections,
            otlp_endpoint: self.otlp_endpoint.clone(),
            otlp_traces_endpoint: self.otlp_traces_endpoint.clone(),
            otlp_ca: self.otlp_ca.clone(),
            otlp_headers: self.otlp_headers.clone(),
            otlp_service_name: self.otlp_service_name.clone(),
            otlp_content: self.otlp_content.then_some(true),
            otlp_queue_spans: self.otlp_queue_spans,
            ship: self.ship.clone(),
            ship_endpoint: self.ship_endpoint.clone(),
            ship_ca: self.ship_ca.clone(),
            ship_every: self.ship_every,
            ship_rows: self.ship_rows,
            instance_id: self.instance_id.clone(),
        }
    }

    /// Resolves flags over the config file over defaults, and validates.
    pub fn config(&self) -> anyhow::Result<ProxyConfig> {
        Ok(ProxySettings::load(
            self.config.as_deref(),
            self.settings(),
        )?)
    }
}

/// Runs the proxy until SIGINT / SIGTERM, then drains and flushes.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let exit_on_stdin = args.exit_on_stdin_close;
    let shutdown = crate::stop_requested(exit_on_stdin);
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

impl ProxyArgs {
    /// Tokio worker threads for `agentcap proxy`: `--worker-threads`, else one per core but one (at least one).
    pub fn runtime_workers(&self) -> usize {
        self.worker_threads.map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1)
            },
            usize::from,
        )
    }
}
