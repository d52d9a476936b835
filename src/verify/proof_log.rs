//! Proof logs: what a verification run decided and how, kept beside the proofs. Each run gets
//! a folder `<network>-<property>-<milliseconds>` holding `log.json` (the settings and the
//! whole [`Outcome`]) and, where Z3 ran, `queries.smt2` (its first queries as SMT-LIB, each
//! with the answer Z3 gave).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Options, Outcome, Spec};
use crate::files::{write_atomic, FileError};

/// At most this many Z3 queries are written to `queries.smt2`.
pub const MAX_QUERIES: usize = 50;

#[derive(Serialize)]
struct Log<'a> {
    network: String,
    spec: String,
    regions: usize,
    engine: &'static str,
    bounding: &'static str,
    branching: &'static str,
    exact: &'static str,
    timeout_s: f64,
    seed: u64,
    outcome: &'a Outcome,
    smt_queries: usize,
    smt_queries_written: usize,
}

/// A name safe in a folder name on every system: letters, digits, `.`, `_` and `-` kept,
/// anything else (`#`, spaces, separators) a `-`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Writes the log of one run under `dir` and returns the run's folder. `network` and
/// `property` name the inputs (a file, or a tag such as `shapes#test3`).
pub fn write(
    dir: &Path,
    network: &Path,
    property: &Path,
    spec: &Spec,
    opts: &Options,
    out: &Outcome,
) -> Result<PathBuf, FileError> {
    let stem = |p: &Path| {
        file_safe(
            &p.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default(),
        )
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let run_dir = dir.join(format!("{}-{}-{stamp}", stem(network), stem(property)));
    let log = Log {
        network: network.display().to_string(),
        spec: property.display().to_string(),
        regions: spec.regions.len(),
        engine: opts.engine.name(),
        bounding: opts.bounding.name(),
        branching: opts.branching.name(),
        exact: opts.exact.name(),
        timeout_s: opts.timeout.as_secs_f64(),
        seed: opts.seed,
        outcome: out,
        smt_queries: out.smt.len(),
        smt_queries_written: out.smt.len().min(MAX_QUERIES),
    };
    let json = serde_json::to_string_pretty(&log).expect("a log serialises");
    write_atomic(&run_dir.join("log.json"), json.as_bytes(), false)?;
    if !out.smt.is_empty() {
        let mut text = String::new();
        for (i, q) in out.smt.iter().take(MAX_QUERIES).enumerate() {
            text.push_str(&format!(
                "; query {i}: {}\n(push)\n{}(check-sat)\n(pop)\n\n",
                q.answer, q.smtlib
            ));
        }
        write_atomic(&run_dir.join("queries.smt2"), text.as_bytes(), false)?;
    }
    Ok(run_dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn folder_names_keep_only_safe_characters() {
        assert_eq!(super::file_safe("shapes#test3"), "shapes-test3");
        assert_eq!(super::file_safe("prop_1 (copy)"), "prop_1--copy-");
        assert_eq!(super::file_safe("ACASXU_run2a_1_1"), "ACASXU_run2a_1_1");
    }
}
