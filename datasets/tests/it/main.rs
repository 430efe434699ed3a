//! Integration tests for agentcap-datasets, run against the shared reference copies of SimpleQA
//! and NQ-Open (read-only, outside the repository) and against small temporary files.

mod builtin;
mod detect;
mod jsonl;
mod manifest;
mod nq_open;
mod sample;
mod simpleqa;

use std::path::PathBuf;

/// Directory holding the shared reference datasets (`<repo>/../shared/datasets`).
///
/// Read at run time, not compile time: a test binary built in another checkout
/// of the same tree (a shared `CARGO_TARGET_DIR`) must look beside *this* one.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test"))
}

/// Path of a file under the shared datasets directory; panics with a clear message if missing.
pub fn shared(rel: &str) -> PathBuf {
    let path = manifest_dir().join("../../shared/datasets").join(rel);
    assert!(
        path.is_file(),
        "reference file {} is missing; these tests need the shared datasets",
        path.display()
    );
    path
}

/// The SimpleQA CSV.
pub fn simpleqa_csv() -> PathBuf {
    shared("simpleqa/simple_qa_test_set.csv")
}

/// The NQ-Open dev JSONL.
pub fn nq_open_jsonl() -> PathBuf {
    shared("nq-open/NQ-open.dev.jsonl")
}

/// Writes `contents` to `name` inside a fresh temporary directory.
pub fn temp_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write temp file");
    (dir, path)
}
