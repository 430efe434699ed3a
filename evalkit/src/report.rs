//! Eval reports: a run's summaries, breakdowns, latency distributions and paired comparisons
//! ([`Report::build`]), the tables every format shows ([`quality_grid`], [`cost_grid`], …),
//! rendered here as a terminal table, JSON or Markdown ([`render`]), and pass/fail cutoffs over
//! them ([`check_cutoff`]). The HTML page (with charts) is drawn by the `ui` crate from the same
//! [`Report`] and grids (`agentcap_ui::report`), so the static report and the UI's run page share
//! one implementation.
//!
//! Two labels are never optional: a run against agentcap's twin is marked "simulated upstream"
//! and an interrupted run "PARTIAL RUN", at the top of every format (and in JSON under
//! `"labels"`), so such numbers cannot be mistaken for a real, complete evaluation.

use std::fmt::Write as _;

use comfy_table::{CellAlignment, Table, presets};
use serde::{Deserialize, Serialize};

use crate::metrics::{self, Interval, ItemResult, Paired, Summary};

/// The label every format shows when the upstream was agentcap's twin.
pub use agentcap_wire::vocab::SIMULATED_LABEL;
/// The label every format shows when the run did not finish.
pub const PARTIAL_LABEL: &str = "PARTIAL RUN";

/// What was run, where, and whether it finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// Dataset name.
    pub dataset: String,
    /// Grader name (`exact`, `judge`, ...).
    pub grader: String,
    /// Judge model, when a judge grades.
    pub judge: Option<String>,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// End time (RFC 3339); `None` while unfinished.
    pub finished_at: Option<String>,
    /// Seed for sampling and the bootstrap.
    pub seed: u64,
    /// Item limit, if any.
    pub limit: Option<usize>,
    /// True when the upstream is agentcap's twin: every format then shows [`SIMULATED_LABEL`].
    pub simulated_upstream: bool,
    /// The upstream the answers came from.
    pub upstream: String,
    /// False for a partial (interrupted) run: every format then shows [`PARTIAL_LABEL`].
    pub complete: bool,
}

/// One configuration's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigReport {
    /// Configuration name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Over all its items.
    pub summary: Summary,
    /// Per topic, sorted by topic.
    pub by_topic: Vec<(String, Summary)>,
    /// Per answer type, sorted by answer type.
    pub by_answer_type: Vec<(String, Summary)>,
    /// Total latency (ms) at every percent from 0 to 100 ([`LATENCY_QUANTILES`] values, linear
    /// interpolation); empty when no item has one. What a latency CDF is drawn from.
    #[serde(default)]
    pub total_ms_quantiles: Vec<f64>,
    /// Time to first token (ms), likewise; empty for a non-streamed run.
    #[serde(default)]
    pub ttft_ms_quantiles: Vec<f64>,
}

/// How many quantiles [`ConfigReport::total_ms_quantiles`] holds (0%, 1%, …, 100%).
pub const LATENCY_QUANTILES: usize = 101;

/// The finite values' quantiles at 0%, 1%, …, 100%; empty when there is none.
fn quantiles(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    (0..LATENCY_QUANTILES)
        .filter_map(|i| metrics::quantile_sorted(&v, i as f64 / (LATENCY_QUANTILES - 1) as f64))
        .collect()
}

/// A whole run's report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// What was run.
    pub run: RunInfo,
    /// The baseline configuration's name.
    pub baseline: String,
    /// Every configuration, in the given order.
    pub configs: Vec<ConfigReport>,
    /// Every non-baseline configuration compared with the baseline, in configuration order.
    pub comparisons: Vec<Paired>,
    /// A recorded set graded by agreement or pairwise: each candidate against the recorded
    /// answers (empty otherwise).
    #[serde(default)]
    pub versus_recorded: Vec<VersusRecorded>,
    /// A recorded set graded by agreement or pairwise: the items a candidate lost.
    #[serde(default)]
    pub regressions: Vec<Regression>,
}

