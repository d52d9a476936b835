//! Shared studies: worker processes on one SQLite file or one PostgreSQL database claim
//! trials, survive a killed worker and a restarted server, and end with the trials and the
//! best result of a single process of the same seed and batch size. Instance lists shared the
//! same way give the verdicts of one process.
//!
//! The PostgreSQL tests need `ARCHPROOF_TEST_POSTGRES` (a database URL whose role may create
//! databases; `scripts/start-postgres.sh` makes one). Each works in a scratch database of its
//! own, and they run one at a time (one of them restarts the server).

use crate::common;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use archproof::search::inspect::StudyReport;
use archproof::search::store::DEFAULT_STUDY;
use archproof::search::{Outcome, Storage};
use common::archproof;

/// The PostgreSQL tests run one at a time.
static PG: Mutex<()> = Mutex::new(());

/// A search command of `trials` NB201 trials (the parameter-count proxy: deterministic, no
/// data needed), batch 8, seed 5.
fn search_args(trials: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "search",
        "cell",
        "--space",
        "nb201",
        "--evaluator",
        "proxy:macs",
        "--strategy",
        "rea",
        "--batch",
        "8",
        "--seed",
        "5",
        "--quiet",
        "--json",
        "--trials",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(trials.to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_archproof"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the archproof binary starts")
}

fn run(args: &[String]) -> std::process::Output {
    archproof(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The finished trials of a store: (number, candidate, fitness).
fn finished(storage: &Storage, study: &str) -> Vec<(u64, String, f64)> {
    let mut conn = storage.open_existing(study).unwrap();
    conn.trials()
        .unwrap()
        .into_iter()
        .map(|t| match t.outcome {
            Some(Outcome::Done(e)) => (t.id, t.candidate, e.fitness),
            other => panic!("trial {} is not finished with a score: {other:?}", t.id),
        })
        .collect()
}

/// A single process's trials and best (number, fitness) for `trials` trials.
fn single_run(trials: usize) -> (Vec<(u64, String, f64)>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("single");
    let o = run(&search_args(trials, &["--out", out.to_str().unwrap()]));
    let summary = common::ok_json(&o);
    let rows = finished(&Storage::Sqlite(out.join("study.sqlite")), DEFAULT_STUDY);
    (rows, summary["best"].clone())
}

/// Polls `f` every 50 ms until it holds (or panics after `limit`).
fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The study's report, or `None` while it cannot be read (not created yet, server down).
fn report(storage: &Storage, study: &str) -> Option<StudyReport> {
    StudyReport::read(storage, study).ok()
}

/// A scratch database on the test server, dropped at the end.
struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    fn new(tag: &str) -> ScratchDb {
        let admin = std::env::var("ARCHPROOF_TEST_POSTGRES")
            .expect("ARCHPROOF_TEST_POSTGRES names a PostgreSQL database (see the README)");
        let name = format!("archproof_test_{tag}_{}", std::process::id());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        let url = format!("{base}/{name}");
        ScratchDb { admin, name, url }
    }

    fn storage(&self) -> Storage {
        self.url.parse().unwrap()
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Four workers on one study; one is killed (SIGKILL) while it holds a trial, and another is
/// started later. The study ends with exactly the requested trials, each once, the killed
/// trial retried, and the trials and best of a single process.
fn killed_worker_is_replaced(storage: &Storage) {
    let trials = 64;
    let url = storage_arg(storage);
    let shared = |_: usize| {
        search_args(
            trials,
            &[
                "--storage",
                &url,
                "--study",
                "fault",
                "--evaluation-delay",
                "0.4",
                "--heartbeat",
                "0.5",
                "--heartbeat-grace",
                "30",
            ],
        )
    };
    let mut workers: Vec<Child> = (0..4).map(|i| spawn(&shared(i))).collect();
    let victim = workers[1].id();
    let mark = format!("/{victim}/");
    wait_until(Duration::from_secs(120), "the victim holds a trial", || {
        report(storage, "fault").is_some_and(|r| {
            r.trials_finished >= 8
                && r.trials.iter().any(|t| {
                    t.state == "running" && t.worker.as_ref().is_some_and(|w| w.contains(&mark))
                })
        })
    });
    workers[1].kill().unwrap();
    workers[1].wait().unwrap();
    wait_until(Duration::from_secs(120), "more trials finish", || {
        report(storage, "fault").is_some_and(|r| r.trials_finished >= 24)
    });
    workers.push(spawn(&shared(4)));
    for (i, w) in workers.into_iter().enumerate() {
        let out = w.wait_with_output().unwrap();
        if i == 1 {
            continue;
        }
        let s = common::ok_json(&out);
        assert_eq!(s["trials"], trials, "worker {i}: {s}");
    }
    let r = report(storage, "fault").unwrap();
    assert_eq!(r.trials_finished, trials as u64);
    assert_eq!(
        (r.trials_running, r.trials_waiting, r.trials_failed),
        (0, 0, 0)
    );
    let numbers: Vec<u64> = r.trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..trials as u64).collect::<Vec<_>>());
    let lost: Vec<_> = r.attempts.iter().filter(|a| a.state == "lost").collect();
    assert!(
        lost.iter().any(|a| a.worker.contains(&mark)),
        "the killed worker's trial is recorded as lost: {:?}",
        r.attempts
    );
    for a in &lost {
        let t = &r.trials[a.trial as usize];
        assert!(t.attempts > a.attempt, "trial {} was retried", a.trial);
        assert!(!t.worker.as_ref().unwrap().contains(&mark));
    }
    assert_eq!(r.retries, lost.len() as u64);

    let (single, best) = single_run(trials);
    assert_eq!(finished(storage, "fault"), single);
    let b = r.best.unwrap();
    assert_eq!(best["trial"], b.number);
    assert_eq!(best["fitness"].as_f64().unwrap(), b.fitness);
}

fn storage_arg(s: &Storage) -> String {
    match s {
        Storage::Sqlite(p) => format!("sqlite:{}", p.display()),
        Storage::Postgres(url) => url.clone(),
    }
}

#[test]
fn a_killed_worker_is_replaced_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    killed_worker_is_replaced(&Storage::Sqlite(dir.path().join("shared.sqlite")));
}

