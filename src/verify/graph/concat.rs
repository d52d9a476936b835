//! Concatenation along one axis, on flat row-major tensors: every input contributes a block of
//! `inner[k]` elements to each of `outer` output blocks (`outer = 1` for channels of a
//! `[C, H, W]` map).

use z3::ast::Real;

use super::rules::{PhaseOf, Rows, Rules, SizeError, Z3Encoding};
use super::zonotope::Zonotope;
use crate::verify::bounds::LayerBounds;

/// `y[o, offset_k + j] = x_k[o, j]` for `o < outer`, `j < inner[k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Concat {
    /// The product of the dimensions before the axis.
    pub outer: usize,
    /// Each input's product of the axis and the dimensions after it.
    pub inner: Vec<usize>,
}

impl Concat {
    /// Calls `f(input, input index, output index)` for every element.
    fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let total: usize = self.inner.iter().sum();
        for o in 0..self.outer {
            let mut offset = 0;
            for (k, &n) in self.inner.iter().enumerate() {
                for j in 0..n {
                    f(k, o * n + j, o * total + offset + j);
                }
                offset += n;
            }
        }
    }

    fn gather<T: Clone>(&self, x: &[&[T]]) -> Vec<T> {
        let mut y: Vec<Option<T>> = vec![None; self.outer * self.inner.iter().sum::<usize>()];
        self.for_each(|k, i, o| y[o] = Some(x[k][i].clone()));
        y.into_iter()
            .map(|v| v.expect("every output set"))
            .collect()
    }
}

impl Rules for Concat {
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError> {
        if inputs.len() != self.inner.len() {
            return Err(SizeError(format!(
                "concatenates {} tensors but receives {}",
                self.inner.len(),
                inputs.len()
            )));
        }
        for (n, i) in inputs.iter().zip(&self.inner) {
            if *n != self.outer * i {
                return Err(SizeError(format!(
                    "an input of {n} elements does not fit the concatenation"
                )));
            }
        }
        Ok(inputs.iter().sum())
    }

    fn forward(&self, x: &[&[f64]]) -> Vec<f64> {
        self.gather(x)
    }

    fn gradient(&self, _x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]) {
        self.for_each(|k, i, o| grads[k][i] += g[o]);
    }

    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
        (self.gather(lo), self.gather(hi))
    }

    fn back(&self, lam: Rows, _consts: &mut [f64], _bounds: Option<&LayerBounds>) -> Vec<Rows> {
        let mut out: Vec<Rows> = self
            .inner
            .iter()
            .map(|i| Rows::zeros(lam.n, self.outer * i))
            .collect();
        for r in 0..lam.n {
            let row = lam.row(r);
            self.for_each(|k, i, o| {
                let d = out[k].dim;
                out[k].data[r * d + i] = row[o];
            });
        }
        out
    }

    fn zonotope(
        &self,
        x: &[&Zonotope],
        _bounds: Option<&LayerBounds>,
        _symbols: &mut usize,
    ) -> Option<Zonotope> {
        let n = self.outer * self.inner.iter().sum::<usize>();
        Some(Zonotope::gather(x, n, |f| self.for_each(f)))
    }

    fn forms(
        &self,
        x: &[&Rows],
        _bounds: Option<&LayerBounds>,
        _phase: PhaseOf<'_>,
        _phase_rows: &mut Vec<(Vec<f64>, bool)>,
    ) -> Option<Rows> {
        let cols = x[0].dim;
        let n = self.outer * self.inner.iter().sum::<usize>();
        let mut out = Rows::zeros(n, cols);
        self.for_each(|k, i, o| out.row_mut(o).copy_from_slice(x[k].row(i)));
        Some(out)
    }

    fn z3(
        &self,
        x: &[&[Real]],
        _bounds: Option<&LayerBounds>,
        _enc: &Z3Encoding,
    ) -> Option<Vec<Real>> {
        Some(self.gather(x))
    }
}
