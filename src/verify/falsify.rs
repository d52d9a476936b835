//! A fast falsifier: random sampling and projected gradient descent on the margin of a region's
//! constraints. It can only find counterexamples, never prove anything; every point it returns
//! has been re-checked by a plain forward pass.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::bounds::{joint_minimum, LinearBound};
use super::graph::Network;
use super::spec::{InputBox, Region};

/// The largest constraint value at `y` (the conjunction holds when it is `<= 0`).
pub fn margin(region: &Region, y: &[f64]) -> f64 {
    region
        .constraints
        .iter()
        .map(|c| c.value(y))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Checks a candidate with a forward pass: `Some(x)` when it lies in the region and its output
/// meets every constraint.
pub fn confirm(net: &Network, region: &Region, x: &[f64]) -> Option<Vec<f64>> {
    let y = net.forward(x);
    region.violated_by(x, &y).then(|| x.to_vec())
}

/// Settings of the falsifier.
#[derive(Debug, Clone, Copy)]
pub struct Falsifier {
    /// Uniform random samples first (evaluated in parallel).
    pub samples: usize,
    /// Local descents, started from the best samples.
    pub restarts: usize,
    /// Steps per descent.
    pub steps: usize,
}

impl Default for Falsifier {
    fn default() -> Self {
        Falsifier {
            samples: 4096,
            restarts: 16,
            steps: 40,
        }
    }
}

/// Points with their margins, best first.
type Starts = Vec<(f64, Vec<f64>)>;

/// Samples per parallel chunk (each chunk has its own seeded generator, so the result does not
/// depend on the thread count).
const CHUNK: usize = 1024;

/// Samples whose forward passes are computed together (one matrix product per affine node).
const BLOCK: usize = 64;

impl Falsifier {
    /// This falsifier with `factor` times the samples and descents.
    pub fn scaled(&self, factor: usize) -> Falsifier {
        Falsifier {
            samples: self.samples * factor,
            restarts: self.restarts * factor,
            steps: self.steps,
        }
    }

    /// Looks for a counterexample in `region` until done or `deadline`.
    ///
    /// Uniform samples first; then, from the samples with the smallest margin, a trust-region
    /// descent on the margin: the network is linearised at the current point (its gradient for
    /// each constraint), a small LP finds the point of the trust region that minimises the
    /// largest linearised constraint, and the step is kept when the true margin drops (the
    /// region grows), else the region shrinks. On a piecewise-linear network this walks across
    /// linear regions much more surely than signed gradient steps.
    pub fn run(
        &self,
        net: &Network,
        region: &Region,
        rng: &mut ChaCha8Rng,
        deadline: Instant,
    ) -> Option<Vec<f64>> {
        if region.constraints.is_empty() {
            // Every input of the box is unsafe.
            return confirm(net, region, &region.input.center());
        }
        let b = &region.input;
        let center = b.center();
        if let Some(x) = confirm(net, region, &center) {
            return Some(x);
        }
        let seed: u64 = rng.random();
        let chunks = self.samples.div_ceil(CHUNK);
        // Only the best `restarts` samples are kept, per chunk and when chunks are merged (in
        // chunk order, ties broken by sample number), so memory stays bounded however many
        // samples a round draws and the result does not depend on the thread count.
        let keep = self.restarts.max(1);
        let best_of = |mut v: Vec<(f64, usize, Vec<f64>)>| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            v.truncate(keep);
            v
        };
        let sampled: Result<Vec<(f64, usize, Vec<f64>)>, Vec<f64>> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut best: Vec<(f64, usize, Vec<f64>)> = Vec::new();
                if Instant::now() >= deadline {
                    return Ok(best);
                }
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let count = CHUNK.min(self.samples - c * CHUNK);
                for start in (0..count).step_by(BLOCK) {
                    // Every block checks the clock: on a large network one forward pass
                    // takes milliseconds.
                    if Instant::now() >= deadline {
                        break;
                    }
                    let xs: Vec<Vec<f64>> = (start..count.min(start + BLOCK))
                        .map(|_| uniform_point(b, &mut rng))
                        .collect();
                    let ys = net.forward_many(&xs);
                    for (k, (x, y)) in xs.into_iter().zip(ys).enumerate() {
                        if region.violated_by(&x, &y) {
                            // The plain forward pass confirms it.
                            if let Some(x) = confirm(net, region, &x) {
                                return Err(x);
                            }
                        }
                        best.push((margin(region, &y), c * CHUNK + start + k, x));
                    }
                    if best.len() >= 2 * keep {
                        best = best_of(best);
                    }
                }
                Ok(best_of(best))
            })
            .reduce(
                || Ok(Vec::new()),
                |a, b| match (a, b) {
                    (Err(x), _) | (Ok(_), Err(x)) => Err(x),
                    (Ok(mut a), Ok(b)) => {
                        a.extend(b);
                        Ok(best_of(a))
                    }
                },
            );
        let mut starts: Starts = vec![(margin(region, &net.forward(&center)), center)];
        match sampled {
            Err(x) => return Some(x),
            Ok(best) => starts.extend(best.into_iter().map(|(m, _, x)| (m, x))),
        }
        starts.sort_by(|a, b| a.0.total_cmp(&b.0));
        starts.truncate(self.restarts.max(1));
        starts
            .into_par_iter()
            .map(|(m, x)| {
                if Instant::now() >= deadline {
                    return None;
                }
                self.descend(net, region, x, m, deadline)
            })
            .find_first(Option::is_some)
            .flatten()
    }

    /// Trust-region descent on the margin from `x` (margin `m`).
    fn descend(
        &self,
        net: &Network,
        region: &Region,
        mut x: Vec<f64>,
        mut m: f64,
        deadline: Instant,
    ) -> Option<Vec<f64>> {
        let mut rho = 0.1;
        for _ in 0..self.steps {
            if Instant::now() >= deadline {
                return None;
            }
            let x2 = linearised_step(net, region, &x, rho);
            let y2 = net.forward(&x2);
            if region.violated_by(&x2, &y2) {
                return Some(x2);
            }
            let m2 = margin(region, &y2);
            if m2 < m {
                (x, m) = (x2, m2);
                rho = (rho * 2.0).min(0.5);
            } else {
                rho *= 0.3;
                if rho < 1e-7 {
                    break;
                }
            }
        }
        None
    }
}

