//! Which dataset a run uses: a manifest name resolved in the dataset cache (`simpleqa`,
//! `nq-open`), a team-written built-in set (`mini-qa`), or a local file; the sample drawn from it;
//! and the SimpleQA grader template found beside it.

use std::path::{Path, PathBuf};

use agentcap_datasets::{Format, QaItem, builtin_set, manifest, sample};

/// Dataset errors (the operator's input, mostly).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The loaders failed.
    #[error(transparent)]
    Dataset(#[from] agentcap_datasets::DatasetError),
    /// A named dataset is not in the cache.
    #[error(
        "dataset {name} is not in the cache ({path}): run `agentcap datasets fetch {name}`, or pass --dataset PATH"
    )]
    NotFetched {
        /// Manifest name.
        name: String,
        /// Where it was looked for.
        path: String,
    },
    /// `--limit` is larger than the dataset.
    #[error("--limit {limit} is larger than the dataset ({rows} items)")]
    LimitTooLarge {
        /// The limit.
        limit: usize,
        /// Items available.
        rows: usize,
    },
    /// The file changed since the run started (resume).
    #[error(
        "the dataset file {path} changed since the run started (sha256 {found}, run used {expected})"
    )]
    Changed {
        /// The file.
        path: String,
        /// Its sha256 now.
        found: String,
        /// The run's.
        expected: String,
    },
    /// The grader template is missing or wrong.
    #[error("{0}")]
    Template(String),
    /// A `recorded:` file that is not a recorded set.
    #[error("{0}")]
    NotRecorded(String),
    /// Two items share an id.
    #[error("item id {0:?} appears twice in the dataset; results are keyed by id")]
    DuplicateId(String),
}

/// The directory datasets are fetched into: `$AGENTCAP_DATA_DIR`, else
/// `$XDG_CACHE_HOME/agentcap/datasets`, else `$HOME/.cache/agentcap/datasets`, else
/// `.agentcap/datasets`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AGENTCAP_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("agentcap/datasets");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".cache/agentcap/datasets");
    }
    PathBuf::from(".agentcap/datasets")
}

/// Where a manifest's data file lives in the cache.
pub fn cached_path(cache_dir: &Path, m: &manifest::Manifest) -> PathBuf {
    cache_dir.join(&m.name).join(&m.file_name)
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Label for reports: the manifest or set name, or the file name.
    pub label: String,
    /// What to store to find it again: the name, or the absolute path.
    pub source: String,
    /// The data file, when there is one.
    pub path: Option<PathBuf>,
    /// Its sha256.
    pub sha256: Option<String>,
    /// Its format (`None` for built-in sets, which are generic JSONL).
    pub format: Option<Format>,
    /// Every item, in file order.
    pub items: Vec<QaItem>,
    /// Read as recorded conversations (`recorded:FILE`): each item is replayed with its history
    /// and the recorded answers are the `recorded` config column.
    pub recorded: bool,
}

