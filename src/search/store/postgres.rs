//! The PostgreSQL store: many worker processes, on many machines, share one database. Claims
//! take row locks (`SELECT ... FOR UPDATE SKIP LOCKED`), so concurrent claimers skip each
//! other's rows instead of waiting; heartbeats and their ages are the server's clock, so the
//! workers' clocks need not agree.
//!
//! A lost connection (the server restarted, the network dropped) is retried: every operation
//! is one transaction, so one that failed left nothing, and it runs again on a new connection
//! for up to [`RECONNECT_SECONDS`]. Only the first connection fails at once (a wrong URL,
//! password or database is an error, not something to wait for).
//!
//! Tables are prefixed `archproof_` so a database can hold other things. Schema versions are in
//! `archproof_schema`; opening creates the schema where missing (under an advisory lock, so
//! workers starting together do not race) and refuses a newer one.

use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use super::{
    header_from_json, header_json, outcome_columns, redact, sqlite::stored_trial, Attempt, Claim,
    Progress, SearchError, Store, StoredTrial, StudyHeader, StudyListing,
};
use crate::search::Outcome;

/// The schema this code writes.
pub const POSTGRES_SCHEMA: i32 = 1;
/// How long an operation keeps trying to reconnect before it fails.
pub const RECONNECT_SECONDS: u64 = 180;
/// The advisory lock key under which the schema is created or migrated ("arch").
const SCHEMA_LOCK: i64 = 0x6172_6368;

const SCHEMA: &str = "
CREATE TABLE archproof_schema (version INTEGER NOT NULL);
CREATE TABLE archproof_studies (
    name TEXT PRIMARY KEY,
    header TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE archproof_trials (
    study TEXT NOT NULL REFERENCES archproof_studies(name) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    candidate TEXT NOT NULL,
    state TEXT NOT NULL,
    fitness DOUBLE PRECISION,
    cost DOUBLE PRECISION,
    metrics TEXT,
    error TEXT,
    payload TEXT,
    seconds DOUBLE PRECISION,
    worker TEXT,
    heartbeat TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (study, number)
);
CREATE INDEX archproof_trials_state ON archproof_trials (study, state, number);
CREATE TABLE archproof_attempts (
    study TEXT NOT NULL REFERENCES archproof_studies(name) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    state TEXT NOT NULL,
    started TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (study, number, attempt)
);
";

/// A connection to one study of a PostgreSQL database.
pub struct PostgresStore {
    url: String,
    study: String,
    client: Option<Client>,
}

/// Whether an error means the connection is gone or the transaction may simply be retried.
fn transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08")
            || c.starts_with("57P")
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED;
    }
    // No server error: an I/O failure on the socket.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The server's words for an error (its message, not the driver's wrapping).
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

fn connect(url: &str) -> Result<Client, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // A connection whose peer vanished without a reset is noticed in about a minute.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    config.connect(NoTls)
}

impl PostgresStore {
    /// Connects to study `study` at `url`, creating the schema where missing. Fails at once
    /// if the server cannot be reached or refuses the login.
    pub fn open(url: &str, study: &str) -> Result<PostgresStore, SearchError> {
        let mut store = Self::connect_only(url, study)?;
        store.migrate(true)?;
        Ok(store)
    }

    /// Connects to study `study` at `url` to read it: a database without archproof's schema
    /// is an error, and nothing is created.
    pub fn open_existing(url: &str, study: &str) -> Result<PostgresStore, SearchError> {
        let mut store = Self::connect_only(url, study)?;
        store.migrate(false)?;
        Ok(store)
    }

    fn connect_only(url: &str, study: &str) -> Result<PostgresStore, SearchError> {
        let client = connect(url).map_err(|e| SearchError::Store {
            path: redact(url),
            msg: format!("cannot connect: {}", describe(&e)),
        })?;
        Ok(PostgresStore {
            url: url.to_string(),
            study: study.to_string(),
            client: Some(client),
        })
    }

    fn err(&self, msg: impl std::fmt::Display) -> SearchError {
        SearchError::Store {
            path: self.location(),
            msg: msg.to_string(),
        }
    }

