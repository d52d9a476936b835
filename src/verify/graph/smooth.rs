//! Sigmoid and tanh: smooth S-shaped nonlinearities, relaxed by two lines per element. Such
//! networks can be proven or refuted, never completely decided (no exact encoding).
//!
//! Soundness of the lines does not rest on a tangent-point search: a slope is chosen (the
//! tangent at the midpoint on the side where the function is convex or concave, the chord
//! otherwise), and the intercept is the extreme of `f(x) - s x` over `[l, u]`, which lies at an
//! end or where `f'(x) = s`, and `f'(x) = s` is solved in closed form.

use super::rules::{Rows, Rules, SizeError};
use super::zonotope::{Band, Zonotope};
use crate::verify::bounds::LayerBounds;

/// Which S-shaped function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smooth {
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

/// Slack added to every intercept against rounding (relative to the values involved).
const SLACK: f64 = 1e-10;

impl Smooth {
    /// The function.
    pub fn f(self, x: f64) -> f64 {
        match self {
            Smooth::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Smooth::Tanh => x.tanh(),
        }
    }

    /// Its derivative.
    pub fn df(self, x: f64) -> f64 {
        match self {
            Smooth::Sigmoid => {
                let s = self.f(x);
                s * (1.0 - s)
            }
            Smooth::Tanh => 1.0 - x.tanh().powi(2),
        }
    }

    /// The points where `f'(x) = s` (none, or two symmetric ones).
    fn slope_points(self, s: f64) -> [Option<f64>; 2] {
        let t = match self {
            // sigma (1 - sigma) = s: sigma = (1 +- sqrt(1 - 4 s)) / 2, x = logit(sigma).
            Smooth::Sigmoid if s > 0.0 && s <= 0.25 => {
                let r = (1.0 - 4.0 * s).max(0.0).sqrt();
                let sig = 0.5 * (1.0 + r);
                if sig >= 1.0 {
                    return [None, None];
                }
                (sig / (1.0 - sig)).ln()
            }
            // 1 - tanh^2 = s: tanh = +- sqrt(1 - s).
            Smooth::Tanh if s > 0.0 && s <= 1.0 => {
                let t = (1.0 - s).max(0.0).sqrt();
                if t >= 1.0 {
                    return [None, None];
                }
                t.atanh()
            }
            _ => return [None, None],
        };
        [Some(t), Some(-t)]
    }

    /// The tightest intercepts `(below, above)` of lines of slope `s` enclosing `f` on
    /// `[l, u]`, with a rounding slack.
    fn intercepts(self, s: f64, l: f64, u: f64) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        let mut consider = |x: f64| {
            let g = self.f(x) - s * x;
            lo = lo.min(g);
            hi = hi.max(g);
        };
        consider(l);
        consider(u);
        for p in self.slope_points(s).into_iter().flatten() {
            if p > l && p < u {
                consider(p);
            }
        }
        let slack = SLACK * (1.0 + lo.abs().max(hi.abs()) + (s * l).abs().max((s * u).abs()));
        (lo - slack, hi + slack)
    }

    /// Lines `(slope, intercept)` below and above `f` on `[l, u]`.
    pub fn relax(self, l: f64, u: f64) -> ((f64, f64), (f64, f64)) {
        let (l, u) = (l.min(u), u.max(l));
        if !(l.is_finite() && u.is_finite()) {
            // An unbounded side: only the function's range (it is monotone increasing).
            return ((0.0, self.f(l)), (0.0, self.f(u)));
        }
        let m = 0.5 * (l + u);
        let (s_lo, s_hi) = if u - l < 1e-9 {
            (self.df(m), self.df(m))
        } else {
            let chord = (self.f(u) - self.f(l)) / (u - l);
            if u <= 0.0 {
                (self.df(m), chord) // convex: tangent below, chord above
            } else if l >= 0.0 {
                (chord, self.df(m)) // concave: chord below, tangent above
            } else {
                (chord, chord)
            }
        };
        let below = (s_lo, self.intercepts(s_lo, l, u).0);
        let above = (s_hi, self.intercepts(s_hi, l, u).1);
        (below, above)
    }
}

