//! `agentcap datasets fetch NAME`: downloads a manifest's data file (its source URL, then each
//! mirror; or an explicit URL; or a local directory) into the dataset cache, verifying size and
//! sha256 before anything is put in place, and the companion files (the SimpleQA grader template
//! is extracted from the source file it lives in) as far as they can be had.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentcap_datasets::manifest::{ExtraFile, Manifest};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};

/// Fetch errors.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Every source failed for the data file.
    #[error("could not fetch {name}: {}", .attempts.join("; "))]
    AllFailed {
        /// The dataset.
        name: String,
        /// Each source and why it failed.
        attempts: Vec<String>,
    },
    /// The cache directory could not be written.
    #[error("cache {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Where to fetch from.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// The cache directory (files go to `<cache>/<name>/`).
    pub cache_dir: PathBuf,
    /// Fetch the data file from this URL (`http://`, `https://`, `file://` or a path) instead of
    /// the manifest's URLs; it must still match the manifest's checksum.
    pub url: Option<String>,
    /// Copy the data file and the companions from this local directory (by their file names).
    pub from_dir: Option<PathBuf>,
    /// Download again even if a verified copy is present.
    pub force: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileStatus {
    /// A verified copy was already there.
    Present,
    /// Downloaded (or copied) and verified.
    Fetched {
        /// From where.
        source: String,
    },
    /// Not fetched, and why (not an error: e.g. a file computed by the team).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Every source failed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One file of a fetch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchedFile {
    /// File name.
    pub file_name: String,
    /// Where it is (or would be).
    pub path: PathBuf,
    /// What happened.
    pub status: FileStatus,
}

/// The result of a fetch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchReport {
    /// The dataset.
    pub name: String,
    /// Its cache directory.
    pub dir: PathBuf,
    /// The data file first, then the companions.
    pub files: Vec<FetchedFile>,
}

