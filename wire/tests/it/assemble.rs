//! Entry assembly: streamed turns rebuild the same entries as non-streamed ones.

use agentcap_wire::*;
use serde_json::{Value, json};

use crate::{example_bytes, example_json};

fn events_from_values(values: &[Value]) -> Vec<ConversationEvent> {
    values
        .iter()
        .map(|v| ConversationEvent::from_value(v.clone()).expect("valid event"))
        .collect()
}

/// Splits a string into pieces of at most `n` chars.
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

/// Turns the outputs of a non-streamed response into the events a server would stream for
/// it (independent of the assembler: built from the JSON with the documented event shapes).
/// Text is cut into pieces of `n` chars; every event gets a `created_at`.
fn explode(response: &Value, n: usize) -> Vec<Value> {
    let mut evs = vec![json!({"type": "conversation.response.started",
                              "conversation_id": response["conversation_id"],
                              "created_at": "2025-01-01T00:00:00.000000Z"})];
    let stamp = |i: usize| format!("2025-01-01T00:00:{:02}.000000Z", i % 60);
    let mut tick = 1;
    for (index, out) in response["outputs"].as_array().unwrap().iter().enumerate() {
        let mut ev = |mut v: Value| {
            v["output_index"] = json!(index);
            v["created_at"] = json!(stamp(tick));
            tick += 1;
            evs.push(v);
        };
        match out["type"].as_str().unwrap() {
            "message.output" => {
                let base = |content_index: usize, content: Value| {
                    let mut v = json!({"type": "message.output.delta", "id": out["id"],
                                       "content_index": content_index, "content": content,
                                       "role": "assistant"});
                    for k in ["model", "agent_id"] {
                        if let Some(x) = out.get(k) {
                            v[k] = x.clone();
                        }
                    }
                    v
                };
                match &out["content"] {
                    Value::String(s) => {
                        for p in pieces(s, n) {
                            ev(base(0, json!(p)));
                        }
                    }
                    Value::Array(chunks) => {
                        for (ci, chunk) in chunks.iter().enumerate() {
                            if chunk["type"] == "text" {
                                for p in pieces(chunk["text"].as_str().unwrap(), n) {
                                    ev(base(ci, json!(p)));
                                }
                            } else {
                                ev(base(ci, chunk.clone()));
                            }
                        }
                    }
                    other => panic!("bad content {other}"),
                }
            }
            "function.call" => {
                let args = out["arguments"].as_str().unwrap();
                for p in pieces(args, n) {
                    let mut v = json!({"type": "function.call.delta", "id": out["id"],
                                       "name": out["name"], "tool_call_id": out["tool_call_id"],
                                       "arguments": p});
                    for k in ["model", "agent_id", "confirmation_status"] {
                        if let Some(x) = out.get(k) {
                            v[k] = x.clone();
                        }
                    }
                    ev(v);
                }
            }
            "tool.execution" => {
                let mut started = json!({"type": "tool.execution.started", "id": out["id"],
                                         "name": out["name"]});
                for k in ["model", "agent_id", "arguments"] {
                    if let Some(x) = out.get(k) {
                        started[k] = x.clone();
                    }
                }
                ev(started);
                let mut done = json!({"type": "tool.execution.done", "id": out["id"],
                                      "name": out["name"]});
                if let Some(info) = out.get("info") {
                    done["info"] = info.clone();
                }
                ev(done);
            }
            other => panic!("explode: unsupported {other}"),
        }
    }
    evs.push(json!({"type": "conversation.response.done", "usage": response["usage"]}));
    evs
}

