//! Rebuilds the output entries of a streamed turn from its conversation events, so that a
//! streamed turn and a non-streamed one can be compared entry by entry.
//!
//! Rules (the same the official Python SDK applies, plus the documented extras):
//! - events are grouped by `output_index` (absent means 0); outputs are returned in
//!   ascending `output_index` order. The first event of a group decides the entry type;
//!   a later event of another type at the same index is ignored and reported in
//!   [`AssembledTurn::anomalies`];
//! - `message.output`: the `content` of the deltas, in order. If every delta is a string
//!   the content is their concatenation; otherwise strings become `text` chunks, adjacent
//!   `text` chunks merge, and other chunks are appended in order (`content_index` is the
//!   position in that final array). Extension: a `thinking` delta directly after another
//!   `thinking` delta with the same `content_index` is merged into it (nested parts
//!   appended, adjacent nested texts merged);
//! - `function.call`: `arguments` fragments concatenated; `id`, `name`, `tool_call_id`,
//!   `model`, `agent_id` and `confirmation_status` come from the first delta;
//! - `tool.execution`: `id`, `name`, `model`, `agent_id`, `arguments` from `started`,
//!   `arguments` fragments from `delta` appended, `info` from `done`;
//! - `agent.handoff`: `previous_*` from `started`, `next_*` from `done`; if one half is
//!   missing the entry is returned as [`Entry::Other`] with what is known (and an anomaly);
//! - every entry gets `object: "entry"` and its `type`; `id`, `model`, `agent_id` and
//!   `role` are copied when the events carry them;
//! - timestamps: `created_at` is the `created_at` of the first event of the group that has
//!   one and `completed_at` that of the last such event. When no event of the group carries
//!   `created_at` (as in the 2025 captures) both stay absent — the assembler never invents
//!   times. Use [`comparable`] / [`same_outputs`] to compare with non-streamed outputs,
//!   which ignores both timestamps;
//! - fields of events that the entry type does not have (unknown extra keys included) are
//!   not copied into the entry.
//!
//! `conversation.response.started` gives the conversation id, `conversation.response.done`
//! the usage and `conversation.response.error` the error.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::Maybe;
use crate::types::chunks::{ContentChunk, DeltaContent, MessageContent, TextChunk, ThinkChunk};
use crate::types::conversations::{CONVERSATION_RESPONSE_OBJECT, ConversationResponse};
use crate::types::entries::{
    AgentHandoffEntry, ConfirmationStatus, ENTRY_OBJECT, Entry, FunctionArguments,
    FunctionCallEntry, MessageOutputEntry, Role, ToolExecutionEntry,
};
use crate::types::events::{ConversationEvent, ResponseErrorEvent};
use crate::types::usage::ConversationUsageInfo;

/// The result of assembling one streamed turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssembledTurn {
    /// From `conversation.response.started` (the first one, if several).
    pub conversation_id: Option<String>,
    /// Rebuilt output entries in `output_index` order.
    pub outputs: Vec<Entry>,
    /// From `conversation.response.done` (the last one, if several).
    pub usage: Option<ConversationUsageInfo>,
    /// From `conversation.response.error` (the last one, if several).
    pub error: Option<ResponseErrorEvent>,
    /// Protocol oddities met on the way (type clashes at one index, id changes within an
    /// entry, repeated terminal events, unknown events, incomplete handoffs…).
    pub anomalies: Vec<String>,
    /// Positions in `outputs` of the entries whose content was cut because the assembler's
    /// budget ([`EntryAssembler::with_budget`]) ran out; always empty without a budget.
    pub truncated: Vec<usize>,
    /// Outputs (new `output_index` groups) seen after the budget ran out, not assembled.
    pub dropped_outputs: u64,
}

impl AssembledTurn {
    /// `true` once a `done` or `error` event was seen.
    pub fn is_finished(&self) -> bool {
        self.usage.is_some() || self.error.is_some()
    }

