//! DeepMAD search-space TOML files.
//! The harness is `archproof::fuzzing::deepmad_space`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::deepmad_space(data));
