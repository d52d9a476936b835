//! Branch and bound over one region of a property.
//!
//! A subdomain is an input box plus a set of ReLU phase splits. Each is bounded by
//! back-substitution ([`super::bounds`]); it is closed when some constraint of the region's
//! conjunction is shown positive everywhere on it. Otherwise the vertices that minimise the
//! linear bounds are tried as counterexamples, and the subdomain is split: on the input (the
//! widest dimension), for low-dimensional inputs, or on the unstable ReLU with the largest
//! relaxation area, for high-dimensional ones. A conjunction of several constraints is also
//! closed when their linear bounds have no common point in the box (a small LP). When few ReLUs
//! remain unstable the subdomain is decided exactly: for input splitting by one LP per phase
//! pattern of the unstable neurons, for ReLU splitting by Z3 with the bounds as extra
//! constraints. Batches of subdomains are bounded in parallel with rayon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::bounds::{crown, objective_bounds, LayerBounds, Phase};
use super::falsify::confirm;
use super::network::Network;
use super::smt::{self, SmtOutcome, SmtRecord};
use super::spec::{InputBox, Region};

/// Settings of branch and bound.
#[derive(Debug, Clone)]
pub struct BabConfig {
    /// When to give up.
    pub deadline: Instant,
    /// Subdomains bounded together (in parallel).
    pub batch: usize,
    /// Decide a subdomain exactly once at most this many ReLUs are unstable on it: by an LP
    /// per phase pattern when splitting inputs, by Z3 when splitting ReLUs.
    pub exact_unstable: usize,
    /// Give up on a subdomain (unknown) this many splits deep.
    pub max_depth_limit: usize,
    /// Longest a single Z3 call may take.
    pub smt_timeout: Duration,
    /// Split inputs (true) or ReLUs (false).
    pub input_split: bool,
    /// Keep the SMT-LIB of every Z3 query.
    pub record_smt: bool,
}

/// Counters of a branch-and-bound run.
#[derive(Debug, Default)]
pub struct BabStats {
    /// Subdomains bounded.
    pub domains: AtomicU64,
    /// Z3 calls made.
    pub smt_calls: AtomicU64,
    /// Deepest subdomain reached.
    pub max_depth: AtomicU64,
}

/// The answer for one region.
#[derive(Debug, Clone)]
pub enum RegionResult {
    /// No input of the region meets its constraints.
    Holds,
    /// A counterexample (confirmed by a forward pass).
    Violated(Vec<f64>),
    /// Not settled, and why.
    Unknown(String),
}

#[derive(Debug, Clone)]
struct Domain {
    input: InputBox,
    splits: Vec<(usize, usize, Phase)>,
    parent: Option<Arc<Vec<LayerBounds>>>,
    depth: usize,
}

enum Step {
    Closed,
    Violated(Vec<f64>),
    Split(Vec<Domain>),
    Unknown(String),
}

/// Runs branch and bound on `region`; Z3 queries are appended to `records` when recording.
pub fn solve_region(
    net: &Network,
    region: &Region,
    cfg: &BabConfig,
    stats: &BabStats,
    records: &Mutex<Vec<SmtRecord>>,
) -> RegionResult {
    if let Some(x) = confirm(net, region, &region.input.center()) {
        return RegionResult::Violated(x);
    }
    let mut stack = vec![Domain {
        input: region.input.clone(),
        splits: Vec::new(),
        parent: None,
        depth: 0,
    }];
    let mut unknown: Option<String> = None;
    while !stack.is_empty() {
        if Instant::now() >= cfg.deadline {
            return RegionResult::Unknown(format!("timeout with {} subdomains open", stack.len()));
        }
        let take = cfg.batch.min(stack.len());
        let batch: Vec<Domain> = stack.split_off(stack.len() - take);
        let steps: Vec<Step> = batch
            .into_par_iter()
            .map(|d| step(net, region, d, cfg, stats, records))
            .collect();
        for s in steps {
            match s {
                Step::Closed => {}
                Step::Violated(x) => return RegionResult::Violated(x),
                Step::Split(children) => stack.extend(children),
                Step::Unknown(why) => unknown = Some(why),
            }
        }
    }
    match unknown {
        Some(why) => RegionResult::Unknown(why),
        None => RegionResult::Holds,
    }
}

