//! Integration tests of `agentcap-wire`: round trips, SSE codec and entry assembly.

mod assemble;
mod roundtrip;
mod sse;

use std::path::PathBuf;

use serde_json::Value;

/// The shared spec examples folder (`<workspace>/../shared/spec/examples`).
pub fn examples_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test"))
        .join("../../shared/spec/examples")
}

/// Raw bytes of one example file.
pub fn example_bytes(name: &str) -> Vec<u8> {
    let path = examples_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One example file parsed as JSON.
pub fn example_json(name: &str) -> Value {
    serde_json::from_slice(&example_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The payload of every `data:` line of the example stream, parsed as JSON.
pub fn example_sse_data() -> Vec<Value> {
    String::from_utf8(example_bytes("stream_web_search_agent.sse"))
        .expect("utf-8")
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("data line is JSON"))
        .collect()
}
