//! The DeepMAD design problem solved by mathematical programming (good_lp; HiGHS or microlp).
//!
//! The objective multiplies each stage's `ln(C R^2)` by the entropy sum up to that stage, and the
//! costs multiply widths with widths and depths; all of it is linear once the channel count of
//! every stage is fixed. So the program has two levels:
//!
//! - for fixed channels, an exact mixed-integer program chooses each stage's (bottleneck width,
//!   kernel, depth) from all their values (one binary per non-dominated choice): FLOPs, params,
//!   entropy and layers of a choice are constants, the objective and the budgets are linear,
//!   the effectiveness bound `L ln(L / rho0) <= sum ln w` is convex in the integer layer count
//!   and is written exactly by its secants between consecutive integers, and the depth std is
//!   exact (`k^2 var` is the sum of squared pairwise depth differences, each written by the
//!   secants of `x^2` between consecutive integers) with `exp` of it bounded
//!   from below (secants where it is convex, a chord where it is concave), so the program's
//!   optimum is an upper bound on the best score for those channels;
//! - the channels (stem and stages, multiples of 8) are chosen by a local search: every
//!   neighbouring channel vector (one entry scaled, or one up and another down) is estimated
//!   in milliseconds by moving the current choices onto it and polishing, and the inner
//!   programs of the channels of the best few estimates are solved in parallel (rayon); step
//!   sizes go from coarse to fine and round again while unsolved neighbours remain (and when
//!   no start admits a design, rings of coarse moves around the starts are tried until one
//!   does).
//!
//! The design is re-scored with the exact formula and polished by a local search over single
//! choices; the reported gap is that of the inner program at the final channels.
//!
//! The same program over a box of channel vectors and stage depths (entropy at the box's
//! largest channels, costs at its smallest; `box_bound`) bounds every structure of the box;
//! `bound.rs` runs its branch and bound over the whole space on it.

use std::time::{Duration, Instant};

use good_lp::{
    constraint, variable, Expression, ProblemVariables, Solution, SolverModel, Variable,
};
use rayon::prelude::*;
use serde::Serialize;

use super::polish::{btn_bounds, channels_ok};
use super::score::{block_terms, score, Convention, Score};
use super::space::{round8, Space, CHANNEL_STEP};
use super::structure::{Block, BlockKind};
use crate::solvers::MilpSolver;

/// Settings of a solve.
#[derive(Debug, Clone)]
pub struct ProgramOptions {
    /// Which formulas the objective follows.
    pub convention: Convention,
    /// The MILP back end.
    pub solver: MilpSolver,
    /// Longest the whole solve may run.
    pub time_limit: Duration,
    /// A budget of work instead of time: at most this many inner programs, each solved to
    /// its end, and starts from an evolution of a fixed number of trials, so that the design
    /// does not depend on the machine's speed or load (`time_limit` still caps the solve).
    pub max_programs: Option<usize>,
}

/// Trials of the evolutionary search that seeds the starts under a budget of work.
const BUDGET_START_TRIALS: usize = 4_000;

/// A solved design.
#[derive(Debug, Clone, Serialize)]
pub struct Design {
    /// The structure.
    pub blocks: Vec<Block>,
    /// Its exact score under the chosen convention.
    pub score: Score,
    /// Whether it meets every budget, rho0 and non-decreasing channels.
    pub feasible: bool,
    /// The inner program's optimum at the final channels (an upper bound on the best score
    /// with those channels), when proven.
    pub bound: Option<f64>,
    /// `(bound - score) / |score|`, when the bound is proven.
    pub optimality_gap: Option<f64>,
    /// Seconds of the whole solve.
    pub solve_seconds: f64,
    /// Inner programs solved.
    pub programs: usize,
    /// The solver's name.
    pub solver: &'static str,
    /// The score after each step of the channel search, with its time.
    pub trace: Vec<(f64, f64)>,
}

/// Why no design came out.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// No structure of the space meets the budget.
    #[error("no structure of the space meets the budget: {0}")]
    Infeasible(String),
}

/// One choice of a stage for fixed channels.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    pub(super) btn: usize,
    pub(super) k: usize,
    pub(super) depth: usize,
    pub(super) params: f64,
    pub(super) flops: f64,
    pub(super) log_w: f64,
    pub(super) layers: usize,
}

/// The answer of one inner program.
#[derive(Debug, Clone)]
struct Inner {
    blocks: Vec<Block>,
    bound: Option<f64>,
}

/// Input resolution of every block.
pub(super) fn input_resolutions(space: &Space) -> Vec<f64> {
    let mut v = vec![space.resolution as f64];
    let mut r = space.resolution as f64 / space.stem.stride as f64;
    for &s in &space.stages.strides {
        v.push(r);
        r /= s as f64;
    }
    v.push(r);
    v
}

