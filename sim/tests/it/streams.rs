//! Streaming: event order and wire format, and streamed turns that equal non-streamed ones.

use agentcap_wire::ConversationEvent;
use agentcap_wire::assemble::EntryAssembler;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Twin, default_twin};

fn strip_times(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created_at");
        o.remove("completed_at");
    }
    v
}

async fn stream(t: &Twin, path: &str, body: Value) -> crate::client::Reply {
    let r = t
        .send(
            Method::POST,
            path,
            Some(body),
            &[("accept", "text/event-stream")],
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["content-type"], "text/event-stream");
    r
}

#[tokio::test]
async fn stream_wire_format_and_order() {
    let t = default_twin().await;
    let ag = t.ok(Method::POST, "/v1/agents", Some(json!({"model": "mistral-medium-latest", "name": "S", "tools": [{"type": "web_search"}]}))).await;
    let r = stream(&t, "/v1/conversations", json!({"agent_id": ag["id"], "inputs": "Who won the last European football cup?", "stream": true})).await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "the final event is terminated by a blank line"
    );
    assert!(!text.contains("[DONE]"));
    for block in text.trim_end().split("\n\n") {
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines.len(), 2, "event + one data line: {block}");
        let name = lines[0].strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], name, "event name equals the data's type");
    }
    let types: Vec<String> = r
        .event_data()
        .iter()
        .map(|d| d["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.first().unwrap(), "conversation.response.started");
    assert_eq!(types[1], "tool.execution.started");
    assert_eq!(types[2], "tool.execution.done");
    assert!(
        types[3..types.len() - 1]
            .iter()
            .all(|t| t == "message.output.delta")
    );
    assert_eq!(types.last().unwrap(), "conversation.response.done");
    let data = r.event_data();
    assert_eq!(data[3]["output_index"], 1);
    assert_eq!(data[3]["role"], "assistant");
    assert_eq!(data[3]["agent_id"], ag["id"]);
    assert!(
        data.last().unwrap()["usage"]["connector_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn streamed_turns_assemble_to_the_stored_entries() {
    let t = default_twin().await;
    let tools = json!([{"type": "web_search"}, {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]);
    let ag = t
        .ok(
            Method::POST,
            "/v1/agents",
            Some(json!({"model": "m", "name": "S", "tools": tools})),
        )
        .await;
    for (i, input) in [
        "Who won the last European football cup?",
        "Please lookup the rate",
    ]
    .into_iter()
    .enumerate()
    {
        let r = stream(
            &t,
            "/v1/conversations",
            json!({"agent_id": ag["id"], "inputs": input, "stream": true}),
        )
        .await;
        let mut asm = EntryAssembler::new();
        for ev in r.events() {
            asm.push(&ConversationEvent::from_sse(&ev).unwrap());
        }
        let turn = asm.finish();
        let conv = turn
            .conversation_id
            .clone()
            .expect("started carries the id");
        let h = t
            .ok(
                Method::GET,
                &format!("/v1/conversations/{conv}/history"),
                None,
            )
            .await;
        let stored: Vec<Value> = h["entries"].as_array().unwrap()[1..]
            .iter()
            .cloned()
            .map(strip_times)
            .collect();
        let assembled: Vec<Value> = turn
            .outputs
            .iter()
            .map(|e| strip_times(serde_json::to_value(e).unwrap()))
            .collect();
        assert_eq!(assembled, stored, "case {i}");
        assert!(turn.usage.is_some());
    }
}

#[tokio::test]
async fn append_and_restart_stream() {
    let t = default_twin().await;
    let r = t
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": "one"})),
        )
        .await;
    let conv = r["conversation_id"].as_str().unwrap();
    let a = stream(
        &t,
        &format!("/v1/conversations/{conv}"),
        json!({"inputs": "two", "stream": true}),
    )
    .await;
    let d = a.event_data();
    assert_eq!(d[0]["conversation_id"], conv);
    let from = r["outputs"][0]["id"].as_str().unwrap();
    let rs = stream(
        &t,
        &format!("/v1/conversations/{conv}/restart"),
        json!({"inputs": "three", "from_entry_id": from, "stream": true}),
    )
    .await;
    let d = rs.event_data();
    assert_ne!(
        d[0]["conversation_id"], conv,
        "a restart streams a new conversation id"
    );
    assert_eq!(d.last().unwrap()["type"], "conversation.response.done");
}

#[tokio::test]
async fn chat_completions_plain_and_streamed() {
    let t = default_twin().await;
    let r = t.ok(Method::POST, "/v1/chat/completions", Some(json!({"model": "mistral-large-latest", "messages": [{"role": "user", "content": "Hi"}]}))).await;
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Simulated upstream")
    );
    let s = t.send(Method::POST, "/v1/chat/completions", Some(json!({"model": "m", "messages": [{"role": "user", "content": "Hi there"}], "stream": true})), &[]).await.unwrap();
    let evs = s.events();
    assert_eq!(evs.last().unwrap().data, "[DONE]");
    assert!(
        evs.iter().all(|e| e.event.is_none()),
        "chat streams are data-only"
    );
    let text: String = evs[..evs.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(text.contains("hi there"), "{text}");
}
