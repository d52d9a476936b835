//! A fast falsifier: random sampling and projected gradient descent on the margin of a region's
//! constraints. It can only find counterexamples, never prove anything; every point it returns
//! has been re-checked by a plain forward pass.

use std::time::Instant;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::Network;
use super::spec::Region;

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
    /// Uniform random samples first.
    pub samples: usize,
    /// Gradient-descent restarts.
    pub restarts: usize,
    /// Steps per restart.
    pub steps: usize,
}

impl Default for Falsifier {
    fn default() -> Self {
        Falsifier {
            samples: 256,
            restarts: 8,
            steps: 60,
        }
    }
}

impl Falsifier {
    /// Looks for a counterexample in `region` until done or `deadline`.
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
        let n = b.dim();
        let sample = |rng: &mut ChaCha8Rng| -> Vec<f64> {
            (0..n)
                .map(|j| {
                    if b.upper[j] > b.lower[j] {
                        rng.random_range(b.lower[j]..=b.upper[j])
                    } else {
                        b.lower[j]
                    }
                })
                .collect()
        };
        let mut starts: Vec<(f64, Vec<f64>)> = Vec::new();
        let center = b.center();
        if let Some(x) = confirm(net, region, &center) {
            return Some(x);
        }
        starts.push((margin(region, &net.forward(&center)), center));
        for _ in 0..self.samples {
            let x = sample(rng);
            let y = net.forward(&x);
            if region.violated_by(&x, &y) {
                return Some(x);
            }
            starts.push((margin(region, &y), x));
        }
        if Instant::now() >= deadline {
            return None;
        }
        // Descend from the best samples first.
        starts.sort_by(|a, b| a.0.total_cmp(&b.0));
        starts.truncate(self.restarts);
        let width: Vec<f64> = b.lower.iter().zip(&b.upper).map(|(l, u)| u - l).collect();
        for (_, mut x) in starts {
            let mut step = 0.25;
            for _ in 0..self.steps {
                let y = net.forward(&x);
                // The constraint furthest from holding is the one to push down.
                let (k, _) = region
                    .constraints
                    .iter()
                    .enumerate()
                    .map(|(k, c)| (k, c.value(&y)))
                    .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
                let g = net.gradient(&x, &region.constraints[k].coeffs);
                if g.iter().all(|v| *v == 0.0) {
                    break;
                }
                for j in 0..n {
                    x[j] = (x[j] - step * width[j] * g[j].signum()).clamp(b.lower[j], b.upper[j]);
                }
                if let Some(cex) = confirm(net, region, &x) {
                    return Some(cex);
                }
                step *= 0.9;
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
        None
    }
}
