//! Parse → serialize round trips: spec examples, unknown fields, null vs absent, numbers.

use agentcap_wire::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{example_json, example_sse_data, examples_dir};

/// Parses `v` as `T`, serializes it back and asserts the JSON value is unchanged.
fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> T {
    let parsed: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("parse failed: {e}\ninput: {v:#}"));
    let back = serde_json::to_value(&parsed).expect("serialize");
    assert_eq!(&back, v, "round trip changed the value");
    // Also through text, as the proxy and simulator would see it.
    let text = serde_json::to_string(&parsed).expect("to_string");
    let reparsed: Value = serde_json::from_str(&text).expect("reparse");
    assert_eq!(&reparsed, v, "round trip through text changed the value");
    parsed
}

#[test]
fn every_json_example_round_trips() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let v = example_json(&name);
        if name.starts_with("conversation_response_") {
            let r: ConversationResponse = roundtrip(&v);
            assert!(!r.outputs.is_empty());
            for out in &r.outputs {
                assert!(
                    !matches!(out, Entry::Other(_)),
                    "{name}: unexpected Other entry"
                );
            }
        } else if name == "conversation_history.json" {
            let h: ConversationHistory = roundtrip(&v);
            assert_eq!(h.entries.len(), 4);
            assert!(matches!(h.entries[0], Entry::MessageInput(_)));
            assert!(matches!(h.entries[1], Entry::MessageOutput(_)));
        } else {
            panic!("example {name} has no round-trip mapping in this test; add one");
        }
        seen += 1;
    }
    assert_eq!(seen, 4, "expected the four JSON examples");
}

#[test]
fn every_sse_data_line_round_trips() {
    let data = example_sse_data();
    assert_eq!(data.len(), 10);
    for v in &data {
        let ev: ConversationEvent = roundtrip(v);
        assert!(
            !matches!(ev, ConversationEvent::Other(_)),
            "unknown event: {v}"
        );
        assert_eq!(ev.type_name(), v["type"].as_str());
    }
}

#[test]
fn web_search_example_is_parsed_into_the_expected_shape() {
    let r: ConversationResponse =
        serde_json::from_value(example_json("conversation_response_web_search.json")).unwrap();
    let Entry::ToolExecution(t) = &r.outputs[0] else {
        panic!("first output is not a tool.execution")
    };
    assert_eq!(t.name, "web_search");
    assert!(t.arguments.is_absent());
    let Entry::MessageOutput(m) = &r.outputs[1] else {
        panic!("second output is not a message.output")
    };
    let MessageContent::Chunks(chunks) = &m.content else {
        panic!("content is not chunks")
    };
    assert_eq!(chunks.len(), 5);
    let ContentChunk::ToolReference(tr) = &chunks[1] else {
        panic!("chunk 1 is not a tool_reference")
    };
    assert_eq!(tr.extra.get("source"), Some(&json!("brave")));
    assert_eq!(r.usage.connector(), 7112);
    assert_eq!(r.usage.connector_counts(), vec![("web_search", 1)]);
    assert_eq!(
        r.usage.total(),
        r.usage.prompt() + r.usage.completion() + r.usage.connector()
    );
}

