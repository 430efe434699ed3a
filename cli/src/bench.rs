//! `agentcap bench stream` and `agentcap bench load`: flags, then a call into `agentcap_benches`.

use std::path::PathBuf;
use std::time::Duration;

use agentcap_benches::{
    LoadOptions, RequestSpec, Speaker, StreamOptions, Target, load, parse_duration, parse_header,
    stream,
};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::query::emit;

/// `agentcap bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time streamed conversations: headers, first event, TTFT, gaps between events, total.
    Stream(StreamArgs),
    /// Non-streamed requests at a fixed rate (open loop, latency from the intended send time) or back to back.
    Load(LoadArgs),
}

/// Output format of a bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    /// Text: one line per target and a table of percentiles.
    Table,
    /// The whole report as JSON (durations in microseconds).
    Json,
}

/// What both benches share: where to send, what, how.
#[derive(Debug, Args)]
pub struct Common {
    /// Base URL to measure: the API, a proxy, the twin (e.g. http://127.0.0.1:8787).
    #[arg(long)]
    target: String,
    /// A second base URL measured in the same run, interleaved (A B A B …); the report adds
    /// differences (target − compare) and ratios (target / compare).
    #[arg(long, value_name = "URL")]
    compare: Option<String>,
    /// Start conversations with this agent.
    #[arg(long, conflicts_with = "model")]
    agent_id: Option<String>,
    /// Start conversations with this model [default: mistral-medium-latest when no --agent-id].
    #[arg(long)]
    model: Option<String>,
    /// The user message of every conversation start.
    #[arg(long)]
    input: Option<String>,
    /// API key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "MISTRAL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Extra request header `NAME: VALUE` (repeatable), e.g. `X-Agentcap-Session: bench`.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Extra CA certificate (PEM) to trust for https targets (e.g. the twin's with `sim --tls`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A request that has not ended after this long counts as a timeout error.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: BenchFormat,
}

impl Common {
    fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let mut t = vec![Target::parse("target", &self.target).context("--target")?];
        if let Some(c) = &self.compare {
            t.push(Target::parse("compare", c).context("--compare")?);
        }
        Ok(t)
    }

    fn request(&self, stream: bool) -> anyhow::Result<RequestSpec> {
        let speaker = match (&self.agent_id, &self.model) {
            (Some(a), _) => Speaker::Agent(a.clone()),
            (None, Some(m)) => Speaker::Model(m.clone()),
            (None, None) => Speaker::default(),
        };
        let input = self
            .input
            .as_deref()
            .unwrap_or(agentcap_benches::client::DEFAULT_INPUT);
        let mut spec = RequestSpec::conversation_start(&speaker, input, stream);
        spec.api_key = self.api_key.clone();
        for h in &self.headers {
            spec.headers.push(parse_header(h).context("--header")?);
        }
        Ok(spec)
    }
}

/// Flags of `agentcap bench stream`.
#[derive(Debug, Args)]
#[command(
    about = "Time streamed conversations at a target (the API, a proxy, the twin), optionally against a second one",
    after_help = "Per request: time to response headers, to the first event, to the first message.output.delta (TTFT), \
        the gaps between events, the total; summarised as p50/p90/p99/p99.9/max with error counts.\n\n\
        Examples:\n  agentcap bench stream --target http://127.0.0.1:8787 --compare http://127.0.0.1:8080 --requests 200\n  \
        agentcap bench stream --target https://api.mistral.ai --agent-id ag_... --requests 20 --format json"
)]
pub struct StreamArgs {
    #[command(flatten)]
    common: Common,
    /// Measured requests per target.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Requests in flight at once (over both targets).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Unmeasured requests per target first.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
}

/// Flags of `agentcap bench load`.
#[derive(Debug, Args)]
#[command(
    about = "Non-streamed conversation starts at a fixed rate (open loop) or back to back, optionally against a second target",
    after_help = "With --rate R (per target) every request has an intended send time and its latency counts from it, so \
        stalls are not hidden (no coordinated omission); service time from the actual send is shown too. With --rate 0 \
        --concurrency C the requests go back to back (maximum throughput).\n\n\
        Examples:\n  agentcap bench load --target http://127.0.0.1:8787 --compare http://127.0.0.1:8080 --rate 1000 --duration 10s\n  \
        agentcap bench load --target http://127.0.0.1:8787 --rate 0 --concurrency 32 --duration 10s"
)]
pub struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// Requests per second per target (0: closed loop with --concurrency).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Measured duration (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Unmeasured lead-in at the same load.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Closed loop only: requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Request path under the target (POSTed).
    #[arg(long, default_value = "/v1/conversations")]
    path: String,
    /// Request body (JSON) instead of a conversation start built from --agent-id / --model / --input.
    #[arg(long)]
    body: Option<String>,
}

/// Runs a bench and prints its report.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Stream(a) => {
            let opts = StreamOptions {
                targets: a.common.targets()?,
                request: a.common.request(true)?,
                requests: a.requests,
                concurrency: a.concurrency,
                warmup: a.warmup,
                timeout: a.common.timeout,
                ca: a.common.ca.clone(),
            };
            let r = stream::run(&opts).await?;
            emit(&match a.common.format {
                BenchFormat::Table => stream::render_table(&r),
                BenchFormat::Json => format!("{}\n", serde_json::to_string_pretty(&r)?),
            })
        }
        BenchCommand::Load(a) => {
            let mut request = a.common.request(false)?;
            request.path = a.path.clone();
            if let Some(b) = &a.body {
                serde_json::from_str::<serde_json::Value>(b).context("--body is not JSON")?;
                request.body = bytes::Bytes::from(b.clone());
            }
            let opts = LoadOptions {
                targets: a.common.targets()?,
                request,
                rate: a.rate,
                duration: a.duration,
                warmup: a.warmup,
                concurrency: a.concurrency,
                timeout: a.common.timeout,
                ca: a.common.ca.clone(),
            };
            let r = load::run(&opts).await?;
            emit(&match a.common.format {
                BenchFormat::Table => load::render_table(&r),
                BenchFormat::Json => format!("{}\n", serde_json::to_string_pretty(&r)?),
            })
        }
    }
}
