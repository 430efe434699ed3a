//! `agentcap demo`: the twin in-process with a QA dataset as its knowledge, the recording proxy
//! embedded, a sample through two configs (no tools vs web_search) in streaming mode, and the
//! comparison printed (labelled "simulated upstream"), with the HTML report and the DuckDB file.

use std::io::Write;
use std::path::PathBuf;

use agentcap_datasets::{builtin_set, manifest};
use agentcap_evalkit::data::{Dataset, cached_path, default_cache_dir};
use agentcap_evalkit::report::{self, Format};
use agentcap_evalkit::{ConfigFile, GraderChoice, RunSpec, Stop};
use agentcap_sim::{LatencyPreset, SimConfig};
use anyhow::Context;
use clap::Args;

/// The query the demo suggests trying next (printed, never run here).
const NEXT_QUERY: &str = "SELECT config, count(*) FROM eval_items JOIN conversations ON conversations.id = eval_items.conversation_id GROUP BY config";
/// The two configs of the demo.
const DEMO_CONFIGS: &str = r#"# agentcap demo: the same model without tools, and as an agent with web_search.
[[config]]
name = "no-tools"
description = "mistral-medium-latest, no tools (closed book)"
model = "mistral-medium-latest"

[[config]]
name = "web-search"
description = "agent on mistral-medium-latest with web_search"
agent = { model = "mistral-medium-latest", name = "agentcap-demo-web", tools = ["web_search"] }
"#;

/// Flags of `agentcap demo`.
#[derive(Debug, Args)]
#[command(
    about = "Compare no tools vs web_search on a SimpleQA sample against the twin (simulated upstream), recorded and graded",
    after_help = "Uses the SimpleQA file given by --knowledge, else the one in the dataset cache (`agentcap datasets fetch simpleqa`),\nelse the team-written mini-qa set. Writes DIR/report.html and DIR/agentcap.duckdb."
)]
pub struct DemoArgs {
    /// The dataset the twin answers from (SimpleQA CSV, NQ-Open JSONL or agentcap JSONL).
    #[arg(long)]
    pub knowledge: Option<PathBuf>,
    /// Items to evaluate (simple-evals' subset for this size).
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// The twin's latency: `realistic` (~300 ms TTFT, web_search ~1 s) or `zero`.
    #[arg(long, default_value = "realistic")]
    pub latency: LatencyPreset,
    /// Items in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Where the report and the database go.
    #[arg(long, default_value = "agentcap-demo")]
    pub out_dir: PathBuf,
    /// Dataset cache directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs the demo; returns the exit code (130 when interrupted).
pub async fn run(a: DemoArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let cache = a.data_dir.clone().unwrap_or_else(default_cache_dir);
    let cached = manifest::find("simpleqa").map(|m| cached_path(&cache, &m));
    let (knowledge, dataset_spec) = match (&a.knowledge, cached) {
        (Some(k), _) => (k.clone(), k.display().to_string()),
        (None, Some(c)) if c.exists() => (c.clone(), "simpleqa".to_string()),
        _ => {
            let path = a.out_dir.join("mini-qa.jsonl");
            let items = builtin_set("mini-qa").context("the built-in mini-qa set")?;
            let mut text = String::new();
            for it in &items {
                text.push_str(&serde_json::to_string(&serde_json::json!({
                    "id": it.id, "question": it.question, "answers": it.answers, "metadata": it.metadata
                }))?);
                text.push('\n');
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            (path, "mini-qa".to_string())
        }
    };
    let dataset = Dataset::resolve(&dataset_spec, &cache)?;
    let grader = if dataset.is_simpleqa() && dataset.grader_template(None, &cache).is_ok() {
        GraderChoice::SimpleQa
    } else {
        GraderChoice::Exact
    };
    let sim_cfg = SimConfig {
        knowledge: Some(knowledge.clone()),
        latency: a.latency.model(),
        ..SimConfig::default()
    };
    let (p_closed, p_search) = (sim_cfg.p_closed, sim_cfg.p_search);
    let twin = agentcap_sim::start(sim_cfg)
        .await
        .context("starting the twin")?;
    let configs = ConfigFile::parse("demo configs", DEMO_CONFIGS)?;
    let db = a.out_dir.join(agentcap_proxy::recorder::DEFAULT_DB_PATH);
    let mut spec = RunSpec::new(
        dataset_spec.clone(),
        configs,
        DEMO_CONFIGS,
        twin.url(),
        db.clone(),
    );
    spec.cache_dir = cache;
    spec.limit = (a.limit < dataset.items.len()).then_some(a.limit);
    spec.concurrency = Some(a.concurrency);
    spec.grader = Some(grader);
    spec.simulated_upstream = true;
    spec.progress = true;
    let n = spec.limit.unwrap_or(dataset.items.len());
    eprintln!(
        "agentcap demo: {n} {} questions x 2 configs against the twin ({}; right {p_closed} closed-book, {p_search} with web_search), recorded through the embedded proxy, graded by {}",
        dataset.label,
        agentcap_wire::vocab::SIMULATED_LABEL,
        match grader {
            GraderChoice::SimpleQa => "the SimpleQA judge (simulated)",
            GraderChoice::Exact => "exact match",
            GraderChoice::Agreement => "agreement with the recorded answers (simulated judge)",
            GraderChoice::Pairwise => "pairwise against the recorded answers (simulated judge)",
        }
    );
    let stop = Stop::new();
    let s = stop.clone();
    let signal = crate::shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        s.stop();
    });
    let outcome = agentcap_evalkit::run(spec, stop).await;
    twin.shutdown().await;
    let outcome = outcome?;
    let html = a.out_dir.join("report.html");
    std::fs::write(&html, agentcap_ui::report::html(&outcome.report))
        .with_context(|| format!("writing {}", html.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "agentcap demo on {} ({} items) — {}: these numbers come from agentcap's twin, not from a real model.",
        dataset.label,
        n,
        agentcap_wire::vocab::SIMULATED_LABEL
    )?;
    out.write_all(report::render(&outcome.report, Format::Table).as_bytes())?;
    writeln!(out, "HTML report: {}", html.display())?;
    writeln!(
        out,
        "DuckDB file: {} (run {})",
        db.display(),
        outcome.run_id
    )?;
    writeln!(
        out,
        "next: agentcap eval show {} --db {}   |   agentcap query --db {} \"{NEXT_QUERY}\"",
        outcome.run_id,
        db.display(),
        db.display()
    )?;
    out.flush()?;
    Ok(if outcome.complete { 0 } else { 130 })
}
