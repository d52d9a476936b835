//! The exact back end: a region of a property as a Z3 query in linear real arithmetic.
//!
//! Every weight enters as the exact rational value of its f64, so Z3 decides the same network
//! the forward pass computes (up to the forward pass's own rounding, which is why a model is
//! re-checked in f64 before it is reported). ReLUs are encoded exactly; where bounds from
//! propagation are known, stable neurons are fixed to their linear phase and unstable ones get
//! the triangle relaxation as extra (redundant, helpful) constraints.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use num::BigRational;
use z3::ast::Real;
use z3::{Params, SatResult, Solver};

use super::bounds::LayerBounds;
use super::falsify::confirm;
use super::graph::rules::Z3Encoding;
use super::graph::Network;
use super::spec::Region;

/// What Z3 said about a region.
#[derive(Debug, Clone)]
pub enum SmtOutcome {
    /// A counterexample, confirmed by a forward pass.
    Sat(Vec<f64>),
    /// No input of the region meets its constraints.
    Unsat,
    /// Z3 gave up, timed out, or its model did not survive the f64 re-check.
    Unknown(String),
}

/// A query and its answer, for the proof log.
#[derive(Debug, Clone)]
pub struct SmtRecord {
    /// The query in SMT-LIB 2.
    pub smtlib: String,
    /// `sat`, `unsat` or `unknown`.
    pub answer: String,
}

pub(crate) fn exact(x: f64) -> Real {
    match BigRational::from_float(x) {
        Some(r) => Real::from_big_rational(&r),
        None => Real::from_rational(0, 1), // unreachable: networks hold finite weights
    }
}

/// Z3 queries that ignored their time limit and an interrupt, and still run.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// How long past its time limit a query may run before it is interrupted, and again before it
/// is abandoned.
const GRACE: Duration = Duration::from_millis(500);

/// The raw context of a worker's Z3 queries, interruptible while `alive` holds.
struct Worker {
    ctx: usize,
    alive: Arc<Mutex<bool>>,
}

/// Solves one region with Z3. `bounds` are ReLU input bounds valid on the region's box (from
/// propagation), or `None` for the plain encoding.
///
/// Z3 4.8 does not stop at its time limit on every query, nor at an interrupt: some large
/// linear-arithmetic problems keep it busy for minutes. Each query therefore runs on a thread
/// of its own with its own context. Past the limit it is interrupted; if it still runs after
/// a grace period, it is abandoned (answer unknown, which is always sound) and the thread runs
/// on. While an abandoned query runs, further queries answer unknown at once rather than
/// pile up on the cores.
pub fn solve(
    net: &Network,
    region: &Region,
    bounds: Option<&[LayerBounds]>,
    timeout: Duration,
    record: bool,
) -> (SmtOutcome, Option<SmtRecord>) {
    if ABANDONED.load(Ordering::SeqCst) > 0 {
        return (
            SmtOutcome::Unknown("an earlier Z3 query ignored its time limit and still runs".into()),
            None,
        );
    }
    let (net, region) = (net.clone(), region.clone());
    let bounds: Option<Vec<LayerBounds>> = bounds.map(<[LayerBounds]>::to_vec);
    let (ctx_tx, ctx_rx) = mpsc::channel::<Worker>();
    let (out_tx, out_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("z3".into())
        .spawn(move || {
            let ctx = z3::Context::thread_local();
            let alive = Arc::new(Mutex::new(true));
            let _ = ctx_tx.send(Worker {
                ctx: ctx.get_z3_context().as_ptr() as usize,
                alive: alive.clone(),
            });
            let out = solve_here(&net, &region, bounds.as_deref(), timeout, record);
            // From here on the context may be freed: no interrupt may reach it.
            *alive.lock().unwrap_or_else(|e| e.into_inner()) = false;
            let abandoned = out_tx.send(out).is_err();
            if abandoned {
                ABANDONED.fetch_sub(1, Ordering::SeqCst);
            }
        });
    if let Err(e) = spawned {
        return (
            SmtOutcome::Unknown(format!("cannot start a Z3 thread: {e}")),
            None,
        );
    }
    let Ok(worker) = ctx_rx.recv() else {
        return (SmtOutcome::Unknown("the Z3 thread failed".into()), None);
    };
    if let Ok(out) = out_rx.recv_timeout(timeout + GRACE) {
        return out;
    }
    {
        let alive = worker.alive.lock().unwrap_or_else(|e| e.into_inner());
        if *alive {
            // SAFETY: the context lives while `alive` is true, and the worker cannot clear it
            // (and go on to free the context) while this lock is held.
            if let Some(ctx) = std::ptr::NonNull::new(worker.ctx as *mut z3_sys::_Z3_context) {
                unsafe { z3_sys::Z3_interrupt(ctx) };
            }
        }
    }
    if let Ok(out) = out_rx.recv_timeout(GRACE) {
        return out;
    }
    // Count the runaway query before dropping the receiver: the worker decrements the count
    // when its send fails.
    ABANDONED.fetch_add(1, Ordering::SeqCst);
    drop(out_rx);
    (
        SmtOutcome::Unknown(format!(
            "Z3 ignored its time limit ({:.1} s) and an interrupt; the query was abandoned",
            timeout.as_secs_f64()
        )),
        None,
    )
}

/// [`solve`] on the calling thread's context.
fn solve_here(
    net: &Network,
    region: &Region,
    bounds: Option<&[LayerBounds]>,
    timeout: Duration,
    record: bool,
) -> (SmtOutcome, Option<SmtRecord>) {
    let solver = Solver::new_for_logic("QF_LRA").unwrap_or_default();
    let mut params = Params::new();
    params.set_u32(
        "timeout",
        timeout.as_millis().clamp(1, u32::MAX as u128) as u32,
    );
    solver.set_params(&params);

    let n = net.input_dim();
    let xs: Vec<Real> = (0..n).map(|j| Real::new_const(format!("X_{j}"))).collect();
    for (j, x) in xs.iter().enumerate() {
        solver.assert(x.ge(exact(region.input.lower[j])));
        solver.assert(x.le(exact(region.input.upper[j])));
    }
    let Some(v) = encode(net, &solver, &xs, bounds) else {
        return (
            SmtOutcome::Unknown(
                "the network has a smooth or bilinear node, which has no exact linear encoding"
                    .into(),
            ),
            None,
        );
    };
    assert_constraints(&solver, region, &v);
    let smtlib = record.then(|| solver.to_smt2());
    let outcome = outcome_of(check_watched(&solver, timeout), &solver, &xs, net, region);
    let record = smtlib.map(|smtlib| SmtRecord {
        smtlib,
        answer: match &outcome {
            SmtOutcome::Sat(_) => "sat",
            SmtOutcome::Unsat => "unsat",
            SmtOutcome::Unknown(_) => "unknown",
        }
        .into(),
    });
    (outcome, record)
}

/// Asserts the region's output constraints (a conjunction) on the output terms `v`.
fn assert_constraints(solver: &Solver, region: &Region, v: &[Real]) {
    let zero = Real::from_rational(0, 1);
    for c in &region.constraints {
        let mut terms: Vec<Real> = c
            .coeffs
            .iter()
            .enumerate()
            .filter(|(_, a)| **a != 0.0)
            .map(|(j, a)| Real::mul(&[&exact(*a), &v[j]]))
            .collect();
        terms.push(exact(c.constant));
        let refs: Vec<&Real> = terms.iter().collect();
        let lhs = Real::add(&refs);
        solver.assert(if c.strict {
            lhs.lt(&zero)
        } else {
            lhs.le(&zero)
        });
    }
}

/// `solver.check()`, interrupted by a watchdog thread shortly after `timeout`: Z3's own
/// timeout is not honoured on every path.
fn check_watched(solver: &Solver, timeout: Duration) -> SatResult {
    let handle = solver.get_context().handle();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let handle = &handle;
        s.spawn(move || {
            if wait
                .recv_timeout(timeout + Duration::from_millis(20))
                .is_err()
            {
                handle.interrupt();
            }
        });
        let r = solver.check();
        let _ = done.send(());
        r
    })
}

