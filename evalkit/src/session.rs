//! A run or a resume from start to end: the dataset and its sample, the connection (the recording
//! proxy embedded in-process by default, an external proxy, or none), agents created for inline
//! configs, the items through the runner, exchanges linked, the run's status and its report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use agentcap_proxy::recorder::{RecorderConfig, RecorderStats};
use agentcap_proxy::{ProxyConfig, RunningProxy};
use serde_json::{Map, Value, json};

use crate::EvalError;
use crate::client::{ApiClient, Tags};
use crate::config::{ConfigFile, VariantKind};
use crate::data::Dataset;
use crate::grade::JudgeParse;
use crate::history;
use crate::report::Report;
use crate::runner::{
    self, Grader, Job, Limiter, Observer, Progress, ResolvedConfig, RunnerOptions, SessionStats,
    Shared, Stop,
};
use crate::store::{ConfigRow, RunRow, Store};

/// How often the store links finished attempts to the proxy's exchanges while a run goes (see
/// [`crate::store`]).
const LINK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The judge model used unless `--judge` says otherwise.
pub const DEFAULT_JUDGE: &str = "mistral-large-latest";

/// Where traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The recording proxy started in-process in front of `upstream`, recording into the run's
    /// database (the default).
    Embedded {
        /// The upstream URL.
        upstream: String,
    },
    /// An already running recording proxy; results link to its records by conversation id.
    Proxy {
        /// The proxy's URL.
        url: String,
    },
    /// Straight to the upstream, unrecorded.
    Direct {
        /// The upstream URL.
        upstream: String,
    },
}

/// Which grader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraderChoice {
    /// The SimpleQA judge through chat completions.
    SimpleQa,
    /// Normalised exact match.
    Exact,
    /// Recorded sets: agreement with the recorded answer, by the judge.
    Agreement,
    /// Recorded sets: the judge's preference between the recorded answer and the candidate's, in
    /// both orders.
    Pairwise,
}

/// An admin listener for the embedded proxy (the CLI's `eval run --ui` mounts the web UI on it): bound on
/// `listen` with `mount`, its address handed to `on_ready` once bound.
#[derive(Clone)]
pub struct EmbeddedAdmin {
    /// Where it listens (loopback).
    pub listen: std::net::SocketAddr,
    /// The handler of the paths the admin API does not own.
    pub mount: Option<agentcap_proxy::admin::AdminMount>,
    /// Told the bound address.
    pub on_ready: Arc<dyn Fn(std::net::SocketAddr) + Send + Sync>,
}

