//! The eval report as one self-contained HTML page: what `agentcap eval run --out report.html` (and
//! `eval show`, `eval resume`, `demo`) write. The numbers and tables are evalkit's ([`Report`] and its
//! grids); the charts are [`crate::svg`]'s, the same functions the UI's run page draws with.
//!
//! Architecture Invariant: the page needs nothing but itself — inline CSS, inline SVG, no script, no
//! external asset — and every recorded or configured string (config names, topics, item ids, links)
//! reaches it through maud's escaping.

use agentcap_evalkit::report::{
    By, COMPARISON_NOTE, ConfigReport, Grid, RECORDED_NOTE, Report, SIMULATED_LABEL, banner_text,
    breakdown_grid, comparison_grid, conversation_link, cost_grid, display_name, quality_grid,
    run_facts, versus_recorded_grid,
};
use maud::{DOCTYPE, Markup, html};

use crate::svg::{
    AccuracyBar, ScatterPoint, cdf_chart, interval_chart, labelled_bars, scatter_chart,
};

/// Rows of the per-topic chart at most (the table lists them all).
const TOPIC_CHART_ROWS: usize = 60;

/// The page's stylesheet (no `<`, `>`, `&` or quotes, so escaping leaves it as it is).
const CSS: &str = "\
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1b1f24;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem}
.banner{padding:.8rem 1rem;margin:0 0 1rem;border-radius:6px;font-weight:600;border:2px solid}
.banner.simulated{background:#fff4ce;border-color:#d4a017}
.banner.partial{background:#fde2e1;border-color:#c62828}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
ul.ids{columns:3;font-family:ui-monospace,monospace;font-size:.85rem}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3rem 1rem;font-size:.85rem}
svg.chart{max-width:100%;height:auto}
.note{color:#57606a;font-size:.85rem}
";

/// The report as a page; item ids are not linked.
pub fn html(report: &Report) -> String {
    html_linked(report, &|_, _| None)
}

/// The report as a page, each item id listed in a configuration's section linked to
/// `item_link(config, item_id)` when that returns `Some(url)` (for example the recorded conversation of
/// that answer). The URL is attribute-escaped, not validated.
///
/// Every configuration has a section with id [`config_anchor`]; its lists of item ids have ids
/// [`item_list_anchor`] and each item entry has id [`item_anchor`], so other pages can link to them.
pub fn html_linked(report: &Report, item_link: &dyn Fn(&str, &str) -> Option<String>) -> String {
    let title = match report.labels().as_slice() {
        [] => format!("Eval run {}", report.run.run_id),
        labels => format!("Eval run {} ({})", report.run.run_id, labels.join(", ")),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                // Escaped like everything else: the stylesheet has no character HTML escaping changes.
                style { (CSS) }
            }
            body {
                (banners(report))
                h1 { "Eval run " code { (report.run.run_id) } }
                dl.facts {
                    @for (k, v) in run_facts(report) { dt { (k) } dd { (v) } }
                }
                h2 #scores { "Scores" }
                (grid_table(&quality_grid(report)))
                (charts(report))
                h2 #cost { "Latency, usage and cost" }
                (grid_table(&cost_grid(report)))
                h2 #comparisons { "Compared with baseline " (report.baseline) }
                @if report.comparisons.is_empty() {
                    p.note { "No comparison: a single configuration, or no baseline among them." }
                } @else {
                    (grid_table(&comparison_grid(report)))
                    p.note { (COMPARISON_NOTE) }
                }
                (recorded_section(report))
                @for by in By::ALL {
                    @let grid = breakdown_grid(report, by);
                    h2 id=(by_id(by)) { (by.title()) }
                    @if grid.rows.is_empty() {
                        p.note { "No items." }
                    } @else {
                        @if by == By::Topic { (topic_chart(report)) }
                        (grid_table(&grid))
                    }
                }
                h2 #configs { "Configurations" }
                @for c in &report.configs { (config_section(report, c, item_link)) }
                (banners(report))
            }
        }
    };
    let mut out = page.into_string();
    out.push('\n');
    out
}

