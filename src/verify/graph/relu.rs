//! `max(x, 0)` element-wise: the piecewise-linear nonlinearity branch and bound splits.
//! LeakyReLU and ReLU6 are lowered to it by the loaders, so they share its exact encodings and
//! its splits.

use z3::ast::{Bool, Real};

use super::rules::{
    minus, widen, MilpEncoding, PhaseOf, Rows, Rules, Sense, SizeError, Z3Encoding,
};
use super::zonotope::{Band, Zonotope};
use crate::verify::bounds::LayerBounds;
use crate::verify::smt::exact;

/// `y = max(x, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relu;

impl Rules for Relu {
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError> {
        match inputs {
            [n] => Ok(*n),
            _ => Err(SizeError("a ReLU takes one input".into())),
        }
    }

    fn forward(&self, x: &[&[f64]]) -> Vec<f64> {
        x[0].iter().map(|v| v.max(0.0)).collect()
    }

    fn forward_columns(&self, x: &[&Rows]) -> Rows {
        Rows {
            n: x[0].n,
            dim: x[0].dim,
            data: x[0].data.iter().map(|v| v.max(0.0)).collect(),
        }
    }

    fn gradient(&self, x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]) {
        for ((a, gi), xi) in grads[0].iter_mut().zip(g).zip(x[0]) {
            if *xi > 0.0 {
                *a += gi;
            }
        }
    }

    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
        (
            lo[0].iter().map(|v| v.max(0.0)).collect(),
            hi[0].iter().map(|v| v.max(0.0)).collect(),
        )
    }

    /// Stable elements are the identity or zero; an unstable one is bounded above by the
    /// chord `u (z - l) / (u - l)` and below by `alpha z`, with the adaptive `alpha` (1 when
    /// `u >= -l`, else 0).
    fn back(&self, lam: Rows, consts: &mut [f64], bounds: Option<&LayerBounds>) -> Vec<Rows> {
        let b = bounds.expect("a ReLU is bounded");
        vec![relax_back(lam, consts, b, |_, i| {
            adaptive_slope(b.lower[i], b.upper[i])
        })]
    }

    /// [`back`](Rules::back) with the lower line `alpha z` of each unstable element given.
    fn back_with_slopes(
        &self,
        lam: Rows,
        consts: &mut [f64],
        bounds: Option<&LayerBounds>,
        slopes: &[f64],
    ) -> Option<Vec<Rows>> {
        let b = bounds.expect("a ReLU is bounded");
        let dim = lam.dim;
        Some(vec![relax_back(lam, consts, b, |r, i| slopes[r * dim + i])])
    }

    fn relaxed_forward(
        &self,
        x: &[&[f64]],
        bounds: Option<&LayerBounds>,
        lam_row: &[f64],
        slopes_row: &[f64],
    ) -> Option<Vec<f64>> {
        let b = bounds.expect("a ReLU is bounded");
        Some(
            x[0].iter()
                .enumerate()
                .map(|(i, &z)| {
                    let (l, u) = (b.lower[i], b.upper[i]);
                    if l >= 0.0 {
                        z
                    } else if u <= 0.0 {
                        0.0
                    } else if lam_row[i] >= 0.0 {
                        slopes_row[i] * z
                    } else {
                        u / (u - l) * (z - l)
                    }
                })
                .collect(),
        )
    }

    /// Stable elements pass or vanish; an unstable one lies between the parallel lines
    /// `s z` and `s (z - l)`, `s = u / (u - l)` (DeepZ's smallest parallelogram).
    fn zonotope(
        &self,
        x: &[&Zonotope],
        bounds: Option<&LayerBounds>,
        symbols: &mut usize,
    ) -> Option<Zonotope> {
        let b = bounds.expect("a ReLU is bounded");
        Some(x[0].band(
            |i| {
                let (l, u) = (b.lower[i], b.upper[i]);
                if l >= 0.0 {
                    Band::IDENTITY
                } else if u <= 0.0 {
                    Band::ZERO
                } else {
                    let s = u / (u - l);
                    Band {
                        slope: s,
                        lo: 0.0,
                        hi: -s * l,
                    }
                }
            },
            symbols,
        ))
    }

    fn need_bounds(&self) -> bool {
        true
    }

    fn splittable(&self) -> bool {
        true
    }

    fn undecided(&self, bounds: &LayerBounds) -> usize {
        bounds.unstable()
    }

    fn forms(
        &self,
        x: &[&Rows],
        bounds: Option<&LayerBounds>,
        phase: PhaseOf<'_>,
        phase_rows: &mut Vec<(Vec<f64>, bool)>,
    ) -> Option<Rows> {
        let b = bounds.expect("a ReLU is bounded");
        let mut out = x[0].clone();
        for i in 0..out.n {
            let on = if b.lower[i] >= 0.0 {
                true
            } else if b.upper[i] <= 0.0 {
                false
            } else {
                let on = phase(i).unwrap_or(true);
                phase_rows.push((out.row(i).to_vec(), on));
                on
            };
            if !on {
                out.row_mut(i).iter_mut().for_each(|v| *v = 0.0);
            }
        }
        Some(out)
    }

    /// A stable element is its linear piece, held to its side of zero (a split may be what
    /// makes it stable); an unstable one a column `a` with a binary `d` (1 active):
    /// `0 <= a <= u d`, `a >= z`, `a <= z - l (1 - d)`, and `l <= z <= u` (bounds widened).
    fn milp(
        &self,
        x: &[&Rows],
        bounds: Option<&LayerBounds>,
        enc: &mut MilpEncoding,
    ) -> Option<Rows> {
        let b = bounds?;
        let mut out = x[0].clone();
        for i in 0..out.n {
            let (l, u) = (b.lower[i], b.upper[i]);
            let (lw, uw) = widen(l, u);
            let z = x[0].row(i);
            if l >= 0.0 {
                enc.within(z, lw, f64::INFINITY);
            } else if u <= 0.0 {
                enc.within(z, f64::NEG_INFINITY, uw);
                out.row_mut(i).iter_mut().for_each(|v| *v = 0.0);
            } else {
                if !(l.is_finite() && u.is_finite()) {
                    return None;
                }
                enc.within(z, lw, uw);
                let c = enc.column(0.0, uw)?;
                let d = enc.binary();
                let a = enc.unit(c);
                enc.require(minus(&a, z), Vec::new(), Sense::Ge);
                enc.require(a.clone(), vec![(d, -uw)], Sense::Le);
                // a - z + l - l d <= 0
                let mut f = minus(&a, z);
                *f.last_mut().expect("constant column") += lw;
                enc.require(f, vec![(d, -lw)], Sense::Le);
                out.row_mut(i).copy_from_slice(&a);
            }
        }
        Some(out)
    }

    fn z3(
        &self,
        x: &[&[Real]],
        bounds: Option<&LayerBounds>,
        enc: &Z3Encoding,
    ) -> Option<Vec<Real>> {
        let zero = Real::from_rational(0, 1);
        let mut out = Vec::with_capacity(x[0].len());
        for (i, z) in x[0].iter().enumerate() {
            let (l, u) = bounds.map_or((f64::NEG_INFINITY, f64::INFINITY), |b| {
                (b.lower[i], b.upper[i])
            });
            if l >= 0.0 {
                enc.solver.assert(z.ge(&zero));
                out.push(z.clone());
            } else if u <= 0.0 {
                enc.solver.assert(z.le(&zero));
                out.push(zero.clone());
            } else {
                let r = enc.var("r", i);
                enc.solver.assert(r.ge(&zero));
                enc.solver.assert(r.ge(z));
                enc.solver.assert(Bool::or(&[&r.eq(&zero), &r.eq(z)]));
                if l.is_finite() && u.is_finite() {
                    // The triangle relaxation as a redundant cut, and the bounds themselves.
                    let s = u / (u - l);
                    let rhs = Real::sub(&[&Real::mul(&[&exact(s), z]), &exact(s * l)]);
                    enc.solver.assert(r.le(&rhs));
                    enc.solver.assert(z.ge(exact(l)));
                    enc.solver.assert(z.le(exact(u)));
                }
                out.push(r);
            }
        }
        Some(out)
    }
}

/// The ReLU's back-substitution: each row's coefficient on an unstable element goes to the
/// lower line `slope(row, element) z` where it is positive, to the chord where negative.
fn relax_back(
    mut lam: Rows,
    consts: &mut [f64],
    b: &LayerBounds,
    slope: impl Fn(usize, usize) -> f64,
) -> Rows {
    let dim = lam.dim;
    for (r, c) in consts.iter_mut().enumerate() {
        let row = &mut lam.data[r * dim..(r + 1) * dim];
        for (i, li) in row.iter_mut().enumerate() {
            let (l, u) = (b.lower[i], b.upper[i]);
            if l >= 0.0 || *li == 0.0 {
                continue;
            }
            if u <= 0.0 {
                *li = 0.0;
            } else if *li > 0.0 {
                *li *= slope(r, i);
            } else {
                let s = u / (u - l);
                *c -= *li * s * l;
                *li *= s;
            }
        }
    }
    lam
}

/// CROWN's adaptive lower slope of an unstable ReLU on `[l, u]`: 1 when `u >= -l`, else 0
/// (the line of the smaller relaxation area).
pub fn adaptive_slope(l: f64, u: f64) -> f64 {
    if u < -l {
        0.0
    } else {
        1.0
    }
}
