//! The eval configuration file: named variants (an existing agent, an inline agent created at run
//! start, or a bare model with tools), the prompt template, a price table and runner settings.
//!
//! ```toml
//! baseline = "closed-book"            # optional; default: the first config
//!
//! [[config]]
//! name = "closed-book"
//! model = "mistral-medium-latest"     # a bare model: direct conversations
//!
//! [[config]]
//! name = "web"
//! description = "same model with web search"
//! mode = "stream"                     # stream (default, measures TTFT) | sync
//! prompt = "Answer briefly.\n\n{question}"   # default: the bare question
//! agent = { model = "mistral-medium-latest", tools = ["web_search"], instructions = "Be concise." }
//!
//! [[config]]
//! name = "prod"
//! agent_id = "ag_0123"
//! agent_version = 3
//!
//! [prices."mistral-medium-latest"]    # USD per million tokens, and per tool call
//! prompt_per_mtok = 0.4
//! completion_per_mtok = 2.0
//! per_tool_call = { web_search = 0.03 }
//!
//! [runner]
//! concurrency = 16
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What is wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or schema error (unknown keys included).
    #[error("{origin}: {source}")]
    Toml {
        /// The file.
        origin: String,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// A rule serde cannot express.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// The broken rule.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The config every other one is compared with (default: the first).
    #[serde(default)]
    pub baseline: Option<String>,
    /// The variants, in file order.
    #[serde(rename = "config", default)]
    pub configs: Vec<Variant>,
    /// Price table by model name.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// Runner settings (command-line flags win).
    #[serde(default)]
    pub runner: RunnerSection,
}

/// Streaming or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `stream: true`; measures time to first token.
    #[default]
    Stream,
    /// `stream: false`.
    Sync,
}

impl Mode {
    /// `"stream"` or `"sync"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Sync => "sync",
        }
    }
}

/// An agent version: a number or an alias.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AgentVersion {
    /// A version number.
    Number(u64),
    /// An alias.
    Alias(String),
}

impl AgentVersion {
    /// As JSON for the request body.
    pub fn to_json(&self) -> Value {
        match self {
            AgentVersion::Number(n) => Value::from(*n),
            AgentVersion::Alias(s) => Value::from(s.clone()),
        }
    }
}

/// A tool: a bare type name (`"web_search"`) or a full tool object.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ToolSpec {
    /// `{"type": NAME}`.
    Name(String),
    /// The tool object as the API takes it.
    Object(Map<String, Value>),
}

impl ToolSpec {
    /// The tool as the API takes it.
    pub fn to_json(&self) -> Value {
        match self {
            ToolSpec::Name(n) => serde_json::json!({ "type": n }),
            ToolSpec::Object(o) => Value::Object(o.clone()),
        }
    }
}

/// An agent created through the API at run start.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InlineAgent {
    /// Model.
    pub model: String,
    /// Agent name (default `agentcap-eval-<config name>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Agent description.
    #[serde(default)]
    pub description: Option<String>,
    /// System instructions.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tools.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Completion arguments.
    #[serde(default)]
    pub completion_args: Option<Map<String, Value>>,
}

/// One named variant.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Name: letters, digits, `-` and `_`.
    pub name: String,
    /// Free text shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// An existing agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Version (or alias) of the existing agent.
    #[serde(default)]
    pub agent_version: Option<AgentVersion>,
    /// An agent created at run start.
    #[serde(default)]
    pub agent: Option<InlineAgent>,
    /// A bare model for direct conversations.
    #[serde(default)]
    pub model: Option<String>,
    /// Tools of the bare model.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Instructions of the bare model.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Completion arguments of the bare model.
    #[serde(default)]
    pub completion_args: Option<Map<String, Value>>,
    /// `stream` (default) or `sync`.
    #[serde(default)]
    pub mode: Mode,
    /// Prompt template with `{question}` (default: the bare question).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The conversation's `store` flag (default: not sent, the API's default).
    #[serde(default)]
    pub store: Option<bool>,
}

/// How a variant reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantKind {
    /// `agent_id`.
    ExistingAgent,
    /// `agent = {...}`.
    InlineAgent,
    /// `model = ...`.
    Model,
}

impl VariantKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            VariantKind::ExistingAgent => "agent_id",
            VariantKind::InlineAgent => "inline_agent",
            VariantKind::Model => "model",
        }
    }
}

impl Variant {
    /// Which of the three kinds this is (valid after [`ConfigFile::validate`]).
    pub fn kind(&self) -> VariantKind {
        if self.agent_id.is_some() {
            VariantKind::ExistingAgent
        } else if self.agent.is_some() {
            VariantKind::InlineAgent
        } else {
            VariantKind::Model
        }
    }

    /// The prompt for a question: the template with `{question}` replaced, or the bare question.
    pub fn render_prompt(&self, question: &str) -> String {
        match &self.prompt {
            Some(t) => t.replace("{question}", question),
            None => question.to_string(),
        }
    }

    /// The model, when the config names it (bare model or inline agent).
    pub fn model(&self) -> Option<&str> {
        self.model
            .as_deref()
            .or(self.agent.as_ref().map(|a| a.model.as_str()))
    }

