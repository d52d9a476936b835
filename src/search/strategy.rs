//! Strategies: each proposes the next candidate from the history of finished trials alone, so a
//! resumed study replays to exactly the state it was in.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Space, Trial};

/// Proposes candidates. `history` holds the finished trials in trial order; `rng` is seeded per
/// trial, so a proposal depends on nothing but the seed, the trial number and the history.
pub trait Strategy<S: Space>: Sync {
    /// A name with the strategy's settings, e.g. `rea(population=10,sample=3)`.
    fn name(&self) -> String;
    /// The candidate of the next trial.
    fn propose(
        &self,
        space: &S,
        history: &[Trial<S::Candidate>],
        rng: &mut ChaCha8Rng,
    ) -> S::Candidate;
}

/// Uniform random sampling.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSearch;

impl<S: Space> Strategy<S> for RandomSearch {
    fn name(&self) -> String {
        "random".into()
    }

    fn propose(&self, space: &S, _: &[Trial<S::Candidate>], rng: &mut ChaCha8Rng) -> S::Candidate {
        space.sample(rng)
    }
}

/// Regularized (aging) evolution (Real et al., 2019): the population is the `population` most
/// recent trials; a parent is the fittest of `sample` members drawn at random (with
/// replacement, as the NAS-Bench-201 reference does); the child is a mutation of it. The first
/// `population` trials are random.
#[derive(Debug, Clone, Copy)]
pub struct RegularizedEvolution {
    /// Population size (the number of most recent trials that can be parents).
    pub population: usize,
    /// Tournament size.
    pub sample: usize,
}

impl<S: Space> Strategy<S> for RegularizedEvolution {
    fn name(&self) -> String {
        format!("rea(population={},sample={})", self.population, self.sample)
    }

    fn propose(
        &self,
        space: &S,
        history: &[Trial<S::Candidate>],
        rng: &mut ChaCha8Rng,
    ) -> S::Candidate {
        if history.len() < self.population {
            return space.sample(rng);
        }
        let population = &history[history.len() - self.population..];
        let mut best: Option<&Trial<S::Candidate>> = None;
        for _ in 0..self.sample {
            let t = &population[rng.random_range(0..population.len())];
            let better = match (best.and_then(|b| b.fitness()), t.fitness()) {
                (_, None) => best.is_none(),
                (None, Some(_)) => true,
                (Some(b), Some(f)) => f > b,
            };
            if better {
                best = Some(t);
            }
        }
        let parent = best.expect("sample >= 1");
        space.mutate(&parent.candidate, rng)
    }
}
