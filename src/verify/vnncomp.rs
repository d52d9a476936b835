//! The competition's check of a counterexample, outside archproof: the network run in float32
//! by onnxruntime at the reported input, through `scripts/vnncomp/check_result.py` (embedded
//! here, so an installed binary carries it) and a Python that has onnxruntime and numpy.
//! Benchmarks use it so that a counterexample only the f64 forward pass confirms does not
//! count as solved.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::VerifyError;

/// The checker script (see its docstring for the rules it applies).
pub const CHECKER: &str = include_str!("../../scripts/vnncomp/check_result.py");

/// A Python with onnxruntime and the checker script written beside a run's outputs.
#[derive(Debug, Clone)]
pub struct OrtChecker {
    python: PathBuf,
    script: PathBuf,
}

/// The checker's verdict on one result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether the counterexample passed (or the result carries none).
    pub passed: bool,
    /// The checker's line.
    pub message: String,
}

impl OrtChecker {
    /// Writes the checker into `dir` and checks that `python` imports onnxruntime and numpy.
    pub fn new(python: &Path, dir: &Path) -> Result<OrtChecker, VerifyError> {
        let ok = Command::new(python)
            .args(["-c", "import onnxruntime, numpy"])
            .output()
            .map_err(|e| VerifyError::Checker(format!("cannot run {}: {e}", python.display())))?;
        if !ok.status.success() {
            return Err(VerifyError::Checker(format!(
                "{} cannot import onnxruntime and numpy (install them: python3 -m venv V && \
                 V/bin/pip install onnxruntime numpy, then pass V/bin/python)",
                python.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| VerifyError::File {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let script = dir.join("check_result.py");
        std::fs::write(&script, CHECKER).map_err(|e| VerifyError::File {
            path: script.display().to_string(),
            msg: e.to_string(),
        })?;
        Ok(OrtChecker {
            python: python.to_path_buf(),
            script,
        })
    }

    /// Checks one result file of the instance `(onnx, vnnlib)`.
    pub fn check(&self, onnx: &Path, vnnlib: &Path, result: &Path) -> Result<Check, VerifyError> {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args([onnx, vnnlib, result])
            .output()
            .map_err(|e| VerifyError::Checker(format!("the checker did not run: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match out.status.code() {
            Some(0) => Ok(Check {
                passed: true,
                message: text,
            }),
            Some(1) => Ok(Check {
                passed: false,
                message: text,
            }),
            _ => Err(VerifyError::Checker(format!(
                "the checker failed on {}: {}",
                result.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }
}
