//! The architecture graph: a petgraph DAG of named operator nodes, and its analysis
//! (validation, shape inference, cost accounting).

use std::collections::HashMap;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

use super::ops::{NodeCost, Op};
use super::shape::Shape;
use super::weights::Weights;
use super::IrError;

/// Identifies a node of a [`Graph`].
pub type NodeId = NodeIndex<u32>;

/// A named operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique name within the graph, e.g. `layer1.0.conv1`.
    pub name: String,
    /// The operator.
    pub op: Op,
    /// Learned parameters, empty for an architecture without weights.
    pub weights: Weights,
}

/// An architecture: a directed acyclic graph whose edges carry the argument slot they feed.
///
/// Invariants kept by [`Graph::analyze`] (not by construction, so that a graph read from a file
/// can be reported on): acyclic, unique names, argument slots `0..n` without gaps, operator
/// arities respected, shapes agree, at least one input and one output.
#[derive(Debug, Clone)]
pub struct Graph {
    /// A name for people, e.g. `resnet50`.
    pub name: String,
    dag: DiGraph<Node, usize>,
    outputs: Vec<NodeId>,
}

/// The result of analysing a valid graph: a topological order, every node's output shape and
/// cost, and the totals.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Nodes in a topological order (inputs first).
    pub order: Vec<NodeId>,
    /// Output shape of each node, indexed by `NodeId::index()`.
    pub shapes: Vec<Shape>,
    /// Cost of each node, indexed by `NodeId::index()`.
    pub costs: Vec<NodeCost>,
    /// Totals over the graph.
    pub totals: Totals,
}