#[test]
#[cfg_attr(
    not(test_postgres),
    ignore = "needs ARCHPROOF_TEST_POSTGRES (scripts/start-postgres.sh), unset when the tests were built"
)]
fn a_killed_worker_is_replaced_on_postgres() {
    let _one = PG.lock().unwrap_or_else(|e| e.into_inner());
    let db = ScratchDb::new("fault");
    killed_worker_is_replaced(&db.storage());
}

/// A trial whose worker stopped beating (a worker of another machine, so no process check
/// applies) is claimed again after the grace period, and the lost attempt is kept.
fn stale_claim_is_taken_over(storage: &Storage) {
    let mut a = storage.connect("stale").unwrap();
    let header = archproof::search::StudyHeader {
        format: archproof::search::store::STORE_FORMAT,
        space: "test".into(),
        strategy: "list".into(),
        evaluator: "none".into(),
        seed: 0,
        batch: 2,
        max_trials: 2,
        budget: None,
        settings: serde_json::Value::Null,
    };
    assert!(a.create(&header, false).unwrap());
    assert!(!a.create(&header, false).unwrap(), "created once");
    assert!(a
        .add(&[(0, "x".into()), (1, "y".into())])
        .unwrap()
        .is_empty());
    assert_eq!(a.add(&[(1, "y".into())]).unwrap(), vec![(1, "y".into())]);
    let far = "elsewhere/1/aaaa";
    let c0 = a.claim(far, 1.0, &[]).unwrap().unwrap();
    assert_eq!((c0.trial, c0.attempt), (0, 1));
    let mut b = storage.connect("stale").unwrap();
    let c1 = b.claim("here/2/bbbb", 1.0, &[]).unwrap().unwrap();
    assert_eq!(c1.trial, 1, "a fresh claim is not taken over");
    assert!(b.claim("here/2/bbbb", 1.0, &[]).unwrap().is_none());
    std::thread::sleep(Duration::from_millis(1500));
    b.beat("here/2/bbbb", &[1]).unwrap();
    let again = b.claim("here/2/bbbb", 1.0, &[]).unwrap().unwrap();
    assert_eq!(
        (again.trial, again.attempt),
        (0, 2),
        "the stale trial is claimed again"
    );
    let done = Outcome::Done(archproof::search::Evaluation {
        fitness: 1.0,
        cost: 0.0,
        metrics: Default::default(),
    });
    assert!(
        !a.finish(far, &c0, &done, 0.1, None).unwrap(),
        "the lost claim's result is refused"
    );
    assert!(b.finish("here/2/bbbb", &again, &done, 0.1, None).unwrap());
    assert!(b.finish("here/2/bbbb", &c1, &done, 0.1, None).unwrap());
    let attempts = b.attempts().unwrap();
    let states: Vec<(u64, u32, &str)> = attempts
        .iter()
        .map(|x| (x.trial, x.attempt, x.state.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![(0, 1, "lost"), (0, 2, "finished"), (1, 1, "finished")]
    );
    let p = b.progress().unwrap();
    assert_eq!((p.finished, p.open()), (2, 0));
}

#[test]
fn a_stale_claim_is_taken_over_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    stale_claim_is_taken_over(&Storage::Sqlite(dir.path().join("s.sqlite")));
}

