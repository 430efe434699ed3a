//! `agentcap query`: read-only SQL over the recording, through a running proxy's admin listener or, when
//! none answers, straight from the DuckDB file. Also the read source `conversations` shares.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use agentcap_proxy::admin::Source;
use agentcap_proxy::recorder::QueryResult;
use agentcap_ui::text;
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use serde_json::Value;

/// Where reads go.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Admin listener of a running proxy; queries go through it, since the proxy holds the DuckDB file.
    #[arg(long, env = "AGENTCAP_ADMIN", default_value = "http://127.0.0.1:8788")]
    pub admin: String,
    /// The DuckDB file to read. Given, answers come from this file only: through the proxy at --admin when
    /// that proxy records into it, otherwise by opening it read-only. Not given: the recording of the proxy
    /// at --admin, or agentcap.duckdb when no proxy answers.
    #[arg(long, env = "AGENTCAP_DB")]
    pub db: Option<PathBuf>,
    /// The proxy's --auth-token, sent to its admin listener.
    #[arg(long, env = "AGENTCAP_PROXY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The read source over `args` (nothing is contacted yet).
pub fn source(args: SourceArgs) -> Arc<Source> {
    Arc::new(Source::new(&args.admin, args.token, args.db))
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
    after_help = "Tables: exchanges, sse_events, entries, conversations, agents, usage.\n\nExamples:\n  agentcap query \"SELECT operation, count(*) FROM exchanges GROUP BY ALL\"\n  agentcap query --format csv \"SELECT * FROM usage\" > usage.csv\n  agentcap query --db old.duckdb \"SELECT * FROM conversations\"   # that file, whatever proxy runs\n  agentcap query --param '\"conv_1\"' \"SELECT * FROM entries WHERE conversation_id = ?\""
)]
pub struct QueryArgs {
    /// The SQL: one SELECT, WITH … SELECT, EXPLAIN, DESCRIBE, SUMMARIZE or SHOW TABLES (anything else is refused).
    pub sql: String,
    /// A value for the query's next `?` placeholder, as JSON (a bare word is a string), repeatable.
    #[arg(long = "param", value_name = "JSON")]
    pub params: Vec<String>,
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
        w.write_record(row.iter().map(text::cell_text))?;
    }
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow!("{e}"))?,
    )?)
}

/// Runs the query and prints the result.
pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let explicit_db = args.source.db.is_some();
    let src = source(args.source);
    let params: Vec<Value> = args
        .params
        .iter()
        .map(|p| serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.clone())))
        .collect();
    let r = src.query_with(&args.sql, &params).await?;

    if !explicit_db {
        eprintln!("agentcap: answered from {}", src.describe().await?);
    }
    let text = match args.format {
        QueryFormat::Table => format!("{}\n", text::render_table(&r)),
        QueryFormat::Json => format!("{}\n", serde_json::to_string_pretty(&r.objects())?),
        QueryFormat::Csv => to_csv(&r)?,
    };
    emit(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let r = QueryResult::new(
            vec!["a".into(), "b".into()],
            vec![
                vec![json!("x,\"y\""), Value::Null],
                vec![json!(2), json!({"k": 1})],
            ],
        );
        assert_eq!(
            to_csv(&r).unwrap(),
            "a,b\n\"x,\"\"y\"\"\",\n2,\"{\"\"k\"\":1}\"\n"
        );
    }
}
