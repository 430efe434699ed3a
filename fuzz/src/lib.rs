//! Fuzz harnesses for the parsers that read hostile input. They live in `tests/it/`; this library is empty.
//!
//! Each harness runs a few hundred inputs under `cargo test` and, for a long run, as many as fit in
//! `AGENTCAP_FUZZ_SECONDS` (see the README's "Fuzzing" section).
