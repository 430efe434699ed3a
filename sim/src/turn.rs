//! Plays a planned turn out in time: entry ids and timestamps, SSE events with the latency model, faults.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::capture::Origin;
use crate::config::FaultKind;
use crate::engine::{Piece, Plan, Step, StepKind, split_deltas, tokens};
use crate::ids;
use crate::twin::Sim;

/// The frames of a streamed body; an `Err` makes the server cut the connection.
pub type FrameTx = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

/// Where the events of a streamed turn go.
#[derive(Debug)]
pub struct Emitter {
    tx: Option<FrameTx>,
    origin: Origin,
    sent: usize,
    fault_at: Option<(usize, FaultKind)>,
}

/// How a played turn ended.
#[derive(Debug)]
pub enum Ended {
    /// All entries produced; `usage` is set.
    Complete {
        /// Output entries.
        outputs: Vec<Value>,
        /// Usage object.
        usage: Value,
    },
    /// A fault was injected; nothing was stored.
    Faulted(FaultKind),
}

impl Emitter {
    /// An emitter writing to `tx`, injecting `fault` (if any) halfway through the turn's events.
    pub fn new(tx: FrameTx, origin: Origin, fault: Option<FaultKind>, plan: &Plan) -> Self {
        let total = count_events(plan);
        Self {
            tx: Some(tx),
            origin,
            sent: 0,
            fault_at: fault.map(|f| ((total / 2).max(1), f)),
        }
    }

    async fn send(&mut self, sim: &Sim, data: Value) -> Result<(), FaultKind> {
        if let Some((at, kind)) = self.fault_at
            && self.sent >= at
        {
            return Err(kind);
        }
        let ty = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(c) = &sim.capture {
            c.sse(&self.origin, &ty, &data);
        }
        let bytes = agentcap_wire::sse::encode_conversation_event(&data);
        self.sent += 1;
        if let Some(tx) = &self.tx
            && tx.send(Ok(Frame::data(bytes))).await.is_err()
        {
            // The client went away; the turn still completes and is stored, as upstream would.
            self.tx = None;
        }
        Ok(())
    }

    fn gone(&self) -> bool {
        self.tx.is_none()
    }

    /// Ends the stream the way `kind` says.
    pub async fn fail(mut self, sim: &Sim, kind: FaultKind) {
        match kind {
            FaultKind::Reset => {
                if let Some(tx) = self.tx.take() {
                    // Let the events already queued reach the wire first, so the cut is really mid-stream.
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
                    while tx.capacity() < tx.max_capacity()
                        && !tx.is_closed()
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "injected reset",
                        )))
                        .await;
                }
            }
            FaultKind::Stall => {
                if let Some(tx) = self.tx.take() {
                    let _ = tokio::time::timeout(sim.cfg.stall, tx.closed()).await;
                }
            }
            _ => {
                self.fault_at = None;
                let _ = self
                    .send(sim, json!({"type": "conversation.response.error", "message": "Simulated upstream error (injected fault)", "code": 3000}))
                    .await;
            }
        }
    }
}

fn count_events(plan: &Plan) -> usize {
    2 + plan
        .steps
        .iter()
        .map(|s| match &s.kind {
            StepKind::Message { pieces } => pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => split_deltas(t).len().max(1),
                    Piece::Chunk(_) => 1,
                })
                .sum(),
            StepKind::Tool { .. } | StepKind::Handoff { .. } => 2,
            StepKind::FunctionCall { .. } => 2,
        })
        .sum::<usize>()
}