#[test]
fn example_stream_assembles_into_tool_execution_and_message() {
    let mut decoder = SseDecoder::new();
    let sse = decoder
        .push(&example_bytes("stream_web_search_agent.sse"))
        .unwrap();
    let mut asm = EntryAssembler::new();
    for ev in &sse {
        asm.push(&ConversationEvent::from_sse(ev).unwrap());
    }
    let turn = asm.finish();
    assert_eq!(
        turn.conversation_id.as_deref(),
        Some("conv_067f2a98c1a773678000ce73a36b785a")
    );
    assert!(turn.anomalies.is_empty(), "{:?}", turn.anomalies);
    assert!(turn.error.is_none());
    let usage = turn.usage.as_ref().expect("usage");
    assert_eq!(
        (usage.prompt(), usage.completion(), usage.total()),
        (18709, 183, 18892)
    );
    assert_eq!(turn.outputs.len(), 2);
    // The capture has no created_at in its events, so no timestamps are invented, and the
    // capture leaves out tool arguments, so none appear.
    assert_eq!(
        turn.outputs[0].to_value(),
        json!({"type": "tool.execution", "object": "entry",
               "id": "tool_exec_067f2a98ca357c8b8000ea212104b290", "name": "web_search"})
    );
    // Every delta is a string, so the content is a string: the deltas concatenated. The
    // capture elides the deltas between content_index 0 and 2 (a reference chunk sat at 1
    // in the original), so the text is exactly what the kept deltas say.
    assert_eq!(
        turn.outputs[1].to_value(),
        json!({"type": "message.output", "object": "entry",
               "id": "msg_067f2a9925d674ea8000e63c68ae0474",
               "model": "mistral-medium-latest",
               "agent_id": "ag_067f2a39ddd67bf68000fa921bc0c25d", "role": "assistant",
               "content": "The last European Football tournament."})
    );
    let resp = turn.to_response().expect("complete turn");
    assert_eq!(resp.outputs, turn.outputs);
}

#[test]
fn function_call_arguments_are_concatenated() {
    let frags = ["{\"da", "te\": ", "\"2024-", "06-06\"}"];
    let mut values = vec![json!({"type": "conversation.response.started",
                                 "conversation_id": "conv_1"})];
    for (i, f) in frags.iter().enumerate() {
        let mut v = json!({"type": "function.call.delta", "output_index": 0,
                           "id": "fc_1", "name": "get_rate", "tool_call_id": "6TI17yZkV",
                           "arguments": f, "model": "mistral-medium-latest",
                           "agent_id": "ag_1", "confirmation_status": null,
                           "created_at": format!("2025-05-27T11:34:3{i}.000000Z")});
        if i > 0 {
            // Later fragments may differ in these; the first delta wins.
            v["name"] = json!("ignored");
            v["confirmation_status"] = json!("allowed");
        }
        values.push(v);
    }
    values.push(json!({"type": "conversation.response.done",
                       "usage": {"prompt_tokens": 91, "completion_tokens": 29,
                                 "total_tokens": 120}}));
    let turn = assemble_turn(&events_from_values(&values));
    assert!(turn.anomalies.is_empty(), "{:?}", turn.anomalies);
    assert_eq!(
        turn.outputs,
        vec![
            serde_json::from_value::<Entry>(json!({
                "type": "function.call", "object": "entry", "id": "fc_1",
                "name": "get_rate", "tool_call_id": "6TI17yZkV",
                "arguments": "{\"date\": \"2024-06-06\"}",
                "model": "mistral-medium-latest", "agent_id": "ag_1",
                "confirmation_status": null,
                "created_at": "2025-05-27T11:34:30.000000Z",
                "completed_at": "2025-05-27T11:34:33.000000Z"}))
            .unwrap()
        ]
    );
}

#[test]
fn streamed_examples_match_their_non_streamed_outputs() {
    for name in [
        "conversation_response_web_search.json",
        "conversation_response_code_interpreter.json",
        "conversation_response_function_call.json",
    ] {
        let response = example_json(name);
        let expected: ConversationResponse = serde_json::from_value(response.clone()).unwrap();
        for n in [1, 3, 1000] {
            let turn = assemble_turn(&events_from_values(&explode(&response, n)));
            assert!(turn.anomalies.is_empty(), "{name}: {:?}", turn.anomalies);
            assert_eq!(
                turn.outputs.iter().map(comparable).collect::<Vec<_>>(),
                expected.outputs.iter().map(comparable).collect::<Vec<_>>(),
                "{name} with pieces of {n}"
            );
            assert!(same_outputs(&turn.outputs, &expected.outputs));
            let resp = turn.to_response().unwrap();
            assert_eq!(resp.conversation_id, expected.conversation_id);
            assert_eq!(resp.usage, expected.usage);
        }
    }
}

