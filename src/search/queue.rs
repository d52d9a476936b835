//! A fixed list of jobs through a study store: every item is a trial added once, claimed by one
//! worker, its result recorded as it finishes. Verification instance lists run this way, so
//! several processes (on several machines, with PostgreSQL) share a list, and a killed run
//! keeps what it finished and continues where it stopped.
//!
//! It follows the protocol of [`super::Study`] without proposals: claim, run, record; when
//! nothing is left to claim but items still run elsewhere, wait, since one of those workers
//! may die and its item come back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::store::{check_study_name, Storage, StoredTrial, StudyHeader, WorkerId};
use super::study::{check_same, claim_next, with_heartbeat, Attach, Held, WorkerOptions};
use super::{Outcome, SearchError};

/// A job list attached to a study of a store.
pub struct Queue {
    storage: Storage,
    name: String,
    worker: WorkerId,
    options: WorkerOptions,
}

/// What running one item gives: its outcome and the result to store with it.
pub type JobResult = (Outcome, Option<serde_json::Value>);

impl Queue {
    /// Creates or joins study `name` holding `items` (in order). A study of that name must
    /// have the same header (the list and settings) and the same items; nothing is written
    /// otherwise.
    pub fn attach(
        storage: &Storage,
        name: &str,
        header: &StudyHeader,
        items: &[String],
        mode: Attach,
        options: WorkerOptions,
    ) -> Result<Queue, SearchError> {
        check_study_name(name)?;
        options.check()?;
        let mut conn = storage.connect(name)?;
        let loc = conn.location();
        match (mode, conn.header()?) {
            (Attach::Create { force: false }, Some(_)) => return Err(SearchError::Store {
                path: loc,
                msg: "a study of that name exists; give another --study, or --force to start over"
                    .into(),
            }),
            (Attach::Create { force: true }, _) => {
                conn.create(header, true)?;
            }
            (Attach::Resume, None) => {
                return Err(SearchError::Store {
                    path: loc,
                    msg: "no study there to resume".into(),
                })
            }
            (_, Some(stored)) => check_same(&loc, &stored, header)?,
            (_, None) => {
                if !conn.create(header, false)? {
                    check_same(&loc, &conn.existing_header()?, header)?;
                }
            }
        }
        let numbered: Vec<(u64, String)> = items
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64, s.clone()))
            .collect();
        for (i, stored) in conn.add(&numbered)? {
            if stored != items[i as usize] {
                return Err(SearchError::Mismatch {
                    path: loc,
                    msg: format!(
                        "item {i} is stored as {stored:?}, not {:?}: the list changed",
                        items[i as usize]
                    ),
                });
            }
        }
        Ok(Queue {
            storage: storage.clone(),
            name: name.to_string(),
            worker: WorkerId::this_process(),
            options,
        })
    }

    /// Items finished so far.
    pub fn finished_so_far(&self) -> Result<usize, SearchError> {
        Ok(self.storage.connect(&self.name)?.progress()?.finished as usize)
    }

    /// Runs items until every one has finished (here or elsewhere) or `stop` is set; calls
    /// `on_done` with each item this process finished. Returns every stored item, in order.
    pub fn run(
        &self,
        work: &(dyn Fn(u64, &str) -> JobResult + Sync),
        on_done: &(dyn Fn(u64, &JobResult) + Sync),
        stop: Option<&AtomicBool>,
    ) -> Result<Vec<StoredTrial>, SearchError> {
        let mut conn = self.storage.connect(&self.name)?;
        let me = &self.worker;
        let stopped = || stop.is_some_and(|s| s.load(Ordering::SeqCst));
        let held = Held::default();
        with_heartbeat(&self.storage, &self.name, me, &self.options, &held, || {
            let mut wait = Duration::from_millis(2);
            while !stopped() {
                if let Some(c) = claim_next(conn.as_mut(), me, self.options.grace)? {
                    wait = Duration::from_millis(2);
                    let t0 = Instant::now();
                    let result = {
                        let _beating = held.hold(c.trial);
                        work(c.trial, &c.candidate)
                    };
                    let seconds = t0.elapsed().as_secs_f64();
                    if conn.finish(&me.0, &c, &result.0, seconds, result.1.as_ref())? {
                        on_done(c.trial, &result);
                    }
                    continue;
                }
                if conn.progress()?.open() == 0 {
                    break;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Ok(())
        })?;
        conn.trials()
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({} in {})", self.name, self.storage)
    }
}
