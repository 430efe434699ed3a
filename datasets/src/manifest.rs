//! Dataset manifests: where a dataset comes from, its licence, its sha256 and size, how many
//! rows it has, and how its columns map onto [`crate::QaItem`]. The built-in manifests live in
//! `datasets/manifests/*.toml` and are compiled into the crate.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{DatasetError, Format};

/// The embedded manifest sources, as (file name, TOML text).
const BUILTIN: &[(&str, &str)] = &[
    ("simpleqa.toml", include_str!("../manifests/simpleqa.toml")),
    ("nq-open.toml", include_str!("../manifests/nq-open.toml")),
];

/// Description of one downloadable dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short identifier, lowercase letters, digits and `-` (e.g. `simpleqa`).
    pub name: String,
    /// One-paragraph description of the dataset.
    pub description: String,
    /// On-disk format, which picks the loader.
    pub format: Format,
    /// File name the data is expected under (e.g. `simple_qa_test_set.csv`).
    pub file_name: String,
    /// Canonical download URL.
    pub source_url: String,
    /// Other URLs serving byte-identical copies.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Lowercase hex sha256 of the data file.
    pub sha256: String,
    /// Size of the data file in bytes.
    pub size: u64,
    /// Number of items (data rows or JSON lines) the loader yields.
    pub rows: usize,
    /// SPDX licence identifier of the data.
    pub licence: String,
    /// Copyright holder / attribution line required by the licence.
    pub attribution: String,
    /// Paper or other reference to cite.
    #[serde(default)]
    pub citation: Option<String>,
    /// How source columns (CSV headers or JSON keys) map onto `QaItem` fields.
    pub columns: Columns,
    /// How simple-evals style subsets are drawn, if the dataset has a published convention.
    #[serde(default)]
    pub subset: Option<Subset>,
    /// Companion files (grader prompt, subset indices...).
    #[serde(default)]
    pub files: Vec<ExtraFile>,
}

/// Mapping from source columns to [`crate::QaItem`] fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// Column holding the id; when absent the id is the 0-based row (or line) index.
    #[serde(default)]
    pub id: Option<String>,
    /// Column holding the question text.
    pub question: String,
    /// Column holding the answer: a single string (`answers = [it]`) or a list, see
    /// `answer_is_list`.
    pub answer: String,
    /// Whether the answer column holds a list of acceptable answers.
    #[serde(default)]
    pub answer_is_list: bool,
    /// Column holding per-item metadata; when absent the metadata is `{}`.
    #[serde(default)]
    pub metadata: Option<String>,
    /// How the metadata column is encoded.
    #[serde(default)]
    pub metadata_encoding: Option<MetadataEncoding>,
}

/// Encoding of a metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataEncoding {
    /// A Python literal (`ast.literal_eval` syntax), as in SimpleQA.
    PythonLiteral,
    /// JSON.
    Json,
}

/// How a benchmark harness draws a fixed-size subset of the rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    /// The sampling procedure.
    pub method: SubsetMethod,
    /// The seed the harness uses.
    pub seed: u64,
}

/// Known subset-sampling procedures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubsetMethod {
    /// `random.Random(seed).sample(rows, k)` in CPython 3, reproduced by
    /// [`crate::sample::simple_evals_sample`].
    CpythonRandomSample,
}

/// A companion file shipped alongside a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFile {
    /// Short identifier (e.g. `grader-template`).
    pub name: String,
    /// File name the companion is expected under.
    pub file_name: String,
    /// What the file is and what uses it.
    pub description: String,
    /// Where it comes from. If `derived` is set the file is extracted from this URL's content,
    /// so the checksum below is of the extracted file, not of the download.
    pub url: String,
    /// How the file was derived from `url`, when it is not a verbatim download.
    #[serde(default)]
    pub derived: Option<String>,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// SPDX licence identifier of the file.
    pub licence: String,
}