async fn pause(d: Duration, skip: bool) {
    if !skip && !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Plays `plan` for `conversation_id`; `emit` streams events, `store` persists the outputs (called before the
/// final `done` event so a client that reads the history right after `done` sees the turn).
pub async fn play(
    sim: &Arc<Sim>,
    plan: &Plan,
    conversation_id: &str,
    mut emit: Option<&mut Emitter>,
    store: impl FnOnce(&[Value]),
) -> Ended {
    let lat = &sim.cfg.latency;
    let mut outputs = Vec::with_capacity(plan.steps.len());
    let mut completion_tokens = 0u64;
    let mut connector_tokens = 0u64;
    let mut connectors: Map<String, Value> = Map::new();
    macro_rules! send {
        ($v:expr) => {
            if let Some(e) = emit.as_deref_mut() {
                if let Err(kind) = e.send(sim, $v).await {
                    return Ended::Faulted(kind);
                }
            }
        };
    }
    let gone = |e: &Option<&mut Emitter>| e.as_ref().is_some_and(|e| e.gone());
    send!(json!({"type": "conversation.response.started", "conversation_id": conversation_id}));
    for (index, step) in plan.steps.iter().enumerate() {
        let Step {
            kind,
            agent_id,
            model,
        } = step;
        let created_at = ids::now();
        match kind {
            StepKind::Message { pieces } => {
                let id = ids::new_id("msg_");
                pause(lat.ttft, gone(&emit)).await;
                let mut content_chunks: Vec<Value> = Vec::new();
                for (content_index, piece) in pieces.iter().enumerate() {
                    match piece {
                        Piece::Text(t) => {
                            completion_tokens += tokens(t);
                            for d in split_deltas(t) {
                                send!(
                                    json!({"type": "message.output.delta", "output_index": index, "id": id, "content_index": content_index, "model": model, "agent_id": agent_id, "role": "assistant", "content": d})
                                );
                                pause(lat.per_token(), gone(&emit)).await;
                            }
                            content_chunks.push(json!({"type": "text", "text": t}));
                        }
                        Piece::Chunk(c) => {
                            send!(
                                json!({"type": "message.output.delta", "output_index": index, "id": id, "content_index": content_index, "model": model, "agent_id": agent_id, "role": "assistant", "content": c})
                            );
                            content_chunks.push(c.clone());
                        }
                    }
                }
                let content = if pieces.iter().all(|p| matches!(p, Piece::Text(_))) {
                    json!(
                        pieces
                            .iter()
                            .map(|p| if let Piece::Text(t) = p {
                                t.as_str()
                            } else {
                                ""
                            })
                            .collect::<String>()
                    )
                } else {
                    Value::Array(content_chunks)
                };
                outputs.push(json!({"content": content, "object": "entry", "type": "message.output", "created_at": created_at, "completed_at": ids::now(), "id": id, "agent_id": agent_id, "model": model, "role": "assistant"}));
            }
            StepKind::Tool {
                name,
                arguments,
                info,
                connector_tokens: ct,
            } => {
                let id = ids::new_id("tool_exec_");
                send!(
                    json!({"type": "tool.execution.started", "output_index": index, "id": id, "name": name, "arguments": arguments, "model": model, "agent_id": agent_id})
                );
                pause(lat.tool(name), gone(&emit)).await;
                send!(
                    json!({"type": "tool.execution.done", "output_index": index, "id": id, "name": name, "info": info})
                );
                connector_tokens += ct;
                let n = connectors.get(name).and_then(Value::as_u64).unwrap_or(0) + 1;
                connectors.insert(name.clone(), json!(n));
                outputs.push(json!({"name": name, "object": "entry", "type": "tool.execution", "created_at": created_at, "completed_at": ids::now(), "id": id, "agent_id": agent_id, "model": model, "arguments": arguments, "info": info}));
            }
            StepKind::FunctionCall {
                tool_call_id,
                name,
                arguments,
            } => {
                let id = ids::new_id("fc_");
                pause(lat.ttft, gone(&emit)).await;
                completion_tokens += tokens(arguments) + tokens(name);
                let cut = arguments
                    .char_indices()
                    .nth(arguments.chars().count() / 2)
                    .map_or(arguments.len(), |(i, _)| i);
                for frag in [&arguments[..cut], &arguments[cut..]] {
                    send!(
                        json!({"type": "function.call.delta", "output_index": index, "id": id, "name": name, "tool_call_id": tool_call_id, "arguments": frag, "model": model, "agent_id": agent_id, "confirmation_status": null})
                    );
                }
                outputs.push(json!({"tool_call_id": tool_call_id, "name": name, "arguments": arguments, "object": "entry", "type": "function.call", "created_at": created_at, "completed_at": null, "id": id, "agent_id": agent_id, "model": model, "confirmation_status": null}));
            }
            StepKind::Handoff {
                previous_agent_id,
                previous_agent_name,
                next_agent_id,
                next_agent_name,
            } => {
                let id = ids::new_id("handoff_");
                send!(
                    json!({"type": "agent.handoff.started", "output_index": index, "id": id, "previous_agent_id": previous_agent_id, "previous_agent_name": previous_agent_name})
                );
                send!(
                    json!({"type": "agent.handoff.done", "output_index": index, "id": id, "next_agent_id": next_agent_id, "next_agent_name": next_agent_name})
                );
                completion_tokens += 5;
                outputs.push(json!({"previous_agent_id": previous_agent_id, "previous_agent_name": previous_agent_name, "next_agent_id": next_agent_id, "next_agent_name": next_agent_name, "object": "entry", "type": "agent.handoff", "created_at": created_at, "completed_at": ids::now(), "id": id}));
            }
        }
    }
    let usage = if connectors.is_empty() {
        json!({"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": plan.prompt_tokens + completion_tokens, "connector_tokens": null, "connectors": null})
    } else {
        json!({"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": plan.prompt_tokens + completion_tokens + connector_tokens, "connector_tokens": connector_tokens, "connectors": connectors})
    };
    // A fault due at the very end fires before anything is stored.
    if let Some(e) = emit.as_deref()
        && let Some((at, kind)) = e.fault_at
        && e.sent >= at
    {
        return Ended::Faulted(kind);
    }
    store(&outputs);
    send!(json!({"type": "conversation.response.done", "usage": usage}));
    Ended::Complete { outputs, usage }
}
