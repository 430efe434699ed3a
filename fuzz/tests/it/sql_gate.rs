//! The read-only SQL gate: arbitrary text never panics it, its refusals stay bounded, and whatever
//! it accepts, run through the recorder's real query path on a scratch recording, leaves the
//! recording's tables and DuckDB's settings exactly as they were.

use std::time::Duration;

use agentcap_proxy::recorder::query::check_read_only;
use agentcap_proxy::recorder::{
    DbAccess, QueryCancel, QueryLimits, Recorder, RecorderConfig, RecorderError, open_db, schema,
};
use duckdb::Connection;

const SEEDS: &[&[u8]] = &[
    b"SELECT 1",
    b"SELECT E'\\''; COMMIT; UPDATE exchanges SET status=418; SELECT 1 -- '",
    b"DELETE FROM sse_events",
    b"SET memory_limit='1MB'",
    b"DROP TABLE exchanges",
    b"SELECT * FROM exchanges WHERE status = 200 ORDER BY started_at LIMIT 3",
    b"WITH x AS (SELECT id FROM exchanges) SELECT count(*) FROM x",
    b"SELECT tags->>'i', $$a;b$$, $t$x$t$ FROM exchanges",
    b"EXPLAIN SELECT * FROM exchanges",
    b"DESCRIBE exchanges",
    b"SUMMARIZE exchanges",
    b"SHOW TABLES",
    b"FROM exchanges SELECT id",
    b"SELECT * FROM checkpoint()",
    b"SELECT * FROM duckdb_settings()",
    b"/* ; */ SELECT 1 -- ;",
    b"VALUES (1, 'a'), (2, 'b')",
    b"SELECT * FROM range(3) a, range(3) b",
];

/// A digest of everything a query must not change: every table's rows, the catalog, the settings.
fn state(conn: &Connection) -> String {
    let tables: Vec<String> = conn
        .prepare("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("tables listed");
    let mut out = String::new();
    for t in &tables {
        // Table names come from the catalog of this scratch file (known identifiers).
        let digest: String = conn
            .query_row(
                &format!(
                    "SELECT count(*)::VARCHAR || ':' || coalesce(md5(string_agg(x, '|' ORDER BY x)), '') \
                     FROM (SELECT CAST(t AS VARCHAR) AS x FROM \"{t}\" t)"
                ),
                [],
                |r| r.get(0),
            )
            .expect("table digest");
        out.push_str(&format!("{t}={digest};"));
    }
    for sql in [
        "SELECT coalesce(string_agg(coalesce(sql, name), ';' ORDER BY 1), '') FROM \
         (SELECT sql, table_name AS name FROM duckdb_tables() UNION ALL SELECT sql, view_name FROM duckdb_views() WHERE NOT internal \
          UNION ALL SELECT sql, sequence_name FROM duckdb_sequences() UNION ALL SELECT NULL, schema_name FROM duckdb_schemas())",
        "SELECT string_agg(name || '=' || coalesce(value, 'NULL'), ',' ORDER BY name) FROM duckdb_settings()",
    ] {
        let v: String = conn
            .query_row(sql, [], |r| r.get(0))
            .expect("catalog digest");
        out.push_str(&v);
        out.push('\n');
    }
    out
}

fn scratch(dir: &std::path::Path) -> Recorder {
    let db = dir.join("scratch.duckdb");
    {
        let conn = open_db(Some(&db), DbAccess::ReadWrite).expect("scratch db");
        schema::migrate(&conn).expect("schema");
        conn.execute_batch(
            "INSERT INTO exchanges (id, method, path, status, outcome, tags) VALUES \
             ('a', 'GET', '/v1/agents', 200, 'complete', '{\"i\": \"1\"}'), \
             ('b', 'POST', '/v1/conversations', 418, 'complete', NULL); \
             INSERT INTO sse_events (exchange_id, seq, event_type, data) VALUES ('b', 0, 'done', '{}');",
        )
        .expect("rows");
    }
    Recorder::open(RecorderConfig::new(&db)).expect("recorder opens")
}

#[test]
fn sql_gate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = scratch(dir.path());
    let h = rec.handle();
    let check = h.connection().expect("check connection");
    let before = state(&check);
    // The digest sees a changed row (the property below can fail).
    check
        .execute_batch("UPDATE exchanges SET status = 200 WHERE id = 'b'")
        .expect("a write on the check connection");
    assert_ne!(state(&check), before, "the digest missed a write");
    check
        .execute_batch("UPDATE exchanges SET status = 418 WHERE id = 'b'")
        .expect("the write undone");
    assert_eq!(state(&check), before);
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    let limits = QueryLimits {
        max_rows: 50,
        max_bytes: 64 * 1024,
        timeout: Duration::from_millis(500),
    };
    crate::fuzz("sql_gate", SEEDS, |input: &[u8]| {
        let sql = String::from_utf8_lossy(input);
        match check_read_only(&sql) {
            Err(RecorderError::QueryRefused { reason }) => {
                assert!(!reason.is_empty());
                assert!(
                    reason.len() <= 2 * sql.len() + 1024,
                    "a refusal grows with its input: {} bytes for {}",
                    reason.len(),
                    sql.len()
                );
            }
            Err(e) => panic!("the gate failed with something else than a refusal: {e}"),
            Ok(_) => {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Accepted: run it for real; whatever it answers, nothing may have changed.
                let _ = h.query_with(&sql, &[], &limits, &QueryCancel::new());
                let after = state(&check);
                assert!(
                    after == before,
                    "the accepted query {sql:?} changed the recording or the settings"
                );
            }
        }
    });
    println!(
        "sql_gate: {} inputs accepted and run",
        accepted.load(std::sync::atomic::Ordering::Relaxed)
    );
    drop(check);
    rec.shutdown().expect("scratch recorder stops");
}
