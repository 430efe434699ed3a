//! `agentcap export`: closed-file and live (admin) exports, the predicate gate, the time bounds, and
//! the allowed directory that makes `COPY` possible without opening anything else.

use std::path::Path;

use agentcap_proxy::admin::Source;
use agentcap_proxy::export::{
    ExportError, ExportFormat, ExportLimits, ExportOptions, ExportRequest, Filter, TABLES,
    export_file, produce,
};
use agentcap_proxy::recorder::{DbAccess, QueryCancel, open_db, open_db_with, schema, scratch_dir};
use agentcap_sim::SimConfig;
use agentcap_wire::har::Har;
use http::Method;
use serde_json::{Value, json};

use crate::harness::{Rig, rig_with};

/// Records `n` exchanges: streamed and non-streamed turns alternately.
async fn record(r: &Rig, n: usize) {
    for i in 0..n {
        let stream = i % 2 == 0;
        let reply = r
            .via_proxy(
                Method::POST,
                "/v1/conversations",
                Some(json!({"model": "m", "inputs": format!("hello {i}"), "stream": stream})),
                &[("x-agentcap-token", "tok")],
            )
            .await
            .expect("a turn through the proxy");
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    r.flush().await;
}

/// A recording of `n` exchanges whose proxy has stopped (the file is closed).
async fn closed(n: usize) -> (Rig, std::path::PathBuf) {
    let mut r = rig_with(SimConfig::default(), |_| {}).await;
    record(&r, n).await;
    r.proxy
        .take()
        .expect("running")
        .shutdown()
        .await
        .expect("stops");
    let db = r.db_path();
    (r, db)
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = open_db(Some(db), DbAccess::ReadOnly).expect("opens");
    conn.query_row(sql, [], |row| row.get(0)).expect("counts")
}

/// Row count of a Parquet file, read back by DuckDB with only its directory allowed.
fn parquet_rows(file: &Path) -> i64 {
    let dir = std::fs::canonicalize(file.parent().expect("a directory")).expect("exists");
    let conn = open_db_with(None, DbAccess::ReadWrite, &[&dir]).expect("opens");
    let path = dir.join(file.file_name().expect("a name"));
    conn.query_row(
        "SELECT count(*) FROM read_parquet(?)",
        [path.to_str().expect("utf-8")],
        |row| row.get(0),
    )
    .expect("reads the parquet file")
}

fn options(format: ExportFormat, out: &Path, filter: Filter) -> ExportOptions {
    ExportOptions {
        format,
        tables: Vec::new(),
        filter,
        out: out.to_owned(),
    }
}

#[tokio::test]
async fn a_closed_recording_exports_every_table_with_its_row_counts() {
    let (r, db) = closed(4).await;
    let pq = r.dir.path().join("pq");
    let report = export_file(&db, &options(ExportFormat::Parquet, &pq, Filter::default()))
        .expect("parquet export");
    assert!(
        report.answered_by.contains("opened read-only"),
        "{report:?}"
    );
    assert_eq!(report.files.len(), TABLES.len());
    let jl = r.dir.path().join("jl");
    export_file(&db, &options(ExportFormat::Jsonl, &jl, Filter::default())).expect("jsonl export");
    for table in TABLES {
        // Counting statements per table: the names are this test's constants.
        let want = count(&db, &format!("SELECT count(*) FROM {table}"));
        let file = pq.join(format!("{table}.parquet"));
        assert_eq!(parquet_rows(&file), want, "{table}.parquet");
        let text = std::fs::read_to_string(jl.join(format!("{table}.jsonl"))).expect("jsonl");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
            .collect();
        assert_eq!(lines.len() as i64, want, "{table}.jsonl");
    }
    assert!(count(&db, "SELECT count(*) FROM sse_events") > 0);
    // Nothing but the files: the scratch directory is gone.
    let names: Vec<String> = std::fs::read_dir(&pq)
        .expect("listed")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), TABLES.len(), "{names:?}");
}

