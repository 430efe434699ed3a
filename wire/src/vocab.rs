//! The shared vocabulary: API operations, agentcap's own header names, the simulated-upstream label and
//! the headers whose values are secrets. Every crate names these through this module, never by a
//! literal of its own.

/// An operation of the Agents, Conversations and chat APIs, as the recording names it.
///
/// Streaming is part of the operation (`conversations.start_stream`); it is decided by the request
/// body's `"stream": true`, never by the path. Anything else the API serves is [`Operation::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /v1/agents`
    AgentsCreate,
    /// `GET /v1/agents`
    AgentsList,
    /// `GET /v1/agents/pages`
    AgentsListPages,
    /// `POST /v1/agents/completions`
    AgentsCompletions,
    /// `POST /v1/agents/completions` with `stream: true`
    AgentsCompletionsStream,
    /// `GET /v1/agents/{id}`
    AgentsGet,
    /// `PATCH /v1/agents/{id}`
    AgentsUpdate,
    /// `DELETE /v1/agents/{id}`
    AgentsDelete,
    /// `PATCH /v1/agents/{id}/version`
    AgentsUpdateVersion,
    /// `GET /v1/agents/{id}/versions`
    AgentsListVersions,
    /// `GET /v1/agents/{id}/versions/{version}`
    AgentsGetVersion,
    /// `PUT /v1/agents/{id}/aliases`
    AgentsAliasUpsert,
    /// `GET /v1/agents/{id}/aliases`
    AgentsAliasList,
    /// `DELETE /v1/agents/{id}/aliases`
    AgentsAliasDelete,
    /// `POST /v1/conversations`
    ConversationsStart,
    /// `POST /v1/conversations` with `stream: true`
    ConversationsStartStream,
    /// `GET /v1/conversations`
    ConversationsList,
    /// `GET /v1/conversations/{id}`
    ConversationsGet,
    /// `DELETE /v1/conversations/{id}`
    ConversationsDelete,
    /// `POST /v1/conversations/{id}`
    ConversationsAppend,
    /// `POST /v1/conversations/{id}` with `stream: true`
    ConversationsAppendStream,
    /// `GET /v1/conversations/{id}/history`
    ConversationsHistory,
    /// `GET /v1/conversations/{id}/messages`
    ConversationsMessages,
    /// `POST /v1/conversations/{id}/restart`
    ConversationsRestart,
    /// `POST /v1/conversations/{id}/restart` with `stream: true`
    ConversationsRestartStream,
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/chat/completions` with `stream: true`
    ChatCompletionsStream,
    /// Anything else.
    Other,
}

impl Operation {
    /// Every operation, [`Operation::Other`] last.
    pub const ALL: [Operation; 28] = [
        Self::AgentsCreate,
        Self::AgentsList,
        Self::AgentsListPages,
        Self::AgentsCompletions,
        Self::AgentsCompletionsStream,
        Self::AgentsGet,
        Self::AgentsUpdate,
        Self::AgentsDelete,
        Self::AgentsUpdateVersion,
        Self::AgentsListVersions,
        Self::AgentsGetVersion,
        Self::AgentsAliasUpsert,
        Self::AgentsAliasList,
        Self::AgentsAliasDelete,
        Self::ConversationsStart,
        Self::ConversationsStartStream,
        Self::ConversationsList,
        Self::ConversationsGet,
        Self::ConversationsDelete,
        Self::ConversationsAppend,
        Self::ConversationsAppendStream,
        Self::ConversationsHistory,
        Self::ConversationsMessages,
        Self::ConversationsRestart,
        Self::ConversationsRestartStream,
        Self::ChatCompletions,
        Self::ChatCompletionsStream,
        Self::Other,
    ];

    /// Classifies a request by method, path (without the query string) and the body's stream flag.
    ///
    /// `/v1/agents/pages` and `/v1/agents/completions` are matched before `/v1/agents/{id}`; a
    /// trailing slash and empty segments are ignored; the method is compared case-insensitively.
    pub fn classify(method: &str, path: &str, stream: bool) -> Self {
        use Operation as O;
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = method.to_ascii_uppercase();
        let pick = |plain: O, streamed: O| if stream { streamed } else { plain };
        match (method.as_str(), segs.as_slice()) {
            ("POST", ["v1", "agents"]) => O::AgentsCreate,
            ("GET", ["v1", "agents"]) => O::AgentsList,
            ("GET", ["v1", "agents", "pages"]) => O::AgentsListPages,
            ("POST", ["v1", "agents", "completions"]) => {
                pick(O::AgentsCompletions, O::AgentsCompletionsStream)
            }
            ("GET", ["v1", "agents", _]) => O::AgentsGet,
            ("PATCH", ["v1", "agents", _]) => O::AgentsUpdate,
            ("DELETE", ["v1", "agents", _]) => O::AgentsDelete,
            ("PATCH", ["v1", "agents", _, "version"]) => O::AgentsUpdateVersion,
            ("GET", ["v1", "agents", _, "versions"]) => O::AgentsListVersions,
            ("GET", ["v1", "agents", _, "versions", _]) => O::AgentsGetVersion,
            ("PUT", ["v1", "agents", _, "aliases"]) => O::AgentsAliasUpsert,
            ("GET", ["v1", "agents", _, "aliases"]) => O::AgentsAliasList,
            ("DELETE", ["v1", "agents", _, "aliases"]) => O::AgentsAliasDelete,
            ("POST", ["v1", "conversations"]) => {
                pick(O::ConversationsStart, O::ConversationsStartStream)
            }
            ("GET", ["v1", "conversations"]) => O::ConversationsList,
            ("GET", ["v1", "conversations", _]) => O::ConversationsGet,
            ("DELETE", ["v1", "conversations", _]) => O::ConversationsDelete,
            ("POST", ["v1", "conversations", _]) => {
                pick(O::ConversationsAppend, O::ConversationsAppendStream)
            }
            ("GET", ["v1", "conversations", _, "history"]) => O::ConversationsHistory,
            ("GET", ["v1", "conversations", _, "messages"]) => O::ConversationsMessages,
            ("POST", ["v1", "conversations", _, "restart"]) => {
                pick(O::ConversationsRestart, O::ConversationsRestartStream)
            }
            ("POST", ["v1", "chat", "completions"]) => {
                pick(O::ChatCompletions, O::ChatCompletionsStream)
            }
            _ => O::Other,
        }
    }

    /// The name stored in the recording (`exchanges.operation`): `<group>.<operation>`, e.g.
    /// `conversations.append_stream`; `other` for [`Operation::Other`].
    pub fn name(self) -> &'static str {
        use Operation as O;
        match self {
            O::AgentsCreate => "agents.create",
            O::AgentsList => "agents.list",
            O::AgentsListPages => "agents.list_pages",
            O::AgentsCompletions => "agents.completions",
            O::AgentsCompletionsStream => "agents.completions_stream",
            O::AgentsGet => "agents.get",
            O::AgentsUpdate => "agents.update",
            O::AgentsDelete => "agents.delete",
            O::AgentsUpdateVersion => "agents.update_version",
            O::AgentsListVersions => "agents.list_versions",
            O::AgentsGetVersion => "agents.get_version",
            O::AgentsAliasUpsert => "agents.alias_upsert",
            O::AgentsAliasList => "agents.alias_list",
            O::AgentsAliasDelete => "agents.alias_delete",
            O::ConversationsStart => "conversations.start",
            O::ConversationsStartStream => "conversations.start_stream",
            O::ConversationsList => "conversations.list",
            O::ConversationsGet => "conversations.get",
            O::ConversationsDelete => "conversations.delete",
            O::ConversationsAppend => "conversations.append",
            O::ConversationsAppendStream => "conversations.append_stream",
            O::ConversationsHistory => "conversations.history",
            O::ConversationsMessages => "conversations.messages",
            O::ConversationsRestart => "conversations.restart",
            O::ConversationsRestartStream => "conversations.restart_stream",
            O::ChatCompletions => "chat.completions",
            O::ChatCompletionsStream => "chat.completions_stream",
            O::Other => "other",
        }
    }

    /// The operation a recorded name stands for ([`Operation::Other`] for an unknown name).
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .unwrap_or(Self::Other)
    }

    /// The `operationId` of the official OpenAPI description. The chat and agents completions
    /// endpoints have one id for both the streamed and the plain form; [`Operation::Other`] has none.
    pub fn operation_id(self) -> Option<&'static str> {
        use Operation as O;
        Some(match self {
            O::AgentsCreate => "agents_api_v1_agents_create",
            O::AgentsList => "agents_api_v1_agents_list",
            O::AgentsListPages => "agents_api_v1_agents_list_pages",
            O::AgentsCompletions | O::AgentsCompletionsStream => {
                "agents_completion_v1_agents_completions_post"
            }
            O::AgentsGet => "agents_api_v1_agents_get",
            O::AgentsUpdate => "agents_api_v1_agents_update",
            O::AgentsDelete => "agents_api_v1_agents_delete",
            O::AgentsUpdateVersion => "agents_api_v1_agents_update_version",
            O::AgentsListVersions => "agents_api_v1_agents_list_versions",
            O::AgentsGetVersion => "agents_api_v1_agents_get_version",
            O::AgentsAliasUpsert => "agents_api_v1_agents_create_or_update_alias",
            O::AgentsAliasList => "agents_api_v1_agents_list_version_aliases",
            O::AgentsAliasDelete => "agents_api_v1_agents_delete_alias",
            O::ConversationsStart => "agents_api_v1_conversations_start",
            O::ConversationsStartStream => "agents_api_v1_conversations_start_stream",
            O::ConversationsList => "agents_api_v1_conversations_list",
            O::ConversationsGet => "agents_api_v1_conversations_get",
            O::ConversationsDelete => "agents_api_v1_conversations_delete",
            O::ConversationsAppend => "agents_api_v1_conversations_append",
            O::ConversationsAppendStream => "agents_api_v1_conversations_append_stream",
            O::ConversationsHistory => "agents_api_v1_conversations_history",
            O::ConversationsMessages => "agents_api_v1_conversations_messages",
            O::ConversationsRestart => "agents_api_v1_conversations_restart",
            O::ConversationsRestartStream => "agents_api_v1_conversations_restart_stream",
            O::ChatCompletions | O::ChatCompletionsStream => {
                "chat_completion_v1_chat_completions_post"
            }
            O::Other => return None,
        })
    }

    /// Whether the operation runs a conversation turn (start, append or restart, streamed or not).
    pub fn is_turn(self) -> bool {
        matches!(
            self.base(),
            Self::ConversationsStart | Self::ConversationsAppend | Self::ConversationsRestart
        )
    }

    /// Whether this is the streamed form of an operation.
    pub fn is_stream(self) -> bool {
        self.base() != self
    }

    /// The operation without its streamed form (`ConversationsStartStream` → `ConversationsStart`).
    pub fn base(self) -> Self {
        use Operation as O;
        match self {
            O::AgentsCompletionsStream => O::AgentsCompletions,
            O::ConversationsStartStream => O::ConversationsStart,
            O::ConversationsAppendStream => O::ConversationsAppend,
            O::ConversationsRestartStream => O::ConversationsRestart,
            O::ChatCompletionsStream => O::ChatCompletions,
            o => o,
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The resource group and id in `/v1/agents/{id}/…` or `/v1/conversations/{id}/…`, when the path has
/// one (`pages` and `completions` under `/v1/agents` are not ids).
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

/// Header names agentcap reads or writes (lower case, as HTTP/2 and `http::HeaderName` use them).
pub mod headers {
    /// `traceparent`: the W3C trace context header a client may send; the proxy forwards it
    /// unchanged and parents its exchange span on it (see [`crate::trace_context`]).
    pub const TRACEPARENT: &str = "traceparent";
    /// Request header: the proxy's access token (`--auth-token`); taken off before forwarding.
    pub const TOKEN: &str = "x-agentcap-token";
    /// Request header: a session name recorded with the exchange; taken off before forwarding.
    pub const SESSION: &str = "x-agentcap-session";
    /// Request header prefix: `x-agentcap-tag-<name>: value` is recorded as a tag; taken off.
    pub const TAG_PREFIX: &str = "x-agentcap-tag-";
    /// Response header the twin puts on every response, with the value [`UPSTREAM_SIMULATED`].
    pub const UPSTREAM: &str = "x-agentcap-upstream";
    /// The value of [`UPSTREAM`] on the twin's responses.
    pub const UPSTREAM_SIMULATED: &str = "simulated";
    /// Request header that injects a fault into one request served by the twin.
    pub const SIM_FAULT: &str = "x-agentcap-sim-fault";

    /// Header names whose values are credentials: never stored, logged or journaled.
    pub const SECRET: [&str; 7] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        TOKEN,
    ];

    /// Whether a header's value must never be stored: one of [`SECRET`], or a name that says
    /// `secret` or `password` (compared case-insensitively, surrounding blanks ignored).
    pub fn is_secret(name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        SECRET.contains(&name.as_str()) || name.contains("secret") || name.contains("password")
    }
}

/// The label every user-visible output that came from the twin carries.
pub const SIMULATED_LABEL: &str = "simulated upstream";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_unique_and_round_trip() {
        let mut names = std::collections::HashSet::new();
        for op in Operation::ALL {
            assert!(names.insert(op.name()), "duplicate name {}", op.name());
            assert_eq!(Operation::from_name(op.name()), op);
            assert!(!op.base().is_stream());
            assert_eq!(op.is_stream(), op.name().ends_with("_stream"));
        }
        assert_eq!(Operation::from_name("nonsense"), Operation::Other);
        assert_eq!(Operation::Other.operation_id(), None);
    }

    #[test]
    fn classifies_ids_before_collection_words() {
        assert_eq!(
            Operation::classify("get", "/v1/agents/pages/", false),
            Operation::AgentsListPages
        );
        assert_eq!(
            Operation::classify("GET", "/v1/agents/ag_1", false),
            Operation::AgentsGet
        );
        assert_eq!(
            Operation::classify("POST", "/v1/conversations/c/restart", true),
            Operation::ConversationsRestartStream
        );
        assert!(Operation::ConversationsRestartStream.is_turn());
        assert!(!Operation::ConversationsGet.is_turn());
        assert_eq!(path_id("/v1/agents/completions"), None);
        assert_eq!(
            path_id("/v1/conversations/c_1/history"),
            Some(("conversations", "c_1"))
        );
    }

    #[test]
    fn secret_headers_are_recognised_in_any_case() {
        for h in headers::SECRET {
            assert!(headers::is_secret(&h.to_ascii_uppercase()));
        }
        assert!(headers::is_secret(" X-Client-Secret "));
        assert!(!headers::is_secret("content-type"));
    }
}
