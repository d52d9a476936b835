//! Operator nodes of the IR.
//!
//! Every operator is one enum variant. Its shape rule, its parameter count and its
//! multiply-accumulate count live here, next to each other, so that adding an operator is one
//! local change (the same cut candle and auto_LiRPA make).

use serde::{Deserialize, Serialize};

use super::normact::NormActGraph;
use super::shape::{Shape, ShapeError};

/// Element-wise activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// min(max(x, 0), 6)
    Relu6,
    /// x * sigmoid(x), also called swish
    Silu,
    /// x * Phi(x)
    Gelu,
    /// 1 / (1 + exp(-x))
    Sigmoid,
    /// x * relu6(x + 3) / 6
    Hardswish,
    /// (e^x - e^-x) / (e^x + e^-x)
    Tanh,
}

impl Activation {
    /// The lower-case name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::Sigmoid => "sigmoid",
            Activation::Hardswish => "hardswish",
            Activation::Tanh => "tanh",
        }
    }
}

/// One operator of the architecture graph. Shapes exclude the batch dimension:
/// feature maps are `[C, H, W]`, vectors are `[F]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// A graph input of a fixed shape.
    Input {
        /// Shape without the batch dimension.
        shape: Shape,
    },
    /// 2-D convolution over a `[C, H, W]` input.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Kernel height and width.
        kernel: [usize; 2],
        /// Stride along height and width.
        stride: [usize; 2],
        /// Zero padding added on both sides along height and width.
        padding: [usize; 2],
        /// Dilation along height and width.
        dilation: [usize; 2],
        /// Channel groups; `groups == in_channels` is a depthwise convolution.
        groups: usize,
        /// Whether the convolution adds a learned bias.
        bias: bool,
    },
    /// Fully connected layer over a `[F]` input.
    Linear {
        /// Output features.
        out_features: usize,
        /// Whether the layer adds a learned bias.
        bias: bool,
    },
    /// Batch normalization over the channel axis (affine: 2 parameters per channel).
    BatchNorm,
    /// Group normalization (affine: 2 parameters per channel).
    GroupNorm {
        /// Number of channel groups; must divide the channel count.
        groups: usize,
    },
    /// Layer normalization over all non-batch axes, with a per-channel affine transform
    /// (GroupNorm with a single group; 2 parameters per channel).
    LayerNorm,
    /// Element-wise activation.
    Act {
        /// The activation function.
        function: Activation,
    },
    /// min(max(x, min), max): ONNX's Clip with both bounds (hard-sigmoid is a `scale_shift`
    /// and a clip to [0, 1]; the clip to [0, 6] is the `relu6` activation).
    Clip {
        /// The lower bound.
        min: f64,
        /// The upper bound (at least `min`).
        max: f64,
    },
    /// max(x, 0) + slope * min(x, 0).
    LeakyRelu {
        /// The slope for negative inputs (PyTorch's default is 0.01).
        slope: f64,
    },
    /// `x * scale + shift` element-wise, with constant `scale` and `shift` tensors of `shape`
    /// broadcast to the input as numpy does (right-aligned): `[C, 1, 1]` per channel, `[1]`
    /// for all elements, or the input's own shape. Input normalisation, and the constant
    /// arithmetic (Add, Sub, Mul, Div by constants) of imported models. The two tensors are
    /// constants: training leaves them as they are.
    ScaleShift {
        /// The shape of `scale` and `shift`.
        shape: Vec<usize>,
    },
    /// Constant padding of a `[C, H, W]` map.
    Pad {
        /// Rows and columns added: top, left, bottom, right.
        pads: [usize; 4],
        /// The value of the added elements.
        value: f64,
    },
    /// The same elements, row-major, in another shape.
    Reshape {
        /// The new shape (same number of elements).
        shape: Shape,
    },
    /// Element-wise sum of two or more inputs of the same shape.
    Add,
    /// Element-wise product of two inputs; the second may be `[C, 1, 1]` and is broadcast
    /// (the gate of squeeze-excitation).
    Mul,
    /// Concatenation of feature maps along the channel axis.
    Concat,
    /// Max pooling.
    MaxPool {
        /// Window height and width.
        kernel: [usize; 2],
        /// Stride along height and width.
        stride: [usize; 2],
        /// Implicit padding on both sides.
        padding: [usize; 2],
    },
    /// Average pooling.
    AvgPool {
        /// Window height and width.
        kernel: [usize; 2],
        /// Stride along height and width.
        stride: [usize; 2],
        /// Implicit padding on both sides.
        padding: [usize; 2],
        /// Whether padded zeros count in the average's divisor.
        count_include_pad: bool,
    },
    /// Average over height and width: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool,
    /// Flatten all non-batch axes into one.
    Flatten,
    /// Passes its input through.
    Identity,
    /// Outputs zeros of its input's shape (the `none` edge of cell spaces).
    Zero,
    /// A normalization-activation layer defined as a small graph of primitive tensor ops
    /// (the extension point EvoNorm layers plug into).
    NormAct(NormActGraph),
}

