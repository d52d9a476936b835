//! The architecture IR that every engine shares: a petgraph DAG of typed operator nodes, shape
//! inference, exact cost accounting (params, MACs, activations), a builder, the reference zoo,
//! and JSON / Graphviz export.

mod builder;
mod graph;
pub mod io;
pub mod normact;
mod ops;
mod shape;
pub mod weights;
pub mod zoo;

pub use builder::Builder;
pub use graph::{Analysis, Graph, Node, NodeId, Totals};
pub use ops::{broadcast_index, broadcasts, Activation, NodeCost, Op};
pub use shape::{dims_text, Shape, ShapeError};
pub use weights::{Tensor, Weights};

/// Errors of the IR: each names the node or the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    /// The graph has a cycle through this node.
    #[error("the graph has a cycle through node '{node}'")]
    Cycle {
        /// A node on the cycle.
        node: String,
    },
    /// A node's inputs do not fit its operator.
    #[error("node '{node}': {msg}")]
    Shape {
        /// The node.
        node: String,
        /// What does not fit.
        msg: String,
    },
    /// Two nodes share a name.
    #[error("two nodes are called '{0}'")]
    DuplicateName(String),
    /// The graph as a whole is invalid.
    #[error("{0}")]
    Invalid(String),
    /// An unknown or malformed model name.
    #[error("{0}")]
    Model(String),
    /// A graph file could not be read or written.
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
}
