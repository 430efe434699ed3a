//! Eval run pages over a real run (mini-qa through two configs on the twin, via the embedded proxy).

use std::sync::Arc;

use agentcap_evalkit::{ConfigFile, RunSpec, Stop, run};
use agentcap_ui::{ConnDb, UiConfig, UiState};
use http::StatusCode;

use crate::harness::{get, rows};

const CONFIGS: &str = r#"
[[config]]
name = "closed"
model = "mistral-medium-latest"

[[config]]
name = "web"
agent = { model = "mistral-medium-latest", tools = ["web_search"] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pages_show_accuracy_latency_and_link_items_to_conversations() {
    let twin = agentcap_sim::start(agentcap_sim::SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("evals.duckdb");
    let configs = ConfigFile::parse("t", CONFIGS).unwrap();
    let mut spec = RunSpec::new("mini-qa", configs, CONFIGS, twin.url(), &db);
    spec.limit = Some(6);
    spec.simulated_upstream = true;
    let out = run(spec, Stop::new()).await.expect("the run succeeds");
    twin.shutdown().await;
    let run_id = out.report.run.run_id.clone();
    drop(out);

    let conn = Arc::new(ConnDb::open_read_only(&db).unwrap());
    let st = UiState::new(conn.clone(), UiConfig::default()).unwrap();
    let list = get(&st, "/runs").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains(&format!("href=\"/runs/{run_id}\"")));
    assert!(list.body.contains("simulated upstream"));

    let page = get(&st, &format!("/runs/{run_id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The static report's charts: accuracy, then F-score, each with an estimate and an interval per config.
    let accuracy = &page.body[page.body.find("class=\"chart accuracy\"").unwrap()..];
    let accuracy = &accuracy[..accuracy.find("</svg>").unwrap()];
    assert_eq!(
        accuracy.matches("class=\"acc\"").count(),
        2,
        "one estimate per config"
    );
    assert_eq!(
        accuracy.matches("class=\"ci\"").count(),
        2,
        "one interval per config"
    );
    assert!(
        page.body.contains("class=\"chart fscore\""),
        "the F-score chart"
    );
    for anchor in ["accuracy", "fscore", "tradeoff", "latency"] {
        assert!(
            page.body.contains(&format!("<h2 id=\"{anchor}\">")),
            "the report's chart {anchor} on the run page"
        );
    }
    assert!(
        page.body.matches("class=\"cdfline\"").count() >= 2,
        "latency CDF per config"
    );
    let items = rows(conn.as_ref(), "SELECT DISTINCT item_id FROM eval_items");
    assert_eq!(items.len(), 6);
    assert_eq!(
        page.body
            .matches(&format!("href=\"/runs/{run_id}/items/"))
            .count(),
        6
    );

    let item = items[0][0].as_str().unwrap();
    let page = get(&st, &format!("/runs/{run_id}/items/{item}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let conv = page
        .body
        .split("class=\"item-conversation\" href=\"")
        .nth(1)
        .expect("the item links its conversation");
    let conv = &conv[..conv.find('"').unwrap()];
    let tree = get(&st, conv).await;
    assert_eq!(tree.status, StatusCode::OK, "{conv}: {}", tree.body);
    assert!(tree.body.contains("message.output"));

    assert!(page_has_pairs(
        &get(&st, &format!("/runs/{run_id}")).await.body
    ));
    let cmp = get(
        &st,
        &format!("/compare?a={run_id}:closed&b={}:web", &run_id[..12]),
    )
    .await;
    assert_eq!(cmp.status, StatusCode::OK, "{}", cmp.body);
    assert_eq!(cmp.body.matches("class=\"acc\"").count(), 2);
    assert!(page_has_pairs(&cmp.body));
    assert_eq!(
        get(&st, "/compare?a=nope&b=nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&st, "/compare").await.status, StatusCode::OK);
    assert_eq!(get(&st, "/runs/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&st, &format!("/runs/{run_id}/items/nope")).await.status,
        StatusCode::NOT_FOUND
    );
}

fn page_has_pairs(body: &str) -> bool {
    body.contains("class=\"list comparisons\"") && body.contains("McNemar p")
}
