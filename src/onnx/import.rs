//! ONNX models into the IR, weights included: what `torch.onnx.export` writes for
//! convolutional and fully connected networks, and what archproof's own exporter writes.
//!
//! Operators: Conv (groups, dilation, strides, padding; asymmetric padding becomes a `pad`
//! node), Gemm, MatMul of a vector and a constant matrix either way round (with the bias
//! `Add` that follows it folded in), BatchNormalization, Relu, LeakyRelu, Sigmoid, Tanh,
//! HardSigmoid (a `scale_shift` and a `clip`), HardSwish, Clip (to [0, 6] it is ReLU6),
//! MaxPool, AveragePool, GlobalAveragePool, Pad (constant), Concat (channels of maps, or
//! vectors), Add/Sum and Sub of tensors of one size, Mul of two tensors (same shape, or a
//! `[C, 1, 1]` gate; `x * Sigmoid(x)` is SiLU and `x * HardSigmoid(x)` hard-swish), Add/Sub/Mul/Div by
//! constants (a `scale_shift` node; multiplication by a scalar 0 is the `zero` edge), Flatten,
//! Reshape, Squeeze, Unsqueeze, Identity and Dropout, and the constant folding of the shape
//! arithmetic around them. Anything else is an error naming the node and the operator.

use std::collections::{HashMap, HashSet};

use super::{attr_f, attr_i, attr_ints, broadcast, NodeError, OnnxError, Tensor};
use crate::ir::weights::{self, BATCH_NORM_EPS};
use crate::ir::{Activation, Builder, Graph, IrError, NodeId, Op, Shape, Weights};

/// The operators [`import`] reads, for messages.
pub const SUPPORTED: &str =
    "Conv, Gemm, MatMul, BatchNormalization, Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, \
    Tanh, Clip, MaxPool, AveragePool, GlobalAveragePool, Pad, Concat, Add, Sum, Sub, Mul, \
    Div, Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout, Constant, Shape";

