//! Integration tests of the recording proxy: real TCP against the twin, a real DuckDB file in a temp dir.

mod admin;
mod connections;
mod export;
mod forwarding;
mod harness;
mod memory;
mod recorder;
mod ship;
mod strict;
mod tidy;
mod transparency;
mod views;
