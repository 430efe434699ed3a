//! Recorded conversations as an eval set: `agentcap datasets from-recording` reads turns from a
//! recording (through the proxy's read-only gate) and writes them as generic JSONL, one item per
//! turn with its history, the recorded answer and its provenance; `--dataset recorded:FILE` reads
//! them back so each turn is replayed under the same context, with the recorded answer as the
//! `recorded` config column.
//!
//! An item line:
//!
//! ```json
//! {"id": "conv_1:2", "question": "and its capital?", "answer": "Paris",
//!  "metadata": {"source": "recording", "history": [...], "inputs": [...],
//!               "conversation_id": "conv_1", "entry_id": "msg_9", "exchange_id": "…", "turn": 2,
//!               "turns": 3, "agent_id": null, "agent_version": null, "model": "mistral-medium-latest",
//!               "latency_ms": 812.0, "first_event_ms": 95.0, "prompt_tokens": 40,
//!               "completion_tokens": 3, "total_tokens": 43, "session": null,
//!               "simulated_upstream": true}}
//! ```
//!
//! `answer` is the recorded answer, so the file is also a plain generic-JSONL dataset (graded
//! against production's answers); `history` holds the entries of the earlier turns as they were
//! sent and produced, `inputs` the turn's own input entries, each as recorded (`entries.raw`).

use std::path::{Path, PathBuf};

use agentcap_proxy::recorder::query::run_read_only;
use agentcap_proxy::recorder::{DbAccess, QueryCancel, QueryLimits, open_db};
use agentcap_proxy::views::sql::{simulated_header_pattern, turn_ops};
use agentcap_wire::vocab::Operation;
use serde_json::{Map, Value, json};

use crate::grade::Grade;

/// The prefix of `--dataset recorded:FILE`.
pub const PREFIX: &str = "recorded:";

/// The name of the config column that holds the recorded answers.
pub const RECORDED_CONFIG: &str = "recorded";

/// The agreement grader's template (placeholders `{question}`, `{target}` for the recorded answer,
/// `{predicted_answer}` for the candidate's).
pub const AGREEMENT_TEMPLATE: &str = include_str!("../templates/agreement.txt");

/// The pairwise grader's template (placeholders `{question}`, `{answer_a}`, `{answer_b}`).
pub const PAIRWISE_TEMPLATE: &str = include_str!("../templates/pairwise.txt");

/// Errors of `datasets from-recording` (the operator's input or the recording).
#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    /// The recording could not be read (or the `--where` predicate was refused).
    #[error("reading the recording {path}: {message}")]
    Read {
        /// The recording.
        path: String,
        /// Why.
        message: String,
    },
    /// The output file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Which turns of a conversation become items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TurnSelection {
    /// Only the first turn.
    First,
    /// Only the last recorded turn.
    Final,
    /// Every turn.
    #[default]
    Every,
}

impl std::str::FromStr for TurnSelection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "first" => Ok(TurnSelection::First),
            "final" => Ok(TurnSelection::Final),
            "every" => Ok(TurnSelection::Every),
            other => Err(format!("{other:?}: expected first, final or every")),
        }
    }
}

/// What `datasets from-recording` reads and writes.
#[derive(Debug, Clone)]
pub struct FromRecording {
    /// The recording (opened read-only).
    pub db: PathBuf,
    /// A SQL condition over `conversations` (its columns: `id`, `agent_id`, `agent_version`,
    /// `model`, `first_seen`, …), run through the read-only gate.
    pub predicate: Option<String>,
    /// Only turns of this `X-Agentcap-Session`.
    pub session: Option<String>,
    /// Only conversations with this agent.
    pub agent: Option<String>,
    /// At most this many conversations (the first seen first).
    pub limit: Option<usize>,
    /// Which turns.
    pub turns: TurnSelection,
    /// Where the JSONL goes.
    pub out: PathBuf,
}

/// What `datasets from-recording` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FromRecordingStats {
    /// Conversations selected.
    pub conversations: usize,
    /// Items written.
    pub items: usize,
    /// Turns left out: failed, without a text answer, or restarts (their history is another
    /// conversation's).
    pub skipped_turns: usize,
}

