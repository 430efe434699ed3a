//! Shipping segments to a `file://` lake: crash-safe names, every row exactly once.

use std::path::Path;
use std::time::Duration;

use agentcap_proxy::recorder::{DbAccess, open_db_with};
use agentcap_proxy::ship::{self, ShipConfig, Shipper, StopAt};
use http::Method;
use serde_json::json;

use crate::harness::{Rig, poll_until, rig_with};

/// Records `n` conversations (one streamed turn, one plain turn each).
async fn traffic(r: &Rig, n: usize) {
    for i in 0..n {
        let start = r
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({"model": "mistral-medium-latest", "inputs": format!("question {i}")})),
            )
            .await;
        let id = start["conversation_id"].as_str().unwrap().to_owned();
        let reply = r
            .via_proxy(
                Method::POST,
                &format!("/v1/conversations/{id}"),
                Some(json!({"inputs": "and then?", "stream": true})),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    r.flush().await;
}

/// Counts (rows, distinct keys) of one table of the lake, read back with DuckDB (hive partitions).
fn lake_count(lake: &Path, table: &str, key: &str) -> (i64, i64) {
    let lake = std::fs::canonicalize(lake).unwrap();
    let conn = open_db_with(None, DbAccess::ReadWrite, &[&lake]).unwrap();
    let glob = format!("{}/table={table}/*/*/*.parquet", lake.display());
    conn.query_row(
        &format!(
            "SELECT count(*), count(DISTINCT {key}) FROM read_parquet(?, hive_partitioning = true)"
        ),
        [glob],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .unwrap()
}

fn db_count(r: &Rig, sql: &str) -> i64 {
    r.one(sql).as_i64().unwrap()
}

fn ship_cfg(lake: &Path) -> ShipConfig {
    let mut c = ShipConfig::new(format!("file://{}", lake.display()));
    c.instance_id = Some("test-a".into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_plan_and_upload_remakes_the_same_segment() {
    let r = rig_with(Default::default(), |c| c.recorder.ship_spool = true).await;
    let lake = tempfile::tempdir().unwrap();
    let handle = r.proxy().recorder().clone();
    traffic(&r, 2).await;
    let planned = db_count(&r, "SELECT count(*) FROM exchanges");

    // Crash 1: right after the plan is durable.
    let mut s = Shipper::open(&handle, ship_cfg(lake.path())).unwrap();
    assert!(s.round_until(StopAt::Planned).unwrap().is_none());
    let plan = s.state().plan.expect("the plan is written first");
    drop(s);
    // More traffic before the restart: the planned segment must not grow.
    traffic(&r, 1).await;

    // Crash 2: the restarted shipper re-makes the same plan and dies after one upload.
    let mut s = Shipper::open(&handle, ship_cfg(lake.path())).unwrap();
    assert_eq!(s.state().plan, Some(plan));
    assert!(s.round_until(StopAt::Uploaded(1)).unwrap().is_none());
    drop(s);
    let first = lake
        .path()
        .join(ship::object_name("", "exchanges", &plan, "test-a"));
    assert!(first.exists(), "{first:?}");

    // Restart: the same segment, the same names, then the rest.
    let mut s = Shipper::open(&handle, ship_cfg(lake.path())).unwrap();
    let seg = s.round().unwrap().expect("the planned segment");
    assert_eq!(seg.plan, plan);
    assert!(seg.objects.iter().any(|o| first.ends_with(o)));
    assert_eq!(seg.plan.last_rowid - seg.plan.first_rowid + 1, planned);
    let rest = s.round().unwrap().expect("what came after the plan");
    assert_eq!(rest.plan.seq, plan.seq + 1);
    assert_eq!(rest.plan.first_rowid, plan.last_rowid + 1);
    assert!(s.round().unwrap().is_none(), "caught up");
    assert_eq!(s.backlog().unwrap(), 0);

    // Every row once: the lake equals the database.
    let ex = db_count(&r, "SELECT count(*) FROM exchanges");
    assert_eq!(lake_count(lake.path(), "exchanges", "id"), (ex, ex));
    let ev = db_count(&r, "SELECT count(*) FROM sse_events");
    assert!(ev > 0);
    assert_eq!(
        lake_count(lake.path(), "sse_events", "exchange_id || '/' || seq"),
        (ev, ev)
    );
    let en = db_count(&r, "SELECT count(*) FROM entries");
    assert_eq!(
        lake_count(
            lake.path(),
            "entries",
            "exchange_id || '/' || direction || '/' || position"
        )
        .0,
        en
    );
    let us = db_count(&r, "SELECT count(*) FROM usage");
    assert_eq!(lake_count(lake.path(), "usage", "exchange_id").0, us);
    let conv = db_count(&r, "SELECT count(*) FROM conversations");
    assert_eq!(lake_count(lake.path(), "conversations", "id").1, conv);
    // Nothing left in the spool.
    let spool = handle.spool_dir().unwrap();
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_ships_by_itself_and_on_shutdown() {
    let lake = tempfile::tempdir().unwrap();
    let dest = lake.path().to_owned();
    let mut r = rig_with(Default::default(), move |c| {
        let mut s = ship_cfg(&dest);
        s.every = Duration::from_secs(3600);
        s.every_rows = 1;
        c.ship = Some(s);
    })
    .await;
    traffic(&r, 1).await;
    let lake_path = lake.path().to_owned();
    poll_until("a first segment", Duration::from_secs(60), async || {
        let n = db_count(&r, "SELECT count(*) FROM exchanges");
        (lake_path.join("table=exchanges").exists()
            && lake_count(&lake_path, "exchanges", "id").0 == n)
            .then_some(())
    })
    .await;
    traffic(&r, 1).await;
    let db = r.db_path();
    let stats = r.proxy.take().unwrap().shutdown().await.unwrap();
    // Shutdown shipped the rest.
    let conn = agentcap_proxy::recorder::open_db(Some(&db), DbAccess::ReadOnly).unwrap();
    let ex: i64 = conn
        .query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ex as u64, stats.exchanges_written);
    assert_eq!(lake_count(lake.path(), "exchanges", "id"), (ex, ex));
}
