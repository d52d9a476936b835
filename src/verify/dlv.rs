//! The region-and-manipulations form of SMT-based safety verification (Huang, Kwiatkowska,
//! Wang and Wu, 2017): around a point, a box over chosen input dimensions, and a family of
//! discrete manipulations, each moving one chosen dimension by plus or minus a step. The points
//! reachable by manipulations inside the box form a grid; the point is safe for the family when
//! every grid point keeps its class. The grid is searched exhaustively; the continuous box can
//! be verified as well (a stronger statement) with [`ManipulationSpec::region_spec`].

use rayon::prelude::*;
use serde::Serialize;

use super::graph::Network;
use super::spec::Spec;
use super::VerifyError;

/// A region and its manipulations.
#[derive(Debug, Clone, Serialize)]
pub struct ManipulationSpec {
    /// The point.
    pub center: Vec<f64>,
    /// The dimensions that may change.
    pub dims: Vec<usize>,
    /// Half-width of the box on each chosen dimension.
    pub radius: f64,
    /// Length of one manipulation.
    pub step: f64,
    /// The class every point must keep.
    pub label: usize,
}

/// The result of the exhaustive search.
#[derive(Debug, Clone, Serialize)]
pub struct GridResult {
    /// Grid points checked.
    pub points: u64,
    /// Grid points whose class is not the label.
    pub misclassified: u64,
    /// The misclassified point nearest the centre (L1 in steps, then enumeration order).
    pub counterexample: Option<Vec<f64>>,
}

/// The most grid points searched.
pub const MAX_POINTS: u64 = 200_000_000;

impl ManipulationSpec {
    /// Steps from the centre to the edge of the box.
    pub fn steps(&self) -> usize {
        (self.radius / self.step + 1e-9).floor() as usize
    }

    /// Number of grid points.
    pub fn grid_size(&self) -> u64 {
        (2 * self.steps() as u64 + 1).saturating_pow(self.dims.len() as u32)
    }

    /// Checks the settings against the network.
    pub fn validate(&self, net: &Network) -> Result<(), VerifyError> {
        if self.center.len() != net.input_dim() {
            return Err(VerifyError::Mismatch(format!(
                "the point has {} values, the network takes {}",
                self.center.len(),
                net.input_dim()
            )));
        }
        if let Some(d) = self.dims.iter().find(|d| **d >= net.input_dim()) {
            return Err(VerifyError::Mismatch(format!(
                "dimension {d} is not an input of the network"
            )));
        }
        if !(self.step > 0.0
            && self.radius >= 0.0
            && self.step.is_finite()
            && self.radius.is_finite())
        {
            return Err(VerifyError::Mismatch(
                "the step must be positive and the radius nonnegative".into(),
            ));
        }
        if self.label >= net.output_dim() {
            return Err(VerifyError::Mismatch(format!(
                "label {} is not an output of the network",
                self.label
            )));
        }
        if self.grid_size() > MAX_POINTS {
            return Err(VerifyError::Mismatch(format!(
                "the grid has {} points, more than the {MAX_POINTS} searched exhaustively; use a larger step",
                self.grid_size()
            )));
        }
        Ok(())
    }

    /// The continuous box as a robustness property.
    pub fn region_spec(&self, n_outputs: usize) -> Spec {
        let mut spec = Spec::robustness(&self.center, 0.0, self.label, n_outputs, None);
        for r in &mut spec.regions {
            for &d in &self.dims {
                r.input.lower[d] = self.center[d] - self.radius;
                r.input.upper[d] = self.center[d] + self.radius;
            }
        }
        spec.name = format!(
            "region radius={} dims={:?} label={}",
            self.radius, self.dims, self.label
        );
        spec
    }

    /// Searches every grid point.
    pub fn exhaustive(&self, net: &Network) -> GridResult {
        let m = self.steps() as i64;
        let side = (2 * m + 1) as u64;
        let total = self.grid_size();
        let point = |mut idx: u64| -> (Vec<f64>, u64) {
            let mut x = self.center.clone();
            let mut l1 = 0;
            for &d in &self.dims {
                let off = (idx % side) as i64 - m;
                idx /= side;
                x[d] = self.center[d] + off as f64 * self.step;
                l1 += off.unsigned_abs();
            }
            (x, l1)
        };
        let keeps = |x: &[f64]| {
            let y = net.forward(x);
            let top = y[self.label];
            y.iter()
                .enumerate()
                .all(|(j, v)| j == self.label || *v < top)
        };
        let chunk = 4096u64;
        let (misclassified, best) = (0..total.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut bad = 0u64;
                let mut best: Option<(u64, u64, Vec<f64>)> = None;
                for idx in c * chunk..((c + 1) * chunk).min(total) {
                    let (x, l1) = point(idx);
                    if !keeps(&x) {
                        bad += 1;
                        if best.as_ref().is_none_or(|b| (l1, idx) < (b.0, b.1)) {
                            best = Some((l1, idx, x));
                        }
                    }
                }
                (bad, best)
            })
            .reduce(
                || (0, None),
                |a, b| {
                    let best = match (a.1, b.1) {
                        (Some(p), Some(q)) => Some(if (p.0, p.1) <= (q.0, q.1) { p } else { q }),
                        (p, q) => p.or(q),
                    };
                    (a.0 + b.0, best)
                },
            );
        GridResult {
            points: total,
            misclassified,
            counterexample: best.map(|b| b.2),
        }
    }
}