#[test]
fn mixed_string_and_tool_reference_deltas_give_the_chunk_array() {
    let reference = json!({"type": "tool_reference", "tool": "web_search", "title": "T",
                           "url": "https://x", "source": "brave"});
    let delta = |ci: u64, content: Value| {
        json!({"type": "message.output.delta", "output_index": 0, "id": "msg_1",
               "content_index": ci, "content": content, "role": "assistant",
               "model": "m", "agent_id": null})
    };
    let values = vec![
        delta(0, json!("Spain ")),
        delta(0, json!("won")),
        delta(1, reference.clone()),
        delta(2, reference.clone()),
        delta(3, json!({"type": "text", "text": " in "})),
        delta(3, json!("2024.")),
    ];
    let turn = assemble_turn(&events_from_values(&values));
    let non_stream: Entry = serde_json::from_value(json!({
        "type": "message.output", "object": "entry", "id": "msg_1", "role": "assistant",
        "model": "m", "agent_id": null,
        "content": [{"type": "text", "text": "Spain won"}, reference, reference,
                    {"type": "text", "text": " in 2024."}]}))
    .unwrap();
    assert_eq!(turn.outputs, vec![non_stream]);
    assert!(turn.conversation_id.is_none() && turn.usage.is_none());
    assert!(!turn.is_finished() && turn.to_response().is_none());
}

#[test]
fn tool_execution_with_argument_deltas_and_info() {
    let values = vec![
        json!({"type": "tool.execution.started", "output_index": 1, "id": "tool_exec_1",
               "name": "code_interpreter", "arguments": "{\"code\":", "model": "m",
               "agent_id": "ag"}),
        json!({"type": "tool.execution.delta", "output_index": 1, "id": "tool_exec_1",
               "name": "code_interpreter", "arguments": " \"1+1\"}"}),
        json!({"type": "tool.execution.done", "output_index": 1, "id": "tool_exec_1",
               "name": "code_interpreter", "info": {"code_output": "2"}}),
        json!({"type": "message.output.delta", "output_index": 0, "id": "msg_0",
               "content": "Let me compute."}),
    ];
    let turn = assemble_turn(&events_from_values(&values));
    assert_eq!(turn.outputs.len(), 2);
    assert_eq!(
        turn.outputs[0].id(),
        Some("msg_0"),
        "outputs are ordered by output_index"
    );
    assert_eq!(
        turn.outputs[1].to_value(),
        json!({"type": "tool.execution", "object": "entry", "id": "tool_exec_1",
               "name": "code_interpreter", "arguments": "{\"code\": \"1+1\"}",
               "model": "m", "agent_id": "ag", "info": {"code_output": "2"}})
    );
}

#[test]
fn handoffs_errors_and_anomalies() {
    let values = vec![
        json!({"type": "conversation.response.started", "conversation_id": "conv_1"}),
        json!({"type": "agent.handoff.started", "output_index": 0, "id": "handoff_1",
               "previous_agent_id": "ag_a", "previous_agent_name": "A"}),
        json!({"type": "agent.handoff.done", "output_index": 0, "id": "handoff_1",
               "next_agent_id": "ag_b", "next_agent_name": "B"}),
        // Clashes with the handoff at index 0: ignored, reported.
        json!({"type": "message.output.delta", "output_index": 0, "id": "msg_x",
               "content": "stray"}),
        json!({"type": "agent.handoff.started", "output_index": 1, "id": "handoff_2",
               "previous_agent_id": "ag_b", "previous_agent_name": "B"}),
        json!({"type": "some.future.event", "x": 1}),
        json!({"type": "conversation.response.error", "message": "boom", "code": 3000}),
    ];
    let turn = assemble_turn(&events_from_values(&values));
    assert_eq!(
        turn.outputs[0].to_value(),
        json!({"type": "agent.handoff", "object": "entry", "id": "handoff_1",
               "previous_agent_id": "ag_a", "previous_agent_name": "A",
               "next_agent_id": "ag_b", "next_agent_name": "B"})
    );
    assert!(matches!(&turn.outputs[1], Entry::Other(v)
        if v["previous_agent_id"] == "ag_b" && v.get("next_agent_id").is_none()));
    let err = turn.error.as_ref().expect("error kept");
    assert_eq!((err.message.as_str(), err.code), ("boom", 3000));
    assert!(turn.is_finished() && turn.to_response().is_none());
    assert_eq!(turn.anomalies.len(), 3, "{:?}", turn.anomalies);
}

