//! The element-wise product of two tensors of one size (the gate of squeeze-excitation, SiLU
//! as `x * sigmoid(x)`), relaxed by McCormick planes. Bilinear: no exact linear encoding.

use super::rules::{Rows, Rules, SizeError};
use crate::verify::bounds::LayerBounds;

/// `z = x * y` element-wise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mul;

/// A plane `a x + b y + c`.
type Plane = (f64, f64, f64);

/// The McCormick planes `(below, above)` of `x y` on `[lx, ux] x [ly, uy]`: of the two planes
/// each side, the one tighter at the box's centre, with a rounding slack.
fn mccormick(lx: f64, ux: f64, ly: f64, uy: f64) -> (Plane, Plane) {
    let (xc, yc) = (0.5 * (lx + ux), 0.5 * (ly + uy));
    let at = |p: Plane| p.0 * xc + p.1 * yc + p.2;
    let below = [(ly, lx, -lx * ly), (uy, ux, -ux * uy)];
    let above = [(uy, lx, -lx * uy), (ly, ux, -ux * ly)];
    let lo = if at(below[0]) >= at(below[1]) {
        below[0]
    } else {
        below[1]
    };
    let hi = if at(above[0]) <= at(above[1]) {
        above[0]
    } else {
        above[1]
    };
    let slack = 1e-12 * (1.0 + lx.abs().max(ux.abs()) * ly.abs().max(uy.abs()));
    ((lo.0, lo.1, lo.2 - slack), (hi.0, hi.1, hi.2 + slack))
}

impl Rules for Mul {
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError> {
        match inputs {
            [a, b] if a == b => Ok(*a),
            [a, b] => Err(SizeError(format!(
                "multiplies tensors of different sizes {a} and {b}"
            ))),
            _ => Err(SizeError("a product takes two inputs".into())),
        }
    }

    fn forward(&self, x: &[&[f64]]) -> Vec<f64> {
        x[0].iter().zip(x[1]).map(|(a, b)| a * b).collect()
    }

    fn gradient(&self, x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]) {
        for i in 0..g.len() {
            grads[0][i] += g[i] * x[1][i];
            grads[1][i] += g[i] * x[0][i];
        }
    }

    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
        let n = lo[0].len();
        let (mut l, mut u) = (vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            let p = [
                lo[0][i] * lo[1][i],
                lo[0][i] * hi[1][i],
                hi[0][i] * lo[1][i],
                hi[0][i] * hi[1][i],
            ];
            l[i] = p.iter().copied().fold(f64::INFINITY, f64::min);
            u[i] = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        }
        (l, u)
    }

    fn back(&self, lam: Rows, consts: &mut [f64], bounds: Option<&LayerBounds>) -> Vec<Rows> {
        let b = bounds.expect("a product is bounded");
        let n = lam.dim;
        let planes: Vec<(Plane, Plane)> = (0..n)
            .map(|i| mccormick(b.lower[i], b.upper[i], b.lower[n + i], b.upper[n + i]))
            .collect();
        let (mut gx, mut gy) = (Rows::zeros(lam.n, n), Rows::zeros(lam.n, n));
        for (r, c) in consts.iter_mut().enumerate() {
            for (i, (below, above)) in planes.iter().enumerate() {
                let li = lam.data[r * n + i];
                if li == 0.0 {
                    continue;
                }
                let p = if li > 0.0 { below } else { above };
                gx.data[r * n + i] = li * p.0;
                gy.data[r * n + i] = li * p.1;
                *c += li * p.2;
            }
        }
        vec![gx, gy]
    }

    fn need_bounds(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_enclose_the_product() {
        for (lx, ux, ly, uy) in [
            (-1.0, 2.0, 0.5, 3.0),
            (-2.0, -1.0, -3.0, 4.0),
            (0.0, 1.0, 0.0, 1.0),
        ] {
            let (lo, hi) = mccormick(lx, ux, ly, uy);
            for i in 0..=20 {
                for j in 0..=20 {
                    let x = lx + (ux - lx) * i as f64 / 20.0;
                    let y = ly + (uy - ly) * j as f64 / 20.0;
                    assert!(lo.0 * x + lo.1 * y + lo.2 <= x * y + 1e-12);
                    assert!(hi.0 * x + hi.1 * y + hi.2 >= x * y - 1e-12);
                }
            }
        }
    }
}
