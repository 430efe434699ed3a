//! Classifies an exchange into an API operation name from its method, path and stream flag.
//!
//! The names are `<group>.<operation>` (`conversations.append_stream`, `agents.get_version`…);
//! anything the Agents / Conversations / chat API does not define is `other`. Streaming is decided
//! by the caller from the request body's `"stream": true`, never from the path.

/// The operation name of a request.
///
/// `/v1/agents/pages` is matched before `/v1/agents/{id}`. A trailing slash and empty path
/// segments are ignored; the query string must not be part of `path`.
pub fn operation(method: &str, path: &str, stream: bool) -> &'static str {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = method.to_ascii_uppercase();
    let pick = |plain: &'static str, streamed: &'static str| if stream { streamed } else { plain };
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["v1", "agents"]) => "agents.create",
        ("GET", ["v1", "agents"]) => "agents.list",
        ("GET", ["v1", "agents", "pages"]) => "agents.list_pages",
        ("POST", ["v1", "agents", "completions"]) => "agents.completions",
        ("GET", ["v1", "agents", _]) => "agents.get",
        ("PATCH", ["v1", "agents", _]) => "agents.update",
        ("DELETE", ["v1", "agents", _]) => "agents.delete",
        ("PATCH", ["v1", "agents", _, "version"]) => "agents.update_version",
        ("GET", ["v1", "agents", _, "versions"]) => "agents.list_versions",
        ("GET", ["v1", "agents", _, "versions", _]) => "agents.get_version",
        ("PUT", ["v1", "agents", _, "aliases"]) => "agents.alias_upsert",
        ("GET", ["v1", "agents", _, "aliases"]) => "agents.alias_list",
        ("DELETE", ["v1", "agents", _, "aliases"]) => "agents.alias_delete",
        ("POST", ["v1", "conversations"]) => {
            pick("conversations.start", "conversations.start_stream")
        }
        ("GET", ["v1", "conversations"]) => "conversations.list",
        ("GET", ["v1", "conversations", _]) => "conversations.get",
        ("DELETE", ["v1", "conversations", _]) => "conversations.delete",
        ("POST", ["v1", "conversations", _]) => {
            pick("conversations.append", "conversations.append_stream")
        }
        ("GET", ["v1", "conversations", _, "history"]) => "conversations.history",
        ("GET", ["v1", "conversations", _, "messages"]) => "conversations.messages",
        ("POST", ["v1", "conversations", _, "restart"]) => {
            pick("conversations.restart", "conversations.restart_stream")
        }
        ("POST", ["v1", "chat", "completions"]) => {
            pick("chat.completions", "chat.completions_stream")
        }
        _ => "other",
    }
}

/// The id in `/v1/agents/{id}/…` or `/v1/conversations/{id}/…`, when the path has one
/// (`pages` and `completions` under `/v1/agents` are not ids).
pub fn path_id(path: &str) -> Option<(&'static str, &str)> {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    if segs.next() != Some("v1") {
        return None;
    }
    let group = match segs.next()? {
        "agents" => "agents",
        "conversations" => "conversations",
        _ => return None,
    };
    let id = segs.next()?;
    if group == "agents" && matches!(id, "pages" | "completions") {
        return None;
    }
    Some((group, id))
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
