//! The static HTML report (`agentcap eval run --out report.html`): self-contained, escaped, labelled, with
//! the run page's charts, and anchors other pages can link to.

use agentcap_evalkit::grade::Grade::{Correct, Incorrect, NotAttempted};
use agentcap_evalkit::metrics::{ItemResult, Outcome};
use agentcap_evalkit::report::{PARTIAL_LABEL, Report, RunInfo, SIMULATED_LABEL};
use agentcap_ui::report::{config_anchor, html, html_linked, item_anchor, item_list_anchor};

const HOSTILE: &str = "<script>alert(\"x\")</script>&co";
const HOSTILE_TOPIC: &str = "R&D <b>";
/// An item id that needs escaping.
const ID3: &str = "i<3>";

fn run(simulated: bool, complete: bool) -> RunInfo {
    RunInfo {
        run_id: "run-1".into(),
        dataset: "mini-qa".into(),
        grader: "judge".into(),
        judge: Some("judge-model".into()),
        started_at: "2025-01-01T00:00:00Z".into(),
        finished_at: complete.then(|| "2025-01-01T00:01:00Z".into()),
        seed: 0,
        limit: Some(10),
        simulated_upstream: simulated,
        upstream: "twin".into(),
        complete,
    }
}

fn it(id: &str, outcome: Outcome, topic: &str, total: f64) -> ItemResult {
    ItemResult {
        item_id: id.into(),
        outcome,
        topic: Some(topic.into()),
        answer_type: Some("Person".into()),
        total_ms: Some(total),
        ttft_ms: Some(total / 4.0),
        prompt_tokens: 10,
        completion_tokens: 2,
        cost_usd: Some(0.001),
        ..ItemResult::default()
    }
}

/// Three configs: the baseline `base`, `web.search` (a dot in its name) and a hostile name; one answer
/// of the baseline is hostile markup as an item id would carry it.
fn report(simulated: bool, complete: bool) -> Report {
    let g = Outcome::Graded;
    let base = vec![
        it("i1", g(Correct), "Art", 1000.0),
        it("i2", g(Incorrect), "Art", 1000.0),
        it(ID3, g(NotAttempted), HOSTILE_TOPIC, 1000.0),
        it("i4", g(Correct), HOSTILE_TOPIC, 1000.0),
    ];
    let web = vec![
        it("i1", g(Correct), "Art", 1400.0),
        it("i2", g(Correct), "Art", 1400.0),
        it(ID3, g(Correct), HOSTILE_TOPIC, 1400.0),
        it("i4", Outcome::Error, HOSTILE_TOPIC, 1400.0),
    ];
    let odd = vec![
        it("i1", g(Incorrect), "Art", 900.0),
        it("i2", g(Incorrect), "Art", 900.0),
        it(ID3, Outcome::Unparseable, HOSTILE_TOPIC, 900.0),
        it("i4", g(Correct), HOSTILE_TOPIC, 900.0),
    ];
    Report::build(
        run(simulated, complete),
        "base",
        vec![
            ("base".into(), "model only".into(), base),
            ("web.search".into(), "with web search".into(), web),
            (HOSTILE.into(), "hostile & <odd>".into(), odd),
        ],
        3,
    )
}

