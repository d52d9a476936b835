//! Zonotopes over the network's input (DeepZ, Singh et al., NeurIPS 2018): every element of a
//! node is an affine function of noise symbols `e_k` in `[-1, 1]`. The first symbols are the
//! input box (`x_j = mid_j + rad_j e_j`); every relaxed nonlinearity adds one symbol per element
//! it cannot pass exactly. Affine maps and joins are exact on zonotopes, so, unlike intervals
//! or separate lower and upper functions, the error a relaxation makes is carried with its
//! sign and cancels where the network's weights cancel it.

use rayon::prelude::*;

use super::rules::Rows;

/// Elements as rows over `[constant, e_0, e_1, ...]`. A zonotope made before later symbols
/// existed has fewer columns: the missing coefficients are zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Zonotope {
    /// One row per element: the constant, then the coefficient of each symbol.
    pub rows: Rows,
}

/// `y = slope * x + t` with `t` anywhere in `[lo, hi]`: how a nonlinearity bounds one element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Slope of the line.
    pub slope: f64,
    /// Smallest offset.
    pub lo: f64,
    /// Largest offset.
    pub hi: f64,
}

impl Band {
    /// The element passes unchanged.
    pub const IDENTITY: Band = Band {
        slope: 1.0,
        lo: 0.0,
        hi: 0.0,
    };
    /// The element is zero.
    pub const ZERO: Band = Band {
        slope: 0.0,
        lo: 0.0,
        hi: 0.0,
    };
}

/// Relative slack of concrete bounds against the rounding of long sums.
const ROUNDING: f64 = 1e-9;

impl Zonotope {
    /// The box `[lower, upper]`, one symbol per element (numbered from 0; `symbols` becomes
    /// the box's size).
    pub fn input(lower: &[f64], upper: &[f64], symbols: &mut usize) -> Zonotope {
        let n = lower.len();
        let mut rows = Rows::zeros(n, n + 1);
        for j in 0..n {
            let r = rows.row_mut(j);
            r[0] = 0.5 * (lower[j] + upper[j]);
            r[1 + j] = 0.5 * (upper[j] - lower[j]);
        }
        *symbols = n;
        Zonotope { rows }
    }

    /// The interval `[lower, upper]` of each element, one new symbol per element of positive
    /// width: what a node without a zonotope rule contributes.
    pub fn from_interval(lower: &[f64], upper: &[f64], symbols: &mut usize) -> Zonotope {
        let n = lower.len();
        let first = *symbols;
        let mut rows = Rows::zeros(n, 1 + first + n);
        for i in 0..n {
            let r = rows.row_mut(i);
            r[0] = 0.5 * (lower[i] + upper[i]);
            r[1 + first + i] = 0.5 * (upper[i] - lower[i]);
        }
        *symbols += n;
        Zonotope { rows }
    }

    /// Sound interval bounds of every element: the constant minus and plus the sum of the
    /// coefficients' magnitudes, widened by a rounding slack.
    pub fn bounds(&self) -> (Vec<f64>, Vec<f64>) {
        let pairs: Vec<(f64, f64)> = (0..self.rows.n)
            .into_par_iter()
            .map(|i| {
                let r = self.rows.row(i);
                let c = r[0];
                let g: f64 = r[1..].iter().map(|v| v.abs()).sum();
                let slack = ROUNDING * (1.0 + c.abs() + g);
                (c - g - slack, c + g + slack)
            })
            .collect();
        pairs.into_iter().unzip()
    }

    /// Each element through its band: `slope * x` plus the band's middle, and a new symbol for
    /// its half-width where that is positive.
    pub fn band(&self, band: impl Fn(usize) -> Band + Sync, symbols: &mut usize) -> Zonotope {
        let n = self.rows.n;
        let bands: Vec<Band> = (0..n).map(&band).collect();
        let fresh: Vec<usize> = {
            let mut next = *symbols;
            bands
                .iter()
                .map(|b| {
                    if b.hi > b.lo {
                        next += 1;
                        next
                    } else {
                        0
                    }
                })
                .collect()
        };
        let added = fresh.iter().filter(|f| **f > 0).count();
        let cols = if added > 0 {
            1 + *symbols + added
        } else {
            self.rows.dim
        };
        let mut rows = Rows::zeros(n, cols);
        let src_cols = self.rows.dim;
        rows.data
            .par_chunks_mut(cols)
            .enumerate()
            .for_each(|(i, out)| {
                let b = bands[i];
                if b.slope != 0.0 {
                    for (o, v) in out
                        .iter_mut()
                        .zip(&self.rows.data[i * src_cols..][..src_cols])
                    {
                        *o = b.slope * v;
                    }
                }
                out[0] += 0.5 * (b.lo + b.hi);
                if fresh[i] > 0 {
                    // `fresh[i]` is one more than the new symbol's number: its column.
                    out[fresh[i]] = 0.5 * (b.hi - b.lo);
                }
            });
        *symbols += added;
        Zonotope { rows }
    }

    /// `sum_k c_k z_k` of zonotopes of one length.
    pub fn weighted_sum(terms: &[(&Zonotope, f64)]) -> Zonotope {
        let n = terms[0].0.rows.n;
        let cols = terms.iter().map(|(z, _)| z.rows.dim).max().unwrap_or(1);
        let mut rows = Rows::zeros(n, cols);
        for (z, c) in terms {
            let d = z.rows.dim;
            for i in 0..n {
                for (o, v) in rows.data[i * cols..][..d].iter_mut().zip(z.rows.row(i)) {
                    *o += c * v;
                }
            }
        }
        Zonotope { rows }
    }

    /// A zonotope of `n` elements whose element `o` is element `i` of input `k`, for every
    /// `(k, i, o)` that `each` produces (concatenations, gathers).
    pub fn gather(
        inputs: &[&Zonotope],
        n: usize,
        each: impl FnOnce(&mut dyn FnMut(usize, usize, usize)),
    ) -> Zonotope {
        let cols = inputs.iter().map(|z| z.rows.dim).max().unwrap_or(1);
        let mut rows = Rows::zeros(n, cols);
        each(&mut |k, i, o| {
            let src = inputs[k].rows.row(i);
            rows.data[o * cols..][..src.len()].copy_from_slice(src);
        });
        Zonotope { rows }
    }
}
