//! A study that is interrupted resumes with no finished trial lost or repeated, and ends with
//! the same trials as an uninterrupted run of the same seed.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use archproof::cells::nb201::Nb201Space;
use archproof::cells::table::{CostMeasure, CostProxy};
use archproof::ir::Shape;
use archproof::search::store::DEFAULT_STUDY;
use archproof::search::{Attach, RegularizedEvolution, Storage, Study, StudyConfig, WorkerOptions};
use common::archproof;

fn proxy() -> CostProxy {
    CostProxy {
        measure: CostMeasure::Params,
        networks: archproof::cells::Nb201Networks {
            input: Shape::chw(3, 32, 32),
            classes: 10,
            skeleton: archproof::cells::nb201::Skeleton::BENCHMARK,
        },
    }
}

/// The finished trials of a run folder's store: number, candidate, fitness.
fn rows(store: &std::path::Path) -> Vec<(u64, String, Option<f64>)> {
    Storage::Sqlite(store.to_path_buf())
        .open_existing(DEFAULT_STUDY)
        .unwrap()
        .trials()
        .unwrap()
        .into_iter()
        .filter_map(|t| {
            let f = match t.outcome? {
                archproof::search::Outcome::Done(e) => Some(e.fitness),
                archproof::search::Outcome::Failed(_) => None,
            };
            Some((t.id, t.candidate, f))
        })
        .collect()
}

fn attach<'a>(
    study: Study<'a, Nb201Space>,
    path: &std::path::Path,
    mode: Attach,
) -> Result<Study<'a, Nb201Space>, archproof::search::SearchError> {
    study.attach(
        &Storage::Sqlite(path.to_path_buf()),
        DEFAULT_STUDY,
        serde_json::Value::Null,
        mode,
        WorkerOptions::default(),
    )
}

const CREATE: Attach = Attach::Create { force: false };

