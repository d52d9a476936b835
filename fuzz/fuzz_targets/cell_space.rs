//! Cell search-space TOML files (NAS-Bench-201, NASNet).
//! The harness is `archproof::fuzzing::cell_space`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::cell_space(data));
