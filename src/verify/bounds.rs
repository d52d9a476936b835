//! Bound propagation over the network's graph: sound lower and upper bounds of every
//! activation's inputs, and linear lower bounds of output objectives, over an input box.
//!
//! Three methods, all walking the graph through each operator's [`Rules`](super::graph::Rules),
//! each result intersected with the others':
//! - interval arithmetic (forward, one rule per operator);
//! - zonotopes (forward, DeepZ): every node's elements as affine functions of noise symbols,
//!   exact through affine maps and joins, so a relaxation's error keeps its sign downstream.
//!   One pass costs about as much as carrying `inputs + relaxed elements` functions through
//!   the network once, so it is what makes deep networks with few unstable ReLUs affordable;
//!   it is skipped when a node's zonotope would outgrow [`ZONOTOPE_ENTRIES`];
//! - back-substitution in the style of CROWN / DeepPoly: linear functions of a node's output
//!   are carried backwards node by node (a join adds the functions its inputs receive); affine
//!   maps are substituted exactly, nonlinear nodes are replaced by the linear bound their
//!   relaxation gives on the side each coefficient needs, and at the input the function is
//!   minimised over the box in closed form. Only the elements whose bounds matter are refined
//!   this way: every element of a smooth or bilinear node, the unstable elements of a ReLU;
//!   and, once zonotopes bound them, only where the work stays within [`BACK_BUDGET`] or the
//!   network is small (its cost grows with the square of the network's size).
//!
//! ReLU splits of branch and bound enter as bounds: an active neuron gets `l >= 0`, an
//! inactive one `u <= 0`. Bounds of a subdomain are intersected with its parent's, so they only
//! tighten down the tree.

use std::time::Instant;

use rayon::prelude::*;

use super::graph::{Network, NodeId, Rows, Zonotope};
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

