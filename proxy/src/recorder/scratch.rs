//! The private directory a DuckDB instance may write `COPY` output into ([`super::open_db_with`]).

use std::path::{Path, PathBuf};

use super::RecorderError;

/// A fresh directory only this process uses, removed (with its content) on drop. Its path is
/// canonical, as DuckDB compares `allowed_directories` entries with resolved paths.
#[derive(Debug)]
pub struct ScratchDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ScratchDir {
    /// The directory's canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates a scratch directory in `parent` (the system's temporary directory when `None`), named
/// `.agentcap-export-…`, readable by this user only (mode 0700 on Unix).
pub fn scratch_dir(parent: Option<&Path>) -> Result<ScratchDir, RecorderError> {
    let mut b = tempfile::Builder::new();
    b.prefix(".agentcap-export-");
    let dir = match parent {
        Some(p) => b.tempdir_in(p),
        None => b.tempdir(),
    };
    let fail = |source: std::io::Error| RecorderError::Scratch {
        path: parent.map_or_else(std::env::temp_dir, Path::to_owned),
        source,
    };
    let dir = dir.map_err(fail)?;
    let path = std::fs::canonicalize(dir.path()).map_err(fail)?;
    Ok(ScratchDir { _dir: dir, path })
}