    /// Runs `op` (one transaction) on a live connection, reconnecting and running it again
    /// after a transient failure, for up to [`RECONNECT_SECONDS`].
    fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut Client, &str) -> Result<T, postgres::Error>,
    ) -> Result<T, SearchError> {
        let deadline = Instant::now() + Duration::from_secs(RECONNECT_SECONDS);
        let mut wait = Duration::from_millis(200);
        loop {
            let failure = match &mut self.client {
                Some(client) => match op(client, &self.study) {
                    Ok(v) => return Ok(v),
                    Err(e) => e,
                },
                None => match connect(&self.url) {
                    Ok(c) => {
                        self.client = Some(c);
                        continue;
                    }
                    Err(e) => e,
                },
            };
            if !transient(&failure) || Instant::now() >= deadline {
                return Err(self.err(describe(&failure)));
            }
            self.client = None;
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    fn migrate(&mut self, create: bool) -> Result<(), SearchError> {
        let version = self.run(|c, _| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            let exists: bool = tx
                .query_one("SELECT to_regclass('archproof_schema') IS NOT NULL", &[])?
                .get(0);
            if !exists && !create {
                return Ok(None);
            }
            if !exists {
                tx.batch_execute(SCHEMA)?;
                tx.execute(
                    "INSERT INTO archproof_schema (version) VALUES ($1)",
                    &[&POSTGRES_SCHEMA],
                )?;
                tx.commit()?;
                return Ok(Some(POSTGRES_SCHEMA));
            }
            let v: Option<i32> = tx
                .query_opt("SELECT max(version) FROM archproof_schema", &[])?
                .and_then(|r| r.get(0));
            tx.commit()?;
            Ok(Some(v.unwrap_or(0)))
        })?;
        let Some(version) = version else {
            return Err(self.err("no archproof studies in this database"));
        };
        if version > POSTGRES_SCHEMA {
            return Err(self.err(format!(
                "its schema is version {version}, newer than this archproof's {POSTGRES_SCHEMA}; use a newer archproof"
            )));
        }
        if version < POSTGRES_SCHEMA {
            return Err(self.err(format!(
                "its schema is version {version}, which no archproof wrote; remove the archproof_ tables or use another database"
            )));
        }
        Ok(())
    }

    fn progress_of(c: &mut Client, study: &str) -> Result<Progress, postgres::Error> {
        let r = c.query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE state = 'waiting'),
                    count(*) FILTER (WHERE state = 'running'),
                    count(*) FILTER (WHERE state = 'finished'),
                    count(*) FILTER (WHERE state = 'finished' AND error IS NOT NULL),
                    coalesce(sum(cost) FILTER (WHERE state = 'finished' AND error IS NULL), 0)
             FROM archproof_trials WHERE study = $1",
            &[&study],
        )?;
        Ok(Progress {
            added: r.get::<_, i64>(0) as u64,
            waiting: r.get::<_, i64>(1) as u64,
            running: r.get::<_, i64>(2) as u64,
            finished: r.get::<_, i64>(3) as u64,
            failed: r.get::<_, i64>(4) as u64,
            cost: r.get(5),
        })
    }
}

impl Store for PostgresStore {
    fn location(&self) -> String {
        format!("{} (study {})", redact(&self.url), self.study)
    }

    fn header(&mut self) -> Result<Option<StudyHeader>, SearchError> {
        let json: Option<String> = self.run(|c, study| {
            Ok(c.query_opt(
                "SELECT header FROM archproof_studies WHERE name = $1",
                &[&study],
            )?
            .map(|r| r.get(0)))
        })?;
        json.map(|j| header_from_json(&self.location(), &j))
            .transpose()
    }

