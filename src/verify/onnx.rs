//! ONNX models as verification networks.
//!
//! The graph is interpreted symbolically in its listed (topological) order: every tensor is
//! either a constant (initializers, `Constant` nodes, and what is computed from them alone,
//! including `Shape` of a tensor of known shape and the Gather/Unsqueeze/Concat/Cast chains
//! exporters build from it) or a tensor computed from the input, which becomes a node of the
//! verifier's graph. Branches and joins are followed (residual adds, concatenations, gates).
//! Operators: Gemm, MatMul by a constant, Add, Sub, Mul and Div (by constants, or of two
//! tensors; a product of two tensors is a bilinear node), Conv (groups, dilation, strides,
//! padding), BatchNormalization, Relu, LeakyRelu, Clip, HardSigmoid, Sigmoid, Tanh, MaxPool, AveragePool,
//! GlobalAveragePool, Pad (constant), Concat, Flatten, Reshape, Squeeze, Unsqueeze, Identity,
//! Dropout. Anything else is an error naming the node and the operator.

use std::collections::HashMap;

use crate::onnx::{self, attr_f, attr_i, attr_ints, broadcast, Tensor, Window2d};

use super::graph::lower::Window;
use super::graph::{Affine, Builder, GraphError, Linear, Network, NodeId, Op, Smooth};

/// A tensor computed from the input: the node computing it and its shape (which a reshape
/// may change without a node: data stays flat and row-major).
#[derive(Debug, Clone)]
struct Var {
    id: NodeId,
    shape: Vec<usize>,
}

