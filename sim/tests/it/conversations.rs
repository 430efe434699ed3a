//! Conversations: start, append, history, messages, get, list, restart, delete; triggers and connectors.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Twin, assert_id, assert_ts, default_twin};

async fn agent(t: &Twin, body: Value) -> String {
    t.ok(Method::POST, "/v1/agents", Some(body)).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn start_append_history_messages_restart() {
    let t = default_twin().await;
    let r = t.ok(Method::POST, "/v1/conversations", Some(json!({"model": "mistral-small-latest", "inputs": "Hello there", "name": "greeting"}))).await;
    assert_eq!(r["object"], "conversation.response");
    assert_id(&r["conversation_id"], "conv_");
    let out = &r["outputs"][0];
    assert_eq!(out["type"], "message.output");
    assert_eq!(out["object"], "entry");
    assert_id(&out["id"], "msg_");
    assert_ts(&out["created_at"]);
    assert_ts(&out["completed_at"]);
    assert_eq!(out["role"], "assistant");
    assert_eq!(out["agent_id"], Value::Null);
    assert!(out["content"].as_str().unwrap().contains("Hello there"));
    let u = &r["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(u["connector_tokens"], Value::Null);
    let conv = r["conversation_id"].as_str().unwrap().to_string();

    let a = t
        .ok(
            Method::POST,
            &format!("/v1/conversations/{conv}"),
            Some(json!({"inputs": [{"role": "user", "content": "And again"}]})),
        )
        .await;
    assert_eq!(a["conversation_id"], conv.as_str(), "append keeps the id");

    let h = t
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conv}/history"),
            None,
        )
        .await;
    assert_eq!(h["object"], "conversation.history");
    let types: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "message.input",
            "message.output",
            "message.input",
            "message.output"
        ]
    );
    let first = &h["entries"][0];
    assert_eq!(first["content"], "Hello there");
    assert_eq!(first["completed_at"], Value::Null);
    assert_id(&first["id"], "msg_");
    let m = t
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conv}/messages"),
            None,
        )
        .await;
    assert_eq!(m["object"], "conversation.messages");
    assert_eq!(m["messages"].as_array().unwrap().len(), 4);

    let g = t
        .ok(Method::GET, &format!("/v1/conversations/{conv}"), None)
        .await;
    assert_eq!(g["object"], "conversation");
    assert_eq!(g["model"], "mistral-small-latest");
    assert_eq!(g["name"], "greeting");
    assert_eq!(
        g["tools"],
        json!([]),
        "tools may only be omitted or a list, never null"
    );
    assert!(g["completion_args"].is_object());

    let from = h["entries"][1]["id"].as_str().unwrap();
    let rs = t
        .ok(
            Method::POST,
            &format!("/v1/conversations/{conv}/restart"),
            Some(json!({"from_entry_id": from, "inputs": "Branch here"})),
        )
        .await;
    let branch = rs["conversation_id"].as_str().unwrap();
    assert_ne!(branch, conv, "restart creates a new conversation");
    let bh = t
        .ok(
            Method::GET,
            &format!("/v1/conversations/{branch}/history"),
            None,
        )
        .await;
    let contents: Vec<String> = bh["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(contents.len(), 4);
    assert_eq!(contents[0], "Hello there");
    assert_eq!(contents[2], "Branch here");

    let list = t.ok(Method::GET, "/v1/conversations", None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [branch, conv.as_str()], "newest first");

    let d = t
        .call(Method::DELETE, &format!("/v1/conversations/{conv}"), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert_eq!(
        t.call(Method::GET, &format!("/v1/conversations/{conv}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.call(
            Method::POST,
            &format!("/v1/conversations/{conv}"),
            Some(json!({"inputs": "x"}))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn agent_conversation_with_web_search_and_code_interpreter() {
    let t = default_twin().await;
    let ag = agent(&t, json!({"model": "mistral-medium-latest", "name": "Searcher", "tools": [{"type": "web_search"}]})).await;
    let r = t
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"agent_id": ag, "inputs": "Who won the last European football cup?"})),
        )
        .await;
    let outs = r["outputs"].as_array().unwrap();
    assert_eq!(outs[0]["type"], "tool.execution");
    assert_eq!(outs[0]["name"], "web_search");
    assert_id(&outs[0]["id"], "tool_exec_");
    assert!(outs[0]["arguments"].is_string());
    assert_eq!(outs[1]["type"], "message.output");
    assert_eq!(outs[1]["agent_id"], ag.as_str());
    let chunks = outs[1]["content"].as_array().unwrap();
    assert_eq!(chunks[0]["type"], "text");
    assert!(chunks.iter().any(|c| c["type"] == "tool_reference"
        && c["tool"] == "web_search"
        && c["url"].is_string()));
    let u = &r["usage"];
    assert_eq!(u["connectors"], json!({"web_search": 1}));
    let ct = u["connector_tokens"].as_u64().unwrap();
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap() + ct
    );
    let g = t
        .ok(
            Method::GET,
            &format!(
                "/v1/conversations/{}",
                r["conversation_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(g["agent_id"], ag.as_str());
    assert_eq!(g["agent_version"], 0);

    let coder = agent(
        &t,
        json!({"model": "m", "name": "Coder", "tools": [{"type": "code_interpreter"}]}),
    )
    .await;
    let r = t
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"agent_id": coder, "inputs": "Compute the words in this sentence"})),
        )
        .await;
    let types: Vec<&str> = r["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["message.output", "tool.execution", "message.output"]
    );
    assert_eq!(r["outputs"][1]["info"]["code_output"], "6\n");
}

