//! Learned parameters attached to IR nodes, named and laid out as PyTorch does (a convolution's
//! `weight` is `[out, in / groups, kh, kw]`, a linear layer's `[out, in]`), so that a trained
//! network round-trips through IR JSON and can be verified from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ops::Op;
use super::shape::{Shape, ShapeError};

/// A dense tensor, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tensor {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and data; `None` when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Tensor> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor { shape, data })
    }
}

/// A node's parameters by name.
pub type Weights = BTreeMap<String, Tensor>;

/// The epsilon of batch normalization when weights are given (PyTorch's default).
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// The parameters an operator takes on inputs of these shapes: names and shapes, in a fixed
/// order. Operators without parameters give an empty list.
pub fn expected(op: &Op, inputs: &[&Shape]) -> Vec<(&'static str, Vec<usize>)> {
    let c = inputs.first().map(|s| s.channels()).unwrap_or(0);
    match op {
        Op::Conv2d {
            out_channels,
            kernel,
            groups,
            bias,
            ..
        } => {
            let mut v = vec![(
                "weight",
                vec![*out_channels, c / (*groups).max(1), kernel[0], kernel[1]],
            )];
            if *bias {
                v.push(("bias", vec![*out_channels]));
            }
            v
        }
        Op::Linear { out_features, bias } => {
            let fin = inputs.first().map(|s| s.numel()).unwrap_or(0);
            let mut v = vec![("weight", vec![*out_features, fin])];
            if *bias {
                v.push(("bias", vec![*out_features]));
            }
            v
        }
        Op::BatchNorm => vec![
            ("weight", vec![c]),
            ("bias", vec![c]),
            ("running_mean", vec![c]),
            ("running_var", vec![c]),
        ],
        Op::GroupNorm { .. } | Op::LayerNorm => vec![("weight", vec![c]), ("bias", vec![c])],
        Op::ScaleShift { shape } => vec![("scale", shape.clone()), ("shift", shape.clone())],
        Op::NormAct(g) => {
            let live = g.live();
            let mut v = vec![("weight", vec![c]), ("bias", vec![c])];
            if live[super::normact::NormActGraph::V0] {
                v.push(("v0", vec![c]));
            }
            if live[super::normact::NormActGraph::V1] {
                v.push(("v1", vec![c]));
            }
            v
        }
        _ => Vec::new(),
    }
}

/// Whether a weight is learned (trained, and counted in a network's parameters) or a constant
/// of the network (batch normalization's moving statistics, a scale-shift's tensors).
pub fn is_learned(op: &Op, name: &str) -> bool {
    !(name.starts_with("running_") || matches!(op, Op::ScaleShift { .. }))
}

/// Checks a node's weights against what its operator expects: none at all, or exactly the
/// expected names with the expected shapes and finite values.
pub fn check(op: &Op, inputs: &[&Shape], weights: &Weights) -> Result<(), ShapeError> {
    if weights.is_empty() {
        return Ok(());
    }
    let want = expected(op, inputs);
    if want.is_empty() {
        return Err(ShapeError(
            "this operator has no parameters, but weights are given".into(),
        ));
    }
    for (name, shape) in &want {
        let t = weights
            .get(*name)
            .ok_or_else(|| ShapeError(format!("weights lack '{name}' (shape {shape:?})")))?;
        if &t.shape != shape {
            return Err(ShapeError(format!(
                "weight '{name}' has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        if t.data.len() != shape.iter().product::<usize>() {
            return Err(ShapeError(format!(
                "weight '{name}' has {} values for shape {shape:?}",
                t.data.len()
            )));
        }
        if t.data.iter().any(|v| !v.is_finite()) {
            return Err(ShapeError(format!(
                "weight '{name}' holds a non-finite value"
            )));
        }
    }
    if let Some(extra) = weights
        .keys()
        .find(|k| !want.iter().any(|(n, _)| n == &k.as_str()))
    {
        return Err(ShapeError(format!(
            "unknown weight '{extra}' for this operator"
        )));
    }
    Ok(())
}