/// What a check's answer means for the region: a model becomes a counterexample only if it
/// survives the f64 forward pass.
fn outcome_of(
    result: SatResult,
    solver: &Solver,
    xs: &[Real],
    net: &Network,
    region: &Region,
) -> SmtOutcome {
    match result {
        SatResult::Unsat => SmtOutcome::Unsat,
        SatResult::Unknown => SmtOutcome::Unknown(
            solver
                .get_reason_unknown()
                .unwrap_or_else(|| "unknown".into()),
        ),
        SatResult::Sat => match solver.get_model() {
            Some(m) => {
                let x: Vec<f64> = xs
                    .iter()
                    .map(|x| m.eval(x, true).map_or(0.0, |v| v.approx_f64()))
                    .collect();
                // The model is exact; its f64 rounding may step off a boundary. Clamp into the
                // box and re-check.
                let x: Vec<f64> = x
                    .iter()
                    .enumerate()
                    .map(|(j, v)| v.clamp(region.input.lower[j], region.input.upper[j]))
                    .collect();
                match confirm(net, region, &x) {
                    Some(cex) => SmtOutcome::Sat(cex),
                    None => SmtOutcome::Unknown(
                        "Z3's model does not survive the f64 forward pass (a boundary case)".into(),
                    ),
                }
            }
            None => SmtOutcome::Unknown("Z3 reported sat without a model".into()),
        },
    }
}

/// The network's output as Z3 terms of the inputs `xs`, node by node through each operator's
/// exact encoding (stable ReLUs fixed by `bounds`); `None` when a node has no exact encoding.
fn encode(
    net: &Network,
    solver: &Solver,
    xs: &[Real],
    bounds: Option<&[LayerBounds]>,
) -> Option<Vec<Real>> {
    let nodes = net.nodes();
    let mut values: Vec<Vec<Real>> = Vec::with_capacity(nodes.len());
    values.push(xs.to_vec());
    for (id, node) in nodes.iter().enumerate().skip(1) {
        let args: Vec<&[Real]> = node.inputs.iter().map(|&i| values[i].as_slice()).collect();
        let b = net.activation_of(id).and_then(|k| bounds.map(|bs| &bs[k]));
        let enc = Z3Encoding { solver, node: id };
        let out = node.op.rules().z3(&args, b, &enc)?;
        values.push(out);
    }
    values.pop()
}
