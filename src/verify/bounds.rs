//! Bound propagation: sound lower and upper bounds of every ReLU's input, and linear lower
//! bounds of output objectives, over an input box.
//!
//! Two methods, one rule per layer kind each:
//! - interval arithmetic (forward; an affine layer maps a box through `W+` and `W-`, a ReLU
//!   clamps it);
//! - back-substitution in the style of CROWN / DeepPoly: a linear function of a layer's output
//!   is carried backwards; an affine layer is substituted exactly, a ReLU whose input bounds
//!   straddle zero is replaced by a linear bound on the side the coefficient needs (the chord
//!   `u (z - l) / (u - l)` above, `alpha z` below with the adaptive `alpha`), and at the input
//!   the function is minimised over the box in closed form.
//!
//! ReLU splits of branch and bound enter as bounds: an active neuron gets `l >= 0`, an
//! inactive one `u <= 0`. Bounds of a subdomain are intersected with its parent's, so they only
//! tighten down the tree.

use super::network::{Layer, Network};
use super::spec::InputBox;

/// Bounds of one ReLU layer's input.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerBounds {
    /// Lower bounds.
    pub lower: Vec<f64>,
    /// Upper bounds.
    pub upper: Vec<f64>,
}

impl LayerBounds {
    /// Neurons whose input can be on both sides of zero.
    pub fn unstable(&self) -> usize {
        self.lower
            .iter()
            .zip(&self.upper)
            .filter(|(l, u)| **l < 0.0 && **u > 0.0)
            .count()
    }
}

/// A fixed phase of one ReLU neuron (a branch-and-bound split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Input `>= 0`: the neuron is the identity.
    Active,
    /// Input `<= 0`: the neuron outputs zero.
    Inactive,
}

/// A set of ReLU splits: `(relu layer, neuron, phase)`.
pub type Splits = [(usize, usize, Phase)];

/// A linear lower bound `coeffs . x + constant` of some function over a box, and its minimum
/// over the box.
#[derive(Debug, Clone)]
pub struct LinearBound {
    /// Coefficients over the inputs.
    pub coeffs: Vec<f64>,
    /// Constant term.
    pub constant: f64,
    /// The minimum of the linear function over the box (a sound lower bound of the function).
    pub lower: f64,
}

impl LinearBound {
    /// The vertex of the box that minimises the linear bound: the most promising place to look
    /// for a counterexample.
    pub fn minimizer(&self, b: &InputBox) -> Vec<f64> {
        self.coeffs
            .iter()
            .enumerate()
            .map(|(j, c)| if *c >= 0.0 { b.lower[j] } else { b.upper[j] })
            .collect()
    }

    /// The same linear function bounded over a smaller box `b` (still a sound lower bound
    /// there, and at least as tight as on the larger box).
    pub fn on(&self, b: &InputBox) -> LinearBound {
        LinearBound {
            coeffs: self.coeffs.clone(),
            constant: self.constant,
            lower: concretize(&self.coeffs, self.constant, b),
        }
    }
}

/// The smallest, over the box, of the largest of these linear functions, and where it is
/// reached (a small LP with microlp), or `None` when the solver fails. A conjunction of the
/// bounded constraints is impossible on the box when this is positive.
pub fn joint_minimum(lins: &[LinearBound], b: &InputBox) -> Option<(f64, Vec<f64>)> {
    use good_lp::{variable, Expression, ProblemVariables, Solution, SolverModel};
    let mut vars = ProblemVariables::new();
    let xs: Vec<_> = (0..b.dim())
        .map(|j| vars.add(variable().min(b.lower[j]).max(b.upper[j])))
        .collect();
    // Minimise the largest function: t >= lin_k(x) for all k.
    let t = vars.add(variable());
    let mut model = vars.minimise(t).using(good_lp::microlp);
    for lin in lins {
        let e: Expression = xs
            .iter()
            .zip(&lin.coeffs)
            .map(|(&x, &c)| c * x)
            .sum::<Expression>()
            + lin.constant;
        model = model.with(e.leq(t));
    }
    let sol = model.solve().ok()?;
    Some((sol.value(t), xs.iter().map(|&x| sol.value(x)).collect()))
}

/// The minimum over the box of `row . x + constant`.
fn concretize(row: &[f64], constant: f64, b: &InputBox) -> f64 {
    let mut v = constant;
    for (j, c) in row.iter().enumerate() {
        v += if *c >= 0.0 {
            c * b.lower[j]
        } else {
            c * b.upper[j]
        };
    }
    v
}

