//! `agentcap datasets list | fetch NAME | from-recording`: the built-in manifests and their state in
//! the cache, a verified download into the cache (the work is in `agentcap_evalkit::fetch`), and
//! recorded conversations as an eval set (`agentcap_evalkit::recorded`).

use std::io::Write;
use std::path::PathBuf;

use agentcap_datasets::{BUILTIN_SETS, builtin_set, manifest};
use agentcap_evalkit::data::{cached_path, default_cache_dir};
use agentcap_evalkit::fetch::{self, FetchOptions, FileStatus};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

/// `agentcap datasets …`.
#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// The datasets agentcap knows (manifests and built-in sets) and whether each is in the cache.
    List(ListArgs),
    /// Download a dataset into the cache, verifying its size and sha256 (source URL, then mirrors).
    Fetch(FetchArgs),
    /// Turn recorded conversations into an eval set (JSONL): one item per turn with its history,
    /// the recorded answer and its provenance; run it with `eval run --dataset recorded:FILE`.
    FromRecording(FromRecordingArgs),
}

/// Flags of `datasets from-recording`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  agentcap datasets from-recording --db agentcap.duckdb --out set.jsonl\n  agentcap datasets from-recording --db agentcap.duckdb --agent ag_123 --turns final --limit 200 --out set.jsonl\n  agentcap datasets from-recording --db agentcap.duckdb --where \"model = 'mistral-medium-latest'\" --out set.jsonl"
)]
pub struct FromRecordingArgs {
    /// The recording (opened read-only).
    #[arg(long, env = "AGENTCAP_DB")]
    pub db: PathBuf,
    /// A SQL condition over the `conversations` table (id, agent_id, agent_version, model,
    /// first_seen, …), checked by the same read-only gate as `agentcap query`.
    #[arg(long = "where", value_name = "SQL")]
    pub predicate: Option<String>,
    /// Only turns recorded under this X-Agentcap-Session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only conversations with this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// At most N conversations (the first seen first).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Which turns become items: first, final or every.
    #[arg(long, default_value = "every")]
    pub turns: agentcap_evalkit::recorded::TurnSelection,
    /// The JSONL file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Flags of `datasets list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Dataset cache directory [default: $AGENTCAP_DATA_DIR, else ~/.cache/agentcap/datasets].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `datasets fetch`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  agentcap datasets fetch simpleqa\n  agentcap datasets fetch simpleqa --from-dir /mnt/mirror/simpleqa     # an offline copy\n  agentcap datasets fetch nq-open --url https://example.org/NQ-open.dev.jsonl"
)]
pub struct FetchArgs {
    /// Manifest name (see `agentcap datasets list`).
    pub name: String,
    /// Fetch the data file from this URL (http, https, file:// or a path) instead; it must match the checksum.
    #[arg(long)]
    pub url: Option<String>,
    /// Copy the data file and its companion files from this directory instead.
    #[arg(long, conflicts_with = "url")]
    pub from_dir: Option<PathBuf>,
    /// Download again even when a verified copy is present.
    #[arg(long)]
    pub force: bool,
    /// Dataset cache directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs a `datasets` subcommand.
pub async fn run(cmd: DatasetsCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetsCommand::List(a) => {
            let dir = a.data_dir.unwrap_or_else(default_cache_dir);
            let mut rows = Vec::new();
            for m in manifest::builtin() {
                let path = cached_path(&dir, &m);
                let state = if !path.exists() {
                    "not fetched"
                } else if manifest::verify_size(&path, m.size).is_ok()
                    && manifest::verify_file(&path, &m.sha256).is_ok()
                {
                    "cached"
                } else {
                    "corrupt (fetch again)"
                };
                rows.push(
                    json!({"name": m.name, "rows": m.rows, "format": m.format.as_str(),
                    "licence": m.licence, "state": state, "path": path.display().to_string(),
                    "source": m.source_url}),
                );
            }
            for name in BUILTIN_SETS {
                let n = builtin_set(name).map_or(0, |s| s.len());
                rows.push(
                    json!({"name": name, "rows": n, "format": "jsonl", "licence": "Apache-2.0",
                    "state": "built in", "path": null, "source": "written by the agentcap team"}),
                );
            }
            let mut out = std::io::stdout().lock();
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                writeln!(out, "cache: {}", dir.display())?;
                for r in &rows {
                    writeln!(
                        out,
                        "{:<9} {:>5} rows  {:<14} {:<13} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["rows"],
                        r["format"].as_str().unwrap_or(""),
                        r["licence"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or("")
                    )?;
                }
            }
            Ok(())
        }
        DatasetsCommand::FromRecording(a) => {
            let spec = agentcap_evalkit::recorded::FromRecording {
                db: a.db,
                predicate: a.predicate,
                session: a.session,
                agent: a.agent,
                limit: a.limit,
                turns: a.turns,
                out: a.out,
            };
            let stats = tokio::task::spawn_blocking(move || {
                agentcap_evalkit::recorded::from_recording(&spec).map(|s| (s, spec.out))
            })
            .await??;
            let (stats, out) = stats;
            writeln!(
                std::io::stdout().lock(),
                "{} items from {} conversations ({} turns left out) -> {}",
                stats.items,
                stats.conversations,
                stats.skipped_turns,
                out.display()
            )?;
            Ok(())
        }
        DatasetsCommand::Fetch(a) => {
            let Some(m) = manifest::find(&a.name) else {
                let names: Vec<String> = manifest::builtin().into_iter().map(|m| m.name).collect();
                bail!(
                    "no dataset manifest {:?} (known: {})",
                    a.name,
                    names.join(", ")
                );
            };
            let opts = FetchOptions {
                cache_dir: a.data_dir.unwrap_or_else(default_cache_dir),
                url: a.url,
                from_dir: a.from_dir,
                force: a.force,
            };
            let report = fetch::fetch(&m, &opts)
                .await
                .with_context(|| format!("fetching {}", m.name))?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{} -> {}", report.name, report.dir.display())?;
            for f in &report.files {
                let what = match &f.status {
                    FileStatus::Present => "present, verified".to_string(),
                    FileStatus::Fetched { source } => format!("fetched from {source}, verified"),
                    FileStatus::Skipped { reason } => format!("skipped: {reason}"),
                    FileStatus::Failed { reason } => format!("NOT fetched: {reason}"),
                };
                writeln!(out, "  {}: {what}", f.file_name)?;
            }
            writeln!(out, "licence {}: {}", m.licence, m.attribution)?;
            Ok(())
        }
    }
}