impl Manifest {
    /// Parses and validates a manifest from TOML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`DatasetError::ManifestToml`] for TOML or schema errors (unknown keys are rejected),
    /// [`DatasetError::Manifest`] if [`Manifest::validate`] fails.
    pub fn from_toml(origin: &str, text: &str) -> Result<Manifest, DatasetError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|source| DatasetError::ManifestToml {
                name: origin.to_owned(),
                source,
            })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the invariants serde cannot: a well-formed name, 64-hex-digit lowercase sha256s,
    /// https URLs, non-zero sizes and row counts, non-empty text fields, plain file names and
    /// unique companion names.
    ///
    /// # Errors
    /// [`DatasetError::Manifest`] naming the first broken rule.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let fail = |message: String| {
            Err(DatasetError::Manifest {
                name: self.name.clone(),
                message,
            })
        };
        if !is_slug(&self.name) {
            return fail(format!(
                "name {:?} must be non-empty lowercase letters, digits and '-'",
                self.name
            ));
        }
        let texts = [
            ("description", &self.description),
            ("licence", &self.licence),
            ("attribution", &self.attribution),
            ("columns.question", &self.columns.question),
            ("columns.answer", &self.columns.answer),
        ];
        for (field, value) in texts {
            if value.trim().is_empty() {
                return fail(format!("{field} is empty"));
            }
        }
        if self.columns.metadata.is_some() != self.columns.metadata_encoding.is_some() {
            return fail("columns.metadata and columns.metadata_encoding go together".into());
        }
        check_file_name(&self.file_name).or_else(|m| fail(format!("file_name {m}")))?;
        check_https(&self.source_url).or_else(|m| fail(format!("source_url {m}")))?;
        for url in &self.mirrors {
            check_https(url).or_else(|m| fail(format!("mirror {m}")))?;
        }
        if !is_sha256(&self.sha256) {
            return fail(format!(
                "sha256 {:?} is not 64 lowercase hex digits",
                self.sha256
            ));
        }
        if self.size == 0 {
            return fail("size is 0".into());
        }
        if self.rows == 0 {
            return fail("rows is 0".into());
        }
        let mut names = vec![self.file_name.as_str()];
        for file in &self.files {
            let ctx = format!("files[{}]", file.name);
            if !is_slug(&file.name) {
                return fail(format!(
                    "{ctx}: name must be lowercase letters, digits and '-'"
                ));
            }
            check_file_name(&file.file_name).or_else(|m| fail(format!("{ctx}: file_name {m}")))?;
            if names.contains(&file.file_name.as_str()) {
                return fail(format!("{ctx}: file_name {:?} used twice", file.file_name));
            }
            names.push(&file.file_name);
            check_https(&file.url).or_else(|m| fail(format!("{ctx}: url {m}")))?;
            if !is_sha256(&file.sha256) {
                return fail(format!("{ctx}: sha256 is not 64 lowercase hex digits"));
            }
            if file.size == 0 {
                return fail(format!("{ctx}: size is 0"));
            }
            if file.description.trim().is_empty() || file.licence.trim().is_empty() {
                return fail(format!("{ctx}: description and licence must not be empty"));
            }
        }
        let file_names: std::collections::HashSet<&str> =
            self.files.iter().map(|f| f.name.as_str()).collect();
        if file_names.len() != self.files.len() {
            return fail("two companion files share a name".into());
        }
        Ok(())
    }

    /// A companion file by its `name`.
    pub fn file(&self, name: &str) -> Option<&ExtraFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Verifies the data file and every companion file found in `dir` (by their `file_name`)
    /// against the recorded sizes and sha256s.
    ///
    /// # Errors
    /// [`DatasetError::Io`] for a missing file, [`DatasetError::Size`] or
    /// [`DatasetError::Checksum`] for a mismatch.
    pub fn verify_dir(&self, dir: &Path) -> Result<(), DatasetError> {
        let main = std::iter::once((&self.file_name, self.size, &self.sha256));
        let extra = self.files.iter().map(|f| (&f.file_name, f.size, &f.sha256));
        for (file_name, size, sha256) in main.chain(extra) {
            let path = dir.join(file_name);
            verify_size(&path, size)?;
            verify_file(&path, sha256)?;
        }
        Ok(())
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_https(url: &str) -> Result<(), String> {
    match url.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !url.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("{url:?} must be an https:// URL")),
    }
}

fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        Err(format!("{name:?} must be a plain file name"))
    } else {
        Ok(())
    }
}

/// All built-in manifests, parsed from the TOML files embedded at compile time.
///
/// # Panics
/// Never for a released build: the embedded manifests are validated by the test suite.
pub fn builtin() -> Vec<Manifest> {
    BUILTIN
        .iter()
        .map(|(file, text)| {
            Manifest::from_toml(file, text)
                .unwrap_or_else(|e| panic!("embedded manifest {file} is invalid: {e}"))
        })
        .collect()
}

/// The built-in manifest called `name`, if any.
pub fn find(name: &str) -> Option<Manifest> {
    builtin().into_iter().find(|m| m.name == name)
}

/// Lowercase hex sha256 of a file, read in a streaming fashion.
///
/// # Errors
/// [`DatasetError::Io`] if the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String, DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks that the file at `path` has the given sha256 (hex, either case).
///
/// # Errors
/// [`DatasetError::InvalidSha256`] if `sha256` is not 64 hex digits, [`DatasetError::Io`] if the
/// file cannot be read, [`DatasetError::Checksum`] if the digests differ.
pub fn verify_file(path: &Path, sha256: &str) -> Result<(), DatasetError> {
    let expected = sha256.to_ascii_lowercase();
    if !is_sha256(&expected) {
        return Err(DatasetError::InvalidSha256 {
            value: sha256.to_owned(),
        });
    }
    let actual = sha256_file(path)?;
    if actual == expected {
        Ok(())
    } else {
        Err(DatasetError::Checksum {
            path: path.to_path_buf(),
            expected,
            actual,
        })
    }
}

/// Checks that the file at `path` is exactly `size` bytes long.
///
/// # Errors
/// [`DatasetError::Io`] if the file cannot be inspected, [`DatasetError::Size`] on mismatch.
pub fn verify_size(path: &Path, size: u64) -> Result<(), DatasetError> {
    let actual = std::fs::metadata(path)
        .map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if actual == size {
        Ok(())
    } else {
        Err(DatasetError::Size {
            path: path.to_path_buf(),
            expected: size,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse_and_validate() {
        let all = builtin();
        let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["simpleqa", "nq-open"]);
        assert!(find("simpleqa").is_some());
        assert!(find("nope").is_none());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = format!("{}\nsurprise = 1\n", BUILTIN[1].1);
        let err = Manifest::from_toml("t", &text).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }

    #[test]
    fn validate_catches_bad_fields() {
        let good = find("simpleqa").unwrap();
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("sha256", Box::new(|m| m.sha256 = "abc".into())),
            ("sha256", Box::new(|m| m.sha256 = m.sha256.to_uppercase())),
            ("name", Box::new(|m| m.name = "Simple QA".into())),
            ("source_url", Box::new(|m| m.source_url = "http://x".into())),
            ("size is 0", Box::new(|m| m.size = 0)),
            ("rows is 0", Box::new(|m| m.rows = 0)),
            ("licence", Box::new(|m| m.licence = " ".into())),
            ("file_name", Box::new(|m| m.file_name = "../x.csv".into())),
            ("files[", Box::new(|m| m.files[0].sha256 = "0".repeat(63))),
            (
                "used twice",
                Box::new(|m| m.files[0].file_name = m.file_name.clone()),
            ),
            (
                "metadata_encoding",
                Box::new(|m| m.columns.metadata_encoding = None),
            ),
        ];
        for (expect, mutate) in cases {
            let mut m = good.clone();
            mutate(&mut m);
            let err = m.validate().unwrap_err().to_string();
            assert!(err.contains(expect), "expected {expect:?} in {err:?}");
        }
    }

    #[test]
    fn manifest_round_trips_through_toml() {
        for m in builtin() {
            let text = toml::to_string(&m).unwrap();
            assert_eq!(Manifest::from_toml("rt", &text).unwrap(), m);
        }
    }

    #[test]
    fn verify_file_rejects_malformed_digest() {
        let err = verify_file(Path::new("Cargo.toml"), "xyz").unwrap_err();
        assert!(matches!(err, DatasetError::InvalidSha256 { .. }));
    }
}
