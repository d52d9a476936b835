//! Multi-objective selection: objectives read off trials, Pareto fronts, the two-objective
//! hypervolume, and a Pareto-front evolution strategy.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::strategy::{fresh_sample, seen};
use super::{Space, Strategy, Trial};

/// One objective: the fitness (maximised) or a named metric (minimised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objective {
    /// The evaluator's fitness, higher is better (`accuracy` on the command line).
    Fitness,
    /// A metric the evaluator reports, lower is better (latency, FLOPs, parameters).
    Minimize(String),
    /// A metric the evaluator reports, higher is better (`verified:EPS` on the command line
    /// is the metric `verified_EPS`, the verified accuracy at that radius).
    Maximize(String),
}

impl Objective {
    /// Reads `accuracy` (or `fitness`) as the fitness and anything else as a metric to
    /// minimise.
    pub fn parse(s: &str) -> Objective {
        match s {
            "accuracy" | "fitness" => Objective::Fitness,
            m => match m.strip_prefix("verified:") {
                Some(eps) => Objective::Maximize(format!("verified_{eps}")),
                None => Objective::Minimize(m.to_string()),
            },
        }
    }

    /// The name as the command line gives it.
    pub fn name(&self) -> &str {
        match self {
            Objective::Fitness => "accuracy",
            Objective::Minimize(m) | Objective::Maximize(m) => m,
        }
    }

    /// An oriented value back as the objective is written (a minimised metric negated back).
    pub fn as_written(&self, oriented: f64) -> f64 {
        match self {
            Objective::Fitness | Objective::Maximize(_) => oriented,
            Objective::Minimize(_) => -oriented,
        }
    }

    /// The objective's value of a trial, oriented so that higher is better (a minimised
    /// metric is negated); `None` for a failed trial or a missing metric.
    pub fn oriented<C>(&self, t: &Trial<C>) -> Option<f64> {
        match self {
            Objective::Fitness => t.fitness(),
            Objective::Minimize(m) => t.metric(m).map(|v| -v),
            Objective::Maximize(m) => t.metric(m),
        }
    }
}

/// The oriented objective vector of a trial (`None` when any value is missing).
pub fn oriented<C>(objectives: &[Objective], t: &Trial<C>) -> Option<Vec<f64>> {
    objectives.iter().map(|o| o.oriented(t)).collect()
}

/// Whether `a` dominates `b` (every value at least as high, one higher; all maximised).
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x >= y) && a.iter().zip(b).any(|(x, y)| x > y)
}

/// Indices of the non-dominated points (all objectives maximised); of equal points, the
/// first is kept.
pub fn front(points: &[Vec<f64>]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            !points
                .iter()
                .enumerate()
                .any(|(j, p)| dominates(p, &points[i]) || (j < i && p == &points[i]))
        })
        .collect()
}

/// The area dominated by two-objective points (maximised) and bounded below by `reference`:
/// the hypervolume indicator. Points not above the reference in both objectives add nothing.
pub fn hypervolume_2d(points: &[Vec<f64>], reference: [f64; 2]) -> f64 {
    let mut p: Vec<(f64, f64)> = points
        .iter()
        .filter(|v| v[0] > reference[0] && v[1] > reference[1])
        .map(|v| (v[0], v[1]))
        .collect();
    // Sweep from the highest first objective down, adding the strip each new height opens.
    p.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let (mut area, mut top) = (0.0, reference[1]);
    for (x, y) in p {
        if y > top {
            area += (x - reference[0]) * (y - top);
            top = y;
        }
    }
    area
}

/// The reference point of a hypervolume: the worst of each of two objectives over `points`
/// (oriented, higher is better).
pub fn reference_point(points: &[Vec<f64>]) -> [f64; 2] {
    let worst = |k: usize| points.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min);
    [worst(0), worst(1)]
}

/// Every point a search could reach (e.g. each row of a benchmark table) as an oriented
/// two-objective vector, with the hypervolume reference point (the worst of each objective)
/// and the hypervolume of its own front: the most any search can cover.
#[derive(Debug, Clone, PartialEq)]
pub struct ReachableFront {
    /// Every reachable point, oriented.
    pub points: Vec<Vec<f64>>,
    /// The worst of each objective over `points`.
    pub reference: [f64; 2],
    /// The hypervolume of `points` above `reference`.
    pub hypervolume: f64,
}

impl ReachableFront {
    /// The reference point and hypervolume of `points` (two objectives each).
    pub fn new(points: Vec<Vec<f64>>) -> ReachableFront {
        let reference = reference_point(&points);
        let hypervolume = hypervolume_2d(&points, reference);
        ReachableFront {
            points,
            reference,
            hypervolume,
        }
    }
}

/// The hypervolume of the trials' front for two objectives, measured from the reachable
/// front's reference point (or, without one, from the worst of the trials' own values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coverage {
    /// The hypervolume of the trials' points.
    pub hypervolume: f64,
    /// The reference point it is measured from (oriented).
    pub reference: [f64; 2],
    /// The reachable front's hypervolume, when there is one.
    pub reachable: Option<f64>,
    /// `hypervolume / reachable`.
    pub ratio: Option<f64>,
}