impl std::fmt::Debug for EmbeddedAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedAdmin")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Everything `eval run` needs.
#[derive(Clone)]
pub struct RunSpec {
    /// `simpleqa`, `nq-open`, `mini-qa` or a path.
    pub dataset: String,
    /// Dataset cache directory.
    pub cache_dir: PathBuf,
    /// The configs.
    pub configs: ConfigFile,
    /// The configs file, verbatim (stored with the run).
    pub configs_text: String,
    /// Sample size (`None`: every item).
    pub limit: Option<usize>,
    /// Sampling seed.
    pub seed: u64,
    /// Where traffic goes.
    pub target: Target,
    /// The DuckDB file.
    pub db: PathBuf,
    /// The grader (`None`: simpleqa for SimpleQA-shaped data, exact otherwise).
    pub grader: Option<GraderChoice>,
    /// An explicit grader template file.
    pub grader_template: Option<PathBuf>,
    /// Judge model.
    pub judge_model: String,
    /// How judge replies are read.
    pub judge_parse: JudgeParse,
    /// Baseline config (`None`: the file's, else the first).
    pub baseline: Option<String>,
    /// Concurrency flag (wins over the file).
    pub concurrency: Option<usize>,
    /// Label every output "simulated upstream" even if the upstream does not say so (the twin
    /// does, with its `x-agentcap-upstream` response header, and is labelled without this).
    pub simulated_upstream: bool,
    /// Show a progress bar (only on a terminal).
    pub progress: bool,
    /// Bearer key for the upstream.
    pub api_key: Option<String>,
    /// Called after each item.
    pub observer: Option<Observer>,
    /// An admin listener for the embedded proxy (none by default; ignored for other targets).
    pub admin: Option<EmbeddedAdmin>,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSpec")
            .field("dataset", &self.dataset)
            .field("target", &self.target)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl RunSpec {
    /// A spec with the defaults: embedded proxy in front of `upstream`, seed 0, strict judge.
    pub fn new(
        dataset: impl Into<String>,
        configs: ConfigFile,
        configs_text: impl Into<String>,
        upstream: impl Into<String>,
        db: impl Into<PathBuf>,
    ) -> RunSpec {
        RunSpec {
            dataset: dataset.into(),
            cache_dir: crate::data::default_cache_dir(),
            configs,
            configs_text: configs_text.into(),
            limit: None,
            seed: 0,
            target: Target::Embedded {
                upstream: upstream.into(),
            },
            db: db.into(),
            grader: None,
            grader_template: None,
            judge_model: DEFAULT_JUDGE.to_string(),
            judge_parse: JudgeParse::Strict,
            baseline: None,
            concurrency: None,
            simulated_upstream: false,
            progress: false,
            api_key: None,
            observer: None,
            admin: None,
        }
    }
}

/// Everything `eval resume` needs.
#[derive(Clone)]
pub struct ResumeSpec {
    /// The run (id or unique prefix).
    pub run_id: String,
    /// The DuckDB file holding it.
    pub db: PathBuf,
    /// Also run the items that ended in error.
    pub retry_errors: bool,
    /// Where traffic goes (`None`: as the run was started).
    pub target: Option<Target>,
    /// Dataset cache directory.
    pub cache_dir: PathBuf,
    /// Concurrency flag.
    pub concurrency: Option<usize>,
    /// Progress bar.
    pub progress: bool,
    /// Bearer key.
    pub api_key: Option<String>,
    /// Called after each item.
    pub observer: Option<Observer>,
}

impl std::fmt::Debug for ResumeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeSpec")
            .field("run_id", &self.run_id)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl ResumeSpec {
    /// Resume `run_id` in `db` as it was started.
    pub fn new(run_id: impl Into<String>, db: impl Into<PathBuf>) -> ResumeSpec {
        ResumeSpec {
            run_id: run_id.into(),
            db: db.into(),
            retry_errors: false,
            target: None,
            cache_dir: crate::data::default_cache_dir(),
            concurrency: None,
            progress: false,
            api_key: None,
            observer: None,
        }
    }
}

/// What a run or resume ends with.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run.
    pub run_id: String,
    /// Its report (partial when interrupted).
    pub report: Report,
    /// Every item has a result.
    pub complete: bool,
    /// The database.
    pub db: PathBuf,
    /// This session's counters.
    pub stats: SessionStats,
    /// The embedded proxy's recorder counters.
    pub proxy_stats: Option<RecorderStats>,
}

struct Connected {
    store: Arc<Store>,
    client: ApiClient,
    proxy: Option<RunningProxy>,
    proxy_label: String,
    upstream: String,
}

