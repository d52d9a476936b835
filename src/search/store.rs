//! The study store: one SQLite file per study. The header says how the study was started;
//! each finished trial is one row, committed as soon as the trial finishes, so a killed process
//! loses no finished trial and a resumed one repeats none (the primary key forbids it).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{Evaluation, Outcome, SearchError};

/// How a study was started; stored once and checked on resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyHeader {
    /// Version of the store layout.
    pub format: u32,
    /// The space's name.
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

/// Current store layout version.
pub const STORE_FORMAT: u32 = 1;

/// A trial as stored: the candidate in its text form.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrial {
    /// Trial number.
    pub id: u64,
    /// The candidate's encoding.
    pub candidate: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// An open study store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    fn err(path: &Path, e: impl std::fmt::Display) -> SearchError {
        SearchError::Store {
            path: path.display().to_string(),
            msg: e.to_string(),
        }
    }

    fn connect(path: &Path) -> Result<Connection, SearchError> {
        let conn = Connection::open(path).map_err(|e| Self::err(path, e))?;
        // WAL with synchronous=NORMAL: a commit survives the process being killed (not a power
        // cut), at a fraction of the cost of a full sync per trial.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .map_err(|e| Self::err(path, e))?;
        Ok(conn)
    }

    /// Creates a new store at `path`; fails if one exists unless `force` is set, in which case
    /// the old one is removed.
    pub fn create(path: &Path, header: &StudyHeader, force: bool) -> Result<Store, SearchError> {
        if path.exists() {
            if !force {
                return Err(Self::err(
                    path,
                    "a study already exists there; pass --resume to continue it or --force to start over",
                ));
            }
            for suffix in ["", "-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", path.display()));
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|e| Self::err(path, e))?;
                }
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Self::err(path, e))?;
        }
        let conn = Self::connect(path)?;
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE trials (
                 id INTEGER PRIMARY KEY,
                 candidate TEXT NOT NULL,
                 fitness REAL,
                 cost REAL,
                 metrics TEXT,
                 error TEXT,
                 seconds REAL NOT NULL
             );",
        )
        .map_err(|e| Self::err(path, e))?;
        let json = serde_json::to_string(header).map_err(|e| Self::err(path, e))?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('header', ?1)",
            params![json],
        )
        .map_err(|e| Self::err(path, e))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<Store, SearchError> {
        if !path.exists() {
            return Err(Self::err(path, "no study there to resume"));
        }
        let conn = Self::connect(path)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.header()?;
        Ok(store)
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header the study was created with.
    pub fn header(&self) -> Result<StudyHeader, SearchError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'header'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| Self::err(&self.path, format!("not a study store ({e})")))?;
        let json = json.ok_or_else(|| Self::err(&self.path, "not a study store (no header)"))?;
        let header: StudyHeader = serde_json::from_str(&json)
            .map_err(|e| Self::err(&self.path, format!("unreadable header: {e}")))?;
        if header.format != STORE_FORMAT {
            return Err(Self::err(
                &self.path,
                format!(
                    "store format {} is not the supported {STORE_FORMAT}",
                    header.format
                ),
            ));
        }
        Ok(header)
    }

    /// Raises the trial limit recorded in the header (to extend a finished study).
    pub fn set_max_trials(&self, max_trials: usize) -> Result<(), SearchError> {
        let mut h = self.header()?;
        h.max_trials = max_trials;
        let json = serde_json::to_string(&h).map_err(|e| Self::err(&self.path, e))?;
        self.conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'header'",
                params![json],
            )
            .map_err(|e| Self::err(&self.path, e))?;
        Ok(())
    }

    /// Records a finished trial (one transaction).
    pub fn insert(&self, t: &StoredTrial) -> Result<(), SearchError> {
        let (fitness, cost, metrics, error) = match &t.outcome {
            Outcome::Done(e) => (
                Some(e.fitness),
                Some(e.cost),
                Some(serde_json::to_string(&e.metrics).map_err(|e| Self::err(&self.path, e))?),
                None,
            ),
            Outcome::Failed(msg) => (None, None, None, Some(msg.clone())),
        };
        self.conn
            .execute(
                "INSERT INTO trials (id, candidate, fitness, cost, metrics, error, seconds)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.id as i64,
                    t.candidate,
                    fitness,
                    cost,
                    metrics,
                    error,
                    t.seconds
                ],
            )
            .map_err(|e| Self::err(&self.path, format!("trial {}: {e}", t.id)))?;
        Ok(())
    }

    /// All stored trials in trial order.
    pub fn trials(&self) -> Result<Vec<StoredTrial>, SearchError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, candidate, fitness, cost, metrics, error, seconds
                 FROM trials ORDER BY id",
            )
            .map_err(|e| Self::err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, f64>(6)?,
                ))
            })
            .map_err(|e| Self::err(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, candidate, fitness, cost, metrics, error, seconds) =
                row.map_err(|e| Self::err(&self.path, e))?;
            let outcome = match (fitness, error) {
                (Some(fitness), None) => {
                    let metrics = match metrics {
                        Some(m) => serde_json::from_str(&m).map_err(|e| {
                            Self::err(&self.path, format!("trial {id}: bad metrics: {e}"))
                        })?,
                        None => Default::default(),
                    };
                    Outcome::Done(Evaluation {
                        fitness,
                        cost: cost.unwrap_or(0.0),
                        metrics,
                    })
                }
                (_, Some(msg)) => Outcome::Failed(msg),
                (None, None) => {
                    return Err(Self::err(
                        &self.path,
                        format!("trial {id} has neither a fitness nor an error"),
                    ))
                }
            };
            out.push(StoredTrial {
                id: id as u64,
                candidate,
                outcome,
                seconds,
            });
        }
        Ok(out)
    }
}
