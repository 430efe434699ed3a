//! Knowledge mode against the real SimpleQA file, and the simulated judge.

use std::path::PathBuf;

use agentcap_sim::SimConfig;
use http::Method;
use serde_json::{Value, json};

use crate::client::twin;

fn simpleqa() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test"))
        .join("../../shared/datasets/simpleqa/simple_qa_test_set.csv")
}

fn answer_text(r: &Value) -> String {
    let msg = r["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["type"] == "message.output")
        .unwrap();
    match &msg["content"] {
        Value::String(s) => s.clone(),
        Value::Array(chunks) => chunks.iter().filter_map(|c| c["text"].as_str()).collect(),
        _ => panic!(),
    }
}

#[tokio::test]
async fn answers_simpleqa_at_the_configured_rates_and_grades_them() {
    let path = simpleqa();
    let items = agentcap_datasets::load_path(&path).expect("the shared SimpleQA file loads");
    let t = twin(SimConfig {
        knowledge: Some(path),
        seed: 11,
        ..SimConfig::default()
    })
    .await;
    let search_agent = t
        .ok(
            Method::POST,
            "/v1/agents",
            Some(json!({"model": "m", "name": "web", "tools": [{"type": "web_search"}]})),
        )
        .await;
    let n = 300;
    let (mut closed_ok, mut search_ok) = (0, 0);
    for it in items.iter().take(n) {
        let closed = t
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({"model": "m", "inputs": it.question})),
            )
            .await;
        let search = t
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({"agent_id": search_agent["id"], "inputs": it.question})),
            )
            .await;
        for (r, counter) in [(closed, &mut closed_ok), (search, &mut search_ok)] {
            let pred = answer_text(&r);
            let prompt = format!(
                "Grade this.\n```\nQuestion: {}\nGold target: {}\nPredicted answer: {}\n```\nJust return the letters",
                it.question, it.answers[0], pred
            );
            let g = t.ok(Method::POST, "/v1/chat/completions", Some(json!({"model": "judge", "messages": [{"role": "user", "content": prompt}]}))).await;
            let letter = g["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(matches!(letter.as_str(), "A" | "B" | "C"), "{letter}");
            if letter == "A" {
                *counter += 1;
            }
        }
    }
    let (c, s) = (closed_ok as f64 / n as f64, search_ok as f64 / n as f64);
    // 95% binomial bounds around 0.23 and 0.75 at n = 300 are about ±0.05.
    assert!((0.16..0.31).contains(&c), "closed-book accuracy {c}");
    assert!((0.68..0.82).contains(&s), "web_search accuracy {s}");
    let again = t
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": items[0].question})),
        )
        .await;
    let first = t
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": items[0].question})),
        )
        .await;
    assert_eq!(
        answer_text(&again),
        answer_text(&first),
        "deterministic per (seed, question, tools)"
    );
}

/// The simulated judge's letter for one (target, predicted) pair.
fn judge(target: &str, predicted: &str) -> &'static str {
    agentcap_sim::chat::grade(&agentcap_sim::chat::GradeRequest {
        question: "q",
        target,
        predicted,
    })
}

#[test]
fn the_judge_compares_normalised_answers_not_substrings() {
    // A wrong answer that contains the gold is wrong.
    assert_eq!(judge("5", "5,679"), "B");
    assert_eq!(judge("Paris", "Paris, Texas"), "B");
    assert_eq!(judge("1947", "May 1947"), "B");
    // The fallback wrong answer of knowledge mode is wrong.
    assert_eq!(judge("Paris", "Not Paris"), "B");
    assert_eq!(judge("Michelle Obama", "Not Michelle Obama"), "B");
    // Normalisation: case, punctuation, articles, digit grouping, surrounding spaces.
    assert_eq!(judge("The Beatles", "beatles"), "A");
    assert_eq!(judge("Paris", "  Paris. "), "A");
    assert_eq!(judge("5,679", "5679"), "A");
    assert_eq!(judge("U.S. Navy", "US Navy"), "A");
    assert_eq!(judge("Paris", "Lyon"), "B");
    assert_eq!(judge("1947", "19470"), "B");
    // Abstentions and empty answers are not attempted.
    assert_eq!(judge("Paris", "I don't know."), "C");
    assert_eq!(judge("Paris", "   "), "C");
    // A gold answer that reads like an abstention can still be answered correctly.
    assert_eq!(judge("Unknown", "unknown"), "A");
}

#[test]
fn the_judge_splits_multi_answer_targets_on_or() {
    // The eval runner joins several gold answers with " OR " (NQ-Open).
    assert_eq!(judge("Nile OR Amazon", "Amazon"), "A");
    assert_eq!(judge("Nile OR Amazon", "the Nile"), "A");
    assert_eq!(judge("Nile OR Amazon OR Yangtze", "Yangtze."), "A");
    assert_eq!(judge("Nile OR Amazon", "Danube"), "B");
    // Only the upper-case separator splits: "or" inside an answer is part of it.
    assert_eq!(judge("Bride or Die", "Bride or Die"), "A");
    assert_eq!(judge("Bride or Die", "Die"), "B");
}

/// Knowledge mode over the whole SimpleQA set, every item forced down one branch: the simulated
/// judge must grade each answer as what it is (right A, wrong B, abstention C), in closed-book
/// and web-search mode.
#[test]
fn the_judge_grades_every_knowledge_answer_of_the_full_set_as_what_it_is() {
    use agentcap_sim::knowledge::{Knowledge, Verdict};
    let items = agentcap_datasets::load_path(&simpleqa()).expect("the shared SimpleQA file loads");
    assert_eq!(items.len(), 4326);
    let mut misgraded = Vec::new();
    for (p, abstain, want) in [(1.0, 0.0, "A"), (0.0, 0.0, "B"), (0.0, 1.0, "C")] {
        let k = Knowledge::new(items.clone(), 11, p, p, abstain);
        for it in &items {
            let target = it.answers.join(" OR ");
            for search in [false, true] {
                let v = k.answer(it, search);
                let kind = match &v {
                    Verdict::Correct(_) => "A",
                    Verdict::Wrong(_) => "B",
                    Verdict::Abstain(_) => "C",
                };
                assert_eq!(kind, want, "{v:?}");
                let got = judge(&target, v.text());
                if got != want {
                    misgraded.push(format!(
                        "item {} ({}): gold {target:?}, answer {:?} graded {got}",
                        it.id,
                        if search { "search" } else { "closed" },
                        v.text()
                    ));
                }
            }
        }
    }
    assert!(
        misgraded.is_empty(),
        "{} answers misgraded:\n{}",
        misgraded.len(),
        misgraded.join("\n")
    );
}

#[tokio::test]
async fn the_judge_endpoint_reads_a_multi_answer_target() {
    let t = twin(SimConfig::default()).await;
    let mut letters = Vec::new();
    for predicted in ["Amazon", "Nile", "Danube", "I don't know"] {
        let prompt = format!(
            "Grade this.\n```\nQuestion: Which river?\nGold target: Nile OR Amazon\nPredicted answer: {predicted}\n```\nJust return the letters"
        );
        let g = t
            .ok(
                Method::POST,
                "/v1/chat/completions",
                Some(json!({"model": "judge", "messages": [{"role": "user", "content": prompt}]})),
            )
            .await;
        letters.push(
            g["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(letters, ["A", "A", "B", "C"]);
}
