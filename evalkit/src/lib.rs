//! The eval runner (to come): datasets through agent configurations, graded, with confidence
//! intervals, paired comparisons and latency, each answer linked to its recorded conversation.
//!
//! This crate is intentionally empty for now; `ARCHITECTURE.md` describes the design it will follow.