/// The charts of a run, as the UI's run page shows them: accuracy and F-score with their 95% intervals,
/// accuracy against median total latency, the total-latency and time-to-first-token CDFs per
/// configuration, and cost per configuration when prices were given.
pub fn charts(report: &Report) -> Markup {
    let accuracy: Vec<AccuracyBar> = report
        .configs
        .iter()
        .map(|c| AccuracyBar {
            name: c.name.clone(),
            accuracy: c.summary.accuracy,
            lo: c.summary.accuracy_ci.lo,
            hi: c.summary.accuracy_ci.hi,
            n: c.summary.graded,
        })
        .collect();
    let f_score: Vec<AccuracyBar> = report
        .configs
        .iter()
        .map(|c| AccuracyBar {
            name: c.name.clone(),
            accuracy: c.summary.f_score,
            lo: c.summary.f_score_ci.lo,
            hi: c.summary.f_score_ci.hi,
            n: c.summary.graded,
        })
        .collect();
    let scatter: Vec<ScatterPoint> = report
        .configs
        .iter()
        .filter_map(|c| {
            let p50 = c.summary.total_ms.as_ref()?.p50;
            Some(ScatterPoint {
                name: c.name.clone(),
                x_ms: p50,
                y: c.summary.accuracy,
                lo: c.summary.accuracy_ci.lo,
                hi: c.summary.accuracy_ci.hi,
            })
        })
        .collect();
    let cdf = |pick: fn(&ConfigReport) -> &Vec<f64>| -> Vec<(String, Vec<f64>)> {
        report
            .configs
            .iter()
            .filter(|c| !pick(c).is_empty())
            .map(|c| (c.name.clone(), pick(c).clone()))
            .collect()
    };
    let total = cdf(|c| &c.total_ms_quantiles);
    let ttft = cdf(|c| &c.ttft_ms_quantiles);
    let cost: Vec<(String, f64)> = report
        .configs
        .iter()
        .filter_map(|c| Some((c.name.clone(), c.summary.cost_usd?)))
        .collect();
    html! {
        h2 #accuracy { "Accuracy (95% Wilson interval)" }
        (interval_chart(&accuracy, "accuracy", "accuracy with 95% intervals"))
        h2 #fscore { "F-score (95% bootstrap interval)" }
        (interval_chart(&f_score, "fscore", "F-score with 95% intervals"))
        @if !scatter.is_empty() {
            h2 #tradeoff { "Accuracy against median total latency" }
            (scatter_chart(&scatter, "median total latency", "accuracy"))
        }
        @if !total.is_empty() {
            h2 #latency { "Total latency, CDF per config" }
            (cdf_chart(&total))
        }
        @if !ttft.is_empty() {
            h2 #ttft { "Time to first token, CDF per config" }
            (cdf_chart(&ttft))
        }
        @if !cost.is_empty() {
            h2 #cost-chart { "Cost per config (USD)" }
            (labelled_bars(&cost, |v| format!("${v:.4}")))
        }
    }
}

/// Accuracy per (config, topic), on one chart while that stays readable (nothing when there are too many
/// rows or none).
pub fn topic_chart(report: &Report) -> Markup {
    let bars: Vec<AccuracyBar> = report
        .configs
        .iter()
        .flat_map(|c| {
            c.by_topic.iter().map(move |(topic, s)| AccuracyBar {
                name: format!("{} · {topic}", c.name),
                accuracy: s.accuracy,
                lo: s.accuracy_ci.lo,
                hi: s.accuracy_ci.hi,
                n: s.graded,
            })
        })
        .collect();
    html! {
        @if !bars.is_empty() && bars.len() <= TOPIC_CHART_ROWS {
            (interval_chart(&bars, "topics", "accuracy per topic with 95% intervals"))
        }
    }
}

fn by_id(by: By) -> &'static str {
    match by {
        By::Topic => "by-topic",
        By::AnswerType => "by-answer-type",
    }
}

fn banners(report: &Report) -> Markup {
    html! {
        @for label in report.labels() {
            div class={ "banner " (if label == SIMULATED_LABEL { "simulated" } else { "partial" }) } role="alert" {
                "⚠ " (banner_text(label))
            }
        }
    }
}

