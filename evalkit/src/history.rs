//! Reading stored runs back: the run and config rows, per-config item results, the report of a
//! run, the list of runs, and paired comparisons across runs.

use std::collections::HashMap;

use duckdb::{Connection, params};
use serde::Serialize;

use crate::EvalError;
use crate::grade::Grade;
use crate::metrics::{ItemResult, Outcome};
use crate::report::{Regression, Report, RunInfo, VersusRecorded};
use crate::store::has_table;

/// A stored run, as read back: the same row the store writes.
pub use crate::store::RunRow as StoredRun;

/// A stored config row.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct StoredConfig {
    pub name: String,
    pub position: usize,
    pub description: String,
    pub kind: String,
    pub mode: String,
    pub model: Option<String>,
    pub agent_id: Option<String>,
    pub agent_version: Option<String>,
}

/// One line of `eval list`.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct RunListing {
    pub run_id: String,
    pub created_at: String,
    pub status: String,
    pub dataset: String,
    pub n_items: usize,
    pub configs: String,
    pub finished_items: usize,
    pub errors: usize,
    pub grader: String,
    pub simulated_upstream: bool,
}

fn to_usize(v: i64) -> usize {
    usize::try_from(v).unwrap_or(0)
}

/// Finds a run by its id or a unique prefix of it.
pub fn resolve_run_id(c: &Connection, id: &str) -> Result<String, EvalError> {
    if !has_table(c, "eval_runs")? {
        return Err(EvalError::NotFound(format!(
            "no eval runs in this database (looking for {id})"
        )));
    }
    let mut stmt =
        c.prepare("SELECT run_id FROM eval_runs WHERE starts_with(run_id, ?) ORDER BY run_id")?;
    let ids: Vec<String> = stmt
        .query_map(params![id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.iter().any(|x| x == id) {
        return Ok(id.to_string());
    }
    match ids.len() {
        1 => Ok(ids[0].clone()),
        0 => Err(EvalError::NotFound(format!("no eval run {id}"))),
        n => Err(EvalError::Invalid(format!(
            "{id} matches {n} runs; give more of the id"
        ))),
    }
}

/// The run row.
pub fn load_run(c: &Connection, run_id: &str) -> Result<StoredRun, EvalError> {
    let r = c.query_row(
        "SELECT run_id, CAST(created_at AS VARCHAR), CAST(finished_at AS VARCHAR), status, dataset,
                dataset_source, dataset_sha256, n_items, limit_k, seed, grader, judge_model,
                judge_parse, grader_template, baseline, upstream, proxy, simulated_upstream,
                configs_toml, options, dataset_rows
         FROM eval_runs WHERE run_id = ?",
        params![run_id],
        |r| {
            Ok(StoredRun {
                run_id: r.get(0)?,
                created_at: r.get(1)?,
                finished_at: r.get(2)?,
                status: r.get(3)?,
                dataset: r.get(4)?,
                dataset_source: r.get(5)?,
                dataset_sha256: r.get(6)?,
                dataset_rows: r.get::<_, Option<i64>>(20)?.map_or(0, to_usize),
                n_items: to_usize(r.get(7)?),
                limit: r.get::<_, Option<i64>>(8)?.map(to_usize),
                seed: r.get(9)?,
                grader: r.get(10)?,
                judge_model: r.get(11)?,
                judge_parse: r.get(12)?,
                grader_template: r.get(13)?,
                baseline: r.get(14)?,
                upstream: r.get(15)?,
                proxy: r.get(16)?,
                simulated_upstream: r.get(17)?,
                configs_toml: r.get(18)?,
                options: r.get(19)?,
            })
        },
    );
    match r {
        Ok(run) => Ok(run),
        Err(duckdb::Error::QueryReturnedNoRows) => {
            Err(EvalError::NotFound(format!("no eval run {run_id}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// The run's configs, in order.
pub fn load_configs(c: &Connection, run_id: &str) -> Result<Vec<StoredConfig>, EvalError> {
    let mut stmt = c.prepare(
        "SELECT name, position, description, kind, mode, model, agent_id, agent_version
         FROM eval_configs WHERE run_id = ? ORDER BY position",
    )?;
    let rows = stmt
        .query_map(params![run_id], |r| {
            Ok(StoredConfig {
                name: r.get(0)?,
                position: to_usize(r.get(1)?),
                description: r.get(2)?,
                kind: r.get(3)?,
                mode: r.get(4)?,
                model: r.get(5)?,
                agent_id: r.get(6)?,
                agent_version: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Item results per config name, in sample order.
pub fn load_items(
    c: &Connection,
    run_id: &str,
) -> Result<HashMap<String, Vec<ItemResult>>, EvalError> {
    let mut stmt = c.prepare(
        "SELECT i.config, i.item_id, i.status, g.outcome, i.topic, i.answer_type, i.ttft_ms,
                i.total_ms, i.prompt_tokens, i.completion_tokens, i.connector_tokens,
                i.tool_executions, i.cost_usd
         FROM eval_items i
         LEFT JOIN eval_grades g
           ON g.run_id = i.run_id AND g.config = i.config AND g.item_id = i.item_id
         WHERE i.run_id = ?
         ORDER BY i.position, i.config",
    )?;
    let mut out: HashMap<String, Vec<ItemResult>> = HashMap::new();
    let rows = stmt.query_map(params![run_id], |r| {
        let status: String = r.get(2)?;
        let grade: Option<String> = r.get(3)?;
        let outcome = match status.as_str() {
            "error" => Outcome::Error,
            "judge_error" => Outcome::JudgeError,
            _ => match grade.as_deref().and_then(Grade::parse) {
                Some(g) => Outcome::Graded(g),
                None => Outcome::Unparseable,
            },
        };
        let config: String = r.get(0)?;
        Ok((
            config,
            ItemResult {
                item_id: r.get(1)?,
                outcome,
                topic: r.get(4)?,
                answer_type: r.get(5)?,
                ttft_ms: r.get(6)?,
                total_ms: r.get(7)?,
                prompt_tokens: r.get::<_, Option<i64>>(8)?.unwrap_or(0).max(0) as u64,
                completion_tokens: r.get::<_, Option<i64>>(9)?.unwrap_or(0).max(0) as u64,
                connector_tokens: r.get::<_, Option<i64>>(10)?.unwrap_or(0).max(0) as u64,
                tool_executions: r.get::<_, Option<i64>>(11)?.unwrap_or(0).max(0) as u32,
                cost_usd: r.get(12)?,
            },
        ))
    })?;
    for row in rows {
        let (config, item) = row?;
        out.entry(config).or_default().push(item);
    }
    Ok(out)
}

/// The report of a stored run (partial when the run is not complete).
pub fn load_report(c: &Connection, run_id: &str) -> Result<Report, EvalError> {
    let run = load_run(c, run_id)?;
    let configs = load_configs(c, run_id)?;
    let mut items = load_items(c, run_id)?;
    let info = RunInfo {
        run_id: run.run_id.clone(),
        dataset: run.dataset.clone(),
        grader: run.grader.clone(),
        judge: run.judge_model.clone(),
        started_at: run.created_at.clone(),
        finished_at: run.finished_at.clone(),
        seed: run.seed,
        limit: run.limit,
        simulated_upstream: run.simulated_upstream,
        upstream: run.upstream.clone(),
        complete: run.status == "complete",
    };
    let per_config = configs
        .into_iter()
        .map(|cfg| {
            let v = items.remove(&cfg.name).unwrap_or_default();
            (cfg.name, cfg.description, v)
        })
        .collect();
    let mut report = Report::build(info, &run.baseline, per_config, run.seed);
    if matches!(run.grader.as_str(), "agreement" | "pairwise")
        && let Some(recorded) = configs_kind(c, run_id, crate::recorded::RECORDED_CONFIG)?
    {
        report.versus_recorded = report
            .configs
            .iter()
            .filter(|cfg| cfg.name != recorded)
            .map(|cfg| VersusRecorded::from_summary(&cfg.name, &run.grader, &cfg.summary))
            .collect();
        report.regressions = load_regressions(c, run_id, &recorded, &run.grader)?;
    }
    Ok(report)
}

/// The name of the run's config of `kind`, if it has one.
fn configs_kind(c: &Connection, run_id: &str, kind: &str) -> Result<Option<String>, EvalError> {
    Ok(load_configs(c, run_id)?
        .into_iter()
        .find(|cfg| cfg.kind == kind)
        .map(|cfg| cfg.name))
}

/// The items a candidate lost against the recorded answers, in sample order: under agreement,
/// a different answer (`incorrect`) where the recorded answer was graded good (the judge found
/// it agreeing with itself, i.e. not an abstention: its own grade is `correct`; and, when the
/// item has gold answers, the recorded answer matches one by the exact grader); under pairwise,
/// the recorded answer preferred in both orders.
pub fn load_regressions(
    c: &Connection,
    run_id: &str,
    recorded: &str,
    grader: &str,
) -> Result<Vec<Regression>, EvalError> {
    let mut stmt = c.prepare(
        "SELECT i.item_id, i.config, i.question, r.answer, i.answer, r.conversation_id,
                i.conversation_id, r.golds
         FROM eval_items i
         JOIN eval_items r ON r.run_id = i.run_id AND r.item_id = i.item_id AND r.config = ?
         JOIN eval_grades g ON g.run_id = i.run_id AND g.config = i.config AND g.item_id = i.item_id
         LEFT JOIN eval_grades rg
           ON rg.run_id = r.run_id AND rg.config = r.config AND rg.item_id = r.item_id
         WHERE i.run_id = ? AND i.config <> ? AND g.outcome = 'incorrect'
           AND (? = 'pairwise' OR rg.outcome = 'correct')
         ORDER BY i.position, i.config",
    )?;
    let rows = stmt.query_map(params![recorded, run_id, recorded, grader], |r| {
        let golds: Vec<String> = r
            .get::<_, Option<String>>(7)?
            .and_then(|g| serde_json::from_str(&g).ok())
            .unwrap_or_default();
        Ok((
            golds,
            Regression {
                item_id: r.get(0)?,
                config: r.get(1)?,
                question: r.get(2)?,
                recorded_answer: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                candidate_answer: r.get(4)?,
                recorded_conversation_id: r.get(5)?,
                candidate_conversation_id: r.get(6)?,
                verdict: if grader == "pairwise" {
                    "lost".into()
                } else {
                    "different".into()
                },
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (golds, reg) = row?;
        let recorded_right = golds.is_empty()
            || crate::grade::exact_grade(&reg.recorded_answer, &golds) == Grade::Correct;
        if grader == "pairwise" || recorded_right {
            out.push(reg);
        }
    }
    Ok(out)
}

/// Every stored run, newest first.
pub fn list_runs(c: &Connection) -> Result<Vec<RunListing>, EvalError> {
    if !has_table(c, "eval_runs")? {
        return Ok(Vec::new());
    }
    let mut stmt = c.prepare(
        "SELECT r.run_id, CAST(r.created_at AS VARCHAR), r.status, r.dataset, r.n_items,
                (SELECT string_agg(name, ',' ORDER BY position) FROM eval_configs c WHERE c.run_id = r.run_id),
                (SELECT count(*) FROM eval_items i WHERE i.run_id = r.run_id),
                (SELECT count(*) FROM eval_items i WHERE i.run_id = r.run_id AND i.status = 'error'),
                r.grader, r.simulated_upstream
         FROM eval_runs r ORDER BY r.created_at DESC, r.run_id DESC",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(RunListing {
                run_id: r.get(0)?,
                created_at: r.get(1)?,
                status: r.get(2)?,
                dataset: r.get(3)?,
                n_items: to_usize(r.get(4)?),
                configs: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                finished_items: to_usize(r.get(6)?),
                errors: to_usize(r.get(7)?),
                grader: r.get(8)?,
                simulated_upstream: r.get(9)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// `RUN[:CONFIG]`: the run (id or prefix) and the config (default: the only one, or the
/// baseline).
pub fn resolve_side(c: &Connection, side: &str) -> Result<(StoredRun, String), EvalError> {
    let (id, config) = match side.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (side, None),
    };
    let run = load_run(c, &resolve_run_id(c, id)?)?;
    let configs = load_configs(c, &run.run_id)?;
    let name = match config {
        Some(n) => {
            if !configs.iter().any(|x| x.name == n) {
                return Err(EvalError::NotFound(format!(
                    "run {} has no config {n:?} (it has {})",
                    run.run_id,
                    configs
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            n.to_string()
        }
        None if configs.len() == 1 => configs[0].name.clone(),
        None => run.baseline.clone(),
    };
    Ok((run, name))
}

/// Compares `a` = `RUN_A[:CONFIG]` (the baseline) with `b` = `RUN_B[:CONFIG]` on the items both
/// have: a two-config report whose configs are named `RUN:CONFIG`.
pub fn compare(c: &Connection, a: &str, b: &str) -> Result<Report, EvalError> {
    let (run_a, cfg_a) = resolve_side(c, a)?;
    let (run_b, cfg_b) = resolve_side(c, b)?;
    if run_a.dataset_sha256 != run_b.dataset_sha256 || run_a.dataset != run_b.dataset {
        tracing::warn!(
            a = %run_a.dataset, b = %run_b.dataset,
            "the two runs used different datasets: items are matched by id"
        );
    }
    let short = |id: &str| id.chars().take(16).collect::<String>();
    let name_a = format!("{}:{cfg_a}", short(&run_a.run_id));
    let mut name_b = format!("{}:{cfg_b}", short(&run_b.run_id));
    if name_b == name_a {
        name_b.push_str("(b)");
    }
    let items_a = load_items(c, &run_a.run_id)?
        .remove(&cfg_a)
        .unwrap_or_default();
    let items_b = load_items(c, &run_b.run_id)?
        .remove(&cfg_b)
        .unwrap_or_default();
    let desc = |run: &StoredRun, cfg: &str| -> Result<String, EvalError> {
        Ok(load_configs(c, &run.run_id)?
            .into_iter()
            .find(|x| x.name == cfg)
            .map(|x| x.description)
            .unwrap_or_default())
    };
    let info = RunInfo {
        run_id: format!("{} vs {}", run_a.run_id, run_b.run_id),
        dataset: run_a.dataset.clone(),
        grader: run_a.grader.clone(),
        judge: run_a.judge_model.clone(),
        started_at: run_a.created_at.clone(),
        finished_at: run_b.finished_at.clone(),
        seed: run_a.seed,
        limit: run_a.limit,
        simulated_upstream: run_a.simulated_upstream || run_b.simulated_upstream,
        upstream: if run_a.upstream == run_b.upstream {
            run_a.upstream.clone()
        } else {
            format!("{} / {}", run_a.upstream, run_b.upstream)
        },
        complete: run_a.status == "complete" && run_b.status == "complete",
    };
    Ok(Report::build(
        info,
        &name_a,
        vec![
            (name_a.clone(), desc(&run_a, &cfg_a)?, items_a),
            (name_b, desc(&run_b, &cfg_b)?, items_b),
        ],
        run_a.seed,
    ))
}

/// `eval list` as a text table.
pub fn render_listing(runs: &[RunListing]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "run", "created", "status", "dataset", "items", "done", "errors", "configs", "grader",
    ]);
    for r in runs {
        t.add_row(vec![
            r.run_id.clone(),
            r.created_at.chars().take(19).collect(),
            if r.simulated_upstream {
                format!("{} (simulated upstream)", r.status)
            } else {
                r.status.clone()
            },
            r.dataset.clone(),
            r.n_items.to_string(),
            r.finished_items.to_string(),
            r.errors.to_string(),
            r.configs.clone(),
            r.grader.clone(),
        ]);
    }
    format!("{t}\n({} runs)\n", runs.len())
}
