//! The maximum over windows of one tensor (max pooling): piecewise linear, with one linear
//! piece per window element.
//!
//! Bounds decide a window when one element's lower bound reaches every other element's upper
//! bound: the output is then that element, exactly. An undecided window is bounded by its
//! leader `x_j` (the element of largest lower bound `l`): `y >= x_j`, and, with `U'` the others'
//! largest upper bound and `U = max(u_j, U')`, both `y <= x_j + max(U' - l, 0)` and `y <= U`,
//! so `y <= lam (x_j + max(U' - l, 0)) + (1 - lam) U` for any `lam` in `[0, 1]`. `lam` follows
//! how often the leader is the maximum: 1 when it dominates, 0 when another can always beat it
//! (`(u_j - U') / (u_j - l)`, clamped). One relaxation per window where a tournament of ReLUs
//! would need one per window element, so large pooled networks keep their zonotopes small.

use z3::ast::{Bool, Real};

use super::rules::{
    minus, widen, MilpEncoding, PhaseOf, Rows, Rules, Sense, SizeError, Z3Encoding,
};
use super::zonotope::{Band, Zonotope};
use crate::verify::bounds::LayerBounds;
use crate::verify::smt::exact;

/// `y_o = max_{i in windows[o]} x_i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Max {
    /// The input's size.
    pub in_dim: usize,
    /// For every output element, the input elements it is the maximum of (none empty).
    pub windows: Vec<Vec<usize>>,
}

/// How the bounds place one window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Leader {
    /// The element of largest lower bound.
    j: usize,
    /// Its lower and upper bounds.
    l: f64,
    u: f64,
    /// The largest upper bound of the other elements (`-inf` for a window of one).
    others: f64,
}

impl Leader {
    /// Whether the leader is the maximum wherever the inputs lie within the bounds.
    fn decides(&self) -> bool {
        self.others <= self.l
    }

    /// The upper line `lam x_j + c` (see the module docs), or `None` when a bound is
    /// infinite.
    fn upper(&self) -> Option<(f64, f64)> {
        if self.decides() {
            return Some((1.0, 0.0));
        }
        let (l, u, o) = (self.l, self.u, self.others);
        if !(l.is_finite() && u.is_finite() && o.is_finite()) {
            return None;
        }
        let top = u.max(o);
        let lam = if u > l {
            ((u - o) / (u - l)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some((lam, lam * (o - l).max(0.0) + (1.0 - lam) * top))
    }
}

impl Max {
    /// The elements of window `o` that can be its maximum within the bounds: the leader and
    /// every element whose upper bound passes the leader's lower bound (one element: decided).
    fn candidates(&self, o: usize, b: &LayerBounds) -> Vec<usize> {
        let ld = self.leader(o, b);
        self.windows[o]
            .iter()
            .copied()
            .filter(|&i| i == ld.j || b.upper[i] > ld.l)
            .collect()
    }

    fn leader(&self, o: usize, b: &LayerBounds) -> Leader {
        let w = &self.windows[o];
        let mut j = w[0];
        for &i in &w[1..] {
            let (li, lj) = (b.lower[i], b.lower[j]);
            if li > lj || (li == lj && b.upper[i] > b.upper[j]) {
                j = i;
            }
        }
        let others = w
            .iter()
            .filter(|&&i| i != j)
            .map(|&i| b.upper[i])
            .fold(f64::NEG_INFINITY, f64::max);
        Leader {
            j,
            l: b.lower[j],
            u: b.upper[j],
            others,
        }
    }

    fn argmax(&self, o: usize, x: &[f64]) -> usize {
        let w = &self.windows[o];
        w.iter()
            .copied()
            .fold(w[0], |j, i| if x[i] > x[j] { i } else { j })
    }
}

impl Rules for Max {
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError> {
        match inputs {
            [n] if *n == self.in_dim => {
                if self.windows.iter().any(|w| w.is_empty()) {
                    Err(SizeError("a window is empty".into()))
                } else if self.windows.iter().flatten().any(|&i| i >= *n) {
                    Err(SizeError(format!(
                        "a window reaches past the input's {n} elements"
                    )))
                } else {
                    Ok(self.windows.len())
                }
            }
            [n] => Err(SizeError(format!(
                "pools {} elements but receives {n}",
                self.in_dim
            ))),
            _ => Err(SizeError("a max pooling takes one input".into())),
        }
    }

    fn forward(&self, x: &[&[f64]]) -> Vec<f64> {
        (0..self.windows.len())
            .map(|o| x[0][self.argmax(o, x[0])])
            .collect()
    }

    fn gradient(&self, x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]) {
        for (o, gi) in g.iter().enumerate() {
            grads[0][self.argmax(o, x[0])] += gi;
        }
    }

    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
        let ext =
            |v: &[f64], w: &[usize]| w.iter().map(|&i| v[i]).fold(f64::NEG_INFINITY, f64::max);
        self.windows
            .iter()
            .map(|w| (ext(lo[0], w), ext(hi[0], w)))
            .unzip()
    }

