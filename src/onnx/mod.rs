//! Reading ONNX models: constant tensors, node attributes, numpy broadcasting, convolution and
//! pooling windows, and the constant folding of the shape arithmetic exporters emit (Shape,
//! Gather, Unsqueeze, Concat, Cast chains), used by [`import`], the one reader of ONNX into the
//! IR: `inspect`, `export`, `train` and the verifier (through the IR) all read models with it.

pub mod import;

use std::collections::HashMap;

use onnx_protobuf::{GraphProto, Message, ModelProto, NodeProto, TensorProto};

pub use import::import;

/// Errors of reading an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file is not a model this reader takes as a whole (not ONNX, no graph, several
    /// inputs, an output not computed from the input).
    #[error("{0}")]
    Model(String),
    /// A node cannot be read: the message names the node and its operator.
    #[error("{node}: {msg}")]
    Node {
        /// The node and its operator, e.g. `node 'conv1' (Conv)`.
        node: String,
        /// What is wrong.
        msg: String,
    },
    /// The imported graph is not a valid IR graph.
    #[error(transparent)]
    Ir(#[from] crate::ir::IrError),
}

/// What is wrong with a node or a constant, before the importer names the node
/// ([`OnnxError::Node`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NodeError(pub String);

impl From<String> for NodeError {
    fn from(msg: String) -> Self {
        NodeError(msg)
    }
}

impl From<&str> for NodeError {
    fn from(msg: &str) -> Self {
        NodeError(msg.to_string())
    }
}

/// A constant tensor.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// An ONNX model opened for symbolic reading: its graph, the constants known so far
/// (initializers), and its one non-constant input.
pub(crate) struct Opened {
    pub model: ModelProto,
    pub consts: HashMap<String, Tensor>,
    /// The input's name.
    pub input: String,
    /// The input's shape without the batch dimension.
    pub shape: Vec<usize>,
    /// Whether the input had a leading batch dimension (of 1 or symbolic): ONNX axes count it.
    pub batched: bool,
}

impl Opened {
    /// The graph.
    pub fn graph(&self) -> &GraphProto {
        self.model.graph.as_ref().expect("checked by open")
    }
}

/// Parses a model and reads its initializers and its single non-constant input.
pub(crate) fn open(bytes: &[u8]) -> Result<Opened, NodeError> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| {
        format!("not a valid ONNX model ({e}); the file may be truncated or of another format")
    })?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| NodeError("the model has no graph".into()))?;
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
        return Err(NodeError(format!(
            "the graph has {} non-constant inputs; exactly one is supported",
            inputs.len()
        )));
    }
    let input = inputs[0];
    let mut shape: Vec<usize> = input
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
    if shape.is_empty() {
        return Err(NodeError(format!("input '{}' has no shape", input.name)));
    }
    // Tensors are handled without their batch dimension; ONNX axes count it.
    let batched = shape.len() > 1 && shape[0] == 1;
    if batched {
        shape.remove(0);
    }
    let input = input.name.clone();
    Ok(Opened {
        model,
        consts,
        input,
        shape,
        batched,
    })
}

/// How a reader names node `k` in messages, and the name it gives what the node computes.
pub(crate) fn node_names(node: &NodeProto, k: usize) -> (String, String) {
    if node.name.is_empty() {
        (
            format!("node {k} ({})", node.op_type),
            format!("{}_{k}", node.op_type),
        )
    } else {
        (
            format!("node '{}' ({})", node.name, node.op_type),
            node.name.clone(),
        )
    }
}

