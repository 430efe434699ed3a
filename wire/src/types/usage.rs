//! `ConversationUsageInfo`: token counts of one conversation turn.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Maybe;

/// Token usage of a turn (`ConversationUsageInfo`).
///
/// The three counters default to 0 in the spec and may be absent in 2026 payloads, hence
/// `Maybe`; the accessor methods apply the default. Observed invariant:
/// `total_tokens = prompt_tokens + completion_tokens + connector_tokens`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConversationUsageInfo {
    /// Prompt tokens.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub prompt_tokens: Maybe<u64>,
    /// Completion tokens.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_tokens: Maybe<u64>,
    /// Total tokens.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub total_tokens: Maybe<u64>,
    /// Tokens spent by connectors / built-in tools.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub connector_tokens: Maybe<u64>,
    /// Tool name → number of calls, e.g. `{"web_search": 1}`.
    ///
    /// Kept as raw JSON values: the server has been seen sending a count as a string.
    /// Use [`ConversationUsageInfo::connector_counts`] for numbers.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub connectors: Maybe<Map<String, Value>>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ConversationUsageInfo {
    /// Usage with the three main counters set explicitly and the connector fields absent.
    pub fn new(prompt_tokens: u64, completion_tokens: u64, total_tokens: u64) -> Self {
        ConversationUsageInfo {
            prompt_tokens: Maybe::Present(prompt_tokens),
            completion_tokens: Maybe::Present(completion_tokens),
            total_tokens: Maybe::Present(total_tokens),
            ..Default::default()
        }
    }

    /// `prompt_tokens`, 0 when absent or null.
    pub fn prompt(&self) -> u64 {
        self.prompt_tokens.get().copied().unwrap_or(0)
    }

    /// `completion_tokens`, 0 when absent or null.
    pub fn completion(&self) -> u64 {
        self.completion_tokens.get().copied().unwrap_or(0)
    }

    /// `total_tokens`, 0 when absent or null.
    pub fn total(&self) -> u64 {
        self.total_tokens.get().copied().unwrap_or(0)
    }

    /// `connector_tokens`, 0 when absent or null.
    pub fn connector(&self) -> u64 {
        self.connector_tokens.get().copied().unwrap_or(0)
    }

    /// Connector call counts as numbers. Integer strings (`"1"`) are accepted; entries that
    /// are neither a non-negative integer nor such a string are skipped.
    pub fn connector_counts(&self) -> Vec<(&str, u64)> {
        let Some(map) = self.connectors.get() else {
            return Vec::new();
        };
        map.iter()
            .filter_map(|(name, v)| {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }?;
                Some((name.as_str(), n))
            })
            .collect()
    }
}
