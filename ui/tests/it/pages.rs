//! The pages over a real recording: keyset paging, filters, the SSE timeline, the conversation tree.

use agentcap_ui::UiConfig;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::harness::{drive, get, rig, rows};

/// The `data-id`s of the list rows, in page order.
fn row_ids(body: &str) -> Vec<String> {
    body.split("data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}

/// The older-page link, HTML-unescaped.
fn older(body: &str) -> Option<String> {
    let i = body.find("id=\"older\" href=\"")?;
    let rest = &body[i + "id=\"older\" href=\"".len()..];
    Some(rest[..rest.find('"').unwrap()].replace("&amp;", "&"))
}

#[tokio::test]
async fn keyset_paging_visits_every_exchange_once_newest_first() {
    let mut r = rig().await;
    for i in 0..11 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let _ = r
            .send(
                Method::GET,
                "/v1/models",
                Bytes::new(),
                &[("x-agentcap-tag-parity", tag)],
            )
            .await;
    }
    r.flush().await;
    let (st, db) = r
        .stop_and_open(UiConfig {
            page_rows: 3,
            ..UiConfig::default()
        })
        .await;
    let want: Vec<String> = rows(
        db.as_ref(),
        "SELECT id FROM exchanges ORDER BY started_at DESC, id DESC",
    )
    .into_iter()
    .map(|r| r[0].as_str().unwrap().to_string())
    .collect();
    assert_eq!(want.len(), 11);
    for (filter, expect) in [("", want.clone()), ("tag=parity:even", Vec::new())] {
        let mut seen = Vec::new();
        let mut next = Some(format!("/?{filter}"));
        let mut pages = 0;
        while let Some(p) = next {
            let reply = get(&st, &p).await;
            assert_eq!(reply.status, StatusCode::OK, "{p}");
            let ids = row_ids(&reply.body);
            assert!(ids.len() <= 3, "a page has at most page_rows rows");
            seen.extend(ids);
            next = older(&reply.body);
            if let Some(n) = next.as_deref().filter(|_| !filter.is_empty()) {
                assert!(n.contains(filter), "the older link keeps the filters: {n}");
            }
            pages += 1;
            assert!(pages < 20);
        }
        if filter.is_empty() {
            assert_eq!(seen, expect, "every exchange once, newest first");
            assert_eq!(pages, 4);
        } else {
            assert_eq!(seen.len(), 6, "the filter holds across pages");
        }
    }
}

#[tokio::test]
async fn filters_narrow_the_list() {
    let mut r = rig().await;
    let _story = drive(&r).await;
    let (st, db) = r.stop_and_open(UiConfig::default()).await;
    let count = |sql: &str| rows(db.as_ref(), sql)[0][0].as_i64().unwrap() as usize;
    let streams = get(&st, "/?stream=yes").await;
    assert_eq!(
        row_ids(&streams.body).len(),
        count("SELECT count(*) FROM exchanges WHERE is_stream")
    );
    assert!(row_ids(&streams.body).len() >= 2);
    let non = get(&st, "/?stream=no").await;
    assert_eq!(
        row_ids(&non.body).len() + row_ids(&streams.body).len(),
        count("SELECT count(*) FROM exchanges")
    );
    let ok = get(&st, "/?status=200&operation=conversations.start").await;
    assert_eq!(
        row_ids(&ok.body).len(),
        count(
            "SELECT count(*) FROM exchanges WHERE status = 200 AND operation = 'conversations.start'"
        )
    );
    let tagged = get(&st, "/?tag=suite:ui").await;
    assert_eq!(
        row_ids(&tagged.body).len(),
        count("SELECT count(*) FROM exchanges WHERE json_extract_string(tags, '$.suite') = 'ui'")
    );
    let none = get(&st, "/?model=no-such-model").await;
    assert!(row_ids(&none.body).is_empty() && none.body.contains("No exchanges match"));
    let from_future = get(&st, "/?from=2999-01-01T00:00").await;
    assert!(row_ids(&from_future.body).is_empty());
    let to_future = get(&st, "/?to=2999-01-01").await;
    assert_eq!(
        row_ids(&to_future.body).len(),
        count("SELECT count(*) FROM exchanges")
    );
}

#[tokio::test]
async fn the_timeline_has_one_mark_per_event_and_the_conversation_its_branch() {
    let mut r = rig().await;
    let story = drive(&r).await;
    let (st, db) = r.stop_and_open(UiConfig::default()).await;
    let streams = rows(
        db.as_ref(),
        "SELECT e.id, count(s.seq) FROM exchanges e JOIN sse_events s ON s.exchange_id = e.id GROUP BY e.id",
    );
    assert!(streams.len() >= 2);
    for row in &streams {
        let id = row[0].as_str().unwrap();
        let n = row[1].as_i64().unwrap() as usize;
        let page = get(&st, &format!("/exchanges/{id}")).await;
        assert_eq!(
            page.body.matches("class=\"ev\"").count(),
            n,
            "{id}: one mark per event"
        );
        assert!(page.body.contains("class=\"ttft\""), "{id}: TTFT marked");
        assert!(page.body.contains("ul class=\"legend\""));
        assert!(
            page.body.contains("id=\"conversation-link\""),
            "{id}: links its conversation"
        );
    }
    // A small per-page bound pages the events with a "more" link.
    let (id, n) = (
        streams[0][0].as_str().unwrap(),
        streams[0][1].as_i64().unwrap() as usize,
    );
    let small = agentcap_ui::UiState::new(
        db.clone(),
        UiConfig {
            timeline_events: 2,
            ..UiConfig::default()
        },
    )
    .unwrap();
    {
        let page = get(&small, &format!("/exchanges/{id}")).await;
        assert_eq!(page.body.matches("class=\"ev\"").count(), 2.min(n));
        if n > 2 {
            assert!(page.body.contains("?events_from=2"), "a more link");
            let next = get(&small, &format!("/exchanges/{id}?events_from=2")).await;
            assert_eq!(next.body.matches("class=\"ev\"").count(), 2.min(n - 2));
        }
    }

    let tree = get(&st, &format!("/conversations/{}", story.root)).await;
    assert_eq!(tree.status, StatusCode::OK);
    assert!(
        tree.body
            .contains(&format!("href=\"/conversations/{}\"", story.branch)),
        "the branch hangs in the tree"
    );
    assert!(
        tree.body.contains("connector <b>web_search</b>"),
        "the connector is named"
    );
    assert!(
        tree.body.contains("call <b>get_weather</b>"),
        "the function call"
    );
    assert!(tree.body.contains("function.result"));
    assert!(
        tree.body.contains("href=\"/exchanges/"),
        "turns link their exchanges"
    );
    let list = get(&st, "/conversations").await;
    assert!(list.body.contains(&story.root) && list.body.contains("simulated upstream"));
    let handoff = rows(
        db.as_ref(),
        "SELECT conversation_id FROM entries WHERE type = 'agent.handoff' LIMIT 1",
    );
    assert_eq!(handoff.len(), 1, "the handoff was recorded");
    let page = get(
        &st,
        &format!("/conversations/{}", handoff[0][0].as_str().unwrap()),
    )
    .await;
    assert!(page.body.contains("handoff <b>"), "handoff from / to");
}

#[tokio::test]
async fn agents_usage_and_the_read_only_sql_console() {
    let mut r = rig().await;
    let _story = drive(&r).await;
    let (st, db) = r.stop_and_open(UiConfig::default()).await;
    let agents = get(&st, "/agents").await;
    assert_eq!(agents.status, StatusCode::OK, "{}", agents.body);
    assert!(agents.body.contains("Searcher") && agents.body.contains("function:get_weather"));
    let usage = get(&st, "/usage").await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    assert!(usage.body.matches("class=\"bar\"").count() >= 1);
    assert_eq!(get(&st, "/usage?by=day").await.status, StatusCode::OK);
    assert_eq!(
        get(&st, "/usage?by=week").await.status,
        StatusCode::BAD_REQUEST
    );

    let n = rows(db.as_ref(), "SELECT count(*) FROM exchanges")[0][0]
        .as_i64()
        .unwrap();
    let q = |sql: &str| format!("/sql?q={}", agentcap_ui::web::enc(sql));
    let count = get(&st, &q("SELECT count(*) AS n FROM exchanges;")).await;
    assert!(
        count.body.contains(&format!("<td>{n}</td>")),
        "{}",
        count.body
    );
    for refused in [
        "DROP TABLE exchanges",
        "SELECT 1; DELETE FROM exchanges",
        "SELECT 1) ; DELETE FROM exchanges; SELECT (1",
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY exchanges TO '/tmp/x.csv'",
    ] {
        let page = get(&st, &q(refused)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("class=\"error\""),
            "{refused}: {}",
            page.body
        );
    }
    assert_eq!(
        rows(db.as_ref(), "SELECT count(*) FROM exchanges")[0][0]
            .as_i64()
            .unwrap(),
        n,
        "nothing was written"
    );
    let hostile = get(&st, &q("SELECT '<script>window.pwned=1</script>' AS x")).await;
    assert!(
        !hostile.body.contains("<script>window") && hostile.body.contains("&lt;script&gt;window")
    );
    let many = get(&st, &q("SELECT * FROM range(5000)")).await;
    assert_eq!(many.body.matches("<tr><td>").count(), agentcap_ui::SQL_ROWS);
    assert!(many.body.contains("cut at"));
}
