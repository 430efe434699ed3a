//! Eval results in DuckDB: the tables `eval_runs`, `eval_configs`, `eval_items`, `eval_grades` and
//! `eval_attempts`, written as items finish by one writer thread (batched transactions), in the
//! same database file as the recording proxy's tables when the proxy is embedded.
//!
//! **Exchange links.** Each attempt is tied to the proxy's exchange by the `eval-attempt` tag it
//! sent. The link is stored (`exchange_id` columns) and filled while the run goes: with
//! [`Store::link_every`] the writer thread links every few seconds, only when attempts were
//! written since the last pass or the last pass left some unlinked (their exchange not yet
//! committed by the recorder), and it touches only rows still unlinked; the session links once
//! more at the end of a run or resume (after the recorder's flush, which also covers exchanges
//! replayed from the proxy's journal after a crash). A view joining by tag could never go stale,
//! but it would decode the tags of every exchange of the run (two per item: answer and judge, so
//! 16,000+ at 8,000 items) on every read of every report, and readers of the stored columns would
//! have to change; a pass over the rows still unlinked costs one scan of the run's exchanges
//! every few seconds, and a crash leaves at most the last few seconds unlinked until a resume.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use agentcap_proxy::recorder::{DbAccess, open_db};
pub use duckdb::Connection;
use duckdb::params;
use duckdb::types::{TimeUnit, Value as DbValue};

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DuckDB reported an error.
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    /// The database file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The recorder's open (DuckDB's error).
        source: agentcap_proxy::recorder::RecorderError,
    },
    /// A batch of writes failed.
    #[error("writing eval results failed: {0}")]
    Write(String),
    /// The writer thread is gone.
    #[error("the eval store is closed")]
    Closed,
}

/// The schema (idempotent).
pub const SCHEMA: &str = r#"
-- One row per eval run.
CREATE TABLE IF NOT EXISTS eval_runs (
    run_id              VARCHAR PRIMARY KEY,
    created_at          TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,  -- last time a run or resume ended
    status              VARCHAR,      -- running | complete | interrupted | failed
    dataset             VARCHAR,      -- label: simpleqa, nq-open, mini-qa or a file name
    dataset_source      VARCHAR,      -- what --dataset said (name or absolute path)
    dataset_sha256      VARCHAR,      -- of the data file (NULL for built-in sets)
    dataset_rows        INTEGER,      -- rows in the dataset
    n_items             INTEGER,      -- items sampled
    limit_k             INTEGER,      -- --limit (NULL: all)
    seed                UBIGINT,      -- sampling seed
    grader              VARCHAR,      -- simpleqa | exact
    judge_model         VARCHAR,
    judge_parse         VARCHAR,      -- strict | simple-evals-compat
    grader_template     VARCHAR,      -- the template text used
    baseline            VARCHAR,
    upstream            VARCHAR,      -- where answers came from
    proxy               VARCHAR,      -- 'embedded', an external proxy URL, or 'none'
    simulated_upstream  BOOLEAN,
    configs_toml        VARCHAR,      -- the configuration file, verbatim
    options             VARCHAR,      -- runner options (JSON)
    agentcap_version    VARCHAR
);

-- One row per config of a run (resolved agents included).
CREATE TABLE IF NOT EXISTS eval_configs (
    run_id          VARCHAR,
    name            VARCHAR,
    position        INTEGER,
    description     VARCHAR,
    kind            VARCHAR,   -- agent_id | inline_agent | model
    mode            VARCHAR,   -- stream | sync
    prompt_template VARCHAR,   -- NULL: the bare question
    model           VARCHAR,
    agent_id        VARCHAR,   -- existing or created at run start
    agent_version   VARCHAR,
    spec            VARCHAR,   -- the variant as JSON
    PRIMARY KEY (run_id, name)
);

