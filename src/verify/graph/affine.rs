//! The affine node `W x + b`: Gemm, MatMul, Conv, folded batch norm, constant scalings and
//! shifts, average pooling, padding, slicing and broadcasting, all one rule set.

use z3::ast::Real;

use super::linear::{dot, Affine};
use super::rules::{PhaseOf, Rows, Rules, SizeError, Z3Encoding};
use super::zonotope::Zonotope;
use crate::verify::bounds::LayerBounds;
use crate::verify::smt::exact;

impl Rules for Affine {
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError> {
        match inputs {
            [n] if *n == self.linear.in_dim() => {
                if self.bias.len() != self.linear.out_dim() {
                    return Err(SizeError(format!(
                        "{} biases for {} outputs",
                        self.bias.len(),
                        self.linear.out_dim()
                    )));
                }
                if self
                    .bias
                    .iter()
                    .chain(self.linear.weights())
                    .any(|v| !v.is_finite())
                {
                    return Err(SizeError("a weight is not a finite number".into()));
                }
                Ok(self.linear.out_dim())
            }
            [n] => Err(SizeError(format!(
                "takes {} inputs but receives {n}",
                self.linear.in_dim()
            ))),
            _ => Err(SizeError("an affine map takes one input".into())),
        }
    }

    fn forward(&self, x: &[&[f64]]) -> Vec<f64> {
        Affine::forward(self, x[0])
    }

    /// `W X` in one blocked product, then the bias added to every column.
    fn forward_columns(&self, x: &[&Rows]) -> Rows {
        let mut out = self.linear.apply_rows(x[0]);
        for (i, b) in self.bias.iter().enumerate() {
            out.row_mut(i).iter_mut().for_each(|v| *v += b);
        }
        out
    }

    fn gradient(&self, _x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]) {
        self.linear.apply_transposed_add(g, &mut grads[0]);
    }

    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
        let (lo, hi) = (lo[0], hi[0]);
        let center: Vec<f64> = lo.iter().zip(hi).map(|(l, u)| 0.5 * (l + u)).collect();
        let radius: Vec<f64> = lo.iter().zip(hi).map(|(l, u)| 0.5 * (u - l)).collect();
        let c = Affine::forward(self, &center);
        let r = self.linear.apply_abs(&radius);
        (
            c.iter().zip(&r).map(|(c, r)| c - r).collect(),
            c.iter().zip(&r).map(|(c, r)| c + r).collect(),
        )
    }

    fn back(&self, lam: Rows, consts: &mut [f64], _bounds: Option<&LayerBounds>) -> Vec<Rows> {
        for (r, c) in consts.iter_mut().enumerate() {
            *c += dot(lam.row(r), &self.bias);
        }
        let dim = self.linear.in_dim();
        vec![Rows {
            n: lam.n,
            dim,
            data: self.linear.left_multiply(lam.n, &lam.data),
        }]
    }

    /// Exact: `W` applied to every column (the constant's too), then the bias added.
    fn zonotope(
        &self,
        x: &[&Zonotope],
        _bounds: Option<&LayerBounds>,
        _symbols: &mut usize,
    ) -> Option<Zonotope> {
        let mut rows = self.linear.apply_rows(&x[0].rows);
        for (i, b) in self.bias.iter().enumerate() {
            rows.row_mut(i)[0] += b;
        }
        Some(Zonotope { rows })
    }

    fn cost(&self, _out_dim: usize) -> usize {
        self.linear.connections()
    }

    fn exact_on_box(&self) -> bool {
        true
    }

    fn forms(
        &self,
        x: &[&Rows],
        _bounds: Option<&LayerBounds>,
        _phase: PhaseOf<'_>,
        _phase_rows: &mut Vec<(Vec<f64>, bool)>,
    ) -> Option<Rows> {
        // W applied to every column of the input's forms; the bias joins the constant column.
        let mut out = self.linear.apply_rows(x[0]);
        let cols = out.dim;
        for (r, b) in self.bias.iter().enumerate() {
            out.data[r * cols + cols - 1] += b;
        }
        Some(out)
    }

    fn z3(
        &self,
        x: &[&[Real]],
        _bounds: Option<&LayerBounds>,
        enc: &Z3Encoding,
    ) -> Option<Vec<Real>> {
        let mut terms: Vec<Vec<Real>> = vec![Vec::new(); self.linear.out_dim()];
        self.linear
            .for_each_nonzero(|r, c, w| terms[r].push(Real::mul(&[&exact(w), &x[0][c]])));
        Some(
            terms
                .into_iter()
                .zip(&self.bias)
                .enumerate()
                .map(|(i, (mut t, b))| {
                    t.push(exact(*b));
                    let refs: Vec<&Real> = t.iter().collect();
                    let z = enc.var("z", i);
                    enc.solver.assert(z.eq(Real::add(&refs)));
                    z
                })
                .collect(),
        )
    }
}
