//! ONNX models as verification networks.
//!
//! The graph is interpreted symbolically in its listed (topological) order: every tensor is
//! either a constant (initializers, `Constant` nodes, and what is computed from them alone) or
//! the one variable tensor that flows from the input. Operators on the variable become layers
//! of a [`Network`]: Gemm, MatMul, Add, Sub, Mul and Div by constants, Conv (with stride and
//! padding), BatchNormalization (folded into the preceding convolution when there is one),
//! Relu, and the shape-only Flatten, Reshape, Squeeze, Unsqueeze, Identity and Dropout.
//! Anything else is an error naming the node and the operator.

use std::collections::HashMap;

use onnx_protobuf::{Message, ModelProto, NodeProto, TensorProto};

use super::network::{Affine, Layer, Linear, Network};

/// A constant tensor.
#[derive(Debug, Clone)]
struct Tensor {
    dims: Vec<usize>,
    data: Vec<f64>,
}

impl Tensor {
    fn numel(&self) -> usize {
        self.data.len()
    }
}

/// The variable tensor: the network so far and its current shape.
struct Var {
    name: String,
    shape: Vec<usize>,
}

fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("tensor '{}' has a negative dimension", t.name))
        })
        .collect::<Result<_, _>>()?;
    let n: usize = dims.iter().product();
    let raw = &t.raw_data;
    // Data types of TensorProto: 1 float, 6 int32, 7 int64, 11 double.
    let data: Vec<f64> = match t.data_type {
        1 if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        1 => t.float_data.iter().map(|&v| v as f64).collect(),
        11 if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        11 => t.double_data.clone(),
        7 if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)
            .collect(),
        7 => t.int64_data.iter().map(|&v| v as f64).collect(),
        6 if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        6 => t.int32_data.iter().map(|&v| v as f64).collect(),
        other => {
            return Err(format!(
                "tensor '{}' has data type {other}; float, double, int32 and int64 are supported",
                t.name
            ))
        }
    };
    if data.len() != n {
        return Err(format!(
            "tensor '{}' holds {} values for shape {:?} (truncated?)",
            t.name,
            data.len(),
            dims
        ));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "tensor '{}' holds a value that is not finite",
            t.name
        ));
    }
    Ok(Tensor { dims, data })
}

fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

