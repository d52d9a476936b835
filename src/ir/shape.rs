//! Tensor shapes without the batch dimension.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tensor shape without the batch dimension: `[C, H, W]` for feature maps, `[F]` for vectors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// A shape from its dimensions.
    pub fn new(dims: Vec<usize>) -> Self {
        Shape(dims)
    }

    /// A feature-map shape `[c, h, w]`.
    pub fn chw(c: usize, h: usize, w: usize) -> Self {
        Shape(vec![c, h, w])
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// The channel count: the first dimension (the feature count of a vector).
    pub fn channels(&self) -> usize {
        self.0.first().copied().unwrap_or(0)
    }

    /// The dimensions of a feature map, or a message when this is not `[C, H, W]`.
    pub fn as_chw(&self) -> Result<[usize; 3], ShapeError> {
        match self.0.as_slice() {
            &[c, h, w] => Ok([c, h, w]),
            _ => Err(ShapeError(format!(
                "needs a feature map [C, H, W], got {self}"
            ))),
        }
    }

    /// Parses `3x224x224` (or `10` for a vector).
    pub fn parse(text: &str) -> Result<Self, ShapeError> {
        let dims: Result<Vec<usize>, _> =
            text.split(['x', 'X']).map(|p| p.trim().parse()).collect();
        match dims {
            Ok(d) if !d.is_empty() && !d.contains(&0) => Ok(Shape(d)),
            _ => Err(ShapeError(format!(
                "'{text}' is not a shape: write positive sizes joined by x, e.g. 3x224x224"
            ))),
        }
    }
}

/// Dimensions as the command line writes them, `3x224x224`: the form [`Shape::parse`] reads.
pub fn dims_text(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(ToString::to_string).collect();
    parts.join("x")
}

/// Why shapes do not fit (an operator's inputs, a weight, a shape argument); the graph adds
/// the node's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "[{}]", parts.join(", "))
    }
}