    /// The equivalent non-streamed response, when the stream had both a conversation id
    /// and usage (i.e. it started and completed successfully).
    pub fn to_response(&self) -> Option<ConversationResponse> {
        Some(ConversationResponse {
            object: Maybe::Present(CONVERSATION_RESPONSE_OBJECT.to_owned()),
            conversation_id: self.conversation_id.clone()?,
            outputs: self.outputs.clone(),
            usage: self.usage.clone()?,
            guardrails: Maybe::Absent,
            extra: Map::new(),
        })
    }
}

/// Feeds on conversation events and rebuilds the turn's output entries.
/// See the [module documentation](self) for the rules.
///
/// Memory: without a budget, the assembler holds every delta it was fed. With
/// [`EntryAssembler::with_budget`], content, arguments, new outputs and anomaly texts are
/// counted against the budget; once it is spent, further content is not appended (the entry is
/// listed in [`AssembledTurn::truncated`]), new outputs are only counted and anomalies only
/// counted, so the assembler holds about `budget` bytes whatever the stream.
#[derive(Debug, Clone, Default)]
pub struct EntryAssembler {
    slots: BTreeMap<u64, Slot>,
    turn: AssembledTurn,
    /// Bytes still allowed; `None`: unbounded.
    room: Option<usize>,
    truncated_slots: std::collections::BTreeSet<u64>,
    dropped_anomalies: u64,
}

/// What a new output group costs against the budget besides its content.
const SLOT_COST: usize = 256;

impl EntryAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty assembler that keeps about `budget` bytes of content at most (see the type's docs).
    pub fn with_budget(budget: usize) -> Self {
        EntryAssembler {
            room: Some(budget),
            ..Self::default()
        }
    }

    /// Takes `n` bytes from the budget; `false` (and the budget spent) when they do not fit.
    fn spend(&mut self, n: usize) -> bool {
        match &mut self.room {
            None => true,
            Some(r) if *r >= n => {
                *r -= n;
                true
            }
            Some(r) => {
                *r = 0;
                false
            }
        }
    }

    fn anomaly(&mut self, text: String) {
        if self.spend(text.len()) {
            self.turn.anomalies.push(text);
        } else {
            self.dropped_anomalies += 1;
        }
    }

    /// Feeds one event.
    pub fn push(&mut self, ev: &ConversationEvent) {
        if self.room.is_some() {
            return self.push_budgeted(ev);
        }
        self.push_inner(ev);
    }

    fn push_budgeted(&mut self, ev: &ConversationEvent) {
        let cost = content_cost(ev);
        match ev {
            ConversationEvent::ResponseStarted(_)
            | ConversationEvent::ResponseDone(_)
            | ConversationEvent::ResponseError(_)
            | ConversationEvent::Other(_) => {}
            _ => {
                let index = ev.output_index().unwrap_or(0);
                if !self.slots.contains_key(&index) {
                    if !self.spend(SLOT_COST.saturating_add(cost)) {
                        self.turn.dropped_outputs += 1;
                        return;
                    }
                } else if !self.spend(cost) {
                    self.truncated_slots.insert(index);
                    return;
                }
            }
        }
        let before = self.turn.anomalies.len();
        self.push_inner(ev);
        // The anomalies this event added count too; past the budget they are only counted.
        let added: Vec<String> = self.turn.anomalies.drain(before..).collect();
        for a in added {
            self.anomaly(a);
        }
    }

    fn push_inner(&mut self, ev: &ConversationEvent) {
        let turn = &mut self.turn;
        match ev {
            ConversationEvent::ResponseStarted(e) => match &turn.conversation_id {
                None => turn.conversation_id = Some(e.conversation_id.clone()),
                Some(id) if *id != e.conversation_id => turn.anomalies.push(format!(
                    "second conversation.response.started with conversation_id {} (keeping {id})",
                    e.conversation_id
                )),
                Some(_) => {}
            },
            ConversationEvent::ResponseDone(e) => {
                if turn.usage.is_some() {
                    turn.anomalies
                        .push("more than one conversation.response.done".to_owned());
                }
                turn.usage = Some(e.usage.clone());
            }
            ConversationEvent::ResponseError(e) => {
                if turn.error.is_some() {
                    turn.anomalies
                        .push("more than one conversation.response.error".to_owned());
                }
                turn.error = Some(e.clone());
            }
            ConversationEvent::Other(v) => turn.anomalies.push(format!(
                "ignored event of unknown type {}",
                v.get("type")
                    .map_or_else(|| "(none)".to_owned(), Value::to_string)
            )),
            _ => self.push_output_event(ev),
        }
    }

    /// Parses a JSON event payload and feeds it.
    pub fn push_value(&mut self, ev: &Value) -> Result<(), serde_json::Error> {
        let ev = ConversationEvent::from_value(ev.clone())?;
        self.push(&ev);
        Ok(())
    }

    /// Finishes the turn and returns what was assembled.
    pub fn finish(self) -> AssembledTurn {
        let mut turn = self.turn;
        for (index, slot) in self.slots {
            if self.truncated_slots.contains(&index) {
                turn.truncated.push(turn.outputs.len());
            }
            turn.outputs
                .push(slot.into_entry(index, &mut turn.anomalies));
        }
        if self.dropped_anomalies > 0 {
            turn.anomalies.push(format!(
                "{} more anomalies not kept (budget spent)",
                self.dropped_anomalies
            ));
        }
        if turn.dropped_outputs > 0 {
            turn.anomalies.push(format!(
                "{} outputs not assembled (budget spent)",
                turn.dropped_outputs
            ));
        }
        turn
    }

    fn push_output_event(&mut self, ev: &ConversationEvent) {
        let index = ev.output_index().unwrap_or(0);
        let anomalies = &mut self.turn.anomalies;
        let slot = self.slots.entry(index).or_insert_with(|| Slot::new(ev));
        if !slot.accepts(ev) {
            anomalies.push(format!(
                "ignored {} at output_index {index}, which holds a {} entry",
                ev.type_name().unwrap_or("?"),
                slot.entry_type()
            ));
            return;
        }
        if let Some(id) = event_id(ev)
            && id != slot.common().id
        {
            anomalies.push(format!(
                "{} at output_index {index} has id {id}, entry has id {}",
                ev.type_name().unwrap_or("?"),
                slot.common().id
            ));
        }
        if let Some(t) = ev.created_at() {
            let c = slot.common_mut();
            c.created_at.get_or_insert_with(|| t.to_owned());
            c.completed_at = Some(t.to_owned());
        }
        slot.apply(ev);
    }
}