#[tokio::test]
async fn function_call_round_trip() {
    let t = default_twin().await;
    let tool = json!({"type": "function", "function": {"name": "get_rate", "description": "Interest rate", "parameters": {"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}}});
    let r = t
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(
                json!({"model": "m", "tools": [tool], "inputs": "What is the rate? Use get_rate."}),
            ),
        )
        .await;
    let call = &r["outputs"][0];
    assert_eq!(call["type"], "function.call");
    assert_id(&call["id"], "fc_");
    assert_eq!(call["name"], "get_rate");
    assert_eq!(call["arguments"], "{\"date\":\"sample\"}");
    assert_eq!(call["completed_at"], Value::Null);
    let tcid = call["tool_call_id"].as_str().unwrap();
    assert_eq!(tcid.len(), 9);
    let conv = r["conversation_id"].as_str().unwrap();
    let a = t.ok(Method::POST, &format!("/v1/conversations/{conv}"), Some(json!({"inputs": [{"type": "function.result", "tool_call_id": tcid, "result": "2.5%"}]}))).await;
    let text = a["outputs"][0]["content"].as_str().unwrap();
    assert!(text.contains("get_rate returned: 2.5%"), "{text}");
    let h = t
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conv}/history"),
            None,
        )
        .await;
    let types: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "message.input",
            "function.call",
            "function.result",
            "message.output"
        ]
    );
}

#[tokio::test]
async fn handoffs_in_server_and_client_mode() {
    let t = default_twin().await;
    let finance = agent(&t, json!({"model": "m-fin", "name": "Finance"})).await;
    let router = agent(
        &t,
        json!({"model": "m", "name": "Router", "handoffs": [finance]}),
    )
    .await;
    let r = t
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"agent_id": router, "inputs": "Ask finance about Q3"})),
        )
        .await;
    let outs = r["outputs"].as_array().unwrap();
    assert_eq!(outs[0]["type"], "agent.handoff");
    assert_id(&outs[0]["id"], "handoff_");
    assert_eq!(outs[0]["previous_agent_id"], router.as_str());
    assert_eq!(outs[0]["next_agent_id"], finance.as_str());
    assert_eq!(outs[0]["next_agent_name"], "Finance");
    assert_eq!(outs[1]["agent_id"], finance.as_str());
    assert_eq!(outs[1]["model"], "m-fin");
    let c = t.ok(Method::POST, "/v1/conversations", Some(json!({"agent_id": router, "inputs": "Ask finance about Q3", "handoff_execution": "client"}))).await;
    assert_eq!(
        c["outputs"].as_array().unwrap().len(),
        1,
        "client mode stops at the handoff"
    );
}

#[tokio::test]
async fn validation_and_not_found() {
    let t = default_twin().await;
    let r = t
        .call(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": "x", "temperature": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json(),
        json!({"detail": [{"type": "extra_forbidden", "loc": ["body", "temperature"], "msg": "Extra inputs are not permitted", "input": 1}]})
    );
    let r = t
        .call(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m"})),
        )
        .await;
    assert_eq!(r.json()["detail"][0]["type"], "missing");
    let r = t
        .send(Method::POST, "/v1/conversations", None, &[])
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an empty body lacks inputs"
    );
    let r = t
        .call(
            Method::POST,
            "/v1/conversations",
            Some(json!({"agent_id": "ag_missing", "inputs": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t
        .call(Method::GET, "/v1/conversations/conv_nope/history", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t.call(Method::GET, "/v1/nothing", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t.call(Method::PUT, "/v1/conversations", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = t
        .call(
            Method::POST,
            "/v1/conversations/conv_x/restart",
            Some(json!({"inputs": "x"})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "from_entry_id is required"
    );
}

#[tokio::test]
async fn holds_many_conversations() {
    let t = default_twin().await;
    // 20k over HTTP here; the state layout is the same for 100k (see the bench harness).
    let n = 20_000usize;
    let mut tasks = tokio::task::JoinSet::new();
    let t = std::sync::Arc::new(t);
    for w in 0..16 {
        let t = t.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(16) {
                let r = t
                    .call(
                        Method::POST,
                        "/v1/conversations",
                        Some(json!({"model": "m", "inputs": format!("q{i}")})),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let st = t.running.sim().state.lock();
    assert_eq!(st.conversations.len(), n);
}