#[test]
fn extra_fields_survive_at_every_level() {
    let v = json!({
        "object": "conversation.response",
        "conversation_id": "conv_1",
        "top_level_extra": {"nested": [1, 2.5, "x", null]},
        "outputs": [
            {
                "type": "message.output", "object": "entry", "id": "msg_1",
                "entry_extra": true,
                "content": [
                    {"type": "text", "text": "a", "chunk_extra": 1},
                    {"type": "tool_reference", "tool": "web_search", "title": "t",
                     "url": "https://x", "source": "brave"},
                    {"type": "thinking", "thinking": [
                        {"type": "text", "text": "hmm", "deep_extra": {"k": "v"}},
                        {"type": "reference", "reference_ids": [1, "two"]}
                    ], "signature": null, "think_extra": 0},
                    {"type": "image_url", "image_url": {"url": "data:x", "detail": "high", "img_extra": 1}},
                    {"type": "image_url", "image_url": "https://img"},
                    {"type": "tool_file", "tool": "code_interpreter", "file_id": "f",
                     "file_name": "plot_0.png", "file_type": "png"},
                    {"type": "document_url", "document_url": "https://d", "document_name": null}
                ]
            },
            {"type": "tool.execution", "name": "code_interpreter", "arguments": "{}",
             "info": {"code": "1+1", "code_output": "2"}, "exec_extra": "y"},
            {"type": "function.call", "tool_call_id": "abc", "name": "f",
             "arguments": {"as": "object"}, "confirmation_status": "pending", "model": null},
            {"type": "agent.handoff", "previous_agent_id": "ag_1", "previous_agent_name": "a",
             "next_agent_id": "ag_2", "next_agent_name": "b", "handoff_extra": []}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                  "usage_extra": 7},
        "guardrails": [{"moderation_llm_v2": {"action": "none"}}]
    });
    let r: ConversationResponse = roundtrip(&v);
    assert_eq!(r.extra.len(), 1);
    assert_eq!(r.usage.extra.get("usage_extra"), Some(&json!(7)));
    let Entry::MessageOutput(m) = &r.outputs[0] else {
        panic!()
    };
    assert_eq!(m.extra.get("entry_extra"), Some(&json!(true)));
    let MessageContent::Chunks(chunks) = &m.content else {
        panic!()
    };
    let ContentChunk::Thinking(th) = &chunks[2] else {
        panic!()
    };
    assert!(th.signature.is_null());
    let ContentChunk::Text(inner) = &th.thinking[0] else {
        panic!()
    };
    assert_eq!(inner.extra.get("deep_extra"), Some(&json!({"k": "v"})));
    let Entry::FunctionCall(fc) = &r.outputs[2] else {
        panic!()
    };
    assert_eq!(fc.arguments.to_json(), Some(json!({"as": "object"})));
    assert_eq!(
        fc.confirmation_status,
        Maybe::Present(ConfirmationStatus::Pending)
    );
    assert!(fc.model.is_null());
}

#[test]
fn unknown_types_are_kept_verbatim() {
    let v = json!({
        "conversation_id": "conv_1",
        "outputs": [
            {"type": "brand.new.entry", "object": "entry", "whatever": [1, {"a": null}]},
            {"object": "entry", "no_type_and_no_known_shape": 1},
            {"type": "message.output", "content": [
                {"type": "audio", "data": "…"},
                {"no_type": true}
            ]}
        ],
        "usage": {}
    });
    let r: ConversationResponse = roundtrip(&v);
    assert!(matches!(&r.outputs[0], Entry::Other(_)));
    assert_eq!(r.outputs[0].type_name(), Some("brand.new.entry"));
    assert!(matches!(&r.outputs[1], Entry::Other(_)));
    let Entry::MessageOutput(m) = &r.outputs[2] else {
        panic!()
    };
    let MessageContent::Chunks(c) = &m.content else {
        panic!()
    };
    assert!(matches!(c[0], ContentChunk::Other(_)));
    assert_eq!(c[0].type_name(), Some("audio"));
    assert!(matches!(c[1], ContentChunk::Other(_)));

    let ev = json!({"type": "conversation.response.heartbeat", "n": 1});
    let parsed: ConversationEvent = roundtrip(&ev);
    assert!(matches!(parsed, ConversationEvent::Other(_)));

    let tools = json!([
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                          "strict": false, "fn_extra": 1}},
        {"type": "web_search"},
        {"type": "web_search_premium", "tool_configuration": null},
        {"type": "code_interpreter", "tool_configuration": {"requires_confirmation": ["x"], "cfg_extra": 2}},
        {"type": "image_generation"},
        {"type": "document_library", "library_ids": ["06835a9c-262c-7e83-8000-594d29fe2948"]},
        {"type": "connector", "connector_id": "my_mcp",
         "authorization": {"type": "api-key", "value": "k"}},
        {"type": "quantum_oracle", "qubits": 3}
    ]);
    let parsed: Vec<Tool> = roundtrip(&tools);
    assert!(matches!(parsed[0], Tool::Function(_)));
    assert!(matches!(parsed[1], Tool::WebSearch(_)));
    assert!(matches!(parsed[2], Tool::WebSearchPremium(_)));
    assert!(matches!(parsed[3], Tool::CodeInterpreter(_)));
    assert!(matches!(parsed[4], Tool::ImageGeneration(_)));
    assert!(matches!(parsed[5], Tool::DocumentLibrary(_)));
    assert!(matches!(parsed[6], Tool::Connector(_)));
    assert!(matches!(parsed[7], Tool::Other(_)));
}