#[tokio::test]
async fn the_har_holds_every_exchange_with_bodies_events_and_timings() {
    let (r, db) = closed(3).await;
    let out = r.dir.path().join("x.har");
    let report =
        export_file(&db, &options(ExportFormat::Har, &out, Filter::default())).expect("har");
    assert_eq!(report.files[0].rows, 3);
    let har: Har = serde_json::from_slice(&std::fs::read(&out).expect("written")).expect("HAR");
    assert_eq!(har.log.version, "1.2");
    assert_eq!(har.log.entries.len(), 3);
    let streamed = har
        .log
        .entries
        .iter()
        .find(|e| {
            e.response
                .content
                .mime_type
                .starts_with("text/event-stream")
        })
        .expect("a streamed entry");
    let text = streamed.response.content.text.as_deref().expect("text");
    assert!(
        text.starts_with("event: conversation.response.started\n"),
        "{text}"
    );
    let events = streamed.agentcap.as_ref().expect("_agentcap")["sseEvents"]
        .as_array()
        .expect("event times")
        .len();
    assert_eq!(text.matches("\n\n").count(), events);
    let id = streamed.agentcap.as_ref().expect("_agentcap")["exchangeId"]
        .as_str()
        .expect("id")
        .to_owned();
    let conn = open_db(Some(&db), DbAccess::ReadOnly).expect("opens");
    let recorded: i64 = conn
        .query_row(
            "SELECT event_count FROM exchanges WHERE id = ?",
            [&id],
            |row| row.get(0),
        )
        .expect("event count");
    assert_eq!(events as i64, recorded);
    let post = streamed.request.post_data.as_ref().expect("postData");
    let body: Value = serde_json::from_str(&post.text).expect("JSON body");
    assert_eq!(body["stream"], true);
    assert!(streamed.time >= streamed.timings.wait);
    assert!(
        streamed
            .request
            .headers
            .iter()
            .all(|h| h.name != "authorization" || h.value == "[REDACTED]")
    );
}

#[tokio::test]
async fn since_and_until_choose_exchanges_and_the_other_tables_follow() {
    let (r, db) = closed(3).await;
    let conn = open_db(Some(&db), DbAccess::ReadOnly).expect("opens");
    let middle_us: i64 = conn
        .query_row(
            "SELECT epoch_us(started_at) FROM exchanges ORDER BY started_at LIMIT 1 OFFSET 1",
            [],
            |row| row.get(0),
        )
        .expect("the middle start");
    drop(conn);
    let middle = chrono::DateTime::from_timestamp_micros(middle_us)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let since = Filter {
        since: Some(middle.clone()),
        ..Filter::default()
    };
    let until = Filter {
        until: Some(middle.clone()),
        ..Filter::default()
    };
    let a = r.dir.path().join("since");
    let b = r.dir.path().join("until");
    let ra = export_file(&db, &options(ExportFormat::Jsonl, &a, since)).expect("since");
    let rb = export_file(&db, &options(ExportFormat::Jsonl, &b, until)).expect("until");
    let rows = |rep: &agentcap_proxy::export::ExportReport, t: &str| {
        rep.files
            .iter()
            .find(|f| f.what == t)
            .expect("the table")
            .rows as i64
    };
    assert_eq!((rows(&ra, "exchanges"), rows(&rb, "exchanges")), (2, 1));
    for t in ["sse_events", "entries", "usage", "conversations"] {
        let all = count(&db, &format!("SELECT count(*) FROM {t}"));
        assert_eq!(
            rows(&ra, t) + rows(&rb, t),
            all,
            "{t} follows the exchanges"
        );
    }
    // A bound is a parameter: text that would change a pasted statement is only a bad timestamp.
    let sneaky = Filter {
        since: Some("2000-01-01' OR '1'='1".to_owned()),
        ..Filter::default()
    };
    let c = r.dir.path().join("sneaky");
    assert!(export_file(&db, &options(ExportFormat::Jsonl, &c, sneaky)).is_err());
}

