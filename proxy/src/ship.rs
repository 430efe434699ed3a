//! Shipping: the recording, cut into segments of Parquet files, uploaded to an object store
//! (`s3://BUCKET/PREFIX`, or `file://DIR`), so that the recordings of many proxies form one
//! dataset.
//!
//! ```text
//! DuckDB thread ──commits──▶ DuckDB file ◀──cloned connection── shipper thread ──PUT──▶ object store
//!                                                                    │
//!                                              <journal>/ship/state.json (plan, watermark)
//! ```
//!
//! A segment is a range of `exchanges` rowids. `exchanges` is append-only (the recorder never
//! updates or deletes one of its rows after the commit that wrote it, and DuckDB gives appended
//! rows the next rowids at commit), so a rowid range names the same rows forever. The other
//! tables follow their exchanges: a segment holds the `sse_events`, `entries`, `usage` and
//! `agents` rows whose `exchange_id` is one of its exchanges (the recorder writes an exchange's
//! rows in the transaction that writes the exchange), and a snapshot of the `conversations` its
//! exchanges are about, as they are when the segment is made (upserted rows have no stable range:
//! the newest snapshot of a conversation is the one of the highest `segment_seq`).
//!
//! Crash safety: a segment is planned (sequence number, rowid range, date) and the plan written to
//! the state file (atomically replaced, fsynced) BEFORE anything is produced; its files are then
//! made by DuckDB's own `COPY … TO` into the spool directory (the recorder instance's one allowed
//! directory, see [`crate::recorder::open_db_with`]) and uploaded under names made of the plan
//! alone (`PREFIX/table=T/date=D/instance=I/part-SEQ.parquet`); only once every file is uploaded does the
//! watermark advance and the plan go. A kill at any point leaves either no plan (nothing was
//! produced) or the plan, which the next start makes again, with the same names: an upload twice
//! is a PUT over the same object, so each row is in the lake exactly once.
//!
//! The shipper runs on its own thread with its own small runtime: it never blocks recording or
//! forwarding. A failing store is retried with a jittered exponential backoff (capped at
//! `every`); meanwhile the recording goes on and the backlog is a gauge
//! (`agentcap_ship_lag_seconds`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use duckdb::Connection;
use http_body_util::BodyExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::client::{
    HttpClient as OsClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::recorder::RecorderHandle;
use crate::recorder::metrics::ShipMetrics;

/// Where and how often to ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipConfig {
    /// `s3://BUCKET[/PREFIX]` or `file://DIR` (an absolute directory, created when missing).
    pub dest: String,
    /// An S3-compatible endpoint (`http://…` allowed), instead of AWS's (or `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    /// A CA certificate file (PEM) trusted for an `https://` store besides the webpki roots.
    pub ca: Option<PathBuf>,
    /// Ship at least this often (default 60 s)…
    pub every: Duration,
    /// …or as soon as this many exchanges were committed since the last segment (default 10 000).
    pub every_rows: u64,
    /// Most exchanges in one segment (default 50 000): a backlog is shipped as several segments.
    pub max_segment_rows: u64,
    /// The instance's name in the lake (`instance=ID`); default: the host name and a random
    /// suffix made once and kept in `<journal>/ship/instance-id`.
    pub instance_id: Option<String>,
}

impl ShipConfig {
    /// The defaults for `dest`.
    pub fn new(dest: impl Into<String>) -> Self {
        ShipConfig {
            dest: dest.into(),
            endpoint: None,
            ca: None,
            every: Duration::from_secs(60),
            every_rows: 10_000,
            max_segment_rows: 50_000,
            instance_id: None,
        }
    }

    /// Checks the destination and the numbers (at start, before anything runs).
    pub fn validate(&self) -> Result<(), ShipError> {
        Dest::parse(&self.dest)?;
        if self.every.is_zero() || self.every_rows == 0 || self.max_segment_rows == 0 {
            return Err(ShipError::Config(
                "--ship-every, --ship-rows and the segment size must be positive".into(),
            ));
        }
        if let Some(id) = &self.instance_id {
            check_instance_id(id)?;
        }
        Ok(())
    }
}