/// Fields every slot tracks.
#[derive(Debug, Clone, Default)]
struct Common {
    id: String,
    created_at: Option<String>,
    completed_at: Option<String>,
}

#[derive(Debug, Clone)]
enum Slot {
    Message {
        common: Common,
        model: Maybe<String>,
        agent_id: Maybe<String>,
        role: Maybe<Role>,
        parts: Vec<(u64, DeltaContent)>,
    },
    FunctionCall {
        common: Common,
        model: Maybe<String>,
        agent_id: Maybe<String>,
        name: String,
        tool_call_id: String,
        confirmation_status: Maybe<ConfirmationStatus>,
        arguments: String,
    },
    ToolExecution {
        common: Common,
        model: Maybe<String>,
        agent_id: Maybe<String>,
        name: String,
        arguments: Option<String>,
        info: Maybe<Map<String, Value>>,
    },
    Handoff {
        common: Common,
        previous: Option<(String, String)>,
        next: Option<(String, String)>,
    },
}

fn event_id(ev: &ConversationEvent) -> Option<&str> {
    Some(match ev {
        ConversationEvent::MessageOutputDelta(e) => &e.id,
        ConversationEvent::ToolExecutionStarted(e) => &e.id,
        ConversationEvent::ToolExecutionDelta(e) => &e.id,
        ConversationEvent::ToolExecutionDone(e) => &e.id,
        ConversationEvent::FunctionCallDelta(e) => &e.id,
        ConversationEvent::AgentHandoffStarted(e) => &e.id,
        ConversationEvent::AgentHandoffDone(e) => &e.id,
        _ => return None,
    })
}