#[test]
fn library_stop_then_resume_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let rea = RegularizedEvolution {
        population: 10,
        sample: 3,
    };
    let ev = proxy();
    let config = StudyConfig {
        seed: 11,
        max_trials: 50,
        budget: None,
        batch: 4,
    };

    let full_path = dir.path().join("full.sqlite");
    let study = Study::new(&Nb201Space, &rea, &ev, config.clone()).unwrap();
    let full = attach(study, &full_path, CREATE)
        .unwrap()
        .run(&|_| {})
        .unwrap();
    assert_eq!(full.trials.len(), 50);

    // Stop after 17 trials have finished: the batch in flight finishes or is abandoned.
    let part_path = dir.path().join("part.sqlite");
    let stop = AtomicBool::new(false);
    let seen = AtomicUsize::new(0);
    let study = Study::new(&Nb201Space, &rea, &ev, config.clone()).unwrap();
    let part = attach(study, &part_path, CREATE)
        .unwrap()
        .with_stop_flag(&stop)
        .run(&|_| {
            if seen.fetch_add(1, Ordering::SeqCst) + 1 == 17 {
                stop.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
    assert!(part.interrupted);
    let stored = rows(&part_path).len();
    assert!((17..50).contains(&stored), "{stored} trials stored");

    let resumed = attach(
        Study::new(&Nb201Space, &rea, &ev, config).unwrap(),
        &part_path,
        Attach::Resume,
    )
    .unwrap();
    let newly = AtomicUsize::new(0);
    let end = resumed
        .run(&|_| {
            newly.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert!(!end.interrupted);
    assert_eq!(
        newly.load(Ordering::SeqCst),
        50 - stored,
        "no finished trial evaluated twice"
    );
    assert_eq!(rows(&part_path), rows(&full_path));
    assert_eq!(end.best, full.best);
}

#[test]
fn resume_refuses_a_different_seed() {
    let dir = tempfile::tempdir().unwrap();
    let rea = RegularizedEvolution {
        population: 10,
        sample: 3,
    };
    let ev = proxy();
    let path = dir.path().join("s.sqlite");
    let cfg = StudyConfig {
        seed: 1,
        max_trials: 5,
        budget: None,
        batch: 1,
    };
    let study = Study::new(&Nb201Space, &rea, &ev, cfg.clone()).unwrap();
    attach(study, &path, CREATE).unwrap().run(&|_| {}).unwrap();
    let other = Study::new(&Nb201Space, &rea, &ev, StudyConfig { seed: 2, ..cfg }).unwrap();
    let err = attach(other, &path, Attach::Resume)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("seed 1, not 2"), "{err}");
}

#[test]
fn cli_killed_study_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let part = dir.path().join("part");
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "search",
            "cell",
            "--space",
            "nb201",
            "--evaluator",
            "proxy:macs",
            "--strategy",
            "rea",
            "--trials",
            "60",
            "--batch",
            "4",
            "--seed",
            "3",
            "--quiet",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_string_lossy().to_string()])
        .collect()
    };
    let run = |a: &[String]| archproof(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let o = run(&args(&full));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let mut killed = args(&part);
    killed.extend(["--halt-after".into(), "13".into()]);
    let o = run(&killed);
    assert!(!o.status.success(), "the process was to abort");
    let stored = rows(&part.join("study.sqlite")).len();
    assert!(
        (13..60).contains(&stored),
        "{stored} trials survived the crash"
    );

    // Starting again without --resume is refused rather than overwriting the study.
    common::assert_bad_input(&run(&args(&part)), &["--resume", "--force"]);

    let o = archproof(&[
        "search",
        "cell",
        "--resume",
        "--quiet",
        "--json",
        "--out",
        part.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["trials"], 60);

    assert_eq!(
        rows(&part.join("study.sqlite")),
        rows(&full.join("study.sqlite"))
    );
    let read = |p: &std::path::Path| std::fs::read_to_string(p.join("summary.json")).unwrap();
    assert_eq!(read(&part), read(&full));
    assert_eq!(
        std::fs::read_to_string(part.join("best.json")).unwrap(),
        std::fs::read_to_string(full.join("best.json")).unwrap()
    );

    // A resumed study may not change its settings.
    let o = archproof(&[
        "search",
        "cell",
        "--resume",
        "--seed",
        "4",
        "--out",
        part.to_str().unwrap(),
    ]);
    common::assert_bad_input(&o, &["--seed"]);
}

/// A study remembers its space file's contents: resumed after the file changed (the networks'
/// size, here), it is refused rather than mixing trials of two spaces; restored, it resumes.
#[test]
fn resume_refuses_a_space_file_edited_since_the_study_began() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space.toml");
    let original =
        "kind = \"nb201\"\ninput = [1, 16, 16]\nclasses = 6\nchannels = 8\ncells_per_stage = 1\n";
    std::fs::write(&space, original).unwrap();
    let out = dir.path().join("run");
    let (space_arg, out_arg) = (space.to_str().unwrap(), out.to_str().unwrap());
    let o = archproof(&[
        "search",
        "cell",
        "--space",
        space_arg,
        "--evaluator",
        "proxy:params",
        "--trials",
        "3",
        "--quiet",
        "--out",
        out_arg,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resume = |trials: &str| {
        archproof(&[
            "search", "cell", "--resume", "--trials", trials, "--quiet", "--out", out_arg,
        ])
    };
    std::fs::write(&space, original.replace("channels = 8", "channels = 16")).unwrap();
    common::assert_bad_input(
        &resume("5"),
        &["space.toml", "changed since the study began"],
    );
    assert_eq!(rows(&out.join("study.sqlite")).len(), 3);
    std::fs::write(&space, original).unwrap();
    let o = resume("5");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(rows(&out.join("study.sqlite")).len(), 5);
}

/// A run folder of the first store layout, killed in the middle of a batch, kept only some of
/// that batch's trials: resumed now, the batch is proposed again, its stored trials checked
/// and the missing ones run, and the study ends as an uninterrupted run.
#[test]
fn a_version_1_store_with_gaps_resumes_to_the_uninterrupted_result() {
    use archproof::search::Space;
    let rea = RegularizedEvolution {
        population: 10,
        sample: 3,
    };
    let ev = proxy();
    let config = StudyConfig {
        seed: 4,
        max_trials: 10,
        budget: None,
        batch: 4,
    };
    let study = Study::new(&Nb201Space, &rea, &ev, config.clone()).unwrap();
    let full = study.run(&|_| {}).unwrap();
    let header = study.header(serde_json::Value::Null);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.sqlite");
    {
        let c = common::write_v1_store(&path, &serde_json::to_string(&header).unwrap());
        // Trials 6 (of the batch 4..7) and 9 (of the last batch) never finished.
        for t in full.trials.iter().filter(|t| t.id != 6 && t.id != 9) {
            let e = match &t.outcome {
                archproof::search::Outcome::Done(e) => e,
                other => panic!("{other:?}"),
            };
            c.execute(
                "INSERT INTO trials VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
                rusqlite::params![
                    t.id as i64,
                    Nb201Space.encode(&t.candidate),
                    e.fitness,
                    e.cost,
                    serde_json::to_string(&e.metrics).unwrap(),
                    t.seconds
                ],
            )
            .unwrap();
        }
    }
    let newly = AtomicUsize::new(0);
    let resumed = attach(
        Study::new(&Nb201Space, &rea, &ev, config).unwrap(),
        &path,
        Attach::Resume,
    )
    .unwrap()
    .run(&|_| {
        newly.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(newly.load(Ordering::SeqCst), 2, "only trials 6 and 9 ran");
    let codes = |r: &archproof::search::StudyResult<_>| -> Vec<String> {
        r.trials
            .iter()
            .map(|t| Nb201Space.encode(&t.candidate))
            .collect()
    };
    assert_eq!(codes(&resumed), codes(&full));
    assert_eq!(resumed.best, full.best);
}
