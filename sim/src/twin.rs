//! The twin's shared state ([`Sim`]) and a request's context within it ([`Ctx`]): what every handler reads.

use std::sync::Arc;

use http::{Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::SimError;
use crate::capture::{Capture, Origin};
use crate::config::{FaultKind, SimConfig};
use crate::det::SeqRng;
use crate::http::{Body, error_body, json_response};
use crate::knowledge::Knowledge;
use crate::state::State;
use crate::validate::Problems;
use agentcap_wire::vocab::headers;

/// Header that injects a fault into one request.
pub const FAULT_HEADER: &str = headers::SIM_FAULT;

/// The twin's shared state and configuration.
#[derive(Debug)]
pub struct Sim {
    /// Configuration (validated).
    pub cfg: SimConfig,
    /// Agents and conversations.
    pub state: Mutex<State>,
    /// Knowledge mode dataset.
    pub knowledge: Option<Knowledge>,
    /// Body capture file.
    pub capture: Option<Capture>,
    /// Requests served over HTTP/2 (so tests can tell which protocol a client negotiated).
    pub h2_requests: std::sync::atomic::AtomicU64,
    /// The twin's Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::SimMetrics,
    rng: SeqRng,
}

impl Sim {
    /// Builds the twin from a config: validates it, loads the knowledge file, opens the capture.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        cfg.validate()?;
        let knowledge = match &cfg.knowledge {
            Some(p) => Some(
                Knowledge::load(p, cfg.seed, cfg.p_closed, cfg.p_search, cfg.abstain_ratio)
                    .map_err(|e| {
                        SimError::Config(format!("knowledge file {}: {e}", p.display()))
                    })?,
            ),
            None => None,
        };
        let capture = match &cfg.capture {
            Some(p) => Some(
                Capture::open(p)
                    .map_err(|e| SimError::Io(format!("capture file {}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(Self {
            rng: SeqRng::new(cfg.seed),
            cfg,
            state: Mutex::new(State::default()),
            knowledge,
            capture,
            h2_requests: Default::default(),
            metrics: Default::default(),
        })
    }

    pub(crate) fn draw_fault(&self) -> Option<FaultKind> {
        if self.cfg.fault_rates.is_empty() {
            return None;
        }
        let u = self.rng.next_unit();
        let mut acc = 0.0;
        for f in &self.cfg.fault_rates {
            acc += f.rate;
            if u < acc {
                return Some(f.kind);
            }
        }
        None
    }
}

/// What a handler returns: a response, or a cut connection.
pub(crate) type Reply = Result<Response<Body>, std::io::Error>;

/// One request's context: the twin, where the request came from (for the capture file), its fault.
pub(crate) struct Ctx {
    pub(crate) sim: Arc<Sim>,
    pub(crate) origin: Origin,
    pub(crate) fault: Option<FaultKind>,
}

impl Ctx {
    pub(crate) fn json(&self, status: StatusCode, v: Value) -> Reply {
        if let Some(c) = &self.sim.capture {
            c.json(&self.origin, status.as_u16(), &v);
        }
        Ok(json_response(status, &v))
    }

    pub(crate) fn not_found(&self, what: &str) -> Reply {
        self.json(
            StatusCode::NOT_FOUND,
            error_body(
                &format!("{what} not found"),
                "invalid_request_error",
                json!("not_found"),
            ),
        )
    }

    pub(crate) fn bad_request(&self, msg: &str) -> Reply {
        self.json(
            StatusCode::BAD_REQUEST,
            error_body(msg, "invalid_request_error", Value::Null),
        )
    }

    pub(crate) fn invalid(&self, p: Problems) -> Reply {
        self.json(StatusCode::UNPROCESSABLE_ENTITY, p.into_body())
    }
}
