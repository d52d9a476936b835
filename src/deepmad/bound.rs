//! A proven upper bound of the DeepMAD objective over a whole space: every channel vector and
//! every (bottleneck, kernel, depth) of every stage.
//!
//! Best-first branch and bound over boxes of channel vectors (stem and stages, multiples of 8).
//! A box is bounded by a relaxation that holds for every structure inside it:
//! - every entropy term is a product of non-negative factors that grow with the channels
//!   (`ln(C R^2)`, and `ln w` of each layer, which grows with its input channels and the
//!   bottleneck), so the box's largest channels bound it from above;
//! - FLOPs and params grow with the channels and the bottleneck, so the box's smallest
//!   channels bound them from below, except the identity residual of an inverted block, counted
//!   only where input and output widths agree: it is left out unless the box fixes both equal;
//! - the bottleneck may take any multiple of 8 allowed for some channel count of the box;
//! - the depth penalty `beta exp(std)` is bounded below by `beta` (a std is never negative);
//! - the two budgets and the effectiveness bound of the whole network,
//!   `L ln(L / rho0) <= sum ln w`, enter with Lagrange multipliers (`>= 0`); the layer count
//!   `L` is shared by the stages and that bound's left side, so it is split off with one more
//!   multiplier (of any sign): `sum_stages max_choice ((coef + lr) ln w - mu layers -
//!   lf flops / Bf - lp params / Bp) + max_L (mu L - lr L ln(L / rho0)) + lf + lp + ...`
//!   bounds the best structure of the box that meets them (in the tinynas convention, whose
//!   effectiveness is the largest over stage prefixes, the whole network's is one of those).
//!   The multipliers are searched; any value is sound, a better one only tightens the bound.
//!
//! The objective is separable by stage once the stage factors are fixed: block `b`'s `ln w`
//! counts in every stage that ends at or after it, with the sum of their factors. Within a
//! stage, a choice's terms are affine in its depth (units after the first repeat), so the best
//! depth is the first or the last.
//!
//! A box that holds a single channel vector is bounded once more by the fixed-channel program
//! (`program::fixed_channel_bound`: its proven optimum, padded for the solver's tolerance;
//! bottleneck spaces only, see there). The bound of the whole space is the largest bound of a
//! box still open, or the incumbent when every box is closed (its bound at or below the
//! incumbent's exact score).
//!
//! It covers the grid the searches use: widths and bottlenecks that are multiples of 8 (a
//! space whose limits are not, or whose stages can reach a resolution under 1, is refused).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::polish::btn_bounds;
use super::score::{block_terms, score, Convention};
use super::space::{Space, CHANNEL_STEP};
use super::structure::{Block, BlockKind};

/// A box of channel vectors: `lo[i] <= c[i] <= hi[i]`, multiples of 8 (index 0 the stem).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelBox {
    pub lo: Vec<usize>,
    pub hi: Vec<usize>,
}

/// What the branch and bound proved.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalBound {
    /// An upper bound of the objective over every structure of the space that meets the
    /// budgets (FLOPs, params).
    pub bound: f64,
    /// The incumbent it was measured against.
    pub incumbent: f64,
    /// `(bound - incumbent) / |incumbent|`.
    pub gap: f64,
    /// Boxes bounded.
    pub nodes: usize,
    /// Boxes still open when it stopped.
    pub open: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// (seconds, bound) each time the bound fell.
    pub trace: Vec<(f64, f64)>,
}

/// Why no bound came out.
#[derive(Debug, thiserror::Error)]
pub enum BoundError {
    /// The objective has a negative weight, which the relaxation cannot bound.
    #[error("the global bound needs non-negative objective weights (alpha, beta)")]
    NegativeWeights,
    /// A stage's `ln(C R^2)` can be negative (a resolution under 1), so more width could
    /// lower the objective and the box relaxation would not bound it.
    #[error("the global bound needs every stage's C R^2 to be at least 1 (stage {0} reaches a resolution of {1})")]
    SmallResolution(usize, f64),
    /// The space lets widths leave the grid of multiples of 8 that the bound covers.
    #[error("the global bound covers widths on the grid of multiples of 8: {0} is not one")]
    OffGrid(String),
}

