//! Serde model of the Agents & Conversations API (requests, responses, entries, events).
//!
//! Conventions shared by every type here:
//! - each object struct has `#[serde(flatten)] extra`, which keeps keys the model does not
//!   know, so parse → serialize gives back an equal JSON value;
//! - every optional field is a [`Maybe`](crate::Maybe), which keeps absent and `null` apart;
//! - every `type`-tagged union has an `Other(Value)` variant for tags it does not know;
//! - numbers whose wire type varies (`temperature`, thresholds) stay
//!   [`serde_json::Number`]s, so integers stay integers.

pub mod agents;
pub mod chunks;
pub mod completion;
pub mod conversations;
pub mod entries;
pub mod errors;
pub mod events;
pub mod tools;
pub mod usage;
