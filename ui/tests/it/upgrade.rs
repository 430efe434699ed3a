//! A recording made by an older agentcap: the UI refuses it with the command that upgrades it, and serves it
//! once upgraded (the stream's error event then shows on its conversation page).

use std::sync::Arc;

use agentcap_proxy::recorder::{DbAccess, open_db, schema};
use agentcap_ui::{ConnDb, UiConfig, UiError, UiState};
use http::StatusCode;

use crate::harness::get;

#[tokio::test]
async fn an_older_recording_is_refused_with_the_upgrade_command_then_served_once_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.duckdb");
    {
        let conn = open_db(Some(&path), DbAccess::ReadWrite).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER, applied_at TIMESTAMP)",
        )
        .unwrap();
        for (i, m) in schema::MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(&schema::migration_sql(m)).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, NULL)",
                [i64::try_from(i + 1).unwrap()],
            )
            .unwrap();
        }
        conn.execute_batch(
            r#"INSERT INTO conversations (id) VALUES ('conv_old');
               INSERT INTO exchanges (id, started_at, operation, status, outcome, is_stream, conversation_id)
                 VALUES ('0190aaaa-0000-7000-8000-000000000001', '2026-01-01 10:00:00+00',
                         'conversations.start_stream', 200, 'complete', true, 'conv_old');
               INSERT INTO sse_events (exchange_id, seq, event_type, data, data_truncated) VALUES
                 ('0190aaaa-0000-7000-8000-000000000001', 0, 'conversation.response.error',
                  '{"message": "rate limited <b>now</b>", "code": 1300}', false)"#,
        )
        .unwrap();
    }

    let err = match ConnDb::open_read_only(&path) {
        Err(e) => e,
        Ok(_) => panic!("a version 3 recording must be refused"),
    };
    assert!(matches!(err, UiError::Config(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("schema version 3"), "{text}");
    assert!(text.contains("--migrate"), "{text}");

    assert_eq!(
        schema::migrate_file(&path).unwrap(),
        (3, schema::latest_version())
    );
    let db = Arc::new(ConnDb::open_read_only(&path).unwrap());
    let st = UiState::new(db, UiConfig::default()).unwrap();
    let page = get(&st, "/conversations/conv_old").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("rate limited &lt;b&gt;now&lt;/b&gt;"),
        "the stream error shows, escaped: {}",
        page.body
    );
}