impl Slot {
    /// An empty slot of the kind `ev` belongs to, with the identity fields of `ev`.
    /// Only called for output events.
    fn new(ev: &ConversationEvent) -> Slot {
        let common = Common {
            id: event_id(ev).unwrap_or_default().to_owned(),
            ..Default::default()
        };
        match ev {
            ConversationEvent::MessageOutputDelta(e) => Slot::Message {
                common,
                model: e.model.clone(),
                agent_id: e.agent_id.clone(),
                role: e.role.clone(),
                parts: Vec::new(),
            },
            ConversationEvent::FunctionCallDelta(e) => Slot::FunctionCall {
                common,
                model: e.model.clone(),
                agent_id: e.agent_id.clone(),
                name: e.name.clone(),
                tool_call_id: e.tool_call_id.clone(),
                confirmation_status: e.confirmation_status.clone(),
                arguments: String::new(),
            },
            ConversationEvent::AgentHandoffStarted(_) | ConversationEvent::AgentHandoffDone(_) => {
                Slot::Handoff {
                    common,
                    previous: None,
                    next: None,
                }
            }
            // tool.execution.started / delta / done (and, unreachably, anything else).
            _ => Slot::ToolExecution {
                common,
                model: Maybe::Absent,
                agent_id: Maybe::Absent,
                name: String::new(),
                arguments: None,
                info: Maybe::Absent,
            },
        }
    }