/// Handles a node that computes a constant: a `Constant`, the `Shape` of a computed tensor
/// (whose shape `shape_of` knows), or any operator whose inputs are all constants (folded).
/// Returns whether it did; checks first that every input was computed by an earlier node.
pub(crate) fn constant_node(
    node: &NodeProto,
    consts: &mut HashMap<String, Tensor>,
    shape_of: &dyn Fn(&str) -> Option<Vec<usize>>,
    batched: bool,
) -> Result<bool, NodeError> {
    let out_name = node
        .output
        .first()
        .cloned()
        .ok_or_else(|| NodeError("has no output".into()))?;
    if node.op_type == "Constant" {
        let t = node
            .attribute
            .iter()
            .find(|a| a.name == "value")
            .and_then(|a| a.t.as_ref())
            .ok_or_else(|| NodeError("Constant without a tensor value".into()))?;
        consts.insert(out_name, tensor_from_proto(t)?);
        return Ok(true);
    }
    for i in node.input.iter().filter(|n| !n.is_empty()) {
        if !consts.contains_key(i) && shape_of(i).is_none() {
            return Err(NodeError(format!(
                "reads '{i}', which no earlier node computes"
            )));
        }
    }
    let computed = node
        .input
        .iter()
        .filter(|n| !n.is_empty() && !consts.contains_key(*n))
        .count();
    if node.op_type == "Shape" && computed == 1 {
        // The shape of a computed tensor is known here: a constant.
        let mut dims: Vec<f64> = shape_of(&node.input[0])
            .ok_or_else(|| NodeError("Shape of a constant and a computed tensor".into()))?
            .iter()
            .map(|&d| d as f64)
            .collect();
        if batched {
            dims.insert(0, 1.0);
        }
        consts.insert(
            out_name,
            Tensor {
                dims: vec![dims.len()],
                data: dims,
            },
        );
        return Ok(true);
    }
    if computed == 0 {
        let value = fold_constant(node, consts)?;
        consts.insert(out_name, value);
        return Ok(true);
    }
    Ok(false)
}

/// The shape (without the batch) a `Reshape` to `dims` gives a tensor of `shape`: ONNX's 0
/// copies the input's dimension (the batch counted), one -1 is inferred, and a leading batch
/// of 1 (or -1 standing for it) is dropped when the rest fits.
pub(crate) fn reshaped(
    dims: &[i64],
    shape: &[usize],
    batched: bool,
) -> Result<Vec<usize>, NodeError> {
    let numel: usize = shape.iter().product();
    let mut dims = dims.to_vec();
    let full: Vec<usize> = if batched {
        std::iter::once(1).chain(shape.iter().copied()).collect()
    } else {
        shape.to_vec()
    };
    for (i, d) in dims.iter_mut().enumerate() {
        if *d == 0 {
            *d = *full
                .get(i)
                .ok_or_else(|| NodeError("a 0 in the shape has no input dimension".into()))?
                as i64;
        }
    }
    if dims.len() > 1 && (dims[0] == 1 || dims[0] == -1) {
        let rest: i64 = dims[1..].iter().product();
        if rest.unsigned_abs() as usize == numel || dims[1..].contains(&-1) {
            dims.remove(0);
        }
    }
    let known: i64 = dims.iter().filter(|d| **d > 0).product();
    if dims.iter().any(|d| *d < -1) || dims.iter().filter(|d| **d == -1).count() > 1 {
        return Err(NodeError(format!(
            "cannot reshape {numel} values to {dims:?}"
        )));
    }
    let out: Vec<usize> = dims
        .iter()
        .map(|d| {
            if *d == -1 {
                numel / known.max(1) as usize
            } else {
                *d as usize
            }
        })
        .collect();
    if out.iter().product::<usize>() != numel {
        return Err(NodeError(format!(
            "cannot reshape {numel} values to {dims:?}"
        )));
    }
    Ok(out)
}

