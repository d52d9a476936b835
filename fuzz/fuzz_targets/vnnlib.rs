//! VNN-LIB properties; a parsed spec is written back and read again.
//! The harness is `archproof::fuzzing::vnnlib`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::vnnlib(data));