    fn create(&mut self, header: &StudyHeader, replace: bool) -> Result<bool, SearchError> {
        let json = header_json(&self.location(), header)?;
        self.run(|c, study| {
            let mut tx = c.transaction()?;
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM archproof_studies WHERE name = $1 FOR UPDATE",
                    &[&study],
                )?
                .is_some();
            if exists && !replace {
                return Ok(false);
            }
            if exists {
                tx.execute("DELETE FROM archproof_studies WHERE name = $1", &[&study])?;
            }
            // Two workers creating the same study at once: the second one's insert waits on
            // the first one's key, then does nothing.
            let n = tx.execute(
                "INSERT INTO archproof_studies (name, header) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&study, &json],
            )?;
            tx.commit()?;
            Ok(n == 1)
        })
    }

    fn delete(&mut self) -> Result<bool, SearchError> {
        // Trials and attempts go with the study (ON DELETE CASCADE).
        self.run(|c, study| {
            Ok(c.execute("DELETE FROM archproof_studies WHERE name = $1", &[&study])? == 1)
        })
    }

    fn set_max_trials(&mut self, max_trials: usize) -> Result<(), SearchError> {
        let Some(mut h) = self.header()? else {
            return Ok(());
        };
        h.max_trials = max_trials;
        let json = header_json(&self.location(), &h)?;
        self.run(|c, study| {
            c.execute(
                "UPDATE archproof_studies SET header = $2 WHERE name = $1",
                &[&study, &json],
            )
        })?;
        Ok(())
    }

    fn add(&mut self, trials: &[(u64, String)]) -> Result<Vec<(u64, String)>, SearchError> {
        self.run(|c, study| {
            let mut tx = c.transaction()?;
            let insert = tx.prepare(
                "INSERT INTO archproof_trials (study, number, candidate, state)
                 VALUES ($1, $2, $3, 'waiting') ON CONFLICT (study, number) DO NOTHING",
            )?;
            let mut existing = Vec::new();
            for (number, candidate) in trials {
                let n = tx.execute(&insert, &[&study, &(*number as i64), candidate])?;
                if n == 0 {
                    let stored: String = tx
                        .query_one(
                            "SELECT candidate FROM archproof_trials WHERE study = $1 AND number = $2",
                            &[&study, &(*number as i64)],
                        )?
                        .get(0);
                    existing.push((*number, stored));
                }
            }
            tx.commit()?;
            Ok(existing)
        })
    }

    fn claim(
        &mut self,
        worker: &str,
        grace: f64,
        dead: &[String],
    ) -> Result<Option<Claim>, SearchError> {
        let dead = dead.to_vec();
        self.run(|c, study| {
            let mut tx = c.transaction()?;
            let row = tx.query_opt(
                "SELECT number, candidate, attempts, state FROM archproof_trials
                 WHERE study = $1
                   AND (state = 'waiting'
                        OR (state = 'running'
                            AND (heartbeat < now() - make_interval(secs => $2)
                                 OR worker = ANY($3))))
                 ORDER BY number LIMIT 1
                 FOR UPDATE SKIP LOCKED",
                &[&study, &grace, &dead],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            let (number, candidate, attempts, state): (i64, String, i32, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            if state == "running" {
                tx.execute(
                    "UPDATE archproof_attempts SET state = 'lost'
                     WHERE study = $1 AND number = $2 AND attempt = $3",
                    &[&study, &number, &attempts],
                )?;
            }
            let attempt = attempts + 1;
            tx.execute(
                "UPDATE archproof_trials SET state = 'running', worker = $3, heartbeat = now(),
                        attempts = $4
                 WHERE study = $1 AND number = $2",
                &[&study, &number, &worker, &attempt],
            )?;
            tx.execute(
                "INSERT INTO archproof_attempts (study, number, attempt, worker, state)
                 VALUES ($1, $2, $3, $4, 'running')",
                &[&study, &number, &attempt, &worker],
            )?;
            tx.commit()?;
            Ok(Some(Claim {
                trial: number as u64,
                candidate,
                attempt: attempt as u32,
            }))
        })
    }

    fn beat(&mut self, worker: &str, trials: &[u64]) -> Result<(), SearchError> {
        let numbers: Vec<i64> = trials.iter().map(|&n| n as i64).collect();
        self.run(|c, study| {
            c.execute(
                "UPDATE archproof_trials SET heartbeat = now()
                 WHERE study = $1 AND worker = $2 AND state = 'running' AND number = ANY($3)",
                &[&study, &worker, &numbers],
            )
        })?;
        Ok(())
    }

    fn finish(
        &mut self,
        worker: &str,
        claim: &Claim,
        outcome: &Outcome,
        seconds: f64,
        payload: Option<&serde_json::Value>,
    ) -> Result<bool, SearchError> {
        let (fitness, cost, metrics, error) = outcome_columns(outcome);
        let payload = payload.map(|p| p.to_string());
        let (number, attempt) = (claim.trial as i64, claim.attempt as i32);
        self.run(|c, study| {
            let mut tx = c.transaction()?;
            // A retry after a lost connection may find its own result already recorded.
            let row = tx.query_opt(
                "SELECT state, worker, attempts FROM archproof_trials
                 WHERE study = $1 AND number = $2 FOR UPDATE",
                &[&study, &number],
            )?;
            let Some(row) = row else {
                return Ok(false);
            };
            let (state, holder, attempts): (String, Option<String>, i32) =
                (row.get(0), row.get(1), row.get(2));
            let mine = holder.as_deref() == Some(worker) && attempts == attempt;
            if !mine {
                return Ok(false);
            }
            if state == "finished" {
                return Ok(true);
            }
            tx.execute(
                "UPDATE archproof_trials SET state = 'finished', fitness = $3, cost = $4,
                        metrics = $5, error = $6, payload = $7, seconds = $8, heartbeat = NULL
                 WHERE study = $1 AND number = $2",
                &[
                    &study, &number, &fitness, &cost, &metrics, &error, &payload, &seconds,
                ],
            )?;
            tx.execute(
                "UPDATE archproof_attempts SET state = 'finished'
                 WHERE study = $1 AND number = $2 AND attempt = $3",
                &[&study, &number, &attempt],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn progress(&mut self) -> Result<Progress, SearchError> {
        self.run(Self::progress_of)
    }

    fn trials_from(&mut self, first: u64) -> Result<Vec<StoredTrial>, SearchError> {
        let loc = self.location();
        let rows = self.run(|c, study| {
            c.query(
                "SELECT number, candidate, state, fitness, cost, metrics, error, payload,
                        seconds, attempts, worker
                 FROM archproof_trials WHERE study = $1 AND number >= $2 ORDER BY number",
                &[&study, &(first as i64)],
            )
        })?;
        rows.into_iter()
            .map(|r| {
                let state: String = r.get(2);
                stored_trial(
                    &loc,
                    r.get(0),
                    r.get(1),
                    &state,
                    (r.get(3), r.get(4), r.get(5), r.get(6)),
                    r.get(7),
                    r.get(8),
                    r.get::<_, i32>(9) as i64,
                    r.get(10),
                )
            })
            .collect()
    }

    fn attempts(&mut self) -> Result<Vec<Attempt>, SearchError> {
        let rows = self.run(|c, study| {
            c.query(
                "SELECT number, attempt, worker, state FROM archproof_attempts
                 WHERE study = $1 ORDER BY number, attempt",
                &[&study],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| Attempt {
                trial: r.get::<_, i64>(0) as u64,
                attempt: r.get::<_, i32>(1) as u32,
                worker: r.get(2),
                state: r.get(3),
            })
            .collect())
    }

    fn running_workers(&mut self) -> Result<Vec<String>, SearchError> {
        let rows = self.run(|c, study| {
            c.query(
                "SELECT DISTINCT worker FROM archproof_trials
                 WHERE study = $1 AND state = 'running' AND worker IS NOT NULL",
                &[&study],
            )
        })?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn studies(&mut self) -> Result<Vec<StudyListing>, SearchError> {
        let loc = self.location();
        let rows = self.run(|c, _| {
            let heads = c.query(
                "SELECT name, header FROM archproof_studies ORDER BY name",
                &[],
            )?;
            let mut out = Vec::new();
            for h in heads {
                let name: String = h.get(0);
                let progress = Self::progress_of(c, &name)?;
                let best = c
                    .query_opt(
                        "SELECT number, fitness FROM archproof_trials
                         WHERE study = $1 AND state = 'finished' AND error IS NULL
                               AND fitness IS NOT NULL
                         ORDER BY fitness DESC, number LIMIT 1",
                        &[&name],
                    )?
                    .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, f64>(1)));
                out.push((name, h.get::<_, String>(1), progress, best));
            }
            Ok(out)
        })?;
        rows.into_iter()
            .map(|(name, json, progress, best)| {
                Ok(StudyListing {
                    name,
                    header: header_from_json(&loc, &json)?,
                    progress,
                    best,
                })
            })
            .collect()
    }
}