/// Every non-dominated choice of stage `j` for input channels in `cin` and channels in `c`
/// (`[lo, hi]`; equal for fixed channels): among choices of equal depth, one with no more
/// FLOPs, no more params and no less entropy than another makes the other useless.
///
/// Over a box of channels each choice's entropy (`ln w`, growing with the widths) is taken at
/// the largest channels and its FLOPs and params at the smallest, so that it bounds every
/// structure of the box; the identity residual of an inverted block, counted only where input
/// and output widths agree, is left out unless the box fixes them equal. Every bottleneck on
/// the grid of multiples of 8 in range is offered (for inverted blocks too, not only the
/// official expansion ratios), as `feasible` accepts them.
fn choices(
    space: &Space,
    j: usize,
    cin: [usize; 2],
    c: [usize; 2],
    res_in: f64,
    depths: [usize; 2],
) -> Vec<Choice> {
    let st = &space.stages;
    let (lo, hi) = (btn_bounds(space, c[0]).0, btn_bounds(space, c[1]).1);
    let mut out = Vec::new();
    let grid: Vec<usize> = (lo.div_ceil(CHANNEL_STEP).max(1)..=hi / CHANNEL_STEP)
        .map(|i| i * CHANNEL_STEP)
        .collect();
    // Over a box, bottlenecks are grouped in geometric ranges of ratio `sqrt(c_hi / c_lo)`
    // (at most 1.25; single widths for fixed channels): a range's choice takes its costs at
    // its narrowest bottleneck and its entropy at its widest, which dominates every choice in
    // it, in far fewer columns.
    let ratio = (c[1] as f64 / c[0] as f64).sqrt().min(1.25);
    let mut btns: Vec<[usize; 2]> = Vec::new();
    let mut i = 0;
    while i < grid.len() {
        let mut e = i;
        while e + 1 < grid.len() && grid[e + 1] as f64 <= grid[i] as f64 * ratio {
            e += 1;
        }
        btns.push([grid[i], grid[e]]);
        i = e + 1;
    }
    let residual_unsure = space.block == BlockKind::K1DWSEK1
        && st.strides[j] == 2
        && cin[0] == c[0]
        && !(cin[0] == cin[1] && c[0] == c[1]);
    for depth in depths[0]..=depths[1].min(st.max_depth[j]) {
        let mut row: Vec<Choice> = Vec::new();
        for &k in &st.kernels {
            for &[b, b_hi] in &btns {
                let blk = |cin: usize, cout: usize, b: usize| Block {
                    kind: space.block,
                    cin,
                    cout,
                    k,
                    s: st.strides[j],
                    depth: Some(depth),
                    btn: Some(b),
                };
                let (params, mut flops, _, _) = block_terms(&blk(cin[0], c[0], b), res_in);
                let (_, _, log_w, layers) = block_terms(&blk(cin[1], c[1], b_hi), res_in);
                if residual_unsure {
                    flops -= cin[0] as f64 * res_in * res_in;
                }
                row.push(Choice {
                    btn: b,
                    k,
                    depth,
                    params,
                    flops,
                    log_w,
                    layers,
                });
            }
        }
        out.extend(undominated(row, |b, a| {
            b.flops <= a.flops
                && b.params <= a.params
                && b.log_w >= a.log_w
                && (b.flops < a.flops || b.params < a.params || b.log_w > a.log_w)
        }));
    }
    out
}

/// The items of `row` that no other item makes useless (`dominates(b, a)`: `b` makes `a`
/// useless; it must not hold for an item and itself).
pub(super) fn undominated<T>(row: Vec<T>, dominates: impl Fn(&T, &T) -> bool) -> Vec<T> {
    let keep: Vec<bool> = row
        .iter()
        .map(|a| !row.iter().any(|b| dominates(b, a)))
        .collect();
    row.into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(c, _)| c)
        .collect()
}

pub(super) fn rho_lhs(x: f64, rho0: f64) -> f64 {
    x * (x / rho0).ln()
}

/// The inner program: the best (bottleneck, kernel, depth) of every stage for fixed channels.
fn inner(space: &Space, opts: &ProgramOptions, chans: &[usize], limit: Duration) -> Option<Inner> {
    inner_within(space, opts, chans, &full_depths(space), limit)
}

/// The inner program with each stage's depth within `depths[j]`.
fn inner_within(
    space: &Space,
    opts: &ProgramOptions,
    chans: &[usize],
    depths: &[[usize; 2]],
    limit: Duration,
) -> Option<Inner> {
    let (p, objective) = build(space, opts.convention, chans, chans, depths, false)?;
    let (picks, bound) = p.solve(objective, opts.solver, limit)?;
    Some(Inner {
        blocks: space.assemble(chans, &picks),
        bound,
    })
}

/// Every depth of every stage: `[1, max_depth]`.
pub(crate) fn full_depths(space: &Space) -> Vec<[usize; 2]> {
    space.stages.max_depth.iter().map(|&d| [1, d]).collect()
}