/// Errors of the shipper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    /// The operator's settings are unusable.
    #[error("--ship: {0}")]
    Config(String),
    /// A local file (state, spool, instance id) could not be read or written.
    #[error("shipping, {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading the recording or making a Parquet file failed (internal).
    #[error("shipping, DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    /// The object store refused or failed (upstream: retried).
    #[error("shipping, object store: {0}")]
    Store(String),
    /// The state file is damaged.
    #[error("shipping, state file {path}: {why}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The destination, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    S3 { bucket: String, prefix: String },
    File { dir: PathBuf },
}

impl Dest {
    fn parse(s: &str) -> Result<Dest, ShipError> {
        let bad = |why: &str| Err(ShipError::Config(format!("{s:?}: {why}")));
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return bad("no bucket");
            }
            Ok(Dest::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
            })
        } else if let Some(dir) = s.strip_prefix("file://") {
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() {
                return bad("file:// takes an absolute directory (file:///var/lake)");
            }
            Ok(Dest::File { dir })
        } else {
            bad("the destination is s3://BUCKET/PREFIX or file:///DIR")
        }
    }
}

/// The tables a segment holds, each with the statement that selects its rows; `?` 1 and 2 are
/// the segment's first and last `exchanges` rowid, `?` 3 (conversations only) its sequence number.
pub const SEGMENT_TABLES: &[(&str, &str)] = &[
    (
        "exchanges",
        "SELECT * FROM exchanges WHERE rowid BETWEEN ? AND ?",
    ),
    (
        "sse_events",
        "SELECT * FROM sse_events WHERE exchange_id IN (SELECT id FROM exchanges WHERE rowid BETWEEN ? AND ?)",
    ),
    (
        "entries",
        "SELECT * FROM entries WHERE exchange_id IN (SELECT id FROM exchanges WHERE rowid BETWEEN ? AND ?)",
    ),
    (
        "usage",
        "SELECT * FROM usage WHERE exchange_id IN (SELECT id FROM exchanges WHERE rowid BETWEEN ? AND ?)",
    ),
    (
        "agents",
        "SELECT * FROM agents WHERE exchange_id IN (SELECT id FROM exchanges WHERE rowid BETWEEN ? AND ?)",
    ),
    (
        "conversations",
        "SELECT *, ?::BIGINT AS segment_seq FROM conversations WHERE id IN (SELECT conversation_id FROM exchanges WHERE rowid BETWEEN ? AND ?)",
    ),
];

/// A planned segment: everything its object names and contents depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Sequence number (`part-SEQ`), from 0, per instance.
    pub seq: u64,
    /// First `exchanges` rowid.
    pub first_rowid: i64,
    /// Last `exchanges` rowid (inclusive).
    pub last_rowid: i64,
    /// The day it was planned (UTC), as days since 1970-01-01: the `date=` partition.
    pub day: i64,
}

/// What the shipper keeps in `<journal>/ship/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipState {
    /// The destination the watermark is for.
    pub dest: String,
    /// The next segment's sequence number.
    pub next_seq: u64,
    /// Every `exchanges` row up to this rowid is shipped (-1: none).
    pub shipped_rowid: i64,
    /// The segment planned and not yet fully uploaded.
    pub plan: Option<Plan>,
    /// Segments shipped in all.
    pub segments: u64,
}

/// How far [`Shipper::round_until`] goes (test hook simulating a crash).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// The whole round.
    End,
    /// Right after the plan is durable.
    Planned,
    /// After uploading this many files of the segment.
    Uploaded(usize),
}

/// One round's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    /// The segment.
    pub plan: Plan,
    /// The object names uploaded.
    pub objects: Vec<String>,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// The shipper: state, spool, store. [`Shipper::round`] ships one segment; [`spawn`] runs rounds
/// on a thread.
pub struct Shipper {
    cfg: ShipConfig,
    conn: Connection,
    store: Store,
    prefix: String,
    instance: String,
    dir: PathBuf,
    spool: PathBuf,
    state: ShipState,
    metrics: ShipMetrics,
    /// Test hook (`AGENTCAP_SHIP_TEST_HANG_AT=SEQ`): the shipper thread hangs after the first
    /// file of segment SEQ is uploaded, so a test can kill the process mid-segment.
    hang_at: Option<u64>,
    /// Files above this size go up as multipart uploads of parts this size: [`PART_BYTES`], or
    /// `AGENTCAP_SHIP_TEST_PART_BYTES` (test hook: small parts make multipart uploads of small
    /// segments against an emulator that allows them).
    part_bytes: usize,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("dest", &self.cfg.dest)
            .field("instance", &self.instance)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ShipError + '_ {
    move |source| ShipError::Io {
        path: path.to_owned(),
        source,
    }
}

