//! Fuzz harnesses on stable Rust: a seeded mutational driver (no coverage guidance) feeds each target
//! valid seeds, their mutations and random bytes, and the target checks its own properties.
//!
//! `cargo test -p agentcap-fuzz` runs each target for `AGENTCAP_FUZZ_CASES` inputs (default 300);
//! `AGENTCAP_FUZZ_SECONDS=600` runs each for that long instead. `AGENTCAP_FUZZ_SEED` replays a run; a
//! failing input is written to `$AGENTCAP_FUZZ_OUT` (default the temp dir) and its path printed.

mod derive_chunks;
mod export_predicate;
mod journal;
mod judge_templates;
mod replay_match;
mod report_html;
mod sql_gate;
mod sse;
mod traceparent;
mod ui_request;
mod wire;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use agentcap_datasets::rng::SplitMix64;

/// The workspace's seeded generator, with the helpers the mutator needs.
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// The next 64 random bits.
    // Not an iterator (it never ends); the short name is used throughout the driver and targets.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// How long (or how many inputs) each target runs.
enum Budget {
    Cases(u64),
    Time(Duration),
}

fn budget() -> Budget {
    if let Some(s) = std::env::var("AGENTCAP_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Budget::Time(Duration::from_secs(s));
    }
    Budget::Cases(
        std::env::var("AGENTCAP_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    )
}

/// Bytes that parsers tend to treat specially, spliced in by the mutator.
const DICTIONARY: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\r",
    b"'",
    b"\"",
    b"$$",
    b"$a$",
    b"E'",
    b"\\",
    b";",
    b"--",
    b"/*",
    b"*/",
    b"data: ",
    b"event: ",
    b"id: ",
    b": ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"\"type\"",
    b"\xff",
    b"\0",
    b"\xc3",
    b"\xe2\x82",
    b"SELECT ",
    b"COMMIT",
    b"ATTACH ",
    b"COPY ",
    b"SET ",
    b"PRAGMA ",
];

/// One mutation of `base`, sometimes spliced with another seed.
fn mutate(rng: &mut Rng, base: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = base.to_vec();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = 1 + rng.below((v.len() - i).min(16));
                v.drain(i..i + n);
            }
            4 => {
                let i = rng.below(v.len() + 1);
                let w = DICTIONARY[rng.below(DICTIONARY.len())];
                v.splice(i..i, w.iter().copied());
            }
            5 if !v.is_empty() => v.truncate(rng.below(v.len())),
            6 if !v.is_empty() => {
                // Repeat a slice: finds quadratic behaviour and size limits.
                let i = rng.below(v.len());
                let n = 1 + rng.below((v.len() - i).min(64));
                let piece = v[i..i + n].to_vec();
                let times = 1 + rng.below(64);
                for _ in 0..times {
                    v.splice(i..i, piece.iter().copied());
                }
            }
            7 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                let n = rng.below(64);
                let i = rng.below(v.len() + 1);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, junk);
            }
        }
    }
    v
}

/// Runs `target` on the seeds, then on mutated and random inputs until the budget is spent. A panic
/// in the target fails the test after writing the input to a file.
pub fn fuzz(name: &str, seeds: &[&[u8]], target: impl Fn(&[u8])) {
    let seed = std::env::var("AGENTCAP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    run(name, seeds, budget(), seed, target);
}

fn run(name: &str, seeds: &[&[u8]], budget: Budget, seed: u64, target: impl Fn(&[u8])) {
    let mut rng = Rng::new(seed);
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
    let started = Instant::now();
    let mut n: u64 = 0;
    loop {
        let done = match budget {
            Budget::Cases(c) => n >= c + seeds.len() as u64,
            Budget::Time(d) => started.elapsed() >= d,
        };
        if done {
            break;
        }
        let input = if (n as usize) < seeds.len() {
            seeds[n as usize].clone()
        } else if seeds.is_empty() || rng.one_in(10) {
            let len = rng.below(256);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let base = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, base, &seeds)
        };
        n += 1;
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
            let dir = std::env::var_os("AGENTCAP_FUZZ_OUT")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let path = dir.join(format!("fuzz-{name}-{seed}-{n}.bin"));
            let _ = std::fs::write(&path, &input);
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!(
                "fuzz target {name} failed on input {n} (seed {seed}, {} bytes, saved to {}): {msg}",
                input.len(),
                path.display()
            );
        }
    }
    println!(
        "fuzz {name}: {n} inputs in {:.1} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
}

/// The driver itself finds a planted bug, so a harness that never fails is not the driver's doing.
#[test]
fn the_driver_finds_a_planted_bug() {
    let r = catch_unwind(|| {
        run(
            "planted",
            &[b"data: hello\n\n"],
            Budget::Cases(20_000),
            7,
            |b| {
                assert!(!b.windows(2).any(|w| w == b"\r\r"), "planted");
            },
        )
    });
    let msg = r.expect_err("the planted bug was not found");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("fuzz target planted failed"), "{msg}");
}
