//! NNet networks (the ACAS Xu format).
//! The harness is `archproof::fuzzing::nnet`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::nnet(data));
