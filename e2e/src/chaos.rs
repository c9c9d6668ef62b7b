//! Seeded randomness and run sizes for the reliability suite (`RELIABILITY.md`).
//!
//! Every test that draws at random takes its seed from `SWITCHYARD_SEED` when set, else
//! from the clock, and prints it first (`SEED <test> 1234; rerun with SWITCHYARD_SEED=1234`),
//! so a failure found once can be replayed. `SWITCHYARD_RELIABILITY=full` selects the full
//! sizes (the figures in RELIABILITY.md); unset, the short sizes CI runs.

use std::time::Duration;

/// A small, fast, seeded generator (SplitMix64). Not for cryptography: only to make
/// fault schedules and fuzz inputs replayable.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator that replays `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The generator for `test`: `SWITCHYARD_SEED` or a fresh seed, printed on stderr.
    pub fn for_test(test: &str) -> Rng {
        let seed = seed();
        eprintln!("SEED {test} {seed}; rerun with SWITCHYARD_SEED={seed}");
        Rng::new(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One of `items` (panics on an empty slice: a test bug).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A duration between `lo` and `hi`, millisecond grained.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as usize;
        lo + Duration::from_millis(self.below(span + 1) as u64)
    }
}

/// `SWITCHYARD_SEED`, else a seed from the clock and the process id.
pub fn seed() -> u64 {
    if let Some(seed) = std::env::var("SWITCHYARD_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return seed;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// True when `SWITCHYARD_RELIABILITY=full`: the documented full run, not CI's short one.
pub fn full() -> bool {
    std::env::var("SWITCHYARD_RELIABILITY").is_ok_and(|v| v == "full")
}

/// `short` in CI, `full` under `SWITCHYARD_RELIABILITY=full`.
pub fn size(short: usize, full_size: usize) -> usize {
    if full() { full_size } else { short }
}

/// Prints one figure for RELIABILITY.md: `FIGURE <name>: <value>`; `scripts/reliability`
/// collects these lines.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    eprintln!("FIGURE {name}: {value}");
}
