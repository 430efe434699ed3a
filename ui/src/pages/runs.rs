//! `/runs`, `/runs/<id>`, `/runs/<id>/items/<item>`: eval runs stored beside the recording. The run list and
//! the report (accuracy with intervals, latency) come from `agentcap_evalkit::history`, read on a lent
//! connection; the item tables are read with SQL here.

use std::collections::BTreeMap;

use agentcap_evalkit::EvalError;
use agentcap_evalkit::history;
use agentcap_evalkit::metrics::Paired;
use agentcap_evalkit::report::Report;
use agentcap_proxy::views::SIMULATED_LABEL;
use maud::{Markup, html};

use super::{clip, fmt_ts, layout};
use crate::db::{Db, Param, Rows};
use crate::report::{charts, recorded_section, topic_chart};
use crate::svg::{AccuracyBar, accuracy_chart};
use crate::web::{Query, enc};
use crate::{UiError, UiState};

/// Items listed on a run page at most.
const MAX_ITEMS: usize = 500;
/// Bytes of a question, answer or judge reply shown.
const TEXT_BYTES: usize = 4096;

fn eval_err(e: EvalError) -> UiError {
    match e {
        EvalError::NotFound(what) => UiError::NotFound(what),
        other => UiError::Internal(other.to_string()),
    }
}

/// Runs `f` with a connection lent by the data source.
fn lent<T>(
    db: &dyn Db,
    mut f: impl FnMut(&duckdb::Connection) -> Result<T, EvalError>,
) -> Result<T, UiError> {
    let mut out = None;
    db.with_connection(&mut |c| out = Some(f(c)))
        .ok_or_else(|| UiError::Internal("this data source cannot read eval runs".into()))??;
    out.ok_or_else(|| UiError::Internal("no result".into()))?
        .map_err(eval_err)
}

/// The run list.
pub async fn list(state: &UiState) -> Result<Markup, UiError> {
    let runs = state.with_db(|db| lent(db, history::list_runs)).await??;
    Ok(layout(
        "Eval runs",
        html! {
            p { a href="/compare" { "Compare two configs (of one run or two)" } }
            @if runs.is_empty() { p.empty { "No eval runs in this recording." } }
            @else {
                table.list #runs {
                    thead { tr { th { "Run" } th { "Created (UTC)" } th { "Status" } th { "Dataset" } th.num { "Items" }
                        th { "Configs" } th.num { "Finished" } th.num { "Errors" } th { "Grader" } th { "Upstream" } } }
                    tbody { @for r in &runs { tr {
                        td.mono { a href={ "/runs/" (enc(&r.run_id)) } { (r.run_id) } }
                        td { (fmt_ts(Some(&r.created_at))) }
                        td { (r.status) }
                        td { (r.dataset) }
                        td.num { (r.n_items) }
                        td { (r.configs) }
                        td.num { (r.finished_items) }
                        td.num { (r.errors) }
                        td { (r.grader) }
                        td { @if r.simulated_upstream { span.sim { (SIMULATED_LABEL) } } }
                    } } }
                }
            }
        },
    ))
}

const ITEMS_SQL: &str = "SELECT i.item_id, i.position, i.question, i.config, i.status, g.outcome \
  FROM eval_items i LEFT JOIN eval_grades g ON g.run_id = i.run_id AND g.config = i.config AND g.item_id = i.item_id \
  WHERE i.run_id = ? AND i.position < ? ORDER BY i.position, i.config";

