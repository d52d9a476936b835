//! VNN-COMP instance lists and known-answer tables.
//! The harness is `archproof::fuzzing::instance_list`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::instance_list(data));
