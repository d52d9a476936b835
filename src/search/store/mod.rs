//! Where studies live: a [`Store`] holds studies by name, their trials with a state each
//! (waiting, running, finished), who runs what, and every attempt at a trial. Two
//! implementations share one schema and one protocol: SQLite (a file; today's run folders) and
//! PostgreSQL (a server that workers on many machines share).
//!
//! The protocol workers follow (see [`super::Study`]):
//! - a trial is *claimed* in one transaction, so no two workers run it: the lowest-numbered
//!   waiting trial, or a running one whose worker stopped beating (its attempt is recorded as
//!   lost, and the trial handed to the claimer);
//! - a process beats for the trials it is evaluating, every few seconds (only those: a claim
//!   whose reply a lost connection swallowed is not beaten, so it goes stale and returns);
//! - a result is recorded only by the worker holding the claim (a worker that lost its claim
//!   learns it when it tries to record);
//! - new trials are added as waiting rows keyed by number; adding a row that exists changes
//!   nothing, so workers proposing the same batch (they propose the same candidates) agree.
//!
//! Schemas are versioned. Opening a store migrates an older schema and refuses a newer one.

mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Evaluation, Outcome, SearchError};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// How a study was started; stored once and checked by every worker that joins it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyHeader {
    /// Version of the header layout.
    pub format: u32,
    /// The space's name (`instances` for a verification instance list).
    pub space: String,
    /// The strategy's name with its settings.
    pub strategy: String,
    /// The evaluator's description.
    pub evaluator: String,
    /// The study's seed.
    pub seed: u64,
    /// Trials proposed together from the same history.
    pub batch: usize,
    /// The most trials the study runs.
    pub max_trials: usize,
    /// The most budget cost the study spends, if bounded.
    pub budget: Option<f64>,
    /// Settings of the front end that started the study (e.g. the command line), for resuming.
    pub settings: serde_json::Value,
}

/// Current header layout version.
pub const STORE_FORMAT: u32 = 1;

/// The study name of a run folder's own store.
pub const DEFAULT_STUDY: &str = "default";

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Added, not claimed yet (or handed back after its worker was lost).
    Waiting,
    /// Claimed by a worker that is evaluating it.
    Running,
    /// Evaluated: a score, or the evaluator's error.
    Finished,
}

impl TrialState {
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Waiting => "waiting",
            TrialState::Running => "running",
            TrialState::Finished => "finished",
        }
    }

    fn parse(s: &str) -> Option<TrialState> {
        match s {
            "waiting" => Some(TrialState::Waiting),
            "running" => Some(TrialState::Running),
            "finished" => Some(TrialState::Finished),
            _ => None,
        }
    }
}

/// A trial as stored: the candidate in its text form.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrial {
    /// Trial number, from 0.
    pub id: u64,
    /// The candidate's encoding.
    pub candidate: String,
    /// Where the trial stands.
    pub state: TrialState,
    /// The outcome, once finished.
    pub outcome: Option<Outcome>,
    /// Wall-clock seconds of the finished evaluation.
    pub seconds: f64,
    /// What the evaluator recorded beside the outcome (an instance list's result row).
    pub payload: Option<serde_json::Value>,
    /// Attempts so far (1 for a trial finished at the first try).
    pub attempts: u32,
    /// The worker holding or last holding it.
    pub worker: Option<String>,
}

/// One attempt at a trial: who ran it and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub trial: u64,
    pub attempt: u32,
    pub worker: String,
    /// `running`, `finished`, or `lost` (its worker stopped beating or died).
    pub state: String,
}

/// A claim on a trial, held by one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub trial: u64,
    pub candidate: String,
    pub attempt: u32,
}

/// Counts of a study's trials by state, and the cost of the finished ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Rows added so far.
    pub added: u64,
    pub waiting: u64,
    pub running: u64,
    pub finished: u64,
    /// Finished trials whose evaluation failed.
    pub failed: u64,
    /// Sum of the finished trials' costs.
    pub cost: f64,
}

impl Progress {
    /// Trials added and not finished.
    pub fn open(&self) -> u64 {
        self.waiting + self.running
    }
}

/// A study as listed by a store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyListing {
    pub name: String,
    pub header: StudyHeader,
    pub progress: Progress,
    /// The fittest finished trial's number and fitness.
    pub best: Option<(u64, f64)>,
}

/// Which store, by URL: `sqlite:PATH`, or `postgresql://user:password@host:port/database`
/// (also `postgres://`).
#[derive(Clone, PartialEq)]
pub enum Storage {
    Sqlite(PathBuf),
    Postgres(String),
}

