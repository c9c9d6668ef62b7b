//! A small seeded mutation fuzzer that runs on the stable toolchain (issue #17): it replays
//! a committed corpus, then feeds a bounded number of mutants of it to one of switchyard's
//! readers, and fails on the first input that panics or takes longer than a deadline (a
//! hang). A reader may return an error or a value; nothing else.
//!
//! Mutations: bit flips, random bytes, deletions, duplications, truncation, splices of
//! lines from another corpus file, and tokens that mean something to the readers
//! (`%`, `@`, `[`, `$$`, `\i`, `:'v'`, `/*`, …). A failing input is written under
//! `target/fuzz-failures/` and named in the panic with the seed that found it; commit it to
//! the corpus's `regressions/` directory so every later run replays it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::chaos::Rng;

/// Tokens the plan, manifest, script and objects readers give meaning to.
const TOKENS: &[&str] = &[
    "%",
    "%project=",
    "%syntax-version=",
    "@",
    "[",
    "]",
    "!",
    ":",
    "#",
    "\\",
    "\n",
    "\r\n",
    " ",
    "\t",
    "\"",
    "'",
    "$$",
    "$a$",
    "/*",
    "*/",
    "--",
    ";",
    "\\i ",
    "\\ir ",
    "\\set ",
    ":'v'",
    ":\"v\"",
    ":v",
    "BEGIN;",
    "COMMIT;",
    "CREATE VIEW api.v AS SELECT 1;",
    "CREATE FUNCTION api.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
    "schemas:",
    "  api: blue-green",
    "project: ",
    "- ",
    "{",
    "}",
    "&a",
    "*a",
    "!!str",
    "\u{0}",
    "\u{feff}",
    "\u{202e}",
    "é",
    "2026-01-01T00:00:00Z",
    "<a@b.c>",
    "^",
    "~",
];

/// The largest input the fuzzer builds.
const MAX_LEN: usize = 64 * 1024;

/// How one reader is driven: it gets the input and a scratch directory of its own.
pub struct Target {
    /// Names the target in reports and the corpus directory (`<corpus>/<name>/`).
    pub name: &'static str,
    /// Runs the reader; an `Err` or `Ok` are both fine, a panic is not.
    pub run: fn(&[u8], &Path) -> Result<(), String>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Corpus files replayed.
    pub corpus: usize,
    /// Mutants run.
    pub mutants: usize,
    /// Inputs the reader accepted (the rest it refused with an error).
    pub accepted: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Replays `corpus/<target>/**` and then runs `mutants` mutants drawn from `rng`, each
/// within `deadline`. Panics naming the input on the first crash or hang.
pub fn run(
    target: &Target,
    corpus: &Path,
    rng: &mut Rng,
    mutants: usize,
    deadline: Duration,
) -> Summary {
    let started = Instant::now();
    let seeds = read_corpus(&corpus.join(target.name));
    assert!(
        !seeds.is_empty(),
        "no corpus in {}",
        corpus.join(target.name).display()
    );
    let mut summary = Summary::default();
    for (path, input) in &seeds {
        summary.accepted += usize::from(check(
            target,
            input,
            deadline,
            &format!("corpus file {}", path.display()),
        ));
        summary.corpus += 1;
    }
    for i in 0..mutants {
        let rounds = 1 + rng.below(4);
        let input = mutate(rng, &seeds, rounds);
        summary.accepted += usize::from(check(target, &input, deadline, &format!("mutant {i}")));
        summary.mutants += 1;
    }
    summary.elapsed = started.elapsed();
    summary
}

/// Runs one input on its own thread; true when the reader accepted it.
fn check(target: &Target, input: &[u8], deadline: Duration, what: &str) -> bool {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let (tx, rx) = mpsc::channel();
    let run = target.run;
    let owned = input.to_vec();
    let dir = scratch.path().to_path_buf();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| run(&owned, &dir));
        let _ = tx.send(outcome);
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(result)) => result.is_ok(),
        Ok(Err(_)) => fail(target, input, &format!("{what} panicked")),
        Err(_) => fail(
            target,
            input,
            &format!("{what} ran longer than {deadline:?}"),
        ),
    }
}

fn fail(target: &Target, input: &[u8], why: &str) -> ! {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{}-{:016x}", target.name, hash(input)));
    let _ = std::fs::write(&file, input);
    panic!(
        "fuzz target {}: {why}; input saved to {} ({} bytes): {:?}",
        target.name,
        file.display(),
        input.len(),
        String::from_utf8_lossy(&input[..input.len().min(400)])
    );
}

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every file under `dir`, recursively, sorted by path.
fn read_corpus(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// A mutant of a random corpus file, `rounds` mutations deep.
fn mutate(rng: &mut Rng, seeds: &[(PathBuf, Vec<u8>)], rounds: usize) -> Vec<u8> {
    let mut data = rng.pick(seeds).1.clone();
    for _ in 0..rounds {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
                data.splice(at..at, bytes);
            }
            2 if !data.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(data.len());
                data.drain(at.min(end)..end);
            }
            3 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(256)).min(data.len());
                let copy = data[start..end].to_vec();
                data.splice(at..at, copy);
            }
            4 => data.truncate(at),
            5 => {
                let other = &rng.pick(seeds).1;
                let lines: Vec<&[u8]> = other.split(|b| *b == b'\n').collect();
                let line = rng.pick(&lines).to_vec();
                let at = line_start(&data, at);
                data.splice(at..at, line.into_iter().chain([b'\n']));
            }
            _ => {
                let token = rng.pick(TOKENS).as_bytes().to_vec();
                data.splice(at..at, token);
            }
        }
        data.truncate(MAX_LEN);
    }
    data
}

fn line_start(data: &[u8], at: usize) -> usize {
    data[..at.min(data.len())]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1)
}
