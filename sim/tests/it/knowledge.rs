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
