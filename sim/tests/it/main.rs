//! Integration tests of the twin over real TCP: every operation, streams, triggers, faults, knowledge mode.

mod agents;
mod client;
mod conversations;
mod faults;
mod knowledge;
mod streams;
