//! Crash durability of the recording: kill -9 of a proxy under load, then a restart replays the journal.
//! Strict mode loses nothing the client received; batched mode loses nothing that had reached the
//! journal (or DuckDB) before the kill — what completed since is reported, not asserted.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentcap"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("agentcap starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc(child), line)
}

fn url_after(line: &str, marker: &str) -> String {
    let at = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {line:?}"))
        + marker.len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches([',', ')'])
        .to_string()
}

fn proxy(twin: &str, db: &std::path::Path, mode: &str) -> (Proc, String, String) {
    let (p, line) = spawn(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--upstream",
        twin,
        "--db",
        db.to_str().unwrap(),
        "--durability",
        mode,
    ]);
    let url = url_after(&line, "listening on ");
    let admin = url_after(&line, "admin ");
    (p, url, admin)
}

/// One load thread: non-streamed conversation starts, one connection each, until `stop` is set or
/// the proxy goes away. Returns each conversation whose response arrived in full, with the moment
/// it did.
fn load_thread(addr: String, stop: Arc<AtomicBool>, tag: &'static str) -> Vec<(String, Instant)> {
    use std::io::{Read, Write};
    let mut done = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let body = format!("{{\"model\":\"m\",\"inputs\":\"crash test {tag} {i}\"}}");
        let req = format!(
            "POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
            break;
        };
        if s.write_all(req.as_bytes()).is_err() {
            break;
        }
        let mut resp = Vec::new();
        if s.read_to_end(&mut resp).is_err() {
            break;
        }
        let at = Instant::now();
        let text = String::from_utf8_lossy(&resp);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            break;
        };
        if !head.starts_with("HTTP/1.1 200") {
            break;
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        if body.len() < len {
            break; // not received in full
        }
        let v: Value = serde_json::from_str(&body[..len]).unwrap();
        done.push((v["conversation_id"].as_str().unwrap().to_string(), at));
    }
    done
}

fn load(
    url: &str,
    threads: usize,
    stop: &Arc<AtomicBool>,
    tag: &'static str,
) -> Vec<std::thread::JoinHandle<Vec<(String, Instant)>>> {
    let addr = url.trim_start_matches("http://").to_string();
    (0..threads)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || load_thread(addr, stop, tag))
        })
        .collect()
}

fn recorded_conversations(db: &std::path::Path) -> HashSet<String> {
    query_conversations("http://127.0.0.1:1", db)
}