-- One row per (run, config, item) that finished: answered; failed after retries (status 'error',
-- no answer); or answered but the judge call failed after its retries (status 'judge_error': the
-- answer and its figures are kept, there is no grade, `eval resume --retry-errors` grades it again).
-- eval_items, eval_grades and eval_attempts are loaded with appenders and have no key (DuckDB's
-- per-row conflict checks cost more than the rest of the harness); the writer keeps
-- (run_id, config, item_id) unique by deleting an errored row when its retry lands.
CREATE TABLE IF NOT EXISTS eval_items (
    run_id            VARCHAR,
    config            VARCHAR,
    item_id           VARCHAR,
    position          INTEGER,   -- index in the run's sample
    question          VARCHAR,
    golds             VARCHAR,   -- JSON array of acceptable answers
    topic             VARCHAR,
    answer_type       VARCHAR,
    prompt            VARCHAR,
    status            VARCHAR,   -- answered | error | judge_error
    answer            VARCHAR,
    conversation_id   VARCHAR,   -- joins conversations.id / exchanges.conversation_id
    exchange_id       VARCHAR,   -- the proxy's exchanges.id of the answering request (embedded proxy)
    answer_attempt_id VARCHAR,   -- eval_attempts.attempt_id of that request
    attempts          INTEGER,   -- answer attempts made
    ttft_ms           DOUBLE,    -- first message.output.delta (stream mode)
    total_ms          DOUBLE,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    connector_tokens  BIGINT,
    connectors        VARCHAR,   -- JSON object tool -> calls
    tool_executions   INTEGER,
    cost_usd          DOUBLE,
    error_kind        VARCHAR,   -- class of the last failure (status 'error'; 'judge_…' for 'judge_error')
    error             VARCHAR,
    finished_at       TIMESTAMPTZ
);

-- One row per graded item (never for errors or judge errors).
CREATE TABLE IF NOT EXISTS eval_grades (
    run_id            VARCHAR,
    config            VARCHAR,
    item_id           VARCHAR,
    grader            VARCHAR,   -- simpleqa | exact
    outcome           VARCHAR,   -- correct | incorrect | not_attempted | unparseable
    judge_model       VARCHAR,
    judge_reply       VARCHAR,   -- raw judge text
    judge_attempt_id  VARCHAR,
    judge_exchange_id VARCHAR,
    judge_ms          DOUBLE,
    graded_at         TIMESTAMPTZ
);

-- One row per HTTP attempt (answers, judge calls, agent set-up), retries included.
CREATE TABLE IF NOT EXISTS eval_attempts (
    attempt_id      VARCHAR,   -- sent as X-Agentcap-Tag-eval-attempt
    run_id          VARCHAR,
    config          VARCHAR,
    item_id         VARCHAR,
    phase           VARCHAR,   -- answer | judge | setup
    attempt         INTEGER,   -- 1, 2, ...
    started_at      TIMESTAMPTZ,
    duration_ms     DOUBLE,
    http_status     INTEGER,
    outcome         VARCHAR,   -- ok | retry | failed | cancelled
    error_class     VARCHAR,   -- rate_limited | server_error | client_error | connection | stream | error_event | timeout | protocol
    error           VARCHAR,
    retry_after_ms  DOUBLE,
    backoff_ms      DOUBLE,    -- wait before the next attempt
    conversation_id VARCHAR,
    exchange_id     VARCHAR    -- the proxy's exchange (embedded proxy), linked while the run goes
);
"#;

/// One `eval_runs` row.
#[derive(Debug, Clone, serde::Serialize)]
#[allow(missing_docs)]
pub struct RunRow {
    pub run_id: String,
    pub created_at: String,
    pub status: String,
    pub dataset: String,
    pub dataset_source: String,
    pub dataset_sha256: Option<String>,
    pub dataset_rows: usize,
    pub n_items: usize,
    pub limit: Option<usize>,
    pub seed: u64,
    pub grader: String,
    pub judge_model: Option<String>,
    pub judge_parse: String,
    pub grader_template: Option<String>,
    pub baseline: String,
    pub upstream: String,
    pub proxy: String,
    pub simulated_upstream: bool,
    pub configs_toml: String,
    pub options: String,
    pub finished_at: Option<String>,
}

/// One `eval_configs` row.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct ConfigRow {
    pub run_id: String,
    pub name: String,
    pub position: usize,
    pub description: String,
    pub kind: String,
    pub mode: String,
    pub prompt_template: Option<String>,
    pub model: Option<String>,
    pub agent_id: Option<String>,
    pub agent_version: Option<String>,
    pub spec: String,
}

/// One `eval_items` row.
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)]
pub struct ItemRow {
    pub run_id: String,
    pub config: String,
    pub item_id: String,
    pub position: usize,
    pub question: String,
    pub golds: String,
    pub topic: Option<String>,
    pub answer_type: Option<String>,
    pub prompt: String,
    pub status: String,
    pub answer: Option<String>,
    pub conversation_id: Option<String>,
    pub answer_attempt_id: Option<String>,
    pub attempts: u32,
    pub ttft_ms: Option<f64>,
    pub total_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub connector_tokens: u64,
    pub connectors: Option<String>,
    pub tool_executions: u32,
    pub cost_usd: Option<f64>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub finished_at: String,
    /// This result replaces an earlier (error) row of the same item.
    pub replace: bool,
}

