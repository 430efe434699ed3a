//! The read-side views over a real recording: a conversation with a web search, a function call round trip,
//! a failed turn, a restart and a restart of that branch, driven through the proxy; then `list` and `show`
//! are checked by structure (which turns, which entries, where each branch hangs), never by timing values.
//! Their text rendering is checked over a recording in the `ui` crate's tests (`text.rs`).

use agentcap_proxy::recorder::{self, QueryResult, RecorderError};
use agentcap_proxy::views::{self, ConversationTree, EntryNode};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Rig, rig};

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

fn base(op: &Option<String>) -> &str {
    let op = op.as_deref().unwrap_or("");
    op.strip_suffix("_stream").unwrap_or(op)
}

fn kinds(entries: &[EntryNode]) -> Vec<(&str, &str)> {
    entries
        .iter()
        .map(|e| (e.direction.as_str(), e.kind.as_str()))
        .collect()
}

/// Ids of the conversation and what it drove.
struct Story {
    agent: String,
    root: String,
    first_answer: String,
    tool_call_id: String,
    branch: String,
    branch_answer: String,
    twig: String,
}

async fn drive(r: &Rig) -> Story {
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
    let agent = r
        .ok(Method::POST, "/v1/agents", Some(json!({"model": "mistral-medium-latest", "name": "Searcher", "tools": [{"type": "web_search"}, weather]})))
        .await;
    let agent = s(&agent["id"]);

    // Turn 1: the web search.
    let start = r
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"agent_id": agent, "inputs": "Who won the last European football cup?"})),
        )
        .await;
    let root = s(&start["conversation_id"]);
    assert_eq!(start["outputs"][0]["type"], "tool.execution");
    assert_eq!(start["outputs"][1]["type"], "message.output");
    let first_answer = s(&start["outputs"][1]["id"]);

    // Turn 2: a function call.
    let call = r
        .ok(
            Method::POST,
            &format!("/v1/conversations/{root}"),
            Some(json!({"inputs": "What is the weather in Paris? Ask get_weather."})),
        )
        .await;
    assert_eq!(call["outputs"][0]["type"], "function.call");
    let tool_call_id = s(&call["outputs"][0]["tool_call_id"]);

    // Turn 3: its result, streamed.
    let result = json!({"inputs": [{"type": "function.result", "tool_call_id": tool_call_id, "result": "{\"temp_c\": 21}"}], "stream": true});
    let streamed = r
        .via_proxy(
            Method::POST,
            &format!("/v1/conversations/{root}"),
            Some(result),
            &[("accept", "text/event-stream")],
        )
        .await
        .unwrap();
    assert_eq!(streamed.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&streamed.body).contains("conversation.response.done"));

    // A failed turn (the twin answers 500) and a read: exchanges of the conversation, not answers.
    let failed = r
        .via_proxy(
            Method::POST,
            &format!("/v1/conversations/{root}"),
            Some(json!({"inputs": "again?"})),
            &[("x-agentcap-sim-fault", "500")],
        )
        .await
        .unwrap();
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    r.ok(
        Method::GET,
        &format!("/v1/conversations/{root}/history"),
        None,
    )
    .await;

    // A branch from the first answer, then a branch of the branch from its own answer.
    let restart = r
        .ok(
            Method::POST,
            &format!("/v1/conversations/{root}/restart"),
            Some(json!({"from_entry_id": first_answer, "inputs": "And the one before?"})),
        )
        .await;
    let branch = s(&restart["conversation_id"]);
    let outs = restart["outputs"].as_array().unwrap();
    let branch_answer = s(&outs.last().unwrap()["id"]);
    let restart = r
        .ok(
            Method::POST,
            &format!("/v1/conversations/{branch}/restart"),
            Some(json!({"from_entry_id": branch_answer, "inputs": "And in 2016?"})),
        )
        .await;
    let twig = s(&restart["conversation_id"]);
    r.flush().await;
    Story {
        agent,
        root,
        first_answer,
        tool_call_id,
        branch,
        branch_answer,
        twig,
    }
}

fn query(r: &Rig) -> impl Fn(&str, &[Value]) -> Result<QueryResult, RecorderError> + '_ {
    move |sql: &str, params: &[Value]| {
        r.proxy().recorder().query_with(
            sql,
            params,
            &Default::default(),
            &recorder::QueryCancel::new(),
        )
    }
}