/// The shape (without the batch) a `Squeeze` (or with `unsqueeze`, an `Unsqueeze`) along
/// `axes` gives a tensor of `shape`.
pub(crate) fn squeezed(
    unsqueeze: bool,
    axes: Option<Vec<i64>>,
    shape: &[usize],
    batched: bool,
) -> Result<Vec<usize>, NodeError> {
    let mut full: Vec<usize> = shape.to_vec();
    if batched {
        full.insert(0, 1);
    }
    let mut out = if unsqueeze {
        let axes = axes.ok_or_else(|| NodeError("Unsqueeze without axes".into()))?;
        let rank = full.len() + axes.len();
        let mut pos: Vec<usize> = axes
            .iter()
            .map(|&a| {
                if a < 0 {
                    (a + rank as i64) as usize
                } else {
                    a as usize
                }
            })
            .collect();
        pos.sort_unstable();
        for p in pos {
            if p > full.len() {
                return Err(NodeError(format!("axis {p} is out of range")));
            }
            full.insert(p, 1);
        }
        full
    } else {
        let rank = full.len() as i64;
        match axes {
            Some(axes) => {
                let drop: Vec<usize> = axes
                    .iter()
                    .map(|&a| {
                        if a < 0 {
                            (a + rank) as usize
                        } else {
                            a as usize
                        }
                    })
                    .collect();
                full.iter()
                    .enumerate()
                    .filter(|(i, d)| !(drop.contains(i) && **d == 1))
                    .map(|(_, d)| *d)
                    .collect()
            }
            None => full.iter().copied().filter(|d| *d != 1).collect(),
        }
    };
    if batched && out.len() > 1 && out[0] == 1 {
        out.remove(0);
    }
    if out.is_empty() {
        out.push(1);
    }
    Ok(out)
}

/// A Gemm node's weight as a row-major `[rows, cols]` matrix (alpha applied) and its beta:
/// `y = W x + beta * C`. Only `Gemm(x, W, C)` without transA is read.
pub(crate) fn gemm_weight(
    node: &NodeProto,
    w: &Tensor,
) -> Result<(Vec<f64>, usize, usize, f64), NodeError> {
    if attr_i(node, "transA").unwrap_or(0) != 0 {
        return Err(NodeError(
            "only Gemm(x, W, b) without transA is supported".into(),
        ));
    }
    if w.dims.len() != 2 {
        return Err(NodeError("Gemm needs a 2-D weight".into()));
    }
    let alpha = attr_f(node, "alpha").unwrap_or(1.0) as f64;
    let beta = attr_f(node, "beta").unwrap_or(1.0) as f64;
    let trans = attr_i(node, "transB").unwrap_or(0) != 0;
    let (rows, cols) = if trans {
        (w.dims[0], w.dims[1])
    } else {
        (w.dims[1], w.dims[0])
    };
    let mut m = vec![0.0; rows * cols];
    for r in 0..rows {
        for q in 0..cols {
            let v = if trans {
                w.data[r * cols + q]
            } else {
                w.data[q * rows + r]
            };
            m[r * cols + q] = alpha * v;
        }
    }
    Ok((m, rows, cols, beta))
}

/// A constant-mode Pad node's `[top, left, bottom, right]` pads and value on a `[C, H, W]`
/// map (`shape`, without the batch), from its inputs (`pads`, `value`: the constants given as
/// inputs, if any) or its attributes.
pub(crate) fn pad_of(
    node: &NodeProto,
    pads: Option<&Tensor>,
    value: Option<&Tensor>,
    shape: &[usize],
    batched: bool,
) -> Result<([usize; 4], f64), NodeError> {
    let mode = node
        .attribute
        .iter()
        .find(|a| a.name == "mode")
        .map(|a| String::from_utf8_lossy(&a.s).to_string());
    if mode.as_deref().is_some_and(|m| m != "constant") {
        return Err(NodeError(format!(
            "Pad mode {} is not supported (constant is)",
            mode.unwrap_or_default()
        )));
    }
    if node.input.get(3).is_some_and(|n| !n.is_empty()) {
        return Err(NodeError(
            "Pad with an axes input is not supported (pads of every axis are)".into(),
        ));
    }
    let pads: Vec<i64> = match pads {
        Some(t) => t.data.iter().map(|v| *v as i64).collect(),
        None => attr_ints(node, "pads").ok_or_else(|| NodeError("has no pads".into()))?,
    };
    let value = match value {
        Some(t) => t.data.first().copied().unwrap_or(0.0),
        None => attr_f(node, "value").unwrap_or(0.0) as f64,
    };
    let rank = shape.len() + batched as usize;
    if shape.len() != 3 || pads.len() != 2 * rank || pads.iter().any(|p| *p < 0) {
        return Err(NodeError(format!(
            "only non-negative padding of [C, H, W] maps is supported (pads {pads:?})"
        )));
    }
    let off = batched as usize;
    if pads[..off + 1]
        .iter()
        .chain(&pads[rank..rank + off + 1])
        .any(|p| *p != 0)
    {
        return Err(NodeError(
            "padding of the batch or channel axis is not supported".into(),
        ));
    }
    let p = [
        pads[off + 1],
        pads[off + 2],
        pads[rank + off + 1],
        pads[rank + off + 2],
    ];
    Ok((p.map(|v| v as usize), value))
}

