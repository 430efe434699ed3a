//! Integration tests of agentcap-evalkit: one binary, one module per area.

mod grade;
mod metrics;
mod report;
