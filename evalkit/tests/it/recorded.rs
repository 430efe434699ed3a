//! Recorded conversations as eval sets: conversations recorded through the proxy against the twin
//! become a dataset (`from_recording`), which candidates replay with the same history; the
//! `recorded` column, the agreement and pairwise graders, the regression list and resume.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use agentcap_datasets::QaItem;
use agentcap_evalkit::client::{ApiClient, Tags, outputs_summary};
use agentcap_evalkit::recorded::{FromRecording, TurnSelection, from_recording};
use agentcap_evalkit::report::Report;
use agentcap_evalkit::{
    ConfigFile, GraderChoice, ItemEvent, ResumeSpec, RunSpec, Stop, resume, run,
};
use agentcap_proxy::ProxyConfig;
use agentcap_proxy::recorder::RecorderConfig;
use serde_json::{Value, json};

use crate::{open, simpleqa, twin};

/// What the client sent and got back in one recorded turn.
#[derive(Debug, Clone)]
struct Sent {
    question: String,
    answer: String,
}

fn tags(session: &str) -> Tags {
    Tags {
        run_id: session.to_string(),
        item: String::new(),
        config: String::new(),
        attempt: "t".into(),
        phase: "answer",
    }
}

/// Records `n` conversations of 1 to 3 turns (SimpleQA questions) through a proxy in front of
/// `upstream` into `db`, under `session`; returns each conversation's turns as sent and answered.
async fn record(
    upstream: &str,
    db: &Path,
    session: &str,
    n: usize,
    first_question: usize,
) -> BTreeMap<String, Vec<Sent>> {
    let items: Vec<QaItem> = agentcap_datasets::load_path(&simpleqa()).unwrap();
    let mut cfg = ProxyConfig::new(upstream.parse().unwrap(), RecorderConfig::new(db));
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.admin_listen = None;
    let proxy = agentcap_proxy::start(cfg).await.unwrap();
    let client = ApiClient::new(&format!("http://{}", proxy.addr()), None).unwrap();
    let t = tags(session);
    let mut out = BTreeMap::new();
    let mut q = first_question;
    for i in 0..n {
        let turns = 1 + i % 3;
        let mut sent = Vec::new();
        // The first turn streamed on even conversations, plain on odd ones.
        let question = items[q].question.clone();
        q += 1;
        let first = client
            .start_conversation(
                &json!({"model": "mistral-medium-latest", "inputs": question, "stream": i % 2 == 0}),
                &t,
            )
            .await
            .unwrap();
        let id = first.conversation_id.clone().unwrap();
        sent.push(Sent {
            question,
            answer: first.text,
        });
        for _ in 1..turns {
            let question = items[q].question.clone();
            q += 1;
            let v = client
                .json(
                    http::Method::POST,
                    &format!("/v1/conversations/{id}"),
                    Some(&json!({"inputs": question, "stream": false})),
                    &t,
                )
                .await
                .unwrap();
            let outputs = v["outputs"].as_array().cloned().unwrap_or_default();
            sent.push(Sent {
                question,
                answer: outputs_summary(&outputs).0,
            });
        }
        out.insert(id, sent);
    }
    proxy.shutdown().await.unwrap();
    out
}

/// Creates an agent through a proxy in front of `upstream` and records `n` one-turn conversations
/// with it (its version named); returns the agent id, its version and `n`.
async fn record_with_agent(upstream: &str, db: &Path, n: usize) -> (String, Value, usize) {
    let mut cfg = ProxyConfig::new(upstream.parse().unwrap(), RecorderConfig::new(db));
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.admin_listen = None;
    let proxy = agentcap_proxy::start(cfg).await.unwrap();
    let client = ApiClient::new(&format!("http://{}", proxy.addr()), None).unwrap();
    let t = tags("agents");
    let agent = client
        .json(
            http::Method::POST,
            "/v1/agents",
            Some(&json!({"model": "mistral-medium-latest", "name": "support"})),
            &t,
        )
        .await
        .unwrap();
    let id = agent["id"].as_str().unwrap().to_string();
    let version = agent["version"].clone();
    for i in 0..n {
        client
            .start_conversation(
                &json!({"agent_id": id, "agent_version": version, "inputs": format!("Hello number {i}"), "stream": false}),
                &t,
            )
            .await
            .unwrap();
    }
    proxy.shutdown().await.unwrap();
    (id, version, n)
}

