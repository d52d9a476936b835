//! A study: runs a strategy over a space with an evaluator, in seeded batches, recording each
//! finished trial at once.
//!
//! Determinism: trials are proposed in batches of `batch`; every proposal of batch `b` sees the
//! history of the trials before it and its own RNG seeded by `(seed, trial id)`, and every
//! evaluation its own seed `(seed, trial id)`. So results depend on the seed and the batch
//! size, never on the number of threads, of worker processes, or on which trial of a batch
//! finishes first.
//!
//! Without a store the batches run in memory, in parallel. With one ([`Study::attach`]), every
//! worker process runs the same loop against the shared store (see [`super::store`]):
//! 1. claim a trial (waiting, or abandoned by a worker that stopped beating or died) and
//!    evaluate it, beating meanwhile; record the result;
//! 2. when there is nothing to claim but trials of the batch are still running elsewhere,
//!    *wait*: the next batch is proposed from the whole history, so it waits for the slowest
//!    trial of this one (use a batch at least as large as the number of workers);
//! 3. when every added trial has finished: stop if the study has its trials or spent its
//!    budget; otherwise propose the next batch and add it. Workers that propose it at once
//!    propose the same candidates, and adding an existing trial changes nothing.
//!
//! A killed worker loses nothing finished; its running trial is claimed again by another worker
//! once its heartbeat is older than the grace period (at once, on the same machine, when its
//! process is gone), and the lost attempt stays in the attempts history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::store::{Claim, Storage, Store, StudyHeader, WorkerId, STORE_FORMAT};
use super::{mix_seed, Evaluator, Outcome, SearchError, Space, Strategy, Trial};

/// Stream salts separating the proposal and evaluation RNGs of a trial.
const PROPOSE_STREAM: u64 = 0x5052_4f50;
const EVAL_STREAM: u64 = 0x4556_414c;

/// The seed a study of seed `study_seed` gives the evaluation of trial `trial` (what a trained
/// candidate's weights, and its network folder's name, derive from).
pub fn trial_seed(study_seed: u64, trial: u64) -> u64 {
    mix_seed(study_seed ^ EVAL_STREAM, trial)
}

/// Settings of a study.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// The most trials to run.
    pub max_trials: usize,
    /// Stop proposing once the finished trials' costs add up to this (the last batch may pass
    /// it, as the benchmark protocols allow).
    pub budget: Option<f64>,
    /// Trials proposed together from the same history and evaluated in parallel.
    pub batch: usize,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            seed: 0,
            max_trials: 100,
            budget: None,
            batch: 1,
        }
    }
}

/// What a study returns.
#[derive(Debug, Clone)]
pub struct StudyResult<C> {
    /// Every finished trial in order (resumed ones included).
    pub trials: Vec<Trial<C>>,
    /// Index into `trials` of the fittest trial (the earliest among equals).
    pub best: Option<usize>,
    /// Sum of the trials' costs.
    pub total_cost: f64,
    /// Whether the study stopped early because it was asked to.
    pub interrupted: bool,
}

/// How a worker treats the study it attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Start it: an existing study of that name is an error, or with `force` replaced.
    Create { force: bool },
    /// Continue it: it must exist.
    Resume,
    /// Join it, creating it if it does not exist yet (every worker of a shared study).
    Join,
}

/// How a worker beats and when it takes over another's trial.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Seconds between heartbeats.
    pub heartbeat: f64,
    /// Seconds without a heartbeat after which a running trial is claimed again.
    pub grace: f64,
    /// Trials this process evaluates at once [default: the batch size, at most the threads].
    pub slots: Option<usize>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            heartbeat: 5.0,
            grace: 60.0,
            slots: None,
        }
    }
}

impl WorkerOptions {
    /// Refuses a heartbeat that is not a positive time shorter than the grace period.
    pub fn check(&self) -> Result<(), SearchError> {
        let ok = self.heartbeat.is_finite()
            && self.heartbeat >= 0.01
            && self.grace.is_finite()
            && self.grace > self.heartbeat;
        if ok && self.slots != Some(0) {
            Ok(())
        } else if self.slots == Some(0) {
            Err(SearchError::Config(
                "--parallel-trials must be at least 1".into(),
            ))
        } else {
            Err(SearchError::Config(format!(
                "--heartbeat ({} s) must be at least 0.01 s and shorter than --heartbeat-grace ({} s)",
                self.heartbeat, self.grace
            )))
        }
    }
}