impl Dataset {
    /// Resolves `spec`: a manifest name (looked up in `cache_dir`, checksum verified), a built-in
    /// set name, or a path.
    pub fn resolve(spec: &str, cache_dir: &Path) -> Result<Dataset, DataError> {
        if let Some(file) = spec.strip_prefix(crate::recorded::PREFIX) {
            let mut d = Dataset::resolve(file, cache_dir)?;
            if d.format != Some(Format::Jsonl) {
                return Err(DataError::NotRecorded(format!(
                    "{spec}: a recorded set is the JSONL `agentcap datasets from-recording` writes"
                )));
            }
            if let Some(it) = d.items.iter().find(|it| !crate::recorded::is_recorded(it)) {
                return Err(DataError::NotRecorded(format!(
                    "{spec}: item {:?} is not a recorded turn (its metadata.source is not \"recording\")",
                    it.id
                )));
            }
            d.recorded = true;
            d.source = format!("{}{}", crate::recorded::PREFIX, d.source);
            d.label = format!("{}{}", crate::recorded::PREFIX, d.label);
            return Ok(d);
        }
        if let Some(m) = manifest::find(spec) {
            let path = cached_path(cache_dir, &m);
            if !path.exists() {
                return Err(DataError::NotFetched {
                    name: m.name.clone(),
                    path: path.display().to_string(),
                });
            }
            manifest::verify_size(&path, m.size)?;
            manifest::verify_file(&path, &m.sha256)?;
            let items = agentcap_datasets::load_path(&path)?;
            return Dataset::checked(Dataset {
                label: m.name.clone(),
                source: m.name.clone(),
                sha256: Some(m.sha256.clone()),
                format: Some(m.format),
                path: Some(path),
                items,
                recorded: false,
            });
        }
        if let Some(items) = builtin_set(spec) {
            return Dataset::checked(Dataset {
                label: spec.to_string(),
                source: spec.to_string(),
                path: None,
                sha256: None,
                format: None,
                items,
                recorded: false,
            });
        }
        let path = PathBuf::from(spec);
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        let format = agentcap_datasets::detect_format(&path)?;
        let items = agentcap_datasets::load_path(&path)?;
        let sha256 = manifest::sha256_file(&path)?;
        let label = manifest::builtin()
            .into_iter()
            .find(|m| m.sha256 == sha256)
            .map(|m| m.name)
            .unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| spec.to_string())
            });
        Dataset::checked(Dataset {
            label,
            source: path.display().to_string(),
            path: Some(path),
            sha256: Some(sha256),
            format: Some(format),
            items,
            recorded: false,
        })
    }

    fn checked(d: Dataset) -> Result<Dataset, DataError> {
        let mut seen = std::collections::HashSet::with_capacity(d.items.len());
        for it in &d.items {
            if !seen.insert(it.id.as_str()) {
                return Err(DataError::DuplicateId(it.id.clone()));
            }
        }
        Ok(d)
    }

    /// Fails if the data file's sha256 is not `expected` (resume).
    pub fn expect_sha256(&self, expected: Option<&str>) -> Result<(), DataError> {
        match (expected, &self.sha256) {
            (Some(e), Some(f)) if e != f => Err(DataError::Changed {
                path: self
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                found: f.clone(),
                expected: e.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The items a run evaluates, in order: all of them, or with `limit = K` exactly the ones
    /// `random.Random(seed).sample(items, K)` picks (simple-evals' subset for seed 0).
    pub fn sample(&self, limit: Option<usize>, seed: u64) -> Result<Vec<QaItem>, DataError> {
        match limit {
            None => Ok(self.items.clone()),
            Some(k) => {
                let idx = sample::try_simple_evals_sample(self.items.len(), k, seed).ok_or(
                    DataError::LimitTooLarge {
                        limit: k,
                        rows: self.items.len(),
                    },
                )?;
                Ok(idx.into_iter().map(|i| self.items[i].clone()).collect())
            }
        }
    }

    /// Whether this is SimpleQA-shaped (the `simpleqa` grader is the default then).
    pub fn is_simpleqa(&self) -> bool {
        self.format == Some(Format::SimpleQaCsv)
    }

    /// The SimpleQA grader template: `explicit` if given, else the manifest's `grader-template`
    /// companion beside the data file or in the cache, checked against its sha256.
    pub fn grader_template(
        &self,
        explicit: Option<&Path>,
        cache_dir: &Path,
    ) -> Result<String, DataError> {
        if let Some(p) = explicit {
            return std::fs::read_to_string(p)
                .map_err(|e| DataError::Template(format!("grader template {}: {e}", p.display())));
        }
        let m = manifest::find("simpleqa")
            .ok_or_else(|| DataError::Template("no simpleqa manifest".into()))?;
        let companion = m.file("grader-template").ok_or_else(|| {
            DataError::Template("the simpleqa manifest has no grader-template".into())
        })?;
        let mut candidates = Vec::new();
        if let Some(dir) = self.path.as_ref().and_then(|p| p.parent()) {
            candidates.push(dir.join(&companion.file_name));
        }
        candidates.push(cache_dir.join(&m.name).join(&companion.file_name));
        for c in &candidates {
            if c.exists() {
                manifest::verify_file(c, &companion.sha256)?;
                return std::fs::read_to_string(c).map_err(|e| {
                    DataError::Template(format!("grader template {}: {e}", c.display()))
                });
            }
        }
        Err(DataError::Template(format!(
            "the simpleqa grader needs the official grader template ({}); looked in {}. Run `agentcap datasets fetch simpleqa`, pass --grader-template FILE, or use --grader exact",
            companion.file_name,
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// The item's `topic` and `answer_type` metadata.
pub fn labels(item: &QaItem) -> (Option<String>, Option<String>) {
    let get = |k: &str| {
        item.metadata
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    (get("topic"), get("answer_type"))
}