/// The per-stage data of the objective that does not depend on channels.
struct Plan {
    /// For each block (stem, stages, final conv): the weight of its `ln w`, a function of the
    /// box through the stage channels: `sum over stages ending at or after it of
    /// alpha half ln(C R^2)`, each stage given as (index of its channel, or None for the fixed
    /// final conv, and `alpha half`, `R^2`).
    stages: Vec<(Option<usize>, f64, f64)>,
    /// For each stage, the block that ends it.
    last_block: Vec<usize>,
    /// Resolution at the input of each block.
    res_in: Vec<f64>,
    /// The least depth penalty.
    penalty: f64,
}

fn plan(space: &Space, convention: Convention) -> Plan {
    let n = space.stages.strides.len();
    let chans = vec![CHANNEL_STEP; n + 1];
    let picks = vec![(CHANNEL_STEP, space.stages.kernels[0], 1); n];
    let blocks = space.assemble(&chans, &picks);
    let w = space.weights();
    let s = score(&blocks, space.resolution, convention, &w);
    let half = if convention == Convention::Tinynas {
        0.5
    } else {
        1.0
    };
    let stages = s
        .stages
        .iter()
        .enumerate()
        .map(|(g, st)| {
            let chan = (st.last_block <= n).then_some(st.last_block);
            (
                chan,
                w.alpha_of(g, s.stages.len()) * half,
                st.resolution * st.resolution,
            )
        })
        .collect();
    let mut res_in = Vec::with_capacity(blocks.len());
    let mut r = space.resolution as f64;
    for b in &blocks {
        res_in.push(r);
        r /= b.s as f64;
    }
    // The depth penalty is beta exp(std) over at least one stage, or nothing.
    let penalty = if w.beta > 0.0 && !s.depths.is_empty() {
        w.beta
    } else {
        0.0
    };
    Plan {
        stages,
        last_block: s.stages.iter().map(|st| st.last_block).collect(),
        res_in,
        penalty,
    }
}

/// One choice of a stage in a box: its `ln w`, FLOPs and params for the first unit and for
/// each further unit (the terms are affine in the depth).
#[derive(Clone, Copy)]
struct Terms {
    lw: (f64, f64),
    layers: (f64, f64),
    flops: (f64, f64),
    params: (f64, f64),
    max_depth: usize,
}

fn block(
    space: &Space,
    j: usize,
    cin: usize,
    cout: usize,
    k: usize,
    btn: usize,
    d: usize,
) -> Block {
    Block {
        kind: space.block,
        cin,
        cout,
        k,
        s: space.stages.strides[j],
        depth: Some(d),
        btn: Some(btn),
    }
}

/// The terms of every choice of stage `j` (0-based) in box `b`: `ln w` at the box's largest
/// channels, costs at its smallest.
fn stage_terms(space: &Space, plan: &Plan, j: usize, b: &ChannelBox) -> Vec<Terms> {
    let st = &space.stages;
    let (cin_lo, cin_hi, c_lo, c_hi) = (b.lo[j], b.hi[j], b.lo[j + 1], b.hi[j + 1]);
    let res = plan.res_in[j + 1];
    let btn_lo = btn_bounds(space, c_lo).0;
    let btn_hi = btn_bounds(space, c_hi).1;
    // The identity residual of an inverted block is counted only where widths agree: at the
    // smallest channels it may be counted for structures of the box that have none.
    let residual_unsure = space.block == BlockKind::K1DWSEK1
        && st.strides[j] == 2
        && cin_lo == c_lo
        && !(cin_lo == cin_hi && c_lo == c_hi);
    let mut out = Vec::new();
    let mut btn = btn_lo.div_ceil(CHANNEL_STEP).max(1) * CHANNEL_STEP;
    while btn <= btn_hi {
        for &k in &st.kernels {
            let hi1 = block_terms(&block(space, j, cin_hi, c_hi, k, btn, 1), res);
            let hi2 = block_terms(&block(space, j, cin_hi, c_hi, k, btn, 2), res);
            let lo1 = block_terms(&block(space, j, cin_lo, c_lo, k, btn, 1), res);
            let lo2 = block_terms(&block(space, j, cin_lo, c_lo, k, btn, 2), res);
            let mut f1 = lo1.1;
            if residual_unsure {
                f1 -= cin_lo as f64 * res * res;
            }
            out.push(Terms {
                lw: (hi1.2, hi2.2 - hi1.2),
                layers: (hi1.3 as f64, (hi2.3 - hi1.3) as f64),
                flops: (f1, lo2.1 - lo1.1),
                params: (lo1.0, lo2.0 - lo1.0),
                max_depth: st.max_depth[j],
            });
        }
        btn += CHANNEL_STEP;
    }
    out
}