/// One candidate against the recorded answers of a recorded set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersusRecorded {
    /// The candidate config.
    pub config: String,
    /// `agreement` or `pairwise`.
    pub grader: String,
    /// Graded items.
    pub n: usize,
    /// Agreement: same answer; pairwise: the candidate won in both orders.
    pub wins: usize,
    /// Agreement: a different answer; pairwise: the recorded answer won in both orders.
    pub losses: usize,
    /// Agreement: one abstains; pairwise: a tie (or orders that disagree).
    pub ties: usize,
    /// Agreement: `wins / n`; pairwise: `wins / (wins + losses)` (ties left out, as in the sign
    /// test).
    pub rate: f64,
    /// Wilson 95% interval of the rate.
    pub rate_ci: Interval,
    /// Pairwise: the two-sided sign test of wins against losses (ties left out); agreement:
    /// `None` (the paired tests against the `recorded` baseline apply).
    pub sign_test_p: Option<f64>,
}

/// An item a candidate lost against the recorded answer, with both conversations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// The item.
    pub item_id: String,
    /// The candidate config.
    pub config: String,
    /// The question (the turn's last user message).
    pub question: String,
    /// The recorded answer.
    pub recorded_answer: String,
    /// The candidate's answer.
    pub candidate_answer: Option<String>,
    /// The recorded conversation (UI: `/conversations/{id}`).
    pub recorded_conversation_id: Option<String>,
    /// The candidate's conversation.
    pub candidate_conversation_id: Option<String>,
    /// What the judge said: `different` (agreement) or `lost` (pairwise).
    pub verdict: String,
}

impl VersusRecorded {
    /// A candidate's figures from its summary (`correct` = same / won, `incorrect` = different /
    /// lost, `not_attempted` = abstains / tie).
    pub fn from_summary(config: &str, grader: &str, s: &Summary) -> VersusRecorded {
        let (wins, losses, ties) = (s.correct, s.incorrect, s.not_attempted);
        let pairwise = grader == "pairwise";
        let (k, n) = if pairwise {
            (wins, wins + losses)
        } else {
            (wins, wins + losses + ties)
        };
        VersusRecorded {
            config: config.to_string(),
            grader: grader.to_string(),
            n: wins + losses + ties,
            wins,
            losses,
            ties,
            rate: if n == 0 { 0.0 } else { k as f64 / n as f64 },
            rate_ci: metrics::wilson(k, n, 1.96),
            sign_test_p: pairwise.then(|| metrics::mcnemar_exact(wins, losses)),
        }
    }
}

/// The path of a conversation's page in the UI.
pub fn conversation_link(id: &str) -> String {
    format!("/conversations/{id}")
}

/// Candidates against the recorded answers.
pub fn versus_recorded_grid(report: &Report) -> Grid {
    let pairwise = report
        .versus_recorded
        .iter()
        .any(|v| v.grader == "pairwise");
    let header = if pairwise {
        vec![
            "config",
            "n",
            "wins",
            "losses",
            "ties",
            "win rate [95% CI]",
            "sign test p",
        ]
    } else {
        vec![
            "config",
            "n",
            "same",
            "different",
            "abstains",
            "agreement [95% CI]",
            "sign test p",
        ]
    };
    Grid {
        header,
        rows: report
            .versus_recorded
            .iter()
            .map(|v| {
                vec![
                    v.config.clone(),
                    v.n.to_string(),
                    v.wins.to_string(),
                    v.losses.to_string(),
                    v.ties.to_string(),
                    if v.grader == "pairwise" && v.wins + v.losses == 0 {
                        DASH.into()
                    } else {
                        pct_ci(v.rate, v.rate_ci)
                    },
                    v.sign_test_p.map_or_else(|| DASH.into(), p_value),
                ]
            })
            .collect(),
        numeric_from: 1,
        config_column: true,
    }
}