/// Conversations of complete exchanges in DuckDB, read through `admin` (a running proxy's admin
/// listener), else from the file.
fn query_conversations(admin: &str, db: &std::path::Path) -> HashSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_agentcap"))
        .args([
            "query",
            "--admin",
            admin,
            "--db",
            db.to_str().unwrap(),
            "--format",
            "json",
            "SELECT conversation_id FROM exchanges WHERE outcome = 'complete'",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .filter_map(|r| r["conversation_id"].as_str().map(str::to_string))
        .collect()
}

/// Conversations whose exchange a kill -9 cannot lose now: ended complete in a journal file (what
/// a restart replays), or already in DuckDB. The journal is read first: a segment is deleted only
/// once its exchanges are in DuckDB, which is read next.
fn durable_conversations(admin: &str, db: &std::path::Path) -> HashSet<String> {
    use agentcap_proxy::record::{Msg, Outcome};
    use agentcap_proxy::recorder::journal;
    let name = db.file_name().unwrap().to_str().unwrap();
    let dir = db.with_file_name(format!("{name}.journal"));
    let mut bodies: std::collections::HashMap<_, Vec<u8>> = std::collections::HashMap::new();
    let mut ended = HashSet::new();
    for seg in journal::list_segments(&dir).unwrap() {
        // A file deleted since it was listed is in DuckDB.
        let Ok(parsed) = journal::read_file(&seg.path(&dir)) else {
            continue;
        };
        for msg in parsed.msgs {
            match msg {
                Msg::ResponseBody { id, bytes, .. } => {
                    bodies.entry(id).or_default().extend_from_slice(&bytes)
                }
                Msg::End {
                    id,
                    outcome: Outcome::Complete,
                    ..
                } => {
                    ended.insert(id);
                }
                _ => {}
            }
        }
    }
    let mut durable: HashSet<String> = ended
        .iter()
        .filter_map(|id| serde_json::from_slice::<Value>(bodies.get(id)?).ok())
        .filter_map(|v| v["conversation_id"].as_str().map(str::to_string))
        .collect();
    durable.extend(query_conversations(admin, db));
    durable
}

/// Polls `cond`; fails with `what` after two minutes.
fn until(what: &str, cond: impl FnMut() -> bool) {
    crate::poll_until(what, Duration::from_secs(120), cond);
}

/// What a kill -9 under load lost.
struct Loss {
    /// Responses received in full before the quiet period (and, in batched mode, found durable
    /// before the kill), and of those, not recorded.
    settled: usize,
    settled_lost: usize,
    /// Responses received in full by the load that ran through the kill, and of those, not recorded.
    recent: usize,
    recent_lost: usize,
}

/// Three load threads run until the recorder has written 25 exchanges, then stop; one more keeps
/// the proxy under load through the kill -9. Before the kill, the test waits until every response
/// of the three stopped threads is durable (in the journal or DuckDB). A restart on the same file
/// replays the journal.
fn kill9_then_restart(mode: &str) -> Loss {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.duckdb");
    let (_twin, line) = spawn(&[
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--latency",
        "zero",
        "--exit-on-stdin-close",
    ]);
    let twin = url_after(&line, "listening on ");
    let (mut p, url, admin) = proxy(&twin, &db, mode);
    let (stop_a, stop_c) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let group_a = load(&url, 3, &stop_a, "a");
    let group_c = load(&url, 1, &stop_c, "c");
    until("the recorder wrote 25 exchanges", || {
        query_conversations(&admin, &db).len() >= 25
    });
    stop_a.store(true, Ordering::SeqCst);
    let mut received: Vec<(String, Instant)> = group_a
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let settled: HashSet<String> = received.iter().map(|(c, _)| c.clone()).collect();
    until("every response of the stopped load is durable", || {
        settled.is_subset(&durable_conversations(&admin, &db))
    });
    p.0.kill().unwrap(); // SIGKILL
    p.0.wait().unwrap();
    stop_c.store(true, Ordering::SeqCst);
    received.extend(group_c.into_iter().flat_map(|h| h.join().unwrap()));
    assert!(
        received.len() > 20,
        "some requests completed before the kill: {}",
        received.len()
    );
    // Restart on the same file: the journal is replayed on open; then stop it cleanly.
    let (p2, _url2, _admin2) = proxy(&twin, &db, mode);
    let pid = p2.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut p2 = p2;
    let status = p2.0.wait().unwrap();
    assert!(status.success(), "the proxy exits 0 on SIGTERM");
    let recorded = recorded_conversations(&db);
    let (settled, recent): (Vec<_>, Vec<_>) =
        received.iter().partition(|(c, _)| settled.contains(c));
    let lost = |v: &[&(String, Instant)]| v.iter().filter(|(c, _)| !recorded.contains(c)).count();
    Loss {
        settled: settled.len(),
        settled_lost: lost(&settled),
        recent: recent.len(),
        recent_lost: lost(&recent),
    }
}

#[test]
fn strict_durability_survives_kill_9() {
    let l = kill9_then_restart("strict");
    eprintln!(
        "strict: lost {} of {} responses of the stopped load, {} of {} of the load through the kill",
        l.settled_lost, l.settled, l.recent_lost, l.recent
    );
    assert_eq!(
        l.settled_lost + l.recent_lost,
        0,
        "strict: every fully received response is recorded after kill -9"
    );
}

#[test]
fn batched_durability_loses_nothing_that_reached_the_journal() {
    let l = kill9_then_restart("batched");
    eprintln!(
        "batched: lost {} of {} responses found durable before the kill, {} of {} of the load through it",
        l.settled_lost, l.settled, l.recent_lost, l.recent
    );
    assert!(l.settled > 0);
    assert_eq!(
        l.settled_lost, 0,
        "batched: responses durable (journal or DuckDB) before kill -9 are all recorded"
    );
}