#[test]
fn known_type_with_invalid_body_is_an_error() {
    let bad = json!({"type": "message.output", "object": "entry"});
    let err = serde_json::from_value::<Entry>(bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("message.output") && err.contains("content"),
        "{err}"
    );

    let bad_event = json!({"type": "conversation.response.started"});
    assert!(serde_json::from_value::<ConversationEvent>(bad_event).is_err());

    let not_object = json!(["x"]);
    assert!(serde_json::from_value::<Entry>(not_object).is_err());
}

#[test]
fn null_and_absent_stay_distinct() {
    let with_null = json!({"type": "message.output", "content": "x", "completed_at": null});
    let without = json!({"type": "message.output", "content": "x"});
    let a: Entry = roundtrip(&with_null);
    let b: Entry = roundtrip(&without);
    assert_ne!(a, b);
    let (Entry::MessageOutput(a), Entry::MessageOutput(b)) = (a, b) else {
        panic!()
    };
    assert!(a.completed_at.is_null());
    assert!(b.completed_at.is_absent());

    let usage_nulls = json!({"prompt_tokens": 91, "completion_tokens": 29, "total_tokens": 120,
                             "connector_tokens": null, "connectors": null});
    let u: ConversationUsageInfo = roundtrip(&usage_nulls);
    assert!(u.connector_tokens.is_null() && u.connectors.is_null());
    let usage_absent = json!({"prompt_tokens": 91, "completion_tokens": 29, "total_tokens": 120});
    let u: ConversationUsageInfo = roundtrip(&usage_absent);
    assert!(u.connector_tokens.is_absent() && u.connectors.is_absent());

    // Explicit nulls in a full completion_args object (as agents return them).
    let args = json!({"stop": null, "presence_penalty": null, "frequency_penalty": null,
                      "temperature": null, "top_p": null, "max_tokens": null,
                      "random_seed": null, "prediction": null, "response_format": null,
                      "tool_choice": "auto", "reasoning_effort": null});
    let parsed: CompletionArgs = roundtrip(&args);
    assert!(parsed.temperature.is_null());
    assert_eq!(parsed.tool_choice, Maybe::Present(ToolChoice::Auto));
    let _: CompletionArgs = roundtrip(&json!({}));

    // A null validation `input` is kept as null, an absent one stays absent.
    let e: HttpValidationError = roundtrip(&json!({"detail": [
        {"loc": ["body", "inputs", 0], "msg": "m", "type": "t", "input": null},
        {"loc": ["body"], "msg": "m", "type": "t"}
    ]}));
    assert!(e.detail[0].input.is_null());
    assert!(e.detail[1].input.is_absent());
}

#[test]
fn numbers_keep_their_kind() {
    let args = json!({"temperature": 1, "top_p": 0.95, "max_tokens": 18446744073709551615u64,
                      "presence_penalty": -1, "frequency_penalty": 0.0, "random_seed": 0,
                      "stop": ["\n\n", "END"],
                      "response_format": {"type": "json_schema", "json_schema": {
                          "name": "book", "schema": {"type": "object"}, "strict": true}},
                      "prediction": {"type": "content", "content": ""}});
    let parsed: CompletionArgs = roundtrip(&args);
    assert!(parsed.temperature.get().unwrap().is_u64());
    assert!(parsed.frequency_penalty.get().unwrap().is_f64());
    assert!(parsed.presence_penalty.get().unwrap().is_i64());
    let back = serde_json::to_value(&parsed).unwrap();
    assert!(back["temperature"].is_u64());
    assert!(back["frequency_penalty"].is_f64());

    // A connector count sent as a string is kept as a string and still counted.
    let u: ConversationUsageInfo =
        roundtrip(&json!({"connectors": {"web_search": "2", "code_interpreter": 1}}));
    assert_eq!(
        u.connector_counts(),
        vec![("web_search", 2), ("code_interpreter", 1)]
    );
}