/// The regression list: item, config, verdict, both conversations' pages, both answers.
pub fn regressions_grid(report: &Report) -> Grid {
    Grid {
        header: vec![
            "item",
            "config",
            "verdict",
            "recorded conversation",
            "candidate conversation",
            "recorded answer",
            "candidate answer",
        ],
        rows: report
            .regressions
            .iter()
            .map(|r| {
                vec![
                    r.item_id.clone(),
                    r.config.clone(),
                    r.verdict.clone(),
                    r.recorded_conversation_id
                        .as_deref()
                        .map_or_else(|| DASH.into(), conversation_link),
                    r.candidate_conversation_id
                        .as_deref()
                        .map_or_else(|| DASH.into(), conversation_link),
                    shorten(&r.recorded_answer),
                    r.candidate_answer
                        .as_deref()
                        .map_or_else(|| DASH.into(), shorten),
                ]
            })
            .collect(),
        numeric_from: 7,
        config_column: false,
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

/// What the "against the recorded answers" table counts (every format shows it under the table).
pub const RECORDED_NOTE: &str = "Against the recorded answers: agreement counts the judge's same / \
different / abstains; pairwise asks the judge twice with the answers swapped, a win or loss needs \
both orders to agree (otherwise a tie), the win rate and the sign test weigh wins against losses \
(ties left out).";

impl Report {
    /// Summaries and breakdowns for every configuration, and every non-baseline configuration
    /// compared with the baseline (Holm's correction applied across those pairs). All bootstraps
    /// use `seed`. When no configuration is named `baseline`, there are no comparisons.
    pub fn build(
        run: RunInfo,
        baseline: &str,
        configs: Vec<(String, String, Vec<ItemResult>)>,
        seed: u64,
    ) -> Report {
        let mut comparisons: Vec<Paired> = match configs.iter().find(|(n, _, _)| n == baseline) {
            Some((_, _, base_items)) => configs
                .iter()
                .filter(|(n, _, _)| n != baseline)
                .map(|(n, _, items)| metrics::compare_paired(baseline, base_items, n, items, seed))
                .collect(),
            None => Vec::new(),
        };
        let p: Vec<f64> = comparisons.iter().map(|c| c.mcnemar_p).collect();
        for (c, adjusted) in comparisons.iter_mut().zip(metrics::holm(&p)) {
            c.holm_p = adjusted;
        }
        let configs = configs
            .into_iter()
            .map(|(name, description, items)| ConfigReport {
                total_ms_quantiles: quantiles(items.iter().filter_map(|i| i.total_ms)),
                ttft_ms_quantiles: quantiles(items.iter().filter_map(|i| i.ttft_ms)),
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
            versus_recorded: Vec::new(),
            regressions: Vec::new(),
        }
    }

    /// The labels this report must carry: [`SIMULATED_LABEL`] and/or [`PARTIAL_LABEL`].
    pub fn labels(&self) -> Vec<&'static str> {
        let mut labels = Vec::new();
        if self.run.simulated_upstream {
            labels.push(SIMULATED_LABEL);
        }
        if !self.run.complete {
            labels.push(PARTIAL_LABEL);
        }
        labels
    }

    /// The configuration named `name`.
    pub fn config(&self, name: &str) -> Option<&ConfigReport> {
        self.configs.iter().find(|c| c.name == name)
    }

    /// The comparison of configuration `candidate` with the baseline.
    pub fn comparison(&self, candidate: &str) -> Option<&Paired> {
        self.comparisons.iter().find(|c| c.candidate == candidate)
    }
}

/// Text formats of [`render`] (the HTML page is `agentcap_ui::report`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain-text tables for a terminal.
    Table,
    /// The [`Report`] as pretty JSON, with a leading `"labels"` array.
    Json,
    /// GitHub-flavoured Markdown.
    Markdown,
}

/// Renders the report in `format`. Every format shows the [`SIMULATED_LABEL`] banner when
/// `run.simulated_upstream` and the [`PARTIAL_LABEL`] banner when `!run.complete`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => render_table(report),
        Format::Json => render_json(report),
        Format::Markdown => render_markdown(report),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared content: banners, run facts and the tables every format shows.

/// The banner sentence for a label ([`SIMULATED_LABEL`] or [`PARTIAL_LABEL`]).
pub fn banner_text(label: &str) -> String {
    if label == SIMULATED_LABEL {
        format!(
            "{SIMULATED_LABEL}: every answer came from agentcap's twin, not from a real model. \
             These numbers test the harness, not model quality."
        )
    } else {
        format!(
            "{PARTIAL_LABEL}: the run did not finish; only the items completed so far are counted."
        )
    }
}

/// The run facts as (name, value) pairs.
pub fn run_facts(report: &Report) -> Vec<(&'static str, String)> {
    let run = &report.run;
    vec![
        ("run", run.run_id.clone()),
        ("dataset", run.dataset.clone()),
        (
            "grader",
            match &run.judge {
                Some(j) => format!("{} (judge: {j})", run.grader),
                None => run.grader.clone(),
            },
        ),
        ("upstream", run.upstream.clone()),
        ("baseline", report.baseline.clone()),
        ("started", run.started_at.clone()),
        (
            "finished",
            run.finished_at
                .clone()
                .unwrap_or_else(|| "not finished".into()),
        ),
        ("seed", run.seed.to_string()),
        (
            "limit",
            run.limit.map_or_else(|| "none".into(), |l| l.to_string()),
        ),
    ]
}

/// A table as strings; each renderer escapes cells for its format.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// Column titles.
    pub header: Vec<&'static str>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
    /// Columns from this index on are numbers (right-aligned).
    pub numeric_from: usize,
    /// The first column holds configuration names (linked to their section in HTML).
    pub config_column: bool,
}

