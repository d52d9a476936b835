//! ONNX models: the importer into the IR, then the lowering to the verifier's network.
//! The harness is `archproof::fuzzing::onnx`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::onnx(data));