fn check_instance_id(id: &str) -> Result<(), ShipError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ShipError::Config(format!(
            "instance id {id:?}: use 1 to 128 of A-Z a-z 0-9 - _ . (not starting with .)"
        )))
    }
}

/// The instance id: the configured one, else the one kept in `dir/instance-id`, else a new one
/// (host name and 8 random hex digits) written there.
fn instance_id(cfg: &ShipConfig, dir: &Path) -> Result<String, ShipError> {
    if let Some(id) = &cfg.instance_id {
        check_instance_id(id)?;
        return Ok(id.clone());
    }
    let file = dir.join("instance-id");
    match std::fs::read_to_string(&file) {
        Ok(s) => {
            let id = s.trim().to_owned();
            check_instance_id(&id)?;
            return Ok(id);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&file)(e)),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "agentcap".into()
    } else {
        host
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let id = format!("{host}-{suffix}");
    write_atomic(&file, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// Replaces `path` with `bytes` atomically and durably (temporary file, fsync, rename, fsync of
/// the directory).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ShipError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date_of(day: i64) -> String {
    chrono::DateTime::from_timestamp(day.saturating_mul(86_400), 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

fn today() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// The object name of one table's file of a segment (the prefix, if any, in front).
pub fn object_name(prefix: &str, table: &str, plan: &Plan, instance: &str) -> String {
    let name = format!(
        "table={table}/date={}/instance={instance}/part-{:010}.parquet",
        date_of(plan.day),
        plan.seq
    );
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// One request to the object store (each part of a multipart upload) may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Files up to this size go up in one PUT; larger ones as a multipart upload of parts this size.
const PART_BYTES: usize = 16 * 1024 * 1024;

enum Store {
    File(PathBuf),
    /// With the shipper's own small runtime (only S3 needs one).
    S3(Box<(Arc<dyn ObjectStore>, tokio::runtime::Runtime)>),
}

/// An S3 bucket through `object_store`'s S3 client: credentials, region and endpoint from the usual
/// `AWS_*` variables (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web
/// identity, the instance metadata service; `AWS_REGION`, `AWS_ENDPOINT_URL`), the endpoint
/// `--ship-endpoint` overriding them, requests sent by the workspace's one HTTP client
/// ([`crate::upstream::http_client`], rustls) through [`Connector`].
fn s3_store(
    bucket: &str,
    endpoint: Option<&str>,
    ca: Option<&Path>,
) -> Result<Arc<dyn ObjectStore>, ShipError> {
    let client = crate::upstream::http_client(&crate::upstream::ClientOptions {
        extra_ca: ca.map(Path::to_owned),
        ..Default::default()
    })
    .map_err(|e| ShipError::Config(e.to_string()))?;
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_http_connector(Connector { client })
        .with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
            ..Default::default()
        });
    let endpoint = endpoint.map(str::to_owned).or_else(|| {
        ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    });
    if let Some(e) = endpoint {
        let uri: http::Uri = e
            .parse()
            .map_err(|err| ShipError::Config(format!("S3 endpoint {e:?}: {err}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(ShipError::Config(format!(
                "S3 endpoint {e:?} must be an http:// or https:// URL with a host"
            )));
        }
        // An S3-compatible store: path-style addressing, plain HTTP allowed when it says so.
        b = b
            .with_allow_http(uri.scheme_str() == Some("http"))
            .with_endpoint(e.trim_end_matches('/'))
            .with_virtual_hosted_style_request(false);
    }
    let store = b
        .build()
        .map_err(|e| ShipError::Config(format!("s3://{bucket}: {e}")))?;
    Ok(Arc::new(store))
}

/// `object_store`'s HTTP transport over the workspace's one client (no second HTTP or TLS stack).
struct Connector {
    client: crate::upstream::HttpClient<HttpRequestBody>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &object_store::ClientOptions) -> object_store::Result<OsClient> {
        Ok(OsClient::new(Service {
            client: self.client.clone(),
        }))
    }
}

struct Service {
    client: crate::upstream::HttpClient<HttpRequestBody>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let res = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req)).await {
            Err(elapsed) => return Err(HttpError::new(HttpErrorKind::Timeout, elapsed)),
            Ok(Err(e)) if e.is_connect() => return Err(HttpError::new(HttpErrorKind::Connect, e)),
            Ok(Err(e)) => return Err(HttpError::new(HttpErrorKind::Request, e)),
            Ok(Ok(res)) => res,
        };
        let (parts, body) = res.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