#[tokio::test]
async fn show_builds_the_conversation_tree_with_its_branches() {
    let mut r = rig().await;
    let st = drive(&r).await;
    let tree = views::show(query(&r), &st.root)
        .unwrap()
        .expect("the conversation is recorded");

    assert_eq!(tree.conversation.id, st.root);
    assert_eq!(
        tree.conversation.agent_id.as_deref(),
        Some(st.agent.as_str())
    );
    assert_eq!(tree.conversation.parent_conversation_id, None);
    assert!(tree.ancestors.is_empty());
    assert!(
        tree.detached_branches.is_empty(),
        "every branch hangs under its entry"
    );

    let ops: Vec<&str> = tree.turns.iter().map(|t| base(&t.operation)).collect();
    assert_eq!(
        ops,
        [
            "conversations.start",
            "conversations.append",
            "conversations.append",
            "conversations.append"
        ],
        "turns only, in order"
    );

    // Turn 1: the question in, the search and the answer out.
    let t1 = &tree.turns[0];
    assert_eq!(
        kinds(&t1.entries),
        [
            ("input", "message.input"),
            ("output", "tool.execution"),
            ("output", "message.output")
        ]
    );
    assert_eq!(
        t1.entries[0].text.as_deref(),
        Some("Who won the last European football cup?")
    );
    assert_eq!(t1.entries[1].name.as_deref(), Some("web_search"));
    assert!(
        t1.entries[1]
            .arguments
            .as_deref()
            .unwrap_or("")
            .contains("query")
    );
    assert_eq!(
        t1.entries[2].entry_id.as_deref(),
        Some(st.first_answer.as_str())
    );
    assert!(t1.entries[2].created_at.is_some(), "entry times are kept");

    // Turn 2: the function call; turn 3: its result, streamed.
    let t2 = &tree.turns[1];
    assert_eq!(
        kinds(&t2.entries),
        [("input", "message.input"), ("output", "function.call")]
    );
    assert_eq!(t2.entries[1].name.as_deref(), Some("get_weather"));
    assert!(
        t2.entries[1]
            .arguments
            .as_deref()
            .unwrap_or("")
            .contains("city")
    );
    assert_eq!(
        t2.entries[1].tool_call_id.as_deref(),
        Some(st.tool_call_id.as_str())
    );
    let t3 = &tree.turns[2];
    assert!(t3.is_stream);
    assert_eq!(
        kinds(&t3.entries),
        [("input", "function.result"), ("output", "message.output")]
    );
    assert_eq!(
        t3.entries[0].tool_call_id.as_deref(),
        Some(st.tool_call_id.as_str())
    );
    assert!(
        t3.entries[1]
            .text
            .as_deref()
            .unwrap_or("")
            .contains("get_weather returned")
    );
    assert!(
        t3.timings.first_event_us.is_some(),
        "a stream has a first event"
    );
    // Turn 4: the failure; the recorder keeps no entries of failed turns.
    let t4 = &tree.turns[3];
    assert_eq!(t4.status, Some(500));
    assert!(t4.entries.is_empty());

    for t in &tree.turns {
        assert!(
            t.timings.total_us.is_some() && t.timings.response_headers_us.is_some(),
            "timings of {}",
            t.exchange_id
        );
        assert!(t.started_at.is_some());
        let positions: Vec<(&str, i64)> = t
            .entries
            .iter()
            .map(|e| (e.direction.as_str(), e.position))
            .collect();
        let mut sorted = positions.clone();
        sorted.sort_by_key(|(d, p)| (*d != "input", *p));
        assert_eq!(positions, sorted, "inputs first, then outputs, by position");
    }
    for t in &tree.turns[..3] {
        assert!(
            t.usage.and_then(|u| u.total_tokens).unwrap_or(0) > 0,
            "usage of {}",
            t.exchange_id
        );
    }

    // Branches: only under the first answer; the branch's branch under the branch's answer.
    let hanging: Vec<(&str, usize)> = tree
        .turns
        .iter()
        .flat_map(|t| &t.entries)
        .filter(|e| !e.branches.is_empty())
        .map(|e| (e.entry_id.as_deref().unwrap_or(""), e.branches.len()))
        .collect();
    assert_eq!(hanging, [(st.first_answer.as_str(), 1)]);
    let branch: &ConversationTree = &t1.entries[2].branches[0];
    assert_eq!(branch.conversation.id, st.branch);
    assert_eq!(
        branch.conversation.parent_conversation_id.as_deref(),
        Some(st.root.as_str())
    );
    assert_eq!(
        branch.conversation.from_entry_id.as_deref(),
        Some(st.first_answer.as_str())
    );
    assert_eq!(branch.turns.len(), 1);
    assert_eq!(base(&branch.turns[0].operation), "conversations.restart");
    assert_eq!(
        branch.turns[0].entries[0].text.as_deref(),
        Some("And the one before?")
    );
    let answer = branch.turns[0].entries.last().unwrap();
    assert_eq!(answer.entry_id.as_deref(), Some(st.branch_answer.as_str()));
    assert_eq!(answer.branches.len(), 1);
    let twig = &answer.branches[0];
    assert_eq!(twig.conversation.id, st.twig);
    assert_eq!(base(&twig.turns[0].operation), "conversations.restart");
    assert!(
        twig.ancestors.is_empty(),
        "ancestors are given for the shown conversation only"
    );

    // Seen from the twig: the chain up to the root.
    let from_twig = views::show(query(&r), &st.twig).unwrap().unwrap();
    let chain: Vec<(&str, Option<&str>)> = from_twig
        .ancestors
        .iter()
        .map(|a| (a.conversation_id.as_str(), a.from_entry_id.as_deref()))
        .collect();
    assert_eq!(
        chain,
        [
            (st.root.as_str(), Some(st.first_answer.as_str())),
            (st.branch.as_str(), Some(st.branch_answer.as_str()))
        ]
    );
    assert!(views::show(query(&r), "conv_missing").unwrap().is_none());
    // An id is a parameter: quotes in it are data, not SQL.
    assert!(
        views::show(query(&r), "conv_missing' OR '1'='1")
            .unwrap()
            .is_none()
    );

    // JSON keeps the same shape.
    let j = serde_json::to_value(&tree).unwrap();
    assert_eq!(
        j["turns"][0]["entries"][2]["branches"][0]["conversation"]["id"],
        st.branch.as_str()
    );
    assert_eq!(j["turns"][0]["entries"][0]["type"], "message.input");

    // The same tree from the file once the proxy has stopped.
    let db = r.db_path();
    r.proxy.take().unwrap().shutdown().await.unwrap();
    let from_file = views::show(
        |sql, params| recorder::query_file_read_only(&db, sql, params, &Default::default()),
        &st.root,
    )
    .unwrap()
    .unwrap();
    assert_eq!(from_file, tree);
}

