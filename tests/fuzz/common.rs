//! What every harness shares: the case count, the runner, the committed corpus, and mutations
//! of valid inputs.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// Inputs per harness: `FUZZ_CASES` (the default is the quick run of every `cargo test`).
pub fn cases(default: u32) -> u32 {
    match std::env::var("FUZZ_CASES") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("FUZZ_CASES={text:?} is not a number")),
        Err(_) => default,
    }
}

fn seed() -> u64 {
    match std::env::var("FUZZ_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("FUZZ_SEED={text:?} is not a number")),
        Err(_) => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).expect("os rng");
            u64::from_le_bytes(bytes)
        }
    }
}

/// Run `check` on `cases` inputs drawn from `strategy`. A panic or a failed check fails the
/// test with the input shrunk to a minimal one and the seed that reproduces the run; a pass
/// prints one line of figures (`fuzz <target>: N inputs, 0 panics, T s`).
pub fn run<S>(target: &str, cases: u32, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let seed = seed();
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let inputs = Cell::new(0u64);
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        inputs.set(inputs.get() + 1);
        check(input)
    });
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => eprintln!("fuzz {target}: {cases} inputs, 0 panics, {secs:.1} s (seed {seed})"),
        Err(TestError::Fail(why, input)) => panic!(
            "fuzz {target}: FAILED after {} inputs (FUZZ_SEED={seed}): {why}\nminimal input: {input:?}",
            inputs.get()
        ),
        Err(TestError::Abort(why)) => panic!("fuzz {target}: aborted (FUZZ_SEED={seed}): {why}"),
    }
}

/// The committed corpus of `target`: `tests/corpus/<target>/*`, one input per file, sorted.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            (name, std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 24, "{}: a corpus of a few dozen inputs, found {}", dir.display(), files.len());
    files
}

/// Run `check` on every corpus input of `target`, naming the file that fails.
pub fn run_corpus(target: &str, check: impl Fn(&[u8]) -> Result<(), TestCaseError>) {
    let files = corpus(target);
    for (name, bytes) in &files {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(bytes)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("corpus {target}/{name}: {why}"),
            Err(_) => panic!("corpus {target}/{name}: panicked"),
        }
    }
    eprintln!("corpus {target}: {} inputs, 0 panics", files.len());
}

/// Byte strings that tend to break parsers.
pub const NASTY: &[&[u8]] = &[
    b"",
    b" ",
    b"\t",
    b"\r\n",
    b"\0",
    b"\x1f",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xae",
    b"\xf0\x9f\x92\xa9",
    b"=",
    b";",
    b",",
    b"\"",
    b"\\",
    b"/",
    b":",
    b"[",
    b"]",
    b"{",
    b"}",
    b"%00",
    b"%",
    b"-",
    b"+",
    b".",
    b"..",
    b"999999999999999999999999",
    b"-1",
    b"0",
    b"1e308",
    b"NaN",
    b"null",
    b"true",
    b"__Host-",
    b"sid",
    b"for=",
    b"::",
    b"::ffff:",
    b"127.0.0.1",
    b"[::1]",
    b"\xed\xa0\x80",
];

/// One edit of a byte string.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Flip bits of the byte at the position.
    Flip(usize, u8),
    /// Insert a byte.
    Insert(usize, u8),
    /// Remove a byte.
    Remove(usize),
    /// Insert one of [`NASTY`].
    Splice(usize, usize),
    /// Repeat a slice (position, length, times).
    Repeat(usize, usize, u8),
    /// Cut the rest.
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, bits)| Edit::Flip(at, bits)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), 0..NASTY.len()).prop_map(|(at, n)| Edit::Splice(at, n)),
        (any::<usize>(), 1usize..8, 2u8..20).prop_map(|(at, len, times)| Edit::Repeat(at, len, times)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Apply `edits` to `bytes`; positions wrap around the current length.
pub fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for edit in edits {
        let len = out.len();
        let at = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
        match *edit {
            Edit::Flip(pos, bits) if len > 0 => out[pos % len] ^= bits,
            Edit::Insert(pos, byte) => out.insert(at(pos), byte),
            Edit::Remove(pos) if len > 0 => {
                out.remove(pos % len);
            }
            Edit::Splice(pos, n) => {
                let at = at(pos);
                out.splice(at..at, NASTY[n].iter().copied());
            }
            Edit::Repeat(pos, span, times) if len > 0 => {
                let start = pos % len;
                let end = (start + span).min(len);
                let piece = out[start..end].to_vec();
                for _ in 1..times {
                    out.splice(end..end, piece.iter().copied());
                }
            }
            Edit::Truncate(pos) => out.truncate(at(pos)),
            _ => {}
        }
    }
    out
}

/// Valid inputs, edited 1 to 6 times.
pub fn mutated(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let count = seeds.len();
    (0..count, proptest::collection::vec(edit(), 1..=6)).prop_map(move |(n, edits)| apply(&seeds[n], &edits)).boxed()
}

/// Text over an alphabet of `interesting` characters and any character.
pub fn text_over(interesting: &'static str, max: usize) -> BoxedStrategy<String> {
    let chars: Vec<char> = interesting.chars().collect();
    let one = prop_oneof![
        4 => proptest::sample::select(chars),
        1 => any::<char>(),
    ];
    proptest::collection::vec(one, 0..=max).prop_map(|chars| chars.into_iter().collect()).boxed()
}

/// Arbitrary bytes, edits of valid inputs, and text over `alphabet`, as bytes.
pub fn inputs(seeds: Vec<Vec<u8>>, alphabet: &'static str, max: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..=max),
        4 => mutated(seeds),
        3 => text_over(alphabet, max).prop_map(String::into_bytes),
    ]
    .boxed()
}
