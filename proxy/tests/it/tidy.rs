//! Tidy checks over the workspace's own source files.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Every DuckDB open goes through `recorder::open_db` (external access disabled, configuration
/// locked): no other DuckDB open function is called anywhere in the workspace.
#[test]
fn duckdb_is_opened_in_one_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned();
    let needle = concat!("Connection", "::open");
    let home = root.join("proxy/src/recorder/mod.rs");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 20,
        "the workspace's sources were not found under {}",
        root.display()
    );
    let mut offenders = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let allowed = if *f == home {
            let start = text
                .find("pub fn open_db_tuned(")
                .expect("open_db is in recorder/mod.rs");
            let end = start + text[start..].find("\n}\n").expect("open_db ends");
            Some(start..end)
        } else {
            None
        };
        for (at, _) in text.match_indices(needle) {
            if !allowed.as_ref().is_some_and(|r| r.contains(&at)) {
                let line = text[..at].matches('\n').count() + 1;
                offenders.push(format!(
                    "{}:{line}",
                    f.strip_prefix(&root).unwrap_or(f).display()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "DuckDB opened outside agentcap_proxy::recorder::open_db: {offenders:?}"
    );
}

/// Every outgoing HTTP(S) client of the workspace is built by `agentcap_proxy::upstream::http_client`:
/// no other file sets up a rustls client configuration or an HTTPS connector.
#[test]
fn outgoing_http_clients_are_built_in_one_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned();
    let home = root.join("proxy/src/upstream.rs");
    let needles = [
        concat!("HttpsConnector", "Builder"),
        concat!("ClientConfig", "::builder"),
    ];
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.contains(&home), "{} is missing", home.display());
    let mut offenders = Vec::new();
    for f in files.iter().filter(|f| **f != home) {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for n in needles {
            if let Some(at) = text.find(n) {
                let line = text[..at].matches('\n').count() + 1;
                offenders.push(format!(
                    "{}:{line}",
                    f.strip_prefix(&root).unwrap_or(f).display()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "HTTP clients built outside agentcap_proxy::upstream::http_client: {offenders:?}"
    );
}