impl Phase {
    /// The sign of a split's multiplier term in a back-substitution (beta-CROWN): `-beta z`
    /// for `z >= 0`, `+beta z` for `z <= 0`, both at most 0 where the split holds.
    pub fn beta_sign(self) -> f64 {
        match self {
            Phase::Active => -1.0,
            Phase::Inactive => 1.0,
        }
    }
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
        minimizing_vertex(&self.coeffs, b)
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

/// The vertex of the box where `row . x` is smallest.
pub(crate) fn minimizing_vertex(row: &[f64], b: &InputBox) -> Vec<f64> {
    row.iter()
        .enumerate()
        .map(|(j, c)| if *c >= 0.0 { b.lower[j] } else { b.upper[j] })
        .collect()
}

/// The objectives `(c_r, d_r)` as functions of the network's output: rows `c_r` and
/// constants `d_r`, where back-substitution starts.
pub(crate) fn objective_rows(net: &Network, objectives: &[(Vec<f64>, f64)]) -> (Rows, Vec<f64>) {
    let mut lambda = Rows::zeros(objectives.len(), net.output_dim());
    for (r, (c, _)) in objectives.iter().enumerate() {
        lambda.row_mut(r).copy_from_slice(c);
    }
    (lambda, objectives.iter().map(|(_, d)| *d).collect())
}

/// The minimum over the box of `row . x + constant`.
pub(crate) fn concretize(row: &[f64], constant: f64, b: &InputBox) -> f64 {
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

/// The most multiply-adds one activation layer's back-substitution may take when zonotopes
/// bound it already (some tens of milliseconds)...
const BACK_BUDGET: usize = 50_000_000;

/// ... unless one function goes back to the input in fewer than this many (small networks,
/// where back-substitution is cheap and tighter than zonotopes where many ReLUs are unstable).
const SMALL_REACH: usize = 2_000_000;

/// The most entries (elements times symbols) one node's zonotope may have: past it (a large
/// tensor, or many relaxed elements) the zonotope pass stops, to bound time and memory.
const ZONOTOPE_ENTRIES: usize = 1 << 23;

/// Bounds of every activation's inputs, from interval arithmetic alone.
pub fn interval(net: &Network, b: &InputBox) -> Vec<LayerBounds> {
    propagate(net, b, &[], None, 0, INTERVALS, None, None).expect("no splits, no contradiction")
}

/// Carries the rows of `lambda` (linear functions of node `start`'s output, plus `constant`)
/// back to the input through every node's back-substitution rule, relaxing nonlinear nodes
/// with `act_bounds`, so that for every `x` in the box and each row `r`:
/// `lambda_r . f_start(x) + constant_r >= coeffs_r . x + constant'_r`.
fn back_substitute(
    net: &Network,
    start: NodeId,
    lambda: Rows,
    constant: Vec<f64>,
    act_bounds: &[LayerBounds],
) -> (Rows, Vec<f64>) {
    back_substitute_seen(net, start, lambda, constant, act_bounds, None, None)
}

/// Free parameters of the ReLU relaxations in a back-substitution (alpha-beta-CROWN): the
/// lower slopes of every activation (`rows x elements`, see
/// [`Rules::back_with_slopes`](super::graph::Rules::back_with_slopes)) and a multiplier per
/// split and row (`splits x rows`), entering as `-beta z` for an active split and `+beta z`
/// for an inactive one.
pub(crate) struct Relaxation<'a> {
    pub alpha: &'a [Vec<f64>],
    pub splits: &'a Splits,
    pub beta: &'a [f64],
}

/// Optimised slopes to bound activations' unstable inputs with (alpha-CROWN's intermediate
/// slopes, found on a root box by [`alpha_beta::intermediate_bounds`](super::alpha_beta)):
/// any slopes in [0, 1] give sound bounds on any box, so a subdomain re-bounds its later
/// layers with them instead of CROWN's adaptive ones.
#[derive(Debug, Clone, Default)]
pub struct NeuronSlopes {
    /// Per activation, the slopes of its neurons that have them.
    pub(crate) layers: Vec<Option<LayerSlopes>>,
}

/// The slopes of one activation's neurons.
#[derive(Debug, Clone)]
pub(crate) struct LayerSlopes {
    /// Per neuron, its pair of rows in `alpha`: `2 r` bounds it from below, `2 r + 1` from
    /// above.
    pub(crate) row_of: Vec<Option<usize>>,
    /// Rows in `alpha`.
    pub(crate) rows: usize,
    /// Per earlier activation, `rows x elements`.
    pub(crate) alpha: Vec<Vec<f64>>,
}

impl LayerSlopes {
    /// The slopes of the rows that bound `which` (two each), or `None` where some neuron has
    /// none.
    fn gather(&self, which: &[usize]) -> Option<Vec<Vec<f64>>> {
        let rows: Vec<usize> = which
            .iter()
            .map(|&i| self.row_of.get(i).copied().flatten())
            .collect::<Option<_>>()?;
        Some(
            self.alpha
                .iter()
                .map(|a| {
                    let dim = a.len() / self.rows.max(1);
                    let mut out = Vec::with_capacity(2 * rows.len() * dim);
                    for &r in &rows {
                        out.extend_from_slice(&a[2 * r * dim..(2 * r + 2) * dim]);
                    }
                    out
                })
                .collect(),
        )
    }
}

/// [`back_substitute`], keeping in `seen[k]` the functions that reach activation `k`'s output
/// (its coefficients there, which branching heuristics and the slopes' gradient use), and
/// relaxing with `params` when given (every activation must then have free slopes).
pub(crate) fn back_substitute_seen(
    net: &Network,
    start: NodeId,
    lambda: Rows,
    constant: Vec<f64>,
    act_bounds: &[LayerBounds],
    seen: Option<&mut Vec<Option<Rows>>>,
    params: Option<&Relaxation>,
) -> (Rows, Vec<f64>) {
    let group = RowGroup {
        rows: lambda.n,
        act_bounds,
        params,
    };
    back_substitute_groups(net, start, lambda, constant, &[group], seen)
}

/// Consecutive rows of a batched back-substitution that belong to one subdomain: they are
/// relaxed with its activation bounds and, when given, its relaxation's parameters (whose
/// slopes and multipliers are over these rows alone).
pub(crate) struct RowGroup<'a> {
    /// How many rows.
    pub rows: usize,
    pub act_bounds: &'a [LayerBounds],
    pub params: Option<&'a Relaxation<'a>>,
}