/// The relaxation of a box, ready for any multipliers.
struct Relaxed {
    /// Per stage: the coefficient of its `ln w` and its choices.
    stages: Vec<(f64, Vec<Terms>)>,
    /// The objective's part outside the stages (stem and final conv entropy, less the least
    /// penalty).
    constant: f64,
    /// FLOPs and params outside the stages, at the box's smallest channels.
    fixed_flops: f64,
    fixed_params: f64,
    /// `ln w` (at the largest channels) and layers outside the stages.
    fixed_lw: f64,
    fixed_layers: f64,
    /// The most layers a structure of the space has.
    max_layers: f64,
}

fn relax(space: &Space, plan: &Plan, b: &ChannelBox) -> Relaxed {
    let n = space.stages.strides.len();
    let nblocks = plan.res_in.len();
    // Stage factors at the box's largest channels (a fixed final conv keeps its width).
    let factor: Vec<f64> = plan
        .stages
        .iter()
        .map(|&(chan, a, r2)| {
            let c = match chan {
                Some(i) => b.hi[i] as f64,
                None => space.final_channels.unwrap_or(0) as f64,
            };
            a * (c * r2).ln()
        })
        .collect();
    // Block i's ln w weighs the sum of the factors of the stages ending at or after it.
    let coef: Vec<f64> = (0..nblocks)
        .map(|i| {
            plan.last_block
                .iter()
                .zip(&factor)
                .filter(|(&last, _)| last >= i)
                .map(|(_, f)| f)
                .sum()
        })
        .collect();
    let stem_hi = space.assemble(&b.hi, &[])[0].clone();
    let stem_lo = space.assemble(&b.lo, &[])[0].clone();
    let (_, _, e0, l0) = block_terms(&stem_hi, plan.res_in[0]);
    let (p0, f0, _, _) = block_terms(&stem_lo, plan.res_in[0]);
    let mut constant = coef[0] * e0 - plan.penalty;
    let (mut fixed_flops, mut fixed_params) = (f0, p0);
    let (mut fixed_lw, mut fixed_layers) = (e0, l0 as f64);
    if let Some(f) = space.final_channels {
        let fin = |c: usize| Block {
            kind: BlockKind::Conv,
            cin: c,
            cout: f,
            k: 1,
            s: 1,
            depth: None,
            btn: None,
        };
        let (_, _, ef, lf) = block_terms(&fin(b.hi[n]), plan.res_in[n + 1]);
        let (pf, ff, _, _) = block_terms(&fin(b.lo[n]), plan.res_in[n + 1]);
        constant += coef[n + 1] * ef;
        fixed_flops += ff;
        fixed_params += pf;
        fixed_lw += ef;
        fixed_layers += lf as f64;
    }
    let stages: Vec<(f64, Vec<Terms>)> = (0..n)
        .map(|j| (coef[j + 1], stage_terms(space, plan, j, b)))
        .collect();
    let max_layers = fixed_layers
        + stages
            .iter()
            .map(|(_, c)| {
                c.iter()
                    .map(|t| t.layers.0 + t.layers.1 * (t.max_depth - 1) as f64)
                    .fold(0.0, f64::max)
            })
            .sum::<f64>();
    Relaxed {
        stages,
        constant,
        fixed_flops,
        fixed_params,
        fixed_lw,
        fixed_layers,
        max_layers,
    }
}

/// Lagrange multipliers: FLOPs and params (each scaled by its budget), the effectiveness
/// constraint `L ln(L / rho0) <= sum ln w`, and the layer count `L` that the stages share
/// with the effectiveness term (the only multiplier that may be negative).
#[derive(Debug, Clone, Copy)]
struct Multipliers([f64; 4]);

