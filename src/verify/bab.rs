//! Branch and bound over one region of a property.
//!
//! A subdomain is an input box plus a set of ReLU phase splits. Each is bounded by
//! back-substitution ([`super::bounds`]); it is closed when some constraint of the region's
//! conjunction is shown positive everywhere on it. Otherwise the vertices that minimise the
//! linear bounds are tried as counterexamples, and the subdomain is split: on the input (the
//! dimension where the best constraint's linear bound varies most), for low-dimensional inputs,
//! or on the unstable ReLU with the largest relaxation area, for high-dimensional ones. When few
//! ReLUs remain unstable, Z3 decides the subdomain exactly with the bounds as extra
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
    /// Hand a subdomain to Z3 once at most this many ReLUs are unstable on it.
    pub smt_unstable: usize,
    /// Hand a subdomain to Z3 once it is this many splits deep.
    pub smt_depth: usize,
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
    if unstable <= cfg.smt_unstable || d.depth >= cfg.smt_depth {
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
        let j = (0..b.dim())
            .max_by(|&p, &q| {
                let sp = lin.coeffs[p].abs() * (b.upper[p] - b.lower[p]);
                let sq = lin.coeffs[q].abs() * (b.upper[q] - b.lower[q]);
                sp.total_cmp(&sq)
            })
            .unwrap_or(0);
        let j = if lin.coeffs[j] == 0.0 {
            // No guidance: split the widest dimension.
            (0..b.dim())
                .max_by(|&p, &q| (b.upper[p] - b.lower[p]).total_cmp(&(b.upper[q] - b.lower[q])))
                .unwrap_or(0)
        } else {
            j
        };
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
