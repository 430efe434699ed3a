//! The wire types on arbitrary JSON-ish bytes: parsing never panics, and any value that parses
//! serialises back to an equal JSON value (the types keep unknown keys and tell "absent" from
//! "null", so parse → serialize is lossless).

use agentcap_wire::{
    Agent, Conversation, ConversationEvent, ConversationRequest, ConversationResponse,
    ConversationUsageInfo, Entry, MessageContent, Tool,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::fuzz;

/// Parses `v` as `T`; when it parses, the value serialised back must equal `v`.
fn lossless<T: DeserializeOwned + Serialize>(name: &str, v: &Value, bytes: &[u8]) {
    // From bytes: must not panic, whatever the outcome.
    let _ = serde_json::from_slice::<T>(bytes);
    if let Ok(t) = serde_json::from_value::<T>(v.clone()) {
        let back = serde_json::to_value(&t).expect("a parsed value serialises");
        assert_eq!(&back, v, "{name}: parse → serialize changed the value");
    }
}

#[test]
fn wire_types() {
    let seeds: &[&[u8]] = &[
        br#"{"type":"message.output.delta","output_index":0,"id":"m1","content_index":0,"content":"hi","x":[1]}"#,
        br#"{"type":"conversation.response.done","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"connector_tokens":null}}"#,
        br#"{"object":"entry","type":"message.output","id":"m","role":"assistant","content":[{"type":"text","text":"a"},{"type":"tool_reference","tool":"web_search","title":"t"}]}"#,
        br#"{"type":"function.call","tool_call_id":"c","name":"f","arguments":{"a":1},"id":"fc"}"#,
        br#"{"inputs":"hi","stream":true,"agent_id":"ag","store":null,"completion_args":{"temperature":0.5}}"#,
        br#"{"conversation_id":"c","outputs":[],"usage":{"prompt_tokens":0},"object":"conversation.response"}"#,
        br#"{"id":"ag","object":"agent","name":"n","model":"m","version":1,"tools":[{"type":"web_search"}],"created_at":"x","updated_at":"y"}"#,
        br#"{"id":"c","object":"conversation","agent_id":"a","created_at":"t","updated_at":"t"}"#,
        br#"[{"type":"text","text":"x"}]"#,
        br#"{"type":"function","function":{"name":"f","parameters":{}}}"#,
    ];
    fuzz("wire_types", seeds, |input: &[u8]| {
        let Ok(v) = serde_json::from_slice::<Value>(input) else {
            // Not JSON: parsing must still fail cleanly.
            let _ = serde_json::from_slice::<Entry>(input);
            let _ = serde_json::from_slice::<ConversationEvent>(input);
            return;
        };
        lossless::<Entry>("Entry", &v, input);
        lossless::<ConversationEvent>("ConversationEvent", &v, input);
        lossless::<ConversationRequest>("ConversationRequest", &v, input);
        lossless::<ConversationResponse>("ConversationResponse", &v, input);
        lossless::<Conversation>("Conversation", &v, input);
        lossless::<Agent>("Agent", &v, input);
        lossless::<ConversationUsageInfo>("ConversationUsageInfo", &v, input);
        lossless::<MessageContent>("MessageContent", &v, input);
        lossless::<Tool>("Tool", &v, input);
    });
}
