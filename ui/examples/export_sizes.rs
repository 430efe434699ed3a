//! Sizes and times of `agentcap export` over a big recording: Parquet, JSON Lines and HAR of every exchange,
//! from the closed file (what `agentcap export --db` does). A measuring tool, not a test.
//!
//! ```text
//! AGENTCAP_UI_BENCH_EXCHANGES=100000 cargo run -p agentcap-ui --example export_sizes
//! ```
//!
//! The recording is the one `benches/pages.rs` builds and keeps (`<target dir>/ui-bench/ui-<n>.duckdb`, same
//! environment variables), generated here through the real recorder when missing. The exports go to a
//! temporary directory beside it and are removed after each format is measured.

#[path = "../benches/support/recording.rs"]
mod recording;

use std::time::Instant;

use agentcap_proxy::export::{ExportFormat, ExportOptions, Filter, export_file};
use recording::{TURNS, bench_dir, env_u64, generate};

/// CPU seconds this process has used, all threads (Linux `/proc/self/stat`, user + system, in USER_HZ = 100
/// ticks per second); `None` elsewhere. The machine may be shared, so wall time alone says little.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[tokio::main]
async fn main() {
    let n = env_u64("AGENTCAP_UI_BENCH_EXCHANGES", 100_000).max(TURNS) / TURNS * TURNS;
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join(format!("ui-{n}.duckdb"));
    let done = dir.join(format!("ui-{n}.complete"));
    if !done.exists() {
        let _ = std::fs::remove_file(&path);
        eprintln!("building {} ({n} exchanges)", path.display());
        generate(&path, n).await;
        std::fs::write(&done, b"").expect("marker");
    }
    let db_bytes = std::fs::metadata(&path).expect("the recording").len();
    println!(
        "recording: {} ({n} exchanges, {:.1} MB)",
        path.display(),
        db_bytes as f64 / 1e6
    );
    for format in [
        ExportFormat::Parquet,
        ExportFormat::Jsonl,
        ExportFormat::Har,
    ] {
        let out_dir = tempfile::Builder::new()
            .prefix("export-sizes-")
            .tempdir_in(&dir)
            .expect("temp dir");
        let out = match format {
            ExportFormat::Har => out_dir.path().join("all.har"),
            _ => out_dir.path().join("tables"),
        };
        let opts = ExportOptions {
            format,
            tables: Vec::new(),
            filter: Filter::default(),
            out,
        };
        let t0 = Instant::now();
        let c0 = cpu_seconds();
        let report = export_file(&path, &opts).expect("export");
        let secs = t0.elapsed().as_secs_f64();
        let cpu = c0.zip(cpu_seconds()).map_or(f64::NAN, |(a, b)| b - a);
        let bytes: u64 = report.files.iter().map(|f| f.bytes).sum();
        println!(
            "{:8} {:7.1} s wall {:7.1} s cpu {:9.1} MB total",
            format.extension(),
            secs,
            cpu,
            bytes as f64 / 1e6
        );
        for f in &report.files {
            println!(
                "         {:14} {:>10} rows {:9.1} MB",
                f.what,
                f.rows,
                f.bytes as f64 / 1e6
            );
        }
    }
}
