//! CIFAR-10 binary batches.
//! The harness is `archproof::fuzzing::cifar`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::cifar(data));