#[tokio::test]
async fn a_where_that_tries_to_write_or_escape_is_refused() {
    let (r, db) = closed(2).await;
    let digest = || {
        count(&db, "SELECT count(*) FROM exchanges") * 1000
            + count(&db, "SELECT count(*) FROM sse_events")
    };
    let before = digest();
    let outside = r.dir.path().join("outside.csv");
    let attacks = [
        "true) OR (true".to_owned(),
        "true); DELETE FROM exchanges; --".to_owned(),
        "true) UNION ALL (SELECT 'x'".to_owned(),
        format!("true) TO '{}' (FORMAT csv) --", outside.display()),
        "true\n) --".to_owned(),
        "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0".to_owned(),
        "id IN (SELECT id FROM exchanges WHERE checkpoint() IS NULL)".to_owned(),
        "current_setting('enable_external_access') OR true".to_owned(),
        "EXISTS (SELECT * FROM glob('**'))".to_owned(),
        String::new(),
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let out = r.dir.path().join(format!("attack-{i}"));
        let filter = Filter {
            predicate: Some(attack.clone()),
            ..Filter::default()
        };
        let result = export_file(&db, &options(ExportFormat::Jsonl, &out, filter));
        let refused = match &result {
            Err(e) => e.to_string(),
            // A predicate that is harmless SQL may run; it must not have widened the selection.
            Ok(rep) => {
                assert!(
                    rep.files
                        .iter()
                        .all(|f| f.what != "exchanges" || f.rows <= 2),
                    "{attack:?}: {rep:?}"
                );
                continue;
            }
        };
        assert!(!refused.is_empty(), "{attack:?}");
    }
    // The escapes are refused as such, not merely failing later.
    for attack in &attacks[..5] {
        let filter = Filter {
            predicate: Some(attack.clone()),
            ..Filter::default()
        };
        let e = export_file(
            &db,
            &options(ExportFormat::Jsonl, &r.dir.path().join("again"), filter),
        )
        .expect_err(attack);
        assert!(e.to_string().contains("refused"), "{attack:?}: {e}");
    }
    assert!(!outside.exists(), "COPY escaped to {}", outside.display());
    assert_eq!(digest(), before);
    // A predicate that is one read-only expression works.
    let ok = Filter {
        predicate: Some("is_stream AND status = 200".to_owned()),
        ..Filter::default()
    };
    let rep = export_file(
        &db,
        &options(ExportFormat::Jsonl, &r.dir.path().join("ok"), ok),
    )
    .expect("a plain predicate");
    assert_eq!(rep.files[0].rows, 1);
}

/// The byte cap of an export: the HAR writer counts its bytes and stops before the cap (it used to
/// write the whole file, then refuse it); a table's `COPY`, measured once written, is refused too.
/// Neither leaves a file behind.
#[test]
fn a_har_stops_at_its_byte_cap_and_a_table_over_it_is_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("big.duckdb");
    {
        let conn = open_db(Some(&db), DbAccess::ReadWrite).expect("a recording");
        schema::migrate(&conn).expect("schema");
        // 20,000 exchanges with a 1 kB body each: over 30 MB as HAR, 30 times the cap.
        conn.execute_batch(
            "INSERT INTO exchanges (id, started_at, method, path, status, outcome, request_body_raw) \
             SELECT printf('x%08d', i), to_timestamp(1767225600 + i), \
             'POST', '/v1/conversations', 200, 'complete', repeat('b', 1000) || i \
             FROM range(20000) t(i)",
        )
        .expect("rows");
    }
    let outside = tempfile::tempdir_in(dir.path()).expect("a directory for the scratch one");
    let scratch = scratch_dir(Some(outside.path())).expect("scratch");
    let conn = open_db_with(Some(&db), DbAccess::ReadOnly, &[scratch.path()]).expect("opens");
    let cap = 1 << 20;
    let limits = ExportLimits {
        max_bytes: cap,
        ..ExportLimits::default()
    };
    for (format, table) in [
        (ExportFormat::Har, None),
        (ExportFormat::Jsonl, Some("exchanges")),
    ] {
        let req = ExportRequest {
            format,
            table: table.map(str::to_owned),
            filter: Filter::default(),
        };
        match produce(&conn, scratch.path(), &req, &limits, &QueryCancel::new()) {
            Err(ExportError::TooLarge { bytes, cap: c, .. }) => {
                assert_eq!(c, cap);
                if format == ExportFormat::Har {
                    assert!(
                        bytes <= cap,
                        "the HAR writer wrote {bytes} bytes, over the cap"
                    );
                } else {
                    assert!(bytes > cap, "{bytes} bytes");
                }
            }
            other => panic!("{format:?}: not refused as too large: {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(scratch.path())
            .expect("listed")
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(left.is_empty(), "{format:?} left {left:?}");
    }
}

#[test]
fn an_export_directory_opens_that_directory_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let allowed = std::fs::canonicalize(dir.path())
        .expect("exists")
        .join("in");
    std::fs::create_dir(&allowed).expect("made");
    let conn = open_db_with(None, DbAccess::ReadWrite, &[&allowed]).expect("opens");
    conn.execute_batch("CREATE TABLE t AS SELECT range AS i FROM range(5)")
        .expect("a table");
    let inside = allowed.join("t.parquet");
    let copy = |target: &Path| {
        conn.execute(
            // The test's own paths, quoted by hand: COPY takes no parameter for its target.
            &format!(
                "COPY t TO '{}' (FORMAT parquet)",
                target.display().to_string().replace('\'', "''")
            ),
            [],
        )
    };
    assert_eq!(copy(&inside).expect("COPY into the allowed directory"), 5);
    for target in [
        dir.path().join("beside.parquet"),
        allowed.join("..").join("up.parquet"),
    ] {
        assert!(copy(&target).is_err(), "{}", target.display());
        assert!(!target.exists());
    }
    for sql in [
        "SELECT count(*) FROM read_csv('/etc/passwd')",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET allowed_directories",
    ] {
        assert!(conn.execute_batch(sql).is_err(), "{sql} should fail");
    }
    // Without a directory nothing is writable, as before.
    let locked = open_db(None, DbAccess::ReadWrite).expect("opens");
    locked
        .execute_batch("CREATE TABLE t AS SELECT 1 AS i")
        .expect("a table");
    let sql = format!(
        "COPY t TO '{}' (FORMAT parquet)",
        allowed.join("no.parquet").display()
    );
    assert!(locked.execute_batch(&sql).is_err());
}

