//! The twin's typed configuration: latency model, knowledge mode, faults; validated once at start.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::SimError;

/// How long simulated work takes.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    /// Time to first token of every message the model writes.
    pub ttft: Duration,
    /// Output speed; `0` or infinity means instantaneous.
    pub tokens_per_sec: f64,
    /// Time a tool execution takes when `per_tool` has no entry for it.
    pub tool_delay: Duration,
    /// Per-tool execution times (`web_search`, `code_interpreter`, …).
    pub per_tool: BTreeMap<String, Duration>,
}

impl LatencyModel {
    /// No simulated delay at all (tests, throughput benchmarks).
    pub fn zero() -> Self {
        Self {
            ttft: Duration::ZERO,
            tokens_per_sec: 0.0,
            tool_delay: Duration::ZERO,
            per_tool: BTreeMap::new(),
        }
    }

    /// Roughly what a hosted model feels like: 300 ms TTFT, 50 tokens/s, web_search about 1 s.
    pub fn realistic() -> Self {
        let per_tool = [
            ("web_search", 1000),
            ("web_search_premium", 1400),
            ("code_interpreter", 1500),
            ("image_generation", 4000),
            ("document_library", 700),
        ]
        .into_iter()
        .map(|(k, ms)| (k.to_string(), Duration::from_millis(ms)))
        .collect();
        Self {
            ttft: Duration::from_millis(300),
            tokens_per_sec: 50.0,
            tool_delay: Duration::from_millis(800),
            per_tool,
        }
    }

    /// Delay between two output tokens.
    pub fn per_token(&self) -> Duration {
        if self.tokens_per_sec > 0.0 && self.tokens_per_sec.is_finite() {
            Duration::from_secs_f64(1.0 / self.tokens_per_sec)
        } else {
            Duration::ZERO
        }
    }

    /// How long the named tool runs.
    pub fn tool(&self, name: &str) -> Duration {
        self.per_tool.get(name).copied().unwrap_or(self.tool_delay)
    }
}

/// Changes to a latency preset, as the command line gives them (`agentcap sim --ttft-ms …`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyOverrides {
    /// Replaces [`LatencyModel::ttft`].
    pub ttft: Option<Duration>,
    /// Replaces [`LatencyModel::tokens_per_sec`].
    pub tokens_per_sec: Option<f64>,
    /// Replaces [`LatencyModel::tool_delay`] and clears the preset's per-tool times.
    pub tool_delay: Option<Duration>,
    /// Per-tool times set (or replaced) after that, in order.
    pub per_tool: Vec<ToolLatency>,
}

impl LatencyModel {
    /// This model with `o` applied.
    pub fn with_overrides(mut self, o: &LatencyOverrides) -> Self {
        if let Some(t) = o.ttft {
            self.ttft = t;
        }
        if let Some(tps) = o.tokens_per_sec {
            self.tokens_per_sec = tps;
        }
        if let Some(d) = o.tool_delay {
            self.tool_delay = d;
            self.per_tool.clear();
        }
        for t in &o.per_tool {
            self.per_tool.insert(t.name.clone(), t.delay);
        }
        self
    }
}

/// `NAME=MS` as given to `--tool-latency`: how long one tool runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolLatency {
    /// The tool (`web_search`, …).
    pub name: String,
    /// Its execution time.
    pub delay: Duration,
}

impl FromStr for ToolLatency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, ms) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=MS, got {s:?}"))?;
        let ms = ms
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("bad milliseconds {ms:?}: {e}"))?;
        Ok(Self {
            name: name.trim().to_string(),
            delay: Duration::from_millis(ms),
        })
    }
}

/// A named latency preset, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyPreset {
    /// [`LatencyModel::zero`].
    Zero,
    /// [`LatencyModel::realistic`].
    Realistic,
}

impl LatencyPreset {
    /// The preset's model.
    pub fn model(self) -> LatencyModel {
        match self {
            LatencyPreset::Zero => LatencyModel::zero(),
            LatencyPreset::Realistic => LatencyModel::realistic(),
        }
    }
}

impl FromStr for LatencyPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zero" => Ok(Self::Zero),
            "realistic" => Ok(Self::Realistic),
            other => Err(format!(
                "unknown latency preset {other:?} (expected zero or realistic)"
            )),
        }
    }
}

/// A fault the twin can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// 429 with `Retry-After`.
    RateLimited,
    /// 500 with the generic error body.
    Internal,
    /// 503 with the generic error body.
    Unavailable,
    /// The connection is cut mid-response (mid-stream for SSE).
    Reset,
    /// The response stops sending and hangs (up to the configured stall time).
    Stall,
    /// A stream ends with `conversation.response.error` (a non-stream request gets a 500).
    ErrorEvent,
}

impl FaultKind {
    /// Every kind, in a fixed order (the order rates are drawn in).
    pub const ALL: [FaultKind; 6] = [
        FaultKind::RateLimited,
        FaultKind::Internal,
        FaultKind::Unavailable,
        FaultKind::Reset,
        FaultKind::Stall,
        FaultKind::ErrorEvent,
    ];

    /// The name used on the command line and in the fault header.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::RateLimited => "429",
            FaultKind::Internal => "500",
            FaultKind::Unavailable => "503",
            FaultKind::Reset => "reset",
            FaultKind::Stall => "stall",
            FaultKind::ErrorEvent => "error-event",
        }
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown fault {s:?} (expected one of 429, 500, 503, reset, stall, error-event)"
                )
            })
    }
}

