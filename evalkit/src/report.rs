//! Reports (placeholder until the report module of the evalkit core lands): building a report from
//! per-config item results, rendering it (table, JSON, Markdown, minimal HTML) and cutoff checks.

use crate::metrics::{self, ItemResult, Paired, Summary};

/// What the report is about.
#[derive(Clone, Debug, serde::Serialize)]
#[allow(missing_docs)]
pub struct RunInfo {
    pub run_id: String,
    pub dataset: String,
    pub grader: String,
    pub judge: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seed: u64,
    pub limit: Option<usize>,
    pub simulated_upstream: bool,
    pub upstream: String,
    pub complete: bool,
}

/// One config's results.
#[derive(Clone, Debug, serde::Serialize)]
#[allow(missing_docs)]
pub struct ConfigReport {
    pub name: String,
    pub description: String,
    pub summary: Summary,
    pub by_topic: Vec<(String, Summary)>,
    pub by_answer_type: Vec<(String, Summary)>,
}

/// A whole report.
#[derive(Clone, Debug, serde::Serialize)]
#[allow(missing_docs)]
pub struct Report {
    pub run: RunInfo,
    pub baseline: String,
    pub configs: Vec<ConfigReport>,
    pub comparisons: Vec<Paired>,
}

impl Report {
    /// Summaries, breakdowns, and every non-baseline config compared with the baseline (Holm).
    pub fn build(
        run: RunInfo,
        baseline: &str,
        configs: Vec<(String, String, Vec<ItemResult>)>,
        seed: u64,
    ) -> Report {
        let base_items = configs
            .iter()
            .find(|(n, _, _)| n == baseline)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_default();
        let mut comparisons: Vec<Paired> = configs
            .iter()
            .filter(|(n, _, _)| n != baseline)
            .map(|(n, _, v)| metrics::compare_paired(baseline, &base_items, n, v, seed))
            .collect();
        let adjusted = metrics::holm(&comparisons.iter().map(|p| p.mcnemar_p).collect::<Vec<_>>());
        for (p, h) in comparisons.iter_mut().zip(adjusted) {
            p.holm_p = h;
        }
        let configs = configs
            .into_iter()
            .map(|(name, description, items)| ConfigReport {
                summary: metrics::summarize(&items, seed),
                by_topic: metrics::breakdown(&items, |i| i.topic.as_deref(), seed),
                by_answer_type: metrics::breakdown(&items, |i| i.answer_type.as_deref(), seed),
                name,
                description,
            })
            .collect();
        Report {
            run,
            baseline: baseline.to_string(),
            configs,
            comparisons,
        }
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Terminal table.
    Table,
    /// JSON.
    Json,
    /// Markdown.
    Markdown,
    /// Self-contained HTML.
    Html,
}

fn lines(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let label = if report.run.simulated_upstream {
        " (simulated upstream)"
    } else {
        ""
    };
    out.push(format!(
        "run {}{label}: dataset {}, grader {}{}",
        report.run.run_id,
        report.run.dataset,
        report.run.grader,
        if report.run.complete { "" } else { ", PARTIAL" }
    ));
    for c in &report.configs {
        let s = &c.summary;
        out.push(format!(
            "{}: n={} correct={} incorrect={} not_attempted={} errors={} unparseable={} accuracy={:.3} [{:.3}, {:.3}] f={:.3} ttft_p50={} total_p50={}",
            c.name,
            s.n,
            s.correct,
            s.incorrect,
            s.not_attempted,
            s.errors,
            s.unparseable,
            s.accuracy,
            s.accuracy_ci.lo,
            s.accuracy_ci.hi,
            s.f_score,
            s.ttft_ms.as_ref().map_or("-".into(), |p| format!("{:.1}ms", p.p50)),
            s.total_ms.as_ref().map_or("-".into(), |p| format!("{:.1}ms", p.p50)),
        ));
    }
    for p in &report.comparisons {
        out.push(format!(
            "{} vs {}: delta={:+.3} [{:+.3}, {:+.3}] n={} mcnemar_p={:.3e} holm_p={:.3e}",
            p.candidate,
            p.baseline,
            p.accuracy_delta,
            p.accuracy_delta_ci.lo,
            p.accuracy_delta_ci.hi,
            p.n_paired,
            p.mcnemar_p,
            p.holm_p
        ));
    }
    out
}

/// Renders the report.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default(),
        Format::Table => lines(report).join("\n") + "\n",
        Format::Markdown => lines(report).iter().map(|l| format!("- {l}\n")).collect(),
        Format::Html => {
            let body: String = lines(report)
                .iter()
                .map(|l| format!("<p>{}</p>\n", l.replace('&', "&amp;").replace('<', "&lt;")))
                .collect();
            format!(
                "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>agentcap eval report</title></head><body>\n{body}</body></html>\n"
            )
        }
    }
}

/// Evaluates `CONFIG.metric OP value`.
pub fn check_cutoff(report: &Report, expr: &str) -> Result<bool, String> {
    let ops = [">=", "<=", "==", ">", "<"];
    let (at, op) = ops
        .iter()
        .filter_map(|op| expr.find(op).map(|i| (i, *op)))
        .min_by_key(|(i, _)| *i)
        .ok_or_else(|| format!("no comparison operator in {expr:?}"))?;
    let (lhs, rhs) = (expr[..at].trim(), expr[at + op.len()..].trim());
    let value: f64 = rhs
        .parse()
        .map_err(|e| format!("bad number {rhs:?}: {e}"))?;
    let (config, metric) = lhs
        .rsplit_once('.')
        .ok_or_else(|| format!("expected CONFIG.metric, got {lhs:?}"))?;
    let c = report
        .configs
        .iter()
        .find(|c| c.name == config)
        .ok_or_else(|| format!("unknown config {config:?}"))?;
    let s = &c.summary;
    let actual = match metric {
        "accuracy" => s.accuracy,
        "accuracy_given_attempted" => s.accuracy_given_attempted,
        "f_score" => s.f_score,
        "errors" => s.errors as f64,
        "ttft_p50_ms" => s.ttft_ms.as_ref().map_or(f64::NAN, |p| p.p50),
        "total_p50_ms" => s.total_ms.as_ref().map_or(f64::NAN, |p| p.p50),
        other => return Err(format!("unknown metric {other:?}")),
    };
    Ok(match op {
        ">=" => actual >= value,
        "<=" => actual <= value,
        "==" => actual == value,
        ">" => actual > value,
        _ => actual < value,
    })
}
