//! DeepMAD structure files (a block list, or the released-structures file).
//! The harness is `archproof::fuzzing::deepmad_structure`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::deepmad_structure(data));