fn open_store(cfg: &ShipConfig) -> Result<(Store, String), ShipError> {
    match Dest::parse(&cfg.dest)? {
        Dest::File { dir } => {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            Ok((Store::File(dir), String::new()))
        }
        Dest::S3 { bucket, prefix } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ShipError::Store(format!("starting its runtime: {e}")))?;
            Ok((
                Store::S3(Box::new((
                    s3_store(&bucket, cfg.endpoint.as_deref(), cfg.ca.as_deref())?,
                    rt,
                ))),
                prefix,
            ))
        }
    }
}

/// Reads `path` as a state file (missing: a fresh state for `dest`).
fn load_state(path: &Path, dest: &str) -> Result<ShipState, ShipError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| ShipError::State {
            path: path.to_owned(),
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ShipState {
            dest: dest.to_owned(),
            shipped_rowid: -1,
            ..ShipState::default()
        }),
        Err(e) => Err(io(path)(e)),
    }
}

impl Shipper {
    /// Opens the shipper of `recorder` (which must have been opened with a spool directory:
    /// `RecorderConfig::ship_spool`). Reads the state file;
    /// a plan found there is made again by the next round.
    pub fn open(recorder: &RecorderHandle, cfg: ShipConfig) -> Result<Shipper, ShipError> {
        cfg.validate()?;
        let spool = recorder.spool_dir().ok_or_else(|| {
            ShipError::Config("the recorder was opened without a spool directory".into())
        })?;
        let dir = spool
            .parent()
            .map(Path::to_owned)
            .ok_or_else(|| ShipError::Config("the spool directory has no parent".into()))?;
        let instance = instance_id(&cfg, &dir)?;
        let state = load_state(&dir.join("state.json"), &cfg.dest)?;
        if state.dest != cfg.dest {
            tracing::warn!(
                old = %state.dest, new = %cfg.dest,
                "agentcap ship: the destination changed; shipping goes on from the previous watermark (segments before it are at the old destination)"
            );
        }
        let (store, prefix) = open_store(&cfg)?;
        let conn = recorder
            .connection()
            .map_err(|e| ShipError::Config(e.to_string()))?;
        Ok(Shipper {
            hang_at: std::env::var("AGENTCAP_SHIP_TEST_HANG_AT")
                .ok()
                .and_then(|v| v.parse().ok()),
            part_bytes: std::env::var("AGENTCAP_SHIP_TEST_PART_BYTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(PART_BYTES),
            metrics: recorder.ship_metrics(),
            cfg,
            conn,
            store,
            prefix,
            instance,
            dir,
            spool,
            state,
        })
    }

    /// The instance id in effect.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The current state (as last written).
    pub fn state(&self) -> &ShipState {
        &self.state
    }

    fn save(&mut self) -> Result<(), ShipError> {
        self.state.dest = self.cfg.dest.clone();
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| ShipError::State {
            path: self.dir.join("state.json"),
            why: e.to_string(),
        })?;
        write_atomic(&self.dir.join("state.json"), &bytes)
    }

    /// Exchanges committed and not shipped yet.
    pub fn backlog(&self) -> Result<u64, ShipError> {
        let max: Option<i64> =
            self.conn
                .query_row("SELECT max(rowid) FROM exchanges", [], |r| r.get(0))?;
        Ok(max.map_or(0, |m| (m - self.state.shipped_rowid).max(0) as u64))
    }

    /// Ships one segment: the pending plan, or a new one of what was committed since the
    /// watermark. `Ok(None)`: nothing to ship.
    pub fn round(&mut self) -> Result<Option<Shipped>, ShipError> {
        self.round_until(StopAt::End)
    }