fn read_set(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn spec_for(set: &Path, text: &str, db: &Path, url: &str, grader: GraderChoice) -> RunSpec {
    let mut s = RunSpec::new(
        format!("recorded:{}", set.display()),
        ConfigFile::parse("candidates", text).unwrap(),
        text,
        url,
        db,
    );
    s.grader = Some(grader);
    s.concurrency = Some(8);
    s
}

/// B searches the web (the twin answers some questions differently with it), C is A again.
const CANDIDATES: &str = r#"
[[config]]
name = "B"
agent = { model = "mistral-medium-latest", tools = ["web_search"] }

[[config]]
name = "C"
model = "mistral-medium-latest"
mode = "sync"
"#;

fn from(db: &Path, out: &Path, turns: TurnSelection, session: Option<&str>) -> usize {
    from_recording(&FromRecording {
        db: db.to_path_buf(),
        predicate: None,
        session: session.map(str::to_string),
        agent: None,
        limit: None,
        turns,
        out: out.to_path_buf(),
    })
    .unwrap()
    .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorded_turns_become_items_with_their_history_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let sim = twin(Some(simpleqa()), &[]).await;
    let db = dir.path().join("rec.duckdb");
    let convs = record(&sim.url(), &db, "prod", 12, 0).await;
    let other = record(&sim.url(), &db, "staging", 2, 500).await;
    let (agent, version, agent_convs) = record_with_agent(&sim.url(), &db, 2).await;
    sim.shutdown().await;
    let total: usize = convs.values().map(Vec::len).sum();
    let all = total + other.values().map(Vec::len).sum::<usize>() + agent_convs;

    let set = dir.path().join("set.jsonl");
    assert_eq!(from(&db, &set, TurnSelection::Every, None), all);
    assert_eq!(
        from(&db, &set, TurnSelection::First, None),
        14 + agent_convs
    );
    assert_eq!(
        from(&db, &set, TurnSelection::Final, None),
        14 + agent_convs
    );
    let finals = read_set(&set);
    assert!(
        finals
            .iter()
            .all(|v| v["metadata"]["turn"] == v["metadata"]["turns"])
    );
    assert_eq!(
        from(&db, &set, TurnSelection::Every, Some("prod")),
        total,
        "--session keeps only that session's turns"
    );
    let by_agent = from_recording(&FromRecording {
        db: db.clone(),
        predicate: None,
        session: None,
        agent: Some(agent.clone()),
        limit: None,
        turns: TurnSelection::Every,
        out: set.clone(),
    })
    .unwrap();
    assert_eq!(
        (by_agent.conversations, by_agent.items),
        (agent_convs, agent_convs)
    );
    for v in read_set(&set) {
        assert_eq!(v["metadata"]["agent_id"], json!(agent), "{v}");
        assert_eq!(
            v["metadata"]["agent_version"],
            json!(version.to_string()),
            "{v}"
        );
    }
    // --where runs through the read-only gate; a write is refused, a condition selects.
    let refused = from_recording(&FromRecording {
        db: db.clone(),
        predicate: Some("true); DELETE FROM exchanges; SELECT (1".into()),
        session: None,
        agent: None,
        limit: None,
        turns: TurnSelection::Every,
        out: dir.path().join("x.jsonl"),
    });
    assert!(refused.is_err(), "{refused:?}");
    let one = convs.keys().next().unwrap().clone();
    let n = from_recording(&FromRecording {
        db: db.clone(),
        predicate: Some(format!("id = '{one}'")),
        session: None,
        agent: None,
        limit: None,
        turns: TurnSelection::Every,
        out: dir.path().join("one.jsonl"),
    })
    .unwrap();
    assert_eq!((n.conversations, n.items), (1, convs[&one].len()));
    let limited = from_recording(&FromRecording {
        db: db.clone(),
        predicate: None,
        session: None,
        agent: None,
        limit: Some(3),
        turns: TurnSelection::First,
        out: dir.path().join("three.jsonl"),
    })
    .unwrap();
    assert_eq!((limited.conversations, limited.items), (3, 3));

    from(&db, &set, TurnSelection::Every, Some("prod"));
    let items = read_set(&set);
    for v in &items {
        let m = &v["metadata"];
        let conv = m["conversation_id"].as_str().unwrap();
        let turns = &convs[conv];
        let k = m["turn"].as_u64().unwrap() as usize;
        assert_eq!(m["turns"].as_u64().unwrap() as usize, turns.len());
        assert_eq!(v["id"], json!(format!("{conv}:{k}")));
        // The question and the reference are what the client sent and got.
        assert_eq!(v["question"], json!(turns[k - 1].question));
        assert_eq!(v["answer"], json!(turns[k - 1].answer));
        // Provenance.
        assert!(m["entry_id"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
        assert!(m["exchange_id"].as_str().is_some());
        assert_eq!(m["model"], json!("mistral-medium-latest"));
        assert!(m["latency_ms"].as_f64().is_some_and(|l| l > 0.0), "{m}");
        assert!(m["prompt_tokens"].as_u64().is_some_and(|t| t > 0), "{m}");
        assert!(m["completion_tokens"].as_u64().is_some(), "{m}");
        assert_eq!(m["simulated_upstream"], json!(true));
        assert_eq!(m["session"], json!("prod"));
        // The history holds the earlier turns as sent and answered, in order, then the turn's inputs.
        let texts: Vec<(String, String)> = m["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    agentcap_evalkit::client::content_text(&e["content"]),
                )
            })
            .collect();
        let mut expected = Vec::new();
        for t in &turns[..k - 1] {
            expected.push(("message.input".to_string(), t.question.clone()));
            expected.push(("message.output".to_string(), t.answer.clone()));
        }
        assert_eq!(texts, expected, "history of {}", v["id"]);
        let inputs = m["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0]["type"], json!("message.input"));
        assert_eq!(inputs[0]["content"], json!(turns[k - 1].question));
    }
}

fn by_config(r: &Report) -> BTreeMap<String, (usize, usize, usize)> {
    r.configs
        .iter()
        .map(|c| {
            let s = &c.summary;
            (c.name.clone(), (s.correct, s.incorrect, s.not_attempted))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn candidates_replay_recorded_turns_graded_by_agreement_and_pairwise_with_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let sim = twin(Some(simpleqa()), &[]).await;
    let db = dir.path().join("prod.duckdb");
    let convs = record(&sim.url(), &db, "prod", 20, 0).await;
    let set = dir.path().join("set.jsonl");
    let n = from(&db, &set, TurnSelection::Every, None);
    assert_eq!(n, convs.values().map(Vec::len).sum::<usize>());

    // Agreement: the recorded column is the baseline; C (A again) agrees wherever the recorded
    // answer says something, B (web search) differs on some.
    let agreement = run(
        spec_for(&set, CANDIDATES, &db, &sim.url(), GraderChoice::Agreement),
        Stop::new(),
    )
    .await
    .unwrap();
    assert!(agreement.complete);
    let r = &agreement.report;
    assert_eq!(r.baseline, "recorded");
    assert!(r.run.simulated_upstream);
    assert_eq!(
        r.configs
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["recorded", "B", "C"]
    );
    let counts = by_config(r);
    assert_eq!(
        counts["C"], counts["recorded"],
        "C replays A under the same context"
    );
    assert!(
        counts["B"].1 > 0,
        "B answers some turns differently: {counts:?}"
    );
    assert_eq!(r.comparisons.len(), 2, "paired tests against recorded");
    let rec = r.configs.iter().find(|c| c.name == "recorded").unwrap();
    assert!(
        rec.total_ms_quantiles.first().is_some_and(|x| *x > 0.0),
        "recorded latency is the recording's"
    );
    assert!(rec.summary.prompt_tokens > 0);
    assert_eq!(r.versus_recorded.len(), 2);
    let vb = r.versus_recorded.iter().find(|v| v.config == "B").unwrap();
    assert_eq!((vb.wins, vb.losses), (counts["B"].0, counts["B"].1));
    assert!(vb.rate_ci.lo <= vb.rate && vb.rate <= vb.rate_ci.hi);
    // Regressions: B's different answers to recorded answers that say something, with both
    // conversations, the candidate's recorded by the run's own proxy.
    assert!(!r.regressions.is_empty());
    assert!(r.regressions.iter().all(|g| g.config == "B"));
    let table = agentcap_evalkit::report::render(r, agentcap_evalkit::report::Format::Table);
    for g in &r.regressions {
        let rc = g.recorded_conversation_id.as_deref().unwrap();
        let cc = g.candidate_conversation_id.as_deref().unwrap();
        assert!(convs.contains_key(rc), "{rc} is a recorded conversation");
        assert_ne!(rc, cc);
        assert!(table.contains(&format!("/conversations/{rc}")), "{table}");
        assert!(table.contains(&format!("/conversations/{cc}")), "{table}");
    }
    {
        let c = open(&db);
        let linked: i64 = c
            .query_row(
                "SELECT count(*) FROM eval_items i JOIN conversations c ON c.id = i.conversation_id
                 WHERE i.run_id = ?",
                [&agreement.run_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            linked as usize,
            3 * n,
            "every row links to a recorded conversation"
        );
        // The replay sent the history: each candidate conversation starts with the turn's
        // history and inputs.
        let max_inputs: i64 = c
            .query_row(
                "SELECT max(k) FROM (SELECT count(*) AS k FROM entries n JOIN eval_items i
                   ON i.conversation_id = n.conversation_id
                 WHERE i.run_id = ? AND i.config = 'C' AND n.direction = 'input' GROUP BY n.exchange_id)",
                [&agreement.run_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            max_inputs, 5,
            "the third turn is sent with four history entries"
        );
    }

    // Pairwise: C ties everywhere (same answers), B wins where search finds the gold answer the
    // recorded answer missed, and loses the other way round.
    let pairwise = run(
        spec_for(&set, CANDIDATES, &db, &sim.url(), GraderChoice::Pairwise),
        Stop::new(),
    )
    .await
    .unwrap();
    sim.shutdown().await;
    let r = &pairwise.report;
    let vc = r.versus_recorded.iter().find(|v| v.config == "C").unwrap();
    assert_eq!((vc.wins, vc.losses, vc.ties), (0, 0, n));
    assert_eq!(vc.sign_test_p, Some(1.0));
    let vb = r.versus_recorded.iter().find(|v| v.config == "B").unwrap();
    assert!(vb.wins > 0, "{vb:?}");
    assert_eq!(vb.wins + vb.losses + vb.ties, n);
    assert!(vb.sign_test_p.is_some_and(|p| p > 0.0 && p <= 1.0));
    assert_eq!(
        r.regressions.len(),
        vb.losses,
        "every pairwise loss is a regression"
    );
    // Both orders were asked, and their raw replies kept.
    let c = open(&db);
    let replies: Vec<String> = c
        .prepare("SELECT judge_reply FROM eval_grades WHERE run_id = ? AND config = 'B'")
        .unwrap()
        .query_map([&pairwise.run_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(replies.len(), n);
    for reply in &replies {
        let v: Vec<String> = serde_json::from_str(reply).unwrap();
        assert_eq!(v.len(), 2, "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_run_stopped_midway_resumes_only_the_missing_items() {
    let dir = tempfile::tempdir().unwrap();
    let sim = twin(Some(simpleqa()), &[]).await;
    let db = dir.path().join("prod.duckdb");
    record(&sim.url(), &db, "prod", 20, 0).await;
    let set = dir.path().join("set.jsonl");
    let n = from(&db, &set, TurnSelection::Every, None);
    let pairs = 3 * n;

    let stop = Stop::new();
    let trigger = stop.clone();
    let mut s = spec_for(&set, CANDIDATES, &db, &sim.url(), GraderChoice::Agreement);
    s.concurrency = Some(2);
    s.observer = Some(Arc::new(move |e: &ItemEvent| {
        if e.finished >= 30 {
            trigger.stop();
        }
    }));
    let first = run(s, stop).await.unwrap();
    assert!(!first.complete);
    let done = first.stats.finished;
    assert!((30..pairs).contains(&done), "{done} of {pairs}");
    let run_id = first.run_id.clone();
    drop(first);

    let resumed = resume(ResumeSpec::new(&run_id, &db), Stop::new())
        .await
        .unwrap();
    assert!(resumed.complete);
    assert_eq!(
        resumed.stats.scheduled,
        pairs - done,
        "only the missing pairs"
    );

    let whole = run(
        spec_for(&set, CANDIDATES, &db, &sim.url(), GraderChoice::Agreement),
        Stop::new(),
    )
    .await
    .unwrap();
    sim.shutdown().await;
    assert_eq!(by_config(&resumed.report), by_config(&whole.report));
    assert_eq!(resumed.report.versus_recorded, whole.report.versus_recorded);
    assert_eq!(
        resumed.report.regressions.len(),
        whole.report.regressions.len()
    );
    let c = open(&db);
    let rows: i64 = c
        .query_row(
            "SELECT count(*) FROM eval_items WHERE run_id = ?",
            [&run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows as usize, pairs, "one row per pair, none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gold_answers_of_recorded_items_feed_the_gold_graders_and_filter_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let sim = twin(Some(simpleqa()), &[]).await;
    let db = dir.path().join("prod.duckdb");
    record(&sim.url(), &db, "prod", 20, 0).await;
    let bare = dir.path().join("bare.jsonl");
    let n = from(&db, &bare, TurnSelection::First, None);
    assert_eq!(n, 20);

    // Without gold answers the gold graders are refused, naming the way out.
    let refused = run(
        spec_for(&bare, CANDIDATES, &db, &sim.url(), GraderChoice::Exact),
        Stop::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("--grader agreement or pairwise"),
        "{refused}"
    );

    // The SimpleQA gold answer of each turn's question, as `metadata.gold`.
    let gold: BTreeMap<String, String> = agentcap_datasets::load_path(&simpleqa())
        .unwrap()
        .into_iter()
        .map(|it| (it.question, it.answers[0].clone()))
        .collect();
    let set = dir.path().join("gold.jsonl");
    let lines: Vec<String> = read_set(&bare)
        .into_iter()
        .map(|mut v| {
            let g = gold[v["question"].as_str().unwrap()].clone();
            v["metadata"]["gold"] = json!([g]);
            v.to_string()
        })
        .collect();
    std::fs::write(&set, lines.join("\n")).unwrap();

    let exact = run(
        spec_for(&set, CANDIDATES, &db, &sim.url(), GraderChoice::Exact),
        Stop::new(),
    )
    .await
    .unwrap();
    let counts = by_config(&exact.report);
    let right = read_set(&set)
        .iter()
        .filter(|v| {
            agentcap_evalkit::grade::exact_grade(
                v["answer"].as_str().unwrap(),
                &[v["metadata"]["gold"][0].as_str().unwrap().to_string()],
            ) == agentcap_evalkit::grade::Grade::Correct
        })
        .count();
    assert_eq!(
        counts["recorded"].0, right,
        "the recorded column graded against gold"
    );
    assert!(right > 0 && right < n, "{right} of {n}");
    assert!(exact.report.versus_recorded.is_empty());

    // Agreement: a regression needs a recorded answer that was right.
    let agreement = run(
        spec_for(&set, CANDIDATES, &db, &sim.url(), GraderChoice::Agreement),
        Stop::new(),
    )
    .await
    .unwrap();
    sim.shutdown().await;
    let r = &agreement.report;
    let differs = r.versus_recorded.iter().map(|v| v.losses).sum::<usize>();
    assert!(r.regressions.len() <= differs);
    for g in &r.regressions {
        let q = &g.question;
        assert_eq!(
            agentcap_evalkit::grade::exact_grade(&g.recorded_answer, &[gold[q].clone()]),
            agentcap_evalkit::grade::Grade::Correct,
            "{g:?}"
        );
    }
    let c = open(&db);
    let golds: String = c
        .query_row(
            "SELECT golds FROM eval_items WHERE run_id = ? AND config = 'recorded' LIMIT 1",
            [&agreement.run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        golds.starts_with("[\"") && !golds.contains("\"],[\""),
        "{golds}"
    );
}
