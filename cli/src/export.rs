//! `agentcap export`: the recording as Parquet / JSON Lines files per table, or one HAR file.

use std::path::PathBuf;

use agentcap_proxy::export::{ExportFormat, ExportOptions, Filter};
use clap::{Args, ValueEnum};

use crate::query::{SourceArgs, source};

/// `--format` of `agentcap export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One Parquet file per table.
    Parquet,
    /// One JSON Lines file per table.
    Jsonl,
    /// One HAR 1.2 file of the exchanges (SSE responses as text, event times in `_agentcap`).
    Har,
}

/// Flags of `agentcap export`.
#[derive(Debug, Args)]
#[command(
    about = "Export the recording: Parquet or JSON Lines per table, or HAR 1.2 of the exchanges",
    after_help = "Tables: exchanges, sse_events, entries, conversations, agents, usage. --since, --until and --where choose exchanges; the other tables follow them.\n\nExamples:\n  agentcap export --db rec.duckdb --format parquet --out export/\n  agentcap export --format har --since 2026-01-01T00:00:00Z --out today.har   # a running proxy's recording\n  agentcap export --db rec.duckdb --format jsonl --tables exchanges,usage --where \"status >= 400\" --out errors/"
)]
pub struct ExportArgs {
    /// The format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Tables to export (comma-separated; Parquet / JSON Lines). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Exchanges that started at or after this instant (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Exchanges that started before this instant.
    #[arg(long)]
    pub until: Option<String>,
    /// A read-only SQL condition over `exchanges` (e.g. "operation LIKE 'conversations.%'").
    #[arg(long = "where", value_name = "SQL")]
    pub predicate: Option<String>,
    /// A directory (Parquet / JSON Lines: <table>.parquet / <table>.jsonl in it) or a file (HAR).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Runs the export and says what it wrote and which database answered.
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let opts = ExportOptions {
        format: match args.format {
            Format::Parquet => ExportFormat::Parquet,
            Format::Jsonl => ExportFormat::Jsonl,
            Format::Har => ExportFormat::Har,
        },
        tables: args.tables,
        filter: Filter {
            since: args.since,
            until: args.until,
            predicate: args.predicate,
        },
        out: args.out,
    };
    let report = source(args.source).export(&opts).await?;
    eprintln!("agentcap: answered from {}", report.answered_by);
    for f in &report.files {
        eprintln!(
            "agentcap: {} rows{} -> {} ({} bytes)",
            f.rows,
            if f.capped { " (row cap reached)" } else { "" },
            f.path.display(),
            f.bytes
        );
    }
    Ok(())
}