/// One `eval_grades` row.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct GradeRow {
    pub run_id: String,
    pub config: String,
    pub item_id: String,
    pub grader: String,
    pub outcome: String,
    pub judge_model: Option<String>,
    pub judge_reply: Option<String>,
    pub judge_attempt_id: Option<String>,
    pub judge_ms: Option<f64>,
    pub graded_at: String,
}

/// One `eval_attempts` row.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct AttemptRow {
    pub attempt_id: String,
    pub run_id: String,
    pub config: String,
    pub item_id: String,
    pub phase: String,
    pub attempt: u32,
    pub started_at: String,
    pub duration_ms: f64,
    pub http_status: Option<u16>,
    pub outcome: String,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub retry_after_ms: Option<f64>,
    pub backoff_ms: Option<f64>,
    pub conversation_id: Option<String>,
}

/// A small write (run and config rows); `Fn` so that a failed batch can be replayed row by row.
type WriteFn = Box<dyn Fn(&Connection) -> duckdb::Result<()> + Send>;

enum Op {
    Item(Box<ItemRow>, Option<Box<GradeRow>>),
    /// A grade for an item stored as `judge_error` (its status becomes `answered`).
    Regrade(Box<GradeRow>),
    /// Link the run's attempts to the proxy's exchanges every so often (`None`: stop).
    LinkEvery(Option<(String, std::time::Duration)>),
    Attempt(Box<AttemptRow>),
    Write(WriteFn),
    /// Runs on the writer's connection, outside any batch.
    Call(Box<dyn FnOnce(&Connection) + Send>),
    Flush(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The store: a writer thread for results, and a connection for reads.
pub struct Store {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    read: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Opens (or creates) a DuckDB file through the workspace's one open function
/// ([`agentcap_proxy::recorder::open_db`]: external access disabled, no extension autoloading, the
/// configuration locked).
pub fn open_file(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    open_db(Some(path), DbAccess::ReadWrite).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// Opens a DuckDB file read-only (same settings as [`open_file`]).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    open_db(Some(path), DbAccess::ReadOnly).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })
}

fn opt_usize(v: Option<usize>) -> Option<i64> {
    v.map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Creates the tables if needed and starts the writer on `conn` (a connection of its own).
    pub fn new(conn: Connection) -> Result<Store, StoreError> {
        conn.execute_batch(SCHEMA)?;
        let read = conn.try_clone()?;
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("agentcap-eval-store".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(Store {
            tx: Some(tx),
            thread: Some(thread),
            read: Arc::new(Mutex::new(read)),
        })
    }

    /// Opens a file of its own.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::new(open_file(path)?)
    }

    fn write(&self, f: WriteFn) {
        self.send(Op::Write(f));
    }

    /// Resolves once everything written before is committed; reports a failed batch since the
    /// last flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Op::Flush(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Write)
    }

    /// Runs `f` on the read connection (on a blocking thread).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.read.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().map_err(|_| StoreError::Closed)?;
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Write(format!("read task failed: {e}")))?
    }

