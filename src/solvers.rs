//! The solver back ends archproof links: mixed-integer programming through good_lp (HiGHS by
//! default, the pure-Rust microlp for comparison) and SMT through Z3.
//!
//! [`check_all`] solves one small problem with each, whose answer is known in closed form, so
//! `archproof doctor` and the test suite can tell a broken link from a broken model.

use good_lp::{constraint, variable, Expression, ProblemVariables, Solution, SolverModel};
use serde::Serialize;

/// A MILP back end of good_lp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MilpSolver {
    /// HiGHS (built from source by the `highs` crate): the default.
    Highs,
    /// microlp, pure Rust: no system dependency, far slower on integer programs.
    Microlp,
}

impl MilpSolver {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MilpSolver::Highs => "highs",
            MilpSolver::Microlp => "microlp",
        }
    }
}

/// The result of one smoke check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The back end's version, where it reports one.
    pub version: String,
    /// Whether the answer was the known one.
    pub ok: bool,
    /// The answer, or the error.
    pub detail: String,
}

/// Why a smoke check failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolverError {
    /// The MILP back end failed to solve a feasible program.
    #[error("the MILP solver failed: {0}")]
    Milp(String),
    /// Z3 gave an answer that contradicts the known one.
    #[error("Z3 answered wrongly: {0}")]
    WrongAnswer(&'static str),
}

/// A 0-1 knapsack whose optimum (23: items 0 and 1) differs from its LP relaxation's (23.5),
/// so a solver that ignores integrality fails it.
pub fn knapsack(solver: MilpSolver) -> Result<f64, SolverError> {
    let values = [10.0, 13.0, 7.0, 8.0];
    let weights = [4.0, 6.0, 3.0, 5.0];
    let mut vars = ProblemVariables::new();
    let x: Vec<_> = (0..4).map(|_| vars.add(variable().binary())).collect();
    let objective: Expression = x.iter().zip(values).map(|(&v, c)| c * v).sum();
    let weight: Expression = x.iter().zip(weights).map(|(&v, w)| w * v).sum();
    let problem = vars.maximise(objective.clone());
    let value = match solver {
        MilpSolver::Highs => {
            let mut m = problem.using(good_lp::highs);
            m.set_verbose(false);
            let s = m
                .with(constraint!(weight <= 10.0))
                .solve()
                .map_err(|e| SolverError::Milp(e.to_string()))?;
            s.eval(&objective)
        }
        MilpSolver::Microlp => {
            let s = problem
                .using(good_lp::microlp)
                .with(constraint!(weight <= 10.0))
                .solve()
                .map_err(|e| SolverError::Milp(e.to_string()))?;
            s.eval(&objective)
        }
    };
    Ok(value)
}

/// Z3 on a one-neuron ReLU query: with `x` in [-1, 1] and `y = relu(2x - 1)`, `y >= 0.5` is
/// satisfiable (by `x >= 0.75`) and `y > 1` is not. Returns the model's `x` of the first query.
pub fn relu_query() -> Result<f64, SolverError> {
    use z3::ast::Real;
    use z3::{SatResult, Solver};
    let x = Real::new_const("x");
    let zero = Real::from_rational(0, 1);
    let two_x = Real::mul(&[&Real::from_rational(2, 1), &x]);
    let pre = Real::sub(&[&two_x, &Real::from_rational(1, 1)]);
    let y = pre.ge(&zero).ite(&pre, &zero);
    let solver = Solver::new();
    solver.assert(x.ge(Real::from_rational(-1, 1)));
    solver.assert(x.le(Real::from_rational(1, 1)));
    solver.push();
    solver.assert(y.gt(Real::from_rational(1, 1)));
    if solver.check() != SatResult::Unsat {
        return Err(SolverError::WrongAnswer("y > 1 should be unsatisfiable"));
    }
    solver.pop(1);
    solver.assert(y.ge(Real::from_rational(1, 2)));
    if solver.check() != SatResult::Sat {
        return Err(SolverError::WrongAnswer("y >= 0.5 should be satisfiable"));
    }
    let wrong = SolverError::WrongAnswer;
    let model = solver.get_model().ok_or(wrong("sat without a model"))?;
    let xv = model.eval(&x, true).ok_or(wrong("x has no value"))?;
    let (num, den) = xv.as_rational().ok_or(wrong("x is not a rational"))?;
    Ok(num as f64 / den as f64)
}

/// The linked Z3's version string.
pub fn z3_version() -> String {
    z3::full_version().to_string()
}

/// Runs every smoke check.
pub fn check_all() -> Vec<Check> {
    let mut out = Vec::new();
    for solver in [MilpSolver::Highs, MilpSolver::Microlp] {
        let (ok, detail) = match knapsack(solver) {
            Ok(v) => (
                (v - 23.0).abs() < 1e-6,
                format!("knapsack optimum {v} (expected 23)"),
            ),
            Err(e) => (false, e.to_string()),
        };
        out.push(Check {
            name: format!("milp:{}", solver.name()),
            version: String::new(),
            ok,
            detail,
        });
    }
    let (ok, detail) = match relu_query() {
        Ok(x) => (
            (0.75 - 1e-12..=1.0).contains(&x),
            format!("relu query sat at x = {x}, unsat above 1"),
        ),
        Err(e) => (false, e.to_string()),
    };
    out.push(Check {
        name: "smt:z3".into(),
        version: z3_version(),
        ok,
        detail,
    });
    out
}