/// [`back_substitute_seen`] of the rows of many subdomains at once (`groups`, in the order of
/// the rows): every affine node multiplies all rows in one matrix product, and each relaxed
/// node relaxes each group's rows with that group's bounds and parameters.
pub(crate) fn back_substitute_groups(
    net: &Network,
    start: NodeId,
    lambda: Rows,
    mut constant: Vec<f64>,
    groups: &[RowGroup],
    mut seen: Option<&mut Vec<Option<Rows>>>,
) -> (Rows, Vec<f64>) {
    let nodes = net.nodes();
    let n_rows = lambda.n;
    debug_assert_eq!(groups.iter().map(|g| g.rows).sum::<usize>(), n_rows);
    let sizes: Vec<usize> = groups.iter().map(|g| g.rows).collect();
    let mut lam: Vec<Option<Rows>> = vec![None; start + 1];
    lam[start] = Some(lambda);
    for id in (1..=start).rev() {
        let Some(l) = lam[id].take() else { continue };
        let node = &nodes[id];
        let outs = match net.activation_of(id) {
            Some(k) => {
                if let Some(seen) = seen.as_deref_mut() {
                    seen[k] = Some(l.clone());
                }
                let parts = if groups.len() == 1 {
                    vec![l]
                } else {
                    l.split_rows(&sizes)
                };
                let mut at = 0;
                let mut per_group: Vec<Vec<Rows>> = Vec::with_capacity(groups.len());
                for (g, part) in groups.iter().zip(parts) {
                    let consts = &mut constant[at..at + g.rows];
                    at += g.rows;
                    let bounds = Some(&g.act_bounds[k]);
                    per_group.push(match g.params {
                        Some(p) => relax_with(node, k, part, consts, bounds, p),
                        None => node.op.rules().back(part, consts, bounds),
                    });
                }
                if per_group.len() == 1 {
                    per_group.pop().expect("one group")
                } else {
                    (0..node.inputs.len())
                        .map(|j| Rows::stack(&per_group.iter().map(|o| &o[j]).collect::<Vec<_>>()))
                        .collect()
                }
            }
            None => node.op.rules().back(l, &mut constant, None),
        };
        for (&i, o) in node.inputs.iter().zip(outs) {
            match &mut lam[i] {
                Some(acc) => acc.add_assign(&o),
                slot => *slot = Some(o),
            }
        }
    }
    let rows = lam[0]
        .take()
        .unwrap_or_else(|| Rows::zeros(n_rows, net.input_dim()));
    (rows, constant)
}

/// One group's rows back through activation `k` with free slopes, and its splits' multipliers
/// on the split neurons' inputs.
fn relax_with(
    node: &super::graph::Node,
    k: usize,
    rows: Rows,
    consts: &mut [f64],
    bounds: Option<&LayerBounds>,
    p: &Relaxation,
) -> Vec<Rows> {
    let n = rows.n;
    let mut outs = node
        .op
        .rules()
        .back_with_slopes(rows, consts, bounds, &p.alpha[k])
        .expect("every activation has free slopes");
    for (s, &(layer, i, phase)) in p.splits.iter().enumerate() {
        if layer == k {
            for r in 0..n {
                outs[0].row_mut(r)[i] += phase.beta_sign() * p.beta[s * n + r];
            }
        }
    }
    outs
}

/// Rows of one back-substitution pass: the elements bounded together (twice as many rows;
/// the chunks run in parallel). The optimisation of intermediate bounds chunks the same way.
pub(crate) const CHUNK: usize = 64;

