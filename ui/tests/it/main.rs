//! Integration tests of the UI: pages rendered over a recording made by a real proxy in front of the twin.

mod harness;
mod pages;
mod report;
mod runs;
mod safety;
mod tail;
mod text;
mod upgrade;
mod usage;
