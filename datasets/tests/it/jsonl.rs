//! Generic JSONL loading: id/answer/metadata rules, blank lines, BOM and CRLF, and
//! line-numbered errors.

use agentcap_datasets::{DatasetError, jsonl};
use serde_json::json;

use crate::temp_file;

#[test]
fn fields_ids_and_defaults() {
    let text = concat!(
        "{\"id\": \"a\", \"question\": \"Q1\", \"answers\": [\"x\", \"y\"], \"metadata\": {\"topic\": \"Art\"}}\n",
        "\n",
        "{\"question\": \" Q3 \", \"answer\": \"z \"}\n",
        "{\"id\": 7, \"question\": \"Q4\", \"answer\": [\"p\", \"q\"], \"metadata\": null, \"note\": 1}\n",
        "   \n",
    );
    let items = jsonl::parse(text.as_bytes()).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].id, "a");
    assert_eq!(items[0].answers, ["x", "y"]);
    assert_eq!(items[0].metadata, json!({"topic": "Art"}));
    // No id: the 0-based line index (line 3 -> "2"); text is verbatim.
    assert_eq!(items[1].id, "2");
    assert_eq!(items[1].question, " Q3 ");
    assert_eq!(items[1].answers, ["z "]);
    assert_eq!(items[1].metadata, json!({}));
    assert_eq!(items[2].id, "7");
    assert_eq!(items[2].answers, ["p", "q"]);
    assert_eq!(items[2].metadata, json!({}));
}

#[test]
fn bom_crlf_and_empty_input() {
    let text = "\u{feff}{\"question\": \"Q\", \"answer\": \"A\"}\r\n{\"question\": \"R\", \"answer\": \"B\"}\r\n";
    let items = jsonl::parse(text.as_bytes()).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].answers, ["B"]);
    assert!(jsonl::parse("".as_bytes()).unwrap().is_empty());
    assert!(jsonl::parse("\n\n".as_bytes()).unwrap().is_empty());
}

#[test]
fn errors_carry_line_numbers() {
    let good = "{\"question\": \"Q\", \"answer\": \"A\"}";
    let cases = [
        ("{\"question\": \"Q\", \"answer\": \"A\"", "invalid JSON"),
        ("\"just a string\"", "must be a JSON object"),
        ("{\"question\": \"Q\"}", "field \"answers\" is missing"),
        (
            "{\"question\": \"Q\", \"answer\": \"A\", \"answers\": [\"A\"]}",
            "both present",
        ),
        (
            "{\"question\": \"Q\", \"answers\": []}",
            "\"answers\" is an empty list",
        ),
        (
            "{\"question\": \"Q\", \"answers\": \"A\"}",
            "\"answers\" must be a list of strings",
        ),
        (
            "{\"question\": \"Q\", \"answers\": [\"A\", null]}",
            "\"answers[1]\" must be a string",
        ),
        (
            "{\"question\": \"Q\", \"answer\": \"  \"}",
            "\"answer\" is empty",
        ),
        (
            "{\"question\": 5, \"answer\": \"A\"}",
            "\"question\" must be a string",
        ),
        (
            "{\"question\": \"Q\", \"answer\": \"A\", \"metadata\": []}",
            "\"metadata\" must be a JSON object",
        ),
        (
            "{\"id\": -1, \"question\": \"Q\", \"answer\": \"A\"}",
            "\"id\" must be",
        ),
        (
            "{\"id\": \"\", \"question\": \"Q\", \"answer\": \"A\"}",
            "\"id\" must be",
        ),
    ];
    for (bad, expect) in cases {
        let text = format!("{good}\n\n{good}\n{bad}\n{good}\n");
        let err = jsonl::parse(text.as_bytes()).unwrap_err();
        assert_eq!(err.line(), Some(4), "{bad}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("line 4: ") && msg.contains(expect),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn duplicate_ids_are_rejected() {
    let text = concat!(
        "{\"id\": \"x\", \"question\": \"Q\", \"answer\": \"A\"}\n",
        "{\"id\": \"y\", \"question\": \"Q\", \"answer\": \"A\"}\n",
        "{\"id\": \"x\", \"question\": \"Q\", \"answer\": \"A\"}\n",
    );
    let err = jsonl::parse(text.as_bytes()).unwrap_err();
    match &err {
        DatasetError::Line { line: 3, source } => match source.as_ref() {
            DatasetError::DuplicateId { id, first_line } => {
                assert_eq!((id.as_str(), *first_line), ("x", 1));
            }
            other => panic!("expected DuplicateId, got {other:?}"),
        },
        other => panic!("expected Line 3, got {other:?}"),
    }
    // An explicit id may not collide with a line-index id either.
    let text = "{\"question\": \"Q\", \"answer\": \"A\"}\n{\"id\": \"0\", \"question\": \"Q\", \"answer\": \"A\"}\n";
    assert!(
        jsonl::parse(text.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("duplicate id \"0\"")
    );
}

#[test]
fn invalid_utf8_and_file_errors() {
    let mut bytes = b"{\"question\": \"Q\", \"answer\": \"A\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"question\": \"\xff\", \"answer\": \"A\"}\n");
    let err = jsonl::parse(bytes.as_slice()).unwrap_err();
    assert_eq!(err.line(), Some(2));

    let (_dir, path) = temp_file("set.jsonl", b"{\"question\": \"Q\"}\n");
    let err = jsonl::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("set.jsonl: line 1: field \"answers\" is missing"),
        "{msg}"
    );
}
