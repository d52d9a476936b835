//! The form every verification engine works on: a DAG of operators over flat row-major
//! tensors, in f64, its nodes in topological order.
//!
//! Node 0 is the input; the last node is the output. Each operator kind keeps its whole meaning
//! in one implementation of [`Rules`] (forward pass, gradient, interval rule, back-substitution
//! rule with its relaxation, exact encodings), and the engines walk the graph calling those
//! rules, so they never match on operator kinds. Loaders (ONNX, NNet, IR JSON) build graphs
//! with [`Builder`], which checks every node as it is added; LeakyReLU and ReLU6 are lowered to
//! affine maps, sums and ReLUs there, so they are exact and split like ReLUs; max pooling is
//! its own piecewise-linear node ([`Max`]).
//!
//! Invariants of a [`Network`]: inputs of a node come before it; every node is an ancestor of
//! the output; sizes fit ([`Rules::out_dim`]); weights are finite. Chains of dense affine maps
//! are composed into one.

pub mod add;
pub mod affine;
pub mod concat;
pub mod linear;
pub mod lower;
pub mod max;
pub mod mul;
pub mod relu;
pub mod rules;
pub mod smooth;
pub mod zonotope;

pub use add::Add;
pub use concat::Concat;
pub use linear::{Affine, Conv, Linear, Sparse};
pub use max::Max;
pub use mul::Mul;
pub use relu::Relu;
pub use rules::{Rows, Rules};
pub use smooth::Smooth;
pub use zonotope::{Band, Zonotope};

use crate::verify::bounds::LayerBounds;

/// A node's index in the network (0 is the input).
pub type NodeId = usize;

/// One operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The network's input.
    Input,
    /// `W x + b`.
    Affine(Affine),
    /// `sum_k c_k x_k`.
    Add(Add),
    /// Concatenation.
    Concat(Concat),
    /// `max(x, 0)`.
    Relu(Relu),
    /// Sigmoid or tanh.
    Smooth(Smooth),
    /// Element-wise product of two tensors.
    Mul(Mul),
    /// The maximum over windows (max pooling).
    Max(Max),
}

impl Op {
    /// The operator's rules. The input node has none (engines start after it).
    pub fn rules(&self) -> &dyn Rules {
        match self {
            Op::Input => unreachable!("the input node has no rules; walks start at node 1"),
            Op::Affine(a) => a,
            Op::Add(a) => a,
            Op::Concat(c) => c,
            Op::Relu(r) => r,
            Op::Smooth(s) => s,
            Op::Mul(m) => m,
            Op::Max(m) => m,
        }
    }

    /// A short name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Affine(_) => "affine",
            Op::Add(_) => "add",
            Op::Concat(_) => "concat",
            Op::Relu(_) => "relu",
            Op::Smooth(Smooth::Sigmoid) => "sigmoid",
            Op::Smooth(Smooth::Tanh) => "tanh",
            Op::Mul(_) => "mul",
            Op::Max(_) => "maxpool",
        }
    }
}

/// A node: an operator, its inputs and its output's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// A name from the source file (for messages).
    pub name: String,
    /// The operator.
    pub op: Op,
    /// Its inputs, in argument order.
    pub inputs: Vec<NodeId>,
    /// The output's shape (row-major; the size is its product).
    pub shape: Vec<usize>,
}

impl Node {
    /// Elements of the output.
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What is wrong with a graph; each names the node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// A node does not fit its inputs.
    #[error("node '{node}' ({kind}): {msg}")]
    Node {
        /// The node's name.
        node: String,
        /// The operator.
        kind: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The network is empty.
    #[error("the network's input is empty")]
    EmptyInput,
    /// The output is the input.
    #[error("the network computes nothing: its output is its input")]
    NoOperation,
}

/// Builds a [`Network`] node by node, checking each.
#[derive(Debug, Clone)]
pub struct Builder {
    nodes: Vec<Node>,
}

impl Builder {
    /// A graph with only its input, of this shape.
    pub fn new(input_shape: Vec<usize>) -> Builder {
        Builder {
            nodes: vec![Node {
                name: "input".into(),
                op: Op::Input,
                inputs: Vec::new(),
                shape: input_shape,
            }],
        }
    }

    /// The input node.
    pub fn input(&self) -> NodeId {
        0
    }