/// Imports an ONNX model (its bytes) as an IR graph called `name`, with its weights.
pub fn import(bytes: &[u8], name: &str) -> Result<Graph, OnnxError> {
    let opened = super::open(bytes).map_err(|e| OnnxError::Model(e.0))?;
    let batched = opened.batched;
    let mut consts = opened.consts.clone();
    let graph = opened.graph();
    // How many nodes read each tensor: a bias Add is folded into the MatMul before it only
    // when nothing else reads the product.
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for node in &graph.node {
        for i in &node.input {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *readers.entry(o.name.as_str()).or_default() += 1;
    }
    let mut st = State {
        b: Builder::new(name),
        weights: Vec::new(),
        names: HashSet::new(),
    };
    let mut vars: HashMap<String, NodeId> = HashMap::new();
    let input = st.push(
        &opened.input,
        Op::Input {
            shape: Shape::new(opened.shape.clone()),
        },
        &[],
        Weights::new(),
    )?;
    vars.insert(opened.input.clone(), input);
    // Bias adds folded into the MatMul before them: their outputs are the MatMul's node.
    let mut folded: HashMap<String, NodeId> = HashMap::new();
    for (k, node) in graph.node.iter().enumerate() {
        let (label, name) = super::node_names(node, k);
        let at = |msg: String| OnnxError::Node {
            node: label.clone(),
            msg,
        };
        let out_name = node
            .output
            .first()
            .cloned()
            .ok_or_else(|| at("has no output".into()))?;
        if let Some(id) = folded.remove(&out_name) {
            vars.insert(out_name, id);
            continue;
        }
        let shape_of = |n: &str| -> Option<Vec<usize>> {
            vars.get(n).map(|&id| st.b.shape(id).dims().to_vec())
        };
        if super::constant_node(node, &mut consts, &shape_of, batched).map_err(|e| at(e.0))? {
            continue;
        }
        let computed: Vec<usize> = (0..node.input.len())
            .filter(|&i| vars.contains_key(&node.input[i]))
            .collect();
        let c = |i: usize| -> Result<&Tensor, OnnxError> {
            node.input
                .get(i)
                .and_then(|n| consts.get(n))
                .ok_or_else(|| at(format!("input {i} must be a constant")))
        };
        let var = |i: usize| -> Result<NodeId, OnnxError> {
            node.input
                .get(i)
                .and_then(|n| vars.get(n))
                .copied()
                .ok_or_else(|| at(format!("input {i} must be computed from the input")))
        };
        let has = |i: usize| node.input.get(i).is_some_and(|n| !n.is_empty());
        let xpos = computed[0];
        let x = var(xpos)?;
        let xs = st.b.shape(x).dims().to_vec();
        let op_at = |e: IrError| match e {
            IrError::Shape { msg, .. } => at(msg),
            other => at(other.to_string()),
        };
        let push = |st: &mut State, op: Op, ins: &[NodeId], w: Weights| {
            st.push(&name, op, ins, w).map_err(op_at)
        };
        let act = |function| Op::Act { function };
        let id = match node.op_type.as_str() {
            "Relu" => push(&mut st, act(Activation::Relu), &[x], Weights::new())?,
            "Sigmoid" => {
                if let Some(mul) = self_gate(graph, k, &readers) {
                    // x * sigmoid(x): SiLU (swish), as exporters write it.
                    folded.insert(
                        mul,
                        push(&mut st, act(Activation::Silu), &[x], Weights::new())?,
                    );
                    continue;
                }
                push(&mut st, act(Activation::Sigmoid), &[x], Weights::new())?
            }
            "Tanh" => push(&mut st, act(Activation::Tanh), &[x], Weights::new())?,
            "LeakyRelu" => {
                let slope = attr_f(node, "alpha").unwrap_or(0.01) as f64;
                push(&mut st, Op::LeakyRelu { slope }, &[x], Weights::new())?
            }
            "Clip" => {
                let bound = |i: usize, attr: &str| -> Result<Option<f64>, OnnxError> {
                    Ok(if has(i) {
                        c(i)?.data.first().copied()
                    } else {
                        attr_f(node, attr).map(|v| v as f64)
                    })
                };
                match (bound(1, "min")?, bound(2, "max")?) {
                    (Some(lo), None) if lo == 0.0 => {
                        push(&mut st, act(Activation::Relu), &[x], Weights::new())?
                    }
                    (Some(lo), Some(hi)) if (lo, hi) == (0.0, 6.0) => {
                        push(&mut st, act(Activation::Relu6), &[x], Weights::new())?
                    }
                    (Some(min), Some(max)) => {
                        push(&mut st, Op::Clip { min, max }, &[x], Weights::new())?
                    }
                    _ => {
                        return Err(at(
                            "Clip needs a minimum and a maximum (or a minimum of 0)".into()
                        ))
                    }
                }
            }
            "HardSwish" => push(&mut st, act(Activation::Hardswish), &[x], Weights::new())?,
            "HardSigmoid" => {
                let alpha = attr_f(node, "alpha").unwrap_or(0.2) as f64;
                let beta = attr_f(node, "beta").unwrap_or(0.5) as f64;
                let gate = (alpha - 1.0 / 6.0).abs() < 1e-6 && beta == 0.5;
                if let Some(mul) = gate.then(|| self_gate(graph, k, &readers)).flatten() {
                    // x * hardsigmoid(x) with PyTorch's constants: hard-swish.
                    folded.insert(
                        mul,
                        st.push(&name, act(Activation::Hardswish), &[x], Weights::new())
                            .map_err(op_at)?,
                    );
                    continue;
                }
                let lin = st
                    .scale_shift(&format!("{name}.linear"), x, &[1], vec![alpha], vec![beta])
                    .map_err(op_at)?;
                push(
                    &mut st,
                    Op::Clip { min: 0.0, max: 1.0 },
                    &[lin],
                    Weights::new(),
                )?
            }
            "Identity" | "Dropout" => x,
            "Sum" | "Add" | "Sub" if computed.len() == node.input.len() => {
                let mut ins: Vec<NodeId> =
                    computed.iter().map(|&i| var(i)).collect::<Result<_, _>>()?;
                // A tensor whose shape differs from the first's only by leading 1s is the same
                // tensor under ONNX broadcasting; any other difference broadcasts to a larger
                // result, which the IR's `add` refuses (an error, never a different sum).
                let core = |d: &[usize]| d[d.iter().take_while(|&&v| v == 1).count()..].to_vec();
                for (j, id) in ins.clone().into_iter().enumerate().skip(1) {
                    let shape = st.b.shape(id).clone();
                    if shape.dims() != xs.as_slice() && core(shape.dims()) == core(&xs) {
                        ins[j] = st
                            .reshape(&format!("{name}.view{j}"), id, xs.clone())
                            .map_err(op_at)?;
                    }
                }
                if node.op_type == "Sub" {
                    if ins.len() != 2 {
                        return Err(at("Sub takes two inputs".into()));
                    }
                    ins[1] = st
                        .scale_shift(&format!("{name}.neg"), ins[1], &[1], vec![-1.0], vec![0.0])
                        .map_err(op_at)?;
                }
                if ins.len() == 1 {
                    ins[0]
                } else {
                    push(&mut st, Op::Add, &ins, Weights::new())?
                }
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                if computed.len() > 1 {
                    if node.op_type != "Mul" {
                        return Err(at(
                            "only Add, Sub and Mul of two computed tensors are supported".into(),
                        ));
                    }
                    let (p, q) = (var(0)?, var(1)?);
                    // The larger factor first: a [C, 1, 1] gate is broadcast over the map.
                    let (p, q) = if st.b.shape(q).numel() > st.b.shape(p).numel() {
                        (q, p)
                    } else {
                        (p, q)
                    };
                    push(&mut st, Op::Mul, &[p, q], Weights::new())?
                } else {
                    let k = c(1 - xpos)?;
                    let small = constant_shape(&k.dims, xs.len());
                    crate::ir::broadcasts(&small, &xs).map_err(|e| at(e.0))?;
                    let v = &k.data;
                    let n = v.len();
                    let (scale, shift) = match (node.op_type.as_str(), xpos) {
                        ("Add", _) => (vec![1.0; n], v.clone()),
                        ("Sub", 0) => (vec![1.0; n], v.iter().map(|a| -a).collect()),
                        ("Sub", _) => (vec![-1.0; n], v.clone()),
                        ("Mul", _) => (v.clone(), vec![0.0; n]),
                        ("Div", 0) => {
                            if v.contains(&0.0) {
                                return Err(at("division by zero".into()));
                            }
                            (v.iter().map(|a| 1.0 / a).collect(), vec![0.0; n])
                        }
                        _ => {
                            return Err(at("division by the network's value is not linear".into()))
                        }
                    };
                    if node.op_type == "Mul" && n == 1 && v[0] == 0.0 {
                        push(&mut st, Op::Zero, &[x], Weights::new())?
                    } else {
                        st.scale_shift(&name, x, &small, scale, shift)
                            .map_err(op_at)?
                    }
                }
            }
            "Gemm" => {
                if xpos != 0 {
                    return Err(at("only Gemm(x, W, b) with x computed is supported".into()));
                }
                let (weight, rows, cols, beta) =
                    super::gemm_weight(node, c(1)?).map_err(|e| at(e.0))?;
                let x = st.vector(&name, x, cols).map_err(|e| at(e.0))?;

                let bias = if has(2) {
                    Some(
                        broadcast(c(2)?, &[rows])
                            .map_err(|e| at(e.0))?
                            .iter()
                            .map(|v| beta * v)
                            .collect(),
                    )
                } else {
                    None
                };
                st.linear(&name, x, rows, weight, bias).map_err(op_at)?
            }
            "MatMul" if computed.len() == 1 && xpos == 1 => {
                // W [m, n] @ x [n] (or [n, 1]): a linear layer with W as its weight.
                let w = c(0)?;
                let column = xs.len() == 2 && xs[1] == 1;
                if w.dims.len() != 2 || !(xs == [w.dims[1]] || column && xs[0] == w.dims[1]) {
                    return Err(at(format!(
                        "MatMul of a constant {:?} by a computed {xs:?} is not a matrix-vector product",
                        w.dims
                    )));
                }
                let x = st
                    .reshape(&format!("{name}.flat"), x, vec![w.dims[1]])
                    .map_err(op_at)?;
                let y = st
                    .linear(&name, x, w.dims[0], w.data.clone(), None)
                    .map_err(op_at)?;
                if column {
                    // [m, n] @ [n, 1] is [m, 1]: the shape later broadcasting sees.
                    st.reshape(&format!("{name}.column"), y, vec![w.dims[0], 1])
                        .map_err(op_at)?
                } else {
                    y
                }
            }
            "MatMul" => {
                if computed.len() > 1 {
                    return Err(at(
                        "only a computed vector times a constant matrix is supported".into(),
                    ));
                }
                let w = c(1)?;
                if w.dims.len() != 2 {
                    return Err(at(format!(
                        "MatMul by a constant of shape {:?}; a matrix is needed",
                        w.dims
                    )));
                }
                let (cols, rows) = (w.dims[0], w.dims[1]);
                let x = st.vector(&name, x, cols).map_err(|e| at(e.0))?;
                let weight = transposed(w);
                // A bias added to the product alone folds into the layer.
                let mut bias = None;
                let mut bias_out = None;
                let next = graph.node[k + 1..]
                    .iter()
                    .find(|n| n.input.contains(&out_name));
                let alone = readers.get(out_name.as_str()) == Some(&1);
                if let Some(add) = next.filter(|n| n.op_type == "Add" && alone) {
                    let other = add.input.iter().find(|i| **i != out_name);
                    if let Some(v) = other
                        .and_then(|i| consts.get(i))
                        .and_then(|t| broadcast(t, &[rows]).ok())
                    {
                        bias = Some(v);
                        bias_out = add.output.first().cloned();
                    }
                }
                let id = st.linear(&name, x, rows, weight, bias).map_err(op_at)?;
                if let Some(o) = bias_out {
                    folded.insert(o, id);
                }
                id
            }
            "Conv" => {
                let w = c(1)?;
                if xs.len() != 3 || w.dims.len() != 4 {
                    return Err(at(format!(
                        "Conv needs a [C, H, W] input and a 4-D weight, got {xs:?} and {:?}",
                        w.dims
                    )));
                }
                let groups = attr_i(node, "group").unwrap_or(1).max(1) as usize;
                let win =
                    super::window_of(node, [w.dims[2], w.dims[3]], &xs).map_err(|e| at(e.0))?;
                let (x, padding) = st.symmetric(&name, x, win.pads).map_err(op_at)?;
                let oc = w.dims[0];
                let mut wt = Weights::new();
                wt.insert("weight".into(), f32_tensor(&w.dims, &w.data));
                if has(2) {
                    let bias = c(2)?;
                    if bias.numel() != oc {
                        return Err(at(format!(
                            "the bias has {} values for {oc} output channels",
                            bias.numel()
                        )));
                    }
                    wt.insert("bias".into(), f32_tensor(&[oc], &bias.data));
                }
                let op = Op::Conv2d {
                    out_channels: oc,
                    kernel: win.kernel,
                    stride: win.stride,
                    padding,
                    dilation: win.dilation,
                    groups,
                    bias: has(2),
                };
                push(&mut st, op, &[x], wt)?
            }
            "BatchNormalization" => {
                let eps = attr_f(node, "epsilon").unwrap_or(1e-5) as f64;
                let ch = xs.first().copied().unwrap_or(0);
                let mut wt = Weights::new();
                for (i, key) in [
                    (1, "weight"),
                    (2, "bias"),
                    (3, "running_mean"),
                    (4, "running_var"),
                ] {
                    let t = c(i)?;
                    if t.numel() != ch {
                        return Err(at(format!(
                            "'{key}' has {} values for {ch} channels",
                            t.numel()
                        )));
                    }
                    // The IR's epsilon is fixed: a model's own is moved into the variance.
                    let data: Vec<f64> = if key == "running_var" {
                        t.data.iter().map(|v| v + eps - BATCH_NORM_EPS).collect()
                    } else {
                        t.data.clone()
                    };
                    if key == "running_var" && data.iter().any(|v| *v + BATCH_NORM_EPS <= 0.0) {
                        return Err(at("a variance plus epsilon is not positive".into()));
                    }
                    wt.insert(key.into(), f32_tensor(&[ch], &data));
                }
                push(&mut st, Op::BatchNorm, &[x], wt)?
            }
            "MaxPool" | "AveragePool" => {
                if node.output.len() > 1 && !node.output[1].is_empty() {
                    return Err(at("MaxPool indices are not supported".into()));
                }
                if attr_i(node, "ceil_mode").unwrap_or(0) != 0 {
                    return Err(at("ceil_mode is not supported".into()));
                }
                let kernel = attr_ints(node, "kernel_shape")
                    .ok_or_else(|| at("has no kernel_shape".into()))?;
                if kernel.len() != 2 || xs.len() != 3 || kernel.iter().any(|k| *k < 1) {
                    return Err(at(format!(
                        "only 2-D pooling of [C, H, W] maps is supported (input {xs:?})"
                    )));
                }
                let win = super::window_of(node, [kernel[0] as usize, kernel[1] as usize], &xs)
                    .map_err(|e| at(e.0))?;
                if win.dilation != [1, 1] {
                    return Err(at("pooling with dilation is not supported".into()));
                }
                let [t, l, bo, r] = win.pads;
                if (t, l) != (bo, r) {
                    return Err(at(format!(
                        "asymmetric pooling pads {:?} are not supported",
                        win.pads
                    )));
                }
                let (kernel, stride, padding) = (win.kernel, win.stride, [t, l]);
                let op = if node.op_type == "MaxPool" {
                    Op::MaxPool {
                        kernel,
                        stride,
                        padding,
                    }
                } else {
                    let count_include_pad = attr_i(node, "count_include_pad").unwrap_or(0) != 0;
                    Op::AvgPool {
                        kernel,
                        stride,
                        padding,
                        count_include_pad,
                    }
                };
                push(&mut st, op, &[x], Weights::new())?
            }
            "GlobalAveragePool" => push(&mut st, Op::GlobalAvgPool, &[x], Weights::new())?,
            "Pad" => {
                let input = |i: usize| {
                    node.input
                        .get(i)
                        .filter(|n| !n.is_empty())
                        .and_then(|n| consts.get(n))
                };
                let (pads, value) =
                    super::pad_of(node, input(1), input(2), &xs, batched).map_err(|e| at(e.0))?;
                push(&mut st, Op::Pad { pads, value }, &[x], Weights::new())?
            }
            "Concat" => {
                if computed.len() != node.input.len() {
                    return Err(at(
                        "concatenation with a constant tensor is not supported".into()
                    ));
                }
                let axis = attr_i(node, "axis").unwrap_or(0);
                let rank = xs.len() as i64 + batched as i64;
                let axis = if axis < 0 { axis + rank } else { axis } - batched as i64;
                let ins: Vec<NodeId> =
                    computed.iter().map(|&i| var(i)).collect::<Result<_, _>>()?;
                if axis == 0 && xs.len() == 1 {
                    // Vectors: concatenated as [F, 1, 1] maps along channels.
                    let mut maps = Vec::with_capacity(ins.len());
                    for (j, &id) in ins.iter().enumerate() {
                        let f = st.b.shape(id).numel();
                        maps.push(
                            st.reshape(&format!("{name}.map{j}"), id, vec![f, 1, 1])
                                .map_err(op_at)?,
                        );
                    }
                    let cat = st
                        .push(&format!("{name}.maps"), Op::Concat, &maps, Weights::new())
                        .map_err(op_at)?;
                    let f = st.b.shape(cat).numel();
                    st.reshape(&name, cat, vec![f]).map_err(op_at)?
                } else if axis != 0 || xs.len() != 3 {
                    return Err(at(
                        "only concatenation of [C, H, W] maps along channels, or of vectors, \
                         is supported"
                            .into(),
                    ));
                } else {
                    push(&mut st, Op::Concat, &ins, Weights::new())?
                }
            }
            "Flatten" => {
                let axis = attr_i(node, "axis").unwrap_or(1);
                if (batched && axis != 1) || (!batched && axis != 0 && axis != 1) {
                    return Err(at(format!(
                        "Flatten at axis {axis}: only the batch axis stays apart"
                    )));
                }
                st.reshape(&name, x, vec![xs.iter().product()])
                    .map_err(op_at)?
            }
            "Reshape" => {
                let dims: Vec<i64> = c(1)?.data.iter().map(|v| *v as i64).collect();
                let shape = super::reshaped(&dims, &xs, batched).map_err(|e| at(e.0))?;
                st.reshape(&name, x, shape).map_err(op_at)?
            }
            "Squeeze" | "Unsqueeze" => {
                let axes: Option<Vec<i64>> = if has(1) {
                    Some(c(1)?.data.iter().map(|v| *v as i64).collect())
                } else {
                    attr_ints(node, "axes")
                };
                let shape = super::squeezed(node.op_type == "Unsqueeze", axes, &xs, batched)
                    .map_err(|e| at(e.0))?;
                st.reshape(&name, x, shape).map_err(op_at)?
            }
            other => {
                return Err(at(format!(
                    "unsupported operator {other} (supported: {SUPPORTED})"
                )))
            }
        };
        vars.insert(out_name, id);
    }
    let out = graph
        .output
        .first()
        .ok_or_else(|| OnnxError::Model("the graph has no output".into()))?;
    let &out = vars.get(&out.name).ok_or_else(|| {
        OnnxError::Model(format!(
            "the graph's output '{}' is not computed from its input",
            out.name
        ))
    })?;
    let mut g = st.b.finish(&[out])?;
    for (id, w) in st.weights {
        g.set_weights(id, w);
    }
    Ok(g)
}

/// The IR graph being built, the weights of its nodes, and the names taken.
struct State {
    b: Builder,
    weights: Vec<(NodeId, Weights)>,
    names: HashSet<String>,
}

impl State {
    /// Adds a node under `name` (made unique) with its weights, checked against its operator.
    fn push(&mut self, name: &str, op: Op, ins: &[NodeId], w: Weights) -> Result<NodeId, IrError> {
        let mut unique = name.to_string();
        let mut k = 1;
        while !self.names.insert(unique.clone()) {
            k += 1;
            unique = format!("{name}.{k}");
        }
        let shapes: Vec<Shape> = ins.iter().map(|i| self.b.shape(*i).clone()).collect();
        let refs: Vec<&Shape> = shapes.iter().collect();
        weights::check(&op, &refs, &w).map_err(|e| IrError::Shape {
            node: unique.clone(),
            msg: e.0,
        })?;
        let id = self.b.push(&unique, op, ins)?;
        if !w.is_empty() {
            self.weights.push((id, w));
        }
        Ok(id)
    }

    fn scale_shift(
        &mut self,
        name: &str,
        x: NodeId,
        shape: &[usize],
        scale: Vec<f64>,
        shift: Vec<f64>,
    ) -> Result<NodeId, IrError> {
        let mut w = Weights::new();
        w.insert("scale".into(), f32_tensor(shape, &scale));
        w.insert("shift".into(), f32_tensor(shape, &shift));
        let op = Op::ScaleShift {
            shape: shape.to_vec(),
        };
        self.push(name, op, &[x], w)
    }

    /// `x` under `shape`: itself when the shape is its own, a `flatten` to a vector, else a
    /// `reshape`.
    fn reshape(&mut self, name: &str, x: NodeId, shape: Vec<usize>) -> Result<NodeId, IrError> {
        let now = self.b.shape(x).dims();
        if now == shape.as_slice() {
            Ok(x)
        } else if shape.len() == 1 {
            self.push(name, Op::Flatten, &[x], Weights::new())
        } else {
            let shape = Shape::new(shape);
            self.push(name, Op::Reshape { shape }, &[x], Weights::new())
        }
    }

    /// `x` as a vector of `len` elements (flattened when it is a map), for a linear layer.
    fn vector(&mut self, name: &str, x: NodeId, len: usize) -> Result<NodeId, NodeError> {
        let s = self.b.shape(x).clone();
        if s.numel() != len {
            return Err(NodeError(format!(
                "the weight takes {len} inputs, the layer gives {}",
                s.numel()
            )));
        }
        if s.dims().len() == 1 {
            return Ok(x);
        }
        // A matrix product over the last axis of a map is not a dense layer on the whole map.
        if s.dims()[..s.dims().len() - 1].iter().any(|&d| d != 1) {
            return Err(NodeError(format!(
                "a matrix product of a tensor of shape {s} is not supported (flatten it first)"
            )));
        }
        self.push(&format!("{name}.flat"), Op::Flatten, &[x], Weights::new())
            .map_err(|e| NodeError(e.to_string()))
    }

    fn linear(
        &mut self,
        name: &str,
        x: NodeId,
        rows: usize,
        weight: Vec<f64>,
        bias: Option<Vec<f64>>,
    ) -> Result<NodeId, IrError> {
        let cols = self.b.shape(x).numel();
        let mut w = Weights::new();
        w.insert("weight".into(), f32_tensor(&[rows, cols], &weight));
        let has_bias = bias.is_some();
        if let Some(b) = bias {
            w.insert("bias".into(), f32_tensor(&[rows], &b));
        }
        let op = Op::Linear {
            out_features: rows,
            bias: has_bias,
        };
        self.push(name, op, &[x], w)
    }

    /// The symmetric padding of a window with `pads` `[top, left, bottom, right]`; uneven
    /// padding is split off into a `pad` node before it.
    fn symmetric(
        &mut self,
        name: &str,
        x: NodeId,
        pads: [usize; 4],
    ) -> Result<(NodeId, [usize; 2]), IrError> {
        let [t, l, b, r] = pads;
        if (t, l) == (b, r) {
            return Ok((x, [t, l]));
        }
        let op = Op::Pad { pads, value: 0.0 };
        Ok((
            self.push(&format!("{name}.pad"), op, &[x], Weights::new())?,
            [0, 0],
        ))
    }
}

/// A constant's dimensions as the IR broadcasts them: without the leading ones (the batch
/// among them) that reach past the input's rank, and `[1]` for a scalar.
/// When node `k` computes a gate g(x) that only a following `Mul(x, g(x))` reads, the name of
/// that product: exporters write SiLU as `x * Sigmoid(x)` and hard-swish as
/// `x * HardSigmoid(x)`, which the IR holds as one activation.
fn self_gate(
    graph: &onnx_protobuf::GraphProto,
    k: usize,
    readers: &HashMap<&str, usize>,
) -> Option<String> {
    let node = &graph.node[k];
    let (x, g) = (node.input.first()?, node.output.first()?);
    if readers.get(g.as_str()) != Some(&1) {
        return None;
    }
    let mul = graph.node[k + 1..].iter().find(|n| n.input.contains(g))?;
    let pair = |a: &String, b: &String| (a == x && b == g) || (a == g && b == x);
    (mul.op_type == "Mul" && mul.input.len() == 2 && pair(&mul.input[0], &mul.input[1]))
        .then(|| mul.output.first().cloned())
        .flatten()
}

fn constant_shape(dims: &[usize], rank: usize) -> Vec<usize> {
    let mut d = dims.to_vec();
    while d.len() > rank && d.first() == Some(&1) {
        d.remove(0);
    }
    if d.is_empty() {
        d.push(1);
    }
    d
}

/// A MatMul weight `[in, out]` as the IR's `[out, in]` matrix.
fn transposed(w: &Tensor) -> Vec<f64> {
    let (r, c) = (w.dims[0], w.dims[1]);
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = w.data[i * c + j];
        }
    }
    out
}

fn f32_tensor(shape: &[usize], data: &[f64]) -> crate::ir::Tensor {
    crate::ir::Tensor::new(shape.to_vec(), data.iter().map(|&v| v as f32).collect())
        .expect("sizes checked by the caller")
}