/// Numbers of one node that do not depend on the rest of the graph beyond its input shapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCost {
    /// Learned parameters.
    pub params: u64,
    /// Multiply-accumulates of convolutions and linear layers for one input.
    pub macs: u64,
    /// Elements of the node's output for one input.
    pub activations: u64,
}

impl Op {
    /// A short name of the operator kind, as used in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Conv2d { .. } => "conv2d",
            Op::Linear { .. } => "linear",
            Op::BatchNorm => "batch_norm",
            Op::GroupNorm { .. } => "group_norm",
            Op::LayerNorm => "layer_norm",
            Op::Act { .. } => "act",
            Op::Clip { .. } => "clip",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::ScaleShift { .. } => "scale_shift",
            Op::Pad { .. } => "pad",
            Op::Reshape { .. } => "reshape",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Concat => "concat",
            Op::MaxPool { .. } => "max_pool",
            Op::AvgPool { .. } => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Identity => "identity",
            Op::Zero => "zero",
            Op::NormAct(_) => "norm_act",
        }
    }

    /// A one-line human description, e.g. `conv2d 3x3/2 64 g1`.
    pub fn describe(&self) -> String {
        match self {
            Op::Input { shape } => format!("input {shape}"),
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                dilation,
                bias,
            } => {
                let mut s = format!(
                    "conv2d {}x{}/{} p{} {}",
                    kernel[0], kernel[1], stride[0], padding[0], out_channels
                );
                if *groups != 1 {
                    s.push_str(&format!(" g{groups}"));
                }
                if *dilation != [1, 1] {
                    s.push_str(&format!(" d{}", dilation[0]));
                }
                if *bias {
                    s.push_str(" +b");
                }
                s
            }
            Op::Linear { out_features, bias } => {
                format!("linear {out_features}{}", if *bias { " +b" } else { "" })
            }
            Op::GroupNorm { groups } => format!("group_norm g{groups}"),
            Op::Act { function } => function.name().to_string(),
            Op::Clip { min, max } => format!("clip {min}..{max}"),
            Op::LeakyRelu { slope } => format!("leaky_relu {slope}"),
            Op::ScaleShift { shape } => format!("scale_shift {}", Shape::new(shape.clone())),
            Op::Pad { pads, value } => {
                let mut s = format!("pad {}/{}/{}/{}", pads[0], pads[1], pads[2], pads[3]);
                if *value != 0.0 {
                    s.push_str(&format!(" ={value}"));
                }
                s
            }
            Op::Reshape { shape } => format!("reshape {shape}"),
            Op::MaxPool { kernel, stride, .. } => {
                format!("max_pool {}x{}/{}", kernel[0], kernel[1], stride[0])
            }
            Op::AvgPool { kernel, stride, .. } => {
                format!("avg_pool {}x{}/{}", kernel[0], kernel[1], stride[0])
            }
            Op::NormAct(g) => format!("norm_act {}", g.name),
            other => other.kind().to_string(),
        }
    }

    /// How many inputs the operator takes: `(min, max)`.
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Input { .. } => (0, 0),
            Op::Add | Op::Concat => (2, usize::MAX),
            Op::Mul => (2, 2),
            _ => (1, 1),
        }
    }

    /// Infers the output shape from the input shapes (in argument order).
    ///
    /// Returns a message that says what does not fit; the caller names the node.
    pub fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape, ShapeError> {
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return Err(ShapeError(if lo == hi {
                format!("takes {lo} input(s), has {}", inputs.len())
            } else {
                format!("takes at least {lo} inputs, has {}", inputs.len())
            }));
        }
        match self {
            Op::Input { shape } => {
                if shape.dims().is_empty() || shape.dims().contains(&0) {
                    return Err(ShapeError(format!(
                        "input shape {shape} has an empty dimension"
                    )));
                }
                Ok(shape.clone())
            }
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => {
                let [c, h, w] = inputs[0].as_chw()?;
                if *groups == 0 || c % groups != 0 || out_channels % groups != 0 {
                    return Err(ShapeError(format!(
                        "groups {groups} must divide input channels {c} and output channels {out_channels}"
                    )));
                }
                if *out_channels == 0 {
                    return Err(ShapeError("has 0 output channels".into()));
                }
                let oh = window_out(h, kernel[0], stride[0], padding[0], dilation[0])?;
                let ow = window_out(w, kernel[1], stride[1], padding[1], dilation[1])?;
                Ok(Shape::chw(*out_channels, oh, ow))
            }
            Op::Linear { out_features, .. } => {
                let dims = inputs[0].dims();
                if dims.len() != 1 {
                    return Err(ShapeError(format!(
                        "linear takes a vector [F], got {} (add a flatten)",
                        inputs[0]
                    )));
                }
                if *out_features == 0 {
                    return Err(ShapeError("has 0 output features".into()));
                }
                Ok(Shape::new(vec![*out_features]))
            }
            Op::BatchNorm | Op::LayerNorm => Ok(inputs[0].clone()),
            Op::GroupNorm { groups } => {
                let c = inputs[0].channels();
                if *groups == 0 || c % groups != 0 {
                    return Err(ShapeError(format!(
                        "groups {groups} must divide channels {c}"
                    )));
                }
                Ok(inputs[0].clone())
            }
            Op::Act { .. } | Op::Identity | Op::Zero => Ok(inputs[0].clone()),
            Op::Clip { min, max } => {
                if !min.is_finite() || !max.is_finite() || min > max {
                    return Err(ShapeError(format!(
                        "clip bounds {min}..{max} must be finite with min <= max"
                    )));
                }
                Ok(inputs[0].clone())
            }
            Op::LeakyRelu { slope } => {
                if !slope.is_finite() {
                    return Err(ShapeError(format!("slope {slope} is not finite")));
                }
                Ok(inputs[0].clone())
            }
            Op::ScaleShift { shape } => {
                broadcasts(shape, inputs[0].dims())?;
                Ok(inputs[0].clone())
            }
            Op::Pad { pads, value } => {
                let [c, h, w] = inputs[0].as_chw()?;
                if !value.is_finite() {
                    return Err(ShapeError(format!("pad value {value} is not finite")));
                }
                Ok(Shape::chw(c, h + pads[0] + pads[2], w + pads[1] + pads[3]))
            }
            Op::Reshape { shape } => {
                if shape.dims().is_empty() || shape.dims().contains(&0) {
                    return Err(ShapeError(format!(
                        "reshape to {shape}, which has an empty dimension"
                    )));
                }
                if shape.numel() != inputs[0].numel() {
                    return Err(ShapeError(format!(
                        "cannot reshape {} ({} elements) to {shape} ({} elements)",
                        inputs[0],
                        inputs[0].numel(),
                        shape.numel()
                    )));
                }
                Ok(shape.clone())
            }
            Op::NormAct(g) => {
                g.validate()?;
                let c = inputs[0].channels();
                if let Some(groups) = g.groups() {
                    if c % groups.min(c) != 0 {
                        return Err(ShapeError(format!(
                            "group count {groups} does not fit {c} channels"
                        )));
                    }
                }
                Ok(inputs[0].clone())
            }
            Op::Add => {
                for s in &inputs[1..] {
                    if *s != inputs[0] {
                        return Err(ShapeError(format!(
                            "adds tensors of different shapes {} and {}",
                            inputs[0], s
                        )));
                    }
                }
                Ok(inputs[0].clone())
            }
            Op::Mul => {
                let (a, b) = (inputs[0], inputs[1]);
                if a == b {
                    return Ok(a.clone());
                }
                let [c, _, _] = a.as_chw()?;
                if b.dims() == [c, 1, 1] {
                    Ok(a.clone())
                } else {
                    Err(ShapeError(format!(
                        "multiplies {a} by {b}: the second factor must have the same shape or be [{c}, 1, 1]"
                    )))
                }
            }
            Op::Concat => {
                let [_, h, w] = inputs[0].as_chw()?;
                let mut c_total = 0;
                for s in inputs {
                    let [c, sh, sw] = s.as_chw()?;
                    if (sh, sw) != (h, w) {
                        return Err(ShapeError(format!(
                            "concatenates maps of different sizes {} and {}",
                            inputs[0], s
                        )));
                    }
                    c_total += c;
                }
                Ok(Shape::chw(c_total, h, w))
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            }
            | Op::AvgPool {
                kernel,
                stride,
                padding,
                ..
            } => {
                let [c, h, w] = inputs[0].as_chw()?;
                if padding[0] * 2 > kernel[0] || padding[1] * 2 > kernel[1] {
                    return Err(ShapeError(format!(
                        "padding {:?} exceeds half the window {:?}",
                        padding, kernel
                    )));
                }
                let oh = window_out(h, kernel[0], stride[0], padding[0], 1)?;
                let ow = window_out(w, kernel[1], stride[1], padding[1], 1)?;
                Ok(Shape::chw(c, oh, ow))
            }
            Op::GlobalAvgPool => {
                let [c, _, _] = inputs[0].as_chw()?;
                Ok(Shape::chw(c, 1, 1))
            }
            Op::Flatten => Ok(Shape::new(vec![inputs[0].numel()])),
        }
    }

    /// Parameters and multiply-accumulates of this node, given its input and output shapes.
    ///
    /// MACs count convolutions and linear layers only (the convention of the published
    /// counts: torchvision's model cards, NAS-Bench-201's `flops`); biases, normalization,
    /// pooling and element-wise ops add none.
    pub fn cost(&self, inputs: &[&Shape], output: &Shape) -> NodeCost {
        let activations = output.numel() as u64;
        let (params, macs) = match self {
            Op::Conv2d {
                out_channels,
                kernel,
                groups,
                bias,
                ..
            } => {
                let cin = inputs[0].channels() as u64;
                let per_out = cin / *groups as u64 * (kernel[0] * kernel[1]) as u64;
                let weights = per_out * *out_channels as u64;
                let b = if *bias { *out_channels as u64 } else { 0 };
                let positions = (output.dims()[1] * output.dims()[2]) as u64;
                (weights + b, weights * positions)
            }
            Op::Linear { out_features, bias } => {
                let fin = inputs[0].numel() as u64;
                let w = fin * *out_features as u64;
                (w + if *bias { *out_features as u64 } else { 0 }, w)
            }
            Op::BatchNorm | Op::GroupNorm { .. } | Op::LayerNorm => {
                (2 * inputs[0].channels() as u64, 0)
            }
            Op::NormAct(g) => (
                g.params_per_channel() as u64 * inputs[0].channels() as u64,
                0,
            ),
            _ => (0, 0),
        };
        NodeCost {
            params,
            macs,
            activations,
        }
    }

    /// Whether the operator is a weighted layer (counts towards a network's depth).
    pub fn is_weighted_layer(&self) -> bool {
        matches!(self, Op::Conv2d { .. } | Op::Linear { .. })
    }
}