#[test]
fn inputs_string_or_entries_with_optional_type() {
    let req = json!({"inputs": "Who is Albert Einstein?", "stream": false,
                     "agent_id": "ag_1", "agent_version": "prod"});
    let r: ConversationRequest = roundtrip(&req);
    assert!(!r.is_stream());
    assert_eq!(r.inputs, Inputs::Text("Who is Albert Einstein?".into()));
    assert_eq!(
        r.agent_version,
        Maybe::Present(AgentVersion::Alias("prod".into()))
    );
    assert_eq!(r.inputs.to_entries().len(), 1);

    let req = json!({"inputs": [
        {"role": "user", "content": "hi"},
        {"type": "function.result", "tool_call_id": "6TI17yZkV", "result": "{\"rate\": 2}"},
        {"tool_call_id": "abc", "result": "no type"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": "https://i"}],
         "prefix": false, "object": "entry"}
    ], "stream": true, "model": "mistral-medium-latest", "agent_version": 3,
       "tools": [{"type": "web_search"}], "store": null, "handoff_execution": "server"});
    let r: ConversationRequest = roundtrip(&req);
    assert!(r.is_stream());
    assert_eq!(r.agent_version, Maybe::Present(AgentVersion::Number(3)));
    let Inputs::Entries(entries) = &r.inputs else {
        panic!()
    };
    let Entry::MessageInput(first) = &entries[0] else {
        panic!("bare role/content is not a message.input")
    };
    assert!(first.type_omitted);
    assert_eq!(first.role, Role::User);
    assert_eq!(first.content.text(), "hi");
    let Entry::FunctionResult(fr) = &entries[1] else {
        panic!()
    };
    assert!(!fr.type_omitted);
    let Entry::FunctionResult(fr2) = &entries[2] else {
        panic!("untyped tool_call_id/result is not a function.result")
    };
    assert!(fr2.type_omitted);
    assert!(matches!(&entries[3], Entry::MessageInput(m) if m.type_omitted));

    let append = json!({"inputs": [{"role": "user", "content": "more"}],
                        "stream": false, "store": true, "handoff_execution": "client",
                        "completion_args": {"temperature": 0.2},
                        "tool_confirmations": [{"tool_call_id": "x", "confirmation": "allow"}]});
    let a: ConversationAppendRequest = roundtrip(&append);
    assert_eq!(
        a.handoff_execution,
        Maybe::Present(HandoffExecution::Client)
    );
    let confirmation_only =
        json!({"tool_confirmations": [{"tool_call_id": "x", "confirmation": "deny"}]});
    let a: ConversationAppendRequest = roundtrip(&confirmation_only);
    assert!(a.inputs.is_absent());

    let restart = json!({"from_entry_id": "msg_1", "inputs": "again", "stream": true,
                         "metadata": {"k": "v"}, "agent_version": null});
    let r: ConversationRestartRequest = roundtrip(&restart);
    assert!(r.is_stream() && r.agent_version.is_null());

    assert!(serde_json::from_value::<ConversationRequest>(json!({"inputs": 5})).is_err());
    assert!(serde_json::from_value::<ConversationRequest>(json!({"stream": true})).is_err());
}