    /// [`Shipper::round`] stopping early, as a crash there would (test hook).
    #[doc(hidden)]
    pub fn round_until(&mut self, stop: StopAt) -> Result<Option<Shipped>, ShipError> {
        let plan = match self.state.plan {
            Some(p) => p,
            None => {
                let max: Option<i64> =
                    self.conn
                        .query_row("SELECT max(rowid) FROM exchanges", [], |r| r.get(0))?;
                let first = self.state.shipped_rowid + 1;
                let Some(max) = max.filter(|m| *m >= first) else {
                    return Ok(None);
                };
                let size = i64::try_from(self.cfg.max_segment_rows).unwrap_or(i64::MAX);
                let plan = Plan {
                    seq: self.state.next_seq,
                    first_rowid: first,
                    last_rowid: max.min(first.saturating_add(size - 1)),
                    day: today(),
                };
                self.state.plan = Some(plan);
                // Durable before anything is produced: a restart makes this very segment again.
                self.save()?;
                plan
            }
        };
        if stop == StopAt::Planned {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.spool).map_err(io(&self.spool))?;
        let mut objects = Vec::new();
        let mut bytes = 0u64;
        for (table, select) in SEGMENT_TABLES {
            if stop == StopAt::Uploaded(objects.len()) {
                return Ok(None);
            }
            let file = self.spool.join(format!("{table}-{:010}.parquet", plan.seq));
            let rows = self.produce(table, select, &plan, &file)?;
            if rows == 0 {
                let _ = std::fs::remove_file(&file);
                continue;
            }
            let name = object_name(&self.prefix, table, &plan, &self.instance);
            let n = self.upload(&file, &name)?;
            let _ = std::fs::remove_file(&file);
            bytes += n;
            objects.push(name);
            if self.hang_at == Some(plan.seq) {
                tracing::warn!(
                    seq = plan.seq,
                    "agentcap ship: test hook: hanging mid-segment"
                );
                loop {
                    std::thread::park();
                }
            }
        }
        self.state.shipped_rowid = plan.last_rowid;
        self.state.next_seq = plan.seq + 1;
        self.state.segments += 1;
        self.state.plan = None;
        self.save()?;
        self.metrics.segments.inc();
        self.metrics.objects.inc_by(objects.len() as u64);
        self.metrics.bytes.inc_by(bytes);
        tracing::info!(
            seq = plan.seq,
            exchanges = plan.last_rowid - plan.first_rowid + 1,
            files = objects.len(),
            bytes,
            "agentcap ship: segment shipped"
        );
        Ok(Some(Shipped {
            plan,
            objects,
            bytes,
        }))
    }

    /// Writes one table's rows of `plan` to `file` with DuckDB's `COPY` (Parquet, zstd); returns
    /// the rows written.
    fn produce(
        &self,
        table: &str,
        select: &str,
        plan: &Plan,
        file: &Path,
    ) -> Result<u64, ShipError> {
        let target = file
            .to_str()
            .ok_or_else(|| ShipError::Config(format!("{} is not a UTF-8 path", file.display())))?
            .replace('\'', "''");
        // `COPY … TO` takes no parameter for its target: the name is one this module made (table,
        // sequence number) inside the spool directory.
        let copy = format!("COPY ({select}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)");
        let n = if table == "conversations" {
            self.conn.execute(
                &copy,
                duckdb::params![plan.seq as i64, plan.first_rowid, plan.last_rowid],
            )?
        } else {
            self.conn
                .execute(&copy, duckdb::params![plan.first_rowid, plan.last_rowid])?
        };
        Ok(n as u64)
    }

    /// Uploads `file` as `name`; returns its size. A local destination gets a temporary file
    /// renamed into place, S3 one PUT, or a multipart upload above [`PART_BYTES`] (completed only
    /// once every part is in, aborted on failure): either way the object appears whole or not at
    /// all, and an upload made again replaces it.
    fn upload(&self, file: &Path, name: &str) -> Result<u64, ShipError> {
        match &self.store {
            Store::File(dir) => {
                let bytes = std::fs::read(file).map_err(io(file))?;
                let target = dir.join(name);
                let parent = target.parent().unwrap_or(dir);
                std::fs::create_dir_all(parent).map_err(io(parent))?;
                let tmp = target.with_extension("parquet.tmp");
                std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&tmp))?;
                std::fs::rename(&tmp, &target).map_err(io(&target))?;
                Ok(bytes.len() as u64)
            }
            Store::S3(s3) => s3.1.block_on(put_file(&s3.0, file, name, self.part_bytes)),
        }
    }
}