/// Checks that a constant of shape `small` broadcasts to `full` (numpy rules, right-aligned:
/// each of its dimensions is 1 or equal to the one it meets) without growing it.
pub fn broadcasts(small: &[usize], full: &[usize]) -> Result<(), ShapeError> {
    let fits = small.len() <= full.len()
        && small
            .iter()
            .rev()
            .zip(full.iter().rev())
            .all(|(&a, &b)| a == 1 || a == b);
    if small.is_empty() || small.contains(&0) || !fits {
        return Err(ShapeError(format!(
            "a constant of shape {small:?} does not broadcast to {full:?}"
        )));
    }
    Ok(())
}

/// The index into a broadcast constant of shape `small` of each element of a tensor of shape
/// `full`, row-major (`small` must broadcast to `full`).
pub fn broadcast_index(small: &[usize], full: &[usize]) -> Vec<usize> {
    let n: usize = full.iter().product();
    let lead = full.len() - small.len();
    let mut idx = vec![0usize; full.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut off = 0;
        for (k, &d) in small.iter().enumerate() {
            off = off * d + if d == 1 { 0 } else { idx[lead + k] };
        }
        out.push(off);
        for k in (0..full.len()).rev() {
            idx[k] += 1;
            if idx[k] < full[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// Output length of a sliding window, or a message when the window does not fit.
fn window_out(
    len: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Result<usize, ShapeError> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(ShapeError(
            "kernel, stride and dilation must be at least 1".into(),
        ));
    }
    let span = dilation * (kernel - 1) + 1;
    let padded = len + 2 * pad;
    if padded < span {
        return Err(ShapeError(format!(
            "window of {span} does not fit an input of {len} with padding {pad}"
        )));
    }
    Ok((padded - span) / stride + 1)
}
