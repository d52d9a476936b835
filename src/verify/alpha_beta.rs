//! Optimised linear bounds of output objectives and of a root box's intermediate bounds
//! (alpha-CROWN and beta-CROWN): the lower slope
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
    back_substitute_groups, back_substitute_seen, concretize, minimizing_vertex, objective_rows,
    LayerBounds, LayerSlopes, LinearBound, NeuronSlopes, Relaxation, RowGroup, Splits, CHUNK,
};
use super::graph::relu::adaptive_slope;
use super::graph::{Network, NodeId, Rows};
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
    let sub = Subdomain {
        b,
        act_bounds,
        splits,
        objectives,
        start,
        warm,
        steps: cfg.steps,
    };
    objective_bounds_batch(net, vec![sub], cfg, deadline).map(|mut v| v.remove(0))
}

/// One subdomain of a batched optimisation ([`objective_bounds_batch`]).
pub struct Subdomain<'a> {
    /// Its input box.
    pub b: &'a InputBox,
    /// Its activations' input bounds.
    pub act_bounds: &'a [LayerBounds],
    /// Its ReLU splits.
    pub splits: &'a Splits,
    /// The objectives `(c_r, d_r)` to bound from below.
    pub objectives: &'a [(Vec<f64>, f64)],
    /// Their plain bounds, kept where no step gains.
    pub start: Vec<LinearBound>,
    /// The parent's parameters, whose splits are the first of `splits`.
    pub warm: Option<&'a Warm>,
    /// Gradient steps at most.
    pub steps: usize,
}

/// [`objective_bounds`] of many subdomains at once, in their order: every step
/// back-substitutes the rows of all subdomains still open together (one matrix product per
/// affine node for the whole batch instead of one per subdomain) and carries their
/// linearised networks forward together. A subdomain leaves the batch when one of its
/// objectives is proven positive or its steps are done. `cfg.steps` is not read: each
/// subdomain has its own. `None` when the network is not [`supported`].
pub fn objective_bounds_batch(
    net: &Network,
    subs: Vec<Subdomain>,
    cfg: &AlphaBeta,
    deadline: Option<Instant>,
) -> Option<Vec<(Vec<LinearBound>, Warm)>> {
    if !supported(net) {
        return None;
    }
    let mut groups: Vec<Group> = subs
        .into_iter()
        .map(|s| {
            let n = s.objectives.len();
            let alpha: Vec<Vec<f64>> = match s.warm {
                Some(w) => w.alpha.clone(),
                None => crown_slopes(s.act_bounds, n),
            };
            // One multiplier per split and objective.
            let mut beta = vec![0.0; s.splits.len() * n];
            if let Some(w) = s.warm {
                let k = w.beta.len().min(beta.len());
                beta[..k].copy_from_slice(&w.beta[..k]);
            }
            let (init, init_consts) = objective_rows(net, s.objectives);
            Group::new(
                s.b,
                s.act_bounds,
                s.splits,
                init,
                init_consts,
                s.start,
                alpha,
                beta,
                s.steps,
            )
        })
        .collect();
    let problem = Problem {
        net,
        start: net.nodes().len() - 1,
        cfg,
        deadline,
        stop_when_positive: true,
    };
    problem.maximise(&mut groups)?;
    Some(groups.into_iter().map(Group::result).collect())
}

