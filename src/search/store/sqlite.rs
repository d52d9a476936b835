//! The SQLite store: one file holding studies, shared by the processes of one machine (SQLite's
//! file locks serialise the writers; `BEGIN IMMEDIATE` takes the write lock before a claim
//! reads, so two claims never see the same waiting trial). Heartbeats are this machine's clock.
//!
//! Schema versions (`PRAGMA user_version`): 1 (stored as 0) is the run folders' first layout,
//! one study and finished trials only; 2 adds studies by name, trial states, workers,
//! heartbeats and attempts. Version 1 files are migrated on open; their study is named
//! [`DEFAULT_STUDY`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    header_from_json, header_json, outcome_columns, outcome_from_columns, Attempt, Claim, Progress,
    SearchError, Store, StoredTrial, StudyHeader, StudyListing, TrialState, DEFAULT_STUDY,
};
use crate::search::Outcome;

/// The schema this code writes.
pub const SQLITE_SCHEMA: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE studies (name TEXT PRIMARY KEY, header TEXT NOT NULL);
CREATE TABLE trials (
    study TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    candidate TEXT NOT NULL,
    state TEXT NOT NULL,
    fitness REAL,
    cost REAL,
    metrics TEXT,
    error TEXT,
    payload TEXT,
    seconds REAL,
    worker TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (study, number)
);
CREATE INDEX trials_state ON trials (study, state, number);
CREATE TABLE attempts (
    study TEXT NOT NULL,
    number INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (study, number, attempt)
);
";

/// A connection to one study of a SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    study: String,
}