#[test]
fn html_is_self_contained_and_escaped() {
    let r = report(true, false);
    let page = html(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
    assert!(page.contains("<style>"));
    // No external assets, no scripts, no event handlers (the SVG namespace is a name, not a fetch).
    let bare = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for banned in [
        "<script", "<link", "src=", "@import", "url(", "http://", "https://",
    ] {
        assert!(!bare.contains(banned), "the page contains {banned:?}");
    }
    // Inside every tag (attribute values are quoted, quotes in them escaped): no event handler.
    for (i, _) in bare.match_indices('<') {
        let inside = &bare[i + 1..i + 1 + bare[i..].find('>').expect("every tag closes") - 1];
        let unquoted: String = inside.split('"').step_by(2).collect();
        for (j, _) in unquoted.match_indices(" on") {
            let name: String = unquoted[j + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            assert!(
                !unquoted[j + 3 + name.len()..].starts_with('='),
                "an event handler: on{name}"
            );
        }
    }
    // User strings are escaped.
    assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;co"));
    assert!(page.contains("R&amp;D &lt;b&gt;"));
    assert!(page.contains("hostile &amp; &lt;odd&gt;"));
    // Per-config scores, the comparison with its delta CI and p-values, both breakdowns.
    for needle in [
        "<h2 id=\"scores\">",
        "<h2 id=\"comparisons\">Compared with baseline base</h2>",
        "95% CI (paired bootstrap)",
        "McNemar p",
        "Holm p",
        "+66.7 pp",
        "<h2 id=\"by-topic\">",
        "<h2 id=\"by-answer-type\">",
    ] {
        assert!(page.contains(needle), "the page lacks {needle:?}");
    }
    // Every config has an anchored section, linked from the tables.
    for c in &r.configs {
        let anchor = config_anchor(&c.name);
        assert!(
            page.contains(&format!("<section id=\"{anchor}\">")),
            "{anchor}"
        );
        assert!(page.contains(&format!("href=\"#{anchor}\"")), "{anchor}");
    }
    // Candidates list their flipped items under stable ids.
    let list = item_list_anchor("web.search", "became_correct");
    assert!(page.contains(&format!("<ul class=\"ids\" id=\"{list}\">")));
    let li =
        |id: &str, text: &str| format!("<li id=\"{}\">{text}</li>", item_anchor("web.search", id));
    assert!(page.contains(&li("i2", "i2")));
    assert!(page.contains(&li(ID3, "i&lt;3&gt;")), "{page}");
    assert!(!page.contains(ID3));
}

#[test]
fn html_draws_the_run_pages_charts() {
    let page = html(&report(false, true));
    for (id, class) in [
        ("accuracy", "chart accuracy"),
        ("fscore", "chart fscore"),
        ("tradeoff", "chart scatter"),
        ("latency", "chart cdf"),
        ("ttft", "chart cdf"),
        ("cost-chart", "chart hbars"),
    ] {
        assert!(page.contains(&format!("<h2 id=\"{id}\">")), "no {id} chart");
        assert!(page.contains(&format!("class=\"{class}\"")), "no {class}");
    }
    // One estimate per config on the accuracy, F and per-topic charts; one point per config on the
    // trade-off chart; one CDF line per config and measure.
    assert_eq!(page.matches("class=\"acc\"").count(), 3 + 3 + 6);
    assert_eq!(page.matches("class=\"point\"").count(), 3);
    assert_eq!(page.matches("class=\"cdfline\"").count(), 6);
    assert!(page.contains("class=\"chart topics\""));
    assert!(page.contains("$0.0040"), "cost of four items");
}

#[test]
fn every_label_is_on_the_page_before_any_table() {
    let page = html(&report(true, false));
    let body = page.find("<body>").expect("body");
    let first_table = page.find("<table>").expect("a table");
    let banner = page[body..].find(SIMULATED_LABEL).expect("banner") + body;
    assert!(banner < first_table);
    assert!(page[body..].find(PARTIAL_LABEL).expect("banner") + body < first_table);
    assert!(page.contains("<title>Eval run run-1 (simulated upstream, PARTIAL RUN)</title>"));
    let clean = html(&report(false, true));
    assert!(!clean.contains(SIMULATED_LABEL) && !clean.contains(PARTIAL_LABEL));
}

#[test]
fn anchors_are_safe_and_distinct() {
    let a = config_anchor(HOSTILE);
    assert!(
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "{a}"
    );
    assert_ne!(item_anchor("a-b", "c"), item_anchor("a", "b-c"));
    assert_ne!(config_anchor("a b"), config_anchor("a_b"));
    assert_ne!(config_anchor("web.search"), config_anchor("web-search"));
}

#[test]
fn html_links_items_when_asked() {
    let r = report(false, true);
    let page = html_linked(&r, &|config, item| {
        (config == "web.search").then(|| format!("/conversations?item={item}&config=\"{config}\""))
    });
    assert!(
        page.contains(
            "<a href=\"/conversations?item=i2&amp;config=&quot;web.search&quot;\">i2</a>"
        )
    );
    // A `javascript:` link is escaped as text in an attribute; the page has no script to run it.
    let hostile = html_linked(&r, &|_, _| {
        Some("javascript:alert(1)\"><script>x</script>".into())
    });
    assert!(!hostile.contains("<script>") && hostile.contains("&quot;&gt;&lt;script&gt;"));
    // Without links, plain ids.
    assert!(!html(&r).contains("/conversations"));
}

#[test]
fn a_recorded_sets_regressions_link_both_conversations_escaped() {
    use agentcap_evalkit::report::{Regression, VersusRecorded};
    let mut r = report(true, true);
    let web = r.configs[1].summary.clone();
    r.versus_recorded = vec![VersusRecorded::from_summary("web.search", "pairwise", &web)];
    r.regressions = vec![Regression {
        item_id: "conv_1:2".into(),
        config: "web.search".into(),
        question: HOSTILE.into(),
        recorded_answer: "Paris".into(),
        candidate_answer: Some(HOSTILE.into()),
        recorded_conversation_id: Some("conv_rec".into()),
        candidate_conversation_id: Some("conv\"><x".into()),
        verdict: "lost".into(),
    }];
    let page = html(&r);
    assert!(page.contains("Against the recorded answers"));
    assert!(page.contains("Regressions (1)"));
    assert!(page.contains("href=\"/conversations/conv_rec\""), "{page}");
    // A hostile id is percent-encoded in the link and escaped in the text.
    assert!(
        page.contains("href=\"/conversations/conv%22%3E%3Cx\""),
        "{page}"
    );
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("conv\"><x"));
    assert!(page.contains("sign test p"));
}