/// One run: the static report's charts (accuracy and F-score with intervals, accuracy against latency,
/// latency CDFs, cost, accuracy per topic), the summary, the paired comparisons, the items.
pub async fn run(state: &UiState, id: &str) -> Result<Markup, UiError> {
    let id = id.to_string();
    let rid = id.clone();
    let report = state
        .with_db(move |db| {
            lent(db, |c| {
                let run_id = history::resolve_run_id(c, &rid)?;
                history::load_report(c, &run_id)
            })
        })
        .await??;
    let run_id = report.run.run_id.clone();
    let table = state
        .query(
            ITEMS_SQL.into(),
            vec![
                Param::Text(run_id.clone()),
                Param::Int(i64::try_from(MAX_ITEMS).unwrap_or(i64::MAX)),
            ],
        )
        .await?;
    let configs: Vec<String> = report.configs.iter().map(|c| c.name.clone()).collect();
    // Item rows grouped by item, in sample order.
    let rows = Rows::new(&table);
    let mut by_item: BTreeMap<i64, (String, String, BTreeMap<String, String>)> = BTreeMap::new();
    for r in rows.iter() {
        let e = by_item
            .entry(r.int("position").unwrap_or(0))
            .or_insert_with(|| {
                (
                    r.text("item_id").unwrap_or_default(),
                    r.text("question").unwrap_or_default(),
                    BTreeMap::new(),
                )
            });
        let status = r.text("status").unwrap_or_default();
        let cell = if status == "answered" {
            r.text("outcome").unwrap_or_else(|| "ungraded".into())
        } else {
            status
        };
        e.2.insert(r.text("config").unwrap_or_default(), cell);
    }
    let info = &report.run;
    Ok(layout(
        &format!("Eval run {run_id}"),
        html! {
            p.convhead {
                (info.dataset) " · grader " (info.grader) " · seed " (info.seed)
                " · started " (fmt_ts(Some(&info.started_at)))
                @if !info.complete { " · " b { "incomplete" } }
                @if info.simulated_upstream { " · " span.sim { (SIMULATED_LABEL) } }
            }
            table.list #summary {
                thead { tr { th { "Config" } th.num { "Items" } th.num { "Correct" } th.num { "Incorrect" } th.num { "Not attempted" }
                    th.num { "Errors" } th.num { "Accuracy" } th.num { "F-score" } th.num { "p50 total" } th.num { "p90 total" } } }
                tbody { @for c in &report.configs { tr {
                    td { (c.name) } td.num { (c.summary.n) } td.num { (c.summary.correct) } td.num { (c.summary.incorrect) }
                    td.num { (c.summary.not_attempted) } td.num { (c.summary.errors + c.summary.judge_errors) }
                    td.num { (format!("{:.1}%", c.summary.accuracy * 100.0)) }
                    td.num { (format!("{:.3}", c.summary.f_score)) }
                    td.num { @if let Some(p) = &c.summary.total_ms { (format!("{:.0} ms", p.p50)) } }
                    td.num { @if let Some(p) = &c.summary.total_ms { (format!("{:.0} ms", p.p90)) } }
                } } }
            }
            @if !report.comparisons.is_empty() {
                h2 { "Paired against the baseline (" (report.baseline) ")" }
                (comparisons(&report.comparisons))
            }
            // A recorded set: candidates against production, the regressions with both conversations.
            (recorded_section(&report))
            // The static report's charts: one implementation for both.
            (charts(&report))
            @if report.configs.iter().any(|c| !c.by_topic.is_empty()) {
                h2 #topics { "Accuracy per topic (95% Wilson interval)" }
                (topic_chart(&report))
            }
            h2 { "Items" }
            @if by_item.len() >= MAX_ITEMS { p.muted { "The first " (MAX_ITEMS) " items of the sample." } }
            table.list #items {
                thead { tr { th.num { "#" } th { "Question" } @for c in &configs { th { (c) } } } }
                tbody { @for (pos, (item, question, cells)) in &by_item { tr {
                    td.num { (pos) }
                    td { a href={ "/runs/" (enc(&run_id)) "/items/" (enc(item)) } { (clip(question, 300).0) } }
                    @for c in &configs { td { (cells.get(c).map_or("", String::as_str)) } }
                } } }
            }
        },
    ))
}

const ITEM_SQL: &str = "SELECT i.config, i.question, i.golds, i.status, i.answer, i.conversation_id, i.exchange_id, \
  i.ttft_ms, i.total_ms, i.attempts, i.error, g.outcome, g.judge_reply, g.judge_exchange_id \
  FROM eval_items i LEFT JOIN eval_grades g ON g.run_id = i.run_id AND g.config = i.config AND g.item_id = i.item_id \
  WHERE i.run_id = ? AND i.item_id = ? ORDER BY i.config";

