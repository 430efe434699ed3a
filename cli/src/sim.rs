//! `agentcap sim`: flags of the twin and their translation into its typed configuration.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agentcap_sim::config::{
    DEFAULT_ABSTAIN_RATIO, DEFAULT_LISTEN, DEFAULT_P_CLOSED, DEFAULT_P_SEARCH, DEFAULT_STALL_MS,
    DEFAULT_TLS_CA_FILE,
};
use agentcap_sim::{FaultRate, LatencyOverrides, LatencyPreset, SimConfig, ToolLatency};
use anyhow::Context;
use clap::Args;

/// Flags of `agentcap sim`.
#[derive(Debug, Args)]
#[command(
    about = "Run the twin: a local simulator of the Mistral Agents & Conversations API (simulated upstream)",
    long_about = "Run the twin: a faithful local simulator of the Mistral Agents & Conversations API.\n\n\
        It serves agents, conversations (streaming included) and chat completions from memory, answers \
        deterministically, and can inject faults. Everything it produces is a simulated upstream.\n\n\
        The first line on stdout is `agentcap sim (simulated upstream) listening on http://ADDR`.",
    after_help = "Examples:\n  agentcap sim --listen 127.0.0.1:8080\n  agentcap sim --latency zero --knowledge simple_qa_test_set.csv\n  agentcap sim --fault-rate 429=0.05 --fault-rate reset=0.01"
)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "AGENTCAP_SIM_LISTEN", default_value_t = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Require `Authorization: Bearer KEY` on every request (401 otherwise).
    #[arg(long, env = "AGENTCAP_SIM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// Latency preset: `zero` (no delays) or `realistic` (~300 ms TTFT, ~50 tokens/s, web_search ~1 s).
    #[arg(long, env = "AGENTCAP_SIM_LATENCY", default_value = "realistic")]
    latency: LatencyPreset,

    /// Override the time to first token, in milliseconds.
    #[arg(long, env = "AGENTCAP_SIM_TTFT_MS")]
    ttft_ms: Option<u64>,

    /// Override the output speed, in tokens per second (0 = instantaneous).
    #[arg(long, env = "AGENTCAP_SIM_TOKENS_PER_SEC")]
    tokens_per_sec: Option<f64>,

    /// Override the default tool execution time, in milliseconds.
    #[arg(long, env = "AGENTCAP_SIM_TOOL_DELAY_MS")]
    tool_delay_ms: Option<u64>,

    /// Per-tool execution time, `NAME=MS` (repeatable), e.g. `web_search=1200`.
    #[arg(long = "tool-latency", value_name = "NAME=MS")]
    tool_latency: Vec<ToolLatency>,

    /// A QA dataset to answer from: SimpleQA CSV, NQ-Open JSONL or agentcap JSONL.
    #[arg(long, env = "AGENTCAP_SIM_KNOWLEDGE")]
    knowledge: Option<PathBuf>,

    /// Seed of every deterministic draw (answers, faults).
    #[arg(long, env = "AGENTCAP_SIM_SEED", default_value_t = 0)]
    seed: u64,

    /// Probability of a correct answer to a known question without a search connector.
    #[arg(long, env = "AGENTCAP_SIM_P_CLOSED", default_value_t = DEFAULT_P_CLOSED)]
    p_closed: f64,

    /// Probability of a correct answer to a known question with web_search.
    #[arg(long, env = "AGENTCAP_SIM_P_SEARCH", default_value_t = DEFAULT_P_SEARCH)]
    p_search: f64,

    /// Among answers that are not correct, the share that abstain (the others are wrong).
    #[arg(long, env = "AGENTCAP_SIM_ABSTAIN_RATIO", default_value_t = DEFAULT_ABSTAIN_RATIO)]
    abstain_ratio: f64,

    /// Inject a fault at random, `KIND=RATE` (repeatable); KIND is 429, 500, 503, reset, stall or error-event.
    #[arg(long = "fault-rate", value_name = "KIND=RATE")]
    fault_rate: Vec<FaultRate>,

    /// How long a stalled response hangs, in milliseconds.
    #[arg(long, env = "AGENTCAP_SIM_STALL_MS", default_value_t = DEFAULT_STALL_MS)]
    stall_ms: u64,

    /// Append every JSON body and SSE event sent to this JSONL file (for schema validation).
    #[arg(long, env = "AGENTCAP_SIM_CAPTURE")]
    capture: Option<PathBuf>,

    /// Serve HTTPS (HTTP/1.1 and h2) with a certificate generated at start; its CA is written to `--tls-ca`.
    #[arg(long, env = "AGENTCAP_SIM_TLS")]
    tls: bool,

    /// Where `--tls` writes the generated CA certificate (PEM), for clients to trust.
    #[arg(long, env = "AGENTCAP_SIM_TLS_CA", default_value = DEFAULT_TLS_CA_FILE)]
    tls_ca: PathBuf,

    /// Exit when standard input reaches end of file (lets a parent process tie the twin's life to its own).
    #[arg(long)]
    exit_on_stdin_close: bool,
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        let latency = self.latency.model().with_overrides(&LatencyOverrides {
            ttft: self.ttft_ms.map(Duration::from_millis),
            tokens_per_sec: self.tokens_per_sec,
            tool_delay: self.tool_delay_ms.map(Duration::from_millis),
            per_tool: self.tool_latency.clone(),
        });
        SimConfig {
            listen: self.listen,
            api_key: self.api_key.clone(),
            latency,
            knowledge: self.knowledge.clone(),
            seed: self.seed,
            p_closed: self.p_closed,
            p_search: self.p_search,
            abstain_ratio: self.abstain_ratio,
            fault_rates: self.fault_rate.clone(),
            stall: Duration::from_millis(self.stall_ms),
            capture: self.capture.clone(),
            tls_ca_out: self.tls.then(|| self.tls_ca.clone()),
        }
    }
}

/// Runs the twin until SIGINT / SIGTERM (or stdin EOF with `--exit-on-stdin-close`).
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let cfg = args.config();
    let exit_on_stdin = args.exit_on_stdin_close;
    let tls = args.tls;
    let shutdown = crate::stop_requested(exit_on_stdin);
    agentcap_sim::run(
        cfg,
        move |addr| {
            let scheme = if tls { "https" } else { "http" };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "agentcap sim ({}) listening on {scheme}://{addr}",
                agentcap_wire::vocab::SIMULATED_LABEL
            );
            let _ = out.flush();
        },
        shutdown,
    )
    .await
    .context("the twin failed")
}