#[test]
#[cfg_attr(
    not(test_postgres),
    ignore = "needs ARCHPROOF_TEST_POSTGRES (scripts/start-postgres.sh), unset when the tests were built"
)]
fn a_stale_claim_is_taken_over_on_postgres() {
    let _one = PG.lock().unwrap_or_else(|e| e.into_inner());
    let db = ScratchDb::new("stale");
    stale_claim_is_taken_over(&db.storage());
}

#[test]
#[cfg_attr(
    not(all(test_postgres, test_postgres_restart)),
    ignore = "needs ARCHPROOF_TEST_POSTGRES and ARCHPROOF_TEST_POSTGRES_RESTART (a command that restarts the server), unset when the tests were built"
)]
fn workers_reconnect_after_the_server_restarts() {
    let _one = PG.lock().unwrap_or_else(|e| e.into_inner());
    let db = ScratchDb::new("restart");
    let storage = db.storage();
    let trials = 40;
    let args = search_args(
        trials,
        &[
            "--storage",
            &db.url,
            "--study",
            "restart",
            "--evaluation-delay",
            "0.5",
            "--heartbeat",
            "0.5",
        ],
    );
    let workers: Vec<Child> = (0..2).map(|_| spawn(&args)).collect();
    wait_until(Duration::from_secs(120), "trials finish", || {
        report(&storage, "restart").is_some_and(|r| r.trials_finished >= 8)
    });
    let restart = std::env::var("ARCHPROOF_TEST_POSTGRES_RESTART").unwrap();
    let st = Command::new("sh").arg("-c").arg(&restart).status().unwrap();
    assert!(st.success(), "{restart} failed");
    for w in workers {
        let s = common::ok_json(&w.wait_with_output().unwrap());
        assert_eq!(s["trials"], trials);
    }
    let r = report(&storage, "restart").unwrap();
    assert_eq!(r.trials_finished, trials as u64);
    let (single, best) = single_run(trials);
    assert_eq!(finished(&storage, "restart"), single);
    assert_eq!(best["trial"], r.best.unwrap().number);
}