/// One item across the run's configs, each linked to its recorded conversation and exchange.
pub async fn item(state: &UiState, run: &str, item: &str) -> Result<Markup, UiError> {
    let r = state
        .query(
            ITEM_SQL.into(),
            vec![Param::Text(run.to_string()), Param::Text(item.to_string())],
        )
        .await?;
    let rows = Rows::new(&r);
    let Some(first) = rows.first() else {
        return Err(UiError::NotFound(format!("no item {item} in run {run}")));
    };
    Ok(layout(
        &format!("Item {item}"),
        html! {
            p { a href={ "/runs/" (enc(run)) } { "← run " (run) } }
            h2 { "Question" }
            p.text { (clip(&first.text("question").unwrap_or_default(), TEXT_BYTES).0) }
            p { "Gold answers: " code { (clip(&first.text("golds").unwrap_or_default(), TEXT_BYTES).0) } }
            @for r in rows.iter() {
                h2 { (r.text("config").unwrap_or_default()) }
                dl.summary {
                    dt { "Status" } dd { (r.text("status").unwrap_or_default()) " · " (r.text("outcome").unwrap_or_default()) }
                    dt { "Answer" } dd.text { (clip(&r.text("answer").unwrap_or_default(), TEXT_BYTES).0) }
                    dt { "Latency" } dd {
                        @if let Some(t) = r.float("ttft_ms") { "TTFT " (format!("{t:.0} ms")) " · " }
                        @if let Some(t) = r.float("total_ms") { "total " (format!("{t:.0} ms")) }
                        " · attempts " (r.int("attempts").unwrap_or(0))
                    }
                    @if let Some(e) = r.text("error") { dt { "Error" } dd.error { (e) } }
                    dt { "Conversation" } dd {
                        @if let Some(c) = r.text("conversation_id") { a.item-conversation href={ "/conversations/" (enc(&c)) } { (c) } }
                    }
                    dt { "Exchange" } dd {
                        @if let Some(x) = r.text("exchange_id") { a href={ "/exchanges/" (enc(&x)) } { (x) } }
                    }
                    @if let Some(j) = r.text("judge_reply") {
                        dt { "Judge" } dd {
                            (clip(&j, TEXT_BYTES).0)
                            @if let Some(x) = r.text("judge_exchange_id") { " · " a href={ "/exchanges/" (enc(&x)) } { "judge exchange" } }
                        }
                    }
                }
            }
        },
    ))
}

/// Paired comparisons: accuracy delta with its bootstrap interval, flips, McNemar and Holm p-values, latency
/// deltas.
fn comparisons(pairs: &[Paired]) -> Markup {
    html! {
        table.list.comparisons {
            thead { tr { th { "Baseline" } th { "Candidate" } th.num { "Paired items" } th.num { "Accuracy Δ" } th { "95% CI" }
                th.num { "Became correct" } th.num { "Became incorrect" } th.num { "McNemar p" } th.num { "Holm p" }
                th.num { "p50 total Δ" } } }
            tbody { @for p in pairs { tr {
                td { (p.baseline) } td { (p.candidate) } td.num { (p.n_paired) }
                td.num { (format!("{:+.1} pt", p.accuracy_delta * 100.0)) }
                td { (format!("[{:+.1}, {:+.1}]", p.accuracy_delta_ci.lo * 100.0, p.accuracy_delta_ci.hi * 100.0)) }
                td.num { (p.c) } td.num { (p.b) }
                td.num { (format!("{:.3}", p.mcnemar_p)) } td.num { (format!("{:.3}", p.holm_p)) }
                td.num { @if let Some(d) = p.total_p50_delta_ms { (format!("{d:+.0} ms")) } }
            } } }
        }
    }
}

fn bars(report: &Report) -> Vec<AccuracyBar> {
    report
        .configs
        .iter()
        .map(|c| AccuracyBar {
            name: c.name.clone(),
            accuracy: c.summary.accuracy,
            lo: c.summary.accuracy_ci.lo,
            hi: c.summary.accuracy_ci.hi,
            n: c.summary.graded,
        })
        .collect()
}

/// `/compare?a=RUN[:CONFIG]&b=RUN[:CONFIG]`: two configs of one or two runs on the items both have (`a` is
/// the baseline), through evalkit's own comparison.
pub async fn compare(state: &UiState, q: &Query) -> Result<Markup, UiError> {
    let a = q.get("a").unwrap_or("").to_string();
    let b = q.get("b").unwrap_or("").to_string();
    let report = if a.is_empty() || b.is_empty() {
        None
    } else {
        let (a2, b2) = (a.clone(), b.clone());
        Some(
            state
                .with_db(move |db| lent(db, |c| history::compare(c, &a2, &b2)))
                .await??,
        )
    };
    Ok(layout(
        "Compare",
        html! {
            form.filters method="get" action="/compare" {
                label { "Baseline (RUN[:CONFIG])" input name="a" value=(a); }
                label { "Candidate (RUN[:CONFIG])" input name="b" value=(b); }
                button type="submit" { "Compare" }
            }
            @if let Some(r) = &report {
                p.muted { "Items matched by id; run ids may be prefixes." }
                (accuracy_chart(&bars(r)))
                (comparisons(&r.comparisons))
            }
        },
    ))
}