#[test]
fn thinking_deltas_at_one_content_index_merge() {
    let think =
        |text: &str| json!({"type": "thinking", "thinking": [{"type": "text", "text": text}]});
    let delta = |ci: u64, content: Value| {
        json!({"type": "message.output.delta", "id": "msg_1", "content_index": ci,
               "content": content})
    };
    let values = vec![
        delta(0, think("Let me ")),
        delta(0, think("think.")),
        delta(1, json!("Answer")),
        delta(2, think("again")),
    ];
    let turn = assemble_turn(&events_from_values(&values));
    let Entry::MessageOutput(m) = &turn.outputs[0] else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(&m.content).unwrap(),
        json!([think("Let me think."), {"type": "text", "text": "Answer"}, think("again")])
    );
}

#[test]
fn push_value_and_comparison_helpers() {
    let mut asm = EntryAssembler::new();
    asm.push_value(
        &json!({"type": "message.output.delta", "id": "m", "content": "x",
                           "created_at": "2025-01-01T00:00:00Z"}),
    )
    .unwrap();
    assert!(
        asm.push_value(&json!({"type": "message.output.delta"}))
            .is_err()
    );
    let turn = asm.finish();
    let other: Entry = serde_json::from_value(json!({"type": "message.output", "object": "entry",
        "id": "m", "content": "x", "created_at": "1999-01-01T00:00:00Z", "completed_at": null}))
    .unwrap();
    assert_ne!(turn.outputs[0], other);
    assert!(same_outputs(&turn.outputs, std::slice::from_ref(&other)));
    assert!(!same_outputs(&turn.outputs, &[]));
    let different: Entry = serde_json::from_value(json!({"type": "message.output",
        "object": "entry", "id": "m", "content": "y"}))
    .unwrap();
    assert!(!same_outputs(&turn.outputs, &[different]));
}

#[test]
fn a_budget_bounds_what_the_assembler_keeps() {
    let delta = |i: u64, text: &str| {
        ConversationEvent::from_value(serde_json::json!({
            "type": "message.output.delta", "output_index": i, "id": format!("m{i}"),
            "content_index": 0, "content": text
        }))
        .unwrap()
    };
    let mut asm = EntryAssembler::with_budget(1000);
    for _ in 0..100 {
        asm.push(&delta(0, &"x".repeat(100)));
    }
    // New outputs once the budget is spent are counted, not kept.
    for i in 1..50 {
        asm.push(&delta(i, "y"));
    }
    let turn = asm.finish();
    assert_eq!(turn.outputs.len(), 1);
    assert_eq!(turn.truncated, vec![0]);
    assert_eq!(turn.dropped_outputs, 49);
    let text = turn.outputs[0].to_value()["content"]
        .as_str()
        .unwrap()
        .len();
    assert!((500..=1000).contains(&text), "{text}");

    // Without a budget nothing changes.
    let mut asm = EntryAssembler::new();
    for _ in 0..100 {
        asm.push(&delta(0, &"x".repeat(100)));
    }
    let turn = asm.finish();
    assert!(turn.truncated.is_empty());
    assert_eq!(
        turn.outputs[0].to_value()["content"]
            .as_str()
            .unwrap()
            .len(),
        10_000
    );
}
