//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// `../shared/data` beside the repository. The tests that read it carry
/// `#[cfg_attr(not(shared_data), ignore = ...)]` (the flag comes from build.rs), so cargo
/// reports them as ignored where the data is absent; run with `--ignored` anyway, they fail here.
pub fn shared_data() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        p.is_dir(),
        "../shared/data is absent (the reference data sits beside the repository)"
    );
    p
}

/// The Python with onnxruntime named by `ARCHPROOF_ORT_PYTHON`. The tests that use it carry
/// `#[cfg_attr(not(ort_python), ignore = ...)]`.
pub fn ort_python() -> String {
    std::env::var("ARCHPROOF_ORT_PYTHON")
        .expect("ARCHPROOF_ORT_PYTHON names a Python with onnxruntime (see the README)")
}

/// The ACAS Xu sample of the tests, as instance-list rows: three violated (prop 3 on 1_7, 1_8,
/// 1_9) and holding ones of props 1, 3, 5 and 10.
pub fn acas_sample() -> Vec<String> {
    [
        ("1_7", "prop_3"),
        ("1_8", "prop_3"),
        ("1_9", "prop_3"),
        ("1_1", "prop_1"),
        ("2_1", "prop_1"),
        ("1_2", "prop_3"),
        ("4_4", "prop_3"),
        ("1_1", "prop_5"),
        ("4_5", "prop_10"),
    ]
    .iter()
    .map(|(n, p)| format!("ACASXU_run2a_{n}_batch_2000.onnx,{p}.vnnlib,116"))
    .collect()
}

/// Writes a study store of the first layout (one study: `meta` holds the header, `trials`
/// the finished trials by id) with `header`; returns the open connection to add trials.
pub fn write_v1_store(path: &std::path::Path, header: &str) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE trials (id INTEGER PRIMARY KEY, candidate TEXT NOT NULL, fitness REAL,
             cost REAL, metrics TEXT, error TEXT, seconds REAL NOT NULL);",
    )
    .unwrap();
    c.execute("INSERT INTO meta VALUES ('header', ?1)", [header])
        .unwrap();
    c
}

/// Runs the archproof binary with `args`.
pub fn archproof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archproof"))
        .args(args)
        .output()
        .expect("the archproof binary runs")
}

/// Asserts a run succeeded (showing its stderr if not) and parses its `--json` output.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts a run failed with exit 2, one error line, no panic, and a message containing each
/// of `needles`.
pub fn assert_bad_input(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    for n in needles {
        assert!(err.contains(n), "'{n}' not in: {err}");
    }
}

/// Runs an ONNX model in tract (an independent runtime) on one input of `shape`.
pub fn tract_forward(bytes: &[u8], shape: &[usize], x: &[f32]) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .unwrap()
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), x.to_vec()).unwrap();
    let out = model.run(tvec!(Tensor::from(input).into())).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}
