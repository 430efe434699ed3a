//! The `agentcap` binary: argument parsing, configuration, tracing, then a call into a crate's `run`.

mod sim;

use clap::{Parser, Subcommand};

/// agentcap: a flight recorder and proving ground for LLM agents.
///
/// Route your app's Mistral Agents & Conversations traffic through agentcap to get an audit log,
/// compare agent configurations on accuracy and latency, and benchmark streaming latency.
#[derive(Debug, Parser)]
#[command(name = "agentcap", version, propagate_version = true, max_term_width = 100)]
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
}

fn init_tracing(filter: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log, &cli.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Sim(args) => sim::run(args).await,
        }
    })
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
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