const MAX_REDIRECTS: usize = 5;
const MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Reads `source`: `http(s)://` (following redirects), `file://`, or a local path.
pub async fn read_source(source: &str) -> Result<Bytes, String> {
    if let Some(path) = source.strip_prefix("file://") {
        return std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| format!("{path}: {e}"));
    }
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        return std::fs::read(source)
            .map(Bytes::from)
            .map_err(|e| format!("{source}: {e}"));
    }
    let client = crate::client::http_client()?;
    let mut url = source.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let req = http::Request::get(&url)
            .header(
                http::header::USER_AGENT,
                concat!("agentcap/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
            .await
            .map_err(|_| format!("{url}: no answer within 60 s"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if status.is_redirection() {
            let next = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{url}: {status} without Location"))?;
            url = if next.starts_with("http://") || next.starts_with("https://") {
                next.to_string()
            } else {
                let base: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
                format!(
                    "{}://{}{next}",
                    base.scheme_str().unwrap_or("https"),
                    base.authority().map(|a| a.as_str()).unwrap_or("")
                )
            };
            continue;
        }
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BYTES as usize);
        let bytes = tokio::time::timeout(Duration::from_secs(600), body.collect())
            .await
            .map_err(|_| format!("{url}: download took longer than 600 s"))?
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        return Ok(bytes);
    }
    Err(format!("{source}: more than {MAX_REDIRECTS} redirects"))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn check(bytes: &[u8], size: u64, sha256: &str) -> Result<(), String> {
    if bytes.len() as u64 != size {
        return Err(format!(
            "size {} bytes, the manifest says {size}",
            bytes.len()
        ));
    }
    let got = sha256_hex(bytes);
    if got != sha256 {
        return Err(format!(
            "checksum mismatch: sha256 {got}, the manifest says {sha256}"
        ));
    }
    Ok(())
}

fn verified_on_disk(path: &Path, size: u64, sha256: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| check(&b, size, sha256).is_ok())
}

/// Writes `bytes` beside `path` and renames it into place (never a half-written file).
fn put(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let io = |source| FetchError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The `GRADER_TEMPLATE = """..."""` literal of a Python source, `.strip()`ped (the template
/// has no escapes; the checksum check catches any difference).
pub fn extract_python_string(source: &str, name: &str) -> Option<String> {
    let start = source.find(&format!("{name} = \"\"\""))? + name.len() + 6;
    let len = source[start..].find("\"\"\"")?;
    Some(source[start..start + len].trim().to_string())
}

async fn fetch_companion(
    f: &ExtraFile,
    dir: &Path,
    from_dir: Option<&Path>,
    force: bool,
) -> FetchedFile {
    let path = dir.join(&f.file_name);
    let done = |status| FetchedFile {
        file_name: f.file_name.clone(),
        path: path.clone(),
        status,
    };
    if !force && verified_on_disk(&path, f.size, &f.sha256) {
        return done(FileStatus::Present);
    }
    if let Some(src_dir) = from_dir {
        let src = src_dir.join(&f.file_name);
        if src.exists() {
            return match std::fs::read(&src) {
                Ok(b) => match check(&b, f.size, &f.sha256) {
                    Ok(()) => match put(&path, &b) {
                        Ok(()) => done(FileStatus::Fetched {
                            source: src.display().to_string(),
                        }),
                        Err(e) => done(FileStatus::Failed {
                            reason: e.to_string(),
                        }),
                    },
                    Err(e) => done(FileStatus::Failed {
                        reason: format!("{}: {e}", src.display()),
                    }),
                },
                Err(e) => done(FileStatus::Failed {
                    reason: format!("{}: {e}", src.display()),
                }),
            };
        }
    }
    let bytes = match &f.derived {
        None => read_source(&f.url).await,
        Some(how) if how.contains("GRADER_TEMPLATE") => match read_source(&f.url).await {
            Ok(b) => extract_python_string(&String::from_utf8_lossy(&b), "GRADER_TEMPLATE")
                .map(Bytes::from)
                .ok_or_else(|| format!("{}: no GRADER_TEMPLATE literal", f.url)),
            Err(e) => Err(e),
        },
        Some(how) => {
            return done(FileStatus::Skipped {
                reason: format!("not downloadable ({how})"),
            });
        }
    };
    match bytes.and_then(|b| check(&b, f.size, &f.sha256).map(|()| b)) {
        Ok(b) => match put(&path, &b) {
            Ok(()) => done(FileStatus::Fetched {
                source: f.url.clone(),
            }),
            Err(e) => done(FileStatus::Failed {
                reason: e.to_string(),
            }),
        },
        Err(reason) => done(FileStatus::Failed { reason }),
    }
}

/// Fetches `m` into `<cache>/<name>/`. Fails only if the data file cannot be had; companion
/// failures are reported in the result.
pub async fn fetch(m: &Manifest, opts: &FetchOptions) -> Result<FetchReport, FetchError> {
    let dir = opts.cache_dir.join(&m.name);
    let path = dir.join(&m.file_name);
    let main_status = if !opts.force && verified_on_disk(&path, m.size, &m.sha256) {
        FileStatus::Present
    } else {
        let sources: Vec<String> = match (&opts.url, &opts.from_dir) {
            (Some(u), _) => vec![u.clone()],
            (None, Some(d)) => vec![d.join(&m.file_name).display().to_string()],
            (None, None) => std::iter::once(m.source_url.clone())
                .chain(m.mirrors.iter().cloned())
                .collect(),
        };
        let mut attempts = Vec::new();
        let mut fetched = None;
        for src in sources {
            match read_source(&src)
                .await
                .and_then(|b| check(&b, m.size, &m.sha256).map(|()| b))
            {
                Ok(b) => {
                    put(&path, &b)?;
                    fetched = Some(src);
                    break;
                }
                Err(e) => attempts.push(if e.starts_with(&src) {
                    e
                } else {
                    format!("{src}: {e}")
                }),
            }
        }
        match fetched {
            Some(source) => FileStatus::Fetched { source },
            None => {
                return Err(FetchError::AllFailed {
                    name: m.name.clone(),
                    attempts,
                });
            }
        }
    };
    let mut files = vec![FetchedFile {
        file_name: m.file_name.clone(),
        path,
        status: main_status,
    }];
    for f in &m.files {
        let path = dir.join(&f.file_name);
        if opts.url.is_some() && !verified_on_disk(&path, f.size, &f.sha256) {
            // --url names one file: companions come from the cache or a later plain fetch.
            files.push(FetchedFile {
                file_name: f.file_name.clone(),
                path,
                status: FileStatus::Skipped {
                    reason: "not fetched with --url (fetch without it, or with --from-dir)".into(),
                },
            });
            continue;
        }
        files.push(fetch_companion(f, &dir, opts.from_dir.as_deref(), opts.force).await);
    }
    Ok(FetchReport {
        name: m.name.clone(),
        dir,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_a_triple_quoted_literal() {
        let src = "X = 1\nGRADER_TEMPLATE = \"\"\"\n  Hello {question}\n\"\"\".strip()\n";
        assert_eq!(
            extract_python_string(src, "GRADER_TEMPLATE").as_deref(),
            Some("Hello {question}")
        );
        assert!(extract_python_string("nothing", "GRADER_TEMPLATE").is_none());
    }

    #[test]
    fn check_reports_size_then_checksum() {
        let b = b"abc";
        let sha = sha256_hex(b);
        assert!(check(b, 3, &sha).is_ok());
        assert!(check(b, 4, &sha).unwrap_err().contains("size"));
        assert!(
            check(b, 3, &"0".repeat(64))
                .unwrap_err()
                .contains("checksum")
        );
    }
}
