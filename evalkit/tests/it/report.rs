//! Reports: building, the text formats (labels, escaping), and cutoff expressions. The HTML page is the
//! `ui` crate's and tested there. Key substrings are asserted rather than whole snapshots, so layout can
//! change freely.

use agentcap_evalkit::grade::Grade::{Correct, Incorrect, NotAttempted};
use agentcap_evalkit::metrics::{ItemResult, Outcome};
use agentcap_evalkit::report::{
    Format, LATENCY_QUANTILES, PARTIAL_LABEL, Report, RunInfo, SIMULATED_LABEL, check_cutoff,
    render,
};

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
        prompt_tokens: 10,
        completion_tokens: 2,
        ..ItemResult::default()
    }
}

/// Three configs: the baseline `base`, `web.search` (a dot in its name) and a hostile name.
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

const ALL: [Format; 3] = [Format::Table, Format::Json, Format::Markdown];

#[test]
fn build_compares_every_candidate_with_the_baseline() {
    let r = report(true, true);
    assert_eq!(r.configs.len(), 3);
    assert_eq!(r.comparisons.len(), 2);
    let web = r.comparison("web.search").expect("compared");
    assert_eq!(web.baseline, "base");
    // Paired: i1 i2 i<3> (i4 is an error for web.search). i2, i<3> became correct.
    assert_eq!((web.n_paired, web.b, web.c), (3, 0, 2));
    assert_eq!(web.became_correct, ["i2", ID3]);
    // McNemar (0, 2) = 0.5. The hostile config pairs i1 (lost: b = 1), i2 and i4 (both correct);
    // i<3> is unparseable there. McNemar (1, 0) = 1.
    // Holm over [0.5, 1.0]: [1.0, 1.0].
    assert_eq!(web.mcnemar_p, 0.5);
    assert_eq!(web.holm_p, 1.0);
    let odd = r.comparison(HOSTILE).expect("compared");
    assert_eq!((odd.b, odd.c, odd.n_paired), (1, 0, 3));
    assert_eq!(odd.became_incorrect, ["i1"]);
    assert_eq!(odd.holm_p, 1.0);
    let base = r.config("base").expect("present");
    assert_eq!(base.summary.correct, 2);
    let topics: Vec<&str> = base.by_topic.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(topics, ["Art", HOSTILE_TOPIC]);

    // No config named like the baseline: no comparisons.
    let lone = Report::build(
        run(false, true),
        "missing",
        vec![("a".into(), String::new(), vec![])],
        1,
    );
    assert!(lone.comparisons.is_empty());
    assert!(lone.configs[0].total_ms_quantiles.is_empty());

    // Latency quantiles for the CDFs: 0%, 1%, …, 100% of the items' totals.
    let web = r.config("web.search").expect("present");
    assert_eq!(web.total_ms_quantiles.len(), LATENCY_QUANTILES);
    assert!(web.total_ms_quantiles.iter().all(|&q| q == 1400.0));
    assert!(web.ttft_ms_quantiles.is_empty(), "no item streamed");
}

#[test]
fn every_format_labels_a_simulated_partial_run() {
    let r = report(true, false);
    for format in ALL {
        let out = render(&r, format);
        assert!(
            out.contains(SIMULATED_LABEL),
            "{format:?} lacks the simulated label:\n{out}"
        );
        assert!(
            out.contains(PARTIAL_LABEL),
            "{format:?} lacks the partial label:\n{out}"
        );
    }
    assert_eq!(SIMULATED_LABEL, "simulated upstream");
    assert_eq!(PARTIAL_LABEL, "PARTIAL RUN");
    // Prominent: in the first lines of the text formats, before any table.
    for format in [Format::Table, Format::Markdown] {
        let out = render(&r, format);
        let head: String = out.lines().take(4).collect::<Vec<_>>().join("\n");
        assert!(
            head.contains(SIMULATED_LABEL) && head.contains(PARTIAL_LABEL),
            "{format:?}: {head}"
        );
    }
}

#[test]
fn a_real_complete_run_carries_no_label() {
    let r = report(false, true);
    for format in ALL {
        let out = render(&r, format);
        assert!(!out.contains(SIMULATED_LABEL), "{format:?}");
        assert!(!out.contains(PARTIAL_LABEL), "{format:?}");
    }
    // Each label alone.
    let sim = render(&report(true, true), Format::Markdown);
    assert!(sim.contains(SIMULATED_LABEL) && !sim.contains(PARTIAL_LABEL));
    let partial = render(&report(false, false), Format::Table);
    assert!(partial.contains(PARTIAL_LABEL) && !partial.contains(SIMULATED_LABEL));
}