/// Loads an ONNX model from its bytes. Errors say what is wrong (the caller adds the file).
pub fn load(bytes: &[u8]) -> Result<Network, String> {
    let opened = onnx::open(bytes)?;
    let (batched, in_shape) = (opened.batched, opened.shape.clone());
    let mut consts = opened.consts.clone();
    let graph = opened.graph();
    let mut b = Builder::new(in_shape.clone());
    let mut vars: HashMap<String, Var> = HashMap::new();
    vars.insert(
        opened.input.clone(),
        Var {
            id: b.input(),
            shape: in_shape,
        },
    );
    for (k, node) in graph.node.iter().enumerate() {
        let (label, name) = onnx::node_names(node, k);
        let at = |msg: String| format!("{label}: {msg}");
        let ge = |e: GraphError| at(e.to_string());
        let out_name = node
            .output
            .first()
            .cloned()
            .ok_or_else(|| at("has no output".into()))?;
        let shape_of = |n: &str| vars.get(n).map(|v: &Var| v.shape.clone());
        if onnx::constant_node(node, &mut consts, &shape_of, batched).map_err(at)? {
            continue;
        }
        let var_inputs: Vec<usize> = node
            .input
            .iter()
            .enumerate()
            .filter(|(_, n)| vars.contains_key(*n))
            .map(|(i, _)| i)
            .collect();
        let var = |i: usize| -> Result<Var, String> {
            node.input
                .get(i)
                .and_then(|n| vars.get(n))
                .cloned()
                .ok_or_else(|| {
                    at(format!(
                        "input {i} must be computed from the network's input"
                    ))
                })
        };
        let c = |i: usize| -> Result<&Tensor, String> {
            node.input
                .get(i)
                .and_then(|n| consts.get(n))
                .ok_or_else(|| at(format!("input {i} must be a constant")))
        };
        let axis_of = |a: i64, rank: usize| -> Result<usize, String> {
            let full = rank + batched as usize;
            let a = if a < 0 { a + full as i64 } else { a };
            let a = a - batched as i64;
            if a < 0 || a as usize >= rank.max(1) {
                return Err(at(format!("axis {a} is the batch or out of range")));
            }
            Ok(a as usize)
        };
        let vpos = var_inputs[0];
        let x = var(vpos)?;
        let numel: usize = x.shape.iter().product();
        // A node reading the variable with a shape its node was not built with gets a view.
        let view = |b: &mut Builder, v: &Var| -> Result<NodeId, String> {
            if b.shape(v.id) == v.shape.as_slice() {
                Ok(v.id)
            } else {
                let n: usize = v.shape.iter().product();
                b.add(
                    format!("{name}.view"),
                    Op::Affine(Affine {
                        linear: Linear::Diag(vec![1.0; n]),
                        bias: vec![0.0; n],
                    }),
                    &[v.id],
                    v.shape.clone(),
                )
                .map_err(ge)
            }
        };
        let same = |id: NodeId, shape: Vec<usize>| Var { id, shape };
        let out: Var = match node.op_type.as_str() {
            "Relu" => same(b.relu(&name, x.id).map_err(ge)?, x.shape),
            "LeakyRelu" => {
                let alpha = attr_f(node, "alpha").unwrap_or(0.01) as f64;
                same(b.leaky_relu(&name, x.id, alpha).map_err(ge)?, x.shape)
            }
            "Sigmoid" => same(b.smooth(&name, x.id, Smooth::Sigmoid).map_err(ge)?, x.shape),
            "Tanh" => same(b.smooth(&name, x.id, Smooth::Tanh).map_err(ge)?, x.shape),
            "Identity" | "Dropout" => x,
            "Clip" => {
                let bound = |i: usize, attr: &str, default: f64| -> Result<f64, String> {
                    match node.input.get(i).filter(|n| !n.is_empty()) {
                        Some(_) => Ok(c(i)?.data.first().copied().unwrap_or(default)),
                        None => Ok(attr_f(node, attr).map_or(default, |v| v as f64)),
                    }
                };
                let (lo, hi) = (bound(1, "min", f64::NEG_INFINITY)?, bound(2, "max", f64::INFINITY)?);
                if !lo.is_finite() || !hi.is_finite() {
                    return Err(at("Clip needs both a minimum and a maximum".into()));
                }
                same(b.clip(&name, x.id, lo, hi).map_err(ge)?, x.shape)
            }
            "HardSigmoid" => {
                let alpha = attr_f(node, "alpha").unwrap_or(0.2) as f64;
                let beta = attr_f(node, "beta").unwrap_or(0.5) as f64;
                let lin = b.scale_shift(&format!("{name}.linear"), x.id, vec![alpha; numel], vec![beta; numel]).map_err(ge)?;
                same(b.clip(&name, lin, 0.0, 1.0).map_err(ge)?, x.shape)
            }
            "Sum" => {
                let parts: Vec<Var> = (0..node.input.len()).map(var).collect::<Result<_, _>>()?;
                if parts.iter().any(|p| p.shape.iter().product::<usize>() != numel) {
                    return Err(at("sums tensors of different sizes (or a constant)".into()));
                }
                let ids: Vec<NodeId> = parts.iter().map(|p| view(&mut b, p)).collect::<Result<_, _>>()?;
                same(b.sum(&name, &ids, vec![1.0; ids.len()]).map_err(ge)?, x.shape)
            }
            "Flatten" => {
                let axis = attr_i(node, "axis").unwrap_or(1);
                if axis != 1 && batched || (!batched && axis != 0 && axis != 1) {
                    return Err(at(format!("Flatten at axis {axis}: only the batch axis stays apart")));
                }
                Var {
                    id: x.id,
                    shape: vec![numel],
                }
            }
            "Reshape" => {
                let dims: Vec<i64> = c(1)?.data.iter().map(|v| *v as i64).collect();
                let shape = onnx::reshaped(&dims, &x.shape, batched).map_err(at)?;
                Var { id: x.id, shape }
            }
            "Squeeze" | "Unsqueeze" => {
                let axes: Option<Vec<i64>> = match node.input.get(1).filter(|n| !n.is_empty()) {
                    Some(_) => Some(c(1)?.data.iter().map(|v| *v as i64).collect()),
                    None => attr_ints(node, "axes"),
                };
                let unsqueeze = node.op_type == "Unsqueeze";
                let shape = onnx::squeezed(unsqueeze, axes, &x.shape, batched).map_err(at)?;
                Var { id: x.id, shape }
            }
            "Gemm" => {
                if vpos != 0 {
                    return Err(at("only Gemm(x, W, b) with x computed is supported".into()));
                }
                let (m, rows, cols, beta) = onnx::gemm_weight(node, c(1)?).map_err(at)?;
                if cols != numel {
                    return Err(at(format!("Gemm weight takes {cols} inputs, the layer gives {numel}")));
                }
                let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
                    Some(_) => broadcast(c(2)?, &[rows]).map_err(at)?.iter().map(|v| beta * v).collect(),
                    None => vec![0.0; rows],
                };
                let a = Affine { linear: Linear::Dense { rows, cols, w: m }, bias };
                same(b.add(&name, Op::Affine(a), &[x.id], vec![rows]).map_err(ge)?, vec![rows])
            }
            "MatMul" => {
                if var_inputs.len() > 1 {
                    return Err(at("a product of two computed matrices is not supported".into()));
                }
                let (w, rows, cols, shape) = if vpos == 0 {
                    // x [.., n] @ W [n, m]
                    let wt = c(1)?;
                    if wt.dims.len() != 2 || x.shape.last() != Some(&wt.dims[0]) || numel != wt.dims[0] {
                        return Err(at(format!(
                            "MatMul of {:?} by {:?}: only a single row times a matrix is supported",
                            x.shape, wt.dims
                        )));
                    }
                    let (n, m) = (wt.dims[0], wt.dims[1]);
                    let mut w = vec![0.0; m * n];
                    for r in 0..m {
                        for q in 0..n {
                            w[r * n + q] = wt.data[q * m + r];
                        }
                    }
                    let mut s = x.shape.clone();
                    *s.last_mut().expect("checked") = m;
                    (w, m, n, s)
                } else {
                    // W [m, n] @ x [n] or [n, 1]
                    let wt = c(0)?;
                    if wt.dims.len() != 2 || wt.dims[1] != numel {
                        return Err(at(format!("MatMul of {:?} by {:?} is not supported", wt.dims, x.shape)));
                    }
                    (wt.data.clone(), wt.dims[0], wt.dims[1], vec![wt.dims[0]])
                };
                let a = Affine { linear: Linear::Dense { rows, cols, w }, bias: vec![0.0; rows] };
                let id = b.add(&name, Op::Affine(a), &[x.id], vec![rows]).map_err(ge)?;
                Var { id, shape }
            }
            "Add" | "Sub" if var_inputs.len() == 2 => {
                let (p, q) = (var(0)?, var(1)?);
                if p.shape.iter().product::<usize>() != q.shape.iter().product::<usize>() {
                    return Err(at(format!("adds tensors of shapes {:?} and {:?} (broadcasting two computed tensors is not supported)", p.shape, q.shape)));
                }
                let sign = if node.op_type == "Sub" { -1.0 } else { 1.0 };
                let (pi, qi) = (view(&mut b, &p)?, view(&mut b, &q)?);
                same(b.sum(&name, &[pi, qi], vec![1.0, sign]).map_err(ge)?, p.shape)
            }
            "Add" | "Sub" => {
                let k = c(1 - vpos)?;
                let v = broadcast(k, &x.shape).map_err(at)?;
                let (scale, shift): (f64, Vec<f64>) = match (node.op_type.as_str(), vpos) {
                    ("Add", _) => (1.0, v),
                    ("Sub", 0) => (1.0, v.iter().map(|x| -x).collect()),
                    _ => (-1.0, v), // const - x
                };
                let id = view(&mut b, &x)?;
                same(b.scale_shift(&name, id, vec![scale; numel], shift).map_err(ge)?, x.shape)
            }
            "Mul" if var_inputs.len() == 2 => {
                let (p, q) = (var(0)?, var(1)?);
                // The larger factor first: a [C, 1, 1] gate is broadcast over the map.
                let (p, q) = if q.shape.iter().product::<usize>() > p.shape.iter().product::<usize>() { (q, p) } else { (p, q) };
                let (pi, qi) = (view(&mut b, &p)?, view(&mut b, &q)?);
                same(b.product(&name, pi, qi).map_err(ge)?, p.shape)
            }
            "Mul" | "Div" => {
                if node.op_type == "Div" && vpos != 0 {
                    return Err(at("division by the network's value is not linear".into()));
                }
                let k = broadcast(c(1 - vpos)?, &x.shape).map_err(at)?;
                let d: Vec<f64> = if node.op_type == "Div" {
                    if k.contains(&0.0) {
                        return Err(at("division by zero".into()));
                    }
                    k.iter().map(|v| 1.0 / v).collect()
                } else {
                    k
                };
                let id = view(&mut b, &x)?;
                same(b.scale_shift(&name, id, d, Vec::new()).map_err(ge)?, x.shape)
            }
            "Conv" => {
                let w = c(1)?;
                if x.shape.len() != 3 || w.dims.len() != 4 {
                    return Err(at(format!(
                        "Conv needs a [C, H, W] input and a 4-D weight, got {:?} and {:?}",
                        x.shape, w.dims
                    )));
                }
                let groups = attr_i(node, "group").unwrap_or(1).max(1) as usize;
                let window = lowered(onnx::window_of(node, [w.dims[2], w.dims[3]], &x.shape).map_err(at)?);
                let oc = w.dims[0];
                let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
                    Some(_) => c(2)?.data.clone(),
                    None => vec![0.0; oc],
                };
                let id = view(&mut b, &x)?;
                let id = b.conv(&name, id, oc, window, groups, w.data.clone(), &bias).map_err(ge)?;
                same(id, b.shape(id).to_vec())
            }
            "BatchNormalization" => {
                let eps = attr_f(node, "epsilon").unwrap_or(1e-5) as f64;
                let (scale, shift, mean, variance) = (c(1)?, c(2)?, c(3)?, c(4)?);
                let a: Vec<f64> = (0..scale.numel()).map(|i| scale.data[i] / (variance.data.get(i).copied().unwrap_or(1.0) + eps).sqrt()).collect();
                if [shift, mean, variance].iter().any(|t| t.numel() != a.len()) {
                    return Err(at("its parameters differ in length".into()));
                }
                let s: Vec<f64> = (0..a.len()).map(|i| shift.data[i] - a[i] * mean.data[i]).collect();
                let id = view(&mut b, &x)?;
                same(b.channel_affine(&name, id, &a, &s).map_err(ge)?, x.shape)
            }
            "MaxPool" | "AveragePool" => {
                if node.output.len() > 1 && !node.output[1].is_empty() {
                    return Err(at("MaxPool indices are not supported".into()));
                }
                if attr_i(node, "ceil_mode").unwrap_or(0) != 0 {
                    return Err(at("ceil_mode is not supported".into()));
                }
                let kernel = attr_ints(node, "kernel_shape").ok_or_else(|| at("has no kernel_shape".into()))?;
                if kernel.len() != 2 || x.shape.len() != 3 {
                    return Err(at(format!("only 2-D pooling of [C, H, W] maps is supported (input {:?})", x.shape)));
                }
                let window = lowered(onnx::window_of(node, [kernel[0] as usize, kernel[1] as usize], &x.shape).map_err(at)?);
                let id = view(&mut b, &x)?;
                let id = if node.op_type == "MaxPool" {
                    b.max_pool(&name, id, window)
                } else {
                    let include = attr_i(node, "count_include_pad").unwrap_or(0) != 0;
                    b.avg_pool(&name, id, window, include)
                }
                .map_err(ge)?;
                same(id, b.shape(id).to_vec())
            }
            "GlobalAveragePool" => {
                let id = view(&mut b, &x)?;
                let id = b.global_avg_pool(&name, id).map_err(ge)?;
                same(id, b.shape(id).to_vec())
            }
            "Pad" => {
                let input = |i: usize| node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| consts.get(n));
                let (p, value) = onnx::pad_of(node, input(1), input(2), &x.shape, batched).map_err(at)?;
                let id = view(&mut b, &x)?;
                let id = b.pad(&name, id, p, value).map_err(ge)?;
                same(id, b.shape(id).to_vec())
            }
            "Concat" => {
                if var_inputs.len() != node.input.len() {
                    return Err(at("concatenation with a constant tensor is not supported".into()));
                }
                let parts: Vec<Var> = (0..node.input.len()).map(var).collect::<Result<_, _>>()?;
                let rank = parts[0].shape.len();
                let axis = axis_of(attr_i(node, "axis").unwrap_or(0), rank)?;
                let mut shape = parts[0].shape.clone();
                shape[axis] = 0;
                for p in &parts {
                    if p.shape.len() != rank || (0..rank).any(|d| d != axis && p.shape[d] != parts[0].shape[d]) {
                        return Err(at(format!("concatenates shapes {:?} and {:?} along axis {axis}", parts[0].shape, p.shape)));
                    }
                    shape[axis] += p.shape[axis];
                }
                let outer: usize = shape[..axis].iter().product();
                let inner: Vec<usize> = parts.iter().map(|p| p.shape[axis..].iter().product()).collect();
                let ids: Vec<NodeId> = parts.iter().map(|p| view(&mut b, p)).collect::<Result<_, _>>()?;
                let id = b
                    .add(&name, Op::Concat(super::graph::Concat { outer, inner }), &ids, shape.clone())
                    .map_err(ge)?;
                Var { id, shape }
            }
            other => {
                return Err(at(format!(
                    "unsupported operator {other} (supported: Gemm, MatMul, Add, Sub, Sum, Mul, Div, Conv, BatchNormalization, Relu, LeakyRelu, Sigmoid, Tanh, MaxPool, AveragePool, GlobalAveragePool, Pad, Concat, Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout, Constant, Shape)"
                )))
            }
        };
        vars.insert(out_name, out);
    }
    let out = graph.output.first().ok_or("the graph has no output")?;
    let v = vars.get(&out.name).ok_or_else(|| {
        format!(
            "the graph's output '{}' is not computed from its input",
            out.name
        )
    })?;
    b.finish(v.id).map_err(|e| e.to_string())
}

fn lowered(w: Window2d) -> Window {
    Window {
        kernel: w.kernel,
        stride: w.stride,
        pads: w.pads,
        dilation: w.dilation,
    }
}