#[tokio::test]
async fn a_running_proxy_exports_through_its_admin_listener() {
    let r = rig_with(SimConfig::default(), |c| c.auth_token = Some("tok".into())).await;
    record(&r, 3).await;
    let admin = format!("http://{}", r.proxy().admin_addr().expect("admin"));
    // The file is held by the proxy: the export goes through the admin listener.
    let src = Source::new(&admin, Some("tok".into()), Some(r.db_path()));
    let out = r.dir.path().join("live");
    let rep = src
        .export(&options(ExportFormat::Parquet, &out, Filter::default()))
        .await
        .expect("live export");
    assert!(rep.answered_by.contains("via the proxy"), "{rep:?}");
    for f in &rep.files {
        assert_eq!(
            parquet_rows(&f.path),
            f.rows as i64,
            "{}: the header's row count",
            f.what
        );
    }
    let exchanges = rep.files.iter().find(|f| f.what == "exchanges").expect("x");
    assert_eq!(exchanges.rows, 3);
    let har = r.dir.path().join("live.har");
    let filter = Filter {
        predicate: Some("is_stream".into()),
        ..Filter::default()
    };
    let rep = src
        .export(&options(ExportFormat::Har, &har, filter))
        .await
        .expect("live HAR");
    assert_eq!(rep.files[0].rows, 2);
    let parsed: Har = serde_json::from_slice(&std::fs::read(&har).expect("written")).expect("HAR");
    assert_eq!(parsed.log.entries.len(), 2);
    // Refusals come back as refusals; the proxy keeps recording.
    let bad = Filter {
        predicate: Some("true) OR (true".into()),
        ..Filter::default()
    };
    let e = src
        .export(&options(ExportFormat::Jsonl, &out, bad))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("refused"), "{e}");
    // The same checks as every admin endpoint: no token, no export.
    let anonymous = Source::new(&admin, None, None);
    let e = anonymous
        .export(&options(ExportFormat::Har, &har, Filter::default()))
        .await
        .expect_err("no token");
    assert!(e.to_string().contains("token"), "{e}");
    record(&r, 1).await;
    assert_eq!(r.one("SELECT count(*) FROM exchanges"), json!(4));
}