/// The lower bound of objective `r` of `objectives` over the box, relaxed with `act_bounds`
/// and the splits, with the slopes and multipliers `warm` holds for that objective: the bound
/// a child starts its optimisation from when `act_bounds` are its parent's with the split
/// neuron's phase fixed (branching scores candidates with it). Plain CROWN where `warm` is
/// `None` or the network is not [`supported`].
pub fn row_bound(
    net: &Network,
    b: &InputBox,
    act_bounds: &[LayerBounds],
    splits: &Splits,
    objectives: &[(Vec<f64>, f64)],
    r: usize,
    warm: Option<&Warm>,
) -> f64 {
    let out = net.nodes().len() - 1;
    let (lambda, consts) = objective_rows(net, &objectives[r..=r]);
    let n = objectives.len();
    let (rows, consts) = match warm {
        Some(w) if supported(net) => {
            let alpha: Vec<Vec<f64>> = w
                .alpha
                .iter()
                .map(|a| {
                    let dim = a.len() / n;
                    a[r * dim..(r + 1) * dim].to_vec()
                })
                .collect();
            let beta: Vec<f64> = (0..splits.len())
                .map(|s| w.beta.get(s * n + r).copied().unwrap_or(0.0))
                .collect();
            let params = Relaxation {
                alpha: &alpha,
                splits,
                beta: &beta,
            };
            back_substitute_seen(net, out, lambda, consts, act_bounds, None, Some(&params))
        }
        _ => back_substitute_seen(net, out, lambda, consts, act_bounds, None, None),
    };
    concretize(rows.row(0), consts[0], b)
}

/// The slopes plain CROWN chooses (the adaptive lower slope of every ReLU), one copy per row:
/// a start of the optimisation that is never worse than CROWN.
fn crown_slopes(act_bounds: &[LayerBounds], rows: usize) -> Vec<Vec<f64>> {
    act_bounds
        .iter()
        .map(|lb| {
            let one: Vec<f64> = (0..lb.lower.len())
                .map(|i| adaptive_slope(lb.lower[i], lb.upper[i]))
                .collect();
            one.repeat(rows)
        })
        .collect()
}

/// The most slope entries kept for re-bounding subdomains (64 MiB).
const SLOPE_ENTRIES: usize = 1 << 23;