/// `SearchError::Store` at `loc`, for `map_err`.
fn fail(loc: &str) -> impl Fn(rusqlite::Error) -> SearchError + Copy + '_ {
    move |e| SearchError::Store {
        path: loc.to_string(),
        msg: e.to_string(),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl SqliteStore {
    fn err(&self, e: impl std::fmt::Display) -> SearchError {
        SearchError::Store {
            path: self.location(),
            msg: e.to_string(),
        }
    }

    /// Opens (creating the file and schema where missing, migrating version 1) study `study`
    /// of the file at `path`.
    pub fn open(path: &Path, study: &str) -> Result<SqliteStore, SearchError> {
        let fail = |e: &dyn std::fmt::Display| SearchError::Store {
            path: format!("sqlite:{}", path.display()),
            msg: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(&e))?;
        conn.busy_timeout(Duration::from_secs(120))
            .map_err(|e| fail(&e))?;
        // A file with other tables is refused before anything (the journal mode) changes.
        let foreign: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'
                 AND name NOT IN ('meta', 'trials', 'studies', 'attempts')
                 AND name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| fail(&format!("not a SQLite study store ({e})")))?;
        if foreign > 0 {
            return Err(fail(&"not a study store (a SQLite file with other tables)"));
        }
        // WAL with synchronous=NORMAL: a commit survives the process being killed (not a power
        // cut), at a fraction of the cost of a full sync per trial.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| fail(&e))?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            study: study.to_string(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn write(&mut self) -> Result<Transaction<'_>, SearchError> {
        let loc = self.location();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail(&loc))
    }

    /// Brings the schema to [`SQLITE_SCHEMA`], or refuses a newer one.
    fn migrate(&mut self) -> Result<(), SearchError> {
        let loc = self.location();
        let tx = self.write()?;
        let e = fail(&loc);
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(e)?;
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(e)?;
        if version > SQLITE_SCHEMA {
            return Err(SearchError::Store {
                path: loc,
                msg: format!(
                    "its schema is version {version}, newer than this archproof's {SQLITE_SCHEMA}; use a newer archproof"
                ),
            });
        }
        if version == SQLITE_SCHEMA {
            return Ok(());
        }
        if tables == 0 {
            tx.execute_batch(SCHEMA).map_err(e)?;
        } else {
            let has_meta: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                    [],
                    |r| r.get(0),
                )
                .map_err(e)?;
            if has_meta == 0 {
                return Err(SearchError::Store {
                    path: loc,
                    msg: "not a study store (a SQLite file with other tables)".into(),
                });
            }
            // Version 1: `meta` (the header) and `trials` (finished trials by id).
            tx.execute_batch("ALTER TABLE trials RENAME TO trials_v1;")
                .map_err(e)?;
            tx.execute_batch(SCHEMA).map_err(e)?;
            tx.execute(
                "INSERT INTO studies (name, header)
                 SELECT ?1, value FROM meta WHERE key = 'header'",
                params![DEFAULT_STUDY],
            )
            .map_err(e)?;
            tx.execute(
                "INSERT INTO trials (study, number, candidate, state, fitness, cost, metrics,
                                     error, seconds, worker, attempts)
                 SELECT ?1, id, candidate, 'finished', fitness, cost, metrics, error, seconds,
                        'migrated', 1
                 FROM trials_v1",
                params![DEFAULT_STUDY],
            )
            .map_err(e)?;
            tx.execute(
                "INSERT INTO attempts (study, number, attempt, worker, state)
                 SELECT ?1, id, 1, 'migrated', 'finished' FROM trials_v1",
                params![DEFAULT_STUDY],
            )
            .map_err(e)?;
            tx.execute_batch("DROP TABLE trials_v1; DROP TABLE meta;")
                .map_err(e)?;
        }
        tx.pragma_update(None, "user_version", SQLITE_SCHEMA)
            .map_err(e)?;
        tx.commit().map_err(e)
    }

    fn progress_of(conn: &Connection, study: &str) -> rusqlite::Result<Progress> {
        conn.query_row(
            "SELECT count(*),
                    coalesce(sum(state = 'waiting'), 0),
                    coalesce(sum(state = 'running'), 0),
                    coalesce(sum(state = 'finished'), 0),
                    coalesce(sum(state = 'finished' AND error IS NOT NULL), 0),
                    coalesce(sum(CASE WHEN state = 'finished' AND error IS NULL THEN cost END), 0.0)
             FROM trials WHERE study = ?1",
            params![study],
            |r| {
                Ok(Progress {
                    added: r.get::<_, i64>(0)? as u64,
                    waiting: r.get::<_, i64>(1)? as u64,
                    running: r.get::<_, i64>(2)? as u64,
                    finished: r.get::<_, i64>(3)? as u64,
                    failed: r.get::<_, i64>(4)? as u64,
                    cost: r.get(5)?,
                })
            },
        )
    }
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        format!("sqlite:{} (study {})", self.path.display(), self.study)
    }

    fn header(&mut self) -> Result<Option<StudyHeader>, SearchError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT header FROM studies WHERE name = ?1",
                params![self.study],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| header_from_json(&self.location(), &j))
            .transpose()
    }

    fn create(&mut self, header: &StudyHeader, replace: bool) -> Result<bool, SearchError> {
        let loc = self.location();
        let json = header_json(&loc, header)?;
        let study = self.study.clone();
        let tx = self.write()?;
        let e = fail(&loc);
        let exists: bool = tx
            .query_row(
                "SELECT count(*) FROM studies WHERE name = ?1",
                params![study],
                |r| r.get::<_, i64>(0),
            )
            .map_err(e)?
            > 0;
        if exists && !replace {
            return Ok(false);
        }
        tx.execute("DELETE FROM attempts WHERE study = ?1", params![study])
            .map_err(e)?;
        tx.execute("DELETE FROM trials WHERE study = ?1", params![study])
            .map_err(e)?;
        tx.execute("DELETE FROM studies WHERE name = ?1", params![study])
            .map_err(e)?;
        tx.execute(
            "INSERT INTO studies (name, header) VALUES (?1, ?2)",
            params![study, json],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(true)
    }

    fn delete(&mut self) -> Result<bool, SearchError> {
        let loc = self.location();
        let study = self.study.clone();
        let tx = self.write()?;
        let e = fail(&loc);
        tx.execute("DELETE FROM attempts WHERE study = ?1", params![study])
            .map_err(e)?;
        tx.execute("DELETE FROM trials WHERE study = ?1", params![study])
            .map_err(e)?;
        let n = tx
            .execute("DELETE FROM studies WHERE name = ?1", params![study])
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(n == 1)
    }

    fn set_max_trials(&mut self, max_trials: usize) -> Result<(), SearchError> {
        let Some(mut h) = self.header()? else {
            return Ok(());
        };
        h.max_trials = max_trials;
        let json = header_json(&self.location(), &h)?;
        self.conn
            .execute(
                "UPDATE studies SET header = ?1 WHERE name = ?2",
                params![json, self.study],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn add(&mut self, trials: &[(u64, String)]) -> Result<Vec<(u64, String)>, SearchError> {
        let loc = self.location();
        let study = self.study.clone();
        let tx = self.write()?;
        let e = fail(&loc);
        let mut existing = Vec::new();
        for (number, candidate) in trials {
            let n = tx
                .execute(
                    "INSERT INTO trials (study, number, candidate, state) VALUES (?1, ?2, ?3, 'waiting')
                     ON CONFLICT (study, number) DO NOTHING",
                    params![study, *number as i64, candidate],
                )
                .map_err(e)?;
            if n == 0 {
                let stored: String = tx
                    .query_row(
                        "SELECT candidate FROM trials WHERE study = ?1 AND number = ?2",
                        params![study, *number as i64],
                        |r| r.get(0),
                    )
                    .map_err(e)?;
                existing.push((*number, stored));
            }
        }
        tx.commit().map_err(e)?;
        Ok(existing)
    }

    fn claim(
        &mut self,
        worker: &str,
        grace: f64,
        dead: &[String],
    ) -> Result<Option<Claim>, SearchError> {
        let loc = self.location();
        let study = self.study.clone();
        let tx = self.write()?;
        let e = fail(&loc);
        let t = now();
        let mut found: Option<(i64, String, i64, String)> = tx
            .query_row(
                "SELECT number, candidate, attempts, state FROM trials
                 WHERE study = ?1 AND (state = 'waiting' OR (state = 'running' AND heartbeat < ?2))
                 ORDER BY number LIMIT 1",
                params![study, t - grace],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(e)?;
        if found.is_none() {
            for w in dead {
                let row = tx
                    .query_row(
                        "SELECT number, candidate, attempts, state FROM trials
                         WHERE study = ?1 AND state = 'running' AND worker = ?2
                         ORDER BY number LIMIT 1",
                        params![study, w],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()
                    .map_err(e)?;
                if row.is_some() {
                    found = row;
                    break;
                }
            }
        }
        let Some((number, candidate, attempts, state)) = found else {
            return Ok(None);
        };
        if state == "running" {
            tx.execute(
                "UPDATE attempts SET state = 'lost' WHERE study = ?1 AND number = ?2 AND attempt = ?3",
                params![study, number, attempts],
            )
            .map_err(e)?;
        }
        let attempt = attempts + 1;
        tx.execute(
            "UPDATE trials SET state = 'running', worker = ?3, heartbeat = ?4, attempts = ?5
             WHERE study = ?1 AND number = ?2",
            params![study, number, worker, t, attempt],
        )
        .map_err(e)?;
        tx.execute(
            "INSERT INTO attempts (study, number, attempt, worker, state)
             VALUES (?1, ?2, ?3, ?4, 'running')",
            params![study, number, attempt, worker],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Some(Claim {
            trial: number as u64,
            candidate,
            attempt: attempt as u32,
        }))
    }

    fn beat(&mut self, worker: &str, trials: &[u64]) -> Result<(), SearchError> {
        let loc = self.location();
        let study = self.study.clone();
        let tx = self.write()?;
        let e = fail(&loc);
        let t = now();
        for &n in trials {
            tx.execute(
                "UPDATE trials SET heartbeat = ?4
                 WHERE study = ?1 AND number = ?2 AND worker = ?3 AND state = 'running'",
                params![study, n as i64, worker, t],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    fn finish(
        &mut self,
        worker: &str,
        claim: &Claim,
        outcome: &Outcome,
        seconds: f64,
        payload: Option<&serde_json::Value>,
    ) -> Result<bool, SearchError> {
        let loc = self.location();
        let study = self.study.clone();
        let (fitness, cost, metrics, error) = outcome_columns(outcome);
        let payload = payload.map(|p| p.to_string());
        let tx = self.write()?;
        let e = fail(&loc);
        let n = tx
            .execute(
                "UPDATE trials SET state = 'finished', fitness = ?5, cost = ?6, metrics = ?7,
                        error = ?8, payload = ?9, seconds = ?10, heartbeat = NULL
                 WHERE study = ?1 AND number = ?2 AND worker = ?3 AND attempts = ?4
                       AND state = 'running'",
                params![
                    study,
                    claim.trial as i64,
                    worker,
                    claim.attempt as i64,
                    fitness,
                    cost,
                    metrics,
                    error,
                    payload,
                    seconds
                ],
            )
            .map_err(e)?;
        if n == 1 {
            tx.execute(
                "UPDATE attempts SET state = 'finished' WHERE study = ?1 AND number = ?2 AND attempt = ?3",
                params![study, claim.trial as i64, claim.attempt as i64],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(n == 1)
    }

    fn progress(&mut self) -> Result<Progress, SearchError> {
        Self::progress_of(&self.conn, &self.study).map_err(|e| self.err(e))
    }

    fn trials_from(&mut self, first: u64) -> Result<Vec<StoredTrial>, SearchError> {
        let loc = self.location();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT number, candidate, state, fitness, cost, metrics, error, payload,
                        seconds, attempts, worker
                 FROM trials WHERE study = ?1 AND number >= ?2 ORDER BY number",
            )
            .map_err(fail(&loc))?;
        let rows = stmt
            .query_map(params![self.study, first as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    (
                        r.get::<_, Option<f64>>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ),
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<f64>>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .map_err(fail(&loc))?;
        let mut out = Vec::new();
        for row in rows {
            let (number, candidate, state, cols, payload, seconds, attempts, worker) =
                row.map_err(fail(&loc))?;
            out.push(stored_trial(
                &loc, number, candidate, &state, cols, payload, seconds, attempts, worker,
            )?);
        }
        Ok(out)
    }

    fn attempts(&mut self) -> Result<Vec<Attempt>, SearchError> {
        let loc = self.location();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT number, attempt, worker, state FROM attempts WHERE study = ?1
                 ORDER BY number, attempt",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.study], |r| {
                Ok(Attempt {
                    trial: r.get::<_, i64>(0)? as u64,
                    attempt: r.get::<_, i64>(1)? as u32,
                    worker: r.get(2)?,
                    state: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(fail(&loc))?;
        Ok(rows)
    }

    fn running_workers(&mut self) -> Result<Vec<String>, SearchError> {
        let loc = self.location();
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT worker FROM trials WHERE study = ?1 AND state = 'running'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.study], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(fail(&loc))?;
        Ok(rows)
    }

    fn studies(&mut self) -> Result<Vec<StudyListing>, SearchError> {
        let loc = self.location();
        let e = fail(&loc);
        let mut stmt = self
            .conn
            .prepare("SELECT name, header FROM studies ORDER BY name")
            .map_err(e)?;
        let heads: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(e)?;
        let mut out = Vec::new();
        for (name, json) in heads {
            let header = header_from_json(&loc, &json)?;
            let progress = Self::progress_of(&self.conn, &name).map_err(e)?;
            let best: Option<(i64, f64)> = self
                .conn
                .query_row(
                    "SELECT number, fitness FROM trials
                     WHERE study = ?1 AND state = 'finished' AND error IS NULL
                           AND fitness IS NOT NULL
                     ORDER BY fitness DESC, number LIMIT 1",
                    params![name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(e)?;
            out.push(StudyListing {
                name,
                header,
                progress,
                best: best.map(|(n, f)| (n as u64, f)),
            });
        }
        Ok(out)
    }
}

/// A row read back into a [`StoredTrial`] (shared with the PostgreSQL store).
#[allow(clippy::too_many_arguments)]
pub(super) fn stored_trial(
    loc: &str,
    number: i64,
    candidate: String,
    state: &str,
    cols: super::OutcomeColumns,
    payload: Option<String>,
    seconds: Option<f64>,
    attempts: i64,
    worker: Option<String>,
) -> Result<StoredTrial, SearchError> {
    let state = TrialState::parse(state).ok_or_else(|| SearchError::Store {
        path: loc.to_string(),
        msg: format!("trial {number} has an unknown state {state:?}"),
    })?;
    let outcome = match state {
        TrialState::Finished => Some(outcome_from_columns(loc, number as u64, cols)?),
        _ => None,
    };
    let payload = payload
        .map(|p| {
            serde_json::from_str(&p).map_err(|e| SearchError::Store {
                path: loc.to_string(),
                msg: format!("trial {number}: bad payload: {e}"),
            })
        })
        .transpose()?;
    Ok(StoredTrial {
        id: number as u64,
        candidate,
        state,
        outcome,
        seconds: seconds.unwrap_or(0.0),
        payload,
        attempts: attempts as u32,
        worker,
    })
}