/// Back-substitution bounds `(lower, upper)` of elements `which` of node `p`'s output.
fn node_bounds(
    net: &Network,
    p: NodeId,
    which: &[usize],
    b: &InputBox,
    act_bounds: &[LayerBounds],
    deadline: Option<Instant>,
    slopes: Option<&LayerSlopes>,
) -> Vec<(f64, f64)> {
    let dim = net.nodes()[p].dim();
    which
        .par_chunks(CHUNK)
        .flat_map_iter(|chunk| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // Past the deadline: no refinement (the intervals stand, still sound).
                return vec![(f64::NEG_INFINITY, f64::INFINITY); chunk.len()];
            }
            let mut lambda = Rows::zeros(2 * chunk.len(), dim);
            for (r, &i) in chunk.iter().enumerate() {
                lambda.row_mut(2 * r)[i] = 1.0;
                lambda.row_mut(2 * r + 1)[i] = -1.0;
            }
            let consts = vec![0.0; 2 * chunk.len()];
            let (rows, consts) = match slopes.and_then(|s| s.gather(chunk)) {
                Some(alpha) => {
                    let params = Relaxation {
                        alpha: &alpha,
                        splits: &[],
                        beta: &[],
                    };
                    back_substitute_seen(net, p, lambda, consts, act_bounds, None, Some(&params))
                }
                None => back_substitute(net, p, lambda, consts, act_bounds),
            };
            (0..chunk.len())
                .map(|r| {
                    (
                        concretize(rows.row(2 * r), consts[2 * r], b),
                        -concretize(rows.row(2 * r + 1), consts[2 * r + 1], b),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Which refinements of interval arithmetic a bounding pass makes.
#[derive(Debug, Clone, Copy)]
struct Refine {
    /// A forward pass of zonotopes, while they fit in memory.
    zonotope: bool,
    /// Back-substitution of the elements whose bounds matter.
    back: bool,
}

const INTERVALS: Refine = Refine {
    zonotope: false,
    back: false,
};
const FULL: Refine = Refine {
    zonotope: true,
    back: true,
};

/// Bounds of every activation's inputs over the box: intervals, tightened (`refine.zonotope`)
/// by a forward pass of zonotopes while they fit in memory and refined by
/// back-substitution (`refine.back`) where they matter (every element of a smooth or bilinear node, the unstable elements of a
/// ReLU), intersected with the parent subdomain's, then narrowed by the splits.
/// `None` when the splits contradict the bounds (the subdomain is empty). Past `deadline`,
/// nothing more is refined: the bounds stay sound, only looser, and the caller sees the time
/// is up.
#[allow(clippy::too_many_arguments)]
fn propagate(
    net: &Network,
    b: &InputBox,
    splits: &Splits,
    parent: Option<&[LayerBounds]>,
    keep: usize,
    refine: Refine,
    deadline: Option<Instant>,
    slopes: Option<&NeuronSlopes>,
) -> Option<Vec<LayerBounds>> {
    let nodes = net.nodes();
    let mut lo: Vec<Vec<f64>> = Vec::with_capacity(nodes.len());
    let mut hi: Vec<Vec<f64>> = Vec::with_capacity(nodes.len());
    lo.push(b.lower.clone());
    hi.push(b.upper.clone());
    let mut bounds: Vec<LayerBounds> = Vec::with_capacity(net.activations().len());
    // Zonotopes of the nodes still to be consumed.
    let mut zono: Vec<Option<Zonotope>> = vec![None; nodes.len()];
    let last_use = net.last_uses();
    // The work of carrying one function back from each node to the input (its ancestors'
    // costs, bounded by those of every earlier node).
    let mut reach = vec![0; nodes.len()];
    for (id, node) in nodes.iter().enumerate().skip(1) {
        reach[id] = reach[id - 1] + node.op.rules().cost(node.dim());
    }
    let mut symbols = 0;
    let n_in = net.input_dim();
    // A ReLU split's child (`keep > 0`) has its parent's box: a zonotope of that box, one
    // relaxation narrower, bounds nothing that the parent's back-substitution did not bound
    // better, and on a large input it costs more than the rest of the pass (measured on
    // MNIST-FC 256x4: the same subdomains, 3 to 5 times faster without it).
    let mut use_zono =
        refine.zonotope && n_in * (n_in + 1) <= ZONOTOPE_ENTRIES && !(parent.is_some() && keep > 0);
    if use_zono {
        zono[0] = Some(Zonotope::input(&b.lower, &b.upper, &mut symbols));
    }
    for (id, node) in nodes.iter().enumerate().skip(1) {
        if let Some(k) = net.activation_of(id) {
            let mut lb = LayerBounds {
                lower: node
                    .inputs
                    .iter()
                    .flat_map(|&p| lo[p].iter().copied())
                    .collect(),
                upper: node
                    .inputs
                    .iter()
                    .flat_map(|&p| hi[p].iter().copied())
                    .collect(),
            };
            if let Some(par) = parent {
                for i in 0..lb.lower.len() {
                    lb.lower[i] = lb.lower[i].max(par[k].lower[i]);
                    lb.upper[i] = lb.upper[i].min(par[k].upper[i]);
                }
            }
            let splittable = node.op.rules().splittable();
            let mut offset = 0;
            for &p in &node.inputs {
                let dim = nodes[p].dim();
                // Intervals are exact for one affine map of the input box.
                let exact =
                    p == 0 || (nodes[p].inputs == [0] && nodes[p].op.rules().exact_on_box());
                let late = deadline.is_some_and(|d| Instant::now() >= d);
                // The parent's bounds of the first `keep` activations stand as they are.
                let kept = parent.is_some() && k < keep;
                if refine.back && !exact && !late && !kept {
                    let which: Vec<usize> = (0..dim)
                        .filter(|&i| {
                            let (l, u) = (lb.lower[offset + i], lb.upper[offset + i]);
                            if splittable {
                                l < 0.0 && u > 0.0
                            } else {
                                u > l
                            }
                        })
                        .collect();
                    // With zonotopes at hand, back-substitution is worth its price only
                    // where that price is small: it is quadratic in the network's size.
                    if use_zono
                        && reach[p] > SMALL_REACH
                        && 2 * which.len() * reach[p] > BACK_BUDGET
                    {
                        offset += dim;
                        continue;
                    }
                    let layer = slopes
                        .and_then(|s| s.layers.get(k))
                        .and_then(Option::as_ref);
                    let nb = node_bounds(net, p, &which, b, &bounds, deadline, layer);
                    for (&i, (l, u)) in which.iter().zip(nb) {
                        let j = offset + i;
                        lb.lower[j] = lb.lower[j].max(l);
                        lb.upper[j] = lb.upper[j].min(u);
                    }
                }
                offset += dim;
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
            // The tightened bounds are the inputs' bounds from here on.
            let mut offset = 0;
            for &p in &node.inputs {
                let dim = nodes[p].dim();
                lo[p].copy_from_slice(&lb.lower[offset..offset + dim]);
                hi[p].copy_from_slice(&lb.upper[offset..offset + dim]);
                offset += dim;
            }
            bounds.push(lb);
        }
        let (mut l, mut u) = {
            let l_in: Vec<&[f64]> = node.inputs.iter().map(|&p| lo[p].as_slice()).collect();
            let u_in: Vec<&[f64]> = node.inputs.iter().map(|&p| hi[p].as_slice()).collect();
            node.op.rules().interval(&l_in, &u_in)
        };
        use_zono = use_zono
            && node.dim() * (1 + symbols) <= ZONOTOPE_ENTRIES
            && !deadline.is_some_and(|d| Instant::now() >= d);
        if use_zono {
            let ins: Vec<&Zonotope> = node
                .inputs
                .iter()
                .map(|&p| zono[p].as_ref().expect("kept until its last use"))
                .collect();
            let relaxed = net.activation_of(id).map(|k| &bounds[k]);
            let z = node
                .op
                .rules()
                .zonotope(&ins, relaxed, &mut symbols)
                .unwrap_or_else(|| Zonotope::from_interval(&l, &u, &mut symbols));
            let (zl, zu) = z.bounds();
            for i in 0..l.len() {
                // Two sound bounds: they cross only by rounding, and then neither is taken.
                if zl[i] <= u[i] && zu[i] >= l[i] {
                    l[i] = l[i].max(zl[i]);
                    u[i] = u[i].min(zu[i]);
                }
            }
            for &p in &node.inputs {
                if last_use[p] == id {
                    zono[p] = None;
                }
            }
            // A band can outgrow the bound: then the pass ends here.
            if z.rows.data.len() > ZONOTOPE_ENTRIES {
                use_zono = false;
            } else {
                zono[id] = Some(z);
            }
        }
        if !use_zono {
            zono.iter_mut().for_each(|z| *z = None);
        }
        lo.push(l);
        hi.push(u);
    }
    Some(bounds)
}

/// Back-substitution bounds of every activation's inputs, given splits and (optionally) the
/// parent subdomain's bounds to intersect with. Returns `None` when the splits contradict the
/// bounds (the subdomain is empty).
pub fn crown(
    net: &Network,
    b: &InputBox,
    splits: &Splits,
    parent: Option<&[LayerBounds]>,
) -> Option<Vec<LayerBounds>> {
    propagate(net, b, splits, parent, 0, FULL, None, None)
}

/// [`crown`] that stops refining at `deadline` (the bounds stay sound, only looser), so that a
/// bounding pass on a large network cannot overrun a time limit. The parent's bounds of the
/// first `keep` activations are kept without refinement: a ReLU split in activation `k` on
/// the parent's box changes no bound of activations `0..=k` but the split neuron's, so
/// `keep = k + 1` there (and 0 after an input split). Back-substitution relaxes with `slopes`
/// where they are given for every neuron it bounds.
pub fn crown_until(
    net: &Network,
    b: &InputBox,
    splits: &Splits,
    parent: Option<&[LayerBounds]>,
    keep: usize,
    deadline: Instant,
    slopes: Option<&NeuronSlopes>,
) -> Option<Vec<LayerBounds>> {
    propagate(net, b, splits, parent, keep, FULL, Some(deadline), slopes)
}

/// Linear lower bounds over the box of `c_r . f(x) + d_r` for each objective row `(c_r, d_r)`.
pub fn objective_bounds(
    net: &Network,
    b: &InputBox,
    act_bounds: &[LayerBounds],
    objectives: &[(Vec<f64>, f64)],
) -> Vec<LinearBound> {
    let out = net.nodes().len() - 1;
    let (lambda, consts) = objective_rows(net, objectives);
    let (rows, consts) = back_substitute(net, out, lambda, consts, act_bounds);
    (0..objectives.len())
        .map(|r| {
            let coeffs = rows.row(r).to_vec();
            let lower = concretize(&coeffs, consts[r], b);
            LinearBound {
                coeffs,
                constant: consts[r],
                lower,
            }
        })
        .collect()
}

/// The coefficients that the back-substitution of `c . f(x)` puts on each activation's
/// output (`None` where nothing of the function reaches it): how much each neuron's
/// relaxation weighs in that bound.
pub fn activation_coefficients(
    net: &Network,
    act_bounds: &[LayerBounds],
    c: &[f64],
) -> Vec<Option<Vec<f64>>> {
    let out = net.nodes().len() - 1;
    let mut lambda = Rows::zeros(1, net.output_dim());
    lambda.row_mut(0).copy_from_slice(c);
    let mut seen = vec![None; net.activations().len()];
    back_substitute_seen(
        net,
        out,
        lambda,
        vec![0.0],
        act_bounds,
        Some(&mut seen),
        None,
    );
    seen.into_iter().map(|r| r.map(|r| r.data)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::graph::{Affine, Builder, Linear, Op, Relu};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A chain of random dense layers of these sizes with ReLUs between them.
    pub(crate) fn random_net(rng: &mut rand_chacha::ChaCha8Rng, dims: &[usize]) -> Network {
        let mut b = Builder::new(vec![dims[0]]);
        let mut prev = b.input();
        for (k, w) in dims.windows(2).enumerate() {
            let (n_in, n_out) = (w[0], w[1]);
            if k > 0 {
                prev = b
                    .add_flat(format!("relu{k}"), Op::Relu(Relu), &[prev])
                    .unwrap();
            }
            let a = Affine {
                linear: Linear::Dense {
                    rows: n_out,
                    cols: n_in,
                    w: (0..n_in * n_out)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                },
                bias: (0..n_out).map(|_| rng.random_range(-0.5..0.5)).collect(),
            };
            prev = b
                .add_flat(format!("fc{k}"), Op::Affine(a), &[prev])
                .unwrap();
        }
        b.finish(prev).unwrap()
    }

    /// A small DAG with every operator that has a symbolic rule: dense maps, ReLUs, a
    /// sigmoid, a weighted sum, a product and a concatenation, each followed by a ReLU so that
    /// its bounds are reported.
    fn random_dag(rng: &mut rand_chacha::ChaCha8Rng) -> Network {
        use super::super::graph::{Add, Concat, Mul, Smooth};
        let mut b = Builder::new(vec![3]);
        let mut dense = |b: &mut Builder, x: NodeId, n_in: usize, n: usize, name: &str| {
            let a = Affine {
                linear: Linear::Dense {
                    rows: n,
                    cols: n_in,
                    w: (0..n * n_in).map(|_| rng.random_range(-1.0..1.0)).collect(),
                },
                bias: (0..n).map(|_| rng.random_range(-0.5..0.5)).collect(),
            };
            b.add_flat(name, Op::Affine(a), &[x]).unwrap()
        };
        let x = b.input();
        let a = dense(&mut b, x, 3, 6, "a");
        let r = b.add_flat("r", Op::Relu(Relu), &[a]).unwrap();
        let c = dense(&mut b, r, 6, 6, "c");
        let s = b.add_flat("s", Op::Smooth(Smooth::Sigmoid), &[c]).unwrap();
        let sum = b
            .add_flat(
                "sum",
                Op::Add(Add {
                    coeffs: vec![1.0, -2.0],
                }),
                &[r, s],
            )
            .unwrap();
        let rs = b.add_flat("rs", Op::Relu(Relu), &[sum]).unwrap();
        let p = b.add_flat("p", Op::Mul(Mul), &[c, sum]).unwrap();
        let rp = b.add_flat("rp", Op::Relu(Relu), &[p]).unwrap();
        let cat = Concat {
            outer: 1,
            inner: vec![6, 6],
        };
        let k = b.add_flat("cat", Op::Concat(cat), &[rs, rp]).unwrap();
        let e = dense(&mut b, k, 12, 4, "e");
        let re = b.add_flat("re", Op::Relu(Relu), &[e]).unwrap();
        let out = dense(&mut b, re, 4, 2, "out");
        b.finish(out).unwrap()
    }

    #[test]
    fn zonotope_bounds_contain_every_sampled_value_and_beat_intervals() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let only = Refine {
            zonotope: true,
            back: false,
        };
        let (mut sym_width, mut interval_width) = (0.0, 0.0);
        for _ in 0..20 {
            let net = random_dag(&mut rng);
            let b = InputBox {
                lower: vec![-0.3, 0.1, -0.2],
                upper: vec![0.2, 0.4, 0.3],
            };
            let s = propagate(&net, &b, &[], None, 0, only, None, None).unwrap();
            let i = interval(&net, &b);
            for _ in 0..300 {
                let x: Vec<f64> = (0..3)
                    .map(|j| rng.random_range(b.lower[j]..=b.upper[j]))
                    .collect();
                let values = net.forward_all(&x);
                for (k, &id) in net.activations().iter().enumerate() {
                    let v: Vec<f64> = net.nodes()[id]
                        .inputs
                        .iter()
                        .flat_map(|&p| values[p].iter().copied())
                        .collect();
                    for (n, v) in v.iter().enumerate() {
                        assert!(
                            s[k].lower[n] <= v + 1e-9 && *v <= s[k].upper[n] + 1e-9,
                            "node {id} element {n}: {v} outside [{}, {}]",
                            s[k].lower[n],
                            s[k].upper[n]
                        );
                    }
                }
            }
            for (sb, ib) in s.iter().zip(&i) {
                for n in 0..sb.lower.len() {
                    sym_width += sb.upper[n] - sb.lower[n];
                    interval_width += ib.upper[n] - ib.lower[n];
                }
            }
        }
        assert!(
            sym_width < 0.9 * interval_width,
            "{sym_width} vs {interval_width}"
        );
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