struct Attached {
    storage: Storage,
    study: String,
    options: WorkerOptions,
    worker: WorkerId,
}

/// A study in progress.
pub struct Study<'a, S: Space> {
    space: &'a S,
    strategy: &'a dyn Strategy<S>,
    evaluator: &'a dyn Evaluator<S::Candidate>,
    config: StudyConfig,
    store: Option<Attached>,
    stop: Option<&'a AtomicBool>,
}

impl<'a, S: Space> Study<'a, S> {
    /// A study with no store (results in memory only).
    pub fn new(
        space: &'a S,
        strategy: &'a dyn Strategy<S>,
        evaluator: &'a dyn Evaluator<S::Candidate>,
        config: StudyConfig,
    ) -> Result<Self, SearchError> {
        if config.batch == 0 {
            return Err(SearchError::Config(
                "the batch size must be at least 1".into(),
            ));
        }
        Ok(Study {
            space,
            strategy,
            evaluator,
            config,
            store: None,
            stop: None,
        })
    }

    /// The header this study writes to (or expects in) a store.
    pub fn header(&self, settings: serde_json::Value) -> StudyHeader {
        StudyHeader {
            format: STORE_FORMAT,
            space: self.space.name().to_string(),
            strategy: self.strategy.name(),
            evaluator: self.evaluator.describe(),
            seed: self.config.seed,
            batch: self.config.batch,
            max_trials: self.config.max_trials,
            budget: self.config.budget,
            settings,
        }
    }

    /// Records trials in study `name` of `storage`, and runs as one of its workers. The
    /// study's header must match this study's (space, strategy, evaluator, seed, batch,
    /// budget, and the front end's `settings` but for the number of trials); its trial limit
    /// becomes this study's. Nothing is written when they differ.
    pub fn attach(
        mut self,
        storage: &Storage,
        name: &str,
        settings: serde_json::Value,
        mode: Attach,
        options: WorkerOptions,
    ) -> Result<Self, SearchError> {
        super::store::check_study_name(name)?;
        options.check()?;
        let mut conn = storage.connect(name)?;
        let mine = self.header(settings);
        let stored = conn.header()?;
        match (mode, stored) {
            (Attach::Create { force: false }, Some(_)) => {
                return Err(SearchError::Store {
                    path: conn.location(),
                    msg: "a study already exists there; pass --resume to continue it or --force to start over".into(),
                })
            }
            (Attach::Create { force: true }, _) => {
                conn.create(&mine, true)?;
            }
            (Attach::Resume, None) => {
                return Err(SearchError::Store {
                    path: conn.location(),
                    msg: "no study there to resume".into(),
                })
            }
            (_, Some(stored)) => {
                check_same(&conn.location(), &stored, &mine)?;
                if stored.max_trials != mine.max_trials {
                    conn.set_max_trials(mine.max_trials)?;
                }
            }
            (_, None) => {
                if !conn.create(&mine, false)? {
                    // Another worker created it in between: it must match too.
                    let stored = conn.existing_header()?;
                    check_same(&conn.location(), &stored, &mine)?;
                }
            }
        }
        self.store = Some(Attached {
            storage: storage.clone(),
            study: name.to_string(),
            options,
            worker: WorkerId::this_process(),
        });
        Ok(self)
    }