impl Relaxed {
    /// The Lagrangian bound at `m`: an upper bound of every structure of the box that meets
    /// the budgets and the effectiveness bound.
    fn dual(&self, space: &Space, m: Multipliers) -> f64 {
        let [lf, lp, lr, mu] = m.0;
        let (bf, bp, rho0) = (space.budget.flops, space.budget.params, space.budget.rho);
        let mut total = self.constant
            + lf * (1.0 - self.fixed_flops / bf)
            + lp * (1.0 - self.fixed_params / bp)
            + lr * self.fixed_lw
            - mu * self.fixed_layers;
        for (coef, choices) in &self.stages {
            let mut best = f64::NEG_INFINITY;
            for t in choices {
                let term = |lw: f64, layers: f64, f: f64, p: f64| {
                    (coef + lr) * lw - mu * layers - lf * f / bf - lp * p / bp
                };
                let first = term(t.lw.0, t.layers.0, t.flops.0, t.params.0);
                let more = term(t.lw.1, t.layers.1, t.flops.1, t.params.1);
                let v = if more > 0.0 {
                    first + more * (t.max_depth - 1) as f64
                } else {
                    first
                };
                best = best.max(v);
            }
            total += best;
        }
        // max over the layer count L of mu L - lr L ln(L / rho0), concave in L.
        let g = |l: f64| mu * l - lr * l * (l / rho0).ln();
        let lmax = self.max_layers.max(1.0);
        let at = if lr > 0.0 {
            (rho0 * (mu / lr - 1.0).exp()).clamp(1.0, lmax)
        } else if mu > 0.0 {
            lmax
        } else {
            1.0
        };
        total += g(at.floor().max(1.0)).max(g(at.ceil().min(lmax)));
        total
    }

    /// The least dual bound found from `start` by coordinate steps that grow on success and
    /// halve on failure; returns it with its multipliers.
    #[allow(clippy::needless_range_loop)] // i indexes the multipliers and their steps together
    fn minimise(&self, space: &Space, start: Multipliers) -> (f64, Multipliers) {
        let mut m = start;
        let mut best = self.dual(space, m);
        let mut step = [
            (m.0[0] * 0.25).max(1.0),
            (m.0[1] * 0.25).max(1.0),
            (m.0[2] * 0.25).max(1.0),
            (m.0[3].abs() * 0.25).max(1.0),
        ];
        for _ in 0..400 {
            let mut moved = false;
            for i in 0..4 {
                for sign in [1.0, -1.0] {
                    let mut c = m;
                    c.0[i] += sign * step[i];
                    if i < 3 {
                        c.0[i] = c.0[i].max(0.0);
                    }
                    let v = self.dual(space, c);
                    if v < best {
                        best = v;
                        m = c;
                        step[i] *= 2.0;
                        moved = true;
                        break;
                    }
                }
                if !moved {
                    step[i] *= 0.5;
                }
            }
            if step
                .iter()
                .zip(&m.0)
                .all(|(s, x)| *s < 1e-7 * (1.0 + x.abs()))
            {
                break;
            }
        }
        (best, m)
    }
}

/// Tightens a box by the channel rules (stem range, non-decreasing, growth at most
/// `max_growth`, at most `max_channels` and the final conv's width); `None` if it is empty.
fn propagate(space: &Space, mut b: ChannelBox) -> Option<ChannelBox> {
    let st = &space.stages;
    let n = b.lo.len();
    let down8 = |x: f64| (x / CHANNEL_STEP as f64).floor() as usize * CHANNEL_STEP;
    let up8 = |x: f64| (x / CHANNEL_STEP as f64).ceil() as usize * CHANNEL_STEP;
    loop {
        let before = b.clone();
        for i in 1..n {
            b.lo[i] = b.lo[i].max(b.lo[i - 1]);
            b.hi[i] = b.hi[i].min(down8(st.max_growth * b.hi[i - 1] as f64));
        }
        for i in (1..n).rev() {
            b.hi[i - 1] = b.hi[i - 1].min(b.hi[i]);
            // The least width on the grid from which `lo[i]` is reachable, by the very test
            // `channels_ok` makes (a quotient rounded up could skip a width the product allows).
            let need = b.lo[i] as f64;
            let mut m = up8(need / st.max_growth).max(CHANNEL_STEP);
            while m > CHANNEL_STEP && need <= st.max_growth * (m - CHANNEL_STEP) as f64 {
                m -= CHANNEL_STEP;
            }
            while need > st.max_growth * m as f64 {
                m += CHANNEL_STEP;
            }
            b.lo[i - 1] = b.lo[i - 1].max(m);
        }
        if b.lo.iter().zip(&b.hi).any(|(l, h)| l > h) {
            return None;
        }
        if b == before {
            return Some(b);
        }
    }
}

