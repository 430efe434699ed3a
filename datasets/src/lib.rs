//! Question-answering datasets for agentcap's eval runner and simulator: built-in manifests
//! (source URL, licence, sha256, size, column mapping) for SimpleQA and NQ-Open, loaders for
//! their files and for a generic JSONL format, a small team-written set compiled into the crate,
//! and an exact port of the subset sampling simple-evals uses.
//!
//! Every loader yields [`QaItem`]s. Question and answer text is kept verbatim (no trimming).
//!
//! ```
//! use agentcap_datasets::{builtin_set, manifest, sample::simple_evals_sample};
//!
//! let items = builtin_set("mini-qa").expect("compiled into the crate");
//! assert_eq!(items[0].answers, ["Paris"]);
//!
//! let simpleqa = manifest::find("simpleqa").unwrap();
//! assert_eq!(simpleqa.rows, 4326);
//! // The rows simple-evals evaluates with `--examples 5`, in its order.
//! assert_eq!(simple_evals_sample(simpleqa.rows, 5, 0), [3155, 3445, 331, 2121, 4188]);
//! ```

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod error;
pub mod jsonl;
pub mod manifest;
pub mod nq_open;
pub mod pyliteral;
pub mod rng;
pub mod sample;
pub mod simpleqa;

pub use error::DatasetError;

/// One question with its acceptable answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaItem {
    /// Stable identifier: the 0-based row index for SimpleQA, the 0-based line index for NQ-Open,
    /// and the `id` field (or the 0-based line index) for generic JSONL.
    pub id: String,
    /// The question, verbatim.
    pub question: String,
    /// Acceptable answers, verbatim, preferred first (SimpleQA has exactly one).
    pub answers: Vec<String>,
    /// Per-item metadata as a JSON object: SimpleQA's `{topic, answer_type, urls}`, `{}` for
    /// NQ-Open, the `metadata` object (or `{}`) for generic JSONL.
    pub metadata: serde_json::Value,
}

/// A supported on-disk dataset format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// SimpleQA's CSV (`metadata,problem,answer`, metadata as a Python dict literal).
    #[serde(rename = "simpleqa-csv")]
    SimpleQaCsv,
    /// NQ-Open JSONL (`{"question": ..., "answer": [...]}` per line).
    #[serde(rename = "nq-open-jsonl")]
    NqOpenJsonl,
    /// The generic JSONL format of [`jsonl::parse`].
    #[serde(rename = "jsonl")]
    Jsonl,
}

impl Format {
    /// The name used in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::SimpleQaCsv => "simpleqa-csv",
            Format::NqOpenJsonl => "nq-open-jsonl",
            Format::Jsonl => "jsonl",
        }
    }

    /// All formats, in declaration order.
    pub const ALL: [Format; 3] = [Format::SimpleQaCsv, Format::NqOpenJsonl, Format::Jsonl];
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown dataset format {s:?} (expected simpleqa-csv, nq-open-jsonl or jsonl)"
                )
            })
    }
}

/// Works out a file's format from its extension and first record.
///
/// - `.csv`: the header must contain SimpleQA's `metadata`, `problem` and `answer` columns.
/// - `.jsonl` / `.ndjson` / `.json`: the first non-blank line must be a JSON object. Exactly the
///   keys `question` + `answer` (a list) means NQ-Open; anything else is generic JSONL.
/// - Any other extension: the content decides (a first non-blank character `{` means JSONL,
///   otherwise the file is tried as CSV).
///
/// # Errors
/// [`DatasetError::Io`] if the file cannot be read, [`DatasetError::UnknownFormat`] if nothing
/// matches.
pub fn detect_format(path: &Path) -> Result<Format, DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let unknown = |reason: String| DatasetError::UnknownFormat {
        path: path.to_path_buf(),
        reason,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    match ext.as_deref() {
        Some("csv") => sniff_csv(reader).map_err(unknown),
        Some("jsonl" | "ndjson" | "json") => sniff_jsonl(reader).map_err(unknown),
        _ => {
            let starts_with_brace = loop {
                let buf = reader.fill_buf().map_err(io)?;
                if buf.is_empty() {
                    return Err(unknown("the file is empty".into()));
                }
                let skip = buf
                    .iter()
                    .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .map(|i| (i, buf[i]));
                match skip {
                    Some((i, first)) => {
                        reader.consume(i);
                        break first == b'{' || reader.buffer().starts_with("\u{feff}{".as_bytes());
                    }
                    None => {
                        let len = buf.len();
                        reader.consume(len);
                    }
                }
            };
            if starts_with_brace {
                sniff_jsonl(reader).map_err(unknown)
            } else {
                sniff_csv(reader).map_err(unknown)
            }
        }
    }
}

fn sniff_csv(reader: impl Read) -> Result<Format, String> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| format!("unreadable CSV header: {e}"))?;
    let has = |name: &str| header.iter().any(|h| h == name);
    if [
        simpleqa::QUESTION_COLUMN,
        simpleqa::ANSWER_COLUMN,
        simpleqa::METADATA_COLUMN,
    ]
    .into_iter()
    .all(has)
    {
        Ok(Format::SimpleQaCsv)
    } else {
        let found: Vec<&str> = header.iter().collect();
        Err(format!(
            "CSV header {found:?} lacks SimpleQA's metadata, problem and answer columns"
        ))
    }
}

fn sniff_jsonl(reader: impl BufRead) -> Result<Format, String> {
    for line in reader.lines() {
        let line = line.map_err(|e| format!("unreadable line: {e}"))?;
        let text = line.trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("first non-blank line is not JSON: {e}"))?;
        let serde_json::Value::Object(obj) = value else {
            return Err("first non-blank line is not a JSON object".into());
        };
        let nq_shaped = obj.len() == 2
            && obj
                .get("question")
                .is_some_and(serde_json::Value::is_string)
            && obj.get("answer").is_some_and(serde_json::Value::is_array);
        return Ok(if nq_shaped {
            Format::NqOpenJsonl
        } else {
            Format::Jsonl
        });
    }
    Err("no non-blank line found".into())
}

/// Detects the format of `path` and loads it with the matching loader.
///
/// # Errors
/// Those of [`detect_format`] and of the chosen loader.
pub fn load_path(path: &Path) -> Result<Vec<QaItem>, DatasetError> {
    match detect_format(path)? {
        Format::SimpleQaCsv => simpleqa::load(path),
        Format::NqOpenJsonl => nq_open::load(path),
        Format::Jsonl => jsonl::load(path),
    }
}

/// Names of the team-written sets compiled into the crate (see `datasets/sets/README.md`).
pub const BUILTIN_SETS: &[&str] = &["mini-qa"];

/// A team-written set compiled into the crate, by name (`"mini-qa"`), or `None` if unknown.
///
/// # Panics
/// Never for a released build: the embedded sets are checked by the test suite.
pub fn builtin_set(name: &str) -> Option<Vec<QaItem>> {
    let text = match name {
        "mini-qa" => include_str!("../sets/mini-qa.jsonl"),
        _ => return None,
    };
    Some(
        jsonl::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("embedded set {name} is invalid: {e}")),
    )
}