const DASH: &str = "-";

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn pct_ci(x: f64, ci: Interval) -> String {
    format!("{} [{:.1}, {:.1}]", pct(x), ci.lo * 100.0, ci.hi * 100.0)
}

fn pp(x: f64) -> String {
    format!("{:+.1} pp", x * 100.0)
}

fn pp_ci(ci: Interval) -> String {
    format!("[{:+.1}, {:+.1}]", ci.lo * 100.0, ci.hi * 100.0)
}

fn ms(x: Option<f64>) -> String {
    x.map_or_else(|| DASH.into(), |v| format!("{v:.0}"))
}

fn signed_ms(x: Option<f64>) -> String {
    x.map_or_else(|| DASH.into(), |v| format!("{v:+.0}"))
}

fn p_value(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// A configuration's name, with ` (baseline)` for the baseline.
pub fn display_name(report: &Report, name: &str) -> String {
    if name == report.baseline {
        format!("{name} (baseline)")
    } else {
        name.to_string()
    }
}

/// Scores per configuration.
pub fn quality_grid(report: &Report) -> Grid {
    Grid {
        header: vec![
            "config",
            "n",
            "correct",
            "incorrect",
            "not attempted",
            "errors",
            "judge errors",
            "unparseable",
            "accuracy [95% CI]",
            "accuracy given attempted [95% CI]",
            "F [95% CI]",
        ],
        rows: report
            .configs
            .iter()
            .map(|c| {
                let s = &c.summary;
                vec![
                    c.name.clone(),
                    s.n.to_string(),
                    s.correct.to_string(),
                    s.incorrect.to_string(),
                    s.not_attempted.to_string(),
                    s.errors.to_string(),
                    s.judge_errors.to_string(),
                    s.unparseable.to_string(),
                    pct_ci(s.accuracy, s.accuracy_ci),
                    pct_ci(s.accuracy_given_attempted, s.accuracy_given_attempted_ci),
                    pct_ci(s.f_score, s.f_score_ci),
                ]
            })
            .collect(),
        numeric_from: 1,
        config_column: true,
    }
}

/// Latency, usage and cost per configuration.
pub fn cost_grid(report: &Report) -> Grid {
    Grid {
        header: vec![
            "config",
            "ttft p50 ms",
            "ttft p90 ms",
            "total p50 ms",
            "total p90 ms",
            "total p99 ms",
            "prompt tokens",
            "completion tokens",
            "connector tokens",
            "tools / answer",
            "cost USD",
        ],
        rows: report
            .configs
            .iter()
            .map(|c| {
                let s = &c.summary;
                vec![
                    c.name.clone(),
                    ms(s.ttft_ms.as_ref().map(|p| p.p50)),
                    ms(s.ttft_ms.as_ref().map(|p| p.p90)),
                    ms(s.total_ms.as_ref().map(|p| p.p50)),
                    ms(s.total_ms.as_ref().map(|p| p.p90)),
                    ms(s.total_ms.as_ref().map(|p| p.p99)),
                    s.prompt_tokens.to_string(),
                    s.completion_tokens.to_string(),
                    s.connector_tokens.to_string(),
                    format!("{:.2}", s.tool_executions_per_answer),
                    s.cost_usd
                        .map_or_else(|| DASH.into(), |c| format!("{c:.4}")),
                ]
            })
            .collect(),
        numeric_from: 1,
        config_column: true,
    }
}

/// Every comparison with the baseline.
pub fn comparison_grid(report: &Report) -> Grid {
    Grid {
        header: vec![
            "config",
            "paired n",
            "accuracy delta",
            "95% CI (paired bootstrap)",
            "b: lost",
            "c: gained",
            "McNemar p",
            "Holm p",
            "ttft p50 delta ms",
            "total p50 delta ms",
            "total mean delta ms",
        ],
        rows: report
            .comparisons
            .iter()
            .map(|p| {
                vec![
                    p.candidate.clone(),
                    p.n_paired.to_string(),
                    pp(p.accuracy_delta),
                    pp_ci(p.accuracy_delta_ci),
                    p.b.to_string(),
                    p.c.to_string(),
                    p_value(p.mcnemar_p),
                    p_value(p.holm_p),
                    signed_ms(p.ttft_p50_delta_ms),
                    signed_ms(p.total_p50_delta_ms),
                    signed_ms(p.total_mean_delta_ms),
                ]
            })
            .collect(),
        numeric_from: 1,
        config_column: true,
    }
}

/// Which breakdown a grid shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// Per topic.
    Topic,
    /// Per answer type.
    AnswerType,
}

