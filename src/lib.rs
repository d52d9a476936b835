//! archproof: a workbench for neural-architecture search and formal verification.
//!
//! One architecture IR ([`ir`]) is shared by every engine. The study engine ([`search`]) runs
//! search strategies over spaces such as the NAS-Bench-201 cells ([`cells`]). The solver
//! back ends (HiGHS through good_lp, Z3) are linked and checked by [`solvers`]. Networks are
//! trained with candle and exported by [`train`].
//!
//! Engines never print: they return values and report progress through callbacks; the
//! `archproof` binary formats them.

pub mod cells;
pub mod deepmad;
pub mod evonorm;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod ir;
pub mod models;
pub mod onnx;
pub mod report;
pub mod search;
pub mod solvers;
pub mod train;
pub mod verify;
