//! Export of a graph with weights to ONNX (opset 13, float32, a symbolic batch dimension `N`).
//!
//! One ONNX node (or a short fixed pattern) per IR operator; initializers carry the weights
//! under the IR's names (`{node}.weight`). Normalizations other than batch normalization and
//! normalization-activation layers have no opset-13 operator and are refused with the node's
//! name.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::ir::weights::BATCH_NORM_EPS;
use crate::ir::{Activation, Graph, IrError, Op};

/// The opset the exporter writes.
pub const OPSET: i64 = 13;

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: v,
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::FLOAT.into(),
        f: v,
        ..Default::default()
    }
}

/// `kernel_shape`, `strides` and symmetric `pads` of a window operator.
fn window(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Vec<AttributeProto> {
    let (p0, p1) = (padding[0] as i64, padding[1] as i64);
    vec![
        attr_ints("kernel_shape", &[kernel[0] as i64, kernel[1] as i64]),
        attr_ints("strides", &[stride[0] as i64, stride[1] as i64]),
        attr_ints("pads", &[p0, p1, p0, p1]),
    ]
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::FLOAT as i32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: DataType::INT64 as i32,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        value: Some(dimension::Value::DimParam("N".into())),
        ..Default::default()
    }];
    dim.extend(dims.iter().map(|&d| Dimension {
        value: Some(dimension::Value::DimValue(d as i64)),
        ..Default::default()
    }));
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::FLOAT as i32,
                shape: Some(TensorShapeProto {
                    dim,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// The ONNX model of `graph`, whose every parameterised node must carry weights.
pub fn to_onnx(graph: &Graph) -> Result<Vec<u8>, IrError> {
    let analysis = graph.analyze()?;
    let mut g = GraphProto {
        name: graph.name.clone(),
        ..Default::default()
    };
    let out_name = |id: crate::ir::NodeId| graph.node(id).name.clone();
    for &id in &analysis.order {
        let n = graph.node(id);
        let name = n.name.as_str();
        let ins: Vec<String> = graph.inputs_of(id).into_iter().map(out_name).collect();
        let in_shapes: Vec<&crate::ir::Shape> = graph
            .inputs_of(id)
            .into_iter()
            .map(|i| &analysis.shapes[i.index()])
            .collect();
        let want = crate::ir::weights::expected(&n.op, &in_shapes);
        let mut w_names = Vec::new();
        for (wn, shape) in &want {
            let t = n.weights.get(*wn).ok_or_else(|| {
                IrError::Invalid(format!("node '{name}' has no weights to export ('{wn}')"))
            })?;
            let full = format!("{name}.{wn}");
            g.initializer.push(tensor(&full, shape, &t.data));
            w_names.push(full);
        }
        let w: Vec<&str> = w_names.iter().map(String::as_str).collect();
        let x: Vec<&str> = ins.iter().map(String::as_str).collect();
        let unsupported = |what: &str| {
            IrError::Invalid(format!(
                "node '{name}': {what} has no ONNX opset {OPSET} export"
            ))
        };
        match &n.op {
            Op::Input { shape } => g.input.push(value_info(name, shape.dims())),
            Op::Conv2d {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => {
                let mut inputs = vec![x[0]];
                inputs.extend(&w);
                g.node.push(node(
                    "Conv",
                    name,
                    &inputs,
                    name,
                    [
                        window(*kernel, *stride, *padding),
                        vec![
                            attr_ints("dilations", &[dilation[0] as i64, dilation[1] as i64]),
                            attr_int("group", *groups as i64),
                        ],
                    ]
                    .concat(),
                ));
            }
            Op::Linear { .. } => {
                let mut a = x[0].to_string();
                if in_shapes[0].dims().len() != 1 {
                    a = format!("{name}.flat");
                    g.node
                        .push(node("Flatten", &a, &[x[0]], &a, vec![attr_int("axis", 1)]));
                }
                let mut inputs = vec![a.as_str()];
                inputs.extend(&w);
                g.node.push(node(
                    "Gemm",
                    name,
                    &inputs,
                    name,
                    vec![attr_int("transB", 1)],
                ));
            }
            Op::BatchNorm => {
                let mut inputs = vec![x[0]];
                inputs.extend(&w);
                g.node.push(node(
                    "BatchNormalization",
                    name,
                    &inputs,
                    name,
                    vec![attr_float("epsilon", BATCH_NORM_EPS as f32)],
                ));
            }
            Op::GroupNorm { .. } => return Err(unsupported("group normalization")),
            Op::LayerNorm => return Err(unsupported("layer normalization")),
            Op::NormAct(_) => return Err(unsupported("a normalization-activation layer")),
            Op::Act { function } => match function {
                Activation::Relu => g.node.push(node("Relu", name, &[x[0]], name, vec![])),
                Activation::Sigmoid => g.node.push(node("Sigmoid", name, &[x[0]], name, vec![])),
                Activation::Tanh => g.node.push(node("Tanh", name, &[x[0]], name, vec![])),
                Activation::Relu6 => {
                    let (lo, hi) = (format!("{name}.min"), format!("{name}.max"));
                    g.initializer.push(tensor(&lo, &[], &[0.0]));
                    g.initializer.push(tensor(&hi, &[], &[6.0]));
                    g.node
                        .push(node("Clip", name, &[x[0], &lo, &hi], name, vec![]));
                }
                Activation::Silu => {
                    let s = format!("{name}.sigmoid");
                    g.node.push(node("Sigmoid", &s, &[x[0]], &s, vec![]));
                    g.node.push(node("Mul", name, &[x[0], &s], name, vec![]));
                }
                Activation::Hardswish => {
                    let s = format!("{name}.hardsigmoid");
                    g.node.push(node(
                        "HardSigmoid",
                        &s,
                        &[x[0]],
                        &s,
                        vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
                    ));
                    g.node.push(node("Mul", name, &[x[0], &s], name, vec![]));
                }
                Activation::Gelu => {
                    // 0.5 x (1 + erf(x / sqrt 2))
                    let c = |suffix: &str| format!("{name}.{suffix}");
                    let (k, half, one) = (c("rsqrt2"), c("half"), c("one"));
                    g.initializer
                        .push(tensor(&k, &[], &[std::f32::consts::FRAC_1_SQRT_2]));
                    g.initializer.push(tensor(&half, &[], &[0.5]));
                    g.initializer.push(tensor(&one, &[], &[1.0]));
                    let (a, e, p, h) = (c("scaled"), c("erf"), c("plus1"), c("halfx"));
                    g.node.push(node("Mul", &a, &[x[0], &k], &a, vec![]));
                    g.node.push(node("Erf", &e, &[&a], &e, vec![]));
                    g.node.push(node("Add", &p, &[&e, &one], &p, vec![]));
                    g.node.push(node("Mul", &h, &[x[0], &half], &h, vec![]));
                    g.node.push(node("Mul", name, &[&h, &p], name, vec![]));
                }
            },
            Op::Clip { min, max } => {
                let (lo, hi) = (format!("{name}.min"), format!("{name}.max"));
                g.initializer.push(tensor(&lo, &[], &[*min as f32]));
                g.initializer.push(tensor(&hi, &[], &[*max as f32]));
                g.node
                    .push(node("Clip", name, &[x[0], &lo, &hi], name, vec![]));
            }
            Op::LeakyRelu { slope } => g.node.push(node(
                "LeakyRelu",
                name,
                &[x[0]],
                name,
                vec![attr_float("alpha", *slope as f32)],
            )),
            Op::ScaleShift { .. } => {
                // w: `{name}.scale`, `{name}.shift`, broadcast as numpy does (ONNX's rule too).
                let scaled = format!("{name}.scaled");
                g.node
                    .push(node("Mul", &scaled, &[x[0], w[0]], &scaled, vec![]));
                g.node
                    .push(node("Add", name, &[&scaled, w[1]], name, vec![]));
            }
            Op::Pad { pads, value } => {
                let (p, v) = (format!("{name}.pads"), format!("{name}.value"));
                let [t, l, b, r] = pads.map(|p| p as i64);
                g.initializer
                    .push(int64_tensor(&p, &[0, 0, t, l, 0, 0, b, r]));
                g.initializer.push(tensor(&v, &[], &[*value as f32]));
                g.node
                    .push(node("Pad", name, &[x[0], &p, &v], name, vec![]));
            }
            Op::Reshape { shape } => {
                let s = format!("{name}.shape");
                let dims: Vec<i64> = std::iter::once(-1)
                    .chain(shape.dims().iter().map(|&d| d as i64))
                    .collect();
                g.initializer.push(int64_tensor(&s, &dims));
                g.node
                    .push(node("Reshape", name, &[x[0], &s], name, vec![]));
            }
            Op::Add => g.node.push(node("Sum", name, &x, name, vec![])),
            Op::Mul => g.node.push(node("Mul", name, &x, name, vec![])),
            Op::Concat => g
                .node
                .push(node("Concat", name, &x, name, vec![attr_int("axis", 1)])),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => g.node.push(node(
                "MaxPool",
                name,
                &x,
                name,
                window(*kernel, *stride, *padding),
            )),
            Op::AvgPool {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => g.node.push(node(
                "AveragePool",
                name,
                &x,
                name,
                [
                    window(*kernel, *stride, *padding),
                    vec![attr_int("count_include_pad", *count_include_pad as i64)],
                ]
                .concat(),
            )),
            Op::GlobalAvgPool => g
                .node
                .push(node("GlobalAveragePool", name, &x, name, vec![])),
            Op::Flatten => g
                .node
                .push(node("Flatten", name, &x, name, vec![attr_int("axis", 1)])),
            Op::Identity => g.node.push(node("Identity", name, &x, name, vec![])),
            Op::Zero => {
                let z = format!("{name}.zero");
                g.initializer.push(tensor(&z, &[], &[0.0]));
                g.node.push(node("Mul", name, &[x[0], &z], name, vec![]));
            }
        }
    }
    for &o in graph.outputs() {
        g.output.push(value_info(
            &graph.node(o).name,
            analysis.shapes[o.index()].dims(),
        ));
    }
    let model = ModelProto {
        ir_version: 7,
        producer_name: "archproof".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        graph: Some(g).into(),
        ..Default::default()
    };
    model
        .write_to_bytes()
        .map_err(|e| IrError::Invalid(e.to_string()))
}