/// Eight workers on 400 fast trials: every number once, none lost.
#[test]
#[cfg_attr(
    not(test_postgres),
    ignore = "needs ARCHPROOF_TEST_POSTGRES (scripts/start-postgres.sh), unset when the tests were built"
)]
fn eight_workers_lose_and_repeat_nothing() {
    let _one = PG.lock().unwrap_or_else(|e| e.into_inner());
    let db = ScratchDb::new("load");
    let trials = 400;
    let args = search_args(trials, &["--storage", &db.url, "--study", "load"]);
    let workers: Vec<Child> = (0..8).map(|_| spawn(&args)).collect();
    for w in workers {
        common::ok_json(&w.wait_with_output().unwrap());
    }
    let r = report(&db.storage(), "load").unwrap();
    assert_eq!(r.trials_finished, trials as u64);
    assert!(r
        .attempts
        .iter()
        .all(|a| a.attempt == 1 && a.state == "finished"));
    assert_eq!(r.attempts.len(), trials);
    assert_eq!(finished(&db.storage(), "load"), single_run(trials).0);
}

#[test]
#[cfg_attr(
    not(test_postgres),
    ignore = "needs ARCHPROOF_TEST_POSTGRES (scripts/start-postgres.sh), unset when the tests were built"
)]
fn bad_stores_are_one_clear_line() {
    let _one = PG.lock().unwrap_or_else(|e| e.into_inner());
    let db = ScratchDb::new("bad");
    let list = |url: &str| archproof(&["study", "list", "--storage", url]);
    common::assert_bad_input(
        &list("postgresql://nobody:x@127.0.0.1:1/none"),
        &["cannot connect", "***"],
    );
    let (user, rest) = db.url.split_once('@').unwrap();
    let wrong = format!("{}:wrong-password@{rest}", user.rsplit_once(':').unwrap().0);
    common::assert_bad_input(&list(&wrong), &["password authentication failed"]);

    // A study that exists with another seed: refused, nothing written.
    let o = run(&search_args(8, &["--storage", &db.url, "--study", "s"]));
    common::ok_json(&o);
    let before = finished(&db.storage(), "s");
    let mut other = search_args(16, &["--storage", &db.url, "--study", "s"]);
    let seed = other.iter().position(|a| a == "--seed").unwrap();
    other[seed + 1] = "6".into();
    common::assert_bad_input(&run(&other), &["seed 5, not 6"]);
    assert_eq!(finished(&db.storage(), "s"), before);
    let header = db
        .storage()
        .open_existing("s")
        .unwrap()
        .existing_header()
        .unwrap();
    assert_eq!(header.max_trials, 8, "the header is unchanged");

    // A schema newer than this archproof's.
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.batch_execute("UPDATE archproof_schema SET version = 99")
        .unwrap();
    common::assert_bad_input(&list(&db.url), &["version 99", "newer"]);
}

#[test]
fn a_version_1_run_folder_is_migrated_and_a_newer_schema_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.sqlite");
    let header = serde_json::json!({
        "format": 1, "space": "nb201", "strategy": "random", "evaluator": "proxy:params",
        "seed": 3, "batch": 1, "max_trials": 2, "budget": null, "settings": null
    });
    {
        let c = common::write_v1_store(&path, &header.to_string());
        c.execute_batch(
            "INSERT INTO trials VALUES (0, 'a', 1.5, 2.0, '{\"x\":1.0}', NULL, 0.5);
             INSERT INTO trials VALUES (1, 'b', NULL, NULL, NULL, 'it failed', 0.25);",
        )
        .unwrap();
    }
    let storage = Storage::Sqlite(path.clone());
    let r = StudyReport::read(&storage, DEFAULT_STUDY).unwrap();
    assert_eq!((r.trials_finished, r.trials_failed, r.seed), (1, 1, 3));
    assert_eq!(r.best.as_ref().unwrap().candidate, "a");
    assert_eq!(r.trials[1].error.as_deref(), Some("it failed"));

    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    common::assert_bad_input(
        &archproof(&[
            "study",
            "show",
            "--storage",
            &format!("sqlite:{}", path.display()),
        ]),
        &["version 99", "newer"],
    );
}