/// The turns of the selected conversations, in order. Placeholders: turn operations, the
/// simulated-header pattern, session (twice), agent (twice), limit. The `{predicate}` is the
/// operator's own condition on their own file and runs through the read-only gate.
fn turns_sql(predicate: &str) -> String {
    format!(
        "WITH turn_ops AS (SELECT unnest(string_split(?, ',')) AS op),
sim AS (SELECT ? AS pattern),
cs AS (SELECT id, agent_id, CAST(agent_version AS VARCHAR) AS agent_version, model, first_seen
       FROM conversations WHERE ({predicate}))
SELECT e.id, e.conversation_id, e.operation, e.status, e.outcome, e.total_us, e.first_event_us,
       e.session, CAST(e.response_headers AS VARCHAR) LIKE (SELECT pattern FROM sim) AS simulated,
       c.agent_id, c.agent_version, c.model,
       u.prompt_tokens, u.completion_tokens, u.total_tokens
FROM exchanges e
JOIN turn_ops t ON t.op = e.operation
JOIN cs c ON c.id = e.conversation_id
LEFT JOIN usage u ON u.exchange_id = e.id
WHERE (? = '' OR e.session = ?) AND (? = '' OR c.agent_id = ?)
  AND c.id IN (SELECT id FROM cs ORDER BY first_seen, id LIMIT ?)
ORDER BY c.first_seen, c.id, e.started_at, e.id"
    )
}

/// The entries of the selected turns (placeholders as in [`turns_sql`]).
fn entries_sql(predicate: &str) -> String {
    format!(
        "WITH turn_ops AS (SELECT unnest(string_split(?, ',')) AS op),
cs AS (SELECT id, agent_id, first_seen FROM conversations WHERE ({predicate})),
xs AS (SELECT e.id FROM exchanges e JOIN turn_ops t ON t.op = e.operation JOIN cs c ON c.id = e.conversation_id
       WHERE (? = '' OR e.session = ?) AND (? = '' OR c.agent_id = ?)
         AND c.id IN (SELECT id FROM cs ORDER BY first_seen, id LIMIT ?))
SELECT n.exchange_id, n.direction, n.position, n.type, n.role, n.entry_id, n.text, CAST(n.raw AS VARCHAR)
FROM entries n WHERE n.exchange_id IN (SELECT id FROM xs)
ORDER BY n.exchange_id, n.direction, n.position"
    )
}

