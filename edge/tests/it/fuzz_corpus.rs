//! The fuzz corpus (`edge/fuzz/corpus/collect_body`) replayed on stable Rust with every test
//! run: inputs the fuzzer found interesting stay covered without nightly or sanitizers.

#[test]
fn every_corpus_input_is_handled_without_panic_and_bad_input_is_a_4xx() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/collect_body");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| ta_edge::fuzzing::collect_body(&data));
        assert!(
            outcome.is_ok(),
            "{} made the pipeline panic",
            path.display()
        );
        n += 1;
    }
    assert!(
        n >= 8,
        "the corpus is in the repository ({n} inputs in {})",
        dir.display()
    );
}