impl Coverage {
    /// The coverage of `trials`; `None` unless there are exactly two objectives.
    pub fn of<C>(
        trials: &[Trial<C>],
        objectives: &[Objective],
        reachable: Option<&ReachableFront>,
    ) -> Option<Coverage> {
        if objectives.len() != 2 {
            return None;
        }
        let points: Vec<Vec<f64>> = trials
            .iter()
            .filter_map(|t| oriented(objectives, t))
            .collect();
        let reference = reachable.map_or_else(|| reference_point(&points), |r| r.reference);
        let hypervolume = hypervolume_2d(&points, reference);
        let reachable = reachable.map(|r| r.hypervolume);
        Some(Coverage {
            hypervolume,
            reference,
            reachable,
            ratio: reachable.map(|r| hypervolume / r),
        })
    }
}

/// Pareto-front evolution (SEMO, Laumanns et al. 2004, with a random start): after
/// `initial` random candidates, each proposal mutates a uniformly drawn member of the current
/// Pareto front of all finished trials; no candidate is queried twice.
#[derive(Debug, Clone)]
pub struct ParetoEvolution {
    /// The objectives.
    pub objectives: Vec<Objective>,
    /// Random candidates before evolution starts.
    pub initial: usize,
}

impl<S: Space> Strategy<S> for ParetoEvolution {
    fn name(&self) -> String {
        let names: Vec<&str> = self.objectives.iter().map(Objective::name).collect();
        format!(
            "pareto(initial={},objectives={})",
            self.initial,
            names.join("+")
        )
    }

    fn propose(
        &self,
        space: &S,
        history: &[Trial<S::Candidate>],
        rng: &mut ChaCha8Rng,
    ) -> S::Candidate {
        let seen = seen(space, history);
        let scored: Vec<(usize, Vec<f64>)> = history
            .iter()
            .enumerate()
            .filter_map(|(i, t)| oriented(&self.objectives, t).map(|v| (i, v)))
            .collect();
        if history.len() < self.initial || scored.is_empty() {
            return fresh_sample(space, &seen, rng);
        }
        let points: Vec<Vec<f64>> = scored.iter().map(|s| s.1.clone()).collect();
        let f = front(&points);
        for _ in 0..32 {
            let parent = &history[scored[f[rng.random_range(0..f.len())]].0].candidate;
            let child = space.mutate(parent, rng);
            if !seen.contains(&space.encode(&child)) {
                return child;
            }
        }
        fresh_sample(space, &seen, rng)
    }
}

/// Tournament with aging whose winner is drawn uniformly from the Pareto front of the
/// tournament's metrics (EvoNorms: the accuracies on the anchors, `acc_{anchor}`). Failed
/// (rejected) trials age out of the population like the others but never win.
#[derive(Debug, Clone)]
pub struct ParetoTournament {
    /// The metrics to maximise.
    pub metrics: Vec<String>,
    /// Population (aging window) size.
    pub population: usize,
    /// Tournament size.
    pub sample: usize,
}

impl<S: Space> Strategy<S> for ParetoTournament {
    fn name(&self) -> String {
        format!(
            "pareto-tournament(population={},sample={},objectives={})",
            self.population,
            self.sample,
            self.metrics.join("+")
        )
    }

    fn propose(
        &self,
        space: &S,
        history: &[Trial<S::Candidate>],
        rng: &mut ChaCha8Rng,
    ) -> S::Candidate {
        let seen = seen(space, history);
        let window = &history[history.len().saturating_sub(self.population)..];
        let scored: Vec<(&Trial<S::Candidate>, Vec<f64>)> = window
            .iter()
            .filter_map(|t| {
                let v: Option<Vec<f64>> = self.metrics.iter().map(|m| t.metric(m)).collect();
                v.map(|v| (t, v))
            })
            .collect();
        if history.len() < self.population || scored.is_empty() {
            return fresh_sample(space, &seen, rng);
        }
        let picked: Vec<&(&Trial<S::Candidate>, Vec<f64>)> = (0..self.sample.max(1))
            .map(|_| &scored[rng.random_range(0..scored.len())])
            .collect();
        let points: Vec<Vec<f64>> = picked.iter().map(|p| p.1.clone()).collect();
        let f = front(&points);
        let winner = &picked[f[rng.random_range(0..f.len())]].0.candidate;
        for _ in 0..32 {
            let child = space.mutate(winner, rng);
            if !seen.contains(&space.encode(&child)) {
                return child;
            }
        }
        fresh_sample(space, &seen, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_and_hypervolume_of_known_points() {
        let pts = vec![
            vec![1.0, 3.0],
            vec![2.0, 2.0],
            vec![3.0, 1.0],
            vec![1.5, 1.5], // dominated by (2, 2)
            vec![2.0, 2.0], // a repeat
        ];
        assert_eq!(front(&pts), vec![0, 1, 2]);
        // Staircase over (0, 0): 3*1 + 2*1 + 1*1 = 6.
        assert!((hypervolume_2d(&pts, [0.0, 0.0]) - 6.0).abs() < 1e-12);
        assert_eq!(hypervolume_2d(&pts, [3.0, 0.0]), 0.0);
        assert!(dominates(&[2.0, 2.0], &[1.5, 2.0]));
        assert!(!dominates(&[2.0, 2.0], &[2.0, 2.0]));
    }
}