async fn connect(
    target: &Target,
    db: &Path,
    api_key: Option<String>,
    admin: Option<&EmbeddedAdmin>,
) -> Result<Connected, EvalError> {
    match target {
        Target::Embedded { upstream } => {
            let uri: http::Uri = upstream
                .parse()
                .map_err(|e| EvalError::Invalid(format!("--upstream {upstream:?}: {e}")))?;
            let mut cfg = ProxyConfig::new(uri, RecorderConfig::new(db));
            cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            cfg.admin_listen = admin.map(|a| a.listen);
            cfg.admin.mount = admin.and_then(|a| a.mount.clone());
            let proxy = agentcap_proxy::start(cfg).await?;
            if let (Some(a), Some(addr)) = (admin, proxy.admin_addr()) {
                (a.on_ready)(addr);
            }
            let conn = proxy
                .recorder()
                .connection()
                .map_err(|e| EvalError::Invalid(format!("recorder connection: {e}")))?;
            let store = Arc::new(Store::new(conn)?);
            let client = ApiClient::new(&format!("http://{}", proxy.addr()), api_key)
                .map_err(EvalError::Invalid)?;
            Ok(Connected {
                store,
                client,
                proxy: Some(proxy),
                proxy_label: "embedded".into(),
                upstream: upstream.clone(),
            })
        }
        Target::Proxy { url } => Ok(Connected {
            store: Arc::new(Store::open(db)?),
            client: ApiClient::new(url, api_key).map_err(EvalError::Invalid)?,
            proxy: None,
            proxy_label: url.clone(),
            upstream: url.clone(),
        }),
        Target::Direct { upstream } => Ok(Connected {
            store: Arc::new(Store::open(db)?),
            client: ApiClient::new(upstream, api_key).map_err(EvalError::Invalid)?,
            proxy: None,
            proxy_label: "none".into(),
            upstream: upstream.clone(),
        }),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn new_run_id() -> String {
    let hex = uuid::Uuid::now_v7().simple().to_string();
    format!("run_{}", &hex[..20])
}

#[allow(clippy::too_many_arguments)]
fn shared(
    conn: &Connected,
    run_id: &str,
    configs: Vec<ResolvedConfig>,
    grader: Grader,
    opts: RunnerOptions,
    stop: Stop,
    observer: Option<Observer>,
    progress: Progress,
) -> Shared {
    Shared {
        client: conn.client.clone(),
        store: conn.store.clone(),
        run_id: run_id.to_string(),
        limiter: opts.requests_per_second.and_then(Limiter::new),
        configs,
        grader,
        opts,
        stop,
        observer,
        progress,
        attempts: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        simulated_marked: AtomicBool::new(false),
    }
}

/// The request body without `inputs` for a config, given its agent when it has one.
fn conversation_body(cfg: &crate::config::Variant, agent: Option<(&str, Option<&str>)>) -> Value {
    let mut b = Map::new();
    match (cfg.kind(), agent) {
        (VariantKind::ExistingAgent | VariantKind::InlineAgent, Some((id, version))) => {
            b.insert("agent_id".into(), json!(id));
            let version = match (&cfg.agent_version, version) {
                (Some(v), _) => Some(v.to_json()),
                (None, Some(v)) => Some(
                    v.parse::<u64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(v)),
                ),
                (None, None) => None,
            };
            if let Some(v) = version {
                b.insert("agent_version".into(), v);
            }
        }
        _ => {
            b.insert("model".into(), json!(cfg.model.clone().unwrap_or_default()));
            if !cfg.tools.is_empty() {
                b.insert(
                    "tools".into(),
                    Value::Array(cfg.tools.iter().map(|t| t.to_json()).collect()),
                );
            }
            if let Some(i) = &cfg.instructions {
                b.insert("instructions".into(), json!(i));
            }
            if let Some(ca) = &cfg.completion_args {
                b.insert("completion_args".into(), Value::Object(ca.clone()));
            }
        }
    }
    if let Some(s) = cfg.store {
        b.insert("store".into(), json!(s));
    }
    b.insert(
        "stream".into(),
        json!(cfg.mode == crate::config::Mode::Stream),
    );
    Value::Object(b)
}

fn version_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Creates the inline agents and looks up the existing ones (recorded as `setup` attempts).
async fn resolve_configs(sh: &Shared, file: &ConfigFile) -> Result<Vec<ResolvedConfig>, EvalError> {
    let mut out = Vec::new();
    for v in &file.configs {
        let (agent, model) = match v.kind() {
            VariantKind::Model => (None, v.model.clone()),
            VariantKind::InlineAgent => {
                let a = v
                    .agent
                    .as_ref()
                    .ok_or_else(|| EvalError::Invalid("agent".into()))?;
                let mut body = Map::new();
                body.insert("model".into(), json!(a.model));
                body.insert(
                    "name".into(),
                    json!(
                        a.name
                            .clone()
                            .unwrap_or_else(|| format!("agentcap-eval-{}", v.name))
                    ),
                );
                if let Some(d) = &a.description {
                    body.insert("description".into(), json!(d));
                }
                if let Some(i) = &a.instructions {
                    body.insert("instructions".into(), json!(i));
                }
                if !a.tools.is_empty() {
                    body.insert(
                        "tools".into(),
                        Value::Array(a.tools.iter().map(|t| t.to_json()).collect()),
                    );
                }
                if let Some(ca) = &a.completion_args {
                    body.insert("completion_args".into(), Value::Object(ca.clone()));
                }
                let body = Value::Object(body);
                let created = setup_call(sh, &v.name, http::Method::POST, "/v1/agents", Some(body))
                    .await
                    .map_err(|e| {
                        EvalError::Setup(format!("creating the agent of config {}: {e}", v.name))
                    })?;
                let id = created
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| EvalError::Setup("the created agent has no id".into()))?
                    .to_string();
                let version = created.get("version").and_then(version_text);
                (Some((id, version)), Some(a.model.clone()))
            }
            VariantKind::ExistingAgent => {
                let id = v.agent_id.clone().unwrap_or_default();
                let found = setup_call(
                    sh,
                    &v.name,
                    http::Method::GET,
                    &format!("/v1/agents/{id}"),
                    None,
                )
                .await
                .map_err(|e| {
                    EvalError::Setup(format!("looking up agent {id} of config {}: {e}", v.name))
                })?;
                let version = match &v.agent_version {
                    Some(ver) => version_text(&ver.to_json()),
                    None => found.get("version").and_then(version_text),
                };
                let model = found
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                (Some((id, version)), model)
            }
        };
        out.push(resolved(v, file, agent, model));
    }
    Ok(out)
}