#[derive(Debug, Default)]
struct TurnRow {
    exchange_id: String,
    conversation_id: String,
    operation: String,
    ok: bool,
    total_us: Option<i64>,
    first_event_us: Option<i64>,
    session: Option<String>,
    simulated: bool,
    agent_id: Option<String>,
    agent_version: Option<String>,
    model: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    total_tokens: Option<i64>,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
    question: Option<String>,
    answer: Option<(String, Option<String>)>,
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn i(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// Reads the selected turns and writes them as JSONL items to `spec.out`.
pub fn from_recording(spec: &FromRecording) -> Result<FromRecordingStats, RecordedError> {
    let read_err = |m: String| RecordedError::Read {
        path: spec.db.display().to_string(),
        message: m,
    };
    let conn = open_db(Some(&spec.db), DbAccess::ReadOnly).map_err(|e| read_err(e.to_string()))?;
    let predicate = spec.predicate.as_deref().unwrap_or("true");
    let limit = spec.limit.map_or(i64::MAX, |l| l as i64);
    let filters = |v: &mut Vec<Value>| {
        let session = spec.session.clone().unwrap_or_default();
        let agent = spec.agent.clone().unwrap_or_default();
        v.extend([
            json!(session),
            json!(session),
            json!(agent),
            json!(agent),
            json!(limit),
        ]);
    };
    let limits = QueryLimits {
        max_rows: usize::MAX,
        max_bytes: usize::MAX,
        ..QueryLimits::default()
    };
    let mut params = vec![
        json!(turn_ops().join(",")),
        json!(simulated_header_pattern()),
    ];
    filters(&mut params);
    let turns = run_read_only(
        &conn,
        &turns_sql(predicate),
        &params,
        &limits,
        &QueryCancel::new(),
    )
    .map_err(|e| read_err(e.to_string()))?;
    let mut params = vec![json!(turn_ops().join(","))];
    filters(&mut params);
    let entries = run_read_only(
        &conn,
        &entries_sql(predicate),
        &params,
        &limits,
        &QueryCancel::new(),
    )
    .map_err(|e| read_err(e.to_string()))?;
    drop(conn);

    let mut rows: Vec<TurnRow> = turns
        .rows
        .iter()
        .map(|r| TurnRow {
            exchange_id: s(&r[0]).unwrap_or_default(),
            conversation_id: s(&r[1]).unwrap_or_default(),
            operation: s(&r[2]).unwrap_or_default(),
            ok: i(&r[3]).is_some_and(|st| (200..300).contains(&st))
                && r[4].as_str() == Some("complete"),
            total_us: i(&r[5]),
            first_event_us: i(&r[6]),
            session: s(&r[7]),
            simulated: r[8].as_bool().unwrap_or(false),
            agent_id: s(&r[9]),
            agent_version: s(&r[10]),
            model: s(&r[11]),
            prompt_tokens: i(&r[12]),
            completion_tokens: i(&r[13]),
            total_tokens: i(&r[14]),
            ..TurnRow::default()
        })
        .collect();
    let index: std::collections::HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(k, t)| (t.exchange_id.clone(), k))
        .collect();
    for r in &entries.rows {
        let Some(&k) = s(&r[0]).and_then(|x| index.get(&x)) else {
            continue;
        };
        let raw: Value = r[7]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        let t = &mut rows[k];
        let (kind, role, text) = (r[3].as_str(), r[4].as_str(), s(&r[6]));
        if r[1].as_str() == Some("input") {
            if kind == Some("message.input") && role != Some("assistant") {
                t.question = text;
            }
            t.inputs.push(raw);
        } else {
            if kind == Some("message.output") {
                // Several message outputs read as the runner reads a live answer: joined by a
                // blank line; the entry id is the last one's.
                let text = text.unwrap_or_default();
                t.answer = Some(match t.answer.take() {
                    Some((before, _)) => (format!("{before}\n\n{text}"), s(&r[5])),
                    None => (text, s(&r[5])),
                });
            }
            t.outputs.push(raw);
        }
    }

    let mut stats = FromRecordingStats::default();
    let mut out = String::new();
    let mut start = 0;
    while start < rows.len() {
        let conv = rows[start].conversation_id.clone();
        let end = rows[start..]
            .iter()
            .position(|t| t.conversation_id != conv)
            .map_or(rows.len(), |n| start + n);
        stats.conversations += 1;
        let conv_turns = &rows[start..end];
        // Only successful turns make the conversation's context; a restart's context is another
        // conversation's, so restarts are left out.
        let restart = |t: &TurnRow| {
            matches!(
                Operation::from_name(&t.operation),
                Operation::ConversationsRestart | Operation::ConversationsRestartStream
            )
        };
        let usable: Vec<&TurnRow> = conv_turns.iter().filter(|t| t.ok && !restart(t)).collect();
        stats.skipped_turns += conv_turns.len() - usable.len();
        let n = usable.len();
        let mut history: Vec<Value> = Vec::new();
        for (k, t) in usable.iter().enumerate() {
            let wanted = match spec.turns {
                TurnSelection::First => k == 0,
                TurnSelection::Final => k + 1 == n,
                TurnSelection::Every => true,
            };
            if wanted {
                match (&t.question, &t.answer) {
                    (Some(q), Some((a, entry_id)))
                        if !q.trim().is_empty() && !a.trim().is_empty() =>
                    {
                        let item = json!({
                            "id": format!("{}:{}", t.conversation_id, k + 1),
                            "question": q,
                            "answer": a,
                            "metadata": {
                                "source": "recording",
                                "history": history,
                                "inputs": t.inputs,
                                "conversation_id": t.conversation_id,
                                "entry_id": entry_id,
                                "exchange_id": t.exchange_id,
                                "turn": k + 1,
                                "turns": n,
                                "agent_id": t.agent_id,
                                "agent_version": t.agent_version,
                                "model": t.model,
                                "latency_ms": t.total_us.map(|u| u as f64 / 1000.0),
                                "first_event_ms": t.first_event_us.map(|u| u as f64 / 1000.0),
                                "prompt_tokens": t.prompt_tokens,
                                "completion_tokens": t.completion_tokens,
                                "total_tokens": t.total_tokens,
                                "session": t.session,
                                "simulated_upstream": t.simulated,
                            }
                        });
                        out.push_str(&item.to_string());
                        out.push('\n');
                        stats.items += 1;
                    }
                    _ => stats.skipped_turns += 1,
                }
            }
            history.extend(t.inputs.iter().cloned());
            history.extend(t.outputs.iter().cloned());
        }
        start = end;
    }
    write_atomically(&spec.out, out.as_bytes()).map_err(|source| RecordedError::Write {
        path: spec.out.display().to_string(),
        source,
    })?;
    Ok(stats)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Whether an item came from a recording (`metadata.source == "recording"`).
pub fn is_recorded(item: &agentcap_datasets::QaItem) -> bool {
    item.metadata.get("source").and_then(Value::as_str) == Some("recording")
}

/// The `inputs` a candidate is sent for a recorded item: the history, then the turn's inputs,
/// each without the fields the server assigns (`id`, `object`, `created_at`, `completed_at`), so
/// the new conversation gets ids of its own. `None` for an item that is not recorded.
pub fn replay_inputs(item: &agentcap_datasets::QaItem) -> Option<Value> {
    if !is_recorded(item) {
        return None;
    }
    let m = &item.metadata;
    let all = m
        .get("history")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            m.get("inputs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    let cleaned: Vec<Value> = all
        .filter_map(Value::as_object)
        .map(|e| {
            let mut o: Map<String, Value> = e.clone();
            for k in ["id", "object", "created_at", "completed_at"] {
                o.remove(k);
            }
            Value::Object(o)
        })
        .collect();
    Some(Value::Array(cleaned))
}

/// The recorded answer's provenance figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// The recorded conversation.
    pub conversation_id: Option<String>,
    /// Its model.
    pub model: Option<String>,
    /// Recorded latency (ms).
    pub latency_ms: Option<f64>,
    /// Recorded time to the first event (ms).
    pub first_event_ms: Option<f64>,
    /// Recorded prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Recorded completion tokens.
    pub completion_tokens: Option<u64>,
    /// The recorded answer came from agentcap's twin.
    pub simulated_upstream: bool,
}

/// The provenance of a recorded item.
pub fn provenance(item: &agentcap_datasets::QaItem) -> Provenance {
    let m = &item.metadata;
    let f = |k: &str| m.get(k).and_then(Value::as_f64);
    let u = |k: &str| m.get(k).and_then(Value::as_u64);
    let t = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    Provenance {
        conversation_id: t("conversation_id"),
        model: t("model"),
        latency_ms: f("latency_ms"),
        first_event_ms: f("first_event_ms"),
        prompt_tokens: u("prompt_tokens"),
        completion_tokens: u("completion_tokens"),
        simulated_upstream: m
            .get("simulated_upstream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// The recorded answer of an item (its `answer`).
pub fn recorded_answer(item: &agentcap_datasets::QaItem) -> &str {
    item.answers.first().map(String::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Grading without gold answers.

/// What the agreement judge said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// The candidate gives the same answer as the recorded one (`A`).
    Same,
    /// It gives a different answer (`B`).
    Different,
    /// One of them abstains (`C`).
    Abstains,
}

impl Agreement {
    /// The grade it is stored as: same = correct, different = incorrect, abstains = not attempted,
    /// so the runner's rates, intervals and paired tests read as agreement rates.
    pub fn grade(self) -> Grade {
        match self {
            Agreement::Same => Grade::Correct,
            Agreement::Different => Grade::Incorrect,
            Agreement::Abstains => Grade::NotAttempted,
        }
    }
}

/// Reads an agreement judge reply, strictly: the trimmed reply must be exactly `A`, `B` or `C`, or
/// exactly one of the words `SAME`, `DIFFERENT`, `ABSTAINS`. Anything else (lower case, extra
/// words, several letters) is unparseable: `None`, never a default.
pub fn parse_agreement_reply(reply: &str) -> Option<Agreement> {
    match reply.trim() {
        "A" | "SAME" => Some(Agreement::Same),
        "B" | "DIFFERENT" => Some(Agreement::Different),
        "C" | "ABSTAINS" => Some(Agreement::Abstains),
        _ => None,
    }
}

/// What the pairwise judge preferred in one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// Answer A.
    A,
    /// Answer B.
    B,
    /// Neither.
    Tie,
}

/// Reads a pairwise judge reply, strictly: the trimmed reply must be exactly `A`, `B` or `TIE`;
/// anything else is unparseable (`None`).
pub fn parse_preference_reply(reply: &str) -> Option<Preference> {
    match reply.trim() {
        "A" => Some(Preference::A),
        "B" => Some(Preference::B),
        "TIE" => Some(Preference::Tie),
        _ => None,
    }
}

/// The pairwise verdict on the candidate from both orders: `first` judged (A = recorded,
/// B = candidate), `second` judged (A = candidate, B = recorded). A win needs both orders to
/// prefer the candidate, a loss both to prefer the recorded answer; anything else (a tie, or
/// orders that disagree) is a tie. Stored as a grade: win = correct, loss = incorrect, tie = not
/// attempted.
pub fn pairwise_verdict(first: Preference, second: Preference) -> Grade {
    match (first, second) {
        (Preference::B, Preference::A) => Grade::Correct,
        (Preference::A, Preference::B) => Grade::Incorrect,
        _ => Grade::NotAttempted,
    }
}

/// Fills the pairwise template.
pub fn render_pairwise_prompt(template: &str, question: &str, a: &str, b: &str) -> String {
    // One left-to-right pass, as `grade::render_grader_prompt`: substituted text is never expanded.
    const FIELDS: [&str; 3] = ["{question}", "{answer_a}", "{answer_b}"];
    let values = [question, a, b];
    let mut out = String::with_capacity(template.len() + question.len() + a.len() + b.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(k) = FIELDS.iter().position(|f| tail.starts_with(f)) {
            out.push_str(values[k]);
            rest = &tail[FIELDS[k].len()..];
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_replies_are_read_strictly() {
        assert_eq!(parse_agreement_reply(" A\n"), Some(Agreement::Same));
        assert_eq!(
            parse_agreement_reply("DIFFERENT"),
            Some(Agreement::Different)
        );
        assert_eq!(parse_agreement_reply("C"), Some(Agreement::Abstains));
        for hostile in [
            "",
            "a",
            "same",
            "A B",
            "AB",
            "The answer is A",
            "A.",
            "**A**",
            "A\nB",
            "ABSTAIN",
            "\u{0391}",
            "SAME!",
            "{\"grade\": \"A\"}",
        ] {
            assert_eq!(parse_agreement_reply(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn preference_replies_are_read_strictly_and_orders_that_disagree_tie() {
        assert_eq!(parse_preference_reply("TIE "), Some(Preference::Tie));
        assert_eq!(parse_preference_reply("B"), Some(Preference::B));
        for hostile in ["tie", "C", "A or B", "Answer A", "", "B\u{200B}", "A/B"] {
            assert_eq!(parse_preference_reply(hostile), None, "{hostile:?}");
        }
        use Preference::*;
        assert_eq!(pairwise_verdict(B, A), Grade::Correct);
        assert_eq!(pairwise_verdict(A, B), Grade::Incorrect);
        // Position bias: the judge picks A both times, so the orders disagree: a tie.
        assert_eq!(pairwise_verdict(A, A), Grade::NotAttempted);
        assert_eq!(pairwise_verdict(B, B), Grade::NotAttempted);
        assert_eq!(pairwise_verdict(Tie, A), Grade::NotAttempted);
    }

    #[test]
    fn templates_have_their_placeholders_and_fill_once() {
        for f in ["{question}", "{target}", "{predicted_answer}"] {
            assert!(AGREEMENT_TEMPLATE.contains(f), "{f}");
        }
        for f in ["{question}", "{answer_a}", "{answer_b}"] {
            assert!(PAIRWISE_TEMPLATE.contains(f), "{f}");
        }
        let p = render_pairwise_prompt(
            "Q {question} A {answer_a} B {answer_b} {x}",
            "{answer_b}",
            "1",
            "2",
        );
        assert_eq!(p, "Q {answer_b} A 1 B 2 {x}");
    }

    #[test]
    fn replay_inputs_drop_server_fields_and_keep_order() {
        let item = agentcap_datasets::QaItem {
            id: "c:2".into(),
            question: "q2".into(),
            answers: vec!["a2".into()],
            metadata: json!({"source": "recording",
                "history": [{"type": "message.input", "role": "user", "content": "q1"},
                            {"type": "message.output", "role": "assistant", "content": "a1", "id": "msg_1", "object": "entry", "created_at": "t"}],
                "inputs": [{"type": "message.input", "role": "user", "content": "q2"}]}),
        };
        let v = replay_inputs(&item).unwrap();
        assert_eq!(
            v,
            json!([{"type": "message.input", "role": "user", "content": "q1"},
                   {"type": "message.output", "role": "assistant", "content": "a1"},
                   {"type": "message.input", "role": "user", "content": "q2"}])
        );
        let plain = agentcap_datasets::QaItem {
            metadata: json!({}),
            ..item
        };
        assert_eq!(replay_inputs(&plain), None);
    }
}
