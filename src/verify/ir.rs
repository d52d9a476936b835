//! archproof IR graphs with weights as verifier networks: every operator the zoo, the cell
//! spaces and DeepMAD designs use (convolutions with groups and dilation, linear layers,
//! batch norm folded to a per-channel affine map, ReLU, ReLU6, clip, LeakyReLU, SiLU, sigmoid, tanh, hard-swish,
//! constant scale-shift, padding, reshape,
//! residual adds, squeeze-excitation products, channel concatenation, max, average and global
//! average pooling, flatten, identity, and the `zero` edge), lowered through
//! [`Builder`](super::graph::Builder)'s layer methods.

use crate::ir::{Activation, Graph, Op};

use super::graph::lower::Window;
use super::graph::{Builder, Linear, Network, NodeId, Smooth};
use super::VerifyError;

/// Builds the verifier's network from an IR graph whose parametric nodes all carry weights.
/// Errors name the node and the problem (an operator without an encoding, such as a
/// data-dependent normalization; missing weights).
pub fn from_graph(graph: &Graph) -> Result<Network, VerifyError> {
    let analysis = graph
        .analyze()
        .map_err(|e| VerifyError::Model(e.to_string()))?;
    let [output] = graph.outputs() else {
        return Err(VerifyError::Model(
            "the graph must have exactly one output".into(),
        ));
    };
    let inputs: Vec<_> = analysis
        .order
        .iter()
        .filter(|&&id| matches!(graph.node(id).op, Op::Input { .. }))
        .collect();
    let [&input] = inputs.as_slice() else {
        return Err(VerifyError::Model(format!(
            "the graph has {} inputs; the verifier reads networks with exactly one",
            inputs.len()
        )));
    };
    let mut b = Builder::new(analysis.shapes[input.index()].dims().to_vec());
    let mut at: Vec<Option<NodeId>> = vec![None; graph.len()];
    at[input.index()] = Some(b.input());
    for &id in &analysis.order {
        let node = graph.node(id);
        let name = node.name.as_str();
        let err = |msg: String| VerifyError::Model(format!("node '{name}': {msg}"));
        let args: Vec<NodeId> = graph
            .inputs_of(id)
            .iter()
            .map(|a| at[a.index()].expect("inputs come first in topological order"))
            .collect();
        let tensor = |w: &str| -> Result<Vec<f64>, VerifyError> {
            node.weights
                .get(w)
                .map(|t| t.data.iter().map(|&v| v as f64).collect())
                .ok_or_else(|| err(format!("has no weights ('{w}' is missing)")))
        };
        let ge = |e: super::graph::GraphError| VerifyError::Model(e.to_string());
        let x = args.first().copied();
        let out = match &node.op {
            Op::Input { .. } => continue,
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                let bias = if *bias {
                    tensor("bias")?
                } else {
                    vec![0.0; *out_channels]
                };
                let window = symmetric(*kernel, *stride, *padding, *dilation);
                b.conv(
                    name,
                    x.expect("arity checked"),
                    *out_channels,
                    window,
                    *groups,
                    tensor("weight")?,
                    &bias,
                )
                .map_err(ge)?
            }
            Op::Linear { out_features, bias } => {
                let x = x.expect("arity checked");
                let cols = b.dim(x);
                let a = super::graph::Affine {
                    linear: Linear::Dense {
                        rows: *out_features,
                        cols,
                        w: tensor("weight")?,
                    },
                    bias: if *bias {
                        tensor("bias")?
                    } else {
                        vec![0.0; *out_features]
                    },
                };
                b.add(name, super::graph::Op::Affine(a), &[x], vec![*out_features])
                    .map_err(ge)?
            }
            Op::BatchNorm => {
                let eps = crate::ir::weights::BATCH_NORM_EPS;
                let (g, beta, m, v) = (
                    tensor("weight")?,
                    tensor("bias")?,
                    tensor("running_mean")?,
                    tensor("running_var")?,
                );
                let scale: Vec<f64> = g
                    .iter()
                    .zip(&v)
                    .map(|(g, v)| g / (v + eps).sqrt())
                    .collect();
                let shift: Vec<f64> = (0..scale.len())
                    .map(|i| beta[i] - scale[i] * m[i])
                    .collect();
                b.channel_affine(name, x.expect("arity checked"), &scale, &shift)
                    .map_err(ge)?
            }
            Op::Act { function } => {
                let x = x.expect("arity checked");
                match function {
                    Activation::Relu => b.relu(name, x),
                    Activation::Relu6 => b.relu6(name, x),
                    Activation::Silu => b.silu(name, x),
                    Activation::Sigmoid => b.smooth(name, x, Smooth::Sigmoid),
                    Activation::Hardswish => b.hardswish(name, x),
                    Activation::Tanh => b.smooth(name, x, Smooth::Tanh),
                    Activation::Gelu => {
                        return Err(err(
                            "GELU has no relaxation in the verifier (it handles ReLU, ReLU6, \
                             LeakyReLU, sigmoid, tanh, SiLU and hard-swish)"
                                .into(),
                        ))
                    }
                }
                .map_err(ge)?
            }
            Op::Clip { min, max } => b
                .clip(name, x.expect("arity checked"), *min, *max)
                .map_err(ge)?,
            Op::LeakyRelu { slope } => b
                .leaky_relu(name, x.expect("arity checked"), *slope)
                .map_err(ge)?,
            Op::ScaleShift { shape } => {
                let x = x.expect("arity checked");
                let full = b.shape(x).to_vec();
                let index = crate::ir::broadcast_index(shape, &full);
                let (scale, shift) = (tensor("scale")?, tensor("shift")?);
                b.scale_shift(
                    name,
                    x,
                    index.iter().map(|&i| scale[i]).collect(),
                    index.iter().map(|&i| shift[i]).collect(),
                )
                .map_err(ge)?
            }
            Op::Pad { pads, value } => b
                .pad(name, x.expect("arity checked"), *pads, *value)
                .map_err(ge)?,
            // A view: the same flat data under the new shape (folded away by `finish`).
            Op::Reshape { shape } => {
                let n = shape.numel();
                let view = super::graph::Affine {
                    linear: Linear::Diag(vec![1.0; n]),
                    bias: vec![0.0; n],
                };
                let x = x.expect("arity checked");
                b.add(
                    name,
                    super::graph::Op::Affine(view),
                    &[x],
                    shape.dims().to_vec(),
                )
                .map_err(ge)?
            }
            Op::Add => b.sum(name, &args, vec![1.0; args.len()]).map_err(ge)?,
            Op::Mul => b.product(name, args[0], args[1]).map_err(ge)?,
            Op::Concat => b.concat_channels(name, &args).map_err(ge)?,
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => b
                .max_pool(
                    name,
                    x.expect("arity checked"),
                    symmetric(*kernel, *stride, *padding, [1, 1]),
                )
                .map_err(ge)?,
            Op::AvgPool {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => b
                .avg_pool(
                    name,
                    x.expect("arity checked"),
                    symmetric(*kernel, *stride, *padding, [1, 1]),
                    *count_include_pad,
                )
                .map_err(ge)?,
            Op::GlobalAvgPool => b
                .global_avg_pool(name, x.expect("arity checked"))
                .map_err(ge)?,
            // Flat row-major data: flattening changes nothing but the shape's rank.
            Op::Flatten | Op::Identity => x.expect("arity checked"),
            Op::Zero => b.zero(name, x.expect("arity checked")).map_err(ge)?,
            other @ (Op::GroupNorm { .. } | Op::LayerNorm | Op::NormAct(_)) => {
                return Err(err(format!(
                    "operator '{}' normalizes by statistics of its input, which has no \
                     relaxation in the verifier (batch norm in inference mode has)",
                    other.kind()
                )))
            }
        };
        at[id.index()] = Some(out);
    }
    let out = at[output.index()].expect("the output is in the order");
    b.finish(out).map_err(|e| VerifyError::Model(e.to_string()))
}

/// The window of the IR's convolutions and pools: the same padding on both sides.
fn symmetric(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Window {
    Window {
        kernel,
        stride,
        pads: [padding[0], padding[1], padding[0], padding[1]],
        dilation,
    }
}