fn resolved(
    v: &crate::config::Variant,
    file: &ConfigFile,
    agent: Option<(String, Option<String>)>,
    model: Option<String>,
) -> ResolvedConfig {
    let body = conversation_body(
        v,
        agent
            .as_ref()
            .map(|(id, ver)| (id.as_str(), ver.as_deref())),
    );
    ResolvedConfig {
        name: v.name.clone(),
        description: v.describe(),
        variant: v.clone(),
        body,
        price: model.as_ref().and_then(|m| file.prices.get(m).cloned()),
        model,
        agent_id: agent.as_ref().map(|a| a.0.clone()),
        agent_version: agent.and_then(|a| a.1),
        recorded: false,
    }
}

/// The `recorded` config column of a recorded set: the recorded answers with their recorded
/// latency and tokens (priced at `model`'s price when the table has it).
fn recorded_config(file: &ConfigFile, model: Option<String>) -> ResolvedConfig {
    let variant = crate::config::Variant {
        name: crate::recorded::RECORDED_CONFIG.into(),
        description: Some("the recorded production answers".into()),
        agent_id: None,
        agent_version: None,
        agent: None,
        model: model.clone(),
        tools: Vec::new(),
        instructions: None,
        completion_args: None,
        mode: crate::config::Mode::Stream,
        prompt: None,
        store: None,
    };
    ResolvedConfig {
        name: variant.name.clone(),
        description: "the recorded production answers".into(),
        variant,
        body: Value::Null,
        price: model.as_ref().and_then(|m| file.prices.get(m).cloned()),
        model,
        agent_id: None,
        agent_version: None,
        recorded: true,
    }
}

/// The most frequent recorded model of a recorded set's items.
fn recorded_model(items: &[agentcap_datasets::QaItem]) -> Option<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for it in items {
        if let Some(m) = crate::recorded::provenance(it).model {
            *counts.entry(m).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(m, _)| m)
}

