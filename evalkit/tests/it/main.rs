//! Integration tests of the eval kit: runs end to end against the twin (in-process, zero latency,
//! on 127.0.0.1:0) through the embedded recording proxy, with the shared SimpleQA file as the
//! twin's knowledge.

use std::path::PathBuf;

use agentcap_evalkit::store::{self, Connection};
use agentcap_sim::{RunningSim, SimConfig};

mod grade;
mod metrics;
mod recorded;
mod report;
mod resume;
mod run;
mod upstream;

/// Directory holding the shared reference datasets (`<repo>/../shared/datasets`), found from the
/// manifest directory read at run time (a shared target dir may be used from another checkout).
pub fn shared(rel: &str) -> PathBuf {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test"));
    let path = dir.join("../../shared/datasets").join(rel);
    assert!(
        path.exists(),
        "reference file {} is missing; these tests need the shared datasets",
        path.display()
    );
    path
}

/// The SimpleQA test set.
pub fn simpleqa() -> PathBuf {
    shared("simpleqa/simple_qa_test_set.csv")
}

/// Starts the twin with `knowledge`, zero latency, and the given fault rates.
pub async fn twin(knowledge: Option<PathBuf>, faults: &[&str]) -> RunningSim {
    agentcap_sim::start(SimConfig {
        knowledge,
        fault_rates: faults.iter().map(|f| f.parse().unwrap()).collect(),
        ..SimConfig::default()
    })
    .await
    .expect("the twin starts")
}

/// Opens a finished run's database read-only.
pub fn open(db: &std::path::Path) -> Connection {
    store::open_read_only(db).expect("the database opens")
}

/// One integer from a query.
pub fn count(c: &Connection, sql: &str, run_id: &str) -> i64 {
    c.query_row(sql, [run_id], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// No-tools vs web_search (an inline agent) in stream mode, plus `extra` TOML.
pub fn two_configs(extra: &str) -> String {
    format!(
        r#"
[[config]]
name = "closed"
model = "mistral-medium-latest"

[[config]]
name = "web"
agent = {{ model = "mistral-medium-latest", tools = ["web_search"] }}
{extra}
"#
    )
}