#[test]
fn agents_round_trip() {
    let agent = json!({
        "object": "agent", "id": "ag_019ce792c1647356af78d08137c8cd08", "version": 1,
        "versions": [0, 1],
        "created_at": "2026-03-13T14:21:20.612000Z", "updated_at": "2026-03-13T14:22:00.000000Z",
        "model": "mistral-medium-latest", "name": "Websearch Agent",
        "description": "Agent able to search information over the web", "instructions": null,
        "tools": [{"type": "web_search"}, {"type": "function", "function": {
            "name": "get_rate", "description": "", "strict": false,
            "parameters": {"type": "object", "properties": {"date": {"type": "string"}}}}}],
        "completion_args": {"stop": null, "presence_penalty": null, "frequency_penalty": null,
            "temperature": 0.3, "top_p": null, "max_tokens": null, "random_seed": null,
            "prediction": null, "response_format": null, "tool_choice": "auto",
            "reasoning_effort": null},
        "guardrails": [{"block_on_error": false, "moderation_llm_v2": {
            "custom_category_thresholds": {"sexual": 0.5, "pii": null},
            "ignore_other_categories": false, "action": "block"}}],
        "handoffs": null, "metadata": {"team": "x"}, "deployment_chat": false, "source": "api",
        "version_message": null
    });
    let a: Agent = roundtrip(&agent);
    assert_eq!(a.source, Maybe::Present(RequestSource::Api));
    assert_eq!(a.version, 1);

    // An older capture without versions / deployment_chat / source still parses.
    let mut old = agent.clone();
    for k in ["versions", "deployment_chat", "source"] {
        old.as_object_mut().unwrap().remove(k);
    }
    let a: Agent = roundtrip(&old);
    assert!(a.versions.is_absent());

    let _: AgentListPage = roundtrip(&json!({"object": "list", "data": [agent],
                                            "next_page_token": null}));
    let _: AgentAliasResponse = roundtrip(&json!({"alias": "prod", "version": 0,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}));
    let c: CreateAgentRequest = roundtrip(&json!({"model": "mistral-medium-2505",
        "name": "n", "instructions": "be nice", "tools": [], "handoffs": ["ag_2"],
        "completion_args": {"temperature": 0.3, "top_p": 0.95}}));
    assert_eq!(c.handoffs.get().map(Vec::len), Some(1));
    let u: UpdateAgentRequest = roundtrip(&json!({"name": null, "deployment_chat": true,
        "version_message": "v2"}));
    assert!(u.name.is_null() && u.model.is_absent());
    assert!(serde_json::from_value::<CreateAgentRequest>(json!({"model": "m"})).is_err());
}

#[test]
fn conversations_are_told_apart_without_a_discriminator() {
    let list = json!([
        {"object": "conversation", "id": "conv_1", "created_at": "t", "updated_at": "t",
         "agent_id": "ag_1", "agent_version": 0, "name": null, "description": null,
         "metadata": {}},
        {"object": "conversation", "id": "conv_2", "created_at": "t", "updated_at": "t",
         "model": "mistral-medium-latest", "instructions": null, "tools": [],
         "completion_args": {"tool_choice": "auto"}, "guardrails": null}
    ]);
    let convs: Vec<Conversation> = roundtrip(&list);
    assert!(matches!(&convs[0], Conversation::Agent(c) if c.agent_id == "ag_1"));
    assert!(matches!(&convs[1], Conversation::Model(c) if c.model == "mistral-medium-latest"));
    assert_eq!(convs[1].id(), "conv_2");
    assert!(
        serde_json::from_value::<Conversation>(json!({"id": "c", "created_at": "t",
                                                       "updated_at": "t"}))
        .is_err()
    );

    let msgs: ConversationMessages = roundtrip(&json!({"object": "conversation.messages",
        "conversation_id": "conv_1", "messages": [
            {"type": "message.input", "role": "user", "content": "a", "object": "entry",
             "id": "msg_1", "created_at": "t", "completed_at": null, "prefix": false},
            {"type": "message.output", "role": "assistant", "content": "b", "object": "entry",
             "id": "msg_2", "created_at": "t", "completed_at": "t", "agent_id": null,
             "model": "m"}]}));
    assert_eq!(msgs.messages.len(), 2);
}