/// The grader of a run: `choice` with its template (`explicit`, else the built-in or the
/// dataset's), checked against the dataset.
fn make_grader(
    choice: GraderChoice,
    dataset: &Dataset,
    items: &[agentcap_datasets::QaItem],
    spec: &RunSpec,
) -> Result<Grader, EvalError> {
    let explicit = |builtin: &str| -> Result<Arc<str>, EvalError> {
        match &spec.grader_template {
            Some(p) => std::fs::read_to_string(p)
                .map(Into::into)
                .map_err(|e| EvalError::Invalid(format!("grader template {}: {e}", p.display()))),
            None => Ok(builtin.into()),
        }
    };
    let needs_recorded = |name: &str| -> Result<(), EvalError> {
        if dataset.recorded {
            Ok(())
        } else {
            Err(EvalError::Invalid(format!(
                "--grader {name} compares answers with recorded ones: use --dataset recorded:FILE"
            )))
        }
    };
    Ok(match choice {
        GraderChoice::Exact | GraderChoice::SimpleQa => {
            if dataset.recorded
                && let Some(it) = items.iter().find(|it| runner::golds(it).is_empty())
            {
                return Err(EvalError::Invalid(format!(
                    "item {:?} of the recorded set has no gold answer (metadata.gold): use --grader agreement or pairwise",
                    it.id
                )));
            }
            match choice {
                GraderChoice::Exact => Grader::Exact,
                _ => Grader::SimpleQa {
                    template: dataset
                        .grader_template(spec.grader_template.as_deref(), &spec.cache_dir)?
                        .into(),
                    judge_model: spec.judge_model.clone(),
                    parse: spec.judge_parse,
                },
            }
        }
        GraderChoice::Agreement => {
            needs_recorded("agreement")?;
            Grader::Agreement {
                template: explicit(crate::recorded::AGREEMENT_TEMPLATE)?,
                judge_model: spec.judge_model.clone(),
            }
        }
        GraderChoice::Pairwise => {
            needs_recorded("pairwise")?;
            Grader::Pairwise {
                template: explicit(crate::recorded::PAIRWISE_TEMPLATE)?,
                judge_model: spec.judge_model.clone(),
            }
        }
    })
}

async fn setup_call(
    sh: &Shared,
    config: &str,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, crate::client::AttemptError> {
    let client = sh.client.clone();
    sh.call_with_retries(
        config,
        "",
        "setup",
        |_: &Value| None,
        |tags: Tags| {
            let client = client.clone();
            let (method, body) = (method.clone(), body.clone());
            async move { client.json(method, path, body.as_ref(), &tags).await }
        },
    )
    .await
}

fn config_rows(run_id: &str, configs: &[ResolvedConfig]) -> Vec<ConfigRow> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| ConfigRow {
            run_id: run_id.to_string(),
            name: c.name.clone(),
            position: i,
            description: c.description.clone(),
            kind: if c.recorded {
                crate::recorded::RECORDED_CONFIG.into()
            } else {
                c.variant.kind().as_str().into()
            },
            mode: c.variant.mode.as_str().into(),
            prompt_template: c.variant.prompt.clone(),
            model: c.model.clone(),
            agent_id: c.agent_id.clone(),
            agent_version: c.agent_version.clone(),
            spec: serde_json::to_string(&c.variant).unwrap_or_default(),
        })
        .collect()
}