pub(crate) fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, NodeError> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| NodeError(format!("tensor '{}' has a negative dimension", t.name)))
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
            return Err(NodeError(format!(
                "tensor '{}' has data type {other}; float, double, int32 and int64 are supported",
                t.name
            )))
        }
    };
    if data.len() != n {
        return Err(NodeError(format!(
            "tensor '{}' holds {} values for shape {:?} (truncated?)",
            t.name,
            data.len(),
            dims
        )));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(NodeError(format!(
            "tensor '{}' holds a value that is not finite",
            t.name
        )));
    }
    Ok(Tensor { dims, data })
}

pub(crate) fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

pub(crate) fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

pub(crate) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

/// Broadcasts a constant to `shape` (numpy rules, right-aligned) and flattens it.
pub(crate) fn broadcast(t: &Tensor, shape: &[usize]) -> Result<Vec<f64>, NodeError> {
    let n: usize = shape.iter().product();
    let strip = |d: &[usize]| -> Vec<usize> { d.iter().copied().skip_while(|&x| x == 1).collect() };
    if t.numel() == n && strip(&t.dims) == strip(shape) {
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
            return Err(NodeError(format!(
                "a constant of shape {:?} does not broadcast to {:?}",
                t.dims, shape
            )));
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

/// A convolution's or pool's window: kernel, strides, `[top, left, bottom, right]` pads and
/// dilations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
}

/// The window of a Conv or pooling node: kernel, strides, pads, dilations (`auto_pad` NOTSET,
/// VALID, SAME_UPPER or SAME_LOWER).
pub(crate) fn window_of(
    node: &NodeProto,
    kernel: [usize; 2],
    shape: &[usize],
) -> Result<Window2d, NodeError> {
    let two = |name: &str| -> Result<[usize; 2], NodeError> {
        match attr_ints(node, name).as_deref() {
            None => Ok([1, 1]),
            Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
            Some(v) => Err(NodeError(format!(
                "{name} {v:?}: two positive values expected"
            ))),
        }
    };
    let (stride, dilation) = (two("strides")?, two("dilations")?);
    let auto = node
        .attribute
        .iter()
        .find(|a| a.name == "auto_pad")
        .map(|a| String::from_utf8_lossy(&a.s).to_string())
        .unwrap_or_else(|| "NOTSET".into());
    let pads = match auto.as_str() {
        "NOTSET" => match attr_ints(node, "pads").as_deref() {
            None => [0; 4],
            Some([t, l, b, r]) if [t, l, b, r].iter().all(|v| **v >= 0) => {
                [*t as usize, *l as usize, *b as usize, *r as usize]
            }
            Some(v) => Err(NodeError(format!(
                "pads {v:?}: four non-negative values expected"
            )))?,
        },
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for d in 0..2 {
                let n = shape[1 + d];
                let out = n.div_ceil(stride[d]);
                let reach = dilation[d] * (kernel[d] - 1) + 1;
                let total = ((out - 1) * stride[d] + reach).saturating_sub(n);
                let (small, big) = (total / 2, total - total / 2);
                (p[d], p[d + 2]) = if auto == "SAME_UPPER" {
                    (small, big)
                } else {
                    (big, small)
                };
            }
            p
        }
        other => return Err(NodeError(format!("auto_pad {other} is not supported"))),
    };
    Ok(Window2d {
        kernel,
        stride,
        pads,
        dilation,
    })
}

