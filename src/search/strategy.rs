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

/// The fittest of `sample` trials drawn (with replacement) from `population`; a failed trial
/// wins only when nothing better was drawn.
fn tournament<'a, C>(
    population: &'a [Trial<C>],
    sample: usize,
    rng: &mut ChaCha8Rng,
) -> &'a Trial<C> {
    let mut best: Option<&Trial<C>> = None;
    for _ in 0..sample.max(1) {
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
    best.expect("at least one draw")
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
        let parent = tournament(population, self.sample, rng);
        space.mutate(&parent.candidate, rng)
    }
}

/// Encodings of every candidate already in the history (strategies below never query one
/// twice: a tabular benchmark would charge the same training again).
pub(super) fn seen<S: Space>(
    space: &S,
    history: &[Trial<S::Candidate>],
) -> std::collections::HashSet<String> {
    history.iter().map(|t| space.encode(&t.candidate)).collect()
}

/// A random candidate not in `seen` (any candidate after 1,000 tries).
pub(super) fn fresh_sample<S: Space>(
    space: &S,
    seen: &std::collections::HashSet<String>,
    rng: &mut ChaCha8Rng,
) -> S::Candidate {
    let mut c = space.sample(rng);
    for _ in 0..1000 {
        if !seen.contains(&space.encode(&c)) {
            break;
        }
        c = space.sample(rng);
    }
    c
}

/// Local search (hill climbing with random restarts): the next candidate is an unvisited
/// neighbour (in random order) of the best candidate so far; when the best has none left it is
/// a local optimum, and random candidates are drawn until one beats it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalSearch;

impl<S: Space> Strategy<S> for LocalSearch {
    fn name(&self) -> String {
        "local".into()
    }

    fn propose(
        &self,
        space: &S,
        history: &[Trial<S::Candidate>],
        rng: &mut ChaCha8Rng,
    ) -> S::Candidate {
        let seen = seen(space, history);
        let best = history
            .iter()
            .filter(|t| t.fitness().is_some())
            .max_by(|a, b| {
                a.fitness()
                    .unwrap_or(f64::MIN)
                    .total_cmp(&b.fitness().unwrap_or(f64::MIN))
            });
        if let Some(b) = best {
            let open: Vec<S::Candidate> = space
                .neighbours(&b.candidate)
                .into_iter()
                .filter(|n| !seen.contains(&space.encode(n)))
                .collect();
            if !open.is_empty() {
                return open[rng.random_range(0..open.len())].clone();
            }
        }
        fresh_sample(space, &seen, rng)
    }
}

/// A training-free score of a candidate (higher is better), e.g. its parameter count.
pub type Proxy<C> = std::sync::Arc<dyn Fn(&C) -> f64 + Send + Sync>;

/// Regularized evolution guided by a training-free proxy. The initial population is drawn
/// as the best by proxy of `pool` random candidates each, and every child is the best by
/// proxy of `children` distinct mutations of the tournament winner; no candidate is queried
/// twice. The proxy costs nothing in the study's budget: only queried candidates are charged.
#[derive(Clone)]
pub struct ProxyEvolution<C> {
    /// Population (aging window) size.
    pub population: usize,
    /// Tournament size.
    pub sample: usize,
    /// Random candidates ranked by the proxy for each member of the initial population.
    pub pool: usize,
    /// Mutations ranked by the proxy for each child.
    pub children: usize,
    /// The proxy.
    pub proxy: Proxy<C>,
    /// Its name, for the study record.
    pub proxy_name: String,
}

impl<S: Space> Strategy<S> for ProxyEvolution<S::Candidate> {
    fn name(&self) -> String {
        format!(
            "proxy-rea(population={},sample={},pool={},children={},proxy={})",
            self.population, self.sample, self.pool, self.children, self.proxy_name
        )
    }

    fn propose(
        &self,
        space: &S,
        history: &[Trial<S::Candidate>],
        rng: &mut ChaCha8Rng,
    ) -> S::Candidate {
        let seen = seen(space, history);
        let best_by_proxy = |cands: Vec<S::Candidate>| {
            cands
                .into_iter()
                .filter(|c| !seen.contains(&space.encode(c)))
                .map(|c| ((self.proxy)(&c), c))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|x| x.1)
        };
        if history.len() < self.population {
            let pool: Vec<S::Candidate> =
                (0..self.pool.max(1)).map(|_| space.sample(rng)).collect();
            return best_by_proxy(pool).unwrap_or_else(|| fresh_sample(space, &seen, rng));
        }
        let population = &history[history.len() - self.population..];
        let parent = tournament(population, self.sample, rng);
        let kids: Vec<S::Candidate> = (0..self.children.max(1))
            .map(|_| space.mutate(&parent.candidate, rng))
            .collect();
        best_by_proxy(kids).unwrap_or_else(|| fresh_sample(space, &seen, rng))
    }
}