    /// Inserts or replaces a run row.
    pub fn put_run(&self, r: RunRow) {
        self.write(Box::new(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO eval_runs VALUES (?, CAST(? AS TIMESTAMPTZ), CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                r.run_id,
                r.created_at,
                r.finished_at,
                r.status,
                r.dataset,
                r.dataset_source,
                r.dataset_sha256,
                as_i64(r.dataset_rows as u64),
                as_i64(r.n_items as u64),
                opt_usize(r.limit),
                r.seed,
                r.grader,
                r.judge_model,
                r.judge_parse,
                r.grader_template,
                r.baseline,
                r.upstream,
                r.proxy,
                r.simulated_upstream,
                r.configs_toml,
                r.options,
                env!("CARGO_PKG_VERSION"),
            ])?;
            Ok(())
        }));
    }

    /// Sets a run's status and end time.
    pub fn set_run_status(&self, run_id: &str, status: &str, finished_at: Option<String>) {
        let (run_id, status) = (run_id.to_string(), status.to_string());
        self.write(Box::new(move |c| {
            c.prepare_cached(
                "UPDATE eval_runs SET status = ?, finished_at = CAST(? AS TIMESTAMPTZ) WHERE run_id = ?",
            )?
            .execute(params![status, finished_at, run_id])?;
            Ok(())
        }));
    }

    /// Inserts or replaces a config row.
    pub fn put_config(&self, r: ConfigRow) {
        self.write(Box::new(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO eval_configs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                r.run_id,
                r.name,
                as_i64(r.position as u64),
                r.description,
                r.kind,
                r.mode,
                r.prompt_template,
                r.model,
                r.agent_id,
                r.agent_version,
                r.spec,
            ])?;
            Ok(())
        }));
    }

    /// Writes a finished item and, when graded, its grade (replacing an earlier error row when
    /// `replace` is set).
    pub fn put_item(&self, r: ItemRow, grade: Option<GradeRow>) {
        self.send(Op::Item(Box::new(r), grade.map(Box::new)));
    }

    /// Grades an item stored as `judge_error`: writes the grade and marks the item `answered`,
    /// keeping its answer, conversation and figures.
    pub fn put_regrade(&self, g: GradeRow) {
        self.send(Op::Regrade(Box::new(g)));
    }

    /// Marks a run "simulated upstream" (never unmarks: a resume keeps the label).
    pub fn mark_simulated(&self, run_id: &str) {
        let run_id = run_id.to_string();
        self.write(Box::new(move |c| {
            c.prepare_cached("UPDATE eval_runs SET simulated_upstream = true WHERE run_id = ?")?
                .execute(params![run_id])?;
            Ok(())
        }));
    }

    /// From now on, the writer links `run_id`'s attempts to the proxy's exchanges every `every`
    /// (see the module doc), until [`Store::stop_linking`] or the store closes.
    pub fn link_every(&self, run_id: &str, every: std::time::Duration) {
        self.send(Op::LinkEvery(Some((run_id.to_string(), every))));
    }

    /// Stops the periodic links.
    pub fn stop_linking(&self) {
        self.send(Op::LinkEvery(None));
    }

    /// Records one attempt.
    pub fn put_attempt(&self, r: AttemptRow) {
        self.send(Op::Attempt(Box::new(r)));
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx
            && tx.send(op).is_err()
        {
            tracing::error!("eval store writer is gone: a result was not written");
        }
    }

    /// Fills `exchange_id` of the run's attempts, items and grades from the proxy's `exchanges`
    /// (matched by the `eval-attempt` tag), when that table is in this database. Returns the
    /// number of attempts linked.
    pub async fn link_exchanges(&self, run_id: &str) -> Result<usize, StoreError> {
        let run_id = run_id.to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Op::Call(Box::new(move |c| {
                let _ = tx.send(link(c, &run_id).map(|(n, _)| n));
            })))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops the writer after it has written everything queued.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `table` exists in the main schema.
pub fn has_table(c: &Connection, table: &str) -> Result<bool, StoreError> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
        params![table],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Links the run's unlinked attempts (and their items and grades) to committed exchanges.