#[test]
fn json_is_the_report_with_labels() {
    let r = report(true, false);
    let out = render(&r, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(
        v["labels"],
        serde_json::json!([SIMULATED_LABEL, PARTIAL_LABEL])
    );
    assert_eq!(v["run"]["simulated_upstream"], true);
    assert_eq!(v["run"]["complete"], false);
    assert_eq!(v["baseline"], "base");
    assert_eq!(v["configs"][1]["name"], "web.search");
    assert_eq!(v["configs"][0]["summary"]["correct"], 2);
    assert_eq!(v["comparisons"][0]["candidate"], "web.search");
    assert_eq!(
        v["comparisons"][0]["became_correct"],
        serde_json::json!(["i2", ID3])
    );
    // Everything else is exactly the serde form of the report (both parsed the same way, so
    // float parsing cannot differ).
    let mut without = v.clone();
    without.as_object_mut().expect("object").remove("labels");
    let plain: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&r).expect("serialises")).expect("parses");
    assert_eq!(without, plain);
    // And it reads back into a Report.
    let back: Report = serde_json::from_value(without).expect("deserialises");
    assert_eq!(back.configs[2].name, HOSTILE);

    let clean = render(&report(false, true), Format::Json);
    let v: serde_json::Value = serde_json::from_str(&clean).expect("valid JSON");
    assert_eq!(v["labels"], serde_json::json!([]));
}

#[test]
fn table_shows_scores_comparisons_and_breakdowns() {
    let out = render(&report(false, true), Format::Table);
    for needle in [
        "run: run-1",
        "base (baseline)",
        "web.search",
        "accuracy [95% CI]",
        // base: 2 correct of 4 graded.
        "50.0% [",
        "McNemar p",
        "Holm p",
        "0.5000",
        "+66.7 pp",
        "By topic",
        "By answer type",
        HOSTILE_TOPIC,
        HOSTILE,
    ] {
        assert!(out.contains(needle), "table lacks {needle:?}:\n{out}");
    }
}

#[test]
fn markdown_tables_escape_user_text() {
    let out = render(&report(true, true), Format::Markdown);
    assert!(out.starts_with("> **⚠ simulated upstream"), "{out}");
    assert!(out.contains("| config | n | correct |"));
    assert!(out.contains("## Compared with baseline base"));
    assert!(out.contains("## By topic") && out.contains("## By answer type"));
    // A pipe or angle bracket in a name cannot break the table or inject HTML.
    assert!(!out.contains("<script>"));
    assert!(out.contains(r"\<script\>"));
    assert!(out.contains(r"R\&D \<b\>"));
    let pipes = render(
        &Report::build(
            run(false, true),
            "a|b",
            vec![("a|b".into(), "x\ny".into(), vec![])],
            1,
        ),
        Format::Markdown,
    );
    assert!(pipes.contains(r"a\|b") && !pipes.contains("x\ny"));
}

#[test]
fn cutoffs_that_parse() {
    let r = report(false, true);
    let cases: &[(&str, bool)] = &[
        ("base.accuracy>=0.5", true),
        ("base.accuracy>0.5", false),
        ("base.accuracy == 0.5", true),
        ("base.accuracy != 0.5", false),
        ("  base . accuracy  <=  0.5 ", true),
        ("base.accuracy<0.7", true),
        // A dot in the config name: the metric is after the last dot.
        ("web.search.accuracy>=1", true),
        ("web.search.errors==1", true),
        ("web.search.accuracy_delta>0", true),
        ("web.search.holm_p<0.05", false),
        ("web.search.mcnemar_p<=0.5", true),
        ("base.total_p50_ms<=1000", true),
        ("web.search.total_p50_ms<1000", false),
        ("base.f_score>=0.5", true),
        ("base.n==4", true),
        ("base.error_rate<0.01", true),
        ("base.accuracy>=7e-1", false),
    ];
    for (expr, want) in cases {
        assert_eq!(check_cutoff(&r, expr), Ok(*want), "{expr}");
    }
}

#[test]
fn cutoffs_that_do_not() {
    let r = report(false, true);
    let cases: &[(&str, &str)] = &[
        ("", "no comparison operator"),
        ("base.accuracy", "no comparison operator"),
        ("base.accuracy=0.5", "unknown operator"),
        ("base.accuracy=>0.5", "unknown operator"),
        ("base.accuracy>=", "is not a number"),
        ("base.accuracy>=abc", "is not a number"),
        ("base.accuracy>=0.5x", "is not a number"),
        ("base.accuracy>=NaN", "finite"),
        ("base.accuracy>=inf", "finite"),
        ("accuracy>=0.5", "no CONFIG."),
        (".accuracy>=0.5", "empty"),
        ("base.>=0.5", "empty"),
        ("nosuch.accuracy>=0.5", "unknown configuration"),
        ("base.nosuch>=0.5", "unknown metric"),
        // The baseline is not compared with itself.
        ("base.accuracy_delta>0", "compares with the baseline"),
        // Not streamed: no time to first token.
        ("base.ttft_p50_ms<100", "has no value"),
        ("base.cost_usd<1", "has no value"),
    ];
    for (expr, why) in cases {
        match check_cutoff(&r, expr) {
            Err(e) => assert!(e.contains(why), "{expr:?}: {e:?} should mention {why:?}"),
            Ok(v) => panic!("{expr:?} evaluated to {v}, expected an error about {why:?}"),
        }
    }
}