/// A point of the box where every linear lower bound is `<= 0`, or `None` when there is none
/// (then no input of the box can meet all the constraints they bound). Solved as a small LP;
/// when the solver fails the answer is "maybe" (a point is returned), which is always sound.
fn joint_point(lins: &[super::bounds::LinearBound], b: &InputBox) -> Option<Vec<f64>> {
    use good_lp::{variable, Expression, ProblemVariables, Solution, SolverModel};
    let mut vars = ProblemVariables::new();
    let xs: Vec<_> = (0..b.dim())
        .map(|j| vars.add(variable().min(b.lower[j]).max(b.upper[j])))
        .collect();
    // Minimise the largest bound: t >= lin_k(x) for all k; infeasible for the conjunction when
    // the optimum is positive.
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
    match model.solve() {
        Ok(sol) => {
            // A margin against the LP's own rounding: only a clearly positive optimum closes.
            let scale = 1.0 + lins.iter().map(|l| l.constant.abs()).fold(0.0, f64::max);
            if sol.value(t) > 1e-9 * scale {
                None
            } else {
                Some(xs.iter().map(|&x| sol.value(x)).collect())
            }
        }
        Err(_) => Some(b.center()),
    }
}

/// Decides a box exactly when few ReLUs are unstable on it: for every phase pattern of the
/// unstable neurons the network is affine on the matching part of the box, so the region's
/// constraints and the phases are linear constraints on the input. Each pattern is an LP,
/// solved with a small slack so that rounding can only make it "feasible" (never wrongly
/// "infeasible"). Returns `Some(None)` when every pattern is infeasible (the box is safe),
/// `Some(Some(x))` with a confirmed counterexample, and `None` when an LP point does not
/// survive the f64 re-check.
fn phase_enumeration(
    net: &Network,
    region: &Region,
    b: &InputBox,
    bounds: &[LayerBounds],
) -> Option<Option<Vec<f64>>> {
    use super::network::Layer;
    use good_lp::{variable, Expression, ProblemVariables, Solution, SolverModel};
    let unstable: Vec<(usize, usize)> = bounds
        .iter()
        .enumerate()
        .flat_map(|(k, lb)| {
            (0..lb.lower.len())
                .filter(move |&i| lb.lower[i] < 0.0 && lb.upper[i] > 0.0)
                .map(move |i| (k, i))
        })
        .collect();
    let d = b.dim();
    let mut undecided = false;
    for pattern in 0u64..(1u64 << unstable.len()) {
        let active = |k: usize, i: usize| -> bool {
            let lb = &bounds[k];
            if lb.lower[i] >= 0.0 {
                return true;
            }
            if lb.upper[i] <= 0.0 {
                return false;
            }
            let pos = unstable
                .iter()
                .position(|&u| u == (k, i))
                .expect("unstable");
            pattern >> pos & 1 == 1
        };
        // Affine forms (rows: coefficients over x, then the constant) layer by layer; the
        // pre-activations of unstable neurons give the phase constraints.
        let mut forms: Vec<Vec<f64>> = (0..d)
            .map(|j| {
                let mut r = vec![0.0; d + 1];
                r[j] = 1.0;
                r
            })
            .collect();
        let mut phase_rows: Vec<(Vec<f64>, bool)> = Vec::new();
        let mut relu_k = 0;
        for layer in &net.layers {
            match layer {
                Layer::Affine(a) => {
                    let n_out = a.linear.out_dim();
                    let mut next = vec![vec![0.0; d + 1]; n_out];
                    // W applied to each column of the forms.
                    let mut col_in = vec![0.0; forms.len()];
                    let mut col_out = vec![0.0; n_out];
                    for c in 0..=d {
                        for (r, f) in forms.iter().enumerate() {
                            col_in[r] = f[c];
                        }
                        a.linear.apply(&col_in, &mut col_out);
                        for (r, v) in col_out.iter().enumerate() {
                            next[r][c] = *v;
                        }
                    }
                    for (r, bias) in a.bias.iter().enumerate() {
                        next[r][d] += bias;
                    }
                    forms = next;
                }
                Layer::Relu => {
                    for (i, f) in forms.iter_mut().enumerate() {
                        let on = active(relu_k, i);
                        if unstable.contains(&(relu_k, i)) {
                            phase_rows.push((f.clone(), on));
                        }
                        if !on {
                            f.iter_mut().for_each(|v| *v = 0.0);
                        }
                    }
                    relu_k += 1;
                }
            }
        }
        let mut vars = ProblemVariables::new();
        let xs: Vec<_> = (0..d)
            .map(|j| vars.add(variable().min(b.lower[j]).max(b.upper[j])))
            .collect();
        let lin = |row: &[f64]| -> Expression {
            xs.iter().zip(row).map(|(&x, &c)| c * x).sum::<Expression>() + row[d]
        };
        let slack = 1e-7;
        let mut model = vars.minimise(Expression::from(0.0)).using(good_lp::microlp);
        for (row, on) in &phase_rows {
            let scale = 1.0 + row.iter().map(|v| v.abs()).sum::<f64>();
            let e = lin(row);
            model = if *on {
                model.with(e.geq(-slack * scale))
            } else {
                model.with(e.leq(slack * scale))
            };
        }
        for c in &region.constraints {
            let mut row = vec![0.0; d + 1];
            for (j, a) in c.coeffs.iter().enumerate() {
                for (q, v) in forms[j].iter().enumerate() {
                    row[q] += a * v;
                }
            }
            row[d] += c.constant;
            let scale = 1.0 + row.iter().map(|v| v.abs()).sum::<f64>();
            model = model.with(lin(&row).leq(slack * scale));
        }
        match model.solve() {
            Ok(sol) => {
                let x: Vec<f64> = xs
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| sol.value(x).clamp(b.lower[j], b.upper[j]))
                    .collect();
                match confirm(net, region, &x) {
                    Some(cex) => return Some(Some(cex)),
                    None => undecided = true,
                }
            }
            Err(good_lp::ResolutionError::Infeasible) => {}
            Err(_) => undecided = true,
        }
    }
    if undecided {
        None
    } else {
        Some(None)
    }
}

