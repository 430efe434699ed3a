//! Loader for the project's generic JSONL question format: one JSON object per line with
//! `question`, `answers` (list) or `answer` (string or list), and optional `id` and `metadata`.
//! Blank lines are skipped; every error names its 1-based line. The NQ-Open loader shares the
//! line reader defined here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

use crate::{DatasetError, QaItem};

/// Reads and parses a generic JSONL file. Errors name the file and line.
///
/// # Errors
/// [`DatasetError::Io`] if the file cannot be opened, otherwise the errors of [`parse`] wrapped
/// in [`DatasetError::File`].
pub fn load(path: &Path) -> Result<Vec<QaItem>, DatasetError> {
    let file = File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(file).map_err(|e| e.in_file(path))
}

/// Parses generic JSONL from a reader.
///
/// Per non-blank line:
/// - `id`: a string or non-negative integer; if absent, the 0-based line index (line number − 1).
///   Ids must be unique.
/// - `question`: a non-empty string, kept verbatim.
/// - `answers`: a non-empty list of non-empty strings, or instead `answer`: one string or such a
///   list (giving both is an error).
/// - `metadata`: a JSON object (or `null`); `{}` if absent.
///
/// Other keys are ignored. A UTF-8 byte-order mark at the start is skipped.
///
/// # Errors
/// [`DatasetError::Line`] wrapping the cause ([`DatasetError::Json`], [`DatasetError::Field`],
/// [`DatasetError::DuplicateId`], or [`DatasetError::Read`] for invalid UTF-8).
pub fn parse<R: Read>(reader: R) -> Result<Vec<QaItem>, DatasetError> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    parse_lines(reader, |line_no, obj| {
        let item = generic_item(line_no, obj)?;
        if let Some(&first_line) = seen.get(&item.id) {
            return Err(DatasetError::DuplicateId {
                id: item.id,
                first_line,
            });
        }
        seen.insert(item.id.clone(), line_no);
        Ok(item)
    })
}

fn generic_item(line_no: u64, mut obj: Map<String, Value>) -> Result<QaItem, DatasetError> {
    let id = match obj.remove("id") {
        None | Some(Value::Null) => (line_no - 1).to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(_) => {
            return Err(DatasetError::field(
                "id",
                "must be a non-empty string or a non-negative integer",
            ));
        }
    };
    let question = question(&mut obj)?;
    let answers = match (obj.remove("answers"), obj.remove("answer")) {
        (Some(_), Some(_)) => {
            return Err(DatasetError::field(
                "answers",
                "and \"answer\" are both present; give only one",
            ));
        }
        (Some(v), None) => string_list("answers", v)?,
        (None, Some(Value::String(s))) => {
            non_empty("answer", &s)?;
            vec![s]
        }
        (None, Some(v)) => string_list("answer", v)?,
        (None, None) => {
            return Err(DatasetError::field(
                "answers",
                "is missing (give \"answers\": [...] or \"answer\": \"...\")",
            ));
        }
    };
    let metadata = match obj.remove("metadata") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(DatasetError::field("metadata", "must be a JSON object")),
    };
    Ok(QaItem {
        id,
        question,
        answers,
        metadata,
    })
}

/// Removes and checks the `question` field.
pub(crate) fn question(obj: &mut Map<String, Value>) -> Result<String, DatasetError> {
    match obj.remove("question") {
        Some(Value::String(s)) => {
            non_empty("question", &s)?;
            Ok(s)
        }
        Some(_) => Err(DatasetError::field("question", "must be a string")),
        None => Err(DatasetError::field("question", "is missing")),
    }
}

/// Checks that `v` is a non-empty list of non-empty strings and returns them verbatim.
pub(crate) fn string_list(field: &str, v: Value) -> Result<Vec<String>, DatasetError> {
    let Value::Array(values) = v else {
        return Err(DatasetError::field(field, "must be a list of strings"));
    };
    if values.is_empty() {
        return Err(DatasetError::field(field, "is an empty list"));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => {
                non_empty(&format!("{field}[{i}]"), &s)?;
                Ok(s)
            }
            _ => Err(DatasetError::field(
                &format!("{field}[{i}]"),
                "must be a string",
            )),
        })
        .collect()
}

fn non_empty(field: &str, s: &str) -> Result<(), DatasetError> {
    if s.trim().is_empty() {
        Err(DatasetError::field(field, "is empty"))
    } else {
        Ok(())
    }
}

/// Reads `reader` line by line, skipping blank lines, parsing each other line as a JSON object
/// and handing it to `item` with its 1-based line number. Any error is wrapped in
/// [`DatasetError::Line`].
pub(crate) fn parse_lines<R: Read>(
    reader: R,
    mut item: impl FnMut(u64, Map<String, Value>) -> Result<QaItem, DatasetError>,
) -> Result<Vec<QaItem>, DatasetError> {
    let mut items = Vec::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line_no = index as u64 + 1;
        let at_line = |source: DatasetError| DatasetError::Line {
            line: line_no,
            source: Box::new(source),
        };
        let line = line.map_err(|e| at_line(DatasetError::Read(e)))?;
        let text = if index == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(&line)
        } else {
            &line
        };
        if text.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| at_line(DatasetError::Json(e)))?;
        let Value::Object(obj) = value else {
            return Err(at_line(DatasetError::field(
                "(line)",
                "must be a JSON object",
            )));
        };
        items.push(item(line_no, obj).map_err(at_line)?);
    }
    Ok(items)
}