/// Starts a run and drives it to its end (or to a stop).
pub async fn run(spec: RunSpec, stop: Stop) -> Result<RunOutcome, EvalError> {
    let dataset = Dataset::resolve(&spec.dataset, &spec.cache_dir)?;
    let items = dataset.sample(spec.limit, spec.seed)?;
    let grader_choice = spec.grader.unwrap_or(if dataset.recorded {
        GraderChoice::Agreement
    } else if dataset.is_simpleqa() {
        GraderChoice::SimpleQa
    } else {
        GraderChoice::Exact
    });
    let grader = make_grader(grader_choice, &dataset, &items, &spec)?;
    let recorded_name = crate::recorded::RECORDED_CONFIG;
    if dataset.recorded && spec.configs.variant(recorded_name).is_some() {
        return Err(EvalError::Invalid(format!(
            "the config name {recorded_name:?} is the recorded answers' column of a recorded set: rename the config"
        )));
    }
    let baseline =
        spec.baseline
            .clone()
            .unwrap_or_else(|| match (dataset.recorded, &spec.configs.baseline) {
                (true, None) => recorded_name.to_string(),
                _ => spec.configs.baseline_name().to_string(),
            });
    let is_recorded_column = dataset.recorded && baseline == recorded_name;
    if spec.configs.variant(&baseline).is_none() && !is_recorded_column {
        return Err(EvalError::Invalid(format!(
            "--baseline {baseline:?} is not a config"
        )));
    }
    let opts = RunnerOptions::resolve(&spec.configs.runner, spec.concurrency);
    let conn = connect(
        &spec.target,
        &spec.db,
        spec.api_key.clone(),
        spec.admin.as_ref(),
    )
    .await?;
    let run_id = new_run_id();
    let (judge_model, judge_parse, template) = match &grader {
        Grader::SimpleQa {
            template,
            judge_model,
            parse,
        } => (
            Some(judge_model.clone()),
            *parse,
            Some(template.to_string()),
        ),
        Grader::Agreement {
            template,
            judge_model,
        }
        | Grader::Pairwise {
            template,
            judge_model,
        } => (
            Some(judge_model.clone()),
            JudgeParse::Strict,
            Some(template.to_string()),
        ),
        Grader::Exact => (None, JudgeParse::Strict, None),
    };
    conn.store.put_run(RunRow {
        run_id: run_id.clone(),
        created_at: now(),
        status: "running".into(),
        dataset: dataset.label.clone(),
        dataset_source: dataset.source.clone(),
        dataset_sha256: dataset.sha256.clone(),
        dataset_rows: dataset.items.len(),
        n_items: items.len(),
        limit: spec.limit,
        seed: spec.seed,
        grader: grader.name().into(),
        judge_model,
        judge_parse: parse_name(judge_parse).into(),
        grader_template: template,
        baseline,
        upstream: conn.upstream.clone(),
        proxy: conn.proxy_label.clone(),
        simulated_upstream: spec.simulated_upstream,
        configs_toml: spec.configs_text.clone(),
        options: serde_json::to_string(&opts).unwrap_or_default(),
        finished_at: None,
    });
    let setup = shared(
        &conn,
        &run_id,
        Vec::new(),
        Grader::Exact,
        opts.clone(),
        stop.clone(),
        None,
        Progress::new(0, Vec::new(), false),
    );
    let configs = match resolve_configs(&setup, &spec.configs).await {
        Ok(mut c) => {
            if dataset.recorded {
                c.insert(0, recorded_config(&spec.configs, recorded_model(&items)));
            }
            c
        }
        Err(e) => {
            conn.store.set_run_status(&run_id, "failed", Some(now()));
            let _ = close(conn).await;
            return Err(e);
        }
    };
    drop(setup);
    if conn.client.saw_simulated_upstream() && !spec.simulated_upstream {
        conn.store.mark_simulated(&run_id);
    }
    for row in config_rows(&run_id, &configs) {
        conn.store.put_config(row);
    }
    let items: Vec<Arc<agentcap_datasets::QaItem>> = items.into_iter().map(Arc::new).collect();
    let jobs: Vec<Job> = items
        .iter()
        .enumerate()
        .flat_map(|(pos, it)| {
            (0..configs.len()).map(move |ci| Job {
                position: pos,
                item: it.clone(),
                config: ci,
                replace: false,
                regrade: None,
            })
        })
        .collect();
    let expected = jobs.len();
    drive(
        conn,
        run_id,
        configs,
        grader,
        opts,
        stop,
        spec.observer,
        spec.progress,
        jobs,
        expected,
        spec.db.clone(),
    )
    .await
}

fn parse_name(p: JudgeParse) -> &'static str {
    match p {
        JudgeParse::Strict => "strict",
        JudgeParse::SimpleEvalsCompat => "simple-evals-compat",
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    conn: Connected,
    run_id: String,
    configs: Vec<ResolvedConfig>,
    grader: Grader,
    opts: RunnerOptions,
    stop: Stop,
    observer: Option<Observer>,
    progress: bool,
    jobs: Vec<Job>,
    expected: usize,
    db: PathBuf,
) -> Result<RunOutcome, EvalError> {
    let names = configs.iter().map(|c| c.name.clone()).collect();
    let progress_visible = progress;
    let progress = Progress::new(jobs.len(), names, progress);
    let sh = Arc::new(shared(
        &conn, &run_id, configs, grader, opts, stop, observer, progress,
    ));
    if conn.proxy.is_some() {
        conn.store.link_every(&run_id, LINK_EVERY);
    }
    let stats = runner::execute(sh.clone(), jobs).await;
    drop(sh);
    let finished = finish(&conn, &run_id, expected, progress_visible).await;
    let proxy_stats = close(conn).await;
    let (report, complete) = finished?;
    Ok(RunOutcome {
        run_id,
        report,
        complete,
        db,
        stats,
        proxy_stats,
    })
}