/// The program over a box of channel vectors (`lo <= c <= hi`; equal for fixed channels) and
/// of stage depths (`depths[j]`, an inclusive range):
/// the stage factors `ln(C R^2)` and every `ln w` at the largest channels, FLOPs and params at
/// the smallest (see `choices`), so that its optimum bounds every structure of the box that
/// meets the budgets. With `cuts`, the depth penalty's planes ([`penalty_cuts`]) tighten its
/// linear relaxation (they slow the mixed-integer programs down, so those go without).
/// Returns the program and its objective; `None` if a stage has no choice.
fn build(
    space: &Space,
    convention: Convention,
    lo: &[usize],
    hi: &[usize],
    depths: &[[usize; 2]],
    cuts: bool,
) -> Option<(Program, Expression)> {
    let tinynas = convention == Convention::Tinynas;
    let st = &space.stages;
    let n = st.strides.len();
    let res = input_resolutions(space);
    let w = space.weights();
    // Fixed parts: the stem and the final conv.
    let (p0, f0, _, _) = block_terms(&space.assemble(lo, &[])[0], res[0]);
    let (_, _, e0, l0) = block_terms(&space.assemble(hi, &[])[0], res[0]);
    let fin = |c: usize| space.final_conv(c);
    let terms = |b: Option<Block>| {
        b.map(|b| block_terms(&b, res[n + 1]))
            .unwrap_or((0.0, 0.0, 0.0, 0))
    };
    let (pf, ff, _, _) = terms(fin(lo[n]));
    let (_, _, ef, lf) = terms(fin(hi[n]));
    let choices: Vec<Vec<Choice>> = (0..n)
        .map(|j| {
            let (cin, c) = ([lo[j], hi[j]], [lo[j + 1], hi[j + 1]]);
            choices(space, j, cin, c, res[j + 1], depths[j])
        })
        .collect();
    if choices.iter().any(Vec::is_empty) {
        return None;
    }
    let mut p = Program::new(choices);
    let mega = 1e-6;
    let flops = p.stage_sum(&|c| mega * c.flops) + mega * (f0 + ff);
    let params = p.stage_sum(&|c| mega * c.params) + mega * (p0 + pf);
    p.cons.push(constraint!(flops <= mega * space.budget.flops));
    p.cons
        .push(constraint!(params <= mega * space.budget.params));
    // Entropy sums and layers per block (stem, stages, final).
    let mut e_blocks: Vec<Expression> = vec![Expression::from(e0)];
    let mut l_blocks: Vec<Expression> = vec![Expression::from(l0 as f64)];
    for j in 0..n {
        e_blocks.push(p.sum_of(j, &|c| c.log_w));
        l_blocks.push(p.sum_of(j, &|c| c.layers as f64));
    }
    if space.final_channels.is_some() {
        e_blocks.push(Expression::from(ef));
        l_blocks.push(Expression::from(lf as f64));
    }
    let prefix = |upto: usize, v: &[Expression]| -> Expression { v[..=upto].iter().cloned().sum() };
    // The stage plan and resolutions, as the convention counts them.
    let structure = space.assemble(hi, &vec![(CHANNEL_STEP, st.kernels[0], 1); n]);
    let plan = score(&structure, space.resolution, convention, &w).stages;
    let half = if tinynas { 0.5 } else { 1.0 };
    let mut objective = Expression::default();
    for (g, stage) in plan.iter().enumerate() {
        let factor = w.alpha_of(g, plan.len())
            * half
            * (stage.channels as f64 * stage.resolution * stage.resolution).ln();
        objective += factor * prefix(stage.last_block, &e_blocks);
    }
    let ends: Vec<usize> = plan.iter().map(|s| s.last_block).collect();
    objective -= p.effectiveness_and_penalty(
        space,
        convention,
        &ends,
        &e_blocks,
        &l_blocks,
        l0 + lf,
        cuts,
    );
    Some((p, objective))
}

/// The fixed-channel program's design for channels `chans` and stage depths within `depths`
/// (polished, exactly scored, and kept only if feasible) and its proven optimum padded past
/// the solver's tolerances (`None` where it was not proven within `limit`).
pub(crate) fn fixed_channel_design(
    space: &Space,
    convention: Convention,
    chans: &[usize],
    depths: &[[usize; 2]],
    limit: Duration,
) -> (Option<(f64, Vec<Block>)>, Option<f64>) {
    let opts = ProgramOptions {
        convention,
        solver: MilpSolver::Highs,
        time_limit: limit,
        max_programs: None,
    };
    let Some(r) = inner_within(space, &opts, chans, depths, limit) else {
        return (None, None);
    };
    let blocks = super::polish::polish(space, r.blocks, convention);
    let s = score(&blocks, space.resolution, convention, &space.weights());
    let design = super::polish::feasible(space, &blocks, &s).then_some((s.score, blocks));
    // Above the solver's gap tolerances (relative 1e-7, absolute 1e-6).
    (design, r.bound.map(|b| b + 1e-5 * b.abs().max(1.0)))
}

/// What the program over a box of channel vectors proved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BoxBound {
    /// An upper bound of the score of every structure of the box that meets the budgets
    /// (the solver's dual bound, padded past its tolerances).
    Bound(f64),
    /// No structure of the box meets the budgets.
    Empty,
    /// The solver stopped without a bound (an error).
    Unknown,
}

/// The program over the box `lo <= c <= hi` of channel vectors and `depths` (see `build`),
/// solved for its
/// dual bound within `limit`: a solve stopped by the time limit or its gap still proves the
/// bound it reached. With `relaxation`, only its linear relaxation is solved (10 to 40 ms),
/// whose optimum is a weaker bound.
pub(crate) fn box_bound(
    space: &Space,
    convention: Convention,
    lo: &[usize],
    hi: &[usize],
    depths: &[[usize; 2]],
    limit: Duration,
    relaxation: bool,
) -> BoxBound {
    let Some((p, objective)) = build(space, convention, lo, hi, depths, relaxation) else {
        return BoxBound::Empty;
    };
    dual_bound(p.vars, p.cons, objective, limit, relaxation)
}