impl By {
    /// Both breakdowns, in the order reports show them.
    pub const ALL: [By; 2] = [By::Topic, By::AnswerType];

    /// The section title.
    pub fn title(self) -> &'static str {
        match self {
            By::Topic => "By topic",
            By::AnswerType => "By answer type",
        }
    }

    /// The key column's title.
    pub fn column(self) -> &'static str {
        match self {
            By::Topic => "topic",
            By::AnswerType => "answer type",
        }
    }

    /// A configuration's groups.
    pub fn of(self, c: &ConfigReport) -> &[(String, Summary)] {
        match self {
            By::Topic => &c.by_topic,
            By::AnswerType => &c.by_answer_type,
        }
    }
}

/// One breakdown over every configuration (rows grouped by configuration).
pub fn breakdown_grid(report: &Report, by: By) -> Grid {
    let mut rows = Vec::new();
    for c in &report.configs {
        for (key, s) in by.of(c) {
            rows.push(vec![
                c.name.clone(),
                key.clone(),
                s.n.to_string(),
                s.correct.to_string(),
                s.incorrect.to_string(),
                s.not_attempted.to_string(),
                (s.errors + s.judge_errors + s.unparseable).to_string(),
                pct_ci(s.accuracy, s.accuracy_ci),
                pct(s.accuracy_given_attempted),
                pct(s.f_score),
            ]);
        }
    }
    Grid {
        header: vec![
            "config",
            by.column(),
            "n",
            "correct",
            "incorrect",
            "not attempted",
            "errors + judge errors + unparseable",
            "accuracy [95% CI]",
            "accuracy given attempted",
            "F",
        ],
        rows,
        numeric_from: 2,
        config_column: true,
    }
}

/// How to read the comparison table.
pub const COMPARISON_NOTE: &str = "accuracy delta = candidate - baseline on items graded in both; \
     b = correct only in the baseline, c = correct only in the candidate; \
     McNemar exact two-sided p, Holm-adjusted across all comparisons.";

// ---------------------------------------------------------------------------------------------
// Table (terminal).

