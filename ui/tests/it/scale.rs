//! A measurement, not a check (ignored by default): the list's first and a deep keyset page over one million
//! exchanges, with the plan. Run with `cargo test -p agentcap-ui --test it scale -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use agentcap_ui::{ConnDb, Db, UiConfig, UiState};

use crate::harness::get;

#[tokio::test]
#[ignore = "a measurement over a million rows (a minute or so)"]
async fn million_exchanges_page_times_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.duckdb");
    {
        let c = agentcap_proxy::recorder::open_db(
            Some(&path),
            agentcap_proxy::recorder::DbAccess::ReadWrite,
        )
        .unwrap();
        agentcap_proxy::recorder::schema::migrate(&c).unwrap();
        c.execute_batch(
            "INSERT INTO exchanges (id, started_at, method, path, operation, status, outcome, is_stream, total_us, \
               upstream_us, overhead_us, model, session, tags, response_bytes) \
             SELECT printf('%08d-0000-7000-8000-000000000000', i), \
                    CAST(TIMESTAMP '2026-01-01 00:00:00' + to_microseconds(i * 1000) AS TIMESTAMPTZ), 'POST', '/v1/conversations', \
                    CASE WHEN i % 3 = 0 THEN 'conversations.start_stream' ELSE 'conversations.append' END, \
                    CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END, 'complete', i % 3 = 0, 1000 + i % 997, 900, 100, \
                    'mistral-medium-latest', 'sess-' || (i % 100), '{\"suite\":\"scale\"}', 1234 \
             FROM range(1000000) t(i)",
        )
        .unwrap();
    }
    let db = Arc::new(ConnDb::open_read_only(&path).unwrap());
    let st = UiState::new(db.clone(), UiConfig::default()).unwrap();
    for (label, path) in [
        ("first page", "/".to_string()),
        ("first page, stream=yes", "/?stream=yes".to_string()),
        ("first page, session filter", "/?session=sess-7".to_string()),
        (
            "deep keyset page",
            "/?before=2026-01-01T00:08:20Z,00500000-0000-7000-8000-000000000000".to_string(),
        ),
        ("first page, status=500", "/?status=500".to_string()),
    ] {
        let t = Instant::now();
        let r = get(&st, &path).await;
        assert_eq!(r.status, http::StatusCode::OK, "{}", r.body);
        eprintln!(
            "{label}: {:?} ({} rows)",
            t.elapsed(),
            r.body.matches("data-id=").count()
        );
    }
    let plan = db
        .query(
            "EXPLAIN SELECT id, started_at FROM exchanges WHERE true AND (started_at < CAST(? AS TIMESTAMPTZ) \
             OR (started_at = CAST(? AS TIMESTAMPTZ) AND id < ?)) ORDER BY started_at DESC, id DESC LIMIT ?",
            &[
                agentcap_ui::Param::Text("2026-01-01T00:08:20Z".into()),
                agentcap_ui::Param::Text("2026-01-01T00:08:20Z".into()),
                agentcap_ui::Param::Text("x".into()),
                agentcap_ui::Param::Int(51),
            ],
        )
        .unwrap();
    for row in &plan.rows {
        for v in row {
            eprintln!("{}", v.as_str().unwrap_or(""));
        }
    }
}