/// HiGHS's proven bound of the program `vars`, `cons`, maximising `objective`, within
/// `limit`: a solve stopped by the time limit or its gap still proves the bound it reached.
/// With `relaxation`, only the linear relaxation is solved.
pub(super) fn dual_bound(
    vars: ProblemVariables,
    cons: Vec<good_lp::Constraint>,
    objective: Expression,
    limit: Duration,
    relaxation: bool,
) -> BoxBound {
    let constant = good_lp::IntoAffineExpression::constant(&objective);
    let mut problem = vars.maximise(objective).using(good_lp::highs);
    for c in cons {
        problem = problem.with(c);
    }
    let Ok(mut model) = problem.try_into_inner() else {
        return BoxBound::Unknown;
    };
    model.make_quiet();
    model.set_option("time_limit", limit.as_secs_f64().max(0.05));
    model.set_option("threads", 1);
    model.set_option("presolve_rule_off", 32768);
    model.set_option("mip_heuristic_run_rins", false);
    model.set_option("mip_heuristic_run_root_reduced_cost", false);
    // The dual bound is proven whatever the gap; 1e-4 is far below what the search needs.
    model.set_option("mip_rel_gap", 1e-4);
    if relaxation {
        model.set_option("solve_relaxation", true);
    }
    let Ok(solved) = model.try_solve() else {
        return BoxBound::Unknown;
    };
    use highs::HighsModelStatus as S;
    match solved.status() {
        S::Infeasible => BoxBound::Empty,
        // The LP optimum (HiGHS reports no MIP dual bound for a relaxation).
        S::Optimal if relaxation => {
            let b = solved.objective_value() + constant;
            BoxBound::Bound(b + 1e-5 * b.abs().max(1.0))
        }
        // A relaxation stopped before its optimum proves nothing (HiGHS's MIP dual bound
        // is not set by an LP solve).
        _ if relaxation => BoxBound::Unknown,
        S::Optimal | S::ReachedTimeLimit | S::ReachedIterationLimit | S::ReachedInterrupt => {
            match solved.double_info_value(c"mip_dual_bound") {
                Ok(b) if b.is_finite() => {
                    let b = b + constant;
                    // Above the solver's tolerances (relative gap 1e-7, feasibility 1e-6).
                    BoxBound::Bound(b + 1e-5 * b.abs().max(1.0))
                }
                _ => BoxBound::Unknown,
            }
        }
        _ => BoxBound::Unknown,
    }
}

