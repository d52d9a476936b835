//! IR JSON graphs (with or without weights), and their lowering to the verifier's network.
//! The harness is `archproof::fuzzing::ir_json`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::ir_json(data));