/// Interval bounds of every ReLU layer's input.
pub fn interval(net: &Network, b: &InputBox) -> Vec<LayerBounds> {
    let mut lo = b.lower.clone();
    let mut hi = b.upper.clone();
    let mut out = Vec::new();
    for layer in &net.layers {
        match layer {
            Layer::Affine(a) => {
                let center: Vec<f64> = lo.iter().zip(&hi).map(|(l, u)| 0.5 * (l + u)).collect();
                let radius: Vec<f64> = lo.iter().zip(&hi).map(|(l, u)| 0.5 * (u - l)).collect();
                let c = a.forward(&center);
                let r = abs_apply(&a.linear, &radius);
                lo = c.iter().zip(&r).map(|(c, r)| c - r).collect();
                hi = c.iter().zip(&r).map(|(c, r)| c + r).collect();
            }
            Layer::Relu => {
                out.push(LayerBounds {
                    lower: lo.clone(),
                    upper: hi.clone(),
                });
                lo.iter_mut().for_each(|v| *v = v.max(0.0));
                hi.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }
    out
}

/// `|W| r` for a nonnegative vector `r`.
fn abs_apply(l: &super::network::Linear, r: &[f64]) -> Vec<f64> {
    use super::network::Linear;
    match l {
        Linear::Dense { rows, cols, w } => (0..*rows)
            .map(|i| {
                w[i * cols..(i + 1) * cols]
                    .iter()
                    .zip(r)
                    .map(|(a, b)| a.abs() * b)
                    .sum()
            })
            .collect(),
        Linear::Diag(d) => d.iter().zip(r).map(|(a, b)| a.abs() * b).collect(),
        Linear::Conv { w, .. } => {
            let mut abs = l.clone();
            if let Linear::Conv { w: aw, .. } = &mut abs {
                *aw = w.iter().map(|v| v.abs()).collect();
            }
            let mut out = vec![0.0; abs.out_dim()];
            abs.apply(r, &mut out);
            out
        }
    }
}

/// Where the layers of ReLU number `k` start: the index in `net.layers` of each ReLU.
fn relu_positions(net: &Network) -> Vec<usize> {
    net.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, Layer::Relu))
        .map(|(i, _)| i)
        .collect()
}

/// Carries the rows of `lambda` (linear functions of the output of layer `end - 1`) back to
/// the input, relaxing ReLUs with `relu_bounds`, so that for every `x` in the box and each row
/// `r`: `lambda_r . f_end(x) >= coeffs_r . x + constant_r`.
fn back_substitute(
    net: &Network,
    end: usize,
    mut lambda: Vec<Vec<f64>>,
    mut constant: Vec<f64>,
    relu_bounds: &[LayerBounds],
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut relu_index = net.layers[..end]
        .iter()
        .filter(|l| matches!(l, Layer::Relu))
        .count();
    for layer in net.layers[..end].iter().rev() {
        match layer {
            Layer::Affine(a) => {
                let n_in = a.linear.in_dim();
                for (row, c) in lambda.iter_mut().zip(constant.iter_mut()) {
                    *c += row.iter().zip(&a.bias).map(|(x, y)| x * y).sum::<f64>();
                    let mut back = vec![0.0; n_in];
                    a.linear.apply_transposed_add(row, &mut back);
                    *row = back;
                }
            }
            Layer::Relu => {
                relu_index -= 1;
                let b = &relu_bounds[relu_index];
                for (row, c) in lambda.iter_mut().zip(constant.iter_mut()) {
                    for (i, li) in row.iter_mut().enumerate() {
                        let (l, u) = (b.lower[i], b.upper[i]);
                        if l >= 0.0 {
                            continue; // identity
                        }
                        if u <= 0.0 {
                            *li = 0.0;
                            continue;
                        }
                        if *li >= 0.0 {
                            // relu(z) >= alpha z, adaptive alpha.
                            if u < -l {
                                *li = 0.0;
                            }
                        } else {
                            // relu(z) <= s (z - l): li * relu(z) >= li s z - li s l.
                            let s = u / (u - l);
                            *c -= *li * s * l;
                            *li *= s;
                        }
                    }
                }
            }
        }
    }
    (lambda, constant)
}

