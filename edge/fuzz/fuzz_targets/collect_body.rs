#![no_main]
//! Collect and batch bodies (and gzip bodies) through the edge's pipeline: no panic, and bad
//! input is always a 4xx. Run: `make fuzz` (see edge/fuzz/README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ta_edge::fuzzing::collect_body(data);
});
