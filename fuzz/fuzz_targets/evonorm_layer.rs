//! EvoNorm layer files (JSON graphs of primitive ops), as `--layer FILE` reads them.
//! The harness is `archproof::fuzzing::evonorm_layer`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::evonorm_layer(data));