    fn entry_type(&self) -> &'static str {
        match self {
            Slot::Message { .. } => "message.output",
            Slot::FunctionCall { .. } => "function.call",
            Slot::ToolExecution { .. } => "tool.execution",
            Slot::Handoff { .. } => "agent.handoff",
        }
    }

    fn accepts(&self, ev: &ConversationEvent) -> bool {
        matches!(
            (self, ev),
            (
                Slot::Message { .. },
                ConversationEvent::MessageOutputDelta(_)
            ) | (
                Slot::FunctionCall { .. },
                ConversationEvent::FunctionCallDelta(_)
            ) | (
                Slot::ToolExecution { .. },
                ConversationEvent::ToolExecutionStarted(_)
                    | ConversationEvent::ToolExecutionDelta(_)
                    | ConversationEvent::ToolExecutionDone(_)
            ) | (
                Slot::Handoff { .. },
                ConversationEvent::AgentHandoffStarted(_) | ConversationEvent::AgentHandoffDone(_)
            )
        )
    }

    fn common(&self) -> &Common {
        match self {
            Slot::Message { common, .. }
            | Slot::FunctionCall { common, .. }
            | Slot::ToolExecution { common, .. }
            | Slot::Handoff { common, .. } => common,
        }
    }

    fn common_mut(&mut self) -> &mut Common {
        match self {
            Slot::Message { common, .. }
            | Slot::FunctionCall { common, .. }
            | Slot::ToolExecution { common, .. }
            | Slot::Handoff { common, .. } => common,
        }
    }

    /// Folds an accepted event into the slot.
    fn apply(&mut self, ev: &ConversationEvent) {
        match (self, ev) {
            (Slot::Message { parts, .. }, ConversationEvent::MessageOutputDelta(e)) => {
                // Adjacent text fragments are joined at once (merge_content would join them
                // anyway), so a long message costs its text, not one part per delta.
                if let (Some((_, DeltaContent::Text(prev))), DeltaContent::Text(t)) =
                    (parts.last_mut(), &e.content)
                {
                    prev.push_str(t);
                } else {
                    parts.push((
                        e.content_index.get().copied().unwrap_or(0),
                        e.content.clone(),
                    ));
                }
            }
            (Slot::FunctionCall { arguments, .. }, ConversationEvent::FunctionCallDelta(e)) => {
                arguments.push_str(&e.arguments);
            }
            (
                Slot::ToolExecution {
                    model,
                    agent_id,
                    name,
                    arguments,
                    ..
                },
                ConversationEvent::ToolExecutionStarted(e),
            ) => {
                *model = e.model.clone();
                *agent_id = e.agent_id.clone();
                *name = e.name.clone();
                if let Some(a) = e.arguments.get() {
                    arguments.get_or_insert_with(String::new).push_str(a);
                }
            }
            (
                Slot::ToolExecution {
                    name, arguments, ..
                },
                ConversationEvent::ToolExecutionDelta(e),
            ) => {
                if name.is_empty() {
                    name.clone_from(&e.name);
                }
                arguments
                    .get_or_insert_with(String::new)
                    .push_str(&e.arguments);
            }
            (Slot::ToolExecution { name, info, .. }, ConversationEvent::ToolExecutionDone(e)) => {
                if name.is_empty() {
                    name.clone_from(&e.name);
                }
                if !e.info.is_absent() {
                    *info = e.info.clone();
                }
            }
            (Slot::Handoff { previous, .. }, ConversationEvent::AgentHandoffStarted(e)) => {
                *previous = Some((e.previous_agent_id.clone(), e.previous_agent_name.clone()));
            }
            (Slot::Handoff { next, .. }, ConversationEvent::AgentHandoffDone(e)) => {
                *next = Some((e.next_agent_id.clone(), e.next_agent_name.clone()));
            }
            _ => {}
        }
    }

    fn into_entry(self, index: u64, anomalies: &mut Vec<String>) -> Entry {
        let Common {
            id,
            created_at,
            completed_at,
        } = match &self {
            Slot::Message { common, .. }
            | Slot::FunctionCall { common, .. }
            | Slot::ToolExecution { common, .. }
            | Slot::Handoff { common, .. } => common.clone(),
        };
        let object = Maybe::Present(ENTRY_OBJECT.to_owned());
        let id = Maybe::Present(id);
        let created_at = Maybe::some_or_absent(created_at);
        let completed_at = Maybe::some_or_absent(completed_at);
        match self {
            Slot::Message {
                model,
                agent_id,
                role,
                parts,
                ..
            } => Entry::MessageOutput(MessageOutputEntry {
                object,
                created_at,
                completed_at,
                id,
                agent_id,
                model,
                role,
                content: merge_content(parts),
                type_omitted: false,
                extra: Map::new(),
            }),
            Slot::FunctionCall {
                model,
                agent_id,
                name,
                tool_call_id,
                confirmation_status,
                arguments,
                ..
            } => Entry::FunctionCall(FunctionCallEntry {
                object,
                created_at,
                completed_at,
                id,
                agent_id,
                model,
                tool_call_id,
                name,
                arguments: FunctionArguments::Text(arguments),
                confirmation_status,
                type_omitted: false,
                extra: Map::new(),
            }),
            Slot::ToolExecution {
                model,
                agent_id,
                name,
                arguments,
                info,
                ..
            } => Entry::ToolExecution(ToolExecutionEntry {
                object,
                created_at,
                completed_at,
                id,
                agent_id,
                model,
                name,
                arguments: Maybe::some_or_absent(arguments),
                info,
                type_omitted: false,
                extra: Map::new(),
            }),
            Slot::Handoff {
                previous: Some((previous_agent_id, previous_agent_name)),
                next: Some((next_agent_id, next_agent_name)),
                ..
            } => Entry::AgentHandoff(AgentHandoffEntry {
                object,
                created_at,
                completed_at,
                id,
                previous_agent_id,
                previous_agent_name,
                next_agent_id,
                next_agent_name,
                type_omitted: false,
                extra: Map::new(),
            }),
            Slot::Handoff { previous, next, .. } => {
                anomalies.push(format!(
                    "agent.handoff at output_index {index} lacks its {} event",
                    if previous.is_none() {
                        "started"
                    } else {
                        "done"
                    }
                ));
                let mut m = Map::new();
                m.insert("type".into(), "agent.handoff".into());
                m.insert("object".into(), ENTRY_OBJECT.into());
                if let Maybe::Present(t) = created_at {
                    m.insert("created_at".into(), t.into());
                }
                if let Maybe::Present(t) = completed_at {
                    m.insert("completed_at".into(), t.into());
                }
                if let Maybe::Present(id) = id {
                    m.insert("id".into(), id.into());
                }
                if let Some((aid, name)) = previous {
                    m.insert("previous_agent_id".into(), aid.into());
                    m.insert("previous_agent_name".into(), name.into());
                }
                if let Some((aid, name)) = next {
                    m.insert("next_agent_id".into(), aid.into());
                    m.insert("next_agent_name".into(), name.into());
                }
                Entry::Other(Value::Object(m))
            }
        }
    }
}

