//! `agentcap eval run | resume | list | show | compare`: flags, then a call into `agentcap_evalkit`;
//! reports printed or written, cutoffs turned into the exit code.

use std::io::Write;
use std::path::{Path, PathBuf};

use agentcap_evalkit::config::RunnerSection;
use agentcap_evalkit::report::{self, Format, Report};
use agentcap_evalkit::{
    ConfigFile, GraderChoice, ResumeSpec, RunOutcome, RunSpec, Stop, Target, grade, history, store,
};
use agentcap_proxy::recorder::DEFAULT_DB_PATH;
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

/// `agentcap eval …`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run a dataset through the configs, grade the answers, report accuracy with CIs and latency.
    Run(RunArgs),
    /// Finish an interrupted run: only the items without a result (and errored ones with --retry-errors;
    /// answers whose judge call failed are graded again).
    Resume(ResumeArgs),
    /// List the runs stored in the database.
    List(ListArgs),
    /// The report of a stored run.
    Show(ShowArgs),
    /// Paired comparison of two configs of stored runs: RUN_A[:CONFIG] RUN_B[:CONFIG].
    Compare(CompareArgs),
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Terminal tables.
    Table,
    /// JSON.
    Json,
    /// Markdown.
    Markdown,
    /// A self-contained HTML file with charts.
    Html,
}

/// The report in `format`: the text formats are evalkit's, the HTML page the UI's.
pub fn render(report: &Report, format: FormatArg) -> String {
    match format {
        FormatArg::Table => report::render(report, Format::Table),
        FormatArg::Json => report::render(report, Format::Json),
        FormatArg::Markdown => report::render(report, Format::Markdown),
        FormatArg::Html => agentcap_ui::report::html(report),
    }
}

/// Grader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraderArg {
    /// The official SimpleQA grader template sent to a judge model (chat completions).
    Simpleqa,
    /// SQuAD-style normalised exact match against any gold answer (approximate on SimpleQA).
    Exact,
    /// Recorded sets: the judge says whether the answer agrees with the recorded one.
    Agreement,
    /// Recorded sets: the judge prefers the recorded answer or the candidate's, asked in both orders.
    Pairwise,
}

/// How the report is output.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Report format on stdout, and in --out unless its extension says otherwise [default: table].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Also write the report to this file (format from --format, else from the extension: .html, .json, .md).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fail (exit code 1) unless this holds, e.g. 'web.accuracy>=0.7' (repeatable). Metrics: accuracy,
    /// accuracy_given_attempted, f_score, errors, ttft_p50_ms, total_p50_ms.
    #[arg(long, value_name = "EXPR")]
    pub cutoff: Vec<String>,
}

/// Where traffic goes and where results are stored.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The upstream API; the recording proxy is started in-process in front of it [default: https://api.mistral.ai].
    #[arg(long, env = "AGENTCAP_UPSTREAM", conflicts_with = "proxy")]
    pub upstream: Option<String>,
    /// Send traffic through this already running agentcap proxy instead (results go to --db and link to its
    /// recording by conversation id).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Talk to --upstream directly, without recording (results only).
    #[arg(long, conflicts_with = "proxy", requires = "upstream")]
    pub no_record: bool,
}