async fn finish(
    conn: &Connected,
    run_id: &str,
    expected: usize,
    chatty: bool,
) -> Result<(Report, bool), EvalError> {
    let t0 = std::time::Instant::now();
    conn.store.flush().await?;
    let t_store = t0.elapsed();
    if let Some(p) = &conn.proxy {
        let pending = p.recorder().stats().pending_exchanges;
        if chatty && pending > 0 {
            eprintln!("agentcap eval: the recorder is committing {pending} more exchanges…");
        }
    }
    if let Some(p) = &conn.proxy
        && let Err(e) = p.recorder().flush().await
    {
        tracing::warn!(error = %e, "the recorder could not flush; exchanges will be linked later");
    }
    let t_recorder = t0.elapsed();
    if conn.client.saw_simulated_upstream() {
        conn.store.mark_simulated(run_id);
    }
    if conn.proxy.is_some() {
        conn.store.stop_linking();
        let n = conn.store.link_exchanges(run_id).await?;
        tracing::info!(attempts = n, "linked attempts to the proxy's exchanges");
    }
    let t_link = t0.elapsed();
    let id = run_id.to_string();
    let done: usize = conn
        .store
        .read(move |c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM eval_items WHERE run_id = ?",
                duckdb::params![id],
                |r| r.get(0),
            )?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
        .await?;
    let complete = done >= expected;
    conn.store.set_run_status(
        run_id,
        if complete { "complete" } else { "interrupted" },
        Some(now()),
    );
    conn.store.flush().await?;
    let id = run_id.to_string();
    let report = conn
        .store
        .read(move |c| {
            history::load_report(c, &id).map_err(|e| match e {
                EvalError::Store(s) => *s,
                other => crate::store::StoreError::Write(other.to_string()),
            })
        })
        .await?;
    tracing::info!(
        store_flush = ?t_store,
        recorder_flush = ?(t_recorder - t_store),
        link = ?(t_link - t_recorder),
        report = ?(t0.elapsed() - t_link),
        "run finished"
    );
    Ok((report, complete))
}

async fn close(conn: Connected) -> Option<RecorderStats> {
    let Connected { store, proxy, .. } = conn;
    match Arc::try_unwrap(store) {
        Ok(s) => {
            let _ = tokio::task::spawn_blocking(move || s.close()).await;
        }
        Err(_) => tracing::warn!("the eval store is still shared at close"),
    }
    match proxy {
        Some(p) => match p.shutdown().await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "the embedded proxy did not shut down cleanly");
                None
            }
        },
        None => None,
    }
}