/// Streams `file` to `name` in `store` (a PUT, or a multipart upload for a large file).
async fn put_file(
    store: &Arc<dyn ObjectStore>,
    file: &Path,
    name: &str,
    part_bytes: usize,
) -> Result<u64, ShipError> {
    use std::io::Read;
    let store_err = |e: object_store::Error| ShipError::Store(format!("{name}: {e}"));
    let mut f = std::fs::File::open(file).map_err(io(file))?;
    let mut w = object_store::buffered::BufWriter::with_capacity(
        Arc::clone(store),
        object_store::path::Path::from(name),
        part_bytes,
    );
    let mut n = 0u64;
    let mut buf = vec![0u8; part_bytes];
    loop {
        let read = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = w.abort().await;
                return Err(io(file)(e));
            }
        };
        n += read as u64;
        if let Err(e) = w.put(Bytes::copy_from_slice(&buf[..read])).await {
            let _ = w.abort().await;
            return Err(store_err(e));
        }
    }
    if let Err(e) = tokio::io::AsyncWriteExt::shutdown(&mut w).await {
        let _ = w.abort().await;
        return Err(ShipError::Store(format!("{name}: {e}")));
    }
    Ok(n)
}

/// Requests to the shipper thread.
enum Ctl {
    /// Ship what is committed, then stop (answering when done).
    Finish(Sender<()>),
}

/// The running shipper thread.
#[derive(Debug)]
pub struct ShipperThread {
    ctl: Sender<Ctl>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl ShipperThread {
    /// Ships what is committed (within `grace`), then stops the thread. What is left is shipped by
    /// the next start.
    pub fn finish(mut self, grace: Duration) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.ctl.send(Ctl::Finish(tx)).is_ok() && rx.recv_timeout(grace).is_err() {
            tracing::warn!(
                "agentcap ship: the last segments were not shipped within {grace:?}; the next start ships them"
            );
            return;
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Starts a thread running [`Shipper::round`] every `every`, or sooner once `every_rows`
/// exchanges were committed since the last segment; failures are retried with a jittered backoff.
pub fn spawn(mut shipper: Shipper, recorder: RecorderHandle) -> Result<ShipperThread, ShipError> {
    let (ctl, rx) = crossbeam_channel::bounded(1);
    let dir = shipper.dir.clone();
    let background = recorder.background_priority();
    let join = std::thread::Builder::new()
        .name("agentcap-ship".into())
        .spawn(move || {
            crate::recorder::background_priority(background);
            run(&mut shipper, &recorder, &rx);
        })
        .map_err(io(&dir))?;
    Ok(ShipperThread {
        ctl,
        join: Some(join),
    })
}

/// A number in [0, 1) from the clock and a counter (jitter only: not for anything secret).
fn jitter(n: u64) -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut z = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn run(s: &mut Shipper, recorder: &RecorderHandle, rx: &Receiver<Ctl>) {
    let poll = Duration::from_millis(500).min(s.cfg.every);
    let mut caught_up = Instant::now();
    let mut rows_at_last = recorder.stats().exchanges_written;
    let mut failures = 0u32;
    let mut wait_until = Instant::now() + s.cfg.every;
    loop {
        let finish = match rx.recv_timeout(poll) {
            Ok(Ctl::Finish(done)) => Some(done),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let written = recorder.stats().exchanges_written;
        let due = Instant::now() >= wait_until
            || (failures == 0 && written.saturating_sub(rows_at_last) >= s.cfg.every_rows);
        if finish.is_none() && !due {
            s.metrics.lag_seconds.set(lag(s, caught_up).as_secs_f64());
            continue;
        }
        rows_at_last = written;
        // Ship until caught up (a backlog is several segments) or a failure.
        let result = loop {
            match s.round() {
                Ok(Some(_)) => continue,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let last = Instant::now();
        match result {
            Ok(()) => {
                failures = 0;
                caught_up = last;
                wait_until = last + s.cfg.every;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                s.metrics.failures.inc();
                let base = Duration::from_secs(1)
                    .saturating_mul(1u32 << failures.min(16))
                    .min(s.cfg.every);
                let delay = base.mul_f64(0.5 + 0.5 * jitter(failures as u64));
                tracing::warn!(error = %e, retry_in = ?delay, "agentcap ship: a segment failed; it is retried with the same name");
                wait_until = last + delay;
            }
        }
        s.metrics.lag_seconds.set(lag(s, caught_up).as_secs_f64());
        if let Some(done) = finish {
            let _ = done.send(());
            return;
        }
    }
}

/// Time since the shipper was last caught up, when something is waiting (0 otherwise).
fn lag(s: &Shipper, caught_up: Instant) -> Duration {
    match s.backlog() {
        Ok(0) => Duration::ZERO,
        _ => caught_up.elapsed(),
    }
}