impl FromStr for Storage {
    type Err = SearchError;
    fn from_str(s: &str) -> Result<Self, SearchError> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(SearchError::Config(
                    "--storage sqlite:PATH needs a file path".into(),
                ));
            }
            return Ok(Storage::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgresql://") || s.starts_with("postgres://") {
            return Ok(Storage::Postgres(s.to_string()));
        }
        Err(SearchError::Config(format!(
            "--storage {s:?} is neither sqlite:PATH nor postgresql://USER:PASSWORD@HOST/DATABASE"
        )))
    }
}

impl fmt::Display for Storage {
    /// The URL without its password (for messages and reports).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Storage::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A URL with the password of its user part replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rfind('@') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl Storage {
    /// Opens a connection to study `study` of this storage (creating the schema, or migrating
    /// an older one).
    pub fn connect(&self, study: &str) -> Result<Box<dyn Store>, SearchError> {
        Ok(match self {
            Storage::Sqlite(p) => Box::new(SqliteStore::open(p, study)?),
            Storage::Postgres(url) => Box::new(PostgresStore::open(url, study)?),
        })
    }
}

impl Storage {
    /// Opens study `study`, which must exist (nothing is created otherwise).
    pub fn open_existing(&self, study: &str) -> Result<Box<dyn Store>, SearchError> {
        if let Storage::Sqlite(p) = self {
            if !p.exists() {
                return Err(SearchError::Store {
                    path: self.to_string(),
                    msg: "no study there (no such file)".into(),
                });
            }
        }
        let mut conn: Box<dyn Store> = match self {
            Storage::Sqlite(p) => Box::new(SqliteStore::open(p, study)?),
            Storage::Postgres(url) => Box::new(PostgresStore::open_existing(url, study)?),
        };
        conn.existing_header()?;
        Ok(conn)
    }
}

/// A connection to one study of a store. Every method is one transaction.
pub trait Store: Send {
    /// The storage and study, for messages.
    fn location(&self) -> String;
    /// The study's header, if the study exists.
    fn header(&mut self) -> Result<Option<StudyHeader>, SearchError>;
    /// Creates the study with `header`. When it exists: with `replace` its trials are deleted
    /// and the header replaced; without, nothing changes and `false` is returned.
    fn create(&mut self, header: &StudyHeader, replace: bool) -> Result<bool, SearchError>;
    /// Deletes the study with its trials and attempts; `false` if it did not exist.
    fn delete(&mut self) -> Result<bool, SearchError>;
    /// Replaces the trial limit recorded in the header (to extend a study).
    fn set_max_trials(&mut self, max_trials: usize) -> Result<(), SearchError>;
    /// Adds waiting trials; a number that exists is left as it is. Returns the stored
    /// candidates of those that existed (to check that they agree).
    fn add(&mut self, trials: &[(u64, String)]) -> Result<Vec<(u64, String)>, SearchError>;
    /// Claims the lowest-numbered waiting trial, or a running one whose last heartbeat is over
    /// `grace` seconds old or whose worker is in `dead`; the lost attempt is recorded.
    fn claim(
        &mut self,
        worker: &str,
        grace: f64,
        dead: &[String],
    ) -> Result<Option<Claim>, SearchError>;
    /// Beats for `trials`, which `worker` is evaluating.
    fn beat(&mut self, worker: &str, trials: &[u64]) -> Result<(), SearchError>;
    /// Records a claimed trial's result. `false` if the claim was lost to another worker
    /// (the result is then dropped).
    fn finish(
        &mut self,
        worker: &str,
        claim: &Claim,
        outcome: &Outcome,
        seconds: f64,
        payload: Option<&serde_json::Value>,
    ) -> Result<bool, SearchError>;
    /// Counts by state.
    fn progress(&mut self) -> Result<Progress, SearchError>;
    /// Trials numbered `first` and on, in order, in every state.
    fn trials_from(&mut self, first: u64) -> Result<Vec<StoredTrial>, SearchError>;
    /// Every attempt, in trial and attempt order.
    fn attempts(&mut self) -> Result<Vec<Attempt>, SearchError>;
    /// The workers that hold running trials.
    fn running_workers(&mut self) -> Result<Vec<String>, SearchError>;
    /// Every study of this store.
    fn studies(&mut self) -> Result<Vec<StudyListing>, SearchError>;
}

