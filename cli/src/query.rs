//! `agentcap query`: read-only SQL over the recording, through a running proxy's admin listener or, when
//! none answers, straight from the DuckDB file. Also the read source `conversations` shares.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentcap_proxy::recorder::{self, QueryResult};
use agentcap_proxy::views;
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Where reads go.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Admin listener of a running proxy; queries go through it, since the proxy holds the DuckDB file.
    #[arg(long, env = "AGENTCAP_ADMIN", default_value = "http://127.0.0.1:8788")]
    pub admin: String,
    /// The DuckDB file, opened read-only when nothing listens at --admin.
    #[arg(long, env = "AGENTCAP_DB", default_value = "agentcap.duckdb")]
    pub db: PathBuf,
}

/// The recording to read: the admin listener first, the file once the listener turned out to be absent.
#[derive(Debug)]
pub struct Source {
    args: SourceArgs,
    client: Client<HttpConnector, Full<Bytes>>,
    use_file: AtomicBool,
}

impl Source {
    /// A source over `args` (nothing is contacted yet).
    pub fn new(args: SourceArgs) -> Arc<Self> {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Arc::new(Self {
            args,
            client,
            use_file: AtomicBool::new(false),
        })
    }

    /// Runs one read-only query.
    pub async fn query(&self, sql: &str) -> anyhow::Result<QueryResult> {
        if !self.use_file.load(Ordering::Relaxed) {
            match self.via_admin(sql).await? {
                Some(r) => return Ok(r),
                None => self.use_file.store(true, Ordering::Relaxed),
            }
        }
        let db = self.args.db.clone();
        if !db.exists() {
            bail!(
                "no proxy answers at {} and there is no recording at {}",
                self.args.admin,
                db.display()
            );
        }
        let sql = sql.to_string();
        tokio::task::spawn_blocking(move || recorder::query_file_read_only(&db, &sql))
            .await
            .context("the query thread failed")?
            .map_err(|e| anyhow!("query failed on {}: {e}", self.args.db.display()))
    }

    /// Runs a query on the blocking thread it is called from (for views that query step by step).
    pub fn query_blocking(
        &self,
        rt: &tokio::runtime::Handle,
        sql: &str,
    ) -> anyhow::Result<QueryResult> {
        rt.block_on(self.query(sql))
    }

    /// `Ok(None)` when nothing listens at the admin address.
    async fn via_admin(&self, sql: &str) -> anyhow::Result<Option<QueryResult>> {
        let url = format!("{}/query", self.args.admin.trim_end_matches('/'));
        let req = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json!({ "sql": sql }).to_string())))
            .with_context(|| format!("--admin {:?} is not a usable URL", self.args.admin))?;
        let resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                tracing::debug!(error = %e, admin = %self.args.admin, "no admin listener; reading the file");
                return Ok(None);
            }
            Err(e) => {
                return Err(anyhow!(
                    "the admin listener at {} failed: {e}",
                    self.args.admin
                ));
            }
        };
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the admin listener's answer")?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).map_err(|_| {
            anyhow!(
                "the admin listener at {} answered {status} with something not JSON: {}",
                self.args.admin,
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )
        })?;
        if !status.is_success() {
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("query failed: {msg}");
        }
        let columns = match v.get("columns") {
            Some(Value::Array(cols)) => cols
                .iter()
                .map(|c| c.as_str().unwrap_or_default().to_string())
                .collect(),
            _ => bail!("the admin listener's answer has no columns: {v}"),
        };
        let rows = match v.get("rows") {
            Some(Value::Array(rows)) => rows
                .iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect(),
            _ => bail!("the admin listener's answer has no rows: {v}"),
        };
        Ok(Some(QueryResult { columns, rows }))
    }
}

/// Output format of `agentcap query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// A text table.
    Table,
    /// An array of objects, one per row.
    Json,
    /// CSV with a header line.
    Csv,
}

/// Flags of `agentcap query`.
#[derive(Debug, Args)]
#[command(
    about = "Run one read-only SQL statement over the recording",
    after_help = "Tables: exchanges, sse_events, entries, conversations, agents, usage.\n\nExamples:\n  agentcap query \"SELECT operation, count(*) FROM exchanges GROUP BY ALL\"\n  agentcap query --format csv \"SELECT * FROM usage\" > usage.csv\n  agentcap query --db old.duckdb \"SELECT * FROM conversations\"   # no proxy running: reads the file"
)]
pub struct QueryArgs {
    /// The SQL (SELECT, WITH, SHOW, DESCRIBE, …; statements that write are refused).
    pub sql: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: QueryFormat,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn to_csv(r: &QueryResult) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&r.columns)?;
    for row in &r.rows {
        w.write_record(row.iter().map(views::cell_text))?;
    }
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow!("{e}"))?,
    )?)
}

/// Runs the query and prints the result.
pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let src = Source::new(args.source);
    let r = src.query(&args.sql).await?;
    let text = match args.format {
        QueryFormat::Table => format!("{}\n", views::render_table(&r)),
        QueryFormat::Json => format!("{}\n", serde_json::to_string_pretty(&r.objects())?),
        QueryFormat::Csv => to_csv(&r)?,
    };
    emit(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let r = QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![
                vec![json!("x,\"y\""), Value::Null],
                vec![json!(2), json!({"k": 1})],
            ],
        };
        assert_eq!(
            to_csv(&r).unwrap(),
            "a,b\n\"x,\"\"y\"\"\",\n2,\"{\"\"k\"\":1}\"\n"
        );
    }
}