/// Evaluates a node whose inputs are all constants (shape arithmetic and the like).
pub(crate) fn fold_constant(
    node: &NodeProto,
    consts: &HashMap<String, Tensor>,
) -> Result<Tensor, NodeError> {
    let get = |i: usize| {
        node.input
            .get(i)
            .and_then(|n| consts.get(n))
            .ok_or_else(|| NodeError(format!("missing constant input {i}")))
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
                return Err(NodeError(
                    "only 2-D constant transposes are supported".into(),
                ));
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
        "Cast" => Ok(get(0)?.clone()),
        "Gather" => {
            let (t, idx) = (get(0)?, get(1)?);
            if t.dims.len() > 1 || attr_i(node, "axis").unwrap_or(0) != 0 {
                return Err(NodeError(
                    "only gathers from 1-D constants are supported".into(),
                ));
            }
            let n = t.numel() as i64;
            let data = idx
                .data
                .iter()
                .map(|&i| {
                    let i = if i < 0.0 { i as i64 + n } else { i as i64 };
                    t.data
                        .get(i as usize)
                        .copied()
                        .ok_or_else(|| NodeError(format!("index {i} is out of range")))
                })
                .collect::<Result<Vec<f64>, NodeError>>()?;
            Ok(Tensor {
                dims: idx.dims.clone(),
                data,
            })
        }
        "Concat" => {
            // Row-major data joins flat along the first axis only.
            let axis = attr_i(node, "axis").unwrap_or(0);
            let first = get(0)?;
            let rank = first.dims.len().max(1) as i64;
            if (if axis < 0 { axis + rank } else { axis }) != 0 {
                return Err(
                    "only concatenation of constants along their first axis is supported".into(),
                );
            }
            let mut data = Vec::new();
            let mut lead = 0;
            for i in 0..node.input.len() {
                let t = get(i)?;
                if t.dims.get(1..) != first.dims.get(1..) {
                    return Err(NodeError(
                        "concatenates constants of different shapes".into(),
                    ));
                }
                lead += t.dims.first().copied().unwrap_or(1);
                data.extend_from_slice(&t.data);
            }
            let mut dims = first.dims.clone();
            if dims.is_empty() {
                dims.push(lead);
            } else {
                dims[0] = lead;
            }
            Ok(Tensor { dims, data })
        }
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
            // The constant keeps its real shape: a per-channel constant reshaped to
            // [1, C, 1, 1] must broadcast along the channels, not the last axis.
            let t = get(0)?;
            let axes = || -> Result<Option<Vec<i64>>, NodeError> {
                Ok(match node.input.get(1).filter(|n| !n.is_empty()) {
                    Some(_) => Some(get(1)?.data.iter().map(|v| *v as i64).collect()),
                    None => attr_ints(node, "axes"),
                })
            };
            let dims = match node.op_type.as_str() {
                "Reshape" => {
                    let target: Vec<i64> = get(1)?.data.iter().map(|v| *v as i64).collect();
                    reshaped(&target, &t.dims, false)?
                }
                "Flatten" => {
                    let r = t.dims.len() as i64;
                    let a = attr_i(node, "axis").unwrap_or(1);
                    let a = (if a < 0 { a + r } else { a }).clamp(0, r) as usize;
                    vec![t.dims[..a].iter().product(), t.dims[a..].iter().product()]
                }
                op => squeezed(op == "Unsqueeze", axes()?, &t.dims, false)?,
            };
            if dims.iter().product::<usize>() != t.numel() {
                return Err(NodeError(format!(
                    "cannot give a constant of {} values the shape {dims:?}",
                    t.numel()
                )));
            }
            Ok(Tensor {
                dims,
                data: t.data.clone(),
            })
        }
        other => Err(NodeError(format!(
            "unsupported operator {other} on constants"
        ))),
    }
}
