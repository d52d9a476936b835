//! Optimised linear bounds of output objectives (alpha-CROWN and beta-CROWN): the lower slope
//! of every unstable ReLU's relaxation is a free parameter in [0, 1], one per objective and
//! neuron (alpha), and every ReLU split of a subdomain enters the back-substitution with a
//! multiplier `beta >= 0` (`- beta z` for an active split `z >= 0`, `+ beta z` for an inactive
//! one), both raised by projected gradient ascent (Adam) on each objective's bound.
//!
//! Any alpha in [0, 1] gives a sound lower bound over the box; with beta, the bound holds on
//! the part of the box where the splits hold, which is the subdomain. The gradient comes
//! without automatic differentiation: the back-substituted bound of a row is the minimum over
//! the box of the *linearised* network (each relaxed node replaced by the linear function it
//! chose for that row), reached at a vertex; so its derivative in a slope is the coefficient
//! times the pre-activation of the linearised network at that vertex (the envelope theorem),
//! and in a multiplier, the signed pre-activation. One step costs one back-substitution of the
//! objectives and one forward pass per objective.
//!
//! It applies to networks whose relaxed nodes all have free slopes
//! ([`Rules::back_with_slopes`](super::graph::Rules::back_with_slopes): ReLU); on others it
//! returns `None` and the plain bounds stand.

use std::time::Instant;

use super::bounds::{
    back_substitute_seen, concretize, minimizing_vertex, objective_rows, LayerBounds, LinearBound,
    Relaxation, Splits,
};
use super::graph::relu::adaptive_slope;
use super::graph::{Network, Rows};
use super::spec::InputBox;

/// Settings of the optimisation.
#[derive(Debug, Clone, Copy)]
pub struct AlphaBeta {
    /// Gradient steps.
    pub steps: usize,
    /// Adam's step size for the slopes.
    pub lr_alpha: f64,
    /// Adam's step size for the split multipliers.
    pub lr_beta: f64,
}

impl Default for AlphaBeta {
    fn default() -> AlphaBeta {
        AlphaBeta {
            steps: 20,
            lr_alpha: 0.1,
            lr_beta: 0.05,
        }
    }
}

/// The optimised parameters of a subdomain, which its children start from (a child's new
/// split starts with multiplier 0).
#[derive(Debug, Clone)]
pub struct Warm {
    /// Slopes per activation, `objectives x elements`.
    alpha: Vec<Vec<f64>>,
    /// Multipliers per split, `splits x objectives`.
    beta: Vec<f64>,
}

/// Whether every relaxed node of the network has free slopes.
pub fn supported(net: &Network) -> bool {
    net.activations().iter().all(|&id| {
        let node = &net.nodes()[id];
        node.op.rules().splittable() && node.inputs.len() == 1
    })
}

/// Adam's moments of one parameter vector.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One ascent step on `x` along `g`, then `x` clamped to `[lo, hi]`.
    fn step(&mut self, x: &mut [f64], g: &[f64], lr: f64, t: i32, lo: f64, hi: f64) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        let (c1, c2) = (1.0 - B1.powi(t), 1.0 - B2.powi(t));
        for i in 0..x.len() {
            if g[i] == 0.0 && self.m[i] == 0.0 {
                continue;
            }
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * g[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * g[i] * g[i];
            let step = lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-12);
            x[i] = (x[i] + step).clamp(lo, hi);
        }
    }
}

