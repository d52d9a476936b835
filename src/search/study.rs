//! A study: runs a strategy over a space with an evaluator, in seeded batches evaluated in
//! parallel, recording each finished trial at once.
//!
//! Determinism: trials are proposed in batches of `batch`; every proposal of batch `b` sees the
//! history of the trials before it and its own RNG seeded by `(seed, trial id)`. So results
//! depend on the seed and the batch size, never on the number of threads or on which trial of
//! a batch finishes first. Resuming replays the complete batches from the store, re-proposes the
//! interrupted batch (the same candidates, by the same argument), keeps its stored trials and
//! evaluates only the missing ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::store::{StoredTrial, StudyHeader, STORE_FORMAT};
use super::{mix_seed, Evaluator, Outcome, SearchError, Space, Store, Strategy, Trial};

/// Stream salts separating the proposal and evaluation RNGs of a trial.
const PROPOSE_STREAM: u64 = 0x5052_4f50;
const EVAL_STREAM: u64 = 0x4556_414c;

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

/// A study in progress.
pub struct Study<'a, S: Space> {
    space: &'a S,
    strategy: &'a dyn Strategy<S>,
    evaluator: &'a dyn Evaluator<S::Candidate>,
    config: StudyConfig,
    store: Option<Mutex<Store>>,
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

    /// Records trials in `store`. When it already holds trials they are taken as finished and
    /// the study resumes after them; its header must match this study's.
    pub fn with_store(mut self, store: Store) -> Result<Self, SearchError> {
        let stored = store.header()?;
        let mine = self.header(stored.settings.clone());
        let mismatch = |what: &str, a: String, b: String| SearchError::Mismatch {
            path: store.path().display().to_string(),
            msg: format!("it was started with {what} {a}, not {b}"),
        };
        if stored.space != mine.space {
            return Err(mismatch("space", stored.space, mine.space));
        }
        if stored.strategy != mine.strategy {
            return Err(mismatch("strategy", stored.strategy, mine.strategy));
        }
        if stored.evaluator != mine.evaluator {
            return Err(mismatch("evaluator", stored.evaluator, mine.evaluator));
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
        if stored.max_trials != mine.max_trials {
            store.set_max_trials(mine.max_trials)?;
        }
        self.store = Some(Mutex::new(store));
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

    fn load_stored(&self) -> Result<Vec<Trial<S::Candidate>>, SearchError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let store = store.lock().expect("store lock");
        let path = store.path().display().to_string();
        store
            .trials()?
            .into_iter()
            .map(|t| {
                let candidate =
                    self.space
                        .decode(&t.candidate)
                        .map_err(|e| SearchError::Mismatch {
                            path: path.clone(),
                            msg: format!("trial {}: {e}", t.id),
                        })?;
                Ok(Trial {
                    id: t.id,
                    candidate,
                    outcome: t.outcome,
                    seconds: t.seconds,
                })
            })
            .collect()
    }

    /// Runs the study to its end (or until stopped), calling `on_trial` for each newly
    /// finished trial (from worker threads, in completion order).
    pub fn run(
        &self,
        on_trial: &(dyn Fn(&Trial<S::Candidate>) + Sync),
    ) -> Result<StudyResult<S::Candidate>, SearchError> {
        let stored = self.load_stored()?;
        // The complete prefix of stored trials is history; stored trials past it belong to the
        // batch that was interrupted.
        let prefix = stored
            .iter()
            .enumerate()
            .take_while(|(i, t)| t.id == *i as u64)
            .count();
        let batch = self.config.batch;
        let resume_at = prefix / batch * batch;
        let mut pending: Vec<Trial<S::Candidate>> = stored[resume_at..].to_vec();
        if let Some(t) = pending.iter().find(|t| t.id >= (resume_at + batch) as u64) {
            return Err(SearchError::Mismatch {
                path: self.store_path(),
                msg: format!(
                    "trial {} is stored but trial {} is not: the store was not written by this study",
                    t.id, prefix
                ),
            });
        }
        let mut history: Vec<Trial<S::Candidate>> = stored;
        history.truncate(resume_at);
        let mut total_cost: f64 = history.iter().map(|t| t.cost()).sum();
        let mut interrupted = false;

        while history.len() < self.config.max_trials
            && self.config.budget.is_none_or(|b| total_cost < b)
        {
            if self.stopped() {
                interrupted = true;
                break;
            }
            let start = history.len();
            let count = batch.min(self.config.max_trials - start);
            let proposals: Vec<(u64, S::Candidate)> = (start..start + count)
                .map(|t| {
                    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(
                        self.config.seed ^ PROPOSE_STREAM,
                        t as u64,
                    ));
                    (
                        t as u64,
                        self.strategy.propose(self.space, &history, &mut rng),
                    )
                })
                .collect();
            for p in &pending {
                let (_, c) = &proposals[(p.id as usize) - start];
                if self.space.encode(c) != self.space.encode(&p.candidate) {
                    return Err(SearchError::Mismatch {
                        path: self.store_path(),
                        msg: format!(
                            "trial {} was stored as {} but replays as {}: the space or strategy changed",
                            p.id,
                            self.space.encode(&p.candidate),
                            self.space.encode(c)
                        ),
                    });
                }
            }
            let done = std::mem::take(&mut pending);
            let results: Vec<Result<Option<Trial<S::Candidate>>, SearchError>> = proposals
                .into_par_iter()
                .map(|(id, candidate)| {
                    if let Some(t) = done.iter().find(|t| t.id == id) {
                        return Ok(Some(t.clone()));
                    }
                    if self.stopped() {
                        return Ok(None);
                    }
                    let t0 = Instant::now();
                    let outcome = match self
                        .evaluator
                        .evaluate(&candidate, mix_seed(self.config.seed ^ EVAL_STREAM, id))
                    {
                        Ok(e) => Outcome::Done(e),
                        Err(e) => Outcome::Failed(e.0),
                    };
                    let trial = Trial {
                        id,
                        candidate,
                        outcome,
                        seconds: t0.elapsed().as_secs_f64(),
                    };
                    if let Some(store) = &self.store {
                        store.lock().expect("store lock").insert(&StoredTrial {
                            id,
                            candidate: self.space.encode(&trial.candidate),
                            outcome: trial.outcome.clone(),
                            seconds: trial.seconds,
                        })?;
                    }
                    on_trial(&trial);
                    Ok(Some(trial))
                })
                .collect();
            let mut finished = Vec::with_capacity(count);
            for r in results {
                match r? {
                    Some(t) => finished.push(t),
                    None => interrupted = true,
                }
            }
            if interrupted {
                break;
            }
            total_cost += finished.iter().map(|t| t.cost()).sum::<f64>();
            history.extend(finished);
        }
        let best = best_index(&history);
        Ok(StudyResult {
            trials: history,
            best,
            total_cost,
            interrupted,
        })
    }

    fn store_path(&self) -> String {
        self.store
            .as_ref()
            .map(|s| s.lock().expect("store lock").path().display().to_string())
            .unwrap_or_default()
    }
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