    /// Lower bounds of `c y` use `y >= x_j` where `c > 0` and the upper line where `c < 0`.
    fn back(&self, lam: Rows, consts: &mut [f64], bounds: Option<&LayerBounds>) -> Vec<Rows> {
        let b = bounds.expect("a max pooling is bounded");
        let leaders: Vec<Leader> = (0..self.windows.len()).map(|o| self.leader(o, b)).collect();
        let mut out = Rows::zeros(lam.n, self.in_dim);
        for (r, k) in consts.iter_mut().enumerate() {
            let row = lam.row(r);
            let dst = out.row_mut(r);
            for (o, &c) in row.iter().enumerate() {
                if c == 0.0 {
                    continue;
                }
                let ld = &leaders[o];
                if c > 0.0 || ld.decides() {
                    dst[ld.j] += c;
                    continue;
                }
                match ld.upper() {
                    Some((s, t)) => {
                        dst[ld.j] += c * s;
                        *k += c * t;
                    }
                    None => *k = f64::NEG_INFINITY,
                }
            }
        }
        vec![out]
    }

    /// Each output is its leader's row, through the band between `y >= x_j` and the upper
    /// line (exact where the leader dominates).
    fn zonotope(
        &self,
        x: &[&Zonotope],
        bounds: Option<&LayerBounds>,
        symbols: &mut usize,
    ) -> Option<Zonotope> {
        let b = bounds.expect("a max pooling is bounded");
        let leaders: Vec<Leader> = (0..self.windows.len()).map(|o| self.leader(o, b)).collect();
        let lines: Vec<(f64, f64)> = leaders.iter().map(|ld| ld.upper()).collect::<Option<_>>()?;
        let picked = Zonotope::gather(x, leaders.len(), |f| {
            for (o, ld) in leaders.iter().enumerate() {
                f(0, ld.j, o);
            }
        });
        Some(picked.band(
            |o| {
                let (s, t) = lines[o];
                // y >= x_j >= s x_j + (1 - s) l, and y <= s x_j + t.
                Band {
                    slope: s,
                    lo: if s < 1.0 {
                        (1.0 - s) * leaders[o].l
                    } else {
                        0.0
                    },
                    hi: t,
                }
            },
            symbols,
        ))
    }

    fn need_bounds(&self) -> bool {
        true
    }

    fn piecewise_linear(&self) -> bool {
        true
    }

    fn undecided(&self, bounds: &LayerBounds) -> usize {
        (0..self.windows.len())
            .filter(|&o| !self.leader(o, bounds).decides())
            .count()
    }

    /// Exact only where the bounds decide every window (the leader's form); otherwise `None`,
    /// and branch and bound narrows the box until they do.
    fn forms(
        &self,
        x: &[&Rows],
        bounds: Option<&LayerBounds>,
        _phase: PhaseOf<'_>,
        _phase_rows: &mut Vec<(Vec<f64>, bool)>,
    ) -> Option<Rows> {
        let b = bounds?;
        let mut out = Rows::zeros(self.windows.len(), x[0].dim);
        for o in 0..self.windows.len() {
            let ld = self.leader(o, b);
            if !ld.decides() {
                return None;
            }
            out.row_mut(o).copy_from_slice(x[0].row(ld.j));
        }
        Some(out)
    }

