//! Benchmark tables (NAS-Bench-201 CSV); a table that reads also yields its objective points.
//! The harness is `archproof::fuzzing::benchmark_table`, which the regression tests replay.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| archproof::fuzzing::benchmark_table(data));
