//! Normalization-activation layers defined as small graphs of primitive tensor operations.
//!
//! This is the IR's extension point for layers that are not one fixed operator: EvoNorm-style
//! layers are evolved as such graphs. A graph maps a feature map `x` of shape `[C, H, W]` to one
//! of the same shape. Its nodes are numbered: the four initial nodes come first
//! ([`NormActGraph::X`], [`NormActGraph::ZERO`], [`NormActGraph::V0`], [`NormActGraph::V1`]),
//! then each primitive in order, each reading only earlier nodes. The layer's output is the last
//! node times a per-channel `gamma` plus a per-channel `beta`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::shape::ShapeError;

/// The axes a statistic (mean or variance) is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axes {
    /// Over batch, height and width (N, H, W): batch statistics.
    Batch,
    /// Over height and width (H, W) of each sample and channel.
    Instance,
    /// Over height, width and the channels of a group (H, W, C/G). When the group count does
    /// not divide the channel count it is halved until it does (the reference convention).
    Group(usize),
}

/// A primitive operation; every input and output has the shape of `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prim {
    /// a + b
    Add,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// max(a, b)
    Max,
    /// -a
    Neg,
    /// 1 / (1 + exp(-a))
    Sigmoid,
    /// tanh(a)
    Tanh,
    /// exp(a)
    Exp,
    /// sign(a) ln|a|
    Log,
    /// |a|
    Abs,
    /// a^2
    Square,
    /// sign(a) sqrt|a|
    Sqrt,
    /// Mean over the given axes, broadcast back to the shape of `a`.
    Mean(Axes),
    /// Biased variance over the given axes, broadcast back.
    Var(Axes),
}

impl Prim {
    /// Number of operands.
    pub fn arity(self) -> usize {
        match self {
            Prim::Add | Prim::Mul | Prim::Div | Prim::Max => 2,
            _ => 1,
        }
    }

    /// Every primitive of the search space, with `groups` for the group statistics.
    pub fn all(groups: usize) -> Vec<Prim> {
        let mut v = vec![
            Prim::Add,
            Prim::Mul,
            Prim::Div,
            Prim::Max,
            Prim::Neg,
            Prim::Sigmoid,
            Prim::Tanh,
            Prim::Exp,
            Prim::Log,
            Prim::Abs,
            Prim::Square,
            Prim::Sqrt,
        ];
        for axes in [Axes::Batch, Axes::Instance, Axes::Group(groups)] {
            v.push(Prim::Mean(axes));
            v.push(Prim::Var(axes));
        }
        v
    }
}

/// One intermediate node: a primitive applied to earlier nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrimNode {
    /// The primitive.
    pub op: Prim,
    /// Indices of the operand nodes, all smaller than this node's own index.
    pub args: Vec<usize>,
}

/// A normalization-activation layer as a graph of primitives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NormActGraph {
    /// A name for people, e.g. `evonorm-s0`.
    pub name: String,
    /// Intermediate nodes in order; the last one is the output before the affine transform.
    pub nodes: Vec<PrimNode>,
}

impl NormActGraph {
    /// Index of the input tensor node.
    pub const X: usize = 0;
    /// Index of the constant zero node.
    pub const ZERO: usize = 1;
    /// Index of the per-channel learned vector `v0` (initialised to 0).
    pub const V0: usize = 2;
    /// Index of the per-channel learned vector `v1` (initialised to 1).
    pub const V1: usize = 3;
    /// Number of initial nodes.
    pub const INITIAL: usize = 4;

