//! CSV datasets (features, then a class label, per row).
//! The harness is `archproof::fuzzing::csv_dataset`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::csv_dataset(data));
