//! The weighted sum of tensors of one shape, `y = sum_k c_k x_k`: residual additions,
//! subtractions of two tensors, and the joins of cells.

use z3::ast::Real;

use super::rules::{PhaseOf, Rows, Rules, SizeError, Z3Encoding};
use super::zonotope::Zonotope;
use crate::verify::bounds::LayerBounds;
use crate::verify::smt::exact;

/// `y = sum_k coeffs[k] * x_k`.
#[derive(Debug, Clone, PartialEq)]
pub struct Add {
    /// One coefficient per input.
    pub coeffs: Vec<f64>,
}

impl Rules for Add {
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError> {
        if inputs.len() != self.coeffs.len() || inputs.is_empty() {
            return Err(SizeError(format!(
                "a sum of {} terms receives {} inputs",
                self.coeffs.len(),
                inputs.len()
            )));
        }
        if let Some(n) = inputs.iter().find(|n| **n != inputs[0]) {
            return Err(SizeError(format!(
                "adds tensors of different sizes {} and {n}",
                inputs[0]
            )));
        }
        Ok(inputs[0])
    }

    fn forward(&self, x: &[&[f64]]) -> Vec<f64> {
        let mut y = vec![0.0; x[0].len()];
        for (xk, c) in x.iter().zip(&self.coeffs) {
            for (a, b) in y.iter_mut().zip(xk.iter()) {
                *a += c * b;
            }
        }
        y
    }

    fn gradient(&self, _x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]) {
        for (gk, c) in grads.iter_mut().zip(&self.coeffs) {
            for (a, b) in gk.iter_mut().zip(g) {
                *a += c * b;
            }
        }
    }

    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
        let n = lo[0].len();
        let (mut l, mut u) = (vec![0.0; n], vec![0.0; n]);
        for k in 0..self.coeffs.len() {
            let c = self.coeffs[k];
            let (a, b) = if c >= 0.0 {
                (lo[k], hi[k])
            } else {
                (hi[k], lo[k])
            };
            for i in 0..n {
                l[i] += c * a[i];
                u[i] += c * b[i];
            }
        }
        (l, u)
    }

    fn back(&self, lam: Rows, _consts: &mut [f64], _bounds: Option<&LayerBounds>) -> Vec<Rows> {
        let scaled = |c: f64| Rows {
            n: lam.n,
            dim: lam.dim,
            data: lam.data.iter().map(|v| c * v).collect(),
        };
        let mut out: Vec<Rows> = self.coeffs[1..].iter().map(|&c| scaled(c)).collect();
        let first = if self.coeffs[0] == 1.0 {
            lam
        } else {
            scaled(self.coeffs[0])
        };
        out.insert(0, first);
        out
    }

    fn zonotope(
        &self,
        x: &[&Zonotope],
        _bounds: Option<&LayerBounds>,
        _symbols: &mut usize,
    ) -> Option<Zonotope> {
        let terms: Vec<(&Zonotope, f64)> =
            x.iter().copied().zip(self.coeffs.iter().copied()).collect();
        Some(Zonotope::weighted_sum(&terms))
    }

    fn forms(
        &self,
        x: &[&Rows],
        _bounds: Option<&LayerBounds>,
        _phase: PhaseOf<'_>,
        _phase_rows: &mut Vec<(Vec<f64>, bool)>,
    ) -> Option<Rows> {
        let mut out = Rows::zeros(x[0].n, x[0].dim);
        for (xk, c) in x.iter().zip(&self.coeffs) {
            for (a, b) in out.data.iter_mut().zip(&xk.data) {
                *a += c * b;
            }
        }
        Some(out)
    }

    fn z3(
        &self,
        x: &[&[Real]],
        _bounds: Option<&LayerBounds>,
        enc: &Z3Encoding,
    ) -> Option<Vec<Real>> {
        Some(
            (0..x[0].len())
                .map(|i| {
                    let terms: Vec<Real> = x
                        .iter()
                        .zip(&self.coeffs)
                        .map(|(xk, c)| Real::mul(&[&exact(*c), &xk[i]]))
                        .collect();
                    let refs: Vec<&Real> = terms.iter().collect();
                    let z = enc.var("s", i);
                    enc.solver.assert(z.eq(Real::add(&refs)));
                    z
                })
                .collect(),
        )
    }
}
