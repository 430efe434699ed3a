//! The recording proxy (to come): transparent forwarding to one upstream, with every Agents /
//! Conversations exchange, entry and SSE event recorded into DuckDB off the hot path.
//!
//! This crate is intentionally empty for now; `ARCHITECTURE.md` describes the design it will follow.
