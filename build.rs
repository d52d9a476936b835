//! Tells the integration tests what reference data and tools this machine has, as cfg flags,
//! so that a test whose inputs are missing is reported by cargo as ignored, with the reason,
//! instead of passing without running.
//!
//! - `shared_data`: `../shared/data` (the reference data beside the repository) exists.
//! - `ort_python`: `ARCHPROOF_ORT_PYTHON` names a Python with onnxruntime (the float32 check).
//! - `torch_python`: `ARCHPROOF_TORCH_PYTHON` names a Python with torch (the training baseline).
//! - `test_postgres`: `ARCHPROOF_TEST_POSTGRES` is the URL of a PostgreSQL database whose role
//!   may create databases (the shared-study tests make scratch ones).
//! - `test_postgres_restart`: `ARCHPROOF_TEST_POSTGRES_RESTART` is a shell command that
//!   restarts that server (the test of workers reconnecting).
//!
//! The library and the binary ignore these flags.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_data)");
    println!("cargo::rustc-check-cfg=cfg(ort_python)");
    println!("cargo::rustc-check-cfg=cfg(torch_python)");
    println!("cargo::rustc-check-cfg=cfg(test_postgres)");
    println!("cargo::rustc-check-cfg=cfg(test_postgres_restart)");
    println!("cargo::rerun-if-env-changed=ARCHPROOF_TEST_POSTGRES");
    println!("cargo::rerun-if-env-changed=ARCHPROOF_TEST_POSTGRES_RESTART");
    println!("cargo::rerun-if-env-changed=ARCHPROOF_TORCH_PYTHON");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=ARCHPROOF_ORT_PYTHON");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if data.is_dir() {
        // Watched only while it exists: a missing path would rerun this script, and rebuild
        // the crate, on every build. Data added later needs `touch build.rs` (see the README).
        println!("cargo::rerun-if-changed=../shared/data");
        println!("cargo::rustc-cfg=shared_data");
    }
    if std::env::var_os("ARCHPROOF_ORT_PYTHON").is_some_and(|p| !p.is_empty()) {
        println!("cargo::rustc-cfg=ort_python");
    }
    if std::env::var_os("ARCHPROOF_TORCH_PYTHON").is_some_and(|p| !p.is_empty()) {
        println!("cargo::rustc-cfg=torch_python");
    }
    if std::env::var_os("ARCHPROOF_TEST_POSTGRES").is_some_and(|p| !p.is_empty()) {
        println!("cargo::rustc-cfg=test_postgres");
    }
    if std::env::var_os("ARCHPROOF_TEST_POSTGRES_RESTART").is_some_and(|p| !p.is_empty()) {
        println!("cargo::rustc-cfg=test_postgres_restart");
    }
}
