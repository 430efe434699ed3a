//! The OpenTelemetry GenAI conventions' names for the Mistral API, shared by the Prometheus metrics
//! ([`crate::recorder::metrics`]) and the spans ([`crate::otel`]).

/// `gen_ai.provider.name` of the Mistral API in the OpenTelemetry GenAI conventions.
pub const GEN_AI_PROVIDER: &str = "mistral_ai";

/// The GenAI conventions' `gen_ai.operation.name` of a recorded operation (`None` for the
/// operations the conventions do not cover).
pub fn gen_ai_operation(op: &str, has_agent: bool) -> Option<&'static str> {
    match op.strip_suffix("_stream").unwrap_or(op) {
        "chat.completions" => Some("chat"),
        "agents.completions" => Some("invoke_agent"),
        "conversations.start" | "conversations.append" | "conversations.restart" => {
            Some(if has_agent { "invoke_agent" } else { "chat" })
        }
        "agents.create" => Some("create_agent"),
        _ => None,
    }
}
