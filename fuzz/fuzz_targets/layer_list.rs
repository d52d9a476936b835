//! The layer-list JSON networks of the verifier.
//! The harness is `archproof::fuzzing::layer_list`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::layer_list(data));