    /// The shape of a node's output.
    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id].shape
    }

    /// The size of a node's output.
    pub fn dim(&self, id: NodeId) -> usize {
        self.nodes[id].dim()
    }

    /// Adds a node with the given output shape; checks its inputs and sizes.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
        shape: Vec<usize>,
    ) -> Result<NodeId, GraphError> {
        let name = name.into();
        let err = |msg: String| GraphError::Node {
            node: name.clone(),
            kind: op.kind(),
            msg,
        };
        if matches!(op, Op::Input) {
            return Err(err("a network has one input".into()));
        }
        if let Some(i) = inputs.iter().find(|&&i| i >= self.nodes.len()) {
            return Err(err(format!("reads node {i}, which does not exist yet")));
        }
        let dims: Vec<usize> = inputs.iter().map(|&i| self.nodes[i].dim()).collect();
        let n = op.rules().out_dim(&dims).map_err(|e| err(e.0))?;
        if n != shape.iter().product::<usize>() {
            return Err(err(format!(
                "gives {n} elements, not the {} of shape {shape:?}",
                shape.iter().product::<usize>()
            )));
        }
        self.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            shape,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Adds a node whose output is flat (`[n]`).
    pub fn add_flat(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
    ) -> Result<NodeId, GraphError> {
        let dims: Vec<usize> = inputs
            .iter()
            .filter(|&&i| i < self.nodes.len())
            .map(|&i| self.nodes[i].dim())
            .collect();
        let n = op.rules().out_dim(&dims).unwrap_or(0);
        self.add(name, op, inputs, vec![n])
    }

    /// The network computing `output`: nodes it does not depend on are dropped, and chains of
    /// dense affine maps composed.
    pub fn finish(self, output: NodeId) -> Result<Network, GraphError> {
        let mut nodes = self.nodes;
        if nodes[0].dim() == 0 {
            return Err(GraphError::EmptyInput);
        }
        if output == 0 {
            return Err(GraphError::NoOperation);
        }
        nodes.truncate(output + 1);
        // Compose an affine node into its consumer when it has no other one.
        let mut consumers = vec![0usize; nodes.len()];
        for n in &nodes {
            for &i in &n.inputs {
                consumers[i] += 1;
            }
        }
        for id in 1..nodes.len() {
            let (Op::Affine(a), [p]) = (&nodes[id].op, nodes[id].inputs.as_slice()) else {
                continue;
            };
            let p = *p;
            if let Op::Affine(prev) = &nodes[p].op {
                if let Some(composed) = (consumers[p] == 1).then(|| prev.fold(a)).flatten() {
                    let grand = nodes[p].inputs.clone();
                    nodes[id].op = Op::Affine(composed);
                    nodes[id].inputs = grand;
                    consumers[p] = 0;
                }
            }
        }
        // Keep the ancestors of the output, renumbered in order.
        let mut live = vec![false; nodes.len()];
        live[output] = true;
        for id in (1..nodes.len()).rev() {
            if live[id] {
                for &i in &nodes[id].inputs {
                    live[i] = true;
                }
            }
        }
        live[0] = true;
        let mut new_id = vec![usize::MAX; nodes.len()];
        let mut kept = Vec::new();
        for (id, mut n) in nodes.into_iter().enumerate() {
            if live[id] {
                n.inputs.iter_mut().for_each(|i| *i = new_id[*i]);
                new_id[id] = kept.len();
                kept.push(n);
            }
        }
        Ok(Network::from_nodes(kept))
    }
}

impl Network {
    /// A chain of affine maps, each followed by a ReLU where its flag says so: the shape of
    /// NNet files and layer lists.
    pub fn chain(
        input_shape: Vec<usize>,
        layers: Vec<(Affine, bool)>,
    ) -> Result<Network, GraphError> {
        let mut b = Builder::new(input_shape);
        let mut prev = b.input();
        for (k, (a, relu)) in layers.into_iter().enumerate() {
            prev = b.add_flat(format!("layer{k}"), Op::Affine(a), &[prev])?;
            if relu {
                prev = b.add_flat(format!("relu{k}"), Op::Relu(Relu), &[prev])?;
            }
        }
        b.finish(prev)
    }
}

/// A verification network: a checked DAG of operators (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    nodes: Vec<Node>,
    /// The nodes whose inputs' bounds are kept (nonlinear ones), in order.
    activations: Vec<NodeId>,
    /// For each node, its position in `activations`.
    act_of: Vec<Option<usize>>,
    /// For each node, how many nodes read it.
    consumers: Vec<usize>,
}

