//! Operation names as the recorder stores them in `exchanges.operation`: the shared vocabulary's
//! [`Operation`] (`agentcap_wire::vocab`), by name. Streaming is decided by the caller from the request
//! body's `"stream": true`, never from the path.

use agentcap_wire::vocab::Operation;

pub use agentcap_wire::vocab::path_id;

/// The stored operation name of a request ([`Operation::classify`], by name; `other` for anything the
/// Agents / Conversations / chat API does not define). The query string must not be part of `path`.
pub fn operation(method: &str, path: &str, stream: bool) -> &'static str {
    Operation::classify(method, path, stream).name()
}

/// The operation without its `_stream` suffix (`conversations.start_stream` → `conversations.start`).
pub fn base(op: &str) -> &str {
    op.strip_suffix("_stream").unwrap_or(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_endpoint() {
        let cases = [
            ("POST", "/v1/agents", false, "agents.create"),
            ("GET", "/v1/agents", false, "agents.list"),
            ("GET", "/v1/agents/pages", false, "agents.list_pages"),
            ("GET", "/v1/agents/ag_1", false, "agents.get"),
            ("PATCH", "/v1/agents/ag_1", false, "agents.update"),
            ("DELETE", "/v1/agents/ag_1", false, "agents.delete"),
            (
                "PATCH",
                "/v1/agents/ag_1/version",
                false,
                "agents.update_version",
            ),
            (
                "GET",
                "/v1/agents/ag_1/versions",
                false,
                "agents.list_versions",
            ),
            (
                "GET",
                "/v1/agents/ag_1/versions/3",
                false,
                "agents.get_version",
            ),
            (
                "PUT",
                "/v1/agents/ag_1/aliases",
                false,
                "agents.alias_upsert",
            ),
            ("GET", "/v1/agents/ag_1/aliases", false, "agents.alias_list"),
            (
                "DELETE",
                "/v1/agents/ag_1/aliases",
                false,
                "agents.alias_delete",
            ),
            ("POST", "/v1/conversations", false, "conversations.start"),
            (
                "POST",
                "/v1/conversations",
                true,
                "conversations.start_stream",
            ),
            ("GET", "/v1/conversations", false, "conversations.list"),
            ("GET", "/v1/conversations/c1", false, "conversations.get"),
            (
                "DELETE",
                "/v1/conversations/c1",
                false,
                "conversations.delete",
            ),
            (
                "POST",
                "/v1/conversations/c1",
                false,
                "conversations.append",
            ),
            (
                "POST",
                "/v1/conversations/c1",
                true,
                "conversations.append_stream",
            ),
            (
                "GET",
                "/v1/conversations/c1/history",
                false,
                "conversations.history",
            ),
            (
                "GET",
                "/v1/conversations/c1/messages",
                false,
                "conversations.messages",
            ),
            (
                "POST",
                "/v1/conversations/c1/restart",
                false,
                "conversations.restart",
            ),
            (
                "POST",
                "/v1/conversations/c1/restart",
                true,
                "conversations.restart_stream",
            ),
            ("POST", "/v1/chat/completions", false, "chat.completions"),
            (
                "POST",
                "/v1/chat/completions",
                true,
                "chat.completions_stream",
            ),
            (
                "POST",
                "/v1/agents/completions",
                false,
                "agents.completions",
            ),
            (
                "POST",
                "/v1/agents/completions",
                true,
                "agents.completions_stream",
            ),
            ("GET", "/v1/models", false, "other"),
            ("PUT", "/v1/conversations/c1", false, "other"),
            ("GET", "/", false, "other"),
        ];
        for (method, path, stream, want) in cases {
            assert_eq!(
                operation(method, path, stream),
                want,
                "{method} {path} {stream}"
            );
        }
    }

    #[test]
    fn tolerates_trailing_slashes_and_lowercase_methods() {
        assert_eq!(
            operation("get", "/v1/agents/pages/", false),
            "agents.list_pages"
        );
        assert_eq!(
            operation("post", "//v1//conversations/", true),
            "conversations.start_stream"
        );
    }

    #[test]
    fn path_ids() {
        assert_eq!(
            path_id("/v1/agents/ag_1/versions/2"),
            Some(("agents", "ag_1"))
        );
        assert_eq!(
            path_id("/v1/conversations/c_9/restart"),
            Some(("conversations", "c_9"))
        );
        assert_eq!(path_id("/v1/agents/pages"), None);
        assert_eq!(path_id("/v1/agents"), None);
        assert_eq!(path_id("/v2/agents/x"), None);
        assert_eq!(
            base("conversations.restart_stream"),
            "conversations.restart"
        );
    }
}
