//! The Lagrangian relaxation of a box of channel vectors and depths: a bound in microseconds
//! to milliseconds, weaker than the box program's LP (`program::box_bound`), which
//! `bound.rs` uses to close wide boxes cheaply.
//!
//! Over a box, every entropy term is a product of non-negative factors that grow with the
//! channels (`ln(C R^2)`, and `ln w` of each layer, which grows with its input channels and the
//! bottleneck), so the box's largest channels bound it from above; FLOPs and params grow with
//! the channels and the bottleneck, so its smallest channels bound them from below, except the
//! identity residual of an inverted block, counted only where input and output widths agree:
//! it is left out unless the box fixes both equal. The bottleneck may take any multiple of 8
//! allowed for some channel count of the box; the depth penalty `beta exp(std)` is bounded
//! below by `beta`. The two budgets and the effectiveness bound of the whole network,
//! `L ln(L / rho0) <= sum ln w`, enter with Lagrange multipliers (`>= 0`); the layer count `L`
//! is shared by the stages and that bound's left side, so it is split off with one more
//! multiplier (of any sign): `sum_stages max_choice ((coef + lr) ln w - mu layers - lf flops /
//! Bf - lp params / Bp) + max_L (mu L - lr L ln(L / rho0)) + lf + lp + ...` bounds the best
//! structure of the box that meets them (in the tinynas convention, whose effectiveness is the
//! largest over stage prefixes, the whole network's is one of those). Any multipliers are
//! sound; better ones only tighten the bound.
//!
//! The objective is separable by stage once the stage factors are fixed: block `b`'s `ln w`
//! counts in every stage that ends at or after it, with the sum of their factors. Within a
//! stage, a choice's terms are affine in its depth (units after the first repeat), so the best
//! depth is at one end of the box's range.

use super::bound::ChannelBox;
use super::polish::btn_bounds;
use super::score::{block_terms, score, Convention};
use super::space::{Space, CHANNEL_STEP};
use super::structure::{Block, BlockKind};

/// The per-stage data of the objective that does not depend on channels.
pub(super) struct Plan {
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

pub(super) fn plan(space: &Space, convention: Convention) -> Plan {
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
    /// The stage's depth range in the box.
    depths: [usize; 2],
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
                depths: b.depths[j],
            });
        }
        btn += CHANNEL_STEP;
    }
    out
}

/// The relaxation of a box, ready for any multipliers.
pub(super) struct Relaxed {
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

pub(super) fn relax(space: &Space, plan: &Plan, b: &ChannelBox) -> Relaxed {
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
    if let (Some(hi), Some(lo)) = (space.final_conv(b.hi[n]), space.final_conv(b.lo[n])) {
        let (_, _, ef, lf) = block_terms(&hi, plan.res_in[n + 1]);
        let (pf, ff, _, _) = block_terms(&lo, plan.res_in[n + 1]);
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
                    .map(|t| t.layers.0 + t.layers.1 * (t.depths[1] - 1) as f64)
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
pub(super) struct Multipliers(pub(super) [f64; 4]);

impl Relaxed {
    /// The Lagrangian bound at `m`: an upper bound of every structure of the box that meets
    /// the budgets and the effectiveness bound.
    pub(super) fn dual(&self, space: &Space, m: Multipliers) -> f64 {
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
                // Affine in the depth: the best is at one end of the box's range.
                let [d0, d1] = t.depths;
                let v = first + more * ((if more > 0.0 { d1 } else { d0 }) - 1) as f64;
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
    pub(super) fn minimise(&self, space: &Space, start: Multipliers) -> (f64, Multipliers) {
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