/// Resumes a run: only the items without a result (and, with `retry_errors`, the errored ones),
/// with the same sample, configs (agents included) and grader.
pub async fn resume(spec: ResumeSpec, stop: Stop) -> Result<RunOutcome, EvalError> {
    let (run, stored_configs, done) = {
        let db = spec.db.clone();
        let wanted = spec.run_id.clone();
        tokio::task::spawn_blocking(move || -> Result<_, EvalError> {
            if !db.exists() {
                return Err(EvalError::NotFound(format!("no database {}", db.display())));
            }
            let c = crate::store::open_file(&db)?;
            let id = history::resolve_run_id(&c, &wanted)?;
            let run = history::load_run(&c, &id)?;
            let configs = history::load_configs(&c, &id)?;
            let mut stmt = c.prepare(
                "SELECT config, item_id, status, answer FROM eval_items WHERE run_id = ?",
            )?;
            let done: Vec<(String, String, String, Option<String>)> = stmt
                .query_map(duckdb::params![id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok((run, configs, done))
        })
        .await
        .map_err(|e| EvalError::Invalid(format!("reading the run failed: {e}")))??
    };
    let file = ConfigFile::parse("stored configs", &run.configs_toml)?;
    let dataset = Dataset::resolve(&run.dataset_source, &spec.cache_dir)?;
    dataset.expect_sha256(run.dataset_sha256.as_deref())?;
    let items = dataset.sample(run.limit, run.seed)?;
    if items.len() != run.n_items {
        return Err(EvalError::Invalid(format!(
            "the sample has {} items, the run had {}",
            items.len(),
            run.n_items
        )));
    }
    let grader = match run.grader.as_str() {
        "simpleqa" => Grader::SimpleQa {
            template: run
                .grader_template
                .clone()
                .ok_or_else(|| EvalError::Invalid("the run stored no grader template".into()))?
                .into(),
            judge_model: run
                .judge_model
                .clone()
                .unwrap_or_else(|| DEFAULT_JUDGE.into()),
            parse: if run.judge_parse == "simple-evals-compat" {
                JudgeParse::SimpleEvalsCompat
            } else {
                JudgeParse::Strict
            },
        },
        "agreement" | "pairwise" => {
            let template: Arc<str> = run
                .grader_template
                .clone()
                .ok_or_else(|| EvalError::Invalid("the run stored no grader template".into()))?
                .into();
            let judge_model = run
                .judge_model
                .clone()
                .unwrap_or_else(|| DEFAULT_JUDGE.into());
            if run.grader == "agreement" {
                Grader::Agreement {
                    template,
                    judge_model,
                }
            } else {
                Grader::Pairwise {
                    template,
                    judge_model,
                }
            }
        }
        _ => Grader::Exact,
    };
    let mut opts: RunnerOptions = serde_json::from_str(&run.options)
        .unwrap_or_else(|_| RunnerOptions::resolve(&file.runner, None));
    if let Some(c) = spec.concurrency {
        opts.concurrency = c.max(1);
    }
    let configs: Vec<ResolvedConfig> = stored_configs
        .iter()
        .map(|sc| {
            if sc.kind == crate::recorded::RECORDED_CONFIG {
                return Ok(recorded_config(&file, sc.model.clone()));
            }
            let v = file.variant(&sc.name).ok_or_else(|| {
                EvalError::Invalid(format!("config {} is not in the stored file", sc.name))
            })?;
            let agent = sc.agent_id.clone().map(|id| (id, sc.agent_version.clone()));
            Ok(resolved(v, &file, agent, sc.model.clone()))
        })
        .collect::<Result<_, EvalError>>()?;
    let target = spec
        .target
        .clone()
        .unwrap_or_else(|| match run.proxy.as_str() {
            "embedded" => Target::Embedded {
                upstream: run.upstream.clone(),
            },
            "none" => Target::Direct {
                upstream: run.upstream.clone(),
            },
            url => Target::Proxy {
                url: url.to_string(),
            },
        });
    // (config, item) -> (status, answer) of its row.
    let finished: std::collections::HashMap<(String, String), (String, Option<String>)> = done
        .into_iter()
        .map(|(c, i, status, answer)| ((c, i), (status, answer)))
        .collect();
    let items: Vec<Arc<agentcap_datasets::QaItem>> = items.into_iter().map(Arc::new).collect();
    let mut jobs = Vec::new();
    for (pos, it) in items.iter().enumerate() {
        for (ci, c) in configs.iter().enumerate() {
            let (replace, regrade) = match finished.get(&(c.name.clone(), it.id.clone())) {
                None => (false, None),
                Some((status, _)) if status == "error" && spec.retry_errors => (true, None),
                // Answered, only the judge failed: grade the stored answer again.
                Some((status, answer)) if status == "judge_error" && spec.retry_errors => {
                    (false, Some(answer.clone().unwrap_or_default()))
                }
                Some(_) => continue,
            };
            jobs.push(Job {
                position: pos,
                item: it.clone(),
                config: ci,
                replace,
                regrade,
            });
        }
    }
    let expected = items.len() * configs.len();
    let conn = connect(&target, &spec.db, spec.api_key.clone(), None).await?;
    conn.store.set_run_status(&run.run_id, "running", None);
    drive(
        conn,
        run.run_id.clone(),
        configs,
        grader,
        opts,
        stop,
        spec.observer,
        spec.progress,
        jobs,
        expected,
        spec.db.clone(),
    )
    .await
}