fn step(
    net: &Network,
    region: &Region,
    d: Domain,
    cfg: &BabConfig,
    stats: &BabStats,
    records: &Mutex<Vec<SmtRecord>>,
) -> Step {
    stats.domains.fetch_add(1, Ordering::Relaxed);
    stats.max_depth.fetch_max(d.depth as u64, Ordering::Relaxed);
    let Some(bounds) = crown(
        net,
        &d.input,
        &d.splits,
        d.parent.as_deref().map(|v| v.as_slice()),
    ) else {
        return Step::Closed; // the splits contradict each other here
    };
    let objectives: Vec<(Vec<f64>, f64)> = region
        .constraints
        .iter()
        .map(|c| (c.coeffs.clone(), c.constant))
        .collect();
    let lins = objective_bounds(net, &d.input, &bounds, &objectives);
    for (lin, c) in lins.iter().zip(&region.constraints) {
        // The constraint `c . y + k <= 0` (or `< 0`) cannot hold anywhere here.
        if lin.lower > 0.0 || (c.strict && lin.lower >= 0.0) {
            return Step::Closed;
        }
    }
    if lins.len() > 1 {
        // No single constraint is positive everywhere; the linear bounds may still have no
        // common zero-or-below point in the box (a small LP decides).
        match joint_point(&lins, &d.input) {
            None => return Step::Closed,
            Some(x) => {
                if let Some(cex) = confirm(net, region, &x) {
                    return Step::Violated(cex);
                }
            }
        }
    }
    for lin in &lins {
        let x = lin.minimizer(&d.input);
        if let Some(cex) = confirm(net, region, &x) {
            return Step::Violated(cex);
        }
    }
    if let Some(cex) = confirm(net, region, &d.input.center()) {
        return Step::Violated(cex);
    }
    let unstable: usize = bounds.iter().map(|b| b.unstable()).sum();
    if d.depth >= cfg.max_depth_limit && unstable > cfg.exact_unstable {
        return Step::Unknown(format!(
            "a subdomain {} splits deep still has {unstable} unstable ReLUs",
            d.depth
        ));
    }
    if cfg.input_split && unstable <= cfg.exact_unstable {
        // Few unstable ReLUs on a box: decide exactly by enumerating their phases, each a small
        // LP over the inputs.
        // An LP point that fails the f64 re-check (a boundary case) leaves the box to be
        // split further.
        match phase_enumeration(net, region, &d.input, &bounds) {
            Some(Some(x)) => return Step::Violated(x),
            Some(None) => return Step::Closed,
            None => {}
        }
    } else if unstable <= cfg.exact_unstable {
        let left = cfg.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Step::Unknown("timeout".into());
        }
        stats.smt_calls.fetch_add(1, Ordering::Relaxed);
        let sub = Region {
            input: d.input.clone(),
            constraints: region.constraints.clone(),
        };
        let (out, rec) = smt::solve(
            net,
            &sub,
            Some(&bounds),
            left.min(cfg.smt_timeout),
            cfg.record_smt,
        );
        if let Some(r) = rec {
            records.lock().expect("records lock").push(r);
        }
        return match out {
            SmtOutcome::Unsat => Step::Closed,
            SmtOutcome::Sat(x) => Step::Violated(x),
            SmtOutcome::Unknown(why) => Step::Unknown(format!("Z3: {why}")),
        };
    }
    // The constraint closest to closing the subdomain guides the split.
    let best = lins
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.lower.total_cmp(&b.1.lower))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let bounds = Arc::new(bounds);
    if cfg.input_split {
        let lin = &lins[best];
        let b = &d.input;
        // Bisect the dimension that is widest, both in absolute terms and relative to the
        // region's own width (the product of the two). Measured on ACAS Xu: weighting widths
        // by the linear bound's sensitivity ran 10-100x more subdomains; the absolute widest
        // alone or the relative widest alone each left some instances open; a one-step
        // lookahead between candidates did not pay for its cost.
        let full = &region.input;
        let rel = |p: usize| {
            let w = full.upper[p] - full.lower[p];
            if w > 0.0 {
                (b.upper[p] - b.lower[p]) / w
            } else {
                0.0
            }
        };
        let score = |p: usize| rel(p) * (b.upper[p] - b.lower[p]);
        let j = (0..b.dim())
            .max_by(|&p, &q| score(p).total_cmp(&score(q)))
            .unwrap_or(0);
        let mid = 0.5 * (b.lower[j] + b.upper[j]);
        let mut lo = d.clone();
        lo.input.upper[j] = mid;
        let mut hi = d;
        hi.input.lower[j] = mid;
        for c in [&mut lo, &mut hi] {
            c.depth += 1;
            c.parent = Some(bounds.clone());
        }
        // The half holding the minimising vertex is explored first (pushed last).
        if lin.coeffs[j] >= 0.0 {
            Step::Split(vec![hi, lo])
        } else {
            Step::Split(vec![lo, hi])
        }
    } else {
        let mut pick: Option<(usize, usize, f64)> = None;
        for (k, lb) in bounds.iter().enumerate() {
            for i in 0..lb.lower.len() {
                let (l, u) = (lb.lower[i], lb.upper[i]);
                if l < 0.0 && u > 0.0 {
                    let score = u * (-l) / (u - l);
                    if pick.is_none_or(|p| score > p.2) {
                        pick = Some((k, i, score));
                    }
                }
            }
        }
        let Some((k, i, _)) = pick else {
            return Step::Unknown("no unstable neuron left to split".into());
        };
        let children = [Phase::Inactive, Phase::Active]
            .into_iter()
            .map(|phase| {
                let mut c = d.clone();
                c.splits.push((k, i, phase));
                c.depth += 1;
                c.parent = Some(bounds.clone());
                c
            })
            .collect();
        Step::Split(children)
    }
}
