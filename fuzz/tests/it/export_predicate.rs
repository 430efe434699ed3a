//! `agentcap export --where`: arbitrary text never panics the predicate check, and a predicate it accepts, run
//! through the real export (the `COPY` into a private allowed directory) on a scratch recording, changes nothing,
//! writes no file outside that directory, and never selects more exchanges than there are. Also the HAR body
//! codec: any bytes survive `body_text` / `body_bytes`.

use agentcap_proxy::export::{ExportFormat, ExportLimits, ExportRequest, Filter, produce};
use agentcap_proxy::recorder::query::check_predicate;
use agentcap_proxy::recorder::{
    DbAccess, QueryCancel, RecorderError, open_db, open_db_with, schema, scratch_dir,
};
use agentcap_wire::har;

const SEEDS: &[&[u8]] = &[
    b"status = 200",
    b"true) OR (true",
    b"true); DELETE FROM exchanges; --",
    b"true) TO '/tmp/x.csv' (FORMAT csv) --",
    b"id IN (SELECT id FROM exchanges WHERE path LIKE '/v1/%')",
    b"(SELECT count(*) FROM read_csv('/etc/passwd')) > 0",
    b"tags->>'i' = '1' OR method = 'POST'",
    b"EXISTS (SELECT * FROM glob('*'))",
    b"status IN (SELECT 418 UNION SELECT 200) -- ",
    b"E'\\'' = '' OR true",
    b"$$a)$$ = 'a)'",
    b"\xff\xfe",
];

fn digest(db: &std::path::Path) -> String {
    let conn = open_db(Some(db), DbAccess::ReadOnly).expect("opens");
    conn.query_row(
        "SELECT (SELECT count(*) FROM exchanges)::VARCHAR || ':' || (SELECT md5(string_agg(CAST(e AS VARCHAR), '|' ORDER BY id)) FROM exchanges e) \
         || ':' || (SELECT count(*) FROM sse_events)::VARCHAR",
        [],
        |r| r.get(0),
    )
    .expect("digest")
}

#[test]
fn export_predicate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("scratch.duckdb");
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
    let before = digest(&db);
    let outside = tempfile::tempdir_in(dir.path()).expect("a directory for the scratch one");
    let scratch = scratch_dir(Some(outside.path())).expect("scratch");
    let conn = open_db_with(Some(&db), DbAccess::ReadOnly, &[scratch.path()]).expect("opens");
    let limits = ExportLimits {
        timeout: std::time::Duration::from_millis(500),
        ..ExportLimits::default()
    };
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    crate::fuzz("export_predicate", SEEDS, |input: &[u8]| {
        let (text, encoding) = har::body_text(input);
        assert_eq!(
            har::body_bytes(&text, encoding.as_deref()).as_deref(),
            Some(input)
        );
        let p = String::from_utf8_lossy(input).into_owned();
        match check_predicate(&p) {
            Err(RecorderError::QueryRefused { reason }) => assert!(!reason.is_empty()),
            Err(e) => panic!("the check failed with something else than a refusal: {e}"),
            Ok(()) => {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let req = ExportRequest {
                    format: ExportFormat::Jsonl,
                    table: Some("exchanges".into()),
                    filter: Filter {
                        predicate: Some(p.clone()),
                        ..Filter::default()
                    },
                };
                if let Ok(f) = produce(&conn, scratch.path(), &req, &limits, &QueryCancel::new()) {
                    assert!(f.rows <= 2, "{p:?} selected {} exchanges of 2", f.rows);
                    assert!(f.path.starts_with(scratch.path()));
                    std::fs::remove_file(&f.path).expect("removed");
                }
                let beside: Vec<_> = std::fs::read_dir(outside.path())
                    .expect("listed")
                    .map(|e| e.expect("entry").path())
                    .collect();
                assert_eq!(
                    beside,
                    [scratch.path().to_owned()],
                    "{p:?} wrote beside the scratch directory"
                );
                assert_eq!(
                    std::fs::read_dir(scratch.path()).expect("listed").count(),
                    0,
                    "{p:?} left a file in the scratch directory"
                );
            }
        }
    });
    drop(conn);
    assert_eq!(digest(&db), before);
    println!(
        "export_predicate: {} inputs accepted and exported",
        accepted.load(std::sync::atomic::Ordering::Relaxed)
    );
}