impl Network {
    fn from_nodes(nodes: Vec<Node>) -> Network {
        let mut activations = Vec::new();
        let mut act_of = vec![None; nodes.len()];
        let mut consumers = vec![0; nodes.len()];
        for (id, n) in nodes.iter().enumerate().skip(1) {
            if n.op.rules().need_bounds() {
                act_of[id] = Some(activations.len());
                activations.push(id);
            }
            for &i in &n.inputs {
                consumers[i] += 1;
            }
        }
        Network {
            nodes,
            activations,
            act_of,
            consumers,
        }
    }

    /// The nodes in topological order (node 0 is the input, the last the output).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The input's shape, e.g. `[5]` or `[1, 28, 28]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[0].shape
    }

    /// Input size.
    pub fn input_dim(&self) -> usize {
        self.nodes[0].dim()
    }

    /// Output size.
    pub fn output_dim(&self) -> usize {
        self.nodes.last().expect("a network has nodes").dim()
    }

    /// The nonlinear nodes, whose inputs' bounds the engines keep, in order.
    pub fn activations(&self) -> &[NodeId] {
        &self.activations
    }

    /// A node's position among the activations.
    pub fn activation_of(&self, id: NodeId) -> Option<usize> {
        self.act_of[id]
    }

    /// How many nodes read node `id`.
    pub fn consumers(&self, id: NodeId) -> usize {
        self.consumers[id]
    }

    /// Size of activation `k`'s (concatenated) inputs.
    pub fn activation_dim(&self, k: usize) -> usize {
        self.nodes[self.activations[k]]
            .inputs
            .iter()
            .map(|&i| self.nodes[i].dim())
            .sum()
    }

    /// Whether activation `k` may be split by branch and bound (a ReLU).
    pub fn splittable(&self, k: usize) -> bool {
        self.nodes[self.activations[k]].op.rules().splittable()
    }

    /// Whether every nonlinearity is piecewise linear (then the exact encodings apply).
    pub fn is_piecewise_linear(&self) -> bool {
        self.activations
            .iter()
            .all(|&id| self.nodes[id].op.rules().piecewise_linear())
    }

    /// Elements of piecewise-linear nodes whose linear piece the bounds leave open (unstable
    /// ReLUs, undecided maxima); `bounds[k]` are activation `k`'s input bounds.
    pub fn undecided(&self, bounds: &[LayerBounds]) -> usize {
        self.activations
            .iter()
            .zip(bounds)
            .map(|(&id, b)| self.nodes[id].op.rules().undecided(b))
            .sum()
    }

    /// Number of ReLU neurons.
    pub fn relu_count(&self) -> usize {
        (0..self.activations.len())
            .filter(|&k| self.splittable(k))
            .map(|k| self.activation_dim(k))
            .sum()
    }

    /// Every node's output at `x` (f64).
    pub fn forward_all(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let mut values: Vec<Vec<f64>> = Vec::with_capacity(self.nodes.len());
        values.push(x.to_vec());
        for n in &self.nodes[1..] {
            let args: Vec<&[f64]> = n.inputs.iter().map(|&i| values[i].as_slice()).collect();
            let y = n.op.rules().forward(&args);
            values.push(y);
        }
        values
    }

    /// The outputs at many points (f64), computed together: every node's values as one
    /// matrix with a column per point, so each affine node is one blocked matrix product
    /// rather than a product with a vector per point.
    pub fn forward_many(&self, xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        if xs.is_empty() {
            return Vec::new();
        }
        let mut values: Vec<Option<Rows>> = vec![None; self.nodes.len()];
        let last_use = self.last_uses();
        values[0] = Some(Rows::from_columns(xs, self.input_dim()));
        for (id, n) in self.nodes.iter().enumerate().skip(1) {
            let args: Vec<&Rows> = n
                .inputs
                .iter()
                .map(|&i| values[i].as_ref().expect("kept until its last use"))
                .collect();
            let y = n.op.rules().forward_columns(&args);
            for &i in &n.inputs {
                if last_use[i] == id {
                    values[i] = None;
                }
            }
            values[id] = Some(y);
        }
        let y = values.pop().flatten().expect("a network has nodes");
        (0..xs.len()).map(|p| y.column(p)).collect()
    }

    /// For each node, the last node that reads its output (0 when none does): the passes
    /// that carry every node's values free each one there.
    pub fn last_uses(&self) -> Vec<NodeId> {
        let mut last_use = vec![0; self.nodes.len()];
        for (id, n) in self.nodes.iter().enumerate() {
            for &i in &n.inputs {
                last_use[i] = id;
            }
        }
        last_use
    }

    /// A plain forward pass in f64.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        self.forward_all(x).pop().expect("a network has nodes")
    }

    /// The gradient of `c^T f(x)` with respect to `x` (a ReLU's derivative at 0 taken as 0).
    pub fn gradient(&self, x: &[f64], c: &[f64]) -> Vec<f64> {
        let values = self.forward_all(x);
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; self.nodes.len()];
        *grads.last_mut().expect("nodes") = Some(c.to_vec());
        for id in (1..self.nodes.len()).rev() {
            let Some(g) = grads[id].take() else { continue };
            let n = &self.nodes[id];
            let args: Vec<&[f64]> = n.inputs.iter().map(|&i| values[i].as_slice()).collect();
            let mut gin: Vec<Vec<f64>> = args.iter().map(|a| vec![0.0; a.len()]).collect();
            n.op.rules().gradient(&args, &g, &mut gin);
            for (&i, gi) in n.inputs.iter().zip(gin) {
                match &mut grads[i] {
                    Some(acc) => acc.iter_mut().zip(&gi).for_each(|(a, b)| *a += b),
                    slot => *slot = Some(gi),
                }
            }
        }
        grads[0].take().unwrap_or_else(|| vec![0.0; x.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batched forward pass gives each point's plain forward pass, through dense maps,
    /// ReLUs and the operators without a batched rule (a sigmoid, a weighted sum).
    #[test]
    fn forward_many_matches_forward() {
        let net = residual();
        let xs = vec![vec![0.3, -1.2], vec![-0.7, 0.4], vec![2.0, 1.5]];
        let ys = net.forward_many(&xs);
        assert_eq!(ys.len(), 3);
        for (x, y) in xs.iter().zip(&ys) {
            let plain = net.forward(x);
            assert_eq!(y.len(), plain.len());
            for (a, b) in y.iter().zip(&plain) {
                assert!((a - b).abs() < 1e-12, "{a} vs {b}");
            }
        }
        assert!(net.forward_many(&[]).is_empty());
    }

    /// x -> dense -> relu -> (dense, sigmoid) -> add; a branch and a join.
    fn residual() -> Network {
        let mut b = Builder::new(vec![2]);
        let fc = b
            .add_flat(
                "fc",
                Op::Affine(Affine {
                    linear: Linear::Dense {
                        rows: 3,
                        cols: 2,
                        w: vec![1.0, -2.0, 0.5, 0.25, -1.0, 3.0],
                    },
                    bias: vec![0.1, -0.2, 0.3],
                }),
                &[0],
            )
            .unwrap();
        let r = b.add_flat("relu", Op::Relu(Relu), &[fc]).unwrap();
        let fc2 = b
            .add_flat(
                "fc2",
                Op::Affine(Affine {
                    linear: Linear::Dense {
                        rows: 3,
                        cols: 3,
                        w: vec![0.3, -0.7, 1.1, 2.0, 0.4, -0.5, 0.2, 0.2, -0.9],
                    },
                    bias: vec![0.0, 0.1, -0.1],
                }),
                &[r],
            )
            .unwrap();
        let s = b.add_flat("sig", Op::Smooth(Smooth::Tanh), &[fc2]).unwrap();
        let m = b.add_flat("gate", Op::Mul(Mul), &[s, r]).unwrap();
        let add = b
            .add_flat(
                "add",
                Op::Add(Add {
                    coeffs: vec![1.0, -0.5],
                }),
                &[m, fc],
            )
            .unwrap();
        b.finish(add).unwrap()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let net = residual();
        let (x, c) = ([0.31, 0.17], [1.0, -2.0, 0.5]);
        let g = net.gradient(&x, &c);
        let f = |x: &[f64]| linear::dot(&net.forward(x), &c);
        for i in 0..2 {
            let mut xp = x;
            xp[i] += 1e-7;
            let fd = (f(&xp) - f(&x)) / 1e-7;
            assert!((fd - g[i]).abs() < 1e-5, "{fd} vs {}", g[i]);
        }
    }

    #[test]
    fn bad_nodes_are_named() {
        let mut b = Builder::new(vec![2]);
        let e = b
            .add_flat(
                "join",
                Op::Add(Add {
                    coeffs: vec![1.0, 1.0],
                }),
                &[0, 7],
            )
            .unwrap_err();
        assert!(e.to_string().contains("node 'join'"), "{e}");
    }
}
