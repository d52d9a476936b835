//! Search strategies that know nothing of any one space, and the [`Study`] that runs them.
//!
//! Three things are kept apart (as NNI and NASLib do): a [`Space`] says what a candidate is and
//! how to sample, mutate and enumerate neighbours; an [`Evaluator`] scores a candidate; a
//! [`Strategy`] proposes the next candidate from the history of finished trials. A [`Study`]
//! ties them together, evaluates trials in parallel and records each one in a [`Store`].

pub mod inspect;
pub mod pareto;
pub mod queue;
pub mod store;
mod strategy;
mod study;

pub use pareto::{Objective, ParetoEvolution, ParetoTournament};
pub use store::{Storage, Store, StudyHeader};
pub use strategy::{
    LocalSearch, Proxy, ProxyEvolution, RandomSearch, RegularizedEvolution, Strategy,
};
pub use study::{trial_seed, Attach, Study, StudyConfig, StudyResult, WorkerOptions};

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A search space, seen by strategies only through sampling, mutation, neighbours and a
/// text encoding.
pub trait Space: Sync {
    /// A point of the space.
    type Candidate: Clone + Send + Sync;

    /// The space's name, recorded with every study.
    fn name(&self) -> &str;
    /// Draws a candidate uniformly (or by the space's natural prior).
    fn sample(&self, rng: &mut ChaCha8Rng) -> Self::Candidate;
    /// A random small change of `parent`.
    fn mutate(&self, parent: &Self::Candidate, rng: &mut ChaCha8Rng) -> Self::Candidate;
    /// Every candidate one small change away from `c`.
    fn neighbours(&self, c: &Self::Candidate) -> Vec<Self::Candidate>;
    /// A canonical text form (stored in the study and reported).
    fn encode(&self, c: &Self::Candidate) -> String;
    /// Reads back [`Space::encode`]'s text.
    fn decode(&self, text: &str) -> Result<Self::Candidate, DecodeError>;
}

/// What an evaluator says of a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Higher is better; the only number strategies see.
    pub fitness: f64,
    /// The cost of the evaluation in the study's budget unit (e.g. simulated training seconds).
    pub cost: f64,
    /// Anything else worth reporting (e.g. the test accuracy a search must not see).
    pub metrics: BTreeMap<String, f64>,
}

/// Scores candidates. Must be deterministic in `(candidate, seed)`.
pub trait Evaluator<C>: Sync {
    /// A description recorded with the study, e.g. `benchmark:nb201-cifar10.csv`.
    fn describe(&self) -> String;
    /// Evaluates one candidate; an `Err` marks the trial failed (it is recorded, not fatal).
    fn evaluate(&self, candidate: &C, seed: u64) -> Result<Evaluation, EvalError>;
}

/// The outcome of one trial.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The evaluator returned a score.
    Done(Evaluation),
    /// The evaluator failed with this message.
    Failed(String),
}

/// One finished trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial<C> {
    /// Position in the study, from 0.
    pub id: u64,
    /// The candidate evaluated.
    pub candidate: C,
    /// What the evaluator said.
    pub outcome: Outcome,
    /// Wall-clock seconds the evaluation took.
    pub seconds: f64,
}

impl<C> Trial<C> {
    /// The fitness, or `None` for a failed trial.
    pub fn fitness(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Done(e) => Some(e.fitness),
            Outcome::Failed(_) => None,
        }
    }

    /// The budget cost (0 for a failed trial).
    pub fn cost(&self) -> f64 {
        match &self.outcome {
            Outcome::Done(e) => e.cost,
            Outcome::Failed(_) => 0.0,
        }
    }

    /// A named metric, if the trial succeeded and reported it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        match &self.outcome {
            Outcome::Done(e) => e.metrics.get(name).copied(),
            Outcome::Failed(_) => None,
        }
    }
}

/// An evaluator that waits a fixed time before its inner one: to test and measure shared
/// studies with an evaluation of known length. It changes no result (nor the description).
pub struct Delayed<'a, C> {
    pub inner: &'a dyn Evaluator<C>,
    pub delay: std::time::Duration,
}

impl<C> Evaluator<C> for Delayed<'_, C> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn evaluate(&self, candidate: &C, seed: u64) -> Result<Evaluation, EvalError> {
        std::thread::sleep(self.delay);
        self.inner.evaluate(candidate, seed)
    }
}

/// Why a candidate's stored text does not decode (the message says where it goes wrong).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Why an evaluation failed. The study records the message with the trial, which counts as
/// failed; it does not stop the study.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl From<String> for EvalError {
    fn from(msg: String) -> Self {
        EvalError(msg)
    }
}

impl From<crate::ir::IrError> for EvalError {
    fn from(e: crate::ir::IrError) -> Self {
        EvalError(e.to_string())
    }
}

impl From<DecodeError> for EvalError {
    fn from(e: DecodeError) -> Self {
        EvalError(e.0)
    }
}

impl From<String> for DecodeError {
    fn from(msg: String) -> Self {
        DecodeError(msg)
    }
}

/// Errors of the study engine.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The study store could not be read or written.
    #[error("study store {path}: {msg}")]
    Store {
        /// The store's path.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// The stored study does not match the one being resumed or joined.
    #[error("{path}: {msg}")]
    Mismatch {
        /// The store's path.
        path: String,
        /// What differs.
        msg: String,
    },
    /// A configuration value is impossible.
    #[error("{0}")]
    Config(String),
}

/// A 64-bit mix of a seed and a stream number (SplitMix64's finaliser): per-trial seeds that do
/// not depend on thread scheduling.
pub fn mix_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
