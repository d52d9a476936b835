//! archproof IR JSON with weights as a verifier input: a chain of convolutions, linear layers,
//! batch normalizations (as per-channel affine maps), ReLUs, flattens and identities.

use crate::ir::{Activation, Graph, Op};

use super::network::{Affine, Layer, Linear, Network};

/// Builds the verifier's network from an IR graph whose parametric nodes all carry weights.
/// Errors name the node and the problem (a branch, an operator without a ReLU-network
/// encoding, missing weights).
pub fn from_graph(graph: &Graph) -> Result<Network, String> {
    let analysis = graph.analyze().map_err(|e| e.to_string())?;
    if graph.outputs().len() != 1 {
        return Err("the graph must have exactly one output".into());
    }
    let mut input_shape: Option<Vec<usize>> = None;
    let mut layers: Vec<Layer> = Vec::new();
    let mut prev: Option<crate::ir::NodeId> = None;
    for &id in &analysis.order {
        let node = graph.node(id);
        let at = |msg: String| format!("node '{}': {msg}", node.name);
        let args = graph.inputs_of(id);
        match (prev, args.as_slice()) {
            (None, []) => {}
            (Some(p), [a]) if *a == p => {}
            _ => {
                return Err(at(
                    "the verifier reads a chain of layers; this node branches or joins".into(),
                ))
            }
        }
        let out_shape = analysis.shapes[id.index()].dims().to_vec();
        let in_shape: Vec<usize> = args
            .first()
            .map(|a| analysis.shapes[a.index()].dims().to_vec())
            .unwrap_or_default();
        let tensor = |name: &str| -> Result<Vec<f64>, String> {
            node.weights
                .get(name)
                .map(|t| t.data.iter().map(|&v| v as f64).collect())
                .ok_or_else(|| at(format!("has no weights ('{name}' is missing)")))
        };
        match &node.op {
            Op::Input { shape } => input_shape = Some(shape.dims().to_vec()),
            Op::Conv2d {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                if *groups != 1 || *dilation != [1, 1] {
                    return Err(at(
                        "grouped or dilated convolutions are not supported by the verifier".into(),
                    ));
                }
                let (ic, ih, iw) = (in_shape[0], in_shape[1], in_shape[2]);
                let (oc, oh, ow) = (out_shape[0], out_shape[1], out_shape[2]);
                let b = if *bias {
                    tensor("bias")?
                } else {
                    vec![0.0; oc]
                };
                let per = oh * ow;
                layers.push(Layer::Affine(Affine {
                    linear: Linear::Conv {
                        input: [ic, ih, iw],
                        output: [oc, oh, ow],
                        kernel: *kernel,
                        stride: *stride,
                        padding: *padding,
                        w: tensor("weight")?,
                    },
                    bias: (0..oc * per).map(|i| b[i / per]).collect(),
                }));
            }
            Op::Linear { out_features, bias } => {
                let cols: usize = in_shape.iter().product();
                layers.push(Layer::Affine(Affine {
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
                }));
            }
            Op::BatchNorm => {
                let eps = crate::ir::weights::BATCH_NORM_EPS;
                let (g, b, m, v) = (
                    tensor("weight")?,
                    tensor("bias")?,
                    tensor("running_mean")?,
                    tensor("running_var")?,
                );
                let ch = in_shape[0];
                let numel: usize = in_shape.iter().product();
                let per = numel / ch.max(1);
                let a: Vec<f64> = (0..ch).map(|i| g[i] / (v[i] + eps).sqrt()).collect();
                layers.push(Layer::Affine(Affine {
                    linear: Linear::Diag((0..numel).map(|i| a[i / per]).collect()),
                    bias: (0..numel)
                        .map(|i| b[i / per] - a[i / per] * m[i / per])
                        .collect(),
                }));
            }
            Op::Act {
                function: Activation::Relu,
            } => layers.push(Layer::Relu),
            Op::Flatten | Op::Identity => {}
            other => {
                return Err(at(format!(
                    "operator '{}' has no encoding in the verifier (it handles conv2d, linear, \
                     batchnorm, relu, flatten and identity)",
                    other.kind()
                )))
            }
        }
        prev = Some(id);
    }
    if prev != Some(graph.outputs()[0]) {
        return Err("the graph's output is not the end of its chain".into());
    }
    let input_shape = input_shape.ok_or("the graph has no input")?;
    Network::new(input_shape, layers).map_err(|e| e.to_string())
}