/// Back-substitution bounds of every ReLU layer's input, given splits and (optionally) the
/// parent subdomain's bounds to intersect with. Returns `None` when the splits contradict the
/// bounds (the subdomain is empty).
pub fn crown(
    net: &Network,
    b: &InputBox,
    splits: &Splits,
    parent: Option<&[LayerBounds]>,
) -> Option<Vec<LayerBounds>> {
    let positions = relu_positions(net);
    let mut bounds: Vec<LayerBounds> = Vec::with_capacity(positions.len());
    for (k, &pos) in positions.iter().enumerate() {
        let n = match net.layers[..pos].iter().rev().find_map(|l| match l {
            Layer::Affine(a) => Some(a.linear.out_dim()),
            Layer::Relu => None,
        }) {
            Some(n) => n,
            None => net.input_dim(),
        };
        let mut lb = if k == 0 && pos == 1 {
            // The first ReLU after one affine layer: intervals are exact for a box.
            interval(net, b).swap_remove(0)
        } else {
            let mut lambda = Vec::with_capacity(2 * n);
            for i in 0..n {
                let mut e = vec![0.0; n];
                e[i] = 1.0;
                lambda.push(e);
            }
            for i in 0..n {
                let mut e = vec![0.0; n];
                e[i] = -1.0;
                lambda.push(e);
            }
            let (rows, consts) = back_substitute(net, pos, lambda, vec![0.0; 2 * n], &bounds);
            let mut lower = vec![0.0; n];
            let mut upper = vec![0.0; n];
            for i in 0..n {
                lower[i] = concretize(&rows[i], consts[i], b);
                upper[i] = -concretize(&rows[n + i], consts[n + i], b);
            }
            LayerBounds { lower, upper }
        };
        if let Some(p) = parent {
            for i in 0..n {
                lb.lower[i] = lb.lower[i].max(p[k].lower[i]);
                lb.upper[i] = lb.upper[i].min(p[k].upper[i]);
            }
        }
        for &(layer, neuron, phase) in splits {
            if layer == k {
                match phase {
                    Phase::Active => lb.lower[neuron] = lb.lower[neuron].max(0.0),
                    Phase::Inactive => lb.upper[neuron] = lb.upper[neuron].min(0.0),
                }
            }
        }
        if lb.lower.iter().zip(&lb.upper).any(|(l, u)| l > u) {
            return None;
        }
        bounds.push(lb);
    }
    Some(bounds)
}

/// Linear lower bounds over the box of `c_r . f(x) + d_r` for each objective row `(c_r, d_r)`.
pub fn objective_bounds(
    net: &Network,
    b: &InputBox,
    relu_bounds: &[LayerBounds],
    objectives: &[(Vec<f64>, f64)],
) -> Vec<LinearBound> {
    let lambda: Vec<Vec<f64>> = objectives.iter().map(|(c, _)| c.clone()).collect();
    let consts: Vec<f64> = objectives.iter().map(|(_, d)| *d).collect();
    let (rows, consts) = back_substitute(net, net.layers.len(), lambda, consts, relu_bounds);
    rows.into_iter()
        .zip(consts)
        .map(|(coeffs, constant)| {
            let lower = concretize(&coeffs, constant, b);
            LinearBound {
                coeffs,
                constant,
                lower,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::network::{Affine, Linear};
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_net(rng: &mut rand_chacha::ChaCha8Rng, dims: &[usize]) -> Network {
        let mut layers = Vec::new();
        for w in dims.windows(2) {
            let (n_in, n_out) = (w[0], w[1]);
            layers.push(Layer::Affine(Affine {
                linear: Linear::Dense {
                    rows: n_out,
                    cols: n_in,
                    w: (0..n_in * n_out)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                },
                bias: (0..n_out).map(|_| rng.random_range(-0.5..0.5)).collect(),
            }));
            layers.push(Layer::Relu);
        }
        layers.pop();
        Network::new(vec![dims[0]], layers).unwrap()
    }

    #[test]
    fn bounds_contain_every_sampled_value_and_crown_beats_intervals() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut crown_width = 0.0;
        let mut interval_width = 0.0;
        for _ in 0..20 {
            let net = random_net(&mut rng, &[3, 8, 8, 8, 2]);
            let b = InputBox {
                lower: vec![-0.5, 0.0, 0.2],
                upper: vec![0.1, 0.3, 0.9],
            };
            let c = crown(&net, &b, &[], None).unwrap();
            let i = interval(&net, &b);
            let obj = vec![(vec![1.0, -1.0], 0.25)];
            let lin = &objective_bounds(&net, &b, &c, &obj)[0];
            for _ in 0..300 {
                let x: Vec<f64> = (0..3)
                    .map(|j| rng.random_range(b.lower[j]..=b.upper[j]))
                    .collect();
                let y = net.forward(&x);
                let v = y[0] - y[1] + 0.25;
                let linv: f64 =
                    lin.coeffs.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() + lin.constant;
                assert!(v >= linv - 1e-9 && linv >= lin.lower - 1e-9);
            }
            for (cb, ib) in c.iter().zip(&i) {
                for n in 0..cb.lower.len() {
                    assert!(cb.lower[n] <= cb.upper[n] + 1e-12);
                    crown_width += cb.upper[n] - cb.lower[n];
                    interval_width += ib.upper[n] - ib.lower[n];
                }
            }
        }
        assert!(
            crown_width < interval_width,
            "{crown_width} vs {interval_width}"
        );
    }
}
