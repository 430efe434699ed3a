//! `agentcap proxy --config FILE`: flags win over the file, the file over the defaults, and a key the
//! schema does not know stops the start with its name.

use crate::{Kid, run};

#[test]
fn proxy_flags_override_the_config_file_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let file_db = dir.path().join("from-file.duckdb");
    let flag_db = dir.path().join("from-flag.duckdb");
    std::fs::write(
        &file,
        format!(
            "upstream = \"http://127.0.0.1:9/from-file\"\ndb = {:?}\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
            file_db.display().to_string()
        ),
    )
    .unwrap();
    let file_s = file.display().to_string();
    let flag_db_s = flag_db.display().to_string();

    // The file alone: its upstream, database and admin listener.
    let (_p, line) = Kid::start(
        "proxy",
        &["proxy", "--config", &file_s, "--exit-on-stdin-close"],
        &dir.path().join("a.err"),
    );
    assert!(line.contains("-> http://127.0.0.1:9/from-file"), "{line}");
    assert!(line.contains("from-file.duckdb"), "{line}");
    assert!(line.contains("admin http://127.0.0.1:"), "{line}");
    drop(_p);

    // Flags over the file: --db and --no-admin win, the file's upstream stays.
    let (_p, line) = Kid::start(
        "proxy",
        &[
            "proxy",
            "--config",
            &file_s,
            "--db",
            &flag_db_s,
            "--no-admin",
            "--exit-on-stdin-close",
        ],
        &dir.path().join("b.err"),
    );
    assert!(line.contains("-> http://127.0.0.1:9/from-file"), "{line}");
    assert!(
        line.contains("from-flag.duckdb") && !line.contains("from-file.duckdb"),
        "{line}"
    );
    assert!(line.contains("admin off"), "{line}");
    drop(_p);

    // A key the schema does not know.
    std::fs::write(&file, "listen_addr = \"127.0.0.1:0\"\n").unwrap();
    let out = run(&["proxy", "--config", &file_s]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field `listen_addr`") && err.contains("proxy.toml"),
        "{err}"
    );
}
