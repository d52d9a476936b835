//! The linked solver back ends answer problems whose answers are known in closed form.

use archproof::solvers::{knapsack, relu_query, MilpSolver};

#[test]
fn highs_solves_a_knapsack_to_its_integer_optimum() {
    // LP relaxation 23.5; integer optimum 23 (items 0 and 1).
    assert!((knapsack(MilpSolver::Highs).unwrap() - 23.0).abs() < 1e-9);
}

#[test]
fn microlp_agrees_with_highs() {
    assert!((knapsack(MilpSolver::Microlp).unwrap() - 23.0).abs() < 1e-9);
}

#[test]
fn z3_decides_a_relu_query() {
    let x = relu_query().unwrap();
    // relu(2x - 1) >= 0.5 holds exactly for x >= 0.75 within [-1, 1].
    assert!((0.75..=1.0).contains(&x), "{x}");
    assert!(archproof::solvers::z3_version().starts_with("4."));
}