    /// Whether a web search connector is configured (informational).
    pub fn tool_names(&self) -> Vec<String> {
        let tools = match &self.agent {
            Some(a) => &a.tools,
            None => &self.tools,
        };
        tools
            .iter()
            .map(|t| match t {
                ToolSpec::Name(n) => n.clone(),
                ToolSpec::Object(o) => o
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
            })
            .collect()
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        if let Some(d) = &self.description {
            return d.clone();
        }
        let tools = self.tool_names();
        let tools = if tools.is_empty() {
            "no tools".to_string()
        } else {
            tools.join(", ")
        };
        match self.kind() {
            VariantKind::ExistingAgent => format!(
                "agent {}{} ({})",
                self.agent_id.as_deref().unwrap_or(""),
                self.agent_version
                    .as_ref()
                    .map(|v| format!(" v{}", v.to_json()))
                    .unwrap_or_default(),
                self.mode.as_str()
            ),
            VariantKind::InlineAgent => format!(
                "inline agent on {}, {tools} ({})",
                self.model().unwrap_or(""),
                self.mode.as_str()
            ),
            VariantKind::Model => format!(
                "{}, {tools} ({})",
                self.model().unwrap_or(""),
                self.mode.as_str()
            ),
        }
    }
}

/// Prices of one model, in USD.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    #[serde(default)]
    pub prompt_per_mtok: f64,
    /// Per million completion tokens.
    #[serde(default)]
    pub completion_per_mtok: f64,
    /// Per million connector tokens.
    #[serde(default)]
    pub connector_per_mtok: f64,
    /// Per call of a tool, by tool name (`web_search = 0.03`).
    #[serde(default)]
    pub per_tool_call: BTreeMap<String, f64>,
}

impl Price {
    /// Cost of one answer.
    pub fn cost(
        &self,
        prompt: u64,
        completion: u64,
        connector: u64,
        tool_calls: &BTreeMap<String, u64>,
    ) -> f64 {
        let per_m = |n: u64, p: f64| n as f64 / 1e6 * p;
        per_m(prompt, self.prompt_per_mtok)
            + per_m(completion, self.completion_per_mtok)
            + per_m(connector, self.connector_per_mtok)
            + tool_calls
                .iter()
                .map(|(t, n)| self.per_tool_call.get(t).copied().unwrap_or(0.0) * *n as f64)
                .sum::<f64>()
    }
}

/// `[runner]`: defaults for the runner; command-line flags win.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerSection {
    /// Items in flight at once.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Request rate limit (requests per second over all configs, judge calls included).
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Time limit of one attempt, in seconds.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Attempts per request, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Total time one request may spend retrying, in seconds.
    #[serde(default)]
    pub max_retry_time_s: Option<f64>,
    /// First backoff, in milliseconds (doubles each retry, jittered).
    #[serde(default)]
    pub initial_backoff_ms: Option<u64>,
    /// Largest backoff, in milliseconds.
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
    /// Environment variable holding the API key (default [`DEFAULT_API_KEY_ENV`]).
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// The environment variable holding the API key unless `[runner] api_key_env` names another.
pub const DEFAULT_API_KEY_ENV: &str = "MISTRAL_API_KEY";