/// Whole-graph numbers for one input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Learned parameters.
    pub params: u64,
    /// Multiply-accumulates of convolutions and linear layers.
    pub macs: u64,
    /// Output elements of every computing node (inputs, identities and flattens excluded:
    /// they are views).
    pub activations: u64,
    /// `activations` as f32 bytes.
    pub activation_bytes: u64,
    /// Convolution and linear layers.
    pub layers: u64,
    /// Nodes of the graph.
    pub nodes: u64,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            dag: DiGraph::new(),
            outputs: Vec::new(),
        }
    }

    /// Adds a node reading `inputs` in argument order. No check is made here; see
    /// [`Graph::analyze`] or use the [`super::Builder`], which checks as it goes.
    pub fn add_node(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId]) -> NodeId {
        let id = self.dag.add_node(Node {
            name: name.into(),
            op,
            weights: Weights::new(),
        });
        for (slot, &src) in inputs.iter().enumerate() {
            self.dag.add_edge(src, id, slot);
        }
        id
    }

    /// Makes `inputs` the arguments of `id`, in order, after any it already has.
    pub fn connect(&mut self, id: NodeId, inputs: &[NodeId]) {
        let first = self.dag.edges_directed(id, Direction::Incoming).count();
        for (slot, &src) in inputs.iter().enumerate() {
            self.dag.add_edge(src, id, first + slot);
        }
    }

    /// Marks the graph's outputs (in order).
    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    /// The output nodes.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id]
    }

    /// Attaches learned parameters to a node (checked by [`Graph::analyze`]).
    pub fn set_weights(&mut self, id: NodeId, weights: Weights) {
        self.dag[id].weights = weights;
    }

    /// Whether every node that takes parameters has them.
    pub fn has_weights(&self) -> Result<bool, IrError> {
        let analysis = self.analyze()?;
        Ok(analysis.order.iter().all(|&id| {
            let node = &self.dag[id];
            let inputs: Vec<&Shape> = self
                .inputs_of(id)
                .iter()
                .map(|a| &analysis.shapes[a.index()])
                .collect();
            !node.weights.is_empty() || super::weights::expected(&node.op, &inputs).is_empty()
        }))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }

    /// Node ids in insertion order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.dag.node_indices()
    }

    /// The underlying petgraph graph (edge weight: the argument slot).
    pub fn dag(&self) -> &DiGraph<Node, usize> {
        &self.dag
    }

    /// The arguments of a node in slot order.
    pub fn inputs_of(&self, id: NodeId) -> Vec<NodeId> {
        let mut e: Vec<(usize, NodeId)> = self
            .dag
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort_unstable();
        e.into_iter().map(|(_, s)| s).collect()
    }

    /// The node called `name`, if any.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.dag.node_indices().find(|&i| self.dag[i].name == name)
    }

    /// Validates the graph, infers every shape and counts every cost.
    ///
    /// Errors name the offending node.
    pub fn analyze(&self) -> Result<Analysis, IrError> {
        if self.dag.node_count() == 0 {
            return Err(IrError::Invalid("the graph has no nodes".into()));
        }
        let mut seen: HashMap<&str, NodeId> = HashMap::new();
        for id in self.dag.node_indices() {
            let name = self.dag[id].name.as_str();
            if name.is_empty() {
                return Err(IrError::Invalid(format!(
                    "node #{} has an empty name",
                    id.index()
                )));
            }
            if seen.insert(name, id).is_some() {
                return Err(IrError::DuplicateName(name.to_string()));
            }
        }
        toposort(&self.dag, None).map_err(|cycle| IrError::Cycle {
            node: self.dag[cycle.node_id()].name.clone(),
        })?;
        let order = self.stable_order();
        if !self
            .dag
            .node_weights()
            .any(|n| matches!(n.op, Op::Input { .. }))
        {
            return Err(IrError::Invalid("the graph has no input node".into()));
        }
        if self.outputs.is_empty() {
            return Err(IrError::Invalid("the graph has no output".into()));
        }
        let n = self.dag.node_count();
        let mut shapes: Vec<Option<Shape>> = vec![None; n];
        let mut costs = vec![NodeCost::default(); n];
        let mut totals = Totals {
            nodes: n as u64,
            ..Totals::default()
        };
        for &id in &order {
            let node = &self.dag[id];
            let args = self.inputs_of(id);
            let slots: Vec<usize> = {
                let mut s: Vec<usize> = self
                    .dag
                    .edges_directed(id, Direction::Incoming)
                    .map(|e| *e.weight())
                    .collect();
                s.sort_unstable();
                s
            };
            if slots.iter().enumerate().any(|(i, &s)| i != s) {
                return Err(IrError::Shape {
                    node: node.name.clone(),
                    msg: "argument slots are not 0..n".into(),
                });
            }
            let in_shapes: Vec<&Shape> = args
                .iter()
                .map(|a| shapes[a.index()].as_ref().expect("topological order"))
                .collect();
            let out = node
                .op
                .output_shape(&in_shapes)
                .map_err(|e| IrError::Shape {
                    node: node.name.clone(),
                    msg: e.0,
                })?;
            super::weights::check(&node.op, &in_shapes, &node.weights).map_err(|e| {
                IrError::Shape {
                    node: node.name.clone(),
                    msg: e.0,
                }
            })?;
            let cost = node.op.cost(&in_shapes, &out);
            totals.params += cost.params;
            totals.macs += cost.macs;
            if !matches!(node.op, Op::Input { .. } | Op::Identity | Op::Flatten) {
                totals.activations += cost.activations;
            }
            totals.layers += node.op.is_weighted_layer() as u64;
            costs[id.index()] = cost;
            shapes[id.index()] = Some(out);
        }
        totals.activation_bytes = totals.activations * 4;
        Ok(Analysis {
            order,
            shapes: shapes
                .into_iter()
                .map(|s| s.expect("every node visited"))
                .collect(),
            costs,
            totals,
        })
    }
}

impl Graph {
    /// A topological order that prefers the earliest-added node whenever several are ready
    /// (Kahn's algorithm with a min-heap), so that writing a graph and reading it back gives
    /// the same order and the same text. Assumes the graph is acyclic.
    fn stable_order(&self) -> Vec<NodeId> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut indegree: Vec<usize> = self
            .dag
            .node_indices()
            .map(|i| self.dag.edges_directed(i, Direction::Incoming).count())
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> = indegree
            .iter()
            .enumerate()
            .filter(|(_, &d)| d == 0)
            .map(|(i, _)| Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(Reverse(i)) = ready.pop() {
            let id = NodeId::new(i);
            order.push(id);
            for next in self.dag.neighbors_directed(id, Direction::Outgoing) {
                indegree[next.index()] -= 1;
                if indegree[next.index()] == 0 {
                    ready.push(Reverse(next.index()));
                }
            }
        }
        order
    }
}

impl Analysis {
    /// The output shape of the graph's first output.
    pub fn output_shape<'a>(&'a self, graph: &Graph) -> &'a Shape {
        &self.shapes[graph.outputs()[0].index()]
    }
}