/// A point drawn uniformly from the box (a dimension of zero width keeps its one value).
fn uniform_point(b: &InputBox, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..b.dim())
        .map(|j| {
            if b.upper[j] > b.lower[j] {
                rng.random_range(b.lower[j]..=b.upper[j])
            } else {
                b.lower[j]
            }
        })
        .collect()
}

/// A counterexample moved deeper into the unsafe set: linearised steps (as in the descent)
/// that lower the margin further, each kept only when the forward pass still confirms it.
/// Float32 runtimes, which the competition checks counterexamples with, differ from the f64
/// forward pass by up to about 1e-4 on ACAS Xu, so a point just inside in f64 can fall outside
/// there.
pub fn deepen(net: &Network, region: &Region, x: Vec<f64>, deadline: Instant) -> Vec<f64> {
    let (mut best, mut m) = (x.clone(), margin(region, &net.forward(&x)));
    let mut rho = 0.05;
    for _ in 0..30 {
        if Instant::now() >= deadline || rho < 1e-7 {
            break;
        }
        let x2 = linearised_step(net, region, &best, rho);
        let y2 = net.forward(&x2);
        let m2 = margin(region, &y2);
        if region.violated_by(&x2, &y2) && m2 < m {
            (best, m) = (x2, m2);
            rho = (rho * 2.0).min(0.5);
        } else {
            rho *= 0.3;
        }
    }
    best
}

/// The point of the trust region (the box around `x` of `rho` times the region's widths, cut to
/// the region) that minimises the largest constraint, with the network linearised at `x`.
fn linearised_step(net: &Network, region: &Region, x: &[f64], rho: f64) -> Vec<f64> {
    let b = &region.input;
    let trust = InputBox {
        lower: (0..x.len())
            .map(|j| (x[j] - rho * (b.upper[j] - b.lower[j])).max(b.lower[j]))
            .collect(),
        upper: (0..x.len())
            .map(|j| (x[j] + rho * (b.upper[j] - b.lower[j])).min(b.upper[j]))
            .collect(),
    };
    // Each constraint linearised at x: c(y(x)) + g . (x' - x).
    let y = net.forward(x);
    let lins: Vec<LinearBound> = region
        .constraints
        .iter()
        .map(|c| {
            let g = net.gradient(x, &c.coeffs);
            let constant = c.value(&y) - g.iter().zip(x).map(|(gj, xj)| gj * xj).sum::<f64>();
            LinearBound {
                coeffs: g,
                constant,
                lower: f64::NEG_INFINITY,
            }
        })
        .collect();
    if let [one] = lins.as_slice() {
        // One constraint: the minimising vertex.
        return one.minimizer(&trust);
    }
    joint_minimum(&lins, &trust).map_or_else(|| x.to_vec(), |(_, p)| p)
}