/// Planes below `beta exp(std(L))` over depth vectors `L` of `k` stages: the penalty is
/// convex in `L` (the std is a norm of the centred depths, `exp` convex and increasing), and
/// `std(L) >= v . L / sqrt(k)` for every unit vector `v` with zero sum, `exp(s) >= exp(s0) (1 +
/// s - s0)`; so `beta exp(s0) (1 - s0 + v . L / sqrt(k))` is below it for every such `v` and
/// `s0`. Directions: each stage against the rest, and each pair of stages, both signs; levels
/// `s0` from 0.25 to 8. Each plane is `(coefficients, constant)`.
pub(super) fn penalty_cuts(k: usize, beta: f64) -> Vec<(Vec<f64>, f64)> {
    if k < 2 || beta <= 0.0 {
        return Vec::new();
    }
    let kf = k as f64;
    let mut dirs: Vec<Vec<f64>> = Vec::new();
    for i in 0..k {
        dirs.push(
            (0..k)
                .map(|m| if m == i { 1.0 } else { 0.0 } - 1.0 / kf)
                .collect(),
        );
        for j in i + 1..k {
            dirs.push(
                (0..k)
                    .map(|m| {
                        if m == i {
                            1.0
                        } else if m == j {
                            -1.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
            );
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        let norm = d.iter().map(|x| x * x).sum::<f64>().sqrt();
        for sign in [1.0, -1.0] {
            let v: Vec<f64> = d.iter().map(|x| sign * x / norm / kf.sqrt()).collect();
            for s0 in [
                0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0,
            ] {
                let e = beta * f64::exp(s0);
                out.push((v.iter().map(|x| e * x).collect(), e * (1.0 - s0)));
            }
        }
    }
    out
}

/// The inner program under construction: one binary per choice of each stage (exactly one
/// chosen), the variables and constraints added so far.
pub(super) struct Program {
    pub(super) vars: ProblemVariables,
    pub(super) cons: Vec<good_lp::Constraint>,
    /// `z[j][i]`: stage `j` takes choice `i`.
    pub(super) z: Vec<Vec<Variable>>,
    pub(super) choices: Vec<Vec<Choice>>,
}

impl Program {
    pub(super) fn new(choices: Vec<Vec<Choice>>) -> Program {
        let mut vars = ProblemVariables::new();
        let z: Vec<Vec<Variable>> = choices
            .iter()
            .map(|o| o.iter().map(|_| vars.add(variable().binary())).collect())
            .collect();
        let cons = z
            .iter()
            .map(|zj| {
                let s: Expression = zj.iter().copied().sum();
                constraint!(s == 1)
            })
            .collect();
        Program {
            vars,
            cons,
            z,
            choices,
        }
    }

    /// A constant of stage `j`'s chosen option.
    pub(super) fn sum_of(&self, j: usize, f: &dyn Fn(&Choice) -> f64) -> Expression {
        self.z[j]
            .iter()
            .zip(&self.choices[j])
            .map(|(&v, c)| f(c) * v)
            .sum()
    }

    /// A constant of every stage's chosen option, summed over the stages.
    fn stage_sum(&self, f: &dyn Fn(&Choice) -> f64) -> Expression {
        (0..self.z.len()).map(|j| self.sum_of(j, f)).sum()
    }

    /// The effectiveness bound `L ln(L / rho0) <= sum ln w` of a prefix with `layers` layers
    /// and entropy sum `log_w`: convex in the integer layer count, written exactly by its
    /// secants between consecutive integers up to `lmax`.
    pub(super) fn effectiveness(
        &mut self,
        layers: Expression,
        log_w: Expression,
        lmax: usize,
        rho: f64,
    ) {
        // Named once, so that each secant row has three entries.
        let layers_v = self.vars.add(variable().min(0.0));
        let lw_v = self.vars.add(variable());
        self.cons.push(constraint!(layers_v == layers));
        self.cons.push(constraint!(lw_v == log_w));
        let (layers, lw) = (Expression::from(layers_v), Expression::from(lw_v));
        for l in 1..lmax {
            let (a0, a1) = (rho_lhs(l as f64, rho), rho_lhs((l + 1) as f64, rho));
            self.cons.push(constraint!(
                lw.clone() >= a0 + (a1 - a0) * (layers.clone() - l as f64)
            ));
        }
    }

    /// The effectiveness bound of every stage prefix (tinynas) or of the whole network (paper),
    /// from each block's `ln w` and layers (`e_blocks`, `l_blocks`; the stages end at blocks
    /// `stage_ends`), and the depth penalty (the first two searchable stages of K1KXK1 networks
    /// left out in tinynas); returns the penalty, to subtract from the objective.
    /// `fixed_layers` counts the layers outside the searchable stages.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn effectiveness_and_penalty(
        &mut self,
        space: &Space,
        convention: Convention,
        stage_ends: &[usize],
        e_blocks: &[Expression],
        l_blocks: &[Expression],
        fixed_layers: usize,
        cuts: bool,
    ) -> Expression {
        let tinynas = convention == Convention::Tinynas;
        let st = &space.stages;
        let n = st.strides.len();
        let prefix =
            |upto: usize, v: &[Expression]| -> Expression { v[..=upto].iter().cloned().sum() };
        let ends: Vec<usize> = if tinynas {
            stage_ends.to_vec()
        } else {
            vec![e_blocks.len() - 1]
        };
        let lmax: usize = fixed_layers + (0..n).map(|j| 3 * st.max_depth[j]).sum::<usize>();
        for end in ends {
            self.effectiveness(
                prefix(end, l_blocks),
                prefix(end, e_blocks),
                lmax,
                space.budget.rho,
            );
        }
        let skip = if tinynas && space.block == BlockKind::K1KXK1 {
            2
        } else {
            0
        };
        let penalised: Vec<usize> = (skip..n).collect();
        let beta = space.weights().beta;
        if beta != 0.0 && !penalised.is_empty() {
            Expression::from(self.depth_penalty(&penalised, &st.max_depth, beta, cuts))
        } else {
            Expression::default()
        }
    }

    /// A variable bounding `beta exp(std of the depths of `stages`)` from below, exact at
    /// integer depths.
    ///
    /// `W = k sum L^2 - (sum L)^2 = k^2 var(L)` is the sum over pairs of `(L_i - L_j)^2`. Each
    /// square is bounded from below by the secants of `x^2` between consecutive integers, on
    /// both signs of the difference: exact at integer depths, and no binaries (a one-hot over
    /// the total depth made the relaxation weak and the programs slow). `exp(sqrt(W) / k)` is
    /// concave below `W = k^2` (one chord, chosen by a binary) and convex above it (secants).
    /// With `cuts`, the planes of [`penalty_cuts`] as well.
    pub(super) fn depth_penalty(
        &mut self,
        stages: &[usize],
        max_depth: &[usize],
        beta: f64,
        cuts: bool,
    ) -> Variable {
        let k = stages.len() as f64;
        let dvars: Vec<Variable> = stages
            .iter()
            .map(|&j| {
                let d = self.vars.add(variable().min(1.0));
                let depth = self.sum_of(j, &|c| c.depth as f64);
                self.cons.push(constraint!(d == depth));
                d
            })
            .collect();
        let mut pairs = Expression::default();
        for (a, &i) in stages.iter().enumerate() {
            for (b, &j) in stages.iter().enumerate().skip(a + 1) {
                let s = self.vars.add(variable().min(0.0));
                let (di, dj) = (dvars[a], dvars[b]);
                let reach = max_depth[i].max(max_depth[j]);
                for m in 0..reach {
                    let (m, slope) = (m as f64, (2 * m + 1) as f64);
                    self.cons
                        .push(constraint!(s >= slope * (di - dj) - m * (m + 1.0)));
                    self.cons
                        .push(constraint!(s >= slope * (dj - di) - m * (m + 1.0)));
                }
                pairs += s;
            }
        }
        let wv = self.vars.add(variable().min(0.0));
        self.cons.push(constraint!(wv == pairs));
        let cuts = if cuts {
            penalty_cuts(stages.len(), beta)
        } else {
            Vec::new()
        };
        let wexpr = Expression::from(wv);
        let h = |x: f64| beta * (x.max(0.0).sqrt() / k).exp();
        let dmax = max_depth.iter().copied().max().unwrap_or(1) as f64;
        let wmax = k * k * dmax * dmax / 4.0 + 1.0;
        let kk = k * k;
        let p = self.vars.add(variable().min(beta));
        // Valid everywhere (the penalty is convex in the depths), these planes keep the
        // linear relaxation from trading the penalty away through the binary below.
        for (coef, c0) in cuts {
            let lin: Expression = coef.iter().zip(&dvars).map(|(a, &d)| *a * d).sum();
            self.cons.push(constraint!(p >= c0 + lin));
        }
        let u = self.vars.add(variable().binary());
        let big = 2.0 * h(wmax) + 10.0;
        self.cons.push(constraint!(wexpr.clone() >= kk * u));
        self.cons
            .push(constraint!(wexpr.clone() <= (kk - 1.0) + wmax * u));
        let (h0, h1) = (h(0.0), h(kk));
        self.cons.push(constraint!(
            p >= h0 + (h1 - h0) / kk * wexpr.clone() - big * u
        ));
        let mut x = kk;
        while x < wmax {
            let nx = (x + 1.0).min(wmax);
            let (a, b) = (h(x), h(nx));
            self.cons.push(constraint!(
                p >= a + (b - a) / (nx - x) * (wexpr.clone() - x) - big * (1 - u)
            ));
            x = nx;
        }
        p
    }

    /// Maximises `objective`: each stage's picked (bottleneck, kernel, depth) and, when the
    /// solver proved it, the optimum (an upper bound on the score for these channels).
    fn solve(
        self,
        objective: Expression,
        solver: MilpSolver,
        limit: Duration,
    ) -> Option<(Vec<(usize, usize, usize)>, Option<f64>)> {
        let problem = self.vars.maximise(objective.clone());
        match solver {
            MilpSolver::Highs => {
                let mut model = problem
                    .using(good_lp::highs)
                    .set_time_limit(limit.as_secs_f64().max(0.05))
                    .set_threads(1)
                    // Probing in presolve costs seconds on these models and gains little.
                    .set_option("presolve_rule_off", 32768)
                    // Sub-MIP heuristics took most of the time; without RINS and the root
                    // reduced-cost heuristic (RENS stays) the programs were fastest.
                    .set_option("mip_heuristic_run_rins", false)
                    .set_option("mip_heuristic_run_root_reduced_cost", false);
                model = model.set_mip_rel_gap(1e-7).ok()?;
                model.set_verbose(false);
                for c in self.cons {
                    model = model.with(c);
                }
                let sol = model.solve().ok()?;
                let proven = matches!(
                    sol.status(),
                    good_lp::SolutionStatus::Optimal | good_lp::SolutionStatus::GapLimit
                );
                Some((
                    pick(&sol, &self.z, &self.choices),
                    proven.then(|| sol.eval(&objective)),
                ))
            }
            MilpSolver::Microlp => {
                let mut model = problem.using(good_lp::microlp);
                for c in self.cons {
                    model = model.with(c);
                }
                let sol = model.solve().ok()?;
                Some((
                    pick(&sol, &self.z, &self.choices),
                    Some(sol.eval(&objective)),
                ))
            }
        }
    }
}

fn pick(
    sol: &impl Solution,
    z: &[Vec<Variable>],
    choices: &[Vec<Choice>],
) -> Vec<(usize, usize, usize)> {
    z.iter()
        .zip(choices)
        .map(|(zj, cj)| {
            let i = zj
                .iter()
                .enumerate()
                .max_by(|a, b| sol.value(*a.1).total_cmp(&sol.value(*b.1)))
                .map(|(i, _)| i)
                .unwrap_or(0);
            (cj[i].btn, cj[i].k, cj[i].depth)
        })
        .collect()
}

/// Channel vectors one step from `c`: one entry scaled by each factor (rounded to the grid).
fn moves(space: &Space, c: &[usize], factors: &[f64]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for i in 0..c.len() {
        for &f in factors {
            let mut v = c.to_vec();
            let x = if f > 1.0 {
                round8(c[i] as f64 * f).max(c[i] + CHANNEL_STEP)
            } else {
                round8(c[i] as f64 * f).min(c[i].saturating_sub(CHANNEL_STEP))
            };
            v[i] = x;
            // Keep the order by dragging neighbours along.
            for j in i + 1..v.len() {
                v[j] = v[j].max(v[j - 1]);
            }
            for j in (0..i).rev() {
                v[j] = v[j].min(v[j + 1]);
            }
            if v != c && channels_ok(space, &v) && !out.contains(&v) {
                out.push(v);
            }
        }
    }
    // Trades: one entry up by a factor, another down by it (moves along the budget).
    for i in 0..c.len() {
        for j in 0..c.len() {
            for &f in factors.iter().filter(|f| **f > 1.0) {
                if i == j {
                    continue;
                }
                let mut v = c.to_vec();
                v[i] = round8(c[i] as f64 * f).max(c[i] + CHANNEL_STEP);
                v[j] = round8(c[j] as f64 / f).min(c[j].saturating_sub(CHANNEL_STEP));
                if v[j] > 0 && channels_ok(space, &v) && !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// A quick estimate of what channels near `c` can score: the current choices moved onto `c`
/// (bottlenecks kept in range), polished by local search (which may move the channels too),
/// and scored exactly. It ranks the neighbours so that the exact programs are spent on the
/// channels of the promising ones.
fn estimate(
    space: &Space,
    convention: Convention,
    c: &[usize],
    from: &[Block],
) -> Option<(f64, Vec<Block>)> {
    let n = space.stages.strides.len();
    let picks: Vec<(usize, usize, usize)> = (0..n)
        .map(|j| {
            let b = &from[j + 1];
            let (lo, hi) = btn_bounds(space, c[j + 1]);
            let scaled = round8(b.btn.unwrap_or(lo) as f64 * c[j + 1] as f64 / b.cout as f64);
            (scaled.clamp(lo, hi.max(lo)), b.k, b.depth.unwrap_or(1))
        })
        .collect();
    let blocks = super::polish::polish(space, space.assemble(c, &picks), convention);
    let s = score(&blocks, space.resolution, convention, &space.weights());
    super::polish::feasible(space, &blocks, &s).then_some((s.score, blocks))
}

/// Solves the design problem of `space`.
pub fn solve(space: &Space, opts: &ProgramOptions) -> Result<Design, ProgramError> {
    let start = Instant::now();
    let n = space.stages.strides.len();
    let wts = space.weights();
    let exact = |b: &[Block]| score(b, space.resolution, opts.convention, &wts);
    // Under a budget of work each program runs to its end (the time limit only guards).
    let per_program = match opts.max_programs {
        Some(_) => opts.time_limit,
        None => Duration::from_secs(5).min(opts.time_limit / 4),
    };
    let programs = std::sync::atomic::AtomicUsize::new(0);
    let solved = std::sync::Mutex::new(std::collections::HashSet::<Vec<usize>>::new());
    // Programs per step of the channel search: the best-estimated neighbours, two per thread.
    // (Under a budget of work, a fixed number, so the design does not depend on the threads.)
    let screen = match opts.max_programs {
        Some(_) => 4,
        None => (2 * rayon::current_num_threads()).max(4),
    };
    let run = |c: &Vec<usize>| -> Option<(f64, Inner)> {
        let left = opts.time_limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        programs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        solved.lock().expect("solved").insert(c.clone());
        let r = inner(space, opts, c, per_program.min(left))?;
        let s = exact(&r.blocks);
        super::polish::feasible(space, &r.blocks, &s).then_some((s.score, r))
    };
    // Starting channel vectors: the last stage at several widths, earlier stages shrinking
    // by the largest allowed growth towards the stem.
    let st = &space.stages;
    let mut starts = Vec::new();
    for last in [256.0, 512.0, 1024.0, 1536.0, 2048.0] {
        let mut c = vec![0usize; n + 1];
        c[n] = round8(f64::min(last, st.max_channels as f64));
        if let Some(f) = space.final_channels {
            c[n] = c[n].min(f);
        }
        for j in (1..n).rev() {
            c[j] = round8(c[j + 1] as f64 / st.max_growth.min(2.0)).max(CHANNEL_STEP);
        }
        c[0] = round8(c[1] as f64 / st.max_growth)
            .clamp(space.stem.channels[0], space.stem.channels[1]);
        for j in 1..=n {
            c[j] = c[j].max(c[j - 1]);
        }
        if channels_ok(space, &c) {
            starts.push(c);
        }
    }
    // More starts: the channels of the best structures of a short evolutionary search (a sixth
    // of the time). For those channels the inner program is at least as good as the structure
    // evolution found, since that structure is one of its feasible points.
    let (evo_time, evo_trials) = match opts.max_programs {
        Some(_) => (opts.time_limit / 6, BUDGET_START_TRIALS),
        None => (opts.time_limit / 6, 500_000),
    };
    for c in evolved_channels(space, opts, evo_time, evo_trials, 4) {
        if channels_ok(space, &c) && !starts.contains(&c) {
            starts.push(c);
        }
    }
    // The starts count towards a budget of work too.
    if let Some(m) = opts.max_programs {
        starts.truncate(m);
    }
    let mut best: Option<(f64, Vec<usize>, Inner)> = starts
        .par_iter()
        .filter_map(|c| run(c).map(|(s, r)| (s, c.clone(), r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    // No start admits a design (a tight rho0 may need other proportions): walk outwards from
    // the starts by coarse moves, a ring at a time, until some channel vector admits one.
    let mut seen: std::collections::HashSet<Vec<usize>> = starts.iter().cloned().collect();
    let mut ring = starts.clone();
    while best.is_none() && !ring.is_empty() && start.elapsed() < opts.time_limit {
        let mut next: Vec<Vec<usize>> = ring
            .iter()
            .flat_map(|c| moves(space, c, &[0.5, 0.75, 1.33, 2.0]))
            .filter(|c| seen.insert(c.clone()))
            .collect();
        if let Some(m) = opts.max_programs {
            let left = m.saturating_sub(programs.load(std::sync::atomic::Ordering::Relaxed));
            next.truncate(left);
        }
        best = next
            .par_iter()
            .filter_map(|c| run(c).map(|(s, r)| (s, c.clone(), r)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        ring = next;
    }
    let Some(_) = best else {
        return Err(ProgramError::Infeasible(infeasibility(space)));
    };
    let mut trace = vec![(
        start.elapsed().as_secs_f64(),
        best.as_ref().map(|b| b.0).unwrap_or(0.0),
    )];
    let ladders: [&[f64]; 3] = [
        &[0.5, 0.75, 1.33, 2.0],
        &[0.9, 0.95, 1.05, 1.1],
        &[0.99, 1.01],
    ];
    // Levels of step size, coarse to fine; after the finest, the unsolved neighbours of every
    // level again, until none is left or the time is up.
    let mut level = 0;
    let mut tried_in_pass = false;
    while start.elapsed() < opts.time_limit {
        if level == ladders.len() {
            if !tried_in_pass {
                break;
            }
            level = 0;
            tried_in_pass = false;
        }
        let (cur_score, cur, cur_inner) = best.clone().expect("a start");
        let mut est: Vec<(f64, Vec<usize>)> = moves(space, &cur, ladders[level])
            .into_par_iter()
            .filter_map(|c| estimate(space, opts.convention, &c, &cur_inner.blocks))
            .map(|(s, b)| (s, b[..=n].iter().map(|b| b.cout).collect()))
            .collect();
        est.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut cand: Vec<Vec<usize>> = Vec::new();
        for (_, c) in est {
            if cand.len() == screen {
                break;
            }
            if !cand.contains(&c) && !solved.lock().expect("solved").contains(&c) {
                cand.push(c);
            }
        }
        if let Some(m) = opts.max_programs {
            let left = m.saturating_sub(programs.load(std::sync::atomic::Ordering::Relaxed));
            if left == 0 {
                break;
            }
            cand.truncate(left);
        }
        tried_in_pass |= !cand.is_empty();
        let found = cand
            .par_iter()
            .filter_map(|c| run(c).map(|(s, r)| (s, c.clone(), r)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match found {
            Some(f) if f.0 > cur_score + 1e-9 => {
                best = Some(f);
                trace.push((
                    start.elapsed().as_secs_f64(),
                    best.as_ref().map(|b| b.0).unwrap_or(0.0),
                ));
            }
            _ => level += 1,
        }
    }
    let (_, _, found) = best.expect("a start");
    let blocks = super::polish::polish(space, found.blocks.clone(), opts.convention);
    let s = exact(&blocks);
    let feasible = super::polish::feasible(space, &blocks, &s);
    trace.push((start.elapsed().as_secs_f64(), s.score));
    let gap = found
        .bound
        .map(|b| ((b - s.score) / s.score.abs()).max(0.0));
    Ok(Design {
        blocks,
        score: s,
        feasible,
        bound: found.bound,
        optimality_gap: gap,
        solve_seconds: start.elapsed().as_secs_f64(),
        programs: programs.into_inner(),
        solver: opts.solver.name(),
        trace,
    })
}

/// The channel vectors of the `count` best distinct structures an evolutionary search finds
/// in `time` (in memory, seeded).
fn evolved_channels(
    space: &Space,
    opts: &ProgramOptions,
    time: Duration,
    trials: usize,
    count: usize,
) -> Vec<Vec<usize>> {
    let trace = super::evolution::BestTrace::new();
    let Ok(result) = super::evolution::evolve_for(space, opts.convention, 0, time, trials, &trace)
    else {
        return Vec::new();
    };
    let mut ranked: Vec<(f64, Vec<usize>)> = result
        .trials
        .iter()
        .filter_map(|t| {
            t.fitness().map(|f| {
                let n = space.stages.strides.len();
                (f, t.candidate[..=n].iter().map(|b| b.cout).collect())
            })
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (_, c) in ranked {
        if !out.contains(&c) {
            out.push(c);
            if out.len() == count {
                break;
            }
        }
    }
    out
}

/// Which budget no structure of the space can meet: the smallest structure (narrowest stem
/// and stages, depth 1, smallest kernels and bottlenecks) is measured against each limit.
fn infeasibility(space: &Space) -> String {
    let n = space.stages.strides.len();
    let c0 = space.stem.channels[0];
    let mut chans = vec![c0; n + 1];
    for c in chans.iter_mut().skip(1) {
        *c = (*c).max(CHANNEL_STEP);
    }
    let k = *space.stages.kernels.iter().min().unwrap_or(&3);
    let picks: Vec<(usize, usize, usize)> = (0..n)
        .map(|j| (btn_bounds(space, chans[j + 1]).0, k, 1))
        .collect();
    let blocks = space.assemble(&chans, &picks);
    let s = score(
        &blocks,
        space.resolution,
        Convention::Tinynas,
        &space.weights(),
    );
    let mut why = Vec::new();
    if s.flops > space.budget.flops {
        why.push(format!(
            "FLOPs: the smallest structure needs {:.3e}, the budget is {:.3e}",
            s.flops, space.budget.flops
        ));
    }
    if s.params > space.budget.params {
        why.push(format!(
            "params: the smallest structure needs {:.3e}, the budget is {:.3e}",
            s.params, space.budget.params
        ));
    }
    if why.is_empty() {
        why.push(format!(
            "rho <= {} together with the FLOPs and params limits (no channel vector tried admits one)",
            space.budget.rho
        ));
    }
    why.join("; ")
}
