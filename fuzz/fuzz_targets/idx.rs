//! MNIST IDX files (images with three dimensions, labels with one).
//! The harness is `archproof::fuzzing::idx`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::idx(data));