impl RunnerSection {
    /// The API key: the value of the variable `api_key_env` names (default [`DEFAULT_API_KEY_ENV`]);
    /// unset or empty is none.
    pub fn api_key(&self) -> Option<String> {
        let var = self.api_key_env.as_deref().unwrap_or(DEFAULT_API_KEY_ENV);
        std::env::var(var).ok().filter(|k| !k.is_empty())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ConfigFile {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<(ConfigFile, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let cfg = ConfigFile::parse(&path.display().to_string(), &text)?;
        Ok((cfg, text))
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<ConfigFile, ConfigError> {
        let cfg: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Toml {
            origin: origin.to_string(),
            source,
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    /// The rules serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.configs.is_empty() {
            return Err("no [[config]] given".into());
        }
        let mut seen = HashSet::new();
        for v in &self.configs {
            let at = format!("config {:?}", v.name);
            if !is_name(&v.name) {
                return Err(format!("{at}: a name is 1-64 letters, digits, '-' or '_'"));
            }
            if !seen.insert(v.name.as_str()) {
                return Err(format!("{at}: the name is used twice"));
            }
            let kinds = [v.agent_id.is_some(), v.agent.is_some(), v.model.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if kinds != 1 {
                return Err(format!(
                    "{at}: give exactly one of agent_id, agent = {{...}} or model"
                ));
            }
            if v.agent_version.is_some() && v.agent_id.is_none() {
                return Err(format!("{at}: agent_version goes with agent_id"));
            }
            if v.model.is_none()
                && (!v.tools.is_empty() || v.instructions.is_some() || v.completion_args.is_some())
            {
                return Err(format!(
                    "{at}: tools, instructions and completion_args go with model (an inline agent has its own)"
                ));
            }
            if let Some(id) = &v.agent_id
                && id.trim().is_empty()
            {
                return Err(format!("{at}: agent_id is empty"));
            }
            if let Some(m) = v.model()
                && m.trim().is_empty()
            {
                return Err(format!("{at}: model is empty"));
            }
            if let Some(p) = &v.prompt
                && !p.contains("{question}")
            {
                return Err(format!("{at}: the prompt template has no {{question}}"));
            }
            let tools = v.agent.as_ref().map_or(&v.tools, |a| &a.tools);
            for t in tools {
                if let ToolSpec::Object(o) = t
                    && !o.get("type").is_some_and(Value::is_string)
                {
                    return Err(format!("{at}: a tool object needs a string \"type\""));
                }
            }
        }
        if let Some(b) = &self.baseline
            && !self.configs.iter().any(|c| &c.name == b)
        {
            return Err(format!("baseline {b:?} is not a config"));
        }
        for (model, p) in &self.prices {
            let all = [
                p.prompt_per_mtok,
                p.completion_per_mtok,
                p.connector_per_mtok,
            ]
            .into_iter()
            .chain(p.per_tool_call.values().copied());
            for x in all {
                if !(x.is_finite() && x >= 0.0) {
                    return Err(format!("prices.{model}: prices must be finite and >= 0"));
                }
            }
        }
        let r = &self.runner;
        if r.concurrency == Some(0) {
            return Err("runner.concurrency must be at least 1".into());
        }
        if r.max_attempts == Some(0) {
            return Err("runner.max_attempts must be at least 1".into());
        }
        for (name, v) in [
            ("requests_per_second", r.requests_per_second),
            ("timeout_s", r.timeout_s),
            ("max_retry_time_s", r.max_retry_time_s),
        ] {
            if let Some(x) = v
                && !(x.is_finite() && x > 0.0)
            {
                return Err(format!("runner.{name} must be a positive number"));
            }
        }
        Ok(())
    }

    /// The baseline's name: the configured one or the first config.
    pub fn baseline_name(&self) -> &str {
        self.baseline
            .as_deref()
            .unwrap_or_else(|| self.configs[0].name.as_str())
    }

    /// The variant called `name`.
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.configs.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
baseline = "web"
[[config]]
name = "closed"
model = "m"
completion_args = { temperature = 0.0 }

[[config]]
name = "web"
mode = "sync"
prompt = "Q: {question}"
agent = { model = "m", tools = ["web_search", { type = "code_interpreter" }] }

[[config]]
name = "prod"
agent_id = "ag_1"
agent_version = 3

[prices.m]
prompt_per_mtok = 2.0
per_tool_call = { web_search = 0.5 }

[runner]
concurrency = 4
"#;

    #[test]
    fn parses_the_three_kinds() {
        let c = ConfigFile::parse("t", GOOD).unwrap();
        assert_eq!(c.baseline_name(), "web");
        let kinds: Vec<VariantKind> = c.configs.iter().map(Variant::kind).collect();
        assert_eq!(
            kinds,
            [
                VariantKind::Model,
                VariantKind::InlineAgent,
                VariantKind::ExistingAgent
            ]
        );
        let web = c.variant("web").unwrap();
        assert_eq!(web.mode, Mode::Sync);
        assert_eq!(web.render_prompt("Who?"), "Q: Who?");
        assert_eq!(c.configs[0].render_prompt("Who?"), "Who?");
        assert_eq!(web.tool_names(), ["web_search", "code_interpreter"]);
        assert_eq!(c.configs[2].agent_version, Some(AgentVersion::Number(3)));
        let p = &c.prices["m"];
        let calls = BTreeMap::from([("web_search".to_string(), 2u64)]);
        assert!((p.cost(1_000_000, 5, 0, &calls) - 3.0).abs() < 1e-9);
        assert_eq!(c.runner.concurrency, Some(4));
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let cases = [
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\nsurprise = 1\n",
                "surprise",
            ),
            ("[[config]]\nname = \"a\"\n", "exactly one of"),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\nagent_id = \"x\"\n",
                "exactly one of",
            ),
            ("[[config]]\nname = \"a b\"\nmodel = \"m\"\n", "letters"),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\n[[config]]\nname = \"a\"\nmodel = \"m\"\n",
                "twice",
            ),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\nprompt = \"no placeholder\"\n",
                "{question}",
            ),
            (
                "[[config]]\nname = \"a\"\nagent_id = \"x\"\ntools = [\"web_search\"]\n",
                "go with model",
            ),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\nagent_version = 1\n",
                "agent_version",
            ),
            (
                "baseline = \"zz\"\n[[config]]\nname = \"a\"\nmodel = \"m\"\n",
                "baseline",
            ),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\nmode = \"batch\"\n",
                "batch",
            ),
            ("", "no [[config]]"),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\n[runner]\nconcurrency = 0\n",
                "concurrency",
            ),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\n[prices.m]\nprompt_per_mtok = -1.0\n",
                "prices",
            ),
            (
                "[[config]]\nname = \"a\"\nmodel = \"m\"\ntools = [{ name = \"x\" }]\n",
                "type",
            ),
        ];
        for (text, want) in cases {
            let err = ConfigFile::parse("t", text).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?} for\n{text}");
        }
    }
}
