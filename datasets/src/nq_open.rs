//! Loader for NQ-Open (`NQ-open.dev.jsonl`, Lee et al. 2019): one
//! `{"question": "...", "answer": ["...", ...]}` object per line, where `answer` lists every
//! acceptable answer string.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::jsonl::{parse_lines, question, string_list};
use crate::{DatasetError, QaItem};

/// Reads and parses an NQ-Open JSONL file. Errors name the file and line.
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

/// Parses NQ-Open JSONL from a reader.
///
/// Each non-blank line must be an object with a non-empty string `question` and a non-empty list
/// of non-empty strings `answer`; other keys are ignored. The item `id` is the 0-based line index
/// (line number − 1), `answers` is the `answer` list verbatim, and `metadata` is `{}`.
///
/// # Errors
/// [`DatasetError::Line`] wrapping the cause ([`DatasetError::Json`], [`DatasetError::Field`], or
/// [`DatasetError::Read`] for invalid UTF-8).
pub fn parse<R: Read>(reader: R) -> Result<Vec<QaItem>, DatasetError> {
    parse_lines(reader, |line_no, mut obj| {
        let question = question(&mut obj)?;
        let answers = match obj.remove("answer") {
            Some(v) => string_list("answer", v)?,
            None => return Err(DatasetError::field("answer", "is missing")),
        };
        Ok(QaItem {
            id: (line_no - 1).to_string(),
            question,
            answers,
            metadata: Value::Object(Map::new()),
        })
    })
}