/// The whole space as one box.
pub fn root_box(space: &Space) -> Option<ChannelBox> {
    let n = space.stages.strides.len();
    let [slo, shi] = space.stem.channels;
    let up8 = |x: usize| x.div_ceil(CHANNEL_STEP).max(1) * CHANNEL_STEP;
    let top = space.final_channels.map_or(space.stages.max_channels, |f| {
        f.min(space.stages.max_channels)
    });
    let mut lo = vec![CHANNEL_STEP; n + 1];
    let mut hi = vec![top / CHANNEL_STEP * CHANNEL_STEP; n + 1];
    lo[0] = up8(slo);
    hi[0] = shi / CHANNEL_STEP * CHANNEL_STEP;
    propagate(space, ChannelBox { lo, hi })
}

struct Node {
    bound: f64,
    lambda: Multipliers,
    b: ChannelBox,
    /// Bounded by the fixed-channel program (a single channel vector).
    exact: bool,
}

impl PartialEq for Node {
    fn eq(&self, o: &Self) -> bool {
        self.bound == o.bound
    }
}
impl Eq for Node {}
impl PartialOrd for Node {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Node {
    fn cmp(&self, o: &Self) -> Ordering {
        self.bound.total_cmp(&o.bound)
    }
}

/// The bound of one box, from multipliers near `start`.
pub fn box_bound(space: &Space, convention: Convention, b: &ChannelBox) -> Result<f64, BoundError> {
    check_weights(space, convention)?;
    let plan = plan(space, convention);
    let r = relax(space, &plan, b);
    Ok(r.minimise(space, Multipliers([1.0; 4])).0)
}

/// Refuses spaces the relaxation does not bound: negative weights, a stage whose
/// `ln(C R^2)` could be negative, widths off the grid of multiples of 8.
fn check_weights(space: &Space, convention: Convention) -> Result<(), BoundError> {
    let w = space.weights();
    if w.beta < 0.0 || w.alpha.iter().any(|&a| a < 0.0) {
        return Err(BoundError::NegativeWeights);
    }
    let st = &space.stages;
    for (what, v) in [
        ("max_channels", Some(st.max_channels)),
        ("max_btn", Some(st.max_btn)),
        ("final_channels", space.final_channels),
    ] {
        if let Some(v) = v.filter(|v| v % CHANNEL_STEP != 0) {
            return Err(BoundError::OffGrid(format!("{what} = {v}")));
        }
    }
    for (g, &(_, _, r2)) in plan(space, convention).stages.iter().enumerate() {
        if !(CHANNEL_STEP as f64 * r2 >= 1.0) {
            return Err(BoundError::SmallResolution(g, r2.sqrt()));
        }
    }
    Ok(())
}

/// Splits a box in two across the channel whose range is widest (in ratio), at its geometric
/// middle on the grid.
fn split(b: &ChannelBox) -> Option<(ChannelBox, ChannelBox)> {
    let (i, _) =
        b.lo.iter()
            .zip(&b.hi)
            .enumerate()
            .filter(|(_, (l, h))| h > l)
            .map(|(i, (&l, &h))| (i, (h as f64 / l as f64).ln()))
            .max_by(|x, y| x.1.total_cmp(&y.1))?;
    let (l, h) = (b.lo[i], b.hi[i]);
    let mid = ((l as f64 * h as f64).sqrt() / CHANNEL_STEP as f64).floor() as usize * CHANNEL_STEP;
    let mid = mid.clamp(l, h - CHANNEL_STEP);
    let mut left = b.clone();
    let mut right = b.clone();
    left.hi[i] = mid;
    right.lo[i] = mid + CHANNEL_STEP;
    Some((left, right))
}

/// Branch and bound over the space's channel boxes until every box's bound is at most
/// `incumbent` (the exact score of a feasible design) or `time_limit` passes.
pub fn global_bound(
    space: &Space,
    convention: Convention,
    incumbent: f64,
    time_limit: Duration,
) -> Result<GlobalBound, BoundError> {
    check_weights(space, convention)?;
    let t0 = Instant::now();
    let plan = plan(space, convention);
    let mut heap = BinaryHeap::new();
    let mut nodes = 0usize;
    let mut trace = Vec::new();
    let push =
        |heap: &mut BinaryHeap<Node>, b: ChannelBox, start: Multipliers, nodes: &mut usize| {
            let Some(b) = propagate(space, b) else {
                return;
            };
            *nodes += 1;
            let (bound, lambda) = relax(space, &plan, &b).minimise(space, start);
            if bound > incumbent {
                heap.push(Node {
                    bound,
                    lambda,
                    b,
                    exact: false,
                });
            }
        };
    if let Some(root) = root_box(space) {
        push(&mut heap, root, Multipliers([1.0; 4]), &mut nodes);
    }
    let mut last = f64::INFINITY;
    while let Some(top) = heap.peek() {
        if top.bound < last {
            last = top.bound;
            trace.push((t0.elapsed().as_secs_f64(), last.max(incumbent)));
        }
        if t0.elapsed() >= time_limit {
            break;
        }
        let node = heap.pop().expect("peeked");
        match split(&node.b) {
            Some((l, r)) => {
                push(&mut heap, l, node.lambda, &mut nodes);
                push(&mut heap, r, node.lambda, &mut nodes);
            }
            // A single channel vector: bounded once more by the program for those channels,
            // which is exact but for its tolerance; then its bound stays.
            None if !node.exact => {
                let left = time_limit.saturating_sub(t0.elapsed());
                match super::program::fixed_channel_bound(space, convention, &node.b.lo, left) {
                    Some(b) if b <= incumbent => {}
                    Some(b) => heap.push(Node {
                        bound: b.min(node.bound),
                        exact: true,
                        ..node
                    }),
                    None => heap.push(Node {
                        exact: true,
                        ..node
                    }),
                }
            }
            None => {
                let bound = node.bound.max(incumbent);
                return Ok(finish(bound, incumbent, nodes, heap.len() + 1, t0, trace));
            }
        }
    }
    let bound = heap.peek().map_or(incumbent, |n| n.bound.max(incumbent));
    Ok(finish(bound, incumbent, nodes, heap.len(), t0, trace))
}

fn finish(
    bound: f64,
    incumbent: f64,
    nodes: usize,
    open: usize,
    t0: Instant,
    mut trace: Vec<(f64, f64)>,
) -> GlobalBound {
    trace.push((t0.elapsed().as_secs_f64(), bound));
    GlobalBound {
        bound,
        incumbent,
        gap: (bound - incumbent) / incumbent.abs().max(f64::MIN_POSITIVE),
        nodes,
        open,
        seconds: t0.elapsed().as_secs_f64(),
        trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deepmad::polish::{channels_ok, feasible};

    /// A space small enough to enumerate: 3 stages, channels up to 32, depths up to 2.
    fn small(block: &str, convention_rho: f64, flops: f64) -> Space {
        let btn = if block == "SuperResK1KXK1" {
            "btn_min_ratio = 0.25"
        } else {
            "btn_ratio = [1.0, 2.0]"
        };
        let text = format!(
            "kind = \"deepmad\"\nname = \"small\"\nblock = \"{block}\"\nresolution = 16\n\
             [budget]\nflops = {flops}\nparams = 40000\nrho = {convention_rho}\n\
             [objective]\nalpha = [1, 1, 4]\nbeta = 2.0\n\
             [stem]\nkernel = 3\nstride = 1\nchannels = [8, 16]\n\
             [stages]\nstrides = [1, 2, 2]\nkernels = [3, 5]\nmax_channels = 32\nmax_btn = 64\n\
             max_depth = [1, 2, 2]\n{btn}\nmax_growth = 2.0\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.toml");
        std::fs::write(&path, text).unwrap();
        crate::deepmad::space::read(&path).unwrap()
    }

    /// The best exact score of every feasible structure of the space.
    fn enumerate(space: &Space, convention: Convention) -> Option<f64> {
        let w = space.weights();
        let grid: Vec<usize> = (1..=4).map(|i| i * CHANNEL_STEP).collect();
        let mut best: Option<f64> = None;
        let n = space.stages.strides.len();
        let mut chans = vec![0usize; n + 1];
        fn channels(
            space: &Space,
            grid: &[usize],
            i: usize,
            chans: &mut Vec<usize>,
            out: &mut Vec<Vec<usize>>,
        ) {
            if i == chans.len() {
                if channels_ok(space, chans) {
                    out.push(chans.clone());
                }
                return;
            }
            for &c in grid {
                chans[i] = c;
                channels(space, grid, i + 1, chans, out);
            }
        }
        let mut vectors = Vec::new();
        channels(space, &grid, 0, &mut chans, &mut vectors);
        for c in vectors {
            // Every (bottleneck, kernel, depth) of every stage.
            let options: Vec<Vec<(usize, usize, usize)>> = (0..n)
                .map(|j| {
                    let (lo, hi) = btn_bounds(space, c[j + 1]);
                    let mut v = Vec::new();
                    for b in (lo..=hi)
                        .step_by(CHANNEL_STEP)
                        .filter(|b| b % CHANNEL_STEP == 0)
                    {
                        for &k in &space.stages.kernels {
                            for d in 1..=space.stages.max_depth[j] {
                                v.push((b, k, d));
                            }
                        }
                    }
                    v
                })
                .collect();
            let mut idx = vec![0usize; n];
            loop {
                let picks: Vec<_> = (0..n).map(|j| options[j][idx[j]]).collect();
                let blocks = space.assemble(&c, &picks);
                let s = score(&blocks, space.resolution, convention, &w);
                if feasible(space, &blocks, &s) {
                    best = Some(best.map_or(s.score, |b| b.max(s.score)));
                }
                let mut j = 0;
                while j < n {
                    idx[j] += 1;
                    if idx[j] < options[j].len() {
                        break;
                    }
                    idx[j] = 0;
                    j += 1;
                }
                if j == n {
                    break;
                }
            }
        }
        best
    }

    #[test]
    fn propagation_keeps_every_vector_the_channel_rules_allow() {
        // 1.4 * 120 == 168 in floating point while 168 / 1.4 rounds above 120: the rules
        // allow (120, 168), so the box must keep it.
        let mut space = small("SuperResK1KXK1", 0.5, 3.0e6);
        space.stages.max_growth = 1.4;
        let pair = ChannelBox {
            lo: vec![120, 168],
            hi: vec![120, 168],
        };
        assert_eq!(propagate(&space, pair.clone()), Some(pair));
        let wide = ChannelBox {
            lo: vec![8, 168],
            hi: vec![200, 168],
        };
        assert_eq!(propagate(&space, wide).unwrap().lo[0], 120);
        let impossible = ChannelBox {
            lo: vec![112, 168],
            hi: vec![112, 168],
        };
        assert_eq!(propagate(&space, impossible), None);
    }

    #[test]
    fn spaces_the_relaxation_cannot_bound_are_refused() {
        let mut space = small("SuperResK1KXK1", 0.5, 3.0e6);
        space.stages.max_btn = 60;
        assert!(matches!(
            box_bound(&space, Convention::Paper, &root_box(&space).unwrap()),
            Err(BoundError::OffGrid(_))
        ));
        let mut space = small("SuperResK1KXK1", 0.5, 3.0e6);
        space.objective.beta = -1.0;
        assert!(matches!(
            global_bound(&space, Convention::Paper, 0.0, Duration::from_secs(1)),
            Err(BoundError::NegativeWeights)
        ));
    }

    #[test]
    fn the_bound_is_never_below_the_enumerated_optimum() {
        let mut checked = 0;
        for block in ["SuperResK1KXK1", "SuperResK1DWSEK1"] {
            for (rho, flops) in [(0.5, 3.0e6), (0.4, 1.5e6), (10.0, 1.0e9)] {
                let space = small(block, rho, flops);
                for convention in [Convention::Paper, Convention::Tinynas] {
                    let Some(best) = enumerate(&space, convention) else {
                        continue;
                    };
                    checked += 1;
                    let root = root_box(&space).unwrap();
                    let at_root = box_bound(&space, convention, &root).unwrap();
                    assert!(
                        at_root >= best - 1e-9,
                        "{block} {rho} {convention:?}: root {at_root} < {best}"
                    );
                    // Measured against a weaker incumbent, the proven bound still covers the
                    // optimum; against the optimum itself it closes or stays above it.
                    for incumbent in [best - 0.1 * best.abs(), best] {
                        let g =
                            global_bound(&space, convention, incumbent, Duration::from_secs(20))
                                .unwrap();
                        eprintln!(
                            "{block} rho {rho} {convention:?}: optimum {best:.3}, incumbent {incumbent:.3}, bound {:.3} ({} boxes, {} open)",
                            g.bound, g.nodes, g.open
                        );
                        assert!(
                            g.bound >= best - 1e-9,
                            "{block} {rho} {convention:?}: bound {} < optimum {best}",
                            g.bound
                        );
                        assert!(g.trace.windows(2).all(|w| w[1].1 <= w[0].1 + 1e-9));
                    }
                }
            }
        }
        assert!(
            checked >= 6,
            "only {checked} spaces had a feasible structure"
        );
    }
}