/// Three workers share the nine ACAS Xu instances of verify_acas: each instance is answered
/// once, and the verdicts are those of one process.
fn instance_list_is_shared(storage: &Storage) {
    let acas = common::shared_data().join("acasxu");
    let dir = tempfile::tempdir().unwrap();
    let list = common::acas_sample();
    let list_path = dir.path().join("sample.csv");
    std::fs::write(&list_path, list.join("\n")).unwrap();
    let base: Vec<String> = [
        "verify",
        "--instances",
        list_path.to_str().unwrap(),
        "--root",
        acas.to_str().unwrap(),
        "--expected",
        acas.join("expected.csv").to_str().unwrap(),
        "--timeout",
        "60",
        "--json",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let single = common::ok_json(&run(&base));
    let mut shared = base.clone();
    shared.extend([
        "--storage".into(),
        storage_arg(storage),
        "--study".into(),
        "acas".into(),
    ]);
    let workers: Vec<Child> = (0..3).map(|_| spawn(&shared)).collect();
    let outs: Vec<serde_json::Value> = workers
        .into_iter()
        .map(|w| common::ok_json(&w.wait_with_output().unwrap()))
        .collect();
    let verdicts = |s: &serde_json::Value| -> Vec<(String, String, String)> {
        s["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["onnx"].as_str().unwrap().to_string(),
                    r["vnnlib"].as_str().unwrap().to_string(),
                    r["result"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    for o in &outs {
        assert_eq!(verdicts(o), verdicts(&single));
        assert_eq!(o["wrong"], 0);
    }
    let r = report(storage, "acas").unwrap();
    assert_eq!(r.trials_finished, 9);
    assert!(
        r.attempts.iter().all(|a| a.attempt == 1),
        "each answered once"
    );
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn an_instance_list_is_shared_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    instance_list_is_shared(&Storage::Sqlite(dir.path().join("acas.sqlite")));
}

#[test]
#[cfg_attr(
    not(all(shared_data, test_postgres)),
    ignore = "needs ../shared/data and ARCHPROOF_TEST_POSTGRES (scripts/start-postgres.sh)"
)]
fn an_instance_list_is_shared_on_postgres() {
    let _one = PG.lock().unwrap_or_else(|e| e.into_inner());
    let db = ScratchDb::new("acas");
    instance_list_is_shared(&db.storage());
}

/// A killed instance-list run keeps what it finished; run again, it does only the rest.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn a_stopped_instance_list_resumes() {
    let acas = common::shared_data().join("acasxu");
    let dir = tempfile::tempdir().unwrap();
    let list_path = dir.path().join("sample.csv");
    let list = [("1_7", "prop_3"), ("1_1", "prop_1"), ("2_1", "prop_1")]
        .iter()
        .map(|(n, p)| format!("ACASXU_run2a_{n}_batch_2000.onnx,{p}.vnnlib,116"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&list_path, list).unwrap();
    let store = dir.path().join("acas.sqlite");
    let args = [
        "verify",
        "--instances",
        list_path.to_str().unwrap(),
        "--root",
        acas.to_str().unwrap(),
        "--quiet",
        "--json",
        "--storage",
        &format!("sqlite:{}", store.display()),
    ];
    let first = common::ok_json(&archproof(&args));
    assert_eq!(first["instances"], 3);
    // Forget the last result, as if the run had been killed before it.
    let c = rusqlite::Connection::open(&store).unwrap();
    c.execute_batch(
        "UPDATE trials SET state = 'running', worker = 'elsewhere/1/0', heartbeat = 0, fitness = NULL,
             cost = NULL, metrics = NULL, payload = NULL WHERE number = 2;",
    )
    .unwrap();
    drop(c);
    let again = common::ok_json(&archproof(&args));
    let r = report(&Storage::Sqlite(store), DEFAULT_STUDY).unwrap();
    assert_eq!(r.trials[2].attempts, 2, "only the lost instance ran again");
    assert_eq!(r.trials[0].attempts, 1);
    for (a, b) in first["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["rows"].as_array().unwrap())
    {
        assert_eq!(a["result"], b["result"]);
    }
}
