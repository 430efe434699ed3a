//! `run` end to end: SimpleQA through two configs on the twin (acceptance 1), sync mode with the
//! exact grader, prompt templates and prices, an external proxy, and requests that must not be
//! retried.

use agentcap_datasets::sample::simple_evals_sample;
use agentcap_evalkit::grade::Grade;
use agentcap_evalkit::metrics::Outcome;
use agentcap_evalkit::report::{Format, render};
use agentcap_evalkit::{ConfigFile, EvalError, RunSpec, Stop, Target, run};

use crate::{count, open, simpleqa, twin, two_configs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simpleqa_500_closed_book_vs_web_search_is_graded_significant_and_linked() {
    let csv = simpleqa();
    let sim = twin(Some(csv.clone()), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("evals.duckdb");
    let text = two_configs("");
    let configs = ConfigFile::parse("t", &text).unwrap();
    let mut spec = RunSpec::new(csv.display().to_string(), configs, text, sim.url(), &db);
    spec.limit = Some(500);
    spec.concurrency = Some(32);
    spec.simulated_upstream = true;
    let out = run(spec, Stop::new()).await.expect("the run succeeds");
    sim.shutdown().await;

    assert!(out.complete);
    let r = &out.report.clone();
    assert_eq!(r.run.dataset, "simpleqa", "recognised by checksum");
    assert_eq!(r.run.grader, "simpleqa");
    assert!(r.run.simulated_upstream);
    assert_eq!(r.baseline, "closed");
    let closed = &r.configs[0].summary;
    let web = &r.configs[1].summary;
    for (s, p) in [(closed, 0.23), (web, 0.75)] {
        assert_eq!(s.n, 500);
        assert_eq!(s.errors, 0);
        assert_eq!(s.unparseable, 0, "the twin's judge answers a bare letter");
        assert_eq!(s.graded, 500);
        assert!(
            s.accuracy_ci.lo <= p && p <= s.accuracy_ci.hi,
            "accuracy {} CI [{}, {}] should contain {p}",
            s.accuracy,
            s.accuracy_ci.lo,
            s.accuracy_ci.hi
        );
        let ttft = s.ttft_ms.as_ref().expect("stream mode measures TTFT");
        let total = s.total_ms.as_ref().expect("total latency");
        assert_eq!((ttft.n, total.n), (500, 500));
        assert!(ttft.p50 <= total.p50);
        assert!(s.prompt_tokens > 0 && s.completion_tokens > 0);
    }
    assert_eq!(closed.tool_executions_per_answer, 0.0);
    assert_eq!(web.tool_executions_per_answer, 1.0);
    assert_eq!(closed.connector_tokens, 0);
    assert!(web.connector_tokens > 0);
    assert!(
        r.configs[0].by_topic.len() >= 5 && r.configs[0].by_answer_type.len() == 5,
        "breakdowns by topic and answer type"
    );
    let cmp = &r.comparisons[0];
    assert_eq!(
        (cmp.baseline.as_str(), cmp.candidate.as_str()),
        ("closed", "web")
    );
    assert_eq!(cmp.n_paired, 500);
    assert!(cmp.accuracy_delta > 0.3 && cmp.accuracy_delta_ci.lo > 0.0);
    assert!(cmp.mcnemar_p < 1e-6 && cmp.holm_p < 1e-6, "{cmp:?}");
    let table = render(r, Format::Table);
    assert!(table.contains("simulated upstream"), "{table}");
    drop(out);

    // The database: the sample is simple-evals' subset, every item links to its recorded
    // conversation and exchange, every judge call to its exchange.
    let c = open(&db);
    let run_id = r.run.run_id.as_str();
    let mut stmt = c
        .prepare(
            "SELECT item_id FROM eval_items WHERE run_id = ? AND config = 'web' ORDER BY position",
        )
        .unwrap();
    let ids: Vec<String> = stmt
        .query_map([run_id], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let want: Vec<String> = simple_evals_sample(4326, 500, 0)
        .into_iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(ids, want);
    let q = |sql: &str| count(&c, sql, run_id);
    assert_eq!(q("SELECT count(*) FROM eval_items WHERE run_id = ?"), 1000);
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_items i JOIN conversations c ON c.id = i.conversation_id WHERE i.run_id = ?"
        ),
        1000,
        "every item links to its recorded conversation"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_items i JOIN exchanges e ON e.id = i.exchange_id
           WHERE i.run_id = ? AND e.conversation_id = i.conversation_id
             AND e.operation = 'conversations.start_stream' AND e.session = i.run_id"
        ),
        1000,
        "and to the exchange that answered it"
    );
    assert_eq!(
        q("SELECT count(*) FROM eval_items i JOIN entries n ON n.conversation_id = i.conversation_id
           WHERE i.run_id = ? AND n.direction = 'input' AND n.text = i.prompt"),
        1000,
        "the recorded input is the prompt"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_grades g JOIN exchanges e ON e.id = g.judge_exchange_id
           WHERE g.run_id = ? AND e.operation = 'chat.completions'"
        ),
        1000
    );
    assert_eq!(
        q("SELECT count(*) FROM exchanges WHERE session = ? AND operation = 'agents.create'"),
        1,
        "the inline agent was created once, at run start"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_configs WHERE run_id = ? AND name = 'web' AND agent_id IS NOT NULL AND agent_version = '0'"
        ) + q(
            "SELECT count(*) FROM eval_configs WHERE run_id = ? AND name = 'web' AND agent_id IS NOT NULL AND agent_version = '1'"
        ),
        1,
        "with its id and version stored"
    );
    assert_eq!(
        q("SELECT count(*) FROM eval_attempts WHERE run_id = ? AND exchange_id IS NULL"),
        0
    );
    assert_eq!(
        q("SELECT count(*) FROM eval_grades WHERE run_id = ? AND judge_reply IN ('A', 'B', 'C')"),
        1000,
        "raw judge text is stored"
    );
    let correct_web = r.configs[1].summary.correct as i64;
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_grades WHERE run_id = ? AND config = 'web' AND outcome = 'correct'"
        ),
        correct_web
    );
    let status: String = c
        .query_row(
            "SELECT status FROM eval_runs WHERE run_id = ?",
            [run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_exact_grader_template_and_prices_on_the_built_in_set() {
    let dir = tempfile::tempdir().unwrap();
    let knowledge = dir.path().join("mini.jsonl");
    let items = agentcap_datasets::builtin_set("mini-qa").unwrap();
    let lines: Vec<String> = items
        .iter()
        .map(|it| {
            serde_json::json!({"id": it.id, "question": it.question, "answers": it.answers, "metadata": it.metadata})
                .to_string()
        })
        .collect();
    std::fs::write(&knowledge, lines.join("\n")).unwrap();
    let sim = twin(Some(knowledge), &[]).await;
    let text = r#"
baseline = "plain"
[[config]]
name = "templated"
model = "m-small"
mode = "sync"
prompt = "Answer with a few words only.\n\nQuestion: {question}"

[[config]]
name = "plain"
model = "m-small"
mode = "sync"

[prices.m-small]
prompt_per_mtok = 1000000.0
completion_per_mtok = 0.0
"#;
    let db = dir.path().join("e.duckdb");
    let mut spec = RunSpec::new(
        "mini-qa",
        ConfigFile::parse("t", text).unwrap(),
        text,
        sim.url(),
        &db,
    );
    spec.limit = Some(10);
    let out = run(spec, Stop::new()).await.unwrap();
    sim.shutdown().await;
    let r = &out.report;
    assert_eq!(r.run.grader, "exact");
    assert_eq!(r.baseline, "plain");
    assert_eq!(r.comparisons[0].candidate, "templated");
    for c in &r.configs {
        assert_eq!(c.summary.n, 10);
        assert!(c.summary.ttft_ms.is_none(), "no TTFT in sync mode");
        assert!(c.summary.total_ms.is_some());
        // One dollar per prompt token.
        assert_eq!(c.summary.cost_usd, Some(c.summary.prompt_tokens as f64));
        assert_eq!(
            c.summary.correct + c.summary.incorrect + c.summary.not_attempted,
            10
        );
    }
    drop(out);
    let c = open(&db);
    let run_id: String = c
        .query_row("SELECT run_id FROM eval_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM eval_items WHERE run_id = ? AND config = 'templated' AND starts_with(prompt, 'Answer with a few words only.') AND contains(prompt, question)",
            &run_id
        ),
        10
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM exchanges WHERE session = ? AND operation = 'conversations.start'",
            &run_id
        ),
        20
    );
    // Exact grading agrees with the stored answers and golds.
    let mut stmt = c
        .prepare(
            "SELECT i.answer, i.golds, g.outcome FROM eval_items i JOIN eval_grades g USING (run_id, config, item_id) WHERE run_id = ?",
        )
        .unwrap();
    let rows: Vec<(String, String, String)> = stmt
        .query_map([&run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 20);
    for (answer, golds, outcome) in rows {
        let golds: Vec<String> = serde_json::from_str(&golds).unwrap();
        assert_eq!(
            agentcap_evalkit::grade::exact_grade(&answer, &golds).as_str(),
            outcome
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_external_proxy_results_link_by_conversation_id() {
    let sim = twin(Some(simpleqa()), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy_db = dir.path().join("proxy.duckdb");
    let mut pcfg = agentcap_proxy::ProxyConfig::new(
        sim.url().parse().unwrap(),
        agentcap_proxy::recorder::RecorderConfig::new(&proxy_db),
    );
    pcfg.listen = "127.0.0.1:0".parse().unwrap();
    pcfg.admin_listen = None;
    let proxy = agentcap_proxy::start(pcfg).await.unwrap();
    let text = two_configs("");
    let eval_db = dir.path().join("evals.duckdb");
    let mut spec = RunSpec::new(
        "x",
        ConfigFile::parse("t", &text).unwrap(),
        text,
        "unused",
        &eval_db,
    );
    spec.dataset = simpleqa().display().to_string();
    spec.target = Target::Proxy {
        url: format!("http://{}", proxy.addr()),
    };
    spec.limit = Some(20);
    let out = run(spec, Stop::new()).await.unwrap();
    proxy.shutdown().await.unwrap();
    sim.shutdown().await;
    assert!(out.complete);
    let run_id = out.report.run.run_id.clone();
    drop(out);
    let c = open(&eval_db);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM eval_items WHERE run_id = ? AND conversation_id IS NOT NULL AND exchange_id IS NULL",
            &run_id
        ),
        40
    );
    let proxy_label: String = c
        .query_row(
            "SELECT proxy FROM eval_runs WHERE run_id = ?",
            [&run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(proxy_label.starts_with("http://127.0.0.1:"));
    drop(c);
    let p = open(&proxy_db);
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM exchanges WHERE session = ? AND operation = 'conversations.start_stream'",
            &run_id
        ),
        40,
        "the proxy recorded the run's traffic under its session"
    );
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM exchanges WHERE session = ? AND tags LIKE '%\"eval-config\":\"web\"%'",
            &run_id
        ),
        20 + 20 + 1,
        "answers, judge calls and the agent creation of config web are tagged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried_and_end_as_errors() {
    let sim = twin(Some(simpleqa()), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.duckdb");
    // An unknown completion argument: the twin answers 422 to every item.
    let text = r#"
[[config]]
name = "ok"
model = "m"
[[config]]
name = "bad"
model = "m"
completion_args = { no_such_argument = 1 }
"#;
    let mut spec = RunSpec::new(
        simpleqa().display().to_string(),
        ConfigFile::parse("t", text).unwrap(),
        text,
        sim.url(),
        &db,
    );
    spec.limit = Some(5);
    let out = run(spec, Stop::new()).await.unwrap();
    let bad = &out.report.configs[1].summary;
    assert_eq!((bad.n, bad.errors, bad.graded), (5, 5, 0));
    assert_eq!(out.report.configs[0].summary.errors, 0);
    let run_id = out.report.run.run_id.clone();
    drop(out);

    // An existing agent that does not exist: the run fails at set-up, before any item.
    let text = "[[config]]\nname = \"ghost\"\nagent_id = \"ag_nope\"\n";
    let mut spec = RunSpec::new(
        simpleqa().display().to_string(),
        ConfigFile::parse("t", text).unwrap(),
        text,
        sim.url(),
        &db,
    );
    spec.limit = Some(5);
    let err = run(spec, Stop::new()).await.unwrap_err();
    assert!(
        matches!(&err, EvalError::Setup(m) if m.contains("404")),
        "{err}"
    );
    sim.shutdown().await;

    let c = open(&db);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM eval_attempts WHERE run_id = ? AND config = 'bad' AND outcome = 'failed' AND http_status = 422 AND attempt = 1",
            &run_id
        ),
        5,
        "one attempt each"
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM eval_attempts WHERE run_id = ? AND config = 'bad' AND attempt > 1",
            &run_id
        ),
        0
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM eval_items i JOIN eval_grades g USING (run_id, config, item_id) WHERE run_id = ? AND i.config = 'bad'",
            &run_id
        ),
        0,
        "errors are never graded"
    );
    let failed: i64 = c
        .query_row(
            "SELECT count(*) FROM eval_runs WHERE status = 'failed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 1);
    let _ = (Grade::Correct, Outcome::Error);
}