    /// Stops the study (between trials) once `flag` is set.
    pub fn with_stop_flag(mut self, flag: &'a AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    fn stopped(&self) -> bool {
        self.stop.is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Trials already finished in the attached store (0 without one).
    pub fn finished_so_far(&self) -> Result<usize, SearchError> {
        match &self.store {
            Some(a) => Ok(a.storage.connect(&a.study)?.progress()?.finished as usize),
            None => Ok(0),
        }
    }

    /// This process's worker name in the store.
    pub fn worker(&self) -> Option<&str> {
        self.store.as_ref().map(|a| a.worker.0.as_str())
    }

    /// Runs the study to its end (or until stopped), calling `on_trial` for each trial this
    /// process finishes (from worker threads, in completion order).
    pub fn run(
        &self,
        on_trial: &(dyn Fn(&Trial<S::Candidate>) + Sync),
    ) -> Result<StudyResult<S::Candidate>, SearchError> {
        match &self.store {
            Some(a) => self.run_shared(a, on_trial),
            None => self.run_in_memory(on_trial),
        }
    }

    fn propose_batch(
        &self,
        history: &[Trial<S::Candidate>],
        count: usize,
    ) -> Vec<(u64, S::Candidate)> {
        let start = history.len();
        (start..start + count)
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(
                    self.config.seed ^ PROPOSE_STREAM,
                    t as u64,
                ));
                (
                    t as u64,
                    self.strategy.propose(self.space, history, &mut rng),
                )
            })
            .collect()
    }

    fn evaluate(&self, id: u64, candidate: S::Candidate) -> Trial<S::Candidate> {
        let t0 = Instant::now();
        let outcome = match self
            .evaluator
            .evaluate(&candidate, trial_seed(self.config.seed, id))
        {
            Ok(e) => Outcome::Done(e),
            Err(e) => Outcome::Failed(e.0),
        };
        Trial {
            id,
            candidate,
            outcome,
            seconds: t0.elapsed().as_secs_f64(),
        }
    }

    /// Whether a study with this history proposes no more trials.
    fn complete(&self, history: &[Trial<S::Candidate>]) -> bool {
        let cost: f64 = history.iter().map(|t| t.cost()).sum();
        history.len() >= self.config.max_trials || self.config.budget.is_some_and(|b| cost >= b)
    }

    fn run_in_memory(
        &self,
        on_trial: &(dyn Fn(&Trial<S::Candidate>) + Sync),
    ) -> Result<StudyResult<S::Candidate>, SearchError> {
        let mut history: Vec<Trial<S::Candidate>> = Vec::new();
        let mut interrupted = false;
        while !self.complete(&history) {
            if self.stopped() {
                interrupted = true;
                break;
            }
            let count = self
                .config
                .batch
                .min(self.config.max_trials - history.len());
            let results: Vec<Option<Trial<S::Candidate>>> = self
                .propose_batch(&history, count)
                .into_par_iter()
                .map(|(id, candidate)| {
                    if self.stopped() {
                        return None;
                    }
                    let trial = self.evaluate(id, candidate);
                    on_trial(&trial);
                    Some(trial)
                })
                .collect();
            if results.iter().any(Option::is_none) {
                interrupted = true;
                break;
            }
            history.extend(results.into_iter().flatten());
        }
        Ok(self.result(history, interrupted))
    }

    fn result(
        &self,
        history: Vec<Trial<S::Candidate>>,
        interrupted: bool,
    ) -> StudyResult<S::Candidate> {
        StudyResult {
            best: best_index(&history),
            total_cost: history.iter().map(|t| t.cost()).sum(),
            trials: history,
            interrupted,
        }
    }

    fn decode(&self, loc: &str, id: u64, text: &str) -> Result<S::Candidate, SearchError> {
        self.space.decode(text).map_err(|e| SearchError::Mismatch {
            path: loc.to_string(),
            msg: format!("trial {id}: {e}"),
        })
    }

    /// Brings `history` up to every finished trial of the store, in order.
    fn catch_up(
        &self,
        conn: &mut dyn Store,
        history: &mut Vec<Trial<S::Candidate>>,
    ) -> Result<(), SearchError> {
        let loc = conn.location();
        for t in conn.trials_from(history.len() as u64)? {
            let Some(outcome) = t.outcome else { break };
            if t.id != history.len() as u64 {
                // A gap: a trial of an interrupted batch that an earlier version never added
                // (the worker loop adds the batch again).
                break;
            }
            history.push(Trial {
                id: t.id,
                candidate: self.decode(&loc, t.id, &t.candidate)?,
                outcome,
                seconds: t.seconds,
            });
        }
        Ok(())
    }

    fn run_shared(
        &self,
        a: &Attached,
        on_trial: &(dyn Fn(&Trial<S::Candidate>) + Sync),
    ) -> Result<StudyResult<S::Candidate>, SearchError> {
        let slots = a
            .options
            .slots
            .unwrap_or_else(|| self.config.batch.min(rayon::current_num_threads()))
            .max(1);
        let shared = SharedRun {
            history: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
        };
        let mut conns = (0..slots)
            .map(|_| a.storage.connect(&a.study))
            .collect::<Result<Vec<_>, _>>()?;
        let held = Held::default();
        let outcome = with_heartbeat(&a.storage, &a.study, &a.worker, &a.options, &held, || {
            std::thread::scope(|scope| {
                let handles: Vec<_> = conns
                    .iter_mut()
                    .map(|conn| {
                        let (shared, held) = (&shared, &held);
                        scope.spawn(move || {
                            // However this thread ends (an error, a panic), the others stop.
                            let _done = SetOnDrop(&shared.done);
                            self.worker_loop(a, conn.as_mut(), shared, held, on_trial)
                        })
                    })
                    .collect();
                let mut first_error = Ok(());
                for h in handles {
                    let r = match h.join() {
                        Ok(r) => r,
                        Err(panic) => std::panic::resume_unwind(panic),
                    };
                    if first_error.is_ok() {
                        first_error = r;
                    }
                }
                first_error
            })
        });
        outcome?;
        let mut history = shared.history.into_inner().expect("history lock");
        let conn = conns[0].as_mut();
        self.catch_up(conn, &mut history)?;
        let interrupted = !self.complete(&history);
        Ok(self.result(history, interrupted))
    }

    fn worker_loop(
        &self,
        a: &Attached,
        conn: &mut dyn Store,
        shared: &SharedRun<S::Candidate>,
        held: &Held,
        on_trial: &(dyn Fn(&Trial<S::Candidate>) + Sync),
    ) -> Result<(), SearchError> {
        let loc = conn.location();
        let me = &a.worker;
        let mut wait = Duration::from_millis(2);
        let pause = |wait: &mut Duration| {
            std::thread::sleep(*wait);
            *wait = (*wait * 2).min(Duration::from_millis(250));
        };
        while !shared.done.load(Ordering::SeqCst) && !self.stopped() {
            let claim = claim_next(conn, me, a.options.grace)?;
            if let Some(c) = claim {
                wait = Duration::from_millis(2);
                let candidate = self.decode(&loc, c.trial, &c.candidate)?;
                let trial = {
                    let _beating = held.hold(c.trial);
                    self.evaluate(c.trial, candidate)
                };
                if conn.finish(&me.0, &c, &trial.outcome, trial.seconds, None)? {
                    on_trial(&trial);
                }
                continue;
            }
            if conn.progress()?.open() > 0 {
                // Trials of this batch run elsewhere: the next batch waits for them.
                pause(&mut wait);
                continue;
            }
            // Everything added has finished: end, or propose the next batch. One thread of
            // this process proposes at a time; other processes may propose the same batch.
            let mut history = shared.history.lock().expect("history lock");
            let progress = conn.progress()?;
            if progress.open() > 0 {
                drop(history);
                pause(&mut wait);
                continue;
            }
            self.catch_up(conn, &mut history)?;
            let added = progress.added as usize;
            if history.len() > added {
                // Another worker added (and finished) the next batch meanwhile: look again.
                drop(history);
                pause(&mut wait);
                continue;
            }
            if history.len() == added && self.complete(&history) {
                shared.done.store(true, Ordering::SeqCst);
                break;
            }
            // Batches start at multiples of the batch size. The history ends inside one when a
            // study was extended after a short last batch, or when a trial of an interrupted
            // batch is missing (stores of earlier versions kept only finished trials): that
            // batch is proposed again from the history before it; its stored trials must
            // match, and the missing ones are added.
            let start = history.len() / self.config.batch * self.config.batch;
            let count = self
                .config
                .batch
                .min(self.config.max_trials.saturating_sub(start));
            if count == 0 {
                shared.done.store(true, Ordering::SeqCst);
                break;
            }
            let proposals: Vec<(u64, String)> = self
                .propose_batch(&history[..start], count)
                .iter()
                .map(|(id, c)| (*id, self.space.encode(c)))
                .collect();
            let existing = conn.add(&proposals)?;
            for (id, stored) in existing {
                let mine = &proposals[(id - proposals[0].0) as usize].1;
                if *mine != stored {
                    return Err(SearchError::Mismatch {
                        path: loc,
                        msg: format!(
                            "trial {id} was stored as {stored} but is proposed as {mine}: the space or strategy changed"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// What the worker threads of one process share.
struct SharedRun<C> {
    /// Finished trials, in order (read back from the store before each proposal).
    history: Mutex<Vec<Trial<C>>>,
    /// The study has ended (or a worker thread failed).
    done: AtomicBool,
}

/// Claims the next trial for `me`: a waiting one or one whose worker stopped beating, else
/// one held by a worker of this machine whose process is gone.
pub(super) fn claim_next(
    conn: &mut dyn Store,
    me: &WorkerId,
    grace: f64,
) -> Result<Option<Claim>, SearchError> {
    if let Some(c) = conn.claim(&me.0, grace, &[])? {
        return Ok(Some(c));
    }
    let dead: Vec<String> = conn
        .running_workers()?
        .into_iter()
        .filter(|w| me.is_dead_neighbour(w))
        .collect();
    if dead.is_empty() {
        return Ok(None);
    }
    conn.claim(&me.0, grace, &dead)
}

/// The trials a process is evaluating: the heartbeat beats for these only.
#[derive(Default)]
pub(super) struct Held(Mutex<std::collections::BTreeSet<u64>>);

impl Held {
    /// Holds `trial` until the returned guard drops.
    pub(super) fn hold(&self, trial: u64) -> impl Drop + '_ {
        self.0.lock().expect("held lock").insert(trial);
        Release(self, trial)
    }

    fn now(&self) -> Vec<u64> {
        self.0.lock().expect("held lock").iter().copied().collect()
    }
}

struct Release<'a>(&'a Held, u64);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if let Ok(mut h) = self.0 .0.lock() {
            h.remove(&self.1);
        }
    }
}

/// Sets a flag when dropped (on any exit, panics included).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Ends the heartbeat thread when dropped (on any exit of the body, panics included).
struct Quit<'a>(&'a (Mutex<bool>, Condvar));

impl Drop for Quit<'_> {
    fn drop(&mut self) {
        let (lock, cvar) = self.0;
        if let Ok(mut q) = lock.lock() {
            *q = true;
        }
        cvar.notify_all();
    }
}

/// Runs `body` while a thread beats, on its own connection, for the trials in `held`. A
/// failed beat is not fatal: at worst a trial is taken over, which its worker learns when it
/// records the result.
pub(super) fn with_heartbeat<T>(
    storage: &Storage,
    study: &str,
    me: &WorkerId,
    options: &WorkerOptions,
    held: &Held,
    body: impl FnOnce() -> Result<T, SearchError>,
) -> Result<T, SearchError> {
    let mut conn = storage.connect(study)?;
    let quit = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let every = Duration::from_secs_f64(options.heartbeat);
            let (lock, cvar) = &quit;
            loop {
                {
                    let q = lock.lock().expect("heartbeat lock");
                    if *q {
                        break;
                    }
                    let (q, _) = cvar.wait_timeout(q, every).expect("heartbeat lock");
                    if *q {
                        break;
                    }
                }
                let trials = held.now();
                if !trials.is_empty() {
                    let _ = conn.beat(&me.0, &trials);
                }
            }
        });
        let _quit = Quit(&quit);
        body()
    })
}