impl dyn Store + '_ {
    /// Every trial, in order.
    pub fn trials(&mut self) -> Result<Vec<StoredTrial>, SearchError> {
        self.trials_from(0)
    }

    /// The header, or an error saying the study does not exist.
    pub fn existing_header(&mut self) -> Result<StudyHeader, SearchError> {
        let loc = self.location();
        self.header()?.ok_or_else(|| SearchError::Store {
            path: loc,
            msg: "no such study (`archproof study list` names those there)".into(),
        })
    }
}

/// The columns an outcome is stored in: fitness, cost, metrics (JSON) and error.
type OutcomeColumns = (Option<f64>, Option<f64>, Option<String>, Option<String>);

/// A number as stored in JSON: finite ones as numbers, the others as `"inf"`, `"-inf"` or
/// `"nan"` (JSON has no such numbers, and serde_json would write them as null).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Number {
    Finite(f64),
    Other(String),
}

impl Number {
    fn of(x: f64) -> Number {
        if x.is_finite() {
            Number::Finite(x)
        } else if x.is_nan() {
            Number::Other("nan".into())
        } else if x > 0.0 {
            Number::Other("inf".into())
        } else {
            Number::Other("-inf".into())
        }
    }

    fn value(&self) -> Option<f64> {
        match self {
            Number::Finite(x) => Some(*x),
            Number::Other(s) => match s.as_str() {
                "nan" => Some(f64::NAN),
                "inf" => Some(f64::INFINITY),
                "-inf" => Some(f64::NEG_INFINITY),
                _ => None,
            },
        }
    }
}

/// The whole evaluation as stored in the `metrics` column: the fitness and cost columns beside
/// it serve queries (the best trial), this is what is read back, non-finite values included.
#[derive(Serialize, Deserialize)]
struct StoredEvaluation {
    fitness: Number,
    cost: Number,
    metrics: BTreeMap<String, Number>,
}

fn outcome_columns(o: &Outcome) -> OutcomeColumns {
    match o {
        Outcome::Done(e) => {
            let stored = StoredEvaluation {
                fitness: Number::of(e.fitness),
                cost: Number::of(e.cost),
                metrics: e
                    .metrics
                    .iter()
                    .map(|(k, v)| (k.clone(), Number::of(*v)))
                    .collect(),
            };
            let finite = |x: f64| x.is_finite().then_some(x);
            (
                // A fitness that is not a number stays out of the queries; `-inf` and `inf`
                // order as they should.
                (!e.fitness.is_nan()).then_some(e.fitness),
                finite(e.cost),
                Some(serde_json::to_string(&stored).expect("an evaluation serialises")),
                None,
            )
        }
        Outcome::Failed(msg) => (None, None, None, Some(msg.clone())),
    }
}

fn outcome_from_columns(
    loc: &str,
    number: u64,
    (fitness, cost, metrics, error): OutcomeColumns,
) -> Result<Outcome, SearchError> {
    if let Some(msg) = error {
        return Ok(Outcome::Failed(msg));
    }
    let bad = |what: String| SearchError::Store {
        path: loc.to_string(),
        msg: format!("trial {number}: {what}"),
    };
    if let Some(m) = &metrics {
        if let Ok(stored) = serde_json::from_str::<StoredEvaluation>(m) {
            let num = |n: &Number| {
                n.value()
                    .ok_or_else(|| bad("a number that is not one".into()))
            };
            let mut out = BTreeMap::new();
            for (k, v) in &stored.metrics {
                out.insert(k.clone(), num(v)?);
            }
            return Ok(Outcome::Done(Evaluation {
                fitness: num(&stored.fitness)?,
                cost: num(&stored.cost)?,
                metrics: out,
            }));
        }
    }
    // Rows of version-1 stores: the metrics alone, the fitness and cost in their columns.
    let fitness = fitness
        .ok_or_else(|| bad("a finished trial with neither a fitness nor an error".into()))?;
    let metrics: BTreeMap<String, f64> = match metrics {
        Some(m) => serde_json::from_str(&m).map_err(|e| bad(format!("bad metrics: {e}")))?,
        None => BTreeMap::new(),
    };
    Ok(Outcome::Done(Evaluation {
        fitness,
        cost: cost.unwrap_or(0.0),
        metrics,
    }))
}

fn header_json(loc: &str, h: &StudyHeader) -> Result<String, SearchError> {
    serde_json::to_string(h).map_err(|e| SearchError::Store {
        path: loc.to_string(),
        msg: e.to_string(),
    })
}

