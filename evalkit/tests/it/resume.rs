//! Acceptance 3: with the twin injecting 429s and resets the run finishes, retries are recorded,
//! errors are counted and never graded; a run stopped midway and resumed ends with the same
//! per-item outcomes as an uninterrupted run.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentcap_evalkit::metrics::Outcome;
use agentcap_evalkit::report::Report;
use agentcap_evalkit::{ConfigFile, ItemEvent, ResumeSpec, RunSpec, Stop, Target, resume, run};

use crate::{count, open, simpleqa, twin, two_configs};

fn spec(url: &str, db: &std::path::Path, extra: &str, limit: usize) -> RunSpec {
    spec_of(two_configs(extra), url, db, limit)
}

fn spec_of(text: String, url: &str, db: &std::path::Path, limit: usize) -> RunSpec {
    let mut s = RunSpec::new(
        simpleqa().display().to_string(),
        ConfigFile::parse("t", &text).unwrap(),
        text,
        url,
        db,
    );
    s.limit = Some(limit);
    s.concurrency = Some(16);
    s
}

/// (config, item) -> outcome, and the per-config counts, of a report's run read back.
fn outcomes(db: &std::path::Path, run_id: &str) -> BTreeMap<(String, String), String> {
    let c = open(db);
    let mut stmt = c
        .prepare(
            "SELECT i.config, i.item_id, coalesce(g.outcome, i.status) FROM eval_items i
             LEFT JOIN eval_grades g USING (run_id, config, item_id) WHERE run_id = ?",
        )
        .unwrap();
    stmt.query_map([run_id], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn counts(r: &Report) -> Vec<(String, usize, usize, usize, usize, usize)> {
    r.configs
        .iter()
        .map(|c| {
            let s = &c.summary;
            (
                c.name.clone(),
                s.n,
                s.correct,
                s.incorrect,
                s.not_attempted,
                s.errors,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_recorded_and_final_errors_are_counted_not_graded() {
    let sim = twin(Some(simpleqa()), &["429=0.15", "reset=0.1", "500=0.05"]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.duckdb");
    // Two attempts at most, so that some items fail for good. Bare models (no agent to create),
    // so that the errors can be retried against another twin.
    let text = r#"
[[config]]
name = "closed"
model = "m"
[[config]]
name = "web"
model = "m"
tools = ["web_search"]
[runner]
max_attempts = 2
initial_backoff_ms = 5
max_backoff_ms = 20
"#;
    let s = spec_of(text.to_string(), &sim.url(), &db, 120);
    let out = run(s, Stop::new()).await.unwrap();
    sim.shutdown().await;
    assert!(out.complete, "the run finishes despite the faults");
    let run_id = out.report.run.run_id.clone();
    let errors: usize = out.report.configs.iter().map(|c| c.summary.errors).sum();
    let judge_errors: usize = out
        .report
        .configs
        .iter()
        .map(|c| c.summary.judge_errors)
        .sum();
    assert!(errors > 0, "some items exhausted their attempts");
    assert!(judge_errors > 0, "some judge calls exhausted theirs");
    assert!(out.stats.retries > 0);
    for c in &out.report.configs {
        let s = &c.summary;
        assert_eq!(s.n, 120);
        assert_eq!(
            s.correct + s.incorrect + s.not_attempted + s.unparseable + s.errors + s.judge_errors,
            120
        );
        assert_eq!(s.graded + s.unparseable + s.errors + s.judge_errors, 120);
    }
    drop(out);
    let c = open(&db);
    let q = |sql: &str| count(&c, sql, &run_id);
    assert!(
        q(
            "SELECT count(*) FROM eval_attempts WHERE run_id = ? AND outcome = 'retry' AND error_class = 'rate_limited' AND http_status = 429 AND retry_after_ms = 1000 AND backoff_ms >= 1000"
        ) > 0,
        "429s are retried after their Retry-After"
    );
    assert!(
        q(
            "SELECT count(*) FROM eval_attempts WHERE run_id = ? AND outcome = 'retry' AND error_class IN ('stream', 'connection')"
        ) > 0,
        "resets are retried"
    );
    assert!(
        q(
            "SELECT count(*) FROM eval_attempts WHERE run_id = ? AND outcome = 'retry' AND error_class = 'server_error'"
        ) > 0
    );
    assert_eq!(
        q("SELECT count(*) FROM eval_items WHERE run_id = ? AND status = 'error'"),
        errors as i64
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_items i JOIN eval_grades g USING (run_id, config, item_id) WHERE run_id = ? AND i.status = 'error'"
        ),
        0,
        "errors are never graded"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_items i LEFT JOIN eval_grades g USING (run_id, config, item_id)
             WHERE run_id = ? AND i.status = 'judge_error' AND i.answer IS NOT NULL AND g.outcome IS NULL"
        ),
        judge_errors as i64,
        "a failed judge keeps the answer and has no grade"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_items WHERE run_id = ? AND status = 'error' AND attempts IS NOT NULL AND error IS NOT NULL AND error_kind IS NOT NULL"
        ),
        errors as i64
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM eval_attempts a WHERE run_id = ? AND a.exchange_id IS NOT NULL AND a.outcome = 'retry'"
        ),
        q("SELECT count(*) FROM eval_attempts a WHERE run_id = ? AND a.outcome = 'retry'"),
        "every retried attempt links to the exchange the proxy recorded for it"
    );
    drop(c);

    // --retry-errors against a healthy twin turns every error into an answer.
    let healthy = twin(Some(simpleqa()), &[]).await;
    let mut r = ResumeSpec::new(run_id.clone(), &db);
    r.retry_errors = true;
    r.target = Some(Target::Embedded {
        upstream: healthy.url(),
    });
    let resumed = resume(r, Stop::new()).await.unwrap();
    healthy.shutdown().await;
    assert!(resumed.complete);
    assert_eq!(
        resumed.stats.scheduled,
        errors + judge_errors,
        "only the errored items ran (and the ungraded ones were graded)"
    );
    for c in &resumed.report.configs {
        assert_eq!(
            (c.summary.n, c.summary.errors, c.summary.judge_errors),
            (120, 0, 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_midway_and_resumed_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = twin(Some(simpleqa()), &["429=0.05", "reset=0.05"]).await;
    let retry_enough = "[runner]\nmax_attempts = 12\ninitial_backoff_ms = 5\nmax_backoff_ms = 20\n";

    // Interrupted: stop once 150 of the 400 (item, config) pairs are done.
    let db = dir.path().join("interrupted.duckdb");
    let mut s = spec(&faulty.url(), &db, retry_enough, 200);
    let stop = Stop::new();
    let trigger = stop.clone();
    s.observer = Some(Arc::new(move |e: &ItemEvent| {
        if e.finished >= 150 {
            trigger.stop();
        }
    }));
    let first = run(s, stop).await.unwrap();
    assert!(!first.complete);
    assert!(!first.report.run.complete, "the partial report says so");
    let done = first.stats.finished;
    assert!(
        (150..400).contains(&done),
        "{done} finished before the stop"
    );
    let partial_n: usize = first.report.configs.iter().map(|c| c.summary.n).sum();
    assert_eq!(partial_n, done, "the partial report holds what finished");
    let run_id = first.run_id.clone();
    drop(first);
    {
        let c = open(&db);
        let status: String = c
            .query_row(
                "SELECT status FROM eval_runs WHERE run_id = ?",
                [&run_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(status, "interrupted");
    }

    // Resume: only the missing pairs run, against the same (faulty) twin.
    let resumed = resume(ResumeSpec::new(&run_id[..12], &db), Stop::new())
        .await
        .unwrap();
    faulty.shutdown().await;
    assert!(resumed.complete);
    assert_eq!(resumed.run_id, run_id, "a unique prefix finds the run");
    assert_eq!(resumed.stats.scheduled, 400 - done);
    assert_eq!(resumed.stats.errors, 0);

    // Uninterrupted, same seed, healthy twin.
    let healthy = twin(Some(simpleqa()), &[]).await;
    let db2 = dir.path().join("whole.duckdb");
    let whole = run(spec(&healthy.url(), &db2, retry_enough, 200), Stop::new())
        .await
        .unwrap();
    healthy.shutdown().await;
    assert!(whole.complete);
    assert_eq!(counts(&resumed.report), counts(&whole.report));
    let acc = |r: &Report| -> Vec<f64> { r.configs.iter().map(|c| c.summary.accuracy).collect() };
    assert_eq!(acc(&resumed.report), acc(&whole.report));
    assert_eq!(
        resumed.report.comparisons[0].became_correct,
        whole.report.comparisons[0].became_correct
    );
    assert_eq!(
        resumed.report.comparisons[0].mcnemar_p,
        whole.report.comparisons[0].mcnemar_p
    );
    let whole_id = whole.run_id.clone();
    drop((resumed, whole));
    let a = outcomes(&db, &run_id);
    let b = outcomes(&db2, &whole_id);
    assert_eq!(a.len(), 400);
    assert_eq!(a, b, "per-item outcomes are equal");
    assert!(!a.values().any(|o| o == "error"));
    let c = open(&db);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM eval_items i JOIN conversations c ON c.id = i.conversation_id WHERE i.run_id = ?",
            &run_id
        ),
        400,
        "items of both sessions link to their conversations"
    );
    let _ = Outcome::Error;
}
