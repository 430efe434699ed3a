//! NQ-Open JSONL loading: row count, answer-list shapes, ids and line-numbered errors.

use std::collections::BTreeMap;

use agentcap_datasets::{DatasetError, nq_open};
use serde_json::json;

use crate::{nq_open_jsonl, temp_file};

#[test]
fn loads_3610_questions_with_answer_lists() {
    let items = nq_open::load(&nq_open_jsonl()).unwrap();
    assert_eq!(items.len(), 3610);
    let mut per_count: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        assert_eq!(it.id, i.to_string());
        assert_eq!(it.metadata, json!({}));
        *per_count.entry(it.answers.len()).or_default() += 1;
    }
    for (n, count) in [(1, 2076), (2, 953), (3, 306), (4, 118), (5, 58)] {
        assert_eq!(per_count[&n], count, "questions with {n} answers");
    }
    assert_eq!(per_count.keys().max(), Some(&23));

    assert_eq!(
        items[0].question,
        "when was the last time anyone was on the moon"
    );
    assert_eq!(items[0].answers, ["14 December 1972 UTC", "December 1972"]);
    assert_eq!(
        items[56].answers,
        [
            "Gene Kelly",
            "Donald O'Connor",
            "Judy Garland",
            "Debbie Reynolds",
            "Mickey Rooney"
        ]
    );
    assert_eq!(items[2300].answers.len(), 23);
    assert_eq!(items[2300].answers[0], "Guma");
}

#[test]
fn blank_lines_are_skipped_and_ids_follow_line_index() {
    let text = "{\"question\": \"q0\", \"answer\": [\"a\"]}\n\n  \n{\"question\": \"q3\", \"answer\": [\"b\", \"c\"], \"extra\": 1}\n";
    let items = nq_open::parse(text.as_bytes()).unwrap();
    let ids: Vec<&str> = items.iter().map(|it| it.id.as_str()).collect();
    assert_eq!(ids, ["0", "3"]);
    assert_eq!(items[1].answers, ["b", "c"]);
}

#[test]
fn errors_name_the_line() {
    let cases = [
        (
            "{\"question\": \"q\", \"answer\": \"a\"}",
            "field \"answer\" must be a list of strings",
        ),
        (
            "{\"question\": \"q\", \"answer\": []}",
            "field \"answer\" is an empty list",
        ),
        (
            "{\"question\": \"q\", \"answer\": [\"a\", 3]}",
            "field \"answer[1]\" must be a string",
        ),
        ("{\"question\": \"q\"}", "field \"answer\" is missing"),
        ("{\"answer\": [\"a\"]}", "field \"question\" is missing"),
        (
            "{\"question\": \"\", \"answer\": [\"a\"]}",
            "field \"question\" is empty",
        ),
        ("[1, 2]", "must be a JSON object"),
        ("{\"question\": ", "invalid JSON"),
    ];
    for (bad, expect) in cases {
        let text = format!("{{\"question\": \"ok\", \"answer\": [\"ok\"]}}\n\n{bad}\n");
        let err = nq_open::parse(text.as_bytes()).unwrap_err();
        assert_eq!(err.line(), Some(3), "{bad}");
        let msg = err.to_string();
        assert!(msg.starts_with("line 3: "), "{msg}");
        assert!(msg.contains(expect), "{bad}: {msg}");
    }
}

#[test]
fn load_errors_name_the_file() {
    let (_dir, path) = temp_file(
        "nq.jsonl",
        b"{\"question\": \"q\", \"answer\": [\"a\"]}\nnot json\n",
    );
    let err = nq_open::load(&path).unwrap_err();
    assert!(matches!(err, DatasetError::File { .. }));
    assert_eq!(err.line(), Some(2));
    assert!(
        err.to_string().contains("nq.jsonl: line 2: invalid JSON"),
        "{err}"
    );

    let missing = path.with_file_name("absent.jsonl");
    let err = nq_open::load(&missing).unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.jsonl"));
}