/// The best linear lower bounds found of `c_r . f(x) + d_r` for each objective on the
/// subdomain (`b` with `splits`, whose bounds are `act_bounds`), each at least as tight as
/// `start` (the plain bounds, returned where no step gains), and the parameters reached.
/// The steps start from `warm` (the parent's parameters, whose splits are the first of
/// `splits`) or from plain CROWN's slopes. Stops early once some objective is proven
/// positive, or at `deadline`. `None` when the network is not [`supported`].
#[allow(clippy::too_many_arguments)]
pub fn objective_bounds(
    net: &Network,
    b: &InputBox,
    act_bounds: &[LayerBounds],
    splits: &Splits,
    objectives: &[(Vec<f64>, f64)],
    start: Vec<LinearBound>,
    warm: Option<&Warm>,
    cfg: &AlphaBeta,
    deadline: Option<Instant>,
) -> Option<(Vec<LinearBound>, Warm)> {
    if !supported(net) {
        return None;
    }
    let nodes = net.nodes();
    let out = nodes.len() - 1;
    let n = objectives.len();
    let acts = net.activations();
    // Slopes per activation layer, `n x dim`, from the adaptive choice of plain CROWN.
    let mut alpha: Vec<Vec<f64>> = match warm {
        Some(w) => w.alpha.clone(),
        None => act_bounds
            .iter()
            .map(|lb| {
                let one: Vec<f64> = (0..lb.lower.len())
                    .map(|i| adaptive_slope(lb.lower[i], lb.upper[i]))
                    .collect();
                one.repeat(n)
            })
            .collect(),
    };
    let mut adam_a: Vec<Adam> = alpha.iter().map(|a| Adam::new(a.len())).collect();
    // One multiplier per split and objective.
    let mut beta = vec![0.0; splits.len() * n];
    if let Some(w) = warm {
        let k = w.beta.len().min(beta.len());
        beta[..k].copy_from_slice(&w.beta[..k]);
    }
    let mut adam_b = Adam::new(beta.len());
    let mut best = start;
    let (init, init_consts) = objective_rows(net, objectives);
    for t in 1..=cfg.steps as i32 {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // Back-substitution with the current slopes and multipliers, keeping each relaxed
        // node's coefficients (on its output) for the gradient.
        let mut seen: Vec<Option<Rows>> = vec![None; acts.len()];
        let params = Relaxation {
            alpha: &alpha,
            splits,
            beta: &beta,
        };
        let (rows, consts) = back_substitute_seen(
            net,
            out,
            init.clone(),
            init_consts.clone(),
            act_bounds,
            Some(&mut seen),
            Some(&params),
        );
        let mut closed = false;
        for r in 0..n {
            let lower = concretize(rows.row(r), consts[r], b);
            if lower > best[r].lower {
                best[r] = LinearBound {
                    coeffs: rows.row(r).to_vec(),
                    constant: consts[r],
                    lower,
                };
            }
            closed |= best[r].lower > 0.0;
        }
        if closed || t as usize == cfg.steps {
            break;
        }
        // Gradients: each row's linearised network at its minimising vertex, all rows carried
        // forward together (a column per row, one matrix product per affine node).
        let mut ga: Vec<Vec<f64>> = alpha.iter().map(|a| vec![0.0; a.len()]).collect();
        let mut gb = vec![0.0; beta.len()];
        let vertices: Vec<Vec<f64>> = (0..n).map(|r| minimizing_vertex(rows.row(r), b)).collect();
        let mut values: Vec<Rows> = Vec::with_capacity(nodes.len());
        values.push(Rows::from_columns(&vertices, b.dim()));
        for (id, node) in nodes.iter().enumerate().skip(1) {
            let ins: Vec<&Rows> = node.inputs.iter().map(|&i| &values[i]).collect();
            let v = match net.activation_of(id) {
                Some(k) => {
                    let lb = &act_bounds[k];
                    let dim = lb.lower.len();
                    let z = ins[0];
                    let mut out = Rows::zeros(dim, n);
                    let zeros = vec![0.0; dim];
                    for r in 0..n {
                        let coef = seen[k].as_ref().map_or(zeros.as_slice(), |s| s.row(r));
                        let col = z.column(r);
                        for i in 0..dim {
                            if lb.lower[i] < 0.0 && lb.upper[i] > 0.0 && coef[i] > 0.0 {
                                ga[k][r * dim + i] = coef[i] * col[i];
                            }
                        }
                        let y = node.op.rules().relaxed_forward(
                            &[col.as_slice()],
                            Some(lb),
                            coef,
                            &alpha[k][r * dim..(r + 1) * dim],
                        )?;
                        out.set_column(r, &y);
                    }
                    out
                }
                None if node.op.rules().need_bounds() => return None,
                None => node.op.rules().forward_columns(&ins),
            };
            values.push(v);
        }
        for (s, &(layer, i, phase)) in splits.iter().enumerate() {
            let z = values[nodes[acts[layer]].inputs[0]].row(i);
            for r in 0..n {
                gb[s * n + r] = phase.beta_sign() * z[r];
            }
        }
        for k in 0..alpha.len() {
            adam_a[k].step(&mut alpha[k], &ga[k], cfg.lr_alpha, t, 0.0, 1.0);
        }
        adam_b.step(&mut beta, &gb, cfg.lr_beta, t, 0.0, f64::INFINITY);
    }
    Some((best, Warm { alpha, beta }))
}

