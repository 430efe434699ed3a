//! The static eval report's HTML (`agentcap_ui::report`) and the terminal tree (`agentcap_ui::text`) over
//! hostile names: config names, descriptions, topics and item ids cut from the input.
//!
//! Properties: every `<` of the page opens (or closes) one of the tags the page itself writes, no attribute
//! is an event handler, every config gets exactly one section, the page stays within a bound linear in the
//! input; the tree draws exactly one line per node, whatever line breaks the recorded text holds.

use agentcap_evalkit::grade::Grade::{Correct, Incorrect};
use agentcap_evalkit::metrics::{ItemResult, Outcome};
use agentcap_evalkit::report::{Report, RunInfo};
use agentcap_proxy::views::{ConversationSummary, ConversationTree, EntryNode, Turn, TurnTimings};

/// The tags the page writes.
const TAGS: &[&str] = &[
    "html", "head", "meta", "title", "style", "body", "div", "h1", "h2", "h3", "h4", "code", "dl",
    "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "a", "p", "section", "ul", "li",
    "svg", "line", "text", "circle", "rect", "polyline",
];

fn run() -> RunInfo {
    RunInfo {
        run_id: "run-1".into(),
        dataset: "d".into(),
        grader: "exact".into(),
        judge: None,
        started_at: "2025-01-01T00:00:00Z".into(),
        finished_at: None,
        seed: 1,
        limit: None,
        simulated_upstream: true,
        upstream: "twin".into(),
        complete: false,
    }
}

fn entry(text: &str) -> EntryNode {
    EntryNode {
        entry_id: Some(text.into()),
        direction: "output".into(),
        position: 0,
        kind: text.into(),
        role: Some(text.into()),
        agent_id: Some(text.into()),
        model: None,
        text: Some(text.into()),
        name: Some(text.into()),
        tool_call_id: None,
        arguments: Some(text.into()),
        created_at: None,
        completed_at: None,
        duration_us: None,
        source: None,
        handoff: None,
        branches: Vec::new(),
    }
}

#[test]
fn report_html() {
    crate::fuzz(
        "report_html",
        &[
            b"base|web.search|<script>alert(1)</script>",
            b"a\"b|c'd|e&f|<img src=x onerror=alert(1)>",
            b"x\n\ny\r|javascript:alert(1)|</style><script>",
            b"\xff\xfe|\xc3\xa9|",
        ],
        |input| {
            let text = String::from_utf8_lossy(input);
            let parts: Vec<&str> = text.split('|').take(6).collect();
            let mut names: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            names.sort();
            names.dedup();
            let configs: Vec<(String, String, Vec<ItemResult>)> = names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let items = parts
                        .iter()
                        .enumerate()
                        .map(|(i, id)| ItemResult {
                            item_id: format!("{id}{i}"),
                            outcome: Outcome::Graded(if (i + k) % 2 == 0 {
                                Correct
                            } else {
                                Incorrect
                            }),
                            topic: Some(parts[(i + 1) % parts.len()].to_string()),
                            total_ms: Some(100.0 * (i + k + 1) as f64),
                            ..ItemResult::default()
                        })
                        .collect();
                    (name.clone(), name.repeat(2), items)
                })
                .collect();
            let n = configs.len();
            let report = Report::build(run(), parts[0], configs, 7);
            let page = agentcap_ui::report::html(&report);

            assert!(
                page.len() <= 400_000 + 400 * input.len(),
                "{} bytes",
                page.len()
            );
            assert_eq!(page.matches("<section ").count(), n);
            for (i, _) in page.match_indices('<') {
                let rest = &page[i + 1..];
                if rest.starts_with("!DOCTYPE html>") {
                    continue;
                }
                let rest = rest.strip_prefix('/').unwrap_or(rest);
                let tag: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                assert!(
                    TAGS.contains(&tag.as_str()),
                    "a <{tag} the page does not write"
                );
                // Inside the tag (attribute values are quoted, and quotes in them escaped), no handler.
                let inside = &rest[..rest.find('>').expect("every tag closes")];
                let unquoted: String = inside.split('"').step_by(2).collect();
                for (j, _) in unquoted.match_indices(" on") {
                    let name: String = unquoted[j + 3..]
                        .chars()
                        .take_while(char::is_ascii_alphabetic)
                        .collect();
                    assert!(
                        !unquoted[j + 3 + name.len()..].starts_with('='),
                        "on{name}= in <{inside}>"
                    );
                }
            }

            // The terminal tree: one line per node, whatever the text holds.
            let summary = |id: &str| ConversationSummary {
                id: id.into(),
                agent_id: None,
                agent_version: None,
                model: Some(id.into()),
                turns: 1,
                total_tokens: 0,
                first_seen: None,
                last_seen: None,
                duration_us: None,
                exchanges: 1,
                errors: 0,
                parent_conversation_id: None,
                from_entry_id: None,
                simulated_upstream: false,
            };
            let tree = ConversationTree {
                conversation: summary(&text),
                ancestors: Vec::new(),
                turns: vec![Turn {
                    exchange_id: "x".into(),
                    operation: Some(text.to_string()),
                    started_at: Some(text.to_string()),
                    status: None,
                    outcome: Some(text.to_string()),
                    error: Some(text.to_string()),
                    stream_error: Some(text.to_string()),
                    is_stream: true,
                    event_count: None,
                    timings: TurnTimings::default(),
                    usage: None,
                    entries: parts.iter().map(|p| entry(p)).collect(),
                }],
                detached_branches: Vec::new(),
            };
            let drawn = agentcap_ui::text::render_tree(&tree);
            assert_eq!(drawn.lines().count(), 2 + parts.len(), "{drawn}");
        },
    );
}