    /// Checks that every operand refers to an earlier node and arities match.
    pub fn validate(&self) -> Result<(), ShapeError> {
        if self.nodes.is_empty() {
            return Err(ShapeError(format!(
                "layer '{}' has no primitive nodes",
                self.name
            )));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let id = i + Self::INITIAL;
            if node.args.len() != node.op.arity() {
                return Err(ShapeError(format!(
                    "layer '{}' node {id}: {:?} takes {} operand(s), has {}",
                    self.name,
                    node.op,
                    node.op.arity(),
                    node.args.len()
                )));
            }
            if let Some(a) = node.args.iter().find(|&&a| a >= id) {
                return Err(ShapeError(format!(
                    "layer '{}' node {id} reads node {a}, which is not earlier",
                    self.name
                )));
            }
            if let Prim::Mean(Axes::Group(0)) | Prim::Var(Axes::Group(0)) = node.op {
                return Err(ShapeError(format!(
                    "layer '{}' node {id} has 0 groups",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// The nodes the output depends on (initial nodes included), as a mask over all indices.
    pub fn live(&self) -> Vec<bool> {
        let n = Self::INITIAL + self.nodes.len();
        let mut live = vec![false; n];
        live[n - 1] = true;
        for id in (Self::INITIAL..n).rev() {
            if live[id] {
                for &a in &self.nodes[id - Self::INITIAL].args {
                    live[a] = true;
                }
            }
        }
        live
    }

    /// Learned parameters per channel: gamma and beta, plus `v0` and `v1` where the output
    /// depends on them.
    pub fn params_per_channel(&self) -> usize {
        let live = self.live();
        2 + live[Self::V0] as usize + live[Self::V1] as usize
    }

    /// The group count of the group statistics the output depends on, if any.
    pub fn groups(&self) -> Option<usize> {
        let live = self.live();
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| live[i + Self::INITIAL])
            .find_map(|(_, n)| match n.op {
                Prim::Mean(Axes::Group(g)) | Prim::Var(Axes::Group(g)) => Some(g),
                _ => None,
            })
    }

    /// The layer as a formula in the initial nodes, e.g. `x * sigmoid(v1 * x) / ...`.
    pub fn formula(&self) -> String {
        let mut exprs: Vec<String> = vec!["x".into(), "0".into(), "v0".into(), "v1".into()];
        for node in &self.nodes {
            let a = |k: usize| exprs[node.args[k]].clone();
            let e = match node.op {
                Prim::Add => format!("({} + {})", a(0), a(1)),
                Prim::Mul => format!("({} * {})", a(0), a(1)),
                Prim::Div => format!("({} / {})", a(0), a(1)),
                Prim::Max => format!("max({}, {})", a(0), a(1)),
                Prim::Neg => format!("-{}", a(0)),
                Prim::Sigmoid => format!("sigmoid({})", a(0)),
                Prim::Tanh => format!("tanh({})", a(0)),
                Prim::Exp => format!("exp({})", a(0)),
                Prim::Log => format!("slog({})", a(0)),
                Prim::Abs => format!("|{}|", a(0)),
                Prim::Square => format!("{}^2", a(0)),
                Prim::Sqrt => format!("ssqrt({})", a(0)),
                Prim::Mean(ax) => format!("mean_{ax}({})", a(0)),
                Prim::Var(ax) => format!("var_{ax}({})", a(0)),
            };
            exprs.push(e);
        }
        format!(
            "{} * gamma + beta",
            exprs.last().cloned().unwrap_or_default()
        )
    }
}

impl fmt::Display for Axes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Axes::Batch => write!(f, "nhw"),
            Axes::Instance => write!(f, "hw"),
            Axes::Group(g) => write!(f, "hwc/{g}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EvoNorm-S0 as written in the paper: x * sigmoid(v1 x) / sqrt(var_group(x) + eps).
    fn s0_like() -> NormActGraph {
        NormActGraph {
            name: "s0".into(),
            nodes: vec![
                PrimNode {
                    op: Prim::Mul,
                    args: vec![NormActGraph::V1, NormActGraph::X],
                }, // 4
                PrimNode {
                    op: Prim::Sigmoid,
                    args: vec![4],
                }, // 5
                PrimNode {
                    op: Prim::Mul,
                    args: vec![NormActGraph::X, 5],
                }, // 6
                PrimNode {
                    op: Prim::Var(Axes::Group(4)),
                    args: vec![NormActGraph::X],
                }, // 7
                PrimNode {
                    op: Prim::Sqrt,
                    args: vec![7],
                }, // 8
                PrimNode {
                    op: Prim::Div,
                    args: vec![6, 8],
                }, // 9
            ],
        }
    }

    #[test]
    fn s0_counts_gamma_beta_and_v1() {
        let g = s0_like();
        g.validate().unwrap();
        assert_eq!(g.params_per_channel(), 3);
        assert_eq!(g.groups(), Some(4));
        assert_eq!(
            g.formula(),
            "((x * sigmoid((v1 * x))) / ssqrt(var_hwc/4(x))) * gamma + beta"
        );
    }

    #[test]
    fn forward_reference_is_rejected() {
        let mut g = s0_like();
        g.nodes[0].args = vec![NormActGraph::X, 7];
        let err = g.validate().unwrap_err().0;
        assert!(err.contains("node 4 reads node 7"), "{err}");
    }
}
