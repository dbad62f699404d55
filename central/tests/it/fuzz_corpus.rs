//! The query-parameter fuzz corpus (`central/fuzz/corpus/query_params`) replayed on stable
//! Rust with every test run, plus a bounded random sweep of mutations of it: no panic, and
//! every refusal a 400 naming a parameter.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/query_params");
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 15,
        "the corpus is in the repository ({} inputs in {})",
        inputs.len(),
        dir.display()
    );
    inputs
}

#[test]
fn every_corpus_input_is_parsed_without_panic_and_refusals_name_a_parameter() {
    for input in corpus() {
        let outcome = std::panic::catch_unwind(|| ta_central::query::fuzzing::query_params(&input));
        assert!(
            outcome.is_ok(),
            "{:?} made the parser panic",
            String::from_utf8_lossy(&input)
        );
    }
}

/// A bounded, seeded stand-in for the fuzzer in every test run: byte flips, insertions of
/// metacharacters, splices of two inputs.
#[test]
fn twenty_thousand_mutations_of_the_corpus_never_panic() {
    const TOKENS: &[&[u8]] = &[
        b"&",
        b"=",
        b"%",
        b"%00",
        b"%FF",
        b":",
        b"'",
        b"\"",
        b";",
        b"--",
        b"\\",
        b"/",
        b"..",
        b"filter=",
        b"period=custom",
        b"interval=minute",
        b"timezone=",
        b"9999999999",
        b"-",
        b"prop:",
        b"is_not",
        b"contains",
        b"%E2%80%AE",
    ];
    let inputs = corpus();
    let mut rng = StdRng::seed_from_u64(0x7a);
    for _ in 0..20_000 {
        let mut m = inputs[rng.random_range(0..inputs.len())].clone();
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..=m.len());
            match rng.random_range(0..4) {
                0 if !m.is_empty() => {
                    let i = rng.random_range(0..m.len());
                    m[i] = rng.random();
                }
                1 => {
                    let t = TOKENS[rng.random_range(0..TOKENS.len())];
                    m.splice(at..at, t.iter().copied());
                }
                2 => {
                    let other = &inputs[rng.random_range(0..inputs.len())];
                    let cut = rng.random_range(0..=other.len());
                    m.truncate(at);
                    m.extend_from_slice(&other[cut..]);
                }
                _ => m.truncate(at),
            }
        }
        let outcome = std::panic::catch_unwind(|| ta_central::query::fuzzing::query_params(&m));
        assert!(
            outcome.is_ok(),
            "{:?} made the parser panic",
            String::from_utf8_lossy(&m)
        );
    }
}