/// Bytes an output event adds to its entry (content, arguments, info), for the budget.
fn content_cost(ev: &ConversationEvent) -> usize {
    fn json_len<T: serde::Serialize>(v: &T) -> usize {
        serde_json::to_vec(v).map_or(0, |v| v.len())
    }
    match ev {
        ConversationEvent::MessageOutputDelta(e) => match &e.content {
            DeltaContent::Text(t) => t.len(),
            DeltaContent::Chunk(c) => json_len(c),
        },
        ConversationEvent::FunctionCallDelta(e) => e.arguments.len() + e.name.len(),
        ConversationEvent::ToolExecutionStarted(e) => {
            e.arguments.get().map_or(0, String::len) + e.name.len()
        }
        ConversationEvent::ToolExecutionDelta(e) => e.arguments.len(),
        ConversationEvent::ToolExecutionDone(e) => e.info.get().map_or(0, json_len),
        ConversationEvent::AgentHandoffStarted(e) => {
            e.previous_agent_id.len() + e.previous_agent_name.len()
        }
        ConversationEvent::AgentHandoffDone(e) => e.next_agent_id.len() + e.next_agent_name.len(),
        _ => 0,
    }
}

/// Builds the final `content` of a `message.output` from its deltas (see module docs).
fn merge_content(parts: Vec<(u64, DeltaContent)>) -> MessageContent {
    if parts
        .iter()
        .all(|(_, p)| matches!(p, DeltaContent::Text(_)))
    {
        return MessageContent::Text(
            parts
                .into_iter()
                .filter_map(|(_, p)| match p {
                    DeltaContent::Text(s) => Some(s),
                    DeltaContent::Chunk(_) => None,
                })
                .collect(),
        );
    }
    let mut chunks: Vec<ContentChunk> = Vec::new();
    let mut last_index: Option<u64> = None;
    for (index, part) in parts {
        let chunk = match part {
            DeltaContent::Text(text) => ContentChunk::Text(TextChunk {
                text,
                extra: Map::new(),
            }),
            DeltaContent::Chunk(c) => c,
        };
        match (chunks.last_mut(), chunk) {
            (Some(ContentChunk::Text(prev)), ContentChunk::Text(t)) => prev.text.push_str(&t.text),
            (Some(ContentChunk::Thinking(prev)), ContentChunk::Thinking(t))
                if last_index == Some(index) =>
            {
                merge_thinking(prev, t);
            }
            (_, chunk) => chunks.push(chunk),
        }
        last_index = Some(index);
    }
    MessageContent::Chunks(chunks)
}

/// Appends a streamed `thinking` fragment to the previous one.
fn merge_thinking(prev: &mut ThinkChunk, next: ThinkChunk) {
    for part in next.thinking {
        match (prev.thinking.last_mut(), part) {
            (Some(ContentChunk::Text(a)), ContentChunk::Text(b)) => a.text.push_str(&b.text),
            (_, part) => prev.thinking.push(part),
        }
    }
    if !next.signature.is_absent() {
        prev.signature = next.signature;
    }
    if !next.closed.is_absent() {
        prev.closed = next.closed;
    }
    prev.extra.extend(next.extra);
}

/// Assembles a whole sequence of events in one call.
pub fn assemble_turn<'a>(events: impl IntoIterator<Item = &'a ConversationEvent>) -> AssembledTurn {
    let mut asm = EntryAssembler::new();
    for ev in events {
        asm.push(ev);
    }
    asm.finish()
}

/// The JSON of an entry with its top-level `created_at` and `completed_at` removed, for
/// comparing streamed and non-streamed outputs (or two runs) without timing noise.
pub fn comparable(entry: &Entry) -> Value {
    let mut e = entry.clone();
    e.clear_timestamps();
    e.to_value()
}

/// `true` when both lists hold the same entries, ignoring `created_at` / `completed_at`.
/// Key order never matters (`serde_json` object equality is order-insensitive).
pub fn same_outputs(a: &[Entry], b: &[Entry]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| comparable(x) == comparable(y))
}