/// Broadcasts a constant to `shape` (numpy rules, right-aligned) and flattens it.
fn broadcast(t: &Tensor, shape: &[usize]) -> Result<Vec<f64>, String> {
    let n: usize = shape.iter().product();
    if t.numel() == n {
        return Ok(t.data.clone());
    }
    if t.numel() == 1 {
        return Ok(vec![t.data[0]; n]);
    }
    let rank = shape.len().max(t.dims.len());
    let pad = |d: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (s, c) = (pad(shape), pad(&t.dims));
    for (a, b) in s.iter().zip(&c) {
        if *b != 1 && a != b {
            return Err(format!(
                "a constant of shape {:?} does not broadcast to {:?}",
                t.dims, shape
            ));
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        let mut off = 0;
        for k in 0..rank {
            off = off * c[k] + if c[k] == 1 { 0 } else { idx[k] };
        }
        out.push(t.data[off]);
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < s[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(out)
}

/// Loads an ONNX model from its bytes. Errors say what is wrong (the caller adds the file).
pub fn load(bytes: &[u8]) -> Result<Network, String> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| {
        format!("not a valid ONNX model ({e}); the file may be truncated or of another format")
    })?;
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let mut consts: HashMap<String, Tensor> = HashMap::new();
    for t in &graph.initializer {
        consts.insert(t.name.clone(), tensor_from_proto(t)?);
    }
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !consts.contains_key(&i.name))
        .collect();
    if inputs.len() != 1 {
        return Err(format!(
            "the graph has {} non-constant inputs; exactly one is supported",
            inputs.len()
        ));
    }
    let input = inputs[0];
    let mut in_shape: Vec<usize> = input
        .type_
        .tensor_type()
        .shape
        .dim
        .iter()
        .map(|d| {
            if d.has_dim_value() && d.dim_value() > 0 {
                d.dim_value() as usize
            } else {
                1
            }
        })
        .collect();
    if in_shape.is_empty() {
        return Err(format!("input '{}' has no shape", input.name));
    }
    if in_shape.len() > 1 && in_shape[0] == 1 {
        in_shape.remove(0); // the batch dimension
    }
    let mut var = Var {
        name: input.name.clone(),
        shape: in_shape.clone(),
    };
    let mut layers: Vec<Layer> = Vec::new();
    for (k, node) in graph.node.iter().enumerate() {
        let label = if node.name.is_empty() {
            format!("node {k} ({})", node.op_type)
        } else {
            format!("node '{}' ({})", node.name, node.op_type)
        };
        let at = |msg: String| format!("{label}: {msg}");
        let out_name = node
            .output
            .first()
            .cloned()
            .ok_or_else(|| at("has no output".into()))?;
        // Constant folding: a node whose inputs are all constants.
        let var_inputs: Vec<usize> = node
            .input
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty() && !consts.contains_key(*n))
            .map(|(i, _)| i)
            .collect();
        if node.op_type == "Constant" {
            let t = node
                .attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref())
                .ok_or_else(|| at("Constant without a tensor value".into()))?;
            consts.insert(out_name, tensor_from_proto(t).map_err(at)?);
            continue;
        }
        if var_inputs.is_empty() {
            let value = fold_constant(node, &consts).map_err(at)?;
            consts.insert(out_name, value);
            continue;
        }
        if var_inputs.len() > 1 || node.input[var_inputs[0]] != var.name {
            return Err(at(format!(
                "reads '{}', which is not the output of the previous layer: only sequential networks are supported",
                node.input[var_inputs[0]]
            )));
        }
        let vpos = var_inputs[0];
        let c = |i: usize| -> Result<&Tensor, String> {
            node.input
                .get(i)
                .and_then(|n| consts.get(n))
                .ok_or_else(|| at(format!("input {i} must be a constant")))
        };
        let numel: usize = var.shape.iter().product();
        match node.op_type.as_str() {
            "Relu" => layers.push(Layer::Relu),
            "Identity" | "Dropout" => {}
            "Flatten" => {
                var.shape = vec![numel];
            }
            "Reshape" => {
                let target = c(1)?;
                let mut dims: Vec<i64> = target.data.iter().map(|v| *v as i64).collect();
                // Drop a leading batch of 1 (or -1 standing for it) when the rest fits.
                if dims.len() > 1 && (dims[0] == 1 || dims[0] == -1) {
                    let rest: i64 = dims[1..].iter().product();
                    if rest.unsigned_abs() as usize == numel || dims[1..].contains(&-1) {
                        dims.remove(0);
                    }
                }
                let known: i64 = dims.iter().filter(|d| **d > 0).product();
                let shape: Vec<usize> = dims
                    .iter()
                    .map(|d| if *d == -1 { numel / known.max(1) as usize } else { *d as usize })
                    .collect();
                if shape.iter().product::<usize>() != numel {
                    return Err(at(format!("cannot reshape {numel} values to {dims:?}")));
                }
                var.shape = shape;
            }
            "Squeeze" | "Unsqueeze" => {
                // Only the element count matters for a flat chain; keep a shape without 1s.
                let s: Vec<usize> = var.shape.iter().copied().filter(|d| *d != 1).collect();
                var.shape = if s.is_empty() { vec![1] } else { s };
            }
            "Gemm" => {
                if vpos != 0 || attr_i(node, "transA").unwrap_or(0) != 0 {
                    return Err(at("only Gemm(x, W, b) without transA is supported".into()));
                }
                let b = c(1)?;
                if b.dims.len() != 2 {
                    return Err(at("Gemm needs a 2-D weight".into()));
                }
                let alpha = attr_f(node, "alpha").unwrap_or(1.0) as f64;
                let beta = attr_f(node, "beta").unwrap_or(1.0) as f64;
                let trans_b = attr_i(node, "transB").unwrap_or(0) != 0;
                let (rows, cols) = if trans_b { (b.dims[0], b.dims[1]) } else { (b.dims[1], b.dims[0]) };
                if cols != numel {
                    return Err(at(format!("Gemm weight takes {cols} inputs, the layer gives {numel}")));
                }
                let mut w = vec![0.0; rows * cols];
                for r in 0..rows {
                    for q in 0..cols {
                        let v = if trans_b { b.data[r * cols + q] } else { b.data[q * rows + r] };
                        w[r * cols + q] = alpha * v;
                    }
                }
                let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
                    Some(_) => broadcast(c(2)?, &[rows]).map_err(at)?.iter().map(|v| beta * v).collect(),
                    None => vec![0.0; rows],
                };
                layers.push(Layer::Affine(Affine {
                    linear: Linear::Dense { rows, cols, w },
                    bias,
                }));
                var.shape = vec![rows];
            }
            "MatMul" => {
                let (w, rows, cols) = if vpos == 0 {
                    // x [.., n] @ W [n, m]
                    let wt = c(1)?;
                    if wt.dims.len() != 2 || var.shape.last() != Some(&wt.dims[0]) || numel != wt.dims[0] {
                        return Err(at(format!(
                            "MatMul of {:?} by {:?}: only a single row times a matrix is supported",
                            var.shape, wt.dims
                        )));
                    }
                    let (n, m) = (wt.dims[0], wt.dims[1]);
                    let mut w = vec![0.0; m * n];
                    for r in 0..m {
                        for q in 0..n {
                            w[r * n + q] = wt.data[q * m + r];
                        }
                    }
                    (w, m, n)
                } else {
                    // W [m, n] @ x [n] or [n, 1]
                    let wt = c(0)?;
                    if wt.dims.len() != 2 || wt.dims[1] != numel {
                        return Err(at(format!("MatMul of {:?} by {:?} is not supported", wt.dims, var.shape)));
                    }
                    (wt.data.clone(), wt.dims[0], wt.dims[1])
                };
                layers.push(Layer::Affine(Affine {
                    linear: Linear::Dense { rows, cols, w },
                    bias: vec![0.0; rows],
                }));
                var.shape = if vpos == 0 {
                    let mut s = var.shape.clone();
                    *s.last_mut().expect("checked") = rows;
                    s
                } else {
                    vec![rows]
                };
            }
            "Add" | "Sub" => {
                let k = c(1 - vpos)?;
                let v = broadcast(k, &var.shape).map_err(at)?;
                let (scale, bias): (f64, Vec<f64>) = match (node.op_type.as_str(), vpos) {
                    ("Add", _) => (1.0, v),
                    ("Sub", 0) => (1.0, v.iter().map(|x| -x).collect()),
                    _ => (-1.0, v), // const - x
                };
                layers.push(Layer::Affine(Affine {
                    linear: Linear::Diag(vec![scale; numel]),
                    bias,
                }));
            }
            "Mul" | "Div" => {
                if node.op_type == "Div" && vpos != 0 {
                    return Err(at("division by the network's value is not linear".into()));
                }
                let k = broadcast(c(1 - vpos)?, &var.shape).map_err(at)?;
                let d: Vec<f64> = if node.op_type == "Div" {
                    if k.contains(&0.0) {
                        return Err(at("division by zero".into()));
                    }
                    k.iter().map(|v| 1.0 / v).collect()
                } else {
                    k
                };
                layers.push(Layer::Affine(Affine {
                    linear: Linear::Diag(d),
                    bias: vec![0.0; numel],
                }));
            }
            "Conv" => {
                let w = c(1)?;
                if var.shape.len() != 3 || w.dims.len() != 4 {
                    return Err(at(format!(
                        "Conv needs a [C, H, W] input and a 4-D weight, got {:?} and {:?}",
                        var.shape, w.dims
                    )));
                }
                if attr_i(node, "group").unwrap_or(1) != 1 {
                    return Err(at("grouped convolutions are not supported".into()));
                }
                if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|v| *v != 1)) {
                    return Err(at("dilated convolutions are not supported".into()));
                }
                let [ic, ih, iw] = [var.shape[0], var.shape[1], var.shape[2]];
                let (oc, kh, kw) = (w.dims[0], w.dims[2], w.dims[3]);
                if w.dims[1] != ic {
                    return Err(at(format!("weight expects {} channels, input has {ic}", w.dims[1])));
                }
                let strides = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
                let pads = attr_ints(node, "pads").unwrap_or(vec![0, 0, 0, 0]);
                if strides.len() != 2 || pads.len() != 4 || pads[0] != pads[2] || pads[1] != pads[3] {
                    return Err(at("only 2-D convolutions with symmetric padding are supported".into()));
                }
                if let Some(a) = node.attribute.iter().find(|a| a.name == "auto_pad") {
                    let s = String::from_utf8_lossy(&a.s);
                    if s != "NOTSET" && s != "VALID" {
                        return Err(at(format!("auto_pad {s} is not supported")));
                    }
                }
                let (sh, sw, ph, pw) = (strides[0] as usize, strides[1] as usize, pads[0] as usize, pads[1] as usize);
                if sh == 0 || sw == 0 || ih + 2 * ph < kh || iw + 2 * pw < kw {
                    return Err(at("the kernel does not fit the input".into()));
                }
                let (oh, ow) = ((ih + 2 * ph - kh) / sh + 1, (iw + 2 * pw - kw) / sw + 1);
                let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
                    Some(_) => c(2)?.data.clone(),
                    None => vec![0.0; oc],
                };
                if bias.len() != oc {
                    return Err(at("bias length differs from the output channels".into()));
                }
                let per = oh * ow;
                layers.push(Layer::Affine(Affine {
                    linear: Linear::Conv {
                        input: [ic, ih, iw],
                        output: [oc, oh, ow],
                        kernel: [kh, kw],
                        stride: [sh, sw],
                        padding: [ph, pw],
                        w: w.data.clone(),
                    },
                    bias: (0..oc * per).map(|i| bias[i / per]).collect(),
                }));
                var.shape = vec![oc, oh, ow];
            }
            "BatchNormalization" => {
                let eps = attr_f(node, "epsilon").unwrap_or(1e-5) as f64;
                let (scale, shift, mean, variance) = (c(1)?, c(2)?, c(3)?, c(4)?);
                let ch = var.shape[0];
                if [scale, shift, mean, variance].iter().any(|t| t.numel() != ch) {
                    return Err(at(format!("parameters must have {ch} values, one per channel")));
                }
                let per = numel / ch;
                let a: Vec<f64> = (0..ch).map(|i| scale.data[i] / (variance.data[i] + eps).sqrt()).collect();
                let b: Vec<f64> = (0..ch).map(|i| shift.data[i] - a[i] * mean.data[i]).collect();
                // Fold into a preceding convolution: scale its output channels.
                if let Some(Layer::Affine(Affine { linear: Linear::Conv { w, output, .. }, bias })) = layers.last_mut() {
                    let per_out = w.len() / output[0];
                    for (o, chunk) in w.chunks_mut(per_out).enumerate() {
                        chunk.iter_mut().for_each(|v| *v *= a[o]);
                    }
                    for (i, v) in bias.iter_mut().enumerate() {
                        *v = a[i / per] * *v + b[i / per];
                    }
                } else {
                    layers.push(Layer::Affine(Affine {
                        linear: Linear::Diag((0..numel).map(|i| a[i / per]).collect()),
                        bias: (0..numel).map(|i| b[i / per]).collect(),
                    }));
                }
            }
            other => {
                return Err(at(format!(
                    "unsupported operator {other} (supported: Gemm, MatMul, Add, Sub, Mul, Div, Conv, BatchNormalization, Relu, Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout, Constant)"
                )))
            }
        }
        var.name = out_name;
    }
    let out = graph.output.first().ok_or("the graph has no output")?;
    if out.name != var.name {
        return Err(format!(
            "the graph's output '{}' is not the end of the layer chain ('{}')",
            out.name, var.name
        ));
    }
    Network::new(in_shape, layers)
}

