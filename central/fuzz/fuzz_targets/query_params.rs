#![no_main]
//! Query strings through every stats endpoint's parameter parsing: no panic, and every
//! refusal is a 400 naming a parameter. Run: `make fuzz` (see the Makefile).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ta_central::query::fuzzing::query_params(data);
});