impl Rules for Smooth {
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError> {
        match inputs {
            [n] => Ok(*n),
            _ => Err(SizeError("an activation takes one input".into())),
        }
    }

    fn forward(&self, x: &[&[f64]]) -> Vec<f64> {
        x[0].iter().map(|v| self.f(*v)).collect()
    }

    fn gradient(&self, x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]) {
        for ((a, gi), xi) in grads[0].iter_mut().zip(g).zip(x[0]) {
            *a += gi * self.df(*xi);
        }
    }

    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
        // Monotone increasing.
        (
            lo[0].iter().map(|v| self.f(*v)).collect(),
            hi[0].iter().map(|v| self.f(*v)).collect(),
        )
    }

    fn back(&self, mut lam: Rows, consts: &mut [f64], bounds: Option<&LayerBounds>) -> Vec<Rows> {
        let b = bounds.expect("an activation is bounded");
        let lines: Vec<((f64, f64), (f64, f64))> = (0..lam.dim)
            .map(|i| self.relax(b.lower[i], b.upper[i]))
            .collect();
        let dim = lam.dim;
        for (r, c) in consts.iter_mut().enumerate() {
            for (li, (below, above)) in lam.data[r * dim..(r + 1) * dim].iter_mut().zip(&lines) {
                if *li == 0.0 {
                    continue;
                }
                let (s, k) = if *li > 0.0 { below } else { above };
                *c += *li * k;
                *li *= s;
            }
        }
        vec![lam]
    }

    /// DeepZ's band: the smaller of the end slopes (so the band is as thin as a slope both
    /// ends allow) with the tightest offsets for it.
    fn zonotope(
        &self,
        x: &[&Zonotope],
        bounds: Option<&LayerBounds>,
        symbols: &mut usize,
    ) -> Option<Zonotope> {
        let b = bounds.expect("an activation is bounded");
        Some(x[0].band(
            |i| {
                let (l, u) = (b.lower[i].min(b.upper[i]), b.upper[i].max(b.lower[i]));
                if !(l.is_finite() && u.is_finite()) {
                    // An unbounded side: only the function's range (monotone increasing).
                    return Band {
                        slope: 0.0,
                        lo: self.f(l),
                        hi: self.f(u),
                    };
                }
                let slope = self.df(l).min(self.df(u));
                let (lo, hi) = self.intercepts(slope, l, u);
                Band { slope, lo, hi }
            },
            symbols,
        ))
    }

    fn need_bounds(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbounded_sides_give_the_range() {
        for f in [Smooth::Sigmoid, Smooth::Tanh] {
            let ((sl, kl), (su, ku)) = f.relax(f64::NEG_INFINITY, 0.5);
            assert_eq!((sl, su), (0.0, 0.0));
            assert!(kl <= f.f(-50.0) && ku >= f.f(0.5));
        }
    }

    #[test]
    fn lines_enclose_the_function() {
        for f in [Smooth::Sigmoid, Smooth::Tanh] {
            for (l, u) in [
                (-3.0, -0.5),
                (0.2, 4.0),
                (-2.0, 1.0),
                (-8.0, 8.0),
                (0.5, 0.5),
            ] {
                let ((sl, kl), (su, ku)) = f.relax(l, u);
                for i in 0..=1000 {
                    let x = l + (u - l) * i as f64 / 1000.0;
                    let y = f.f(x);
                    assert!(sl * x + kl <= y + 1e-15, "{f:?} below on [{l}, {u}] at {x}");
                    assert!(su * x + ku >= y - 1e-15, "{f:?} above on [{l}, {u}] at {x}");
                }
            }
        }
    }
}