/// Every activation's input bounds tightened by optimised slopes (alpha-CROWN's intermediate
/// bounds), layer by layer from the first: the lower and the upper bound of each unstable
/// neuron are two rows of their own, each with its own slopes of every earlier activation,
/// raised by `cfg.steps` gradient steps from CROWN's; each new bound is intersected with the
/// old one (both are sound), and a layer's tightened bounds relax it in the later layers'
/// optimisation. Meant for a root box, before any split: its bounds are every subdomain's
/// floor, and the slopes of each chunk's last step (returned beside them, up to
/// [`SLOPE_ENTRIES`]) bound its subdomains' later layers. It takes at most a tenth of the
/// time left before `deadline`.
/// Returns the bounds unchanged and no slopes where the network is not [`supported`]; past
/// `deadline` the layers left keep their bounds.
pub fn intermediate_bounds(
    net: &Network,
    b: &InputBox,
    mut bounds: Vec<LayerBounds>,
    cfg: &AlphaBeta,
    deadline: Option<Instant>,
) -> (Vec<LayerBounds>, NeuronSlopes) {
    use rayon::prelude::*;
    let mut slopes = NeuronSlopes {
        layers: vec![None; bounds.len()],
    };
    if !supported(net) {
        return (bounds, slopes);
    }
    let nodes = net.nodes();
    // At most a tenth of the time left: branch and bound and the falsifier need the rest.
    let deadline = deadline.map(|d| {
        let now = Instant::now();
        now + d.saturating_duration_since(now) / 10
    });
    let mut stored = 0;
    for (k, &id) in net.activations().iter().enumerate() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let p = nodes[id].inputs[0];
        // Intervals are exact for one affine map of the input box.
        if p == 0 || (nodes[p].inputs == [0] && nodes[p].op.rules().exact_on_box()) {
            continue;
        }
        let lb = &bounds[k];
        let which: Vec<usize> = (0..lb.lower.len())
            .filter(|&i| lb.lower[i] < 0.0 && lb.upper[i] > 0.0)
            .collect();
        if which.is_empty() {
            continue;
        }
        let earlier = &bounds[..k];
        let dim = nodes[p].dim();
        let problem = Problem {
            net,
            start: p,
            cfg,
            deadline,
            stop_when_positive: false,
        };
        let found: Vec<(Vec<(f64, f64)>, Option<Vec<Vec<f64>>>)> = which
            .par_chunks(CHUNK)
            .map(|chunk| {
                let rows = 2 * chunk.len();
                let mut lambda = Rows::zeros(rows, dim);
                for (r, &i) in chunk.iter().enumerate() {
                    lambda.row_mut(2 * r)[i] = 1.0;
                    lambda.row_mut(2 * r + 1)[i] = -1.0;
                }
                let none = LinearBound {
                    coeffs: Vec::new(),
                    constant: 0.0,
                    lower: f64::NEG_INFINITY,
                };
                let mut group = vec![Group::new(
                    b,
                    earlier,
                    &[],
                    lambda,
                    vec![0.0; rows],
                    vec![none; rows],
                    crown_slopes(earlier, rows),
                    Vec::new(),
                    cfg.steps,
                )];
                let best = problem
                    .maximise(&mut group)
                    .map(|()| group.pop().expect("one group").result());
                let pairs = (0..chunk.len())
                    .map(|r| match &best {
                        Some((best, _)) => (best[2 * r].lower, -best[2 * r + 1].lower),
                        None => (f64::NEG_INFINITY, f64::INFINITY),
                    })
                    .collect();
                (pairs, best.map(|(_, w)| w.alpha))
            })
            .collect();
        // The chunks' slopes, in the order of `which`, kept while they stay small (they are
        // read by every subdomain; conv networks would need gigabytes).
        let size: usize = found
            .iter()
            .filter_map(|(_, a)| a.as_ref())
            .flat_map(|a| a.iter().map(Vec::len))
            .sum();
        stored += size;
        if stored <= SLOPE_ENTRIES && found.iter().all(|(_, a)| a.is_some()) {
            let mut alpha: Vec<Vec<f64>> = vec![Vec::new(); k];
            for (_, a) in &found {
                for (acc, part) in alpha.iter_mut().zip(a.as_ref().expect("checked")) {
                    acc.extend_from_slice(part);
                }
            }
            let mut row_of = vec![None; bounds[k].lower.len()];
            for (r, &i) in which.iter().enumerate() {
                row_of[i] = Some(r);
            }
            slopes.layers[k] = Some(LayerSlopes {
                row_of,
                rows: 2 * which.len(),
                alpha,
            });
        }
        let lb = &mut bounds[k];
        for (&i, (l, u)) in which.iter().zip(found.into_iter().flat_map(|(p, _)| p)) {
            // Two sound bounds: they cross only by rounding, and then neither is taken.
            if l <= u && l <= lb.upper[i] && u >= lb.lower[i] {
                lb.lower[i] = lb.lower[i].max(l);
                lb.upper[i] = lb.upper[i].min(u);
            }
        }
    }
    (bounds, slopes)
}

/// One subdomain's rows in an optimisation, and where its ascent stands.
struct Group<'a> {
    b: &'a InputBox,
    /// The bounds of every activation before the problem's start node, at least.
    act_bounds: &'a [LayerBounds],
    splits: &'a Splits,
    /// The rows (functions of the start node's output) and their constants.
    init: Rows,
    init_consts: Vec<f64>,
    /// Each row's best bound so far.
    best: Vec<LinearBound>,
    /// Slopes per activation, `rows x elements`, and multipliers, `splits x rows`.
    alpha: Vec<Vec<f64>>,
    beta: Vec<f64>,
    adam_a: Vec<Adam>,
    adam_b: Adam,
    steps: usize,
    done: bool,
}

impl<'a> Group<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        b: &'a InputBox,
        act_bounds: &'a [LayerBounds],
        splits: &'a Splits,
        init: Rows,
        init_consts: Vec<f64>,
        best: Vec<LinearBound>,
        alpha: Vec<Vec<f64>>,
        beta: Vec<f64>,
        steps: usize,
    ) -> Group<'a> {
        Group {
            adam_a: alpha.iter().map(|a| Adam::new(a.len())).collect(),
            adam_b: Adam::new(beta.len()),
            b,
            act_bounds,
            splits,
            init,
            init_consts,
            best,
            alpha,
            beta,
            steps,
            done: steps == 0,
        }
    }

    fn result(self) -> (Vec<LinearBound>, Warm) {
        (
            self.best,
            Warm {
                alpha: self.alpha,
                beta: self.beta,
            },
        )
    }
}

