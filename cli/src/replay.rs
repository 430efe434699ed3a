//! `agentcap replay`: a recording served back as if it were the API (cassette mode).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use agentcap_replay::{OnMiss, ReplayConfig, Selection, Timing};
use anyhow::Context;
use clap::Args;

/// Flags of `agentcap replay`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  agentcap replay --db agentcap.duckdb --session ci-run-7\n  agentcap replay --db cassette.duckdb --timing fast --ignore-field /metadata/request_time\n  agentcap replay --db cassette.duckdb --on-miss upstream https://api.mistral.ai"
)]
pub struct ReplayArgs {
    /// The recording to serve (opened read-only; loaded into memory at start).
    #[arg(long, env = "AGENTCAP_DB")]
    db: PathBuf,

    /// Address to listen on (port 0 picks a free one; the start line says which).
    #[arg(long, default_value = "127.0.0.1:8791")]
    listen: SocketAddr,

    /// Serve only the exchanges of this session (X-Agentcap-Session at record time).
    #[arg(long, conflicts_with = "where_sql")]
    session: Option<String>,

    /// Serve only the exchanges this SQL predicate over `exchanges` selects, e.g. "started_at > '2026-01-01'".
    #[arg(long = "where", value_name = "SQL")]
    where_sql: Option<String>,

    /// recorded (the recorded delays and inter-event gaps), fast (no delays) or scale:X (delays times X).
    #[arg(long, default_value = "recorded", value_parser = parse_timing)]
    timing: Timing,

    /// What a request no recorded exchange matches gets: `error` (501 in the API's error shape, naming the
    /// closest recorded request), or `upstream URL` (forwarded there and recorded into --db).
    #[arg(long, num_args = 1..=2, value_names = ["error|upstream", "URL"], default_values = ["error"])]
    on_miss: Vec<String>,

    /// A JSON pointer (e.g. /metadata/ts) removed from request bodies before matching; repeatable.
    #[arg(long = "ignore-field", value_name = "JSON_POINTER")]
    ignore_field: Vec<String>,

    /// Exit when standard input reaches end of file (lets a parent process tie the replay's life to its own).
    #[arg(long)]
    exit_on_stdin_close: bool,
}

fn parse_timing(s: &str) -> Result<Timing, String> {
    s.parse()
}

fn on_miss(v: &[String]) -> anyhow::Result<OnMiss> {
    match v {
        [e] if e == "error" => Ok(OnMiss::Error),
        [u, url] if u == "upstream" => Ok(OnMiss::Upstream(
            url.parse()
                .with_context(|| format!("--on-miss upstream {url}"))?,
        )),
        other => anyhow::bail!("--on-miss takes `error` or `upstream URL`, got {other:?}"),
    }
}

/// Serves the recording until SIGINT / SIGTERM (or stdin EOF with `--exit-on-stdin-close`).
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let mut cfg = ReplayConfig::new(args.db.clone());
    cfg.listen = args.listen;
    cfg.selection = match (args.session, args.where_sql) {
        (Some(s), _) => Selection::Session(s),
        (None, Some(w)) => Selection::Where(w),
        (None, None) => Selection::All,
    };
    cfg.timing = args.timing;
    cfg.on_miss = on_miss(&args.on_miss)?;
    cfg.ignore_fields = args.ignore_field;
    let exit_on_stdin = args.exit_on_stdin_close;
    let shutdown = crate::stop_requested(exit_on_stdin);
    let db = args.db.display().to_string();
    agentcap_replay::run(
        cfg,
        move |addr, s| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "agentcap replay listening on http://{addr} (db {db}: {} exchanges, {} streamed, {} not replayable, {} not byte-exact)",
                s.exchanges, s.streams, s.unfaithful, s.inexact
            );
            let _ = out.flush();
        },
        shutdown,
    )
    .await
    .context("the replay failed")
}
