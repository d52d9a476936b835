//! A builder that engines use to emit networks: it names nodes by scope and checks every
//! node's shape as it is added, so a mistake surfaces at the line that made it.

use super::graph::{Graph, NodeId};
use super::ops::{Activation, Op};
use super::shape::Shape;
use super::IrError;

/// Builds a [`Graph`] node by node, inferring shapes eagerly.
#[derive(Debug)]
pub struct Builder {
    graph: Graph,
    shapes: Vec<Shape>,
    scope: Vec<String>,
}

impl Builder {
    /// Starts an empty graph called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Builder {
            graph: Graph::new(name),
            shapes: Vec::new(),
            scope: Vec::new(),
        }
    }

    /// Enters a name scope: nodes added until [`Builder::leave`] are called `scope.name`.
    pub fn enter(&mut self, scope: impl Into<String>) {
        self.scope.push(scope.into());
    }

    /// Leaves the innermost name scope.
    pub fn leave(&mut self) {
        self.scope.pop();
    }

    fn full_name(&self, name: &str) -> String {
        if self.scope.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.scope.join("."), name)
        }
    }

    /// Adds any operator; its output shape is inferred now.
    pub fn push(&mut self, name: &str, op: Op, inputs: &[NodeId]) -> Result<NodeId, IrError> {
        let full = self.full_name(name);
        let in_shapes: Vec<&Shape> = inputs.iter().map(|i| &self.shapes[i.index()]).collect();
        let out = op.output_shape(&in_shapes).map_err(|e| IrError::Shape {
            node: full.clone(),
            msg: e.0,
        })?;
        let id = self.graph.add_node(full, op, inputs);
        debug_assert_eq!(id.index(), self.shapes.len());
        self.shapes.push(out);
        Ok(id)
    }

    /// The output shape of a node added so far.
    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.shapes[id.index()]
    }

    /// The channel count of a node's output.
    pub fn channels(&self, id: NodeId) -> usize {
        self.shapes[id.index()].channels()
    }

    /// A graph input.
    pub fn input(&mut self, name: &str, shape: Shape) -> Result<NodeId, IrError> {
        self.push(name, Op::Input { shape }, &[])
    }

    /// A square convolution without bias: `k x k`, stride `s`, padding `p`, `groups`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: NodeId,
        out_channels: usize,
        k: usize,
        s: usize,
        p: usize,
        groups: usize,
    ) -> Result<NodeId, IrError> {
        self.push(
            name,
            Op::Conv2d {
                out_channels,
                kernel: [k, k],
                stride: [s, s],
                padding: [p, p],
                dilation: [1, 1],
                groups,
                bias: false,
            },
            &[x],
        )
    }

    /// A square convolution with a bias.
    pub fn conv_bias(
        &mut self,
        name: &str,
        x: NodeId,
        out_channels: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> Result<NodeId, IrError> {
        self.push(
            name,
            Op::Conv2d {
                out_channels,
                kernel: [k, k],
                stride: [s, s],
                padding: [p, p],
                dilation: [1, 1],
                groups: 1,
                bias: true,
            },
            &[x],
        )
    }

    /// Batch normalization.
    pub fn bn(&mut self, name: &str, x: NodeId) -> Result<NodeId, IrError> {
        self.push(name, Op::BatchNorm, &[x])
    }

    /// An activation.
    pub fn act(&mut self, name: &str, x: NodeId, function: Activation) -> Result<NodeId, IrError> {
        self.push(name, Op::Act { function }, &[x])
    }

    /// ReLU.
    pub fn relu(&mut self, name: &str, x: NodeId) -> Result<NodeId, IrError> {
        self.act(name, x, Activation::Relu)
    }

    /// Element-wise sum.
    pub fn add(&mut self, name: &str, xs: &[NodeId]) -> Result<NodeId, IrError> {
        self.push(name, Op::Add, xs)
    }

    /// A linear layer with bias.
    pub fn linear(
        &mut self,
        name: &str,
        x: NodeId,
        out_features: usize,
    ) -> Result<NodeId, IrError> {
        self.push(
            name,
            Op::Linear {
                out_features,
                bias: true,
            },
            &[x],
        )
    }

    /// Global average pooling followed by flatten: `[C, H, W] -> [C]`.
    pub fn pool_flatten(&mut self, x: NodeId) -> Result<NodeId, IrError> {
        let p = self.push("avgpool", Op::GlobalAvgPool, &[x])?;
        self.push("flatten", Op::Flatten, &[p])
    }

    /// Conv (no bias), batch norm and an optional activation, named `conv`, `bn`, `act` inside
    /// the current scope.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bn_act(
        &mut self,
        x: NodeId,
        out_channels: usize,
        k: usize,
        s: usize,
        groups: usize,
        act: Option<Activation>,
    ) -> Result<NodeId, IrError> {
        let c = self.conv("conv", x, out_channels, k, s, k / 2, groups)?;
        let b = self.bn("bn", c)?;
        match act {
            Some(f) => self.act("act", b, f),
            None => Ok(b),
        }
    }

    /// Finishes the graph with these outputs and validates the whole of it.
    pub fn finish(mut self, outputs: &[NodeId]) -> Result<Graph, IrError> {
        self.graph.set_outputs(outputs.to_vec());
        self.graph.analyze()?;
        Ok(self.graph)
    }
}