/// Returns (attempts linked, attempts still unlinked).
fn link(c: &Connection, run_id: &str) -> Result<(usize, usize), StoreError> {
    if !has_table(c, "exchanges")? {
        return Ok((0, 0));
    }
    c.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> Result<(usize, usize), StoreError> {
        let n = c.execute(
            r#"UPDATE eval_attempts SET exchange_id = x.id
               FROM (SELECT id, regexp_extract(CAST(tags AS VARCHAR), '"eval-attempt":"([^"]*)"', 1) AS attempt_id
                     FROM exchanges WHERE session = ?) x
               WHERE eval_attempts.attempt_id = x.attempt_id AND eval_attempts.run_id = ?
                 AND eval_attempts.exchange_id IS NULL"#,
            params![run_id, run_id],
        )?;
        c.execute(
            "UPDATE eval_items SET exchange_id = a.exchange_id FROM eval_attempts a
             WHERE a.attempt_id = eval_items.answer_attempt_id AND eval_items.run_id = ?
               AND eval_items.exchange_id IS NULL AND a.exchange_id IS NOT NULL",
            params![run_id],
        )?;
        c.execute(
            "UPDATE eval_grades SET judge_exchange_id = a.exchange_id FROM eval_attempts a
             WHERE a.attempt_id = eval_grades.judge_attempt_id AND eval_grades.run_id = ?
               AND eval_grades.judge_exchange_id IS NULL AND a.exchange_id IS NOT NULL",
            params![run_id],
        )?;
        let left: i64 = c.query_row(
            "SELECT count(*) FROM eval_attempts WHERE run_id = ? AND exchange_id IS NULL",
            params![run_id],
            |r| r.get(0),
        )?;
        Ok((n, usize::try_from(left).unwrap_or(0)))
    })();
    match r {
        Ok(n) => {
            c.execute_batch("COMMIT")?;
            Ok(n)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// How long the writer gathers rows before a transaction.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// What the writer has queued for the next transaction.
#[derive(Default)]
struct Batch {
    writes: Vec<WriteFn>,
    items: Vec<(ItemRow, Option<GradeRow>)>,
    regrades: Vec<GradeRow>,
    attempts: Vec<AttemptRow>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.items.is_empty()
            && self.regrades.is_empty()
            && self.attempts.is_empty()
    }
}

/// The writer's periodic linking (see the module doc).
struct AutoLink {
    run_id: String,
    every: std::time::Duration,
    next: std::time::Instant,
    /// Attempts were written since the last pass, or the last pass left some unlinked.
    dirty: bool,
}

impl AutoLink {
    fn tick(&mut self, conn: &Connection) {
        let now = std::time::Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        if !self.dirty {
            return;
        }
        match link(conn, &self.run_id) {
            Ok((n, left)) => {
                tracing::debug!(linked = n, unlinked = left, "linked attempts to exchanges");
                self.dirty = left > 0;
            }
            Err(e) => tracing::warn!(error = %e, "linking attempts to exchanges failed"),
        }
    }
}

fn writer(conn: Connection, rx: mpsc::Receiver<Op>) {
    let mut failed: Option<String> = None;
    let mut batch = Batch::default();
    let mut auto: Option<AutoLink> = None;
    loop {
        let first = match &auto {
            Some(a) => {
                match rx.recv_timeout(a.next.saturating_duration_since(std::time::Instant::now())) {
                    Ok(op) => Some(op),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => break,
            },
        };
        let Some(first) = first else {
            if let Some(a) = &mut auto {
                a.tick(&conn);
            }
            continue;
        };
        // Gather for a few milliseconds so that one transaction carries many rows.
        let deadline = std::time::Instant::now() + GATHER;
        let mut ops = vec![first];
        while ops.len() < 8192 && !matches!(ops.last(), Some(Op::Flush(_) | Op::Call(_))) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        // Queued rows are committed in order; a call or a flush first commits what is before it.
        for op in ops {
            match op {
                Op::Item(r, g) => batch.items.push((*r, g.map(|g| *g))),
                Op::Regrade(g) => batch.regrades.push(*g),
                Op::Attempt(a) => {
                    if let Some(l) = &mut auto {
                        l.dirty = true;
                    }
                    batch.attempts.push(*a);
                }
                Op::LinkEvery(spec) => {
                    auto = spec.map(|(run_id, every)| AutoLink {
                        run_id,
                        every,
                        next: std::time::Instant::now() + every,
                        dirty: true,
                    });
                }
                Op::Write(f) => batch.writes.push(f),
                Op::Call(f) => {
                    commit(&conn, &mut batch, &mut failed);
                    f(&conn);
                }
                Op::Flush(tx) => {
                    commit(&conn, &mut batch, &mut failed);
                    let _ = tx.send(match failed.take() {
                        Some(e) => Err(e),
                        None => Ok(()),
                    });
                }
            }
        }
        commit(&conn, &mut batch, &mut failed);
        if let Some(a) = &mut auto {
            a.tick(&conn);
        }
    }
}

fn commit(conn: &Connection, batch: &mut Batch, failed: &mut Option<String>) {
    if batch.is_empty() {
        return;
    }
    let b = std::mem::take(batch);
    if let Err(e) = write_batch(conn, &b) {
        tracing::error!(error = %e, "writing eval results failed");
        *failed = Some(e);
    }
}

fn ts(rfc3339: &str) -> DbValue {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| DbValue::Timestamp(TimeUnit::Microsecond, t.timestamp_micros()))
        .unwrap_or(DbValue::Null)
}

fn append_items(conn: &Connection, items: &[(ItemRow, Option<GradeRow>)]) -> duckdb::Result<()> {
    for (r, _) in items.iter().filter(|(r, _)| r.replace) {
        for table in ["eval_items", "eval_grades"] {
            conn.prepare_cached(&format!(
                "DELETE FROM {table} WHERE run_id = ? AND config = ? AND item_id = ?"
            ))?
            .execute(params![r.run_id, r.config, r.item_id])?;
        }
    }
    let mut app = conn.appender("eval_items")?;
    for (r, _) in items {
        app.append_row(params![
            r.run_id,
            r.config,
            r.item_id,
            as_i64(r.position as u64),
            r.question,
            r.golds,
            r.topic,
            r.answer_type,
            r.prompt,
            r.status,
            r.answer,
            r.conversation_id,
            DbValue::Null,
            r.answer_attempt_id,
            r.attempts,
            r.ttft_ms,
            r.total_ms,
            as_i64(r.prompt_tokens),
            as_i64(r.completion_tokens),
            as_i64(r.connector_tokens),
            r.connectors,
            r.tool_executions,
            r.cost_usd,
            r.error_kind,
            r.error,
            ts(&r.finished_at),
        ])?;
    }
    app.flush()?;
    drop(app);
    let mut app = conn.appender("eval_grades")?;
    for g in items.iter().filter_map(|(_, g)| g.as_ref()) {
        append_grade(&mut app, g)?;
    }
    app.flush()
}

fn apply_regrades(conn: &Connection, grades: &[GradeRow]) -> duckdb::Result<()> {
    for g in grades {
        conn.prepare_cached(
            "DELETE FROM eval_grades WHERE run_id = ? AND config = ? AND item_id = ?",
        )?
        .execute(params![g.run_id, g.config, g.item_id])?;
        conn.prepare_cached(
            "UPDATE eval_items SET status = 'answered', error_kind = NULL, error = NULL
             WHERE run_id = ? AND config = ? AND item_id = ? AND status = 'judge_error'",
        )?
        .execute(params![g.run_id, g.config, g.item_id])?;
    }
    let mut app = conn.appender("eval_grades")?;
    for g in grades {
        append_grade(&mut app, g)?;
    }
    app.flush()
}

fn append_grade(app: &mut duckdb::Appender<'_>, g: &GradeRow) -> duckdb::Result<()> {
    app.append_row(params![
        g.run_id,
        g.config,
        g.item_id,
        g.grader,
        g.outcome,
        g.judge_model,
        g.judge_reply,
        g.judge_attempt_id,
        DbValue::Null,
        g.judge_ms,
        ts(&g.graded_at),
    ])
}

fn append_attempts(conn: &Connection, attempts: &[AttemptRow]) -> duckdb::Result<()> {
    let mut app = conn.appender("eval_attempts")?;
    for r in attempts {
        app.append_row(params![
            r.attempt_id,
            r.run_id,
            r.config,
            r.item_id,
            r.phase,
            r.attempt,
            ts(&r.started_at),
            r.duration_ms,
            r.http_status,
            r.outcome,
            r.error_class,
            r.error,
            r.retry_after_ms,
            r.backoff_ms,
            r.conversation_id,
            DbValue::Null,
        ])?;
    }
    app.flush()
}

fn in_transaction(conn: &Connection, f: impl FnOnce() -> duckdb::Result<()>) -> Result<(), String> {
    conn.execute_batch("BEGIN TRANSACTION")
        .map_err(|e| e.to_string())?;
    match f() {
        Ok(()) => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.to_string())
        }
    }
}

fn write_batch(conn: &Connection, b: &Batch) -> Result<(), String> {
    let whole = in_transaction(conn, || {
        for w in &b.writes {
            w(conn)?;
        }
        append_items(conn, &b.items)?;
        apply_regrades(conn, &b.regrades)?;
        append_attempts(conn, &b.attempts)
    });
    if whole.is_ok() {
        return whole;
    }
    // One bad row must not lose the others: replay the batch row by row.
    let mut first_err = None;
    let mut note = |r: Result<(), String>| {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    };
    for w in &b.writes {
        note(in_transaction(conn, || w(conn)));
    }
    for item in &b.items {
        note(in_transaction(conn, || {
            append_items(conn, std::slice::from_ref(item))
        }));
    }
    for g in &b.regrades {
        note(in_transaction(conn, || {
            apply_regrades(conn, std::slice::from_ref(g))
        }));
    }
    for a in &b.attempts {
        note(in_transaction(conn, || {
            append_attempts(conn, std::slice::from_ref(a))
        }));
    }
    first_err.map_or(Ok(()), Err)
}
