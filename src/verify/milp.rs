//! The mixed-integer back end: a region of a property on one box of inputs as a MILP, solved
//! by HiGHS.
//!
//! Each operator encodes itself ([`Rules::milp`](super::graph::rules::Rules::milp)) as affine
//! forms over the inputs and one column per unstable element, so the program holds only the
//! box, those columns and their binaries: affine maps are composed (in f64), every ReLU left
//! unstable by the bounds gets one binary variable and big-M constraints from those bounds
//! (an undecided maximum one binary per element that can be the maximum), the stable ones
//! are fixed to their linear piece. The region's constraints are added with a small slack, and
//! every bound used is widened outward, so that rounding (in the composition and in the
//! solver) can only make the program feasible, never wrongly infeasible. An infeasible program
//! proves the box safe; a solution is re-checked by the f64 forward pass before it counts as a
//! counterexample (a point that fails it leaves the box undecided). Branch and bound calls
//! this on boxes with few unstable neurons, where it replaces an exponential enumeration of
//! phase patterns by the solver's own search.

use std::time::Duration;

use good_lp::{
    variable, Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable,
};

use super::bounds::LayerBounds;
use super::falsify::confirm;
use super::graph::rules::{MilpEncoding, Sense};
use super::graph::{Network, Rows};
use super::spec::{InputBox, Region};

/// What the program said about a box.
#[derive(Debug, Clone)]
pub enum MilpOutcome {
    /// No input of the box meets the region's constraints.
    Infeasible,
    /// A counterexample, confirmed by a forward pass.
    Violated(Vec<f64>),
    /// The solver stopped, failed, or its point did not survive the f64 re-check.
    Unknown(String),
    /// The forms would hold this many coefficients, more than [`FORM_BUDGET`].
    TooLarge(usize),
}

/// The most coefficients the forms of all nodes may hold together (f64 entries: 32 MiB):
/// beyond it, on large networks, [`decide`] answers [`MilpOutcome::TooLarge`].
pub const FORM_BUDGET: usize = 1 << 22;

/// Relative slack of the region's constraints (times `1 +` the sum of the row's coefficients).
const SLACK: f64 = 1e-7;

/// The network's output on the box as affine forms over the encoding's columns (see
/// [`MilpEncoding`]), node by node through each operator's encoding, with room for `extra`
/// columns (the elements the bounds leave undecided). `None` when a node has no encoding (a
/// smooth or bilinear node), its bounds are not finite, or the encoders asked for more columns.
fn encode(
    net: &Network,
    b: &InputBox,
    bounds: &[LayerBounds],
    extra: usize,
) -> Option<(MilpEncoding, Rows)> {
    let mut enc = MilpEncoding::new(&b.lower, &b.upper, extra);
    let nodes = net.nodes();
    let mut values: Vec<Rows> = Vec::with_capacity(nodes.len());
    values.push(enc.input_forms());
    for (id, node) in nodes.iter().enumerate().skip(1) {
        let args: Vec<&Rows> = node.inputs.iter().map(|&i| &values[i]).collect();
        let nb = net.activation_of(id).map(|k| &bounds[k]);
        let out = node.op.rules().milp(&args, nb, &mut enc)?;
        values.push(out);
    }
    let out = values.pop()?;
    Some((enc, out))
}

/// `form . (columns, 1) + sum c_b d_b` as an expression.
fn affine(
    form: &[f64],
    columns: &[Variable],
    terms: &[(usize, f64)],
    binaries: &[Variable],
    k: usize,
) -> Expression {
    let mut e = Expression::from(form[k]);
    for (c, &v) in form[..k].iter().enumerate() {
        if v != 0.0 {
            e.add_mul(v, columns[c]);
        }
    }
    for &(bi, v) in terms {
        e.add_mul(v, binaries[bi]);
    }
    e
}

/// Decides `region` on the box `b` (inside the region's own box), with `bounds` sound there
/// (from propagation over `b` and whatever splits hold on it). HiGHS runs on one thread for at
/// most `limit`.
pub fn decide(
    net: &Network,
    region: &Region,
    b: &InputBox,
    bounds: &[LayerBounds],
    limit: Duration,
) -> MilpOutcome {
    let extra = net.undecided(bounds);
    let entries: usize = net.nodes().iter().map(|n| n.dim()).sum::<usize>() * (b.dim() + extra + 1);
    if entries > FORM_BUDGET {
        return MilpOutcome::TooLarge(entries);
    }
    let Some((mut enc, y)) = encode(net, b, bounds, extra) else {
        return MilpOutcome::Unknown(
            "the network has a node without a mixed-integer encoding, or unbounded neurons".into(),
        );
    };
    for c in &region.constraints {
        let mut form = y.combine(&c.coeffs, c.constant);
        // Slack relative to the row's size; a strict constraint is relaxed to `<=`: the
        // program may only admit more points.
        let scale = 1.0 + form.iter().map(|v| v.abs()).sum::<f64>();
        *form.last_mut().expect("constant column") -= SLACK * scale;
        enc.require(form, Vec::new(), Sense::Le);
    }
    let mut vars = ProblemVariables::new();
    let columns: Vec<Variable> = enc
        .column_bounds
        .iter()
        .map(|&(lo, hi)| vars.add(variable().min(lo).max(hi)))
        .collect();
    let binaries: Vec<Variable> = (0..enc.binaries)
        .map(|_| vars.add(variable().binary()))
        .collect();
    let mut model = vars
        .minimise(Expression::from(0.0))
        .using(good_lp::highs)
        .set_time_limit(limit.as_secs_f64().max(1e-3))
        .set_threads(1);
    model.set_verbose(false);
    let k = enc.cols - 1;
    for row in &enc.rows {
        let e = affine(&row.form, &columns, &row.binaries, &binaries, k);
        model = model.with(match row.sense {
            Sense::Le => e.leq(0.0),
            Sense::Ge => e.geq(0.0),
        });
    }
    match model.solve() {
        // Any solution good_lp returns is primal feasible (also at the time limit).
        Ok(sol) => {
            let x: Vec<f64> = columns[..b.dim()]
                .iter()
                .enumerate()
                .map(|(j, &v)| sol.value(v).clamp(b.lower[j], b.upper[j]))
                .collect();
            match confirm(net, region, &x) {
                Some(cex) => MilpOutcome::Violated(cex),
                None => MilpOutcome::Unknown(
                    "the program's point does not survive the f64 forward pass (a boundary case)"
                        .into(),
                ),
            }
        }
        Err(ResolutionError::Infeasible) => MilpOutcome::Infeasible,
        Err(ResolutionError::Other("NoSolutionFound")) => MilpOutcome::Unknown(
            "HiGHS stopped (time or another limit) without a feasible point".into(),
        ),
        Err(e) => MilpOutcome::Unknown(format!("HiGHS: {e}")),
    }
}