/// One optimisation: linear lower bounds of rows of functions of node `start`'s output over
/// each group's box, relaxed with the group's bounds and splits.
struct Problem<'a> {
    net: &'a Network,
    start: NodeId,
    cfg: &'a AlphaBeta,
    deadline: Option<Instant>,
    /// A group stops once some row's bound is positive (a constraint of the region closes).
    stop_when_positive: bool,
}

impl Problem<'_> {
    /// Gradient ascent on every row's bound of every group at once, from each group's slopes
    /// and multipliers; each group's `best` ends with its rows' best bounds and its `alpha`
    /// and `beta` with the parameters reached. `None` where a node before `start` needs
    /// bounds and has no free slopes.
    fn maximise(&self, groups: &mut [Group]) -> Option<()> {
        let (net, cfg) = (self.net, self.cfg);
        let nodes = net.nodes();
        let acts = net.activations();
        let most = groups.iter().map(|g| g.steps).max().unwrap_or(0);
        for t in 1..=most as i32 {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let open: Vec<usize> = (0..groups.len()).filter(|&g| !groups[g].done).collect();
            if open.is_empty() {
                break;
            }
            // Back-substitution of every open group's rows with its current slopes and
            // multipliers, keeping each relaxed node's coefficients (on its output) for the
            // gradient.
            let init = Rows::stack(&open.iter().map(|&g| &groups[g].init).collect::<Vec<_>>());
            let consts: Vec<f64> = open
                .iter()
                .flat_map(|&g| groups[g].init_consts.iter().copied())
                .collect();
            let mut seen: Vec<Option<Rows>> = vec![None; acts.len()];
            let (rows, consts) = {
                let params: Vec<Relaxation> = open
                    .iter()
                    .map(|&g| Relaxation {
                        alpha: &groups[g].alpha,
                        splits: groups[g].splits,
                        beta: &groups[g].beta,
                    })
                    .collect();
                let row_groups: Vec<RowGroup> = open
                    .iter()
                    .zip(&params)
                    .map(|(&g, p)| RowGroup {
                        rows: groups[g].init.n,
                        act_bounds: groups[g].act_bounds,
                        params: Some(p),
                    })
                    .collect();
                back_substitute_groups(net, self.start, init, consts, &row_groups, Some(&mut seen))
            };
            // Each open group's rows start at `at` in the stacked rows; those that go on take
            // a gradient step (their rows' columns in the forward pass).
            let mut going: Vec<(usize, usize)> = Vec::new();
            let mut at = 0;
            for &g in &open {
                let group = &mut groups[g];
                let mut closed = false;
                for r in 0..group.init.n {
                    let row = rows.row(at + r);
                    let lower = concretize(row, consts[at + r], group.b);
                    if lower > group.best[r].lower {
                        group.best[r] = LinearBound {
                            coeffs: row.to_vec(),
                            constant: consts[at + r],
                            lower,
                        };
                    }
                    closed |= group.best[r].lower > 0.0;
                }
                if (closed && self.stop_when_positive) || t as usize >= group.steps {
                    group.done = true;
                } else {
                    going.push((g, at));
                }
                at += group.init.n;
            }
            if going.is_empty() {
                break;
            }
            // Gradients: each row's linearised network at its minimising vertex, all rows of
            // the groups going on carried forward together (a column per row, one matrix
            // product per affine node).
            let mut cols: Vec<(usize, usize, usize)> = Vec::new(); // (group, row, stacked row)
            let mut vertices: Vec<Vec<f64>> = Vec::new();
            for &(g, at) in &going {
                for r in 0..groups[g].init.n {
                    cols.push((g, r, at + r));
                    vertices.push(minimizing_vertex(rows.row(at + r), groups[g].b));
                }
            }
            let mut ga: Vec<Vec<Vec<f64>>> = vec![Vec::new(); groups.len()];
            for &(g, _) in &going {
                ga[g] = groups[g].alpha.iter().map(|a| vec![0.0; a.len()]).collect();
            }
            let mut values: Vec<Rows> = Vec::with_capacity(self.start + 1);
            values.push(Rows::from_columns(&vertices, net.input_dim()));
            for (id, node) in nodes.iter().enumerate().take(self.start + 1).skip(1) {
                let ins: Vec<&Rows> = node.inputs.iter().map(|&i| &values[i]).collect();
                let v = match net.activation_of(id) {
                    Some(k) => {
                        let z = ins[0];
                        let dim = z.n;
                        let mut out = Rows::zeros(dim, cols.len());
                        let zeros = vec![0.0; dim];
                        for (c, &(g, r, stacked)) in cols.iter().enumerate() {
                            let group = &groups[g];
                            let lb = &group.act_bounds[k];
                            let coef = seen[k]
                                .as_ref()
                                .map_or(zeros.as_slice(), |s| s.row(stacked));
                            let col = z.column(c);
                            for i in 0..dim {
                                if lb.lower[i] < 0.0 && lb.upper[i] > 0.0 && coef[i] > 0.0 {
                                    ga[g][k][r * dim + i] = coef[i] * col[i];
                                }
                            }
                            let y = node.op.rules().relaxed_forward(
                                &[col.as_slice()],
                                Some(lb),
                                coef,
                                &group.alpha[k][r * dim..(r + 1) * dim],
                            )?;
                            out.set_column(c, &y);
                        }
                        out
                    }
                    None if node.op.rules().need_bounds() => return None,
                    None => node.op.rules().forward_columns(&ins),
                };
                values.push(v);
            }
            let mut c0 = 0;
            for &(g, _) in &going {
                let group = &mut groups[g];
                let n = group.init.n;
                let mut gb = vec![0.0; group.beta.len()];
                for (s, &(layer, i, phase)) in group.splits.iter().enumerate() {
                    let z = values[nodes[acts[layer]].inputs[0]].row(i);
                    for r in 0..n {
                        gb[s * n + r] = phase.beta_sign() * z[c0 + r];
                    }
                }
                for (k, grad) in ga[g].iter().enumerate() {
                    group.adam_a[k].step(&mut group.alpha[k], grad, cfg.lr_alpha, t, 0.0, 1.0);
                }
                group
                    .adam_b
                    .step(&mut group.beta, &gb, cfg.lr_beta, t, 0.0, f64::INFINITY);
                c0 += n;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::bounds::tests::random_net;
    use super::super::bounds::{crown, objective_bounds as plain_bounds, Phase};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Optimised intermediate bounds contain every sampled pre-activation, are never looser
    /// than CROWN's, and tighten some.
    #[test]
    fn optimised_intermediate_bounds_hold_and_tighten() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (mut crown_width, mut opt_width) = (0.0, 0.0);
        for _ in 0..10 {
            let net = random_net(&mut rng, &[4, 12, 12, 12, 12, 2]);
            let b = InputBox {
                lower: vec![-0.5, -0.1, 0.0, 0.3],
                upper: vec![0.3, 0.6, 0.4, 0.9],
            };
            let root = crown(&net, &b, &[], None).unwrap();
            let (opt, _) = intermediate_bounds(&net, &b, root.clone(), &AlphaBeta::default(), None);
            for (o, c) in opt.iter().zip(&root) {
                for i in 0..o.lower.len() {
                    assert!(o.lower[i] >= c.lower[i] && o.upper[i] <= c.upper[i]);
                    crown_width += c.upper[i] - c.lower[i];
                    opt_width += o.upper[i] - o.lower[i];
                }
            }
            for _ in 0..500 {
                let x: Vec<f64> = (0..4)
                    .map(|j| rng.random_range(b.lower[j]..=b.upper[j]))
                    .collect();
                let values = net.forward_all(&x);
                for (k, &id) in net.activations().iter().enumerate() {
                    let z = &values[net.nodes()[id].inputs[0]];
                    for (i, v) in z.iter().enumerate() {
                        assert!(
                            opt[k].lower[i] <= v + 1e-9 && *v <= opt[k].upper[i] + 1e-9,
                            "layer {k} neuron {i}: {v} outside [{}, {}]",
                            opt[k].lower[i],
                            opt[k].upper[i]
                        );
                    }
                }
            }
        }
        assert!(
            opt_width < 0.98 * crown_width,
            "{opt_width} vs {crown_width}"
        );
    }

    /// A batch of subdomains (different boxes, splits and step counts, one warm-started)
    /// reaches the bounds and parameters each one reaches alone.
    #[test]
    fn a_batch_bounds_each_subdomain_as_it_would_alone() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let net = random_net(&mut rng, &[3, 10, 10, 10, 2]);
        let objectives = vec![(vec![1.0, -1.0], 0.1), (vec![-0.5, 2.0], -0.3)];
        let boxes: Vec<InputBox> = (0..4)
            .map(|k| {
                let lo = -0.6 + 0.1 * k as f64;
                InputBox {
                    lower: vec![lo, -0.2, 0.1],
                    upper: vec![lo + 0.8, 0.5, 0.8],
                }
            })
            .collect();
        let mut cases = Vec::new();
        for (k, b) in boxes.iter().enumerate() {
            let root = crown(&net, b, &[], None).unwrap();
            let unstable = (0..root[1].lower.len())
                .find(|&i| root[1].lower[i] < 0.0 && root[1].upper[i] > 0.0);
            let splits: Vec<_> = match (k % 2, unstable) {
                (1, Some(i)) => vec![(1, i, Phase::Active)],
                _ => Vec::new(),
            };
            let Some(bounds) = crown(&net, b, &splits, Some(&root)) else {
                continue;
            };
            let start = plain_bounds(&net, b, &bounds, &objectives);
            cases.push((b, splits, bounds, start, 5 + 3 * k));
        }
        assert!(cases.len() >= 3);
        let cfg = AlphaBeta::default();
        // The first case's parameters warm-start the last.
        let first = objective_bounds(
            &net,
            cases[0].0,
            &cases[0].2,
            &cases[0].1,
            &objectives,
            cases[0].3.clone(),
            None,
            &cfg,
            None,
        )
        .unwrap()
        .1;
        let warm_of = |i: usize| (i + 1 == cases.len()).then_some(&first);
        let alone: Vec<(Vec<LinearBound>, Warm)> = cases
            .iter()
            .enumerate()
            .map(|(i, (b, splits, bounds, start, steps))| {
                let cfg = AlphaBeta {
                    steps: *steps,
                    ..cfg
                };
                objective_bounds(
                    &net,
                    b,
                    bounds,
                    splits,
                    &objectives,
                    start.clone(),
                    warm_of(i),
                    &cfg,
                    None,
                )
                .unwrap()
            })
            .collect();
        let subs = cases
            .iter()
            .enumerate()
            .map(|(i, (b, splits, bounds, start, steps))| Subdomain {
                b,
                act_bounds: bounds,
                splits,
                objectives: &objectives,
                start: start.clone(),
                warm: warm_of(i),
                steps: *steps,
            })
            .collect();
        let batched = objective_bounds_batch(&net, subs, &cfg, None).unwrap();
        assert_eq!(batched.len(), alone.len());
        for ((bl, bw), (al, aw)) in batched.iter().zip(&alone) {
            for (x, y) in bl.iter().zip(al) {
                assert!(
                    (x.lower - y.lower).abs() < 1e-9,
                    "{} vs {}",
                    x.lower,
                    y.lower
                );
            }
            for (x, y) in bw.alpha.iter().flatten().zip(aw.alpha.iter().flatten()) {
                assert!((x - y).abs() < 1e-9);
            }
            assert_eq!(bw.beta.len(), aw.beta.len());
        }
    }

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
