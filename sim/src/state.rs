//! In-memory state of the twin: agents with versions and aliases, conversations with their entries.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// One version of an agent: its configuration as the API shows it.
#[derive(Debug, Clone)]
pub struct AgentVersion {
    /// The configuration fields (`model`, `name`, `instructions`, `tools`, …) in the API's order.
    pub config: Map<String, Value>,
    /// When this version was created.
    pub created_at: String,
}

/// An alias pointing at a version.
#[derive(Debug, Clone)]
pub struct Alias {
    /// The version it points at.
    pub version: u64,
    /// When the alias was first created.
    pub created_at: String,
    /// When it was last re-pointed.
    pub updated_at: String,
}

/// An agent and all its versions.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    /// `ag_…`.
    pub id: String,
    /// Versions, index = version number.
    pub versions: Vec<AgentVersion>,
    /// The active version.
    pub active: u64,
    /// Creation time of the agent.
    pub created_at: String,
    /// Last change (new version or version switch).
    pub updated_at: String,
    /// Aliases by name, in creation order.
    pub aliases: Vec<(String, Alias)>,
}

impl AgentRecord {
    /// The agent object as the API returns it, for `version` (default: the active one).
    pub fn render(&self, version: Option<u64>) -> Value {
        let v = version.unwrap_or(self.active);
        let ver = &self.versions[v as usize];
        let mut out = Map::new();
        out.insert("object".into(), json!("agent"));
        out.insert("id".into(), json!(self.id));
        out.insert("version".into(), json!(v));
        out.insert(
            "versions".into(),
            json!((0..self.versions.len() as u64).collect::<Vec<_>>()),
        );
        out.insert("created_at".into(), json!(self.created_at));
        let updated = if version.is_some() && v != self.active {
            &ver.created_at
        } else {
            &self.updated_at
        };
        out.insert("updated_at".into(), json!(updated));
        for (k, val) in &ver.config {
            out.insert(k.clone(), val.clone());
        }
        Value::Object(out)
    }

    /// The configuration of `version` (default: active).
    pub fn config(&self, version: Option<u64>) -> &Map<String, Value> {
        &self.versions[version.unwrap_or(self.active) as usize].config
    }

    /// Resolves an `agent_version` given as an int, a numeric string or an alias name.
    pub fn resolve_version(&self, v: &Value) -> Option<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64()?,
            Value::String(s) => match s.parse::<u64>() {
                Ok(n) => n,
                Err(_) => self.aliases.iter().find(|(a, _)| a == s)?.1.version,
            },
            _ => return None,
        };
        ((n as usize) < self.versions.len()).then_some(n)
    }
}

/// Who a conversation talks to.
// One per stored conversation; boxing the model settings would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Party {
    /// An agent conversation.
    Agent {
        /// `ag_…`.
        agent_id: String,
        /// The agent version in force.
        agent_version: u64,
    },
    /// A model conversation with its own settings.
    Model {
        /// Model name.
        model: String,
        /// System prompt.
        instructions: Value,
        /// Tools (always an array).
        tools: Value,
        /// Completion args (a full object).
        completion_args: Value,
        /// Guardrails or null.
        guardrails: Value,
    },
}

/// A stored conversation.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// `conv_…`.
    pub id: String,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Agent or model.
    pub party: Party,
    /// Label.
    pub name: Value,
    /// Label.
    pub description: Value,
    /// Free-form metadata or null.
    pub metadata: Value,
    /// Every entry, inputs included, in order.
    pub entries: Vec<Value>,
}

impl Conversation {
    /// The conversation object as `GET /v1/conversations/{id}` returns it.
    pub fn render(&self) -> Value {
        let mut out = Map::new();
        out.insert("object".into(), json!("conversation"));
        out.insert("id".into(), json!(self.id));
        out.insert("created_at".into(), json!(self.created_at));
        out.insert("updated_at".into(), json!(self.updated_at));
        match &self.party {
            Party::Agent {
                agent_id,
                agent_version,
            } => {
                out.insert("agent_id".into(), json!(agent_id));
                out.insert("agent_version".into(), json!(agent_version));
            }
            Party::Model {
                model,
                instructions,
                tools,
                completion_args,
                guardrails,
            } => {
                out.insert("model".into(), json!(model));
                out.insert("instructions".into(), instructions.clone());
                out.insert("tools".into(), tools.clone());
                out.insert("completion_args".into(), completion_args.clone());
                out.insert("guardrails".into(), guardrails.clone());
            }
        }
        out.insert("name".into(), self.name.clone());
        out.insert("description".into(), self.description.clone());
        out.insert("metadata".into(), self.metadata.clone());
        Value::Object(out)
    }
}

/// All state, behind one lock held only for short, non-async critical sections.
#[derive(Debug, Default)]
pub struct State {
    /// Agents by id.
    pub agents: HashMap<String, AgentRecord>,
    /// Agent ids in creation order.
    pub agent_order: Vec<String>,
    /// Conversations by id.
    pub conversations: HashMap<String, Conversation>,
    /// Conversation ids in creation order (deleted ones are skipped when listing).
    pub conversation_order: Vec<String>,
}

impl State {
    /// Drops ids of deleted conversations from the order once they dominate it.
    pub fn compact_orders(&mut self) {
        if self.conversation_order.len() > 2 * self.conversations.len() + 1024 {
            let live = &self.conversations;
            self.conversation_order.retain(|id| live.contains_key(id));
        }
        if self.agent_order.len() > 2 * self.agents.len() + 1024 {
            let live = &self.agents;
            self.agent_order.retain(|id| live.contains_key(id));
        }
    }
}