    /// A decided window is its leader; otherwise a column `y` with `y >= x_i` for every
    /// element that can be the maximum, one binary per such element choosing the one `y`
    /// equals (`y <= x_i + (U - l_i)(1 - d_i)`, `U` their largest upper bound, the binaries
    /// summing to one), and `y <= U`.
    fn milp(
        &self,
        x: &[&Rows],
        bounds: Option<&LayerBounds>,
        enc: &mut MilpEncoding,
    ) -> Option<Rows> {
        let b = bounds?;
        let mut out = Rows::zeros(self.windows.len(), x[0].dim);
        for o in 0..self.windows.len() {
            let cands = self.candidates(o, b);
            if let [i] = cands[..] {
                out.row_mut(o).copy_from_slice(x[0].row(i));
                continue;
            }
            let mut top = f64::NEG_INFINITY;
            for &i in &cands {
                let (l, u) = (b.lower[i], b.upper[i]);
                if !(l.is_finite() && u.is_finite()) {
                    return None;
                }
                top = top.max(widen(l, u).1);
            }
            let c = enc.column(f64::NEG_INFINITY, top)?;
            let y = enc.unit(c);
            let mut choice = Vec::with_capacity(cands.len());
            for &i in &cands {
                let l = widen(b.lower[i], b.upper[i]).0;
                let d = enc.binary();
                choice.push((d, 1.0));
                let xi = x[0].row(i);
                enc.require(minus(&y, xi), Vec::new(), Sense::Ge);
                // y - x_i - (U - l)(1 - d) <= 0
                let mut f = minus(&y, xi);
                *f.last_mut().expect("constant column") -= top - l;
                enc.require(f, vec![(d, top - l)], Sense::Le);
            }
            // The binaries sum to one: >= 1 and <= 1.
            let mut one = vec![0.0; x[0].dim];
            *one.last_mut().expect("constant column") = -1.0;
            enc.require(one.clone(), choice.clone(), Sense::Ge);
            enc.require(one, choice, Sense::Le);
            out.row_mut(o).copy_from_slice(&y);
        }
        Some(out)
    }

    /// `y >= x_i` for every element that can be the maximum, and `y` equal to one of them.
    fn z3(
        &self,
        x: &[&[Real]],
        bounds: Option<&LayerBounds>,
        enc: &Z3Encoding,
    ) -> Option<Vec<Real>> {
        let mut out = Vec::with_capacity(self.windows.len());
        for (o, w) in self.windows.iter().enumerate() {
            let cands: Vec<usize> = match bounds {
                Some(b) => self.candidates(o, b),
                None => w.clone(),
            };
            if let [i] = cands[..] {
                out.push(x[0][i].clone());
                continue;
            }
            let y = enc.var("m", o);
            for &i in &cands {
                enc.solver.assert(y.ge(&x[0][i]));
            }
            let eqs: Vec<Bool> = cands.iter().map(|&i| y.eq(&x[0][i])).collect();
            enc.solver.assert(Bool::or(&eqs.iter().collect::<Vec<_>>()));
            if let Some(b) = bounds {
                let top = cands
                    .iter()
                    .map(|&i| b.upper[i])
                    .fold(f64::NEG_INFINITY, f64::max);
                if top.is_finite() {
                    enc.solver.assert(y.le(exact(top)));
                }
            }
            out.push(y);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Sampled windows: every maximum lies within the interval, the back-substituted lower
    /// bounds of random functions, and the zonotope's range.
    #[test]
    fn relaxations_contain_sampled_maxima() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            let in_dim = 6;
            let windows = vec![vec![0, 1, 2], vec![2, 3], vec![3, 4, 5, 0], vec![5]];
            let m = Max { in_dim, windows };
            let mut lower = Vec::new();
            let mut upper = Vec::new();
            for _ in 0..in_dim {
                let a: f64 = rng.random_range(-1.0..1.0);
                let w: f64 = rng.random_range(0.0..1.0);
                lower.push(a);
                upper.push(a + w);
            }
            let b = LayerBounds {
                lower: lower.clone(),
                upper: upper.clone(),
            };
            let lam = Rows {
                n: 1,
                dim: 4,
                data: (0..4).map(|_| rng.random_range(-1.0..1.0)).collect(),
            };
            let mut consts = vec![0.0];
            let back = m.back(lam.clone(), &mut consts, Some(&b)).pop().unwrap();
            let mut symbols = 0;
            let zin = Zonotope::input(&lower, &upper, &mut symbols);
            let z = m.zonotope(&[&zin], Some(&b), &mut symbols).unwrap();
            let (zl, zu) = z.bounds();
            let (il, iu) = m.interval(&[&lower], &[&upper]);
            for _ in 0..50 {
                let e: Vec<f64> = (0..symbols).map(|_| rng.random_range(-1.0..1.0)).collect();
                let x: Vec<f64> = (0..in_dim)
                    .map(|i| lower[i] + (upper[i] - lower[i]) * 0.5 * (1.0 + e[i]))
                    .collect();
                let y = m.forward(&[&x]);
                let f: f64 = lam.data.iter().zip(&y).map(|(c, v)| c * v).sum();
                let g: f64 = back.data.iter().zip(&x).map(|(c, v)| c * v).sum::<f64>() + consts[0];
                assert!(g <= f + 1e-9, "back-substitution {g} above {f}");
                for o in 0..4 {
                    assert!(il[o] <= y[o] && y[o] <= iu[o]);
                    assert!(zl[o] <= y[o] + 1e-9 && y[o] <= zu[o] + 1e-9);
                }
            }
        }
    }
}