/// Checks that a stored header describes the same study as `mine` (the trial limit aside).
pub(super) fn check_same(
    loc: &str,
    stored: &StudyHeader,
    mine: &StudyHeader,
) -> Result<(), SearchError> {
    let mismatch = |what: &str, a: String, b: String| SearchError::Mismatch {
        path: loc.to_string(),
        msg: format!("it was started with {what} {a}, not {b}"),
    };
    if stored.space != mine.space {
        return Err(mismatch("space", stored.space.clone(), mine.space.clone()));
    }
    if stored.strategy != mine.strategy {
        return Err(mismatch(
            "strategy",
            stored.strategy.clone(),
            mine.strategy.clone(),
        ));
    }
    if stored.evaluator != mine.evaluator {
        return Err(mismatch(
            "evaluator",
            stored.evaluator.clone(),
            mine.evaluator.clone(),
        ));
    }
    if stored.seed != mine.seed {
        return Err(mismatch(
            "seed",
            stored.seed.to_string(),
            mine.seed.to_string(),
        ));
    }
    if stored.batch != mine.batch {
        return Err(mismatch(
            "batch",
            stored.batch.to_string(),
            mine.batch.to_string(),
        ));
    }
    if stored.budget != mine.budget {
        return Err(mismatch(
            "budget",
            format!("{:?}", stored.budget),
            format!("{:?}", mine.budget),
        ));
    }
    if let (serde_json::Value::Object(s), serde_json::Value::Object(m)) =
        (&stored.settings, &mine.settings)
    {
        for (key, value) in s {
            if key == "trials" {
                continue;
            }
            if let Some(other) = m.get(key) {
                if other != value {
                    return Err(mismatch(
                        &format!("setting {key}"),
                        value.to_string(),
                        other.to_string(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The index of the fittest trial, the earliest among equals.
pub fn best_index<C>(trials: &[Trial<C>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, t) in trials.iter().enumerate() {
        if let Some(f) = t.fitness() {
            if best.is_none_or(|(_, b)| f > b) {
                best = Some((i, f));
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::nb201::{Nb201Cell, Nb201Space};
    use crate::search::{EvalError, Evaluation, RandomSearch, RegularizedEvolution};

    /// A deterministic synthetic fitness: the number of 3x3 convs plus a small code-dependent
    /// term, so there is one optimum and many near-ties.
    struct Synthetic;
    impl Evaluator<Nb201Cell> for Synthetic {
        fn describe(&self) -> String {
            "synthetic".into()
        }
        fn evaluate(&self, c: &Nb201Cell, _seed: u64) -> Result<Evaluation, EvalError> {
            let convs = c.edges.iter().filter(|&&e| e as usize == 3).count() as f64;
            Ok(Evaluation {
                fitness: convs + (c.code() % 97) as f64 / 1000.0,
                cost: 1.0,
                metrics: Default::default(),
            })
        }
    }

    fn codes(r: &StudyResult<Nb201Cell>) -> Vec<usize> {
        r.trials.iter().map(|t| t.candidate.code()).collect()
    }

    #[test]
    fn same_seed_same_trials_whatever_the_thread_count() {
        let cfg = StudyConfig {
            seed: 7,
            max_trials: 60,
            budget: None,
            batch: 4,
        };
        let rea = RegularizedEvolution {
            population: 10,
            sample: 3,
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                Study::new(&Nb201Space, &rea, &Synthetic, cfg.clone())
                    .unwrap()
                    .run(&|_| {})
                    .unwrap()
            })
        };
        let a = run(1);
        let b = run(3);
        assert_eq!(codes(&a), codes(&b));
        let other = Study::new(
            &Nb201Space,
            &rea,
            &Synthetic,
            StudyConfig { seed: 8, ..cfg },
        )
        .unwrap()
        .run(&|_| {})
        .unwrap();
        assert_ne!(codes(&a), codes(&other));
    }

    #[test]
    fn evolution_beats_random_on_a_synthetic_landscape() {
        // Over 20 seeds and 150 trials, aging evolution's best must be at least random's on
        // average: it exploits the single-edge structure of the fitness.
        let (mut rea_sum, mut rnd_sum) = (0.0, 0.0);
        let rea = RegularizedEvolution {
            population: 10,
            sample: 3,
        };
        for seed in 0..20 {
            let cfg = StudyConfig {
                seed,
                max_trials: 150,
                budget: None,
                batch: 1,
            };
            let run = |s: &dyn Strategy<Nb201Space>| {
                let r = Study::new(&Nb201Space, s, &Synthetic, cfg.clone())
                    .unwrap()
                    .run(&|_| {})
                    .unwrap();
                r.trials[r.best.unwrap()].fitness().unwrap()
            };
            rea_sum += run(&rea);
            rnd_sum += run(&RandomSearch);
        }
        assert!(rea_sum > rnd_sum, "rea {rea_sum} vs random {rnd_sum}");
    }

    #[test]
    fn budget_stops_the_study() {
        let cfg = StudyConfig {
            seed: 1,
            max_trials: 1000,
            budget: Some(25.0),
            batch: 1,
        };
        let r = Study::new(&Nb201Space, &RandomSearch, &Synthetic, cfg)
            .unwrap()
            .run(&|_| {})
            .unwrap();
        assert_eq!(r.trials.len(), 25);
        assert_eq!(r.total_cost, 25.0);
    }
}