/// A recorded set's candidates against the recorded answers and the regression list, each
/// regression linking the recorded conversation and the candidate's (`/conversations/{id}`, the
/// UI's conversation pages: open them with `agentcap ui --db FILE`). Empty for other runs.
pub fn recorded_section(report: &Report) -> Markup {
    let link = |id: &Option<String>| {
        html! {
            @match id {
                Some(id) => a.conversation href=(conversation_link(&crate::web::enc(id))) { (id) },
                None => "-",
            }
        }
    };
    html! {
        @if !report.versus_recorded.is_empty() {
            h2 #recorded { "Against the recorded answers" }
            (grid_table(&versus_recorded_grid(report)))
            p.note { (RECORDED_NOTE) }
            h2 #regressions { "Regressions (" (report.regressions.len()) ")" }
            @if report.regressions.is_empty() {
                p.note { "No candidate lost an item." }
            } @else {
                table.regressions {
                    thead { tr {
                        th { "Item" } th { "Config" } th { "Verdict" } th { "Question" }
                        th { "Recorded answer" } th { "Recorded conversation" }
                        th { "Candidate answer" } th { "Candidate conversation" }
                    } }
                    tbody { @for g in &report.regressions { tr {
                        td { (g.item_id) } td { (g.config) } td { (g.verdict) } td { (g.question) }
                        td { (g.recorded_answer) } td { (link(&g.recorded_conversation_id)) }
                        td { (g.candidate_answer.as_deref().unwrap_or("-")) }
                        td { (link(&g.candidate_conversation_id)) }
                    } } }
                }
            }
        }
    }
}

fn grid_table(grid: &Grid) -> Markup {
    html! {
        table {
            thead { tr { @for h in &grid.header { th { (h) } } } }
            tbody {
                @for row in &grid.rows {
                    tr {
                        @for (i, cell) in row.iter().enumerate() {
                            @if i == 0 && grid.config_column {
                                td { a href={ "#" (config_anchor(cell)) } { (cell) } }
                            } @else if i >= grid.numeric_from {
                                td.num { (cell) }
                            } @else {
                                td { (cell) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn config_section(
    report: &Report,
    c: &ConfigReport,
    item_link: &dyn Fn(&str, &str) -> Option<String>,
) -> Markup {
    let s = &c.summary;
    let paired = report.comparison(&c.name);
    html! {
        section id=(config_anchor(&c.name)) {
            h3 { (display_name(report, &c.name)) }
            @if !c.description.is_empty() { p { (c.description) } }
            p {
                (s.n) " items: " (s.correct) " correct, " (s.incorrect) " incorrect, " (s.not_attempted)
                " not attempted, " (s.errors) " errors, " (s.judge_errors) " judge errors, " (s.unparseable)
                " unparseable."
            }
            @if let Some(p) = paired {
                @for (list, title, ids) in [
                    ("became_correct", "Became correct (c: wrong in the baseline, correct here)", &p.became_correct),
                    ("became_incorrect", "Became incorrect (b: correct in the baseline, not here)", &p.became_incorrect),
                ] {
                    h4 { (title) " — " (ids.len()) }
                    ul.ids id=(item_list_anchor(&c.name, list)) {
                        @for id in ids {
                            li id=(item_anchor(&c.name, id)) {
                                @match item_link(&c.name, id) {
                                    Some(url) => a href=(url) { (id) },
                                    None => (id),
                                }
                            }
                        }
                    }
                }
            } @else if c.name == report.baseline {
                p.note { "Baseline: the other configurations are compared with it." }
            }
        }
    }
}

/// Encodes any string into a fragment of an HTML id that is also safe in a URL fragment: ASCII letters,
/// digits and `_` stay, every other character becomes `.` plus its code point in hex plus `.`. The
/// encoding is injective and never produces `-`, so ids joined with `-` do not collide.
fn id_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            out.push(ch);
        } else {
            out.push('.');
            out.push_str(&format!("{:x}", u32::from(ch)));
            out.push('.');
        }
    }
    out
}

/// The HTML id of a configuration's section in the page (link with `#` + id).
pub fn config_anchor(config: &str) -> String {
    format!("config-{}", id_part(config))
}

/// The HTML id of the list of item ids of one kind (`became_correct` or `became_incorrect`, as in
/// evalkit's `Paired`) in a configuration's section.
pub fn item_list_anchor(config: &str, list: &str) -> String {
    format!("items-{}-{}", id_part(config), id_part(list))
}

/// The HTML id of one item's entry in a configuration's section.
pub fn item_anchor(config: &str, item_id: &str) -> String {
    format!("item-{}-{}", id_part(config), id_part(item_id))
}
