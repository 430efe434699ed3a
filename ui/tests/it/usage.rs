//! The usage page over a recording whose figures are known: requests, tokens and p50 / p99 total time per
//! bucket and per agent or model.

use std::sync::Arc;

use agentcap_proxy::recorder::{DbAccess, open_db, schema};
use agentcap_ui::{ConnDb, UiConfig, UiState};
use http::StatusCode;

use crate::harness::get;

/// Five exchanges in the 10:00 hour (agent A on m1 three times, agent B on m2, a bare m2 call) and one in
/// the 11:00 hour (agent A, no usage row).
const RECORDING: &str = "
INSERT INTO exchanges (id, started_at, operation, outcome, agent_id, model, total_us) VALUES
  ('x1', '2026-01-01 10:05:00+00', 'conversations.append', 'complete', 'A', 'm1', 1000),
  ('x2', '2026-01-01 10:15:00+00', 'conversations.append', 'complete', 'A', 'm1', 2000),
  ('x3', '2026-01-01 10:25:00+00', 'conversations.append', 'complete', 'A', 'm1', 3000),
  ('x4', '2026-01-01 10:35:00+00', 'conversations.append', 'complete', 'B', 'm2', 40000),
  ('x5', '2026-01-01 10:45:00+00', 'chat.completions', 'complete', NULL, 'm2', 50000),
  ('x6', '2026-01-01 11:05:00+00', 'conversations.append', 'complete', 'A', 'm1', 5000);
INSERT INTO usage (exchange_id, prompt_tokens, completion_tokens, total_tokens, connector_tokens) VALUES
  ('x1', 10, 5, 15, NULL),
  ('x2', 20, 7, 30, 3),
  ('x4', 100, 1, 101, NULL);
";

async fn state() -> (tempfile::TempDir, UiState) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.duckdb");
    {
        let conn = open_db(Some(&path), DbAccess::ReadWrite).unwrap();
        schema::migrate(&conn).unwrap();
        conn.execute_batch(RECORDING).unwrap();
    }
    let db = Arc::new(ConnDb::open_read_only(&path).unwrap());
    (dir, UiState::new(db, UiConfig::default()).unwrap())
}

/// The cells of the table row of `bucket` (its start, as text) and `split` (`*` for the bucket's total).
fn cells(body: &str, bucket: &str, split: &str) -> Vec<String> {
    let row = body
        .split("<tr")
        .find(|r| {
            r.contains(&format!("data-bucket=\"{bucket}\""))
                && r.contains(&format!("data-split=\"{split}\""))
        })
        .unwrap_or_else(|| panic!("no row {bucket} / {split} in {body}"));
    let row = &row[..row.find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|c| {
            let c = &c[c.find('>').unwrap() + 1..];
            c[..c.find("</td>").unwrap()].to_string()
        })
        .collect()
}

#[tokio::test]
async fn usage_counts_requests_tokens_and_latency_percentiles_per_bucket_and_split() {
    let (_dir, st) = state().await;
    let page = get(&st, "/usage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let ten = "2026-01-01 10:00:00";
    // requests, prompt, completion, connector, total, p50, p99 (after the bucket and split columns)
    let figures = |split: &str| cells(&page.body, ten, split)[2..].to_vec();
    assert_eq!(
        figures("*"),
        ["5", "130", "13", "3", "146", "3.0 ms", "50.0 ms"],
        "the whole hour: percentiles over its five exchanges"
    );
    assert_eq!(
        figures("A"),
        ["3", "30", "12", "3", "45", "2.0 ms", "3.0 ms"]
    );
    assert_eq!(
        figures("B"),
        ["1", "100", "1", "0", "101", "40.0 ms", "40.0 ms"]
    );
    assert_eq!(cells(&page.body, ten, "")[1], "(no agent)");
    assert_eq!(
        cells(&page.body, "2026-01-01 11:00:00", "*")[2..],
        ["1", "0", "0", "0", "0", "5.0 ms", "5.0 ms"]
    );
    assert_eq!(
        page.body.matches("class=\"bar\"").count(),
        4 * 2,
        "four charts of two hours"
    );
    assert!(
        page.body
            .contains("href=\"/usage?bucket=hour&amp;split=model\"")
    );

    let by_model = get(&st, "/usage?split=model").await;
    assert_eq!(
        cells(&by_model.body, ten, "m2")[2..],
        ["2", "100", "1", "0", "101", "40.0 ms", "50.0 ms"]
    );
    assert_eq!(cells(&by_model.body, ten, "m1")[2], "3");

    let by_day = get(&st, "/usage?bucket=day&split=model").await;
    assert_eq!(
        cells(&by_day.body, "2026-01-01 00:00:00", "*")[2..5],
        ["6", "130", "13"]
    );
    for bad in ["/usage?bucket=week", "/usage?split=key"] {
        assert_eq!(get(&st, bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}