#[cfg(test)]
mod tests {
    use super::super::bounds::tests::random_net;
    use super::super::bounds::{crown, objective_bounds as plain_bounds, Phase};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Optimised bounds are never looser than CROWN's, gain on average, and hold at sampled
    /// points of the subdomain: the whole box without splits, and with a ReLU split only the
    /// points on its side.
    #[test]
    fn optimised_bounds_hold_on_the_subdomain_and_beat_crown() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (mut gain, mut checked) = (0.0, 0);
        for trial in 0..30 {
            let net = random_net(&mut rng, &[3, 10, 10, 10, 2]);
            let b = InputBox {
                lower: vec![-0.6, -0.2, 0.1],
                upper: vec![0.2, 0.5, 0.8],
            };
            let root = crown(&net, &b, &[], None).unwrap();
            // Every third trial splits the first unstable neuron of the second layer.
            let split = (trial % 3 != 0)
                .then(|| {
                    let lb = &root[1];
                    (0..lb.lower.len())
                        .find(|&i| lb.lower[i] < 0.0 && lb.upper[i] > 0.0)
                        .map(|i| {
                            let phase = if trial % 3 == 1 {
                                Phase::Active
                            } else {
                                Phase::Inactive
                            };
                            (1, i, phase)
                        })
                })
                .flatten();
            let splits: Vec<_> = split.into_iter().collect();
            let Some(bounds) = crown(&net, &b, &splits, Some(&root)) else {
                continue;
            };
            let objectives = vec![(vec![1.0, -1.0], 0.1), (vec![-0.5, 2.0], -0.3)];
            let start = plain_bounds(&net, &b, &bounds, &objectives);
            let cfg = AlphaBeta {
                steps: 40,
                ..AlphaBeta::default()
            };
            let (opt, _) = objective_bounds(
                &net,
                &b,
                &bounds,
                &splits,
                &objectives,
                start.clone(),
                None,
                &cfg,
                None,
            )
            .unwrap();
            for (o, s) in opt.iter().zip(&start) {
                assert!(o.lower >= s.lower);
                gain += o.lower - s.lower;
            }
            let relu = net.activations()[1];
            let pre = net.nodes()[relu].inputs[0];
            for _ in 0..400 {
                let x: Vec<f64> = (0..3)
                    .map(|j| rng.random_range(b.lower[j]..=b.upper[j]))
                    .collect();
                let values = net.forward_all(&x);
                let on_side = splits.iter().all(|&(_, i, p)| {
                    let z = values[pre][i];
                    (p == Phase::Active) == (z >= 0.0)
                });
                if !on_side {
                    continue;
                }
                let y = values.last().unwrap();
                for ((c, d), lin) in objectives.iter().zip(&opt) {
                    let f = c[0] * y[0] + c[1] * y[1] + d;
                    let g: f64 =
                        lin.coeffs.iter().zip(&x).map(|(a, v)| a * v).sum::<f64>() + lin.constant;
                    assert!(f >= g - 1e-9, "trial {trial}: f {f} < bound {g}");
                    assert!(g >= lin.lower - 1e-9);
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
        assert!(gain > 0.0, "no gain over CROWN");
    }
}