#[tokio::test]
async fn list_gives_one_row_per_conversation_newest_first() {
    let r = rig().await;
    let st = drive(&r).await;
    let other = r
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "mistral-small-latest", "inputs": "hi"})),
        )
        .await;
    let other = s(&other["conversation_id"]);
    // A stream the upstream ends with an error event: an error of that conversation.
    let broken = r
        .via_proxy(
            Method::POST,
            &format!("/v1/conversations/{other}"),
            Some(json!({"inputs": "more", "stream": true})),
            &[("x-agentcap-sim-fault", "error-event")],
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&broken.body).contains("conversation.response.error"));
    r.flush().await;

    let rows = views::list(query(&r), 50).unwrap();
    let ids: Vec<&str> = rows.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            other.as_str(),
            st.twig.as_str(),
            st.branch.as_str(),
            st.root.as_str()
        ]
    );
    let top2 = views::list(query(&r), 2).unwrap();
    assert_eq!(top2, rows[..2].to_vec());
    assert!(
        rows.iter().all(|c| c.simulated_upstream),
        "the twin's responses carry its header, so every conversation is labelled"
    );

    let by_id = |id: &str| rows.iter().find(|c| c.id == id).unwrap();
    let root = by_id(&st.root);
    assert_eq!(root.agent_id.as_deref(), Some(st.agent.as_str()));
    assert_eq!(root.model.as_deref(), Some("mistral-medium-latest"));
    assert_eq!(root.exchanges, 5, "four turns and one read");
    assert_eq!(root.errors, 1, "the 500");
    assert_eq!(root.turns, 3, "failed turns are not counted");
    assert!(root.first_seen.is_some() && root.last_seen.is_some() && root.duration_us.is_some());
    assert_eq!(root.parent_conversation_id, None);
    // One conversation's summary (its aggregates scoped to its own exchanges) is its row of the list.
    for row in &rows {
        let q = views::sql::summary_by_id_sql(&row.id);
        let one = views::summaries(&query(&r)(q.text, &q.params).unwrap());
        assert_eq!(one, vec![row.clone()], "{}", row.id);
    }
    let tree = views::show(query(&r), &st.root).unwrap().unwrap();
    let turn_tokens: i64 = tree
        .turns
        .iter()
        .filter_map(|t| t.usage.and_then(|u| u.total_tokens))
        .sum();
    assert_eq!(root.total_tokens, turn_tokens);
    assert!(root.total_tokens > 0);

    let branch = by_id(&st.branch);
    assert_eq!(
        (
            branch.parent_conversation_id.as_deref(),
            branch.from_entry_id.as_deref()
        ),
        (Some(st.root.as_str()), Some(st.first_answer.as_str()))
    );
    assert_eq!((branch.turns, branch.exchanges, branch.errors), (1, 1, 0));
    assert_eq!(branch.agent_id.as_deref(), Some(st.agent.as_str()));
    let twig = by_id(&st.twig);
    assert_eq!(
        (
            twig.parent_conversation_id.as_deref(),
            twig.from_entry_id.as_deref()
        ),
        (Some(st.branch.as_str()), Some(st.branch_answer.as_str()))
    );
    let model_conv = by_id(&other);
    assert_eq!(
        (model_conv.agent_id.as_deref(), model_conv.model.as_deref()),
        (None, Some("mistral-small-latest"))
    );
    assert_eq!(
        (model_conv.exchanges, model_conv.errors),
        (2, 1),
        "the error event"
    );
    let tree = views::show(query(&r), &other).unwrap().unwrap();
    assert_eq!(tree.turns[0].stream_error, None);
    assert!(
        tree.turns[1]
            .stream_error
            .as_deref()
            .unwrap_or("")
            .contains("injected fault")
    );

    let j = serde_json::to_value(&rows).unwrap();
    assert_eq!(j[3]["id"], st.root.as_str());
    assert_eq!(j[3]["errors"], 1);
    assert_eq!(j[3]["simulated_upstream"], true);
}
