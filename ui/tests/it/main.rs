//! Integration tests of the UI: pages rendered over a recording made by a real proxy in front of the twin.

mod harness;
mod pages;
mod runs;
mod safety;
mod tail;