#[test]
fn error_bodies_round_trip_and_classify() {
    let validation = json!({"detail": [{"type": "extra_forbidden", "loc": ["body", "foo"],
        "msg": "Extra inputs are not permitted", "input": 1, "ctx": {"a": 1}}]});
    let v: HttpValidationError = roundtrip(&validation);
    assert_eq!(
        v.detail[0].loc,
        vec![LocSegment::from("body"), LocSegment::from("foo")]
    );
    assert!(matches!(
        ErrorBody::from_value(validation),
        ErrorBody::Validation(_)
    ));

    let generic = json!({"object": "error", "message": "Invalid model: foo",
        "type": "invalid_request_error", "param": "model", "code": "unknown_model"});
    let e: ApiError = roundtrip(&generic);
    assert_eq!(e.message_text(), Some("Invalid model: foo"));
    assert_eq!(e.code, Maybe::Present(ErrorCode::from("unknown_model")));
    assert!(matches!(ErrorBody::from_value(generic), ErrorBody::Api(_)));

    for body in [
        json!({"message": "Unauthorized", "request_id": "abc123"}),
        json!({"object": "error", "message": "Requests rate limit exceeded",
               "type": "rate_limited", "param": null, "code": "1300"}),
        json!({"object": "Error", "message": "blocked", "type": "invalid_request_error",
               "code": 3201, "guardrails": []}),
        json!({"object": "error", "message": {"detail": [{"loc": [], "msg": "m", "type": "t"}]},
               "type": "invalid_request_error", "param": null, "code": null}),
        json!({"object": "error", "message": "Service tier capacity exceeded for this model.",
               "type": "service_tier_capacity_exceeded", "code": "3505", "raw_status_code": 429}),
    ] {
        let _: ApiError = roundtrip(&body);
        let classified = ErrorBody::from_value(body.clone());
        assert!(matches!(classified, ErrorBody::Api(_)), "{body}");
        assert_eq!(serde_json::to_value(&classified).unwrap(), body);
    }
    let blocked = json!({"error": {"message": "Content blocked by guardrail", "status": 403},
                         "guardrails": {"results": {}}});
    assert_eq!(
        serde_json::to_value(ErrorBody::from_value(blocked.clone())).unwrap(),
        blocked
    );
    assert!(matches!(
        ErrorBody::from_value(json!({"detail": "Unauthorized"})),
        ErrorBody::Other(_)
    ));
    assert!(ErrorBody::parse(b"<html>").is_none());

    let made = ApiError::new("Conversation not found", "invalid_request_error", None);
    assert_eq!(
        serde_json::to_value(&made).unwrap(),
        json!({"object": "error", "message": "Conversation not found",
               "type": "invalid_request_error", "param": null, "code": null})
    );
}

#[test]
fn object_equality_ignores_key_order() {
    // The round-trip comparisons rely on this: with `preserve_order`, Map equality is still
    // order-insensitive. If a serde_json upgrade changed that, this test would catch it.
    let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":1,"y":2}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"b":{"y":2,"x":1},"a":1}"#).unwrap();
    assert_eq!(a, b);
    // …but key order itself is preserved in output.
    assert_eq!(b.to_string(), r#"{"b":{"y":2,"x":1},"a":1}"#);
}

#[test]
fn entry_serialization_puts_type_first_and_keeps_type_omitted_entries_untyped() {
    let e: Entry = serde_json::from_value(json!({"content": "x", "role": "user"})).unwrap();
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"role":"user","content":"x"}"#
    );
    let e = Entry::MessageInput(MessageInputEntry {
        role: Role::User,
        content: "hi".into(),
        ..Default::default()
    });
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"type":"message.input","role":"user","content":"hi"}"#
    );
}

#[test]
fn maybe_helpers() {
    let m: Maybe<u32> = Maybe::some_or_absent(None);
    assert!(m.is_absent());
    let m: Maybe<u32> = Maybe::some_or_null(None);
    assert!(m.is_null());
    let m = Maybe::from(3u32);
    assert_eq!(m.get(), Some(&3));
    assert_eq!(m.map(|x| x + 1).into_option(), Some(4));
    assert_eq!(Maybe::<u32>::default(), Maybe::Absent);
    // Outside a struct field, Absent has nowhere to hide and becomes null.
    assert_eq!(
        serde_json::to_value(vec![Maybe::<u32>::Absent, Maybe::Null, Maybe::Present(1)]).unwrap(),
        json!([null, null, 1])
    );
}