/// Evaluates a node whose inputs are all constants (shape arithmetic and the like).
fn fold_constant(node: &NodeProto, consts: &HashMap<String, Tensor>) -> Result<Tensor, String> {
    let get = |i: usize| {
        node.input
            .get(i)
            .and_then(|n| consts.get(n))
            .ok_or_else(|| format!("missing constant input {i}"))
    };
    match node.op_type.as_str() {
        "Identity" => Ok(get(0)?.clone()),
        "Neg" => {
            let t = get(0)?;
            Ok(Tensor {
                dims: t.dims.clone(),
                data: t.data.iter().map(|v| -v).collect(),
            })
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (get(0)?, get(1)?);
            let (big, shape) = if a.numel() >= b.numel() {
                (a, a.dims.clone())
            } else {
                (b, b.dims.clone())
            };
            let (x, y) = (broadcast(a, &shape)?, broadcast(b, &shape)?);
            let _ = big;
            let data = x
                .iter()
                .zip(&y)
                .map(|(p, q)| match node.op_type.as_str() {
                    "Add" => p + q,
                    "Sub" => p - q,
                    "Mul" => p * q,
                    _ => p / q,
                })
                .collect();
            Ok(Tensor { dims: shape, data })
        }
        "Transpose" => {
            let t = get(0)?;
            if t.dims.len() != 2 {
                return Err("only 2-D constant transposes are supported".into());
            }
            let (r, c) = (t.dims[0], t.dims[1]);
            let mut data = vec![0.0; r * c];
            for i in 0..r {
                for j in 0..c {
                    data[j * r + i] = t.data[i * c + j];
                }
            }
            Ok(Tensor {
                dims: vec![c, r],
                data,
            })
        }
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
            let t = get(0)?;
            Ok(Tensor {
                dims: vec![t.numel()],
                data: t.data.clone(),
            })
        }
        other => Err(format!("unsupported operator {other} on constants")),
    }
}
