//! Integration tests of the recording proxy: real TCP against the twin, a real DuckDB file in a temp dir.

mod admin;
mod forwarding;
mod harness;
mod recorder;
mod tidy;
mod transparency;
mod views;
