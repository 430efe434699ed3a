//! The crate-wide error type: every loader, the manifest code and the checksum helpers return
//! [`DatasetError`], with the file path and the row or line number attached where one is known.

use std::path::PathBuf;

/// Everything that can go wrong while detecting, loading or verifying a dataset.
///
/// Parsers that work on a reader (`parse`) report positions with [`DatasetError::Row`] or
/// [`DatasetError::Line`]; the path-based loaders (`load`) wrap those in [`DatasetError::File`]
/// so the message names the file too, e.g.
/// `data/x.jsonl: line 3: field "question" is missing`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// An error inside a named file.
    #[error("{}: {source}", path.display())]
    File {
        /// The file being read.
        path: PathBuf,
        /// What went wrong inside it.
        #[source]
        source: Box<DatasetError>,
    },

    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Reading from an in-memory or streamed input failed (includes invalid UTF-8).
    #[error("read error: {0}")]
    Read(#[source] std::io::Error),

    /// An error in one CSV data row.
    ///
    /// `row` is the 0-based index of the data row (header excluded), which is also the item id;
    /// `line` is the 1-based physical line on which the record starts.
    #[error("row {row} (line {line}): {source}")]
    Row {
        /// 0-based data-row index (the SimpleQA item id).
        row: usize,
        /// 1-based line number where the record starts.
        line: u64,
        /// What is wrong with the row.
        #[source]
        source: Box<DatasetError>,
    },

    /// An error on one line of a JSONL file (`line` is 1-based).
    #[error("line {line}: {source}")]
    Line {
        /// 1-based line number.
        line: u64,
        /// What is wrong with the line.
        #[source]
        source: Box<DatasetError>,
    },

    /// The CSV reader rejected the input (bad quoting, unequal field counts, invalid UTF-8...).
    #[error("CSV error: {0}")]
    Csv(#[source] csv::Error),

    /// The CSV header does not contain a required column.
    #[error("missing column {column:?} in CSV header {header:?}")]
    MissingColumn {
        /// The column that was looked for.
        column: String,
        /// The header that was found.
        header: Vec<String>,
    },

    /// A line is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),

    /// A field is missing, empty or has the wrong type.
    #[error("field {field:?} {problem}")]
    Field {
        /// The field name (CSV column or JSON key).
        field: String,
        /// What is wrong with it, phrased to follow the field name (e.g. "is missing").
        problem: String,
    },

    /// A Python literal (SimpleQA's `metadata` column) could not be parsed.
    #[error("invalid Python literal at byte {offset}: {message}")]
    PyLiteral {
        /// Byte offset into the literal text where the problem was found.
        offset: usize,
        /// What was expected or found.
        message: String,
    },

    /// Two records of a JSONL file share the same id.
    #[error("duplicate id {id:?} (first used on line {first_line})")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// 1-based line of the first record with this id.
        first_line: u64,
    },

    /// The format of a file could not be determined.
    #[error("cannot detect the dataset format of {}: {reason}", path.display())]
    UnknownFormat {
        /// The file that was inspected.
        path: PathBuf,
        /// Why no format matched.
        reason: String,
    },

    /// A manifest is not valid TOML or does not match the manifest schema.
    #[error("manifest {name}: invalid TOML: {source}")]
    ManifestToml {
        /// Where the manifest came from (its name or file).
        name: String,
        /// The TOML/serde error.
        #[source]
        source: toml::de::Error,
    },

    /// A manifest parsed but failed validation.
    #[error("manifest {name}: {message}")]
    Manifest {
        /// The manifest's name.
        name: String,
        /// The rule that was broken.
        message: String,
    },

    /// A string that should be a sha256 digest is not 64 hex digits.
    #[error("invalid sha256 {value:?}: expected 64 hex digits")]
    InvalidSha256 {
        /// The rejected value.
        value: String,
    },

    /// A file's sha256 differs from the expected one.
    #[error("sha256 mismatch for {}: expected {expected}, got {actual}", path.display())]
    Checksum {
        /// The file that was hashed.
        path: PathBuf,
        /// The digest the manifest promised.
        expected: String,
        /// The digest of the file on disk.
        actual: String,
    },

    /// A file's size differs from the expected one.
    #[error("size mismatch for {}: expected {expected} bytes, got {actual}", path.display())]
    Size {
        /// The file that was checked.
        path: PathBuf,
        /// The size the manifest promised.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
}

impl DatasetError {
    /// The 1-based line number this error points at, looking through [`DatasetError::File`]
    /// wrappers: the JSONL line, or the line where a CSV row starts.
    pub fn line(&self) -> Option<u64> {
        match self {
            DatasetError::File { source, .. } => source.line(),
            DatasetError::Row { line, .. } | DatasetError::Line { line, .. } => Some(*line),
            DatasetError::Csv(e) => e.position().map(csv::Position::line),
            _ => None,
        }
    }

    /// The 0-based CSV data-row index this error points at, looking through
    /// [`DatasetError::File`] wrappers.
    pub fn row(&self) -> Option<usize> {
        match self {
            DatasetError::File { source, .. } => source.row(),
            DatasetError::Row { row, .. } => Some(*row),
            _ => None,
        }
    }

    /// Wraps `self` with the path of the file it came from.
    pub(crate) fn in_file(self, path: &std::path::Path) -> DatasetError {
        DatasetError::File {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }

    /// Shorthand for a [`DatasetError::Field`].
    pub(crate) fn field(field: &str, problem: impl Into<String>) -> DatasetError {
        DatasetError::Field {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }
}
