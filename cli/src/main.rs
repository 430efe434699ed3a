//! The `agentcap` binary: argument parsing, configuration, tracing, then a call into a crate's `run`.

mod bench;
mod conversations;
mod datasets;
mod demo;
mod eval;
mod export;
mod proxy;
mod query;
mod replay;
mod sim;
mod ui;

use clap::{Parser, Subcommand};

/// agentcap: a flight recorder and proving ground for LLM agents.
///
/// Route your app's Mistral Agents & Conversations traffic through agentcap to get an audit log,
/// compare agent configurations on accuracy and latency, and benchmark streaming latency.
#[derive(Debug, Parser)]
#[command(
    name = "agentcap",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `agentcap_sim=debug`.
    #[arg(long, global = true, env = "AGENTCAP_LOG", default_value = "warn")]
    log: String,

    /// Log format on stderr.
    #[arg(long, global = true, env = "AGENTCAP_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the twin: a local simulator of the Mistral Agents & Conversations API (simulated upstream).
    Sim(sim::SimArgs),
    /// Run the recording proxy: forward to one upstream, record every exchange into DuckDB.
    Proxy(Box<proxy::ProxyArgs>),
    /// Run one read-only SQL statement over the recording (through the proxy's admin listener, or the file).
    Query(query::QueryArgs),
    /// Export the recording: Parquet or JSON Lines per table, or HAR 1.2 of the exchanges.
    Export(export::ExportArgs),
    /// Browse recorded conversations: list them, or show one as a tree of turns, entries and branches.
    Conversations {
        #[command(subcommand)]
        command: conversations::ConversationsCommand,
    },
    /// Evaluate agent configs on a QA dataset: accuracy with CIs, paired comparisons, latency, cost.
    Eval {
        #[command(subcommand)]
        command: eval::EvalCommand,
    },
    /// QA datasets: list the known ones, fetch one into the cache (checksum verified).
    Datasets {
        #[command(subcommand)]
        command: datasets::DatasetsCommand,
    },
    /// Compare no tools vs web_search on a SimpleQA sample against the twin (simulated upstream).
    Demo(demo::DemoArgs),
    /// Browse a recording in the browser: exchanges, SSE timelines, conversations (read-only web UI).
    Ui(ui::UiArgs),
    /// Serve a recording as if it were the API (cassette mode): recorded answers, streams at the recorded pace.
    Replay(replay::ReplayArgs),
    /// Benchmark an endpoint: streamed conversations timed per event, or fixed-rate load; optionally two side by side.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn init_tracing(filter: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log, &cli.log_format);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Command::Proxy(args) = &cli.command {
        rt.worker_threads(args.runtime_workers());
    }
    let rt = rt.enable_all().build()?;
    let code = rt.block_on(async move {
        match cli.command {
            Command::Sim(args) => sim::run(args).await.map(|()| 0),
            Command::Proxy(args) => proxy::run(*args).await.map(|()| 0),
            Command::Query(args) => query::run(args).await.map(|()| 0),
            Command::Export(args) => export::run(args).await.map(|()| 0),
            Command::Conversations { command } => conversations::run(command).await.map(|()| 0),
            Command::Eval { command } => eval::run(command).await,
            Command::Datasets { command } => datasets::run(command).await.map(|()| 0),
            Command::Demo(args) => demo::run(args).await,
            Command::Bench { command } => bench::run(command).await.map(|()| 0),
            Command::Ui(args) => ui::run(args).await.map(|()| 0),
            Command::Replay(args) => replay::run(args).await.map(|()| 0),
        }
    })?;
    drop(rt);
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Resolves when standard input reaches end of file (or fails): a parent process that dies closes it.
pub(crate) async fn stdin_closed() {
    // Blocking read on a dedicated thread: returns at EOF or on error.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// A future that resolves when the process gets SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives during start-up is not lost.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut i), Ok(mut t)) => {
                    tokio::select! {
                        _ = i.recv() => {},
                        _ = t.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A future that resolves on SIGINT / SIGTERM, or also when standard input closes if `exit_on_stdin` (the
/// `--exit-on-stdin-close` flag of the long-running commands, so a parent process that dies stops them). Like
/// [`shutdown_signal`], the handlers are installed when this is called.
pub(crate) fn stop_requested(exit_on_stdin: bool) -> impl std::future::Future<Output = ()> {
    let signal = shutdown_signal();
    async move {
        if exit_on_stdin {
            tokio::select! {
                _ = signal => {},
                _ = stdin_closed() => {},
            }
        } else {
            signal.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