/// `KIND=RATE` as given to `--fault-rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRate {
    /// Which fault.
    pub kind: FaultKind,
    /// Probability per eligible request, in `[0, 1]`.
    pub rate: f64,
}

impl FromStr for FaultRate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, r) = s
            .split_once('=')
            .ok_or_else(|| format!("expected KIND=RATE, got {s:?}"))?;
        let rate: f64 = r
            .trim()
            .parse()
            .map_err(|e| format!("bad rate {r:?}: {e}"))?;
        Ok(Self {
            kind: k.parse()?,
            rate,
        })
    }
}

/// Where `agentcap sim` listens unless told otherwise ([`SimConfig::default`] takes a free port).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The file `agentcap sim --tls` writes its CA certificate to unless told otherwise.
pub const DEFAULT_TLS_CA_FILE: &str = "agentcap-twin-ca.pem";
/// Default of [`SimConfig::p_closed`].
pub const DEFAULT_P_CLOSED: f64 = 0.23;
/// Default of [`SimConfig::p_search`].
pub const DEFAULT_P_SEARCH: f64 = 0.75;
/// Default of [`SimConfig::abstain_ratio`].
pub const DEFAULT_ABSTAIN_RATIO: f64 = 0.3;
/// Default of [`SimConfig::stall`], in milliseconds.
pub const DEFAULT_STALL_MS: u64 = 30_000;

/// Everything the twin needs to start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen (port 0 picks a free one).
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Latency model.
    pub latency: LatencyModel,
    /// A QA dataset the twin answers from (SimpleQA CSV, NQ-Open JSONL, or our JSONL).
    pub knowledge: Option<PathBuf>,
    /// Seed of every deterministic draw.
    pub seed: u64,
    /// Probability of a correct answer to a known question without a search connector.
    pub p_closed: f64,
    /// Probability of a correct answer to a known question with web_search.
    pub p_search: f64,
    /// Among answers that are not correct, the share that abstain (the rest are wrong).
    pub abstain_ratio: f64,
    /// Random fault injection.
    pub fault_rates: Vec<FaultRate>,
    /// How long a stalled response hangs before the twin gives up on it.
    pub stall: Duration,
    /// Append every JSON body and SSE event the twin sends to this JSONL file.
    pub capture: Option<PathBuf>,
    /// Serve HTTPS (HTTP/1.1 and h2 by ALPN) with a generated certificate; its CA PEM goes to this file.
    pub tls_ca_out: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: None,
            latency: LatencyModel::zero(),
            knowledge: None,
            seed: 0,
            p_closed: DEFAULT_P_CLOSED,
            p_search: DEFAULT_P_SEARCH,
            abstain_ratio: DEFAULT_ABSTAIN_RATIO,
            fault_rates: Vec::new(),
            stall: Duration::from_millis(DEFAULT_STALL_MS),
            capture: None,
            tls_ca_out: None,
        }
    }
}

impl SimConfig {
    /// Checks ranges once, at start.
    pub fn validate(&self) -> Result<(), SimError> {
        let prob = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(SimError::Config(format!(
                    "{name} must be within [0, 1], got {v}"
                )))
            }
        };
        prob("p_closed", self.p_closed)?;
        prob("p_search", self.p_search)?;
        prob("abstain_ratio", self.abstain_ratio)?;
        let mut total = 0.0;
        for f in &self.fault_rates {
            prob(&format!("fault rate {}", f.kind.name()), f.rate)?;
            total += f.rate;
        }
        if total > 1.0 {
            return Err(SimError::Config(format!(
                "fault rates add up to {total}, more than 1"
            )));
        }
        if self.latency.tokens_per_sec.is_nan() || self.latency.tokens_per_sec < 0.0 {
            return Err(SimError::Config("tokens_per_sec must be >= 0".into()));
        }
        if let Some(k) = &self.api_key
            && k.is_empty()
        {
            return Err(SimError::Config("api key must not be empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rates_parse_and_validate() {
        let f: FaultRate = "429=0.1".parse().unwrap();
        assert_eq!(f.kind, FaultKind::RateLimited);
        assert!("nope=0.1".parse::<FaultRate>().is_err());
        assert!("reset".parse::<FaultRate>().is_err());
        let cfg = SimConfig {
            fault_rates: vec!["429=0.7".parse().unwrap(), "reset=0.5".parse().unwrap()],
            ..SimConfig::default()
        };
        assert!(cfg.validate().is_err());
        assert!(SimConfig::default().validate().is_ok());
    }

    #[test]
    fn latency_overrides_apply_in_order() {
        let o = LatencyOverrides {
            ttft: Some(Duration::from_millis(5)),
            tokens_per_sec: None,
            tool_delay: Some(Duration::from_millis(7)),
            per_tool: vec!["web_search = 9".parse().unwrap()],
        };
        let m = LatencyPreset::Realistic.model().with_overrides(&o);
        assert_eq!(m.ttft, Duration::from_millis(5));
        assert_eq!(m.tokens_per_sec, LatencyModel::realistic().tokens_per_sec);
        assert_eq!(m.tool("web_search"), Duration::from_millis(9));
        assert_eq!(m.tool("code_interpreter"), Duration::from_millis(7));
        assert_eq!(
            LatencyPreset::Zero
                .model()
                .with_overrides(&LatencyOverrides::default()),
            LatencyModel::zero()
        );
        assert!("web_search".parse::<ToolLatency>().is_err());
        assert!("web_search=x".parse::<ToolLatency>().is_err());
    }
}