fn header_from_json(loc: &str, json: &str) -> Result<StudyHeader, SearchError> {
    let h: StudyHeader = serde_json::from_str(json).map_err(|e| SearchError::Store {
        path: loc.to_string(),
        msg: format!("unreadable study header: {e}"),
    })?;
    if h.format != STORE_FORMAT {
        return Err(SearchError::Store {
            path: loc.to_string(),
            msg: format!(
                "study header format {} is not the supported {STORE_FORMAT}; use the archproof that wrote it",
                h.format
            ),
        });
    }
    Ok(h)
}

/// Checks a study name: 1 to 100 characters of letters, digits, `-`, `_` and `.`.
pub fn check_study_name(name: &str) -> Result<(), SearchError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SearchError::Config(format!(
            "study name {name:?}: use 1 to 100 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// A worker's identity: `host/pid/nonce`, where the host part is the host name and the process's
/// PID namespace (containers that share a host name do not share it). The host and pid let a
/// worker in the same namespace see at once that another worker's process has died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// This process's identity (the nonce tells apart processes that reuse a pid).
    pub fn this_process() -> WorkerId {
        let nonce: u32 = rand::random();
        WorkerId(format!("{}/{}/{nonce:08x}", hostname(), std::process::id()))
    }

    /// Whether `other` ran on this host in a process that no longer exists.
    pub fn is_dead_neighbour(&self, other: &str) -> bool {
        let mine = self.0.split('/').next().unwrap_or("");
        let mut parts = other.split('/');
        let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
            return false;
        };
        if host != mine || other == self.0 {
            return false;
        }
        match pid.parse::<u32>() {
            Ok(pid) => !process_alive(pid),
            Err(_) => false,
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).replace(['/', '@'], "_");
    // "pid:[4026531836]": the namespace the pids are numbers of.
    match std::fs::read_link("/proc/self/ns/pid") {
        Ok(ns) => {
            let digits: String = ns
                .to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            format!("{name}@{digits}")
        }
        Err(_) => name,
    }
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_parse_and_hide_passwords() {
        assert_eq!(
            "sqlite:runs/a.sqlite".parse::<Storage>().unwrap(),
            Storage::Sqlite("runs/a.sqlite".into())
        );
        let pg: Storage = "postgresql://ann:secret@db:5432/archproof".parse().unwrap();
        assert_eq!(pg.to_string(), "postgresql://ann:***@db:5432/archproof");
        assert!("mysql://x".parse::<Storage>().is_err());
        assert!("sqlite:".parse::<Storage>().is_err());
    }

    #[test]
    fn non_finite_values_survive_the_store() {
        let e = Evaluation {
            fitness: f64::NEG_INFINITY,
            cost: 2.5,
            metrics: [("nan".to_string(), f64::NAN), ("x".to_string(), 1.25)]
                .into_iter()
                .collect(),
        };
        let cols = outcome_columns(&Outcome::Done(e));
        let Outcome::Done(back) = outcome_from_columns("test", 0, cols).unwrap() else {
            panic!("a finished trial reads back as finished");
        };
        assert_eq!(back.fitness, f64::NEG_INFINITY);
        assert_eq!(back.cost, 2.5);
        assert!(back.metrics["nan"].is_nan());
        assert_eq!(back.metrics["x"], 1.25);
        // Version-1 rows: the metrics alone, the fitness in its column.
        let old = (Some(3.0), Some(1.0), Some("{\"a\":2.0}".to_string()), None);
        let Outcome::Done(v1) = outcome_from_columns("test", 1, old).unwrap() else {
            panic!("a version-1 row reads back as finished");
        };
        assert_eq!((v1.fitness, v1.cost, v1.metrics["a"]), (3.0, 1.0, 2.0));
    }

    #[test]
    fn study_names_are_checked() {
        assert!(check_study_name("nasnet-shapes.1").is_ok());
        assert!(check_study_name("").is_err());
        assert!(check_study_name("a b").is_err());
        assert!(check_study_name("x';--").is_err());
    }

    #[test]
    fn dead_neighbours_are_seen() {
        let me = WorkerId::this_process();
        let host = me.0.split('/').next().unwrap().to_string();
        assert!(!me.is_dead_neighbour(&me.0));
        // Pid 1 is alive on any Linux machine; a pid past the kernel's limit never is.
        assert!(!me.is_dead_neighbour(&format!("{host}/1/0")));
        assert!(me.is_dead_neighbour(&format!("{host}/99999999/0")));
        assert!(!me.is_dead_neighbour("elsewhere/99999999/0"));
    }
}
