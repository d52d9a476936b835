//! Every input the fuzzers found failing, replayed through the same harness
//! (`archproof::fuzzing`): `tests/fuzz-cases/TARGET/NAME` holds the bytes. Each must now be
//! refused with an error or parsed, without a panic.

use archproof::fuzzing::{self, TARGETS};
use std::path::Path;

fn cases() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-cases")
}

#[test]
fn every_fuzz_case_is_handled_without_a_panic() {
    let Ok(dirs) = std::fs::read_dir(cases()) else {
        return;
    };
    for dir in dirs {
        let dir = dir.unwrap().path();
        let target = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            TARGETS.contains(&target.as_str()),
            "{target}: not a fuzz target"
        );
        for case in std::fs::read_dir(&dir).unwrap() {
            let case = case.unwrap().path();
            let data = std::fs::read(&case).unwrap();
            let caught = std::panic::catch_unwind(|| fuzzing::run(&target, &data));
            assert!(caught.is_ok(), "{}: panicked", case.display());
        }
    }
    let _ = std::fs::remove_dir_all(fuzzing::scratch_dir());
}

/// The fuzz crate has one target per harness, and the harnesses run.
#[test]
fn the_fuzz_targets_match_the_harnesses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    for t in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{t}\"")),
            "{t} not in fuzz/Cargo.toml"
        );
        let src = std::fs::read_to_string(root.join(format!("fuzz/fuzz_targets/{t}.rs"))).unwrap();
        assert!(
            src.contains(&format!("archproof::fuzzing::{t}(data)")),
            "{t}.rs"
        );
        assert!(fuzzing::run(t, b""), "{t}");
    }
    assert_eq!(manifest.matches("[[bin]]").count(), TARGETS.len());
    assert!(!fuzzing::run("no-such-target", b""));
    let _ = std::fs::remove_dir_all(fuzzing::scratch_dir());
}