fn comfy(grid: &Grid) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header(grid.header.clone());
    for row in &grid.rows {
        t.add_row(row.clone());
    }
    for (i, col) in t.column_iter_mut().enumerate() {
        if i >= grid.numeric_from {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn render_table(report: &Report) -> String {
    let mut out = String::new();
    let banners: Vec<String> = report
        .labels()
        .into_iter()
        .map(|l| format!("!! {}", banner_text(l)))
        .collect();
    for b in &banners {
        let _ = writeln!(out, "{b}");
    }
    if !banners.is_empty() {
        out.push('\n');
    }
    let facts: Vec<String> = run_facts(report)
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(out, "{}\n", facts.join(" | "));
    for c in &report.configs {
        let name = display_name(report, &c.name);
        if c.description.is_empty() {
            let _ = writeln!(out, "  {name}");
        } else {
            let _ = writeln!(out, "  {name}: {}", c.description);
        }
    }
    let _ = writeln!(out, "\nScores\n{}", comfy(&quality_grid(report)));
    let _ = writeln!(
        out,
        "\nLatency, usage and cost\n{}",
        comfy(&cost_grid(report))
    );
    if !report.comparisons.is_empty() {
        let _ = writeln!(
            out,
            "\nCompared with baseline {}\n{}\n{COMPARISON_NOTE}",
            report.baseline,
            comfy(&comparison_grid(report))
        );
    }
    if !report.versus_recorded.is_empty() {
        let _ = writeln!(
            out,
            "\nAgainst the recorded answers\n{}\n{RECORDED_NOTE}",
            comfy(&versus_recorded_grid(report))
        );
        let _ = writeln!(out, "\nRegressions ({})", report.regressions.len());
        if !report.regressions.is_empty() {
            let _ = writeln!(out, "{}", comfy(&regressions_grid(report)));
        }
    }
    for by in By::ALL {
        let grid = breakdown_grid(report, by);
        if !grid.rows.is_empty() {
            let _ = writeln!(out, "\n{}\n{}", by.title(), comfy(&grid));
        }
    }
    // Repeated at the end: the top of a long report scrolls out of view.
    if !banners.is_empty() {
        out.push('\n');
        for b in &banners {
            let _ = writeln!(out, "{b}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON.

fn render_json(report: &Report) -> String {
    let value = match serde_json::to_value(report) {
        Ok(serde_json::Value::Object(map)) => {
            let mut out = serde_json::Map::new();
            out.insert("labels".into(), serde_json::json!(report.labels()));
            out.extend(map);
            serde_json::Value::Object(out)
        }
        Ok(other) => other,
        Err(e) => serde_json::json!({ "labels": report.labels(), "error": e.to_string() }),
    };
    let mut text = serde_json::to_string_pretty(&value)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------------------------
// Markdown.

/// Escapes text for a Markdown table cell or line: Markdown punctuation is backslash-escaped
/// and line breaks become spaces.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' => {
                out.push('\\');
                out.push(ch);
            }
            '\r' | '\n' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

fn md_table(out: &mut String, grid: &Grid) {
    let header: Vec<String> = grid.header.iter().map(|h| md(h)).collect();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..grid.header.len())
        .map(|i| {
            if i >= grid.numeric_from {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for row in &grid.rows {
        let cells: Vec<String> = row.iter().map(|c| md(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    for label in report.labels() {
        let _ = writeln!(out, "> **⚠ {}**\n", md(&banner_text(label)));
    }
    let _ = writeln!(out, "# Eval run {}\n", md(&report.run.run_id));
    for (k, v) in run_facts(report) {
        let _ = writeln!(out, "- **{k}**: {}", md(&v));
    }
    out.push('\n');
    for c in &report.configs {
        let name = md(&display_name(report, &c.name));
        if c.description.is_empty() {
            let _ = writeln!(out, "- **{name}**");
        } else {
            let _ = writeln!(out, "- **{name}**: {}", md(&c.description));
        }
    }
    out.push_str("\n## Scores\n\n");
    md_table(&mut out, &quality_grid(report));
    out.push_str("\n## Latency, usage and cost\n\n");
    md_table(&mut out, &cost_grid(report));
    if !report.comparisons.is_empty() {
        let _ = writeln!(
            out,
            "\n## Compared with baseline {}\n",
            md(&report.baseline)
        );
        md_table(&mut out, &comparison_grid(report));
        let _ = writeln!(out, "\n{}", md(COMPARISON_NOTE));
    }
    if !report.versus_recorded.is_empty() {
        out.push_str("\n## Against the recorded answers\n\n");
        md_table(&mut out, &versus_recorded_grid(report));
        let _ = writeln!(out, "\n{}", md(RECORDED_NOTE));
        let _ = writeln!(out, "\n## Regressions ({})\n", report.regressions.len());
        if !report.regressions.is_empty() {
            md_table(&mut out, &regressions_grid(report));
        }
    }
    for by in By::ALL {
        let grid = breakdown_grid(report, by);
        if !grid.rows.is_empty() {
            let _ = writeln!(out, "\n## {}\n", by.title());
            md_table(&mut out, &grid);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Cutoffs.

/// Metrics a cutoff can name. Proportions are fractions (0.7, not 70). The last five compare a
/// configuration with the baseline and exist only for non-baseline configurations.
pub const CUTOFF_METRICS: &[&str] = &[
    "n",
    "correct",
    "incorrect",
    "not_attempted",
    "errors",
    "judge_errors",
    "unparseable",
    "graded",
    "error_rate",
    "accuracy",
    "accuracy_ci_lo",
    "accuracy_ci_hi",
    "accuracy_given_attempted",
    "f_score",
    "f_score_ci_lo",
    "f_score_ci_hi",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "ttft_mean_ms",
    "total_p50_ms",
    "total_p90_ms",
    "total_p99_ms",
    "total_mean_ms",
    "prompt_tokens",
    "completion_tokens",
    "connector_tokens",
    "tool_executions_per_answer",
    "cost_usd",
    "accuracy_delta",
    "accuracy_delta_ci_lo",
    "accuracy_delta_ci_hi",
    "mcnemar_p",
    "holm_p",
];

/// A metric's value: `Ok(None)` when it has no value for this configuration.
fn metric_value(report: &Report, c: &ConfigReport, metric: &str) -> Result<Option<f64>, String> {
    let s = &c.summary;
    let count = |x: usize| Ok(Some(x as f64));
    let pct = |p: &Option<metrics::Percentiles>, f: fn(&metrics::Percentiles) -> f64| {
        Ok(p.as_ref().map(f))
    };
    let paired = |f: fn(&Paired) -> f64| match report.comparison(&c.name) {
        Some(p) => Ok(Some(f(p))),
        None => Err(format!(
            "{metric} compares with the baseline; {:?} is not compared (it is the baseline, or \
             the baseline is missing)",
            c.name
        )),
    };
    match metric {
        "n" => count(s.n),
        "correct" => count(s.correct),
        "incorrect" => count(s.incorrect),
        "not_attempted" => count(s.not_attempted),
        "errors" => count(s.errors),
        "judge_errors" => count(s.judge_errors),
        "unparseable" => count(s.unparseable),
        "graded" => count(s.graded),
        "error_rate" => Ok((s.n > 0).then(|| s.errors as f64 / s.n as f64)),
        "accuracy" => Ok(Some(s.accuracy)),
        "accuracy_ci_lo" => Ok(Some(s.accuracy_ci.lo)),
        "accuracy_ci_hi" => Ok(Some(s.accuracy_ci.hi)),
        "accuracy_given_attempted" => Ok(Some(s.accuracy_given_attempted)),
        "f_score" => Ok(Some(s.f_score)),
        "f_score_ci_lo" => Ok(Some(s.f_score_ci.lo)),
        "f_score_ci_hi" => Ok(Some(s.f_score_ci.hi)),
        "ttft_p50_ms" => pct(&s.ttft_ms, |p| p.p50),
        "ttft_p90_ms" => pct(&s.ttft_ms, |p| p.p90),
        "ttft_p99_ms" => pct(&s.ttft_ms, |p| p.p99),
        "ttft_mean_ms" => pct(&s.ttft_ms, |p| p.mean),
        "total_p50_ms" => pct(&s.total_ms, |p| p.p50),
        "total_p90_ms" => pct(&s.total_ms, |p| p.p90),
        "total_p99_ms" => pct(&s.total_ms, |p| p.p99),
        "total_mean_ms" => pct(&s.total_ms, |p| p.mean),
        "prompt_tokens" => Ok(Some(s.prompt_tokens as f64)),
        "completion_tokens" => Ok(Some(s.completion_tokens as f64)),
        "connector_tokens" => Ok(Some(s.connector_tokens as f64)),
        "tool_executions_per_answer" => Ok(Some(s.tool_executions_per_answer)),
        "cost_usd" => Ok(s.cost_usd),
        "accuracy_delta" => paired(|p| p.accuracy_delta),
        "accuracy_delta_ci_lo" => paired(|p| p.accuracy_delta_ci.lo),
        "accuracy_delta_ci_hi" => paired(|p| p.accuracy_delta_ci.hi),
        "mcnemar_p" => paired(|p| p.mcnemar_p),
        "holm_p" => paired(|p| p.holm_p),
        _ => Err(format!(
            "unknown metric {metric:?}; known: {}",
            CUTOFF_METRICS.join(", ")
        )),
    }
}

/// Evaluates a cutoff `CONFIG.METRIC OP NUMBER`, for example `websearch.accuracy>=0.7` or
/// `"base.ttft_p50_ms < 800"`. Whitespace around the parts is allowed; the configuration name is
/// everything before the last `.` of the left side (so names may contain dots). Operators: `>=`,
/// `>`, `<=`, `<`, `==`, `!=` (exact float comparison). Metrics: [`CUTOFF_METRICS`].
///
/// `Err(text)` for a malformed expression, an unknown configuration or metric, a number that is
/// not finite, or a metric without a value (for example `ttft_p50_ms` of a non-streamed run).
pub fn check_cutoff(report: &Report, expr: &str) -> Result<bool, String> {
    let bad = |why: &str| format!("bad cutoff {expr:?}: {why} (expected CONFIG.METRIC>=NUMBER)");
    let at = expr
        .find(['<', '>', '=', '!'])
        .ok_or_else(|| bad("no comparison operator"))?;
    let (lhs, rest) = expr.split_at(at);
    let op = [">=", "<=", "==", "!=", ">", "<"]
        .into_iter()
        .find(|op| rest.starts_with(op))
        .ok_or_else(|| bad("unknown operator (use >=, >, <=, <, == or !=)"))?;
    let rhs = rest[op.len()..].trim();
    let threshold: f64 = rhs
        .parse()
        .map_err(|_| bad(&format!("{rhs:?} is not a number")))?;
    if !threshold.is_finite() {
        return Err(bad("the number must be finite"));
    }
    let (config, metric) = lhs
        .trim()
        .rsplit_once('.')
        .ok_or_else(|| bad("no CONFIG. before the metric"))?;
    let (config, metric) = (config.trim(), metric.trim());
    if config.is_empty() || metric.is_empty() {
        return Err(bad("empty configuration or metric name"));
    }
    let c = report.config(config).ok_or_else(|| {
        let known: Vec<&str> = report.configs.iter().map(|c| c.name.as_str()).collect();
        format!(
            "cutoff {expr:?}: unknown configuration {config:?}; known: {}",
            known.join(", ")
        )
    })?;
    let value = metric_value(report, c, metric)
        .map_err(|e| format!("cutoff {expr:?}: {e}"))?
        .ok_or_else(|| format!("cutoff {expr:?}: {config}.{metric} has no value in this run"))?;
    Ok(match op {
        ">=" => value >= threshold,
        "<=" => value <= threshold,
        ">" => value > threshold,
        "<" => value < threshold,
        "==" => value == threshold,
        _ => value != threshold,
    })
}