/// Flags of `eval run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  agentcap datasets fetch simpleqa\n  agentcap eval run --dataset simpleqa --configs configs.toml --limit 100 --out report.html\n  agentcap eval run --dataset questions.jsonl --configs configs.toml --grader exact --cutoff 'web.accuracy>=0.7'\n  agentcap eval run --dataset recorded:set.jsonl --configs candidates.toml --grader pairwise\n\nThe API key is read from MISTRAL_API_KEY (or the variable named by [runner] api_key_env)."
)]
pub struct RunArgs {
    /// simpleqa | nq-open (fetched with `agentcap datasets fetch`), mini-qa (built in), a file
    /// (SimpleQA CSV, NQ-Open JSONL, JSONL {id, question, answer | answers, metadata}), or
    /// recorded:FILE (a set written by `agentcap datasets from-recording`; adds the `recorded` column).
    #[arg(long)]
    pub dataset: String,
    /// The TOML file of named configs.
    #[arg(long)]
    pub configs: PathBuf,
    /// Evaluate K items: with the default seed exactly the rows simple-evals picks for K examples.
    #[arg(long, value_name = "K")]
    pub limit: Option<usize>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Items in flight at once [default: [runner] concurrency, else 16].
    #[arg(long)]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The DuckDB file for results (and, with the embedded proxy, the recording).
    #[arg(long, env = "AGENTCAP_DB", default_value = DEFAULT_DB_PATH)]
    pub db: PathBuf,
    /// Judge model of the simpleqa grader.
    #[arg(long, default_value = agentcap_evalkit::DEFAULT_JUDGE)]
    pub judge: String,
    /// Grader [default: agreement for recorded sets, simpleqa for SimpleQA data, exact otherwise].
    #[arg(long, value_enum)]
    pub grader: Option<GraderArg>,
    /// The grader template (default: the official one fetched with the dataset, checksum verified).
    #[arg(long)]
    pub grader_template: Option<PathBuf>,
    /// Read judge replies exactly as simple-evals does (first A/B/C anywhere, else C), for replication.
    #[arg(long)]
    pub simple_evals_compat: bool,
    /// Config every other one is compared with [default: the file's baseline, else the first].
    #[arg(long)]
    pub baseline: Option<String>,
    /// Label the report "simulated upstream" even if the upstream does not announce itself (agentcap's
    /// twin does, on every response, and is labelled without this flag).
    #[arg(long)]
    pub simulated_upstream: bool,
    /// Dataset cache directory [default: $AGENTCAP_DATA_DIR, else ~/.cache/agentcap/datasets].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Serve the web UI on the embedded proxy's admin listener while the run goes (a free loopback port; the
    /// URL is printed).
    #[arg(long, conflicts_with_all = ["proxy", "no_record"])]
    pub ui: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of `eval resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run (its id, or a unique prefix).
    pub run_id: String,
    /// Also run again the items that ended in error, and grade again (no new conversation) the
    /// answers whose judge call failed.
    #[arg(long)]
    pub retry_errors: bool,
    /// The DuckDB file holding the run.
    #[arg(long, env = "AGENTCAP_DB", default_value = DEFAULT_DB_PATH)]
    pub db: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Items in flight at once [default: as the run].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Dataset cache directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of `eval list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The DuckDB file.
    #[arg(long, env = "AGENTCAP_DB", default_value = DEFAULT_DB_PATH)]
    pub db: PathBuf,
    /// Output as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `eval show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run (its id, or a unique prefix).
    pub run_id: String,
    /// The DuckDB file.
    #[arg(long, env = "AGENTCAP_DB", default_value = DEFAULT_DB_PATH)]
    pub db: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags of `eval compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Baseline: RUN[:CONFIG] (the config defaults to the run's only one, else its baseline).
    pub a: String,
    /// Candidate: RUN[:CONFIG].
    pub b: String,
    /// The DuckDB file.
    #[arg(long, env = "AGENTCAP_DB", default_value = DEFAULT_DB_PATH)]
    pub db: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn target(t: &TargetArgs) -> Option<Target> {
    match (&t.proxy, &t.upstream) {
        (Some(url), _) => Some(Target::Proxy { url: url.clone() }),
        (None, Some(u)) if t.no_record => Some(Target::Direct {
            upstream: u.clone(),
        }),
        (None, Some(u)) => Some(Target::Embedded {
            upstream: u.clone(),
        }),
        (None, None) => None,
    }
}

fn format_for(path: &Path, explicit: Option<FormatArg>) -> FormatArg {
    if let Some(f) = explicit {
        return f;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html" | "htm") => FormatArg::Html,
        Some("json") => FormatArg::Json,
        Some("md" | "markdown") => FormatArg::Markdown,
        _ => FormatArg::Table,
    }
}

/// Prints the report, writes --out, checks the cutoffs; `Ok(false)` when a cutoff failed.
pub fn emit(report: &Report, out: &OutputArgs) -> anyhow::Result<bool> {
    let shown = out.format.unwrap_or(FormatArg::Table);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(render(report, shown).as_bytes())?;
    if let Some(path) = &out.out {
        let text = render(report, format_for(path, out.format));
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        writeln!(stdout, "report written to {}", path.display())?;
    }
    let mut ok = true;
    for expr in &out.cutoff {
        match report::check_cutoff(report, expr) {
            Ok(true) => writeln!(stdout, "cutoff passed: {expr}")?,
            Ok(false) => {
                writeln!(stdout, "cutoff FAILED: {expr}")?;
                ok = false;
            }
            Err(e) => bail!("--cutoff {expr:?}: {e}"),
        }
    }
    stdout.flush()?;
    Ok(ok)
}

/// A stop triggered by SIGINT / SIGTERM.
fn stop_on_signal() -> Stop {
    let stop = Stop::new();
    let s = stop.clone();
    let signal = crate::shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        eprintln!(
            "agentcap eval: stopping; in-flight items finish, then the partial report is saved"
        );
        s.stop();
    });
    stop
}

/// Exit code of an eval command: 0, 1 (a cutoff failed) or 130 (interrupted).
fn finish(outcome: &RunOutcome, db: &Path, out: &OutputArgs) -> anyhow::Result<i32> {
    let passed = emit(&outcome.report, out)?;
    let s = &outcome.stats;
    eprintln!(
        "run {}: {} of {} items finished this session ({} errors, {} judge errors), {} attempts ({} retried), {:.1}s; results in {}",
        outcome.run_id,
        s.finished,
        s.scheduled,
        s.errors,
        s.judge_errors,
        s.attempts,
        s.retries,
        s.wall.as_secs_f64(),
        db.display()
    );
    if !outcome.complete {
        eprintln!(
            "run {} is incomplete: agentcap eval resume {} --db {}",
            outcome.run_id,
            outcome.run_id,
            db.display()
        );
        return Ok(130);
    }
    Ok(if passed { 0 } else { 1 })
}

/// Runs an `eval` subcommand; returns the exit code.
pub async fn run(cmd: EvalCommand) -> anyhow::Result<i32> {
    match cmd {
        EvalCommand::Run(a) => {
            let (configs, text) = ConfigFile::load(&a.configs)?;
            let key = configs.runner.api_key();
            let mut spec = RunSpec::new(
                a.dataset.clone(),
                configs,
                text,
                agentcap_proxy::config::DEFAULT_UPSTREAM,
                a.db.clone(),
            );
            if let Some(t) = target(&a.target) {
                spec.target = t;
            }
            if let Some(d) = a.data_dir.clone() {
                spec.cache_dir = d;
            }
            spec.limit = a.limit;
            spec.seed = a.seed;
            spec.concurrency = a.concurrency;
            spec.judge_model = a.judge.clone();
            spec.grader = a.grader.map(|g| match g {
                GraderArg::Simpleqa => GraderChoice::SimpleQa,
                GraderArg::Exact => GraderChoice::Exact,
                GraderArg::Agreement => GraderChoice::Agreement,
                GraderArg::Pairwise => GraderChoice::Pairwise,
            });
            spec.grader_template = a.grader_template.clone();
            spec.judge_parse = if a.simple_evals_compat {
                grade::JudgeParse::SimpleEvalsCompat
            } else {
                grade::JudgeParse::Strict
            };
            spec.baseline = a.baseline.clone();
            spec.simulated_upstream = a.simulated_upstream;
            spec.progress = !a.no_progress;
            spec.api_key = key;
            if a.ui {
                spec.admin = Some(agentcap_evalkit::EmbeddedAdmin {
                    listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    mount: Some(agentcap_ui::admin_mount(agentcap_ui::UiConfig::default())),
                    on_ready: std::sync::Arc::new(|addr| {
                        eprintln!("agentcap eval: web UI on http://{addr}/ while the run goes");
                    }),
                });
            }
            let outcome = agentcap_evalkit::run(spec, stop_on_signal()).await?;
            finish(&outcome, &a.db, &a.output)
        }
        EvalCommand::Resume(a) => {
            let mut spec = ResumeSpec::new(a.run_id.clone(), a.db.clone());
            spec.retry_errors = a.retry_errors;
            spec.target = target(&a.target);
            if let Some(d) = a.data_dir.clone() {
                spec.cache_dir = d;
            }
            spec.concurrency = a.concurrency;
            spec.progress = !a.no_progress;
            spec.api_key = RunnerSection::default().api_key();
            let outcome = agentcap_evalkit::resume(spec, stop_on_signal()).await?;
            finish(&outcome, &a.db, &a.output)
        }
        EvalCommand::List(a) => {
            let runs = read(&a.db, history::list_runs).await?;
            let text = if a.json {
                serde_json::to_string_pretty(&runs)? + "\n"
            } else {
                history::render_listing(&runs)
            };
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(0)
        }
        EvalCommand::Show(a) => {
            let id = a.run_id.clone();
            let report = read(&a.db, move |c| {
                let id = history::resolve_run_id(c, &id)?;
                history::load_report(c, &id)
            })
            .await?;
            Ok(if emit(&report, &a.output)? { 0 } else { 1 })
        }
        EvalCommand::Compare(a) => {
            let (x, y) = (a.a.clone(), a.b.clone());
            let report = read(&a.db, move |c| history::compare(c, &x, &y)).await?;
            Ok(if emit(&report, &a.output)? { 0 } else { 1 })
        }
    }
}

/// Runs `f` on a read-only connection to `db`.
async fn read<T: Send + 'static>(
    db: &Path,
    f: impl FnOnce(&store::Connection) -> Result<T, agentcap_evalkit::EvalError> + Send + 'static,
) -> anyhow::Result<T> {
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    let path = db.to_path_buf();
    let r = tokio::task::spawn_blocking(move || {
        let c = store::open_read_only(&path)?;
        f(&c)
    })
    .await
    .context("the reading thread failed")?;
    r.map_err(|e| match &e {
        agentcap_evalkit::EvalError::Store(s) if matches!(**s, store::StoreError::Open { .. }) => {
            anyhow::anyhow!("{e} (while a proxy runs it holds the file: stop it, or read a copy)")
        }
        _ => anyhow::anyhow!(e),
    })
}
