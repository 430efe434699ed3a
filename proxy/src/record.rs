//! What the hot path hands to the recorder: small messages per exchange, cheap to build and to send.
//!
//! The forwarding side never parses, never touches DuckDB and never blocks: it builds these messages with
//! `Bytes` clones and `Instant`-derived offsets and gives them to [`crate::recorder::RecorderHandle::send`].

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One HTTP exchange; a UUIDv7 (time-ordered).
pub type ExchangeId = Uuid;

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The response reached the client in full.
    Complete,
    /// The client went away before the response ended.
    CancelledByClient,
    /// The upstream failed: unreachable, reset, malformed.
    UpstreamError,
    /// agentcap itself failed.
    ProxyError,
    /// The upstream did not answer in time.
    Timeout,
    /// The client sent a malformed request body (bad chunk framing, an HTTP/2 stream error of its own making).
    ClientError,
}

impl Outcome {
    /// The name stored in the `outcome` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::CancelledByClient => "cancelled_by_client",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ProxyError => "proxy_error",
            Outcome::Timeout => "timeout",
            Outcome::ClientError => "client_error",
        }
    }
}

/// The HTTP version a response came over (the upstream leg: h2 when ALPN chose it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    /// HTTP/0.9.
    Http09,
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2.
    Http2,
    /// HTTP/3.
    Http3,
}

impl HttpVersion {
    /// The version of a response received by hyper (`None` for a version this build does not name).
    pub fn of(v: http::Version) -> Option<Self> {
        Some(match v {
            http::Version::HTTP_09 => HttpVersion::Http09,
            http::Version::HTTP_10 => HttpVersion::Http10,
            http::Version::HTTP_11 => HttpVersion::Http11,
            http::Version::HTTP_2 => HttpVersion::Http2,
            http::Version::HTTP_3 => HttpVersion::Http3,
            _ => return None,
        })
    }

    /// The name stored in the `upstream_version` column.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http09 => "HTTP/0.9",
            HttpVersion::Http10 => "HTTP/1.0",
            HttpVersion::Http11 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2",
            HttpVersion::Http3 => "HTTP/3",
        }
    }
}

/// The request side of an exchange, known when the request arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestInfo {
    /// Exchange id.
    pub id: ExchangeId,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Client socket address.
    pub client_addr: String,
    /// Request headers as forwarded, with secrets already redacted (`Authorization` never appears).
    pub headers: Vec<(String, String)>,
    /// First 12 hex chars of SHA-256 of the bearer key, if one was sent.
    pub key_fingerprint: Option<String>,
    /// `X-Agentcap-Session` value.
    pub session: Option<String>,
    /// `X-Agentcap-Tag-<name>: <value>` pairs (name lowercased).
    pub tags: Vec<(String, String)>,
}

/// Time since the exchange started, in microseconds.
pub type OffsetUs = u64;

/// Timings measured by the hot path, in microseconds from the exchange start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// When the upstream's response headers arrived.
    pub response_headers_us: Option<OffsetUs>,
    /// When the last byte went to the client (or the exchange otherwise ended).
    pub total_us: OffsetUs,
    /// Time spent waiting on the upstream: from sending the request to its last byte (or failure).
    pub upstream_us: OffsetUs,
}

/// A message from the hot path. `seq` numbers each exchange's messages from 0, so the recorder can put
/// them back in order whichever path (channel or spill journal) they took. The journal has its own
/// binary encoding (`recorder::journal`), so `Msg` needs no serde.
#[derive(Debug, Clone)]
pub enum Msg {
    /// The request arrived (seq 0).
    Request {
        /// What is known of the request.
        info: Box<RequestInfo>,
    },
    /// A frame of the request body, as forwarded.
    RequestBody {
        /// Exchange.
        id: ExchangeId,
        /// Order within the exchange.
        seq: u32,
        /// The bytes.
        bytes: Bytes,
    },
    /// The upstream's response head arrived.
    Response {
        /// Exchange.
        id: ExchangeId,
        /// Order within the exchange.
        seq: u32,
        /// HTTP status.
        status: u16,
        /// Response headers (secrets redacted).
        headers: Vec<(String, String)>,
        /// Receive offset.
        at_us: OffsetUs,
        /// The HTTP version the upstream answered over; `None` for a response the proxy made up (502, 504…).
        upstream_version: Option<HttpVersion>,
    },
    /// A frame of the response body, as forwarded, with its receive offset.
    ResponseBody {
        /// Exchange.
        id: ExchangeId,
        /// Order within the exchange.
        seq: u32,
        /// Receive offset.
        at_us: OffsetUs,
        /// The bytes.
        bytes: Bytes,
    },
    /// The exchange ended (always the last message of an exchange).
    End {
        /// Exchange.
        id: ExchangeId,
        /// Order within the exchange.
        seq: u32,
        /// How it ended.
        outcome: Outcome,
        /// Error text when not complete.
        error: Option<String>,
        /// Hot-path timings.
        timings: Timings,
        /// Request body bytes seen.
        bytes_in: u64,
        /// Response body bytes sent to the client.
        bytes_out: u64,
    },
}

impl Msg {
    /// The exchange this message belongs to.
    pub fn exchange_id(&self) -> ExchangeId {
        match self {
            Msg::Request { info } => info.id,
            Msg::RequestBody { id, .. }
            | Msg::Response { id, .. }
            | Msg::ResponseBody { id, .. }
            | Msg::End { id, .. } => *id,
        }
    }

    /// Order of the message within its exchange.
    pub fn seq(&self) -> u32 {
        match self {
            Msg::Request { .. } => 0,
            Msg::RequestBody { seq, .. }
            | Msg::Response { seq, .. }
            | Msg::ResponseBody { seq, .. }
            | Msg::End { seq, .. } => *seq,
        }
    }
}
