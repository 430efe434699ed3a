//! Loader for OpenAI's SimpleQA test set (`simple_qa_test_set.csv`): an RFC-4180 CSV with the
//! header `metadata,problem,answer`, where `metadata` holds a Python dict literal.
//!
//! Text is kept verbatim: simple-evals does not strip `problem` or `answer`, and 211 rows have
//! leading or trailing whitespace (some answers even end in a newline inside the quoted field),
//! so trimming would change the prompts the model sees.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::{DatasetError, QaItem};

/// Header name of the column holding the question.
pub const QUESTION_COLUMN: &str = "problem";
/// Header name of the column holding the single gold answer.
pub const ANSWER_COLUMN: &str = "answer";
/// Header name of the column holding the Python dict literal with topic, answer type and URLs.
pub const METADATA_COLUMN: &str = "metadata";

/// Reads and parses a SimpleQA CSV file. Errors name the file and the failing row.
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

/// Parses SimpleQA CSV from a reader.
///
/// Columns are found by header name (order does not matter, extra columns are ignored). Each
/// data row becomes a [`QaItem`] with `id` = its 0-based row index, `question` = `problem`,
/// `answers` = `[answer]`, and `metadata` = the parsed dict (see [`parse_metadata`]).
///
/// # Errors
/// [`DatasetError::MissingColumn`] for a bad header; per-row problems (CSV syntax, invalid
/// UTF-8, wrong field count, empty question or answer, bad metadata) come wrapped in
/// [`DatasetError::Row`] with the row index and starting line.
pub fn parse<R: Read>(reader: R) -> Result<Vec<QaItem>, DatasetError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::None)
        .from_reader(reader);
    let header: Vec<String> = csv
        .headers()
        .map_err(DatasetError::Csv)?
        .iter()
        .map(str::to_owned)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DatasetError::MissingColumn {
                column: name.to_owned(),
                header: header.clone(),
            })
    };
    let (q_col, a_col, m_col) = (
        column(QUESTION_COLUMN)?,
        column(ANSWER_COLUMN)?,
        column(METADATA_COLUMN)?,
    );

    let mut items = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let row = items.len();
        match csv.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Syntax/UTF-8 errors carry the record's position; plain I/O errors do not.
                let line = e.position().map(csv::Position::line);
                let err = DatasetError::Csv(e);
                return Err(match line {
                    Some(line) => DatasetError::Row {
                        row,
                        line,
                        source: Box::new(err),
                    },
                    None => err,
                });
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        let at_row = |source: DatasetError| DatasetError::Row {
            row,
            line,
            source: Box::new(source),
        };
        let field = |index: usize, name: &str| -> Result<String, DatasetError> {
            let text = record.get(index).unwrap_or_default();
            if text.trim().is_empty() {
                return Err(at_row(DatasetError::field(name, "is empty")));
            }
            Ok(text.to_owned())
        };
        let question = field(q_col, QUESTION_COLUMN)?;
        let answer = field(a_col, ANSWER_COLUMN)?;
        let metadata = parse_metadata(record.get(m_col).unwrap_or_default()).map_err(at_row)?;
        items.push(QaItem {
            id: row.to_string(),
            question,
            answers: vec![answer],
            metadata,
        });
    }
    Ok(items)
}

/// Parses one `metadata` cell, a Python dict literal such as
/// `{'topic': 'Art', 'answer_type': 'Person', 'urls': ['https://…']}`, into a JSON object.
///
/// Both quote styles and Python escapes are handled by a real literal parser (174 rows use
/// `"…"` strings because the text contains `'`). The value must be a dict; its keys are not
/// checked, so future columns pass through unchanged.
///
/// ```
/// let m = agentcap_datasets::simpleqa::parse_metadata(
///     r#"{'topic': 'Art', 'answer_type': 'Person', 'urls': ["https://x.org/it's", 'a\'b']}"#,
/// )
/// .unwrap();
/// assert_eq!(m["topic"], "Art");
/// assert_eq!(m["urls"][0], "https://x.org/it's");
/// assert_eq!(m["urls"][1], "a'b");
/// ```
///
/// # Errors
/// [`DatasetError::PyLiteral`] for malformed literals, or [`DatasetError::Field`] if the literal
/// is not a dict.
pub fn parse_metadata(s: &str) -> Result<Value, DatasetError> {
    match crate::pyliteral::parse(s)? {
        v @ Value::Object(_) => Ok(v),
        other => Err(DatasetError::field(
            METADATA_COLUMN,
            format!("must be a dict literal, found {}", json_kind(&other)),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_must_be_a_dict() {
        let err = parse_metadata("['a']").unwrap_err();
        assert!(err.to_string().contains("must be a dict"), "{err}");
    }

    #[test]
    fn columns_found_by_name() {
        let csv = "answer,extra,problem,metadata\nParis,x,Capital of France?,\"{'topic': 'Geography'}\"\n";
        let items = parse(csv.as_bytes()).unwrap();
        assert_eq!(items[0].question, "Capital of France?");
        assert_eq!(items[0].answers, ["Paris"]);
        assert_eq!(items[0].metadata["topic"], "Geography");
    }
}
