//! The eval runner (to come): datasets through agent configurations, graded, with confidence
//! intervals, paired comparisons and latency, each answer linked to its recorded conversation.
//!
//! Its pure core is here: [`grade`] reads judge replies and grades exact matches, [`metrics`]
//! turns graded items into scores with confidence intervals and paired comparisons, and
//! [`report`] renders them (table, JSON, Markdown, HTML) and checks cutoffs.
//! `ARCHITECTURE.md` describes the design the rest will follow.

pub mod grade;
pub mod metrics;
pub mod report;
