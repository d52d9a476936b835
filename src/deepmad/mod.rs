//! DeepMAD: CNN design by mathematical programming. A structure's expressiveness (entropy) and
//! effectiveness follow in closed form from its widths, kernels and depths ([`score`]); the
//! design chooses them under FLOPs, params and effectiveness budgets.

pub mod bound;
pub(crate) mod boxprogram;
pub mod evolution;
pub mod ir;
mod lagrangian;
pub mod polish;
pub mod program;
pub mod score;
pub mod space;
pub mod structure;

pub use score::{score, Convention, Score, Weights};
pub use structure::{Block, BlockKind, Structure};
