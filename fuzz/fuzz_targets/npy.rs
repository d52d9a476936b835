//! NPY arrays, as the dataset reader reads them.
//! The harness is `archproof::fuzzing::npy`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::npy(data));
