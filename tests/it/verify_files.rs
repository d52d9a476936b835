//! Loaders against the reference files, and every loader against truncated, garbage and
//! inconsistent files: exit 2 and one line naming the file and the problem.

use crate::common;

use archproof::verify::{load_network, load_spec, nnet};
use common::{archproof, assert_bad_input, tract_forward};
use rand::{Rng, SeedableRng};

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn onnx_and_nnet_versions_of_acas_xu_compute_the_same_function() {
    let data = common::shared_data();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for (i, j) in [(1, 1), (2, 9), (3, 3), (4, 5), (5, 9)] {
        let name = format!("ACASXU_run2a_{i}_{j}_batch_2000");
        let onnx = load_network(&data.join(format!("acasxu/onnx/{name}.onnx"))).unwrap();
        let text = std::fs::read_to_string(data.join(format!("acasxu/nnet/{name}.nnet"))).unwrap();
        let (nnet, norm) = nnet::parse(&text).unwrap();
        assert_eq!((onnx.input_dim(), onnx.output_dim()), (5, 5));
        assert_eq!(onnx.relu_count(), 300);
        assert_eq!(norm.mean.len(), 6);
        for _ in 0..200 {
            let x: Vec<f64> = (0..5).map(|_| rng.random_range(-0.5..0.5)).collect();
            let (a, b) = (onnx.forward(&x), nnet.forward(&x));
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-5, "{name}: {a:?} vs {b:?}");
            }
        }
    }
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn every_reference_spec_parses() {
    let data = common::shared_data();
    let regions: Vec<usize> = (1..=10)
        .map(|p| {
            load_spec(&data.join(format!("acasxu/vnnlib/prop_{p}.vnnlib")))
                .unwrap()
                .regions
                .len()
        })
        .collect();
    // Props 1-4 are one region each; 5, 9, 10 are four disjuncts over the outputs; prop 6 has
    // two input boxes times four output disjuncts; 7 has two and 8 three output disjuncts.
    assert_eq!(regions, vec![1, 1, 1, 1, 4, 8, 2, 3, 4, 4]);
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().to_string()
}

const SPEC: &str = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (>= Y_0 3))\n";
const NNET: &str =
    "// tiny\n2,1,1,2,\n1,2,1,\n0,\n-1,\n1,\n0,0,\n1,1,\n1.0,\n-1.0,\n0.0,\n0.0,\n1.0,1.0,\n0.5,\n";

#[test]
fn a_hand_written_nnet_file_loads() {
    let (net, _) = nnet::parse(NNET).unwrap();
    // relu(x) + relu(-x) + 0.5 = |x| + 0.5
    assert_eq!(net.forward(&[-0.25]), vec![0.75]);
}

/// A real ONNX file cut in half exits 2 naming the file.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn a_truncated_onnx_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(&dir, "ok.vnnlib", SPEC.as_bytes());
    let real =
        std::fs::read(common::shared_data().join("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx"))
            .unwrap();
    let cut = write(&dir, "cut.onnx", &real[..real.len() / 2]);
    let out = archproof(&["verify", "--net", &cut, "--spec", &spec, "--no-proof", "-q"]);
    assert_bad_input(&out, &["cut.onnx"]);
}

#[test]
fn bad_files_exit_2_naming_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(&dir, "ok.vnnlib", SPEC.as_bytes());
    let net = write(&dir, "ok.nnet", NNET.as_bytes());
    let run =
        |n: &str, s: &str| archproof(&["verify", "--net", n, "--spec", s, "--no-proof", "-q"]);
    assert!(run(&net, &spec).status.success());

    // NNet: truncated, garbage, inconsistent sizes.
    let lines: Vec<&str> = NNET.lines().collect();
    let cut_lines = lines[..lines.len() - 2].join("\n");
    let truncated = write(&dir, "truncated.nnet", cut_lines.as_bytes());
    assert_bad_input(&run(&truncated, &spec), &["truncated.nnet", "ends before"]);
    let cut_mid = write(&dir, "cutmid.nnet", &NNET.as_bytes()[..NNET.len() - 12]);
    assert_bad_input(&run(&cut_mid, &spec), &["cutmid.nnet", "line 13"]);
    let garbage = write(&dir, "garbage.nnet", b"\x00\x01binary junk");
    assert_bad_input(&run(&garbage, &spec), &["garbage.nnet"]);
    let sizes = write(
        &dir,
        "sizes.nnet",
        NNET.replace("1,2,1,", "1,3,1,").as_bytes(),
    );
    assert_bad_input(
        &run(&sizes, &spec),
        &["sizes.nnet", "a bias line holds one value"],
    );
    // A layer size that contradicts the header: the message says which, with both numbers.
    let first = write(
        &dir,
        "first.nnet",
        NNET.replace("1,2,1,", "3,2,1,").as_bytes(),
    );
    assert_bad_input(
        &run(&first, &spec),
        &["first.nnet", "line 3", "from 3 to 1", "from 1 to 1"],
    );
    let count = write(
        &dir,
        "count.nnet",
        NNET.replace("1,2,1,", "1,2,2,1,").as_bytes(),
    );
    assert_bad_input(
        &run(&count, &spec),
        &["count.nnet", "4 layer sizes given", "2 layers need 3"],
    );
    let nan = write(
        &dir,
        "nan.nnet",
        NNET.replace("1.0,\n-1.0", "NaN,\n-1.0").as_bytes(),
    );
    assert_bad_input(&run(&nan, &spec), &["nan.nnet", "not a number"]);

    // VNN-LIB: truncated, garbage, inconsistent with the network.
    let cut = write(&dir, "cut.vnnlib", &SPEC.as_bytes()[..SPEC.len() - 4]);
    assert_bad_input(&run(&net, &cut), &["cut.vnnlib", "never closed"]);
    let junk = write(&dir, "junk.vnnlib", b"hello world");
    assert_bad_input(&run(&net, &junk), &["junk.vnnlib"]);
    let wide = write(
        &dir,
        "wide.vnnlib",
        SPEC.replace(
            "(declare-const Y_0 Real)",
            "(declare-const Y_0 Real)(declare-const Y_1 Real)",
        )
        .as_bytes(),
    );
    assert_bad_input(&run(&net, &wide), &["wide.vnnlib", "2 outputs"]);

    // ONNX: garbage, truncated, and an unsupported operator.
    let onnx_junk = write(
        &dir,
        "junk.onnx",
        b"this is not protobuf at all \xff\xff\xff",
    );
    assert_bad_input(
        &run(&onnx_junk, &spec),
        &["junk.onnx", "not a valid ONNX model"],
    );
    let missing = dir.path().join("missing.onnx");
    assert_bad_input(&run(&missing.to_string_lossy(), &spec), &["missing.onnx"]);
    let other = write(&dir, "net.txt", b"");
    assert_bad_input(&run(&other, &spec), &["net.txt", "unknown network format"]);

    // An instance list whose second row names a missing network: the error names the list,
    // the line and the file, and the first row's result is already in --out.
    let list = write(
        &dir,
        "list.csv",
        b"ok.nnet,ok.vnnlib,10\nmissing.nnet,ok.vnnlib,10\n",
    );
    let results = dir.path().join("results.csv");
    let out = archproof(&[
        "verify",
        "--instances",
        &list,
        "--out",
        results.to_str().unwrap(),
        "-q",
    ]);
    assert_bad_input(&out, &["list.csv", "line 2", "missing.nnet"]);
    let kept = std::fs::read_to_string(&results).unwrap();
    let rows: Vec<&str> = kept.lines().collect();
    assert_eq!(rows.len(), 2, "{kept}");
    assert!(rows[0].starts_with("onnx,vnnlib,result"), "{kept}");
    assert!(rows[1].starts_with("ok.nnet,ok.vnnlib,"), "{kept}");
}

mod onnx_models {
    //! Small ONNX models written with the protobuf messages, to run through both our loader
    //! and tract.
    use onnx_protobuf::{
        attribute_proto::AttributeType, tensor_shape_proto::Dimension, AttributeProto, GraphProto,
        Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
    };

    pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
        let mut v = ValueInfoProto::new();
        v.name = name.into();
        let t = v.type_.mut_or_insert_default().mut_tensor_type();
        t.elem_type = 1;
        for &d in dims {
            let mut dim = Dimension::new();
            dim.set_dim_value(d);
            t.shape.mut_or_insert_default().dim.push(dim);
        }
        v
    }

    pub fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = 1;
        t.float_data = data;
        t
    }

    pub fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = format!("{op}_{output}");
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![output.into()];
        n.attribute = attrs;
        n
    }

    pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = AttributeType::INTS.into();
        a.ints = v.to_vec();
        a
    }

    pub fn model(
        nodes: Vec<NodeProto>,
        inits: Vec<TensorProto>,
        input: ValueInfoProto,
        output: ValueInfoProto,
    ) -> Vec<u8> {
        let mut g = GraphProto::new();
        g.name = "test".into();
        g.node = nodes;
        g.initializer = inits;
        g.input = vec![input];
        g.output = vec![output];
        let mut m = ModelProto::new();
        m.ir_version = 8;
        let mut op = OperatorSetIdProto::new();
        op.version = 13;
        m.opset_import = vec![op];
        m.graph = Some(g).into();
        m.write_to_bytes().unwrap()
    }

    pub fn int(name: &str, v: i64) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = AttributeType::INT.into();
        a.i = v;
        a
    }

    pub fn float(name: &str, v: f32) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = AttributeType::FLOAT.into();
        a.f = v;
        a
    }

    pub fn int64s(name: &str, dims: &[i64], data: Vec<i64>) -> TensorProto {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = 7;
        t.int64_data = data;
        t
    }

    /// A vector model on an unbatched [6] input: a constant matrix times the input (W @ x),
    /// a bias; hard-sigmoid with ONNX's constants, the exporters' SiLU (`Sigmoid` then `Mul`
    /// by the input, operands swapped) and hard-swish (`HardSigmoid(1/6, 1/2)` then `Mul`), a
    /// Clip to [-0.5, 0.7]; the four concatenated; a vector times a matrix.
    pub fn gate_net(seed: u64) -> Vec<u8> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut r = |n: usize| {
            (0..n)
                .map(|_| rng.random_range(-1.5f32..1.5))
                .collect::<Vec<f32>>()
        };
        model(
            vec![
                node("MatMul", &["w1", "x"], "a", vec![]),
                node("Add", &["a", "b1"], "b", vec![]),
                node("HardSigmoid", &["b"], "hs", vec![]),
                node("Sigmoid", &["b"], "sg", vec![]),
                node("Mul", &["sg", "b"], "si", vec![]),
                node(
                    "HardSigmoid",
                    &["b"],
                    "g",
                    vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)],
                ),
                node("Mul", &["b", "g"], "sw", vec![]),
                node("Clip", &["b", "lo", "hi"], "cl", vec![]),
                node(
                    "Concat",
                    &["hs", "si", "sw", "cl"],
                    "cat",
                    vec![int("axis", 0)],
                ),
                node("MatMul", &["cat", "w2"], "y", vec![]),
            ],
            vec![
                tensor("w1", &[8, 6], r(48)),
                tensor("b1", &[8], r(8)),
                tensor("lo", &[], vec![-0.5]),
                tensor("hi", &[], vec![0.7]),
                tensor("w2", &[32, 3], r(96)),
            ],
            value_info("x", &[6]),
            value_info("y", &[3]),
        )
    }

    /// A DAG on a 1x2x6x6 input: conv -> relu, a grouped dilated conv added back (a residual),
    /// max pooling; beside it constant padding and average pooling; a concatenation; sigmoid
    /// and tanh of it subtracted and multiplied, LeakyReLU; the exporters' Shape / Gather /
    /// Unsqueeze / Concat chain feeding a Reshape; a Gemm.
    pub fn dag_net(seed: u64) -> Vec<u8> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut r = |n: usize| {
            (0..n)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect::<Vec<f32>>()
        };
        let nodes = vec![
            node(
                "Conv",
                &["x", "w1", "b1"],
                "c1",
                vec![ints("pads", &[1, 1, 1, 1]), ints("kernel_shape", &[3, 3])],
            ),
            node("Relu", &["c1"], "r1", vec![]),
            node(
                "Conv",
                &["r1", "w2", "b2"],
                "c2",
                vec![
                    ints("pads", &[2, 2, 2, 2]),
                    ints("dilations", &[2, 2]),
                    int("group", 2),
                ],
            ),
            node("Add", &["c2", "r1"], "res", vec![]),
            node(
                "MaxPool",
                &["res"],
                "m",
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ),
            node("Pad", &["r1", "pads", "pv"], "p", vec![]),
            node(
                "AveragePool",
                &["p"],
                "av",
                vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2])],
            ),
            node("Concat", &["m", "av"], "cat", vec![int("axis", 1)]),
            node("Sigmoid", &["cat"], "s", vec![]),
            node("Tanh", &["cat"], "t", vec![]),
            node("Sub", &["s", "t"], "d", vec![]),
            node("LeakyRelu", &["d"], "lr", vec![float("alpha", 0.2)]),
            node("Mul", &["lr", "t"], "z", vec![]),
            node("Shape", &["z"], "sh", vec![]),
            node("Gather", &["sh", "zero"], "n", vec![int("axis", 0)]),
            node("Unsqueeze", &["n", "axes"], "n1", vec![]),
            node("Concat", &["n1", "minus1"], "target", vec![int("axis", 0)]),
            node("Reshape", &["z", "target"], "f", vec![]),
            node("Gemm", &["f", "g", "gb"], "y", vec![int("transB", 1)]),
        ];
        let inits = vec![
            tensor("w1", &[4, 2, 3, 3], r(72)),
            tensor("b1", &[4], r(4)),
            tensor("w2", &[4, 2, 3, 3], r(72)),
            tensor("b2", &[4], r(4)),
            int64s("pads", &[8], vec![0, 0, 1, 1, 0, 0, 1, 1]),
            tensor("pv", &[], vec![0.25]),
            int64s("zero", &[], vec![0]),
            int64s("axes", &[1], vec![0]),
            int64s("minus1", &[1], vec![-1]),
            tensor("g", &[3, 72], r(216)),
            tensor("gb", &[3], r(3)),
        ];
        model(
            nodes,
            inits,
            value_info("x", &[1, 2, 6, 6]),
            value_info("y", &[1, 3]),
        )
    }

    /// conv(3x3, stride 2, pad 1) -> BN -> relu -> flatten -> Gemm(transB) -> Sub -> Mul, on a
    /// 1x2x5x5 input.
    pub fn conv_net(seed: u64) -> Vec<u8> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut r = |n: usize| {
            (0..n)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect::<Vec<f32>>()
        };
        let nodes = vec![
            node(
                "Conv",
                &["x", "w", "b"],
                "c",
                vec![
                    ints("strides", &[2, 2]),
                    ints("pads", &[1, 1, 1, 1]),
                    ints("kernel_shape", &[3, 3]),
                ],
            ),
            node(
                "BatchNormalization",
                &["c", "s", "sh", "m", "v"],
                "n",
                vec![],
            ),
            node("Relu", &["n"], "r", vec![]),
            node("Flatten", &["r"], "f", vec![]),
            node(
                "Gemm",
                &["f", "g", "gb"],
                "y0",
                vec![{
                    let mut a = AttributeProto::new();
                    a.name = "transB".into();
                    a.type_ = AttributeType::INT.into();
                    a.i = 1;
                    a
                }],
            ),
            node("Sub", &["y0", "k"], "y1", vec![]),
            node("Mul", &["y1", "q"], "y", vec![]),
        ];
        let inits = vec![
            tensor("w", &[3, 2, 3, 3], r(54)),
            tensor("b", &[3], r(3)),
            tensor("s", &[3], r(3)),
            tensor("sh", &[3], r(3)),
            tensor("m", &[3], r(3)),
            tensor("v", &[3], r(3).iter().map(|v| v.abs() + 0.5).collect()),
            tensor("g", &[4, 27], r(108)),
            tensor("gb", &[4], r(4)),
            tensor("k", &[4], r(4)),
            tensor("q", &[1], vec![0.5]),
        ];
        model(
            nodes,
            inits,
            value_info("x", &[1, 2, 5, 5]),
            value_info("y", &[1, 4]),
        )
    }
}

#[test]
fn onnx_loader_agrees_with_tract() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    // A convolutional model written here, with batch norm, a transposed Gemm and constants.
    let bytes = onnx_models::conv_net(3);
    let net = archproof::verify::onnx_network(&bytes, "m").unwrap();
    assert_eq!((net.input_dim(), net.output_dim()), (50, 4));
    for _ in 0..20 {
        let x: Vec<f32> = (0..50).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let want = tract_forward(&bytes, &[1, 2, 5, 5], &x);
        let got = net.forward(&x.iter().map(|v| *v as f64).collect::<Vec<_>>());
        for (w, g) in want.iter().zip(&got) {
            assert!((*w as f64 - g).abs() < 1e-4, "{want:?} vs {got:?}");
        }
    }
}

/// The ACAS Xu networks of the benchmark agree with tract on random inputs.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn acas_xu_networks_agree_with_tract() {
    let data = common::shared_data();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for name in ["1_1", "3_7", "5_9"] {
        let path = data.join(format!("acasxu/onnx/ACASXU_run2a_{name}_batch_2000.onnx"));
        let bytes = std::fs::read(&path).unwrap();
        let net = load_network(&path).unwrap();
        use onnx_protobuf::Message;
        let proto = onnx_protobuf::ModelProto::parse_from_bytes(&bytes).unwrap();
        let shape: Vec<usize> = proto.graph.input[0]
            .type_
            .tensor_type()
            .shape
            .dim
            .iter()
            .map(|d| d.dim_value().max(1) as usize)
            .collect();
        for _ in 0..20 {
            let x: Vec<f32> = (0..5).map(|_| rng.random_range(-0.5f32..0.5)).collect();
            let want = tract_forward(&bytes, &shape, &x);
            let got = net.forward(&x.iter().map(|v| *v as f64).collect::<Vec<_>>());
            for (w, g) in want.iter().zip(&got) {
                assert!((*w as f64 - g).abs() < 1e-4, "{name}: {want:?} vs {got:?}");
            }
        }
    }
}

/// Gates and clips through the one importer: the exporters' SiLU and hard-swish patterns
/// become one activation each, hard-sigmoid a scale-shift and a clip; tract agrees.
#[test]
fn onnx_gates_and_clips_agree_with_tract() {
    use archproof::ir::{Activation, Op};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    for seed in 0..3 {
        let bytes = onnx_models::gate_net(seed);
        let graph = archproof::onnx::import(&bytes, "gates").unwrap();
        let ops: Vec<&Op> = graph.node_ids().map(|id| &graph.node(id).op).collect();
        for f in [Activation::Silu, Activation::Hardswish] {
            assert!(
                ops.contains(&&Op::Act { function: f }),
                "{f:?} not folded: {ops:?}"
            );
        }
        assert!(ops.contains(&&Op::Clip {
            min: -0.5,
            max: 0.7f32 as f64
        }));
        assert!(ops.contains(&&Op::Clip { min: 0.0, max: 1.0 }));
        let net = archproof::verify::ir::from_graph(&graph).unwrap();
        assert_eq!((net.input_dim(), net.output_dim()), (6, 3));
        for _ in 0..20 {
            let x: Vec<f32> = (0..6).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let want = tract_forward(&bytes, &[6], &x);
            let got = net.forward(&x.iter().map(|v| *v as f64).collect::<Vec<_>>());
            for (w, g) in want.iter().zip(&got) {
                assert!(
                    (*w as f64 - g).abs() < 1e-5,
                    "seed {seed}: {want:?} vs {got:?}"
                );
            }
        }
    }
}

#[test]
fn onnx_dags_agree_with_tract() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for seed in 0..3 {
        let bytes = onnx_models::dag_net(seed);
        let net = archproof::verify::onnx_network(&bytes, "m").unwrap();
        assert_eq!((net.input_dim(), net.output_dim()), (72, 3));
        assert!(!net.is_piecewise_linear());
        for _ in 0..10 {
            let x: Vec<f32> = (0..72).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let want = tract_forward(&bytes, &[1, 2, 6, 6], &x);
            let got = net.forward(&x.iter().map(|v| *v as f64).collect::<Vec<_>>());
            for (w, g) in want.iter().zip(&got) {
                assert!(
                    (*w as f64 - g).abs() < 1e-5,
                    "seed {seed}: {want:?} vs {got:?}"
                );
            }
        }
    }
}

#[test]
fn an_unsupported_onnx_operator_is_named() {
    use onnx_models::*;
    let bytes = model(
        vec![node("Softmax", &["x"], "y", vec![])],
        vec![],
        value_info("x", &[1, 3]),
        value_info("y", &[1, 3]),
    );
    let dir = tempfile::tempdir().unwrap();
    let net = write(&dir, "softmax.onnx", &bytes);
    let spec = write(&dir, "s.vnnlib", b"(declare-const X_0 Real)(declare-const X_1 Real)(declare-const X_2 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)(declare-const Y_2 Real)(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))(assert (<= X_2 1))(assert (>= X_2 0))(assert (>= Y_0 3))");
    let out = archproof(&["verify", "--net", &net, "--spec", &spec, "--no-proof"]);
    assert_bad_input(&out, &["softmax.onnx", "unsupported operator Softmax"]);
}

/// Runs an IR graph with weights through the training engine (candle, f32) on one input.
fn candle_forward(graph: &archproof::ir::Graph, shape: &[usize], x: &[f32]) -> Vec<f32> {
    let model = archproof::train::Model::new(graph, 0).unwrap();
    let t = model.batch(x, 1).unwrap();
    let _ = shape;
    model
        .forward(&t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn close(want: &[f32], got: &[f64], tol: f64, what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: output sizes");
    for (w, g) in want.iter().zip(got) {
        assert!((*w as f64 - g).abs() < tol, "{what}: {want:?} vs {got:?}");
    }
}

#[test]
fn onnx_imports_into_the_ir_and_agrees_with_tract() {
    use archproof::ir::io;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let cases: Vec<(&str, Vec<u8>, Vec<usize>)> = vec![
        ("dag 0", onnx_models::dag_net(0), vec![1, 2, 6, 6]),
        ("dag 1", onnx_models::dag_net(1), vec![1, 2, 6, 6]),
        ("conv", onnx_models::conv_net(2), vec![1, 2, 5, 5]),
        ("gates", onnx_models::gate_net(1), vec![6]),
    ];
    for (what, bytes, shape) in cases {
        let graph = archproof::onnx::import(&bytes, "m").unwrap();
        // The IR graph written as JSON and read back, then exported to ONNX again.
        let json = io::to_json(&graph).unwrap();
        let back = io::from_json(&json).unwrap();
        let again = archproof::train::export::to_onnx(&back).unwrap();
        let net = archproof::verify::ir::from_graph(&graph).unwrap();
        let n: usize = shape.iter().product();
        for _ in 0..8 {
            let x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let want = tract_forward(&bytes, &shape, &x);
            let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
            close(
                &want,
                &net.forward(&x64),
                1e-5,
                &format!("{what}: verifier"),
            );
            let trained: Vec<f64> = candle_forward(&back, &shape, &x)
                .iter()
                .map(|v| *v as f64)
                .collect();
            close(&want, &trained, 1e-4, &format!("{what}: candle"));
            // The exporter writes a batch axis: an unbatched [6] input comes back as [1, 6].
            let batched: Vec<usize> = if shape.len() > 1 && shape[0] == 1 {
                shape.clone()
            } else {
                [&[1], shape.as_slice()].concat()
            };
            let round: Vec<f64> = tract_forward(&again, &batched, &x)
                .iter()
                .map(|v| *v as f64)
                .collect();
            close(&want, &round, 1e-5, &format!("{what}: re-exported"));
        }
    }
}

#[test]
fn an_exported_resnet_imports_with_the_zoo_counts() {
    use archproof::ir::Shape;
    let zoo_graph =
        archproof::models::build("resnet-tiny", Some(Shape::new(vec![1, 16, 16])), Some(6))
            .unwrap();
    let model = archproof::train::Model::new(&zoo_graph, 3).unwrap();
    let bytes = archproof::train::export::to_onnx(&model.to_graph().unwrap()).unwrap();
    let imported = archproof::onnx::import(&bytes, "rt").unwrap();
    let (a, b) = (zoo_graph.analyze().unwrap(), imported.analyze().unwrap());
    assert_eq!(a.totals.params, b.totals.params);
    assert_eq!(a.totals.macs, b.totals.macs);
    assert_eq!(a.totals.layers, b.totals.layers);
    // The same counts through the command line, which reads the file.
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "rt.onnx", &bytes);
    let run = |args: &[&str]| -> serde_json::Value {
        let out = archproof(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let from_file = run(&["inspect", &path, "--json"]);
    let from_zoo = run(&[
        "inspect",
        "resnet-tiny",
        "--input",
        "1x16x16",
        "--classes",
        "6",
        "--json",
    ]);
    for key in ["params", "macs", "layers"] {
        assert_eq!(from_file[key], from_zoo[key], "{key}");
    }
    // And the weights: the imported network computes what tract computes from the file.
    let net = archproof::verify::ir::from_graph(&imported).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    for _ in 0..4 {
        let x: Vec<f32> = (0..256).map(|_| rng.random_range(0.0f32..1.0)).collect();
        let want = tract_forward(&bytes, &[1, 1, 16, 16], &x);
        close(
            &want,
            &net.forward(&x.iter().map(|v| *v as f64).collect::<Vec<_>>()),
            1e-4,
            "resnet-tiny",
        );
    }
    // export: ONNX into IR JSON, which `inspect` reads with the same counts.
    let json = dir.path().join("rt.json");
    let out = archproof(&[
        "export",
        &path,
        "--format",
        "json",
        "-o",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_json = run(&["inspect", json.to_str().unwrap(), "--json"]);
    for key in ["params", "macs", "layers"] {
        assert_eq!(from_json[key], from_zoo[key], "{key}");
    }
}

#[test]
fn malformed_onnx_graphs_exit_2_naming_the_node() {
    use onnx_models::*;
    let dir = tempfile::tempdir().unwrap();
    let spec = write(&dir, "s.vnnlib", b"(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 0))(assert (>= Y_0 3))");
    let io = || (value_info("x", &[1, 2]), value_info("y", &[1, 2]));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dangling",
            {
                let (i, o) = io();
                model(
                    vec![node("Add", &["x", "ghost"], "y", vec![])],
                    vec![],
                    i,
                    o,
                )
            },
            "reads 'ghost', which no earlier node computes",
        ),
        (
            "mismatch",
            {
                let (i, o) = io();
                model(
                    vec![
                        node("Gemm", &["x", "w"], "h", vec![int("transB", 1)]),
                        node("Add", &["x", "h"], "y", vec![]),
                    ],
                    vec![tensor("w", &[3, 2], vec![1.0; 6])],
                    i,
                    o,
                )
            },
            "Add_y",
        ),
        (
            "reshape",
            {
                let (i, o) = io();
                model(
                    vec![
                        node("Relu", &["x"], "r", vec![]),
                        node("Reshape", &["x", "r"], "y", vec![]),
                    ],
                    vec![],
                    i,
                    o,
                )
            },
            "must be a constant",
        ),
        (
            "unknown",
            {
                let (i, o) = io();
                model(vec![node("Softmax", &["x"], "y", vec![])], vec![], i, o)
            },
            "unsupported operator Softmax",
        ),
    ];
    for (name, bytes, needle) in cases {
        let file = format!("{name}.onnx");
        let path = write(&dir, &file, &bytes);
        let verify = archproof(&["verify", "--net", &path, "--spec", &spec, "--no-proof"]);
        assert_bad_input(&verify, &[&file, needle]);
        let inspect = archproof(&["inspect", &path]);
        assert_bad_input(&inspect, &[&file, needle]);
    }
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn known_answers_of_both_benchmarks_key_their_instance_lists() {
    use archproof::verify::instances::{instance_key, read_expected, read_list};
    let data = common::shared_data();
    for (dir, list, decided) in [
        ("acasxu", "instances.csv", 96),
        ("mnistfc", "mnistfc_instances.csv", 0),
    ] {
        let expected = read_expected(&data.join(dir).join("expected.csv")).unwrap();
        let instances = read_list(&data.join(dir).join(list)).unwrap();
        let keyed = instances
            .iter()
            .filter(|i| expected.contains_key(&instance_key(&i.onnx, &i.vnnlib)))
            .count();
        // Every known answer belongs to an instance of the list.
        assert_eq!(keyed, expected.len(), "{dir}");
        if decided > 0 {
            assert_eq!(expected.len(), decided, "{dir}");
        }
    }
    // MNIST-FC: the rows whose answer is sat or unsat (the others no tool decided in 2021).
    let text = std::fs::read_to_string(data.join("mnistfc/expected.csv")).unwrap();
    let decided = text
        .lines()
        .skip(1)
        .filter(|l| matches!(l.split(',').nth(2), Some("sat" | "unsat")))
        .count();
    let expected = read_expected(&data.join("mnistfc/expected.csv")).unwrap();
    assert_eq!(expected.len(), decided);
}

/// A per-channel constant given its shape by Unsqueeze (exporters do this for input
/// normalisation) broadcasts along the channels, even where the map is as wide as it is deep.
#[test]
fn reshaped_constants_broadcast_along_their_own_axes() {
    use onnx_models::*;
    let bytes = model(
        vec![
            node("Unsqueeze", &["c", "axes"], "cu", vec![]),
            node("Sub", &["x", "cu"], "y", vec![]),
        ],
        vec![
            tensor("c", &[3], vec![0.5, -1.0, 2.0]),
            int64s("axes", &[2], vec![1, 2]),
        ],
        value_info("x", &[1, 3, 3, 3]),
        value_info("y", &[1, 3, 3, 3]),
    );
    let imported = archproof::verify::onnx_network(&bytes, "m").unwrap();
    let x: Vec<f32> = (0..27).map(|i| i as f32 / 10.0).collect();
    let want = tract_forward(&bytes, &[1, 3, 3, 3], &x);
    let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
    close(&want, &imported.forward(&x64), 1e-6, "imported");
}

/// Two review findings, kept fixed: a one-sided Clip written with `-FLT_MAX` (as converters
/// do) is exact in the verifier, and an Add whose inputs would broadcast to a larger tensor
/// is refused rather than summed element by element.
#[test]
fn wide_clips_are_exact_and_broadcasting_adds_are_refused() {
    use onnx_models::*;
    let bytes = model(
        vec![node("Clip", &["x", "lo", "hi"], "y", vec![])],
        vec![
            tensor("lo", &[], vec![-f32::MAX]),
            tensor("hi", &[], vec![0.5]),
        ],
        value_info("x", &[1, 4]),
        value_info("y", &[1, 4]),
    );
    let net = archproof::verify::onnx_network(&bytes, "clip").unwrap();
    let x = [-2.0f32, -0.25, 0.3, 1.5];
    let want = tract_forward(&bytes, &[1, 4], &x);
    let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
    close(&want, &net.forward(&x64), 1e-9, "clip to [-FLT_MAX, 0.5]");
    // [4] + [4, 1] broadcasts to [4, 4] in ONNX.
    let bytes = model(
        vec![
            node("Reshape", &["x", "shape"], "col", vec![]),
            node("Add", &["x", "col"], "y", vec![]),
        ],
        vec![int64s("shape", &[3], vec![1, 4, 1])],
        value_info("x", &[1, 4]),
        value_info("y", &[1, 4, 4]),
    );
    let err = archproof::onnx::import(&bytes, "bcast")
        .unwrap_err()
        .to_string();
    assert!(err.contains("Add"), "{err}");
}

/// A constant matrix times a column `[n, 1]` keeps the column's shape: the output is `[m, 1]`.
#[test]
fn a_matrix_times_a_column_is_a_column() {
    use onnx_models::*;
    let w: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin()).collect();
    let bytes = model(
        vec![node("MatMul", &["w", "x"], "y", vec![])],
        vec![tensor("w", &[3, 4], w)],
        value_info("x", &[4, 1]),
        value_info("y", &[3, 1]),
    );
    let graph = archproof::onnx::import(&bytes, "col").unwrap();
    let out = graph.analyze().unwrap();
    let last = *out.order.last().unwrap();
    assert_eq!(out.shapes[last.index()].dims(), &[3, 1]);
    let net = archproof::verify::ir::from_graph(&graph).unwrap();
    let x = [0.5f32, -1.0, 2.0, 0.25];
    let want = tract_forward(&bytes, &[4, 1], &x);
    let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
    close(&want, &net.forward(&x64), 1e-6, "W @ column");
}

/// Off a terminal (here, a pipe) progress comes as plain lines, not nothing; an instance list
/// run to its end leaves every row in --out.
#[test]
fn progress_is_plain_lines_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "ok.vnnlib", SPEC.as_bytes());
    write(&dir, "ok.nnet", NNET.as_bytes());
    let list = write(
        &dir,
        "list.csv",
        b"ok.nnet,ok.vnnlib,10\nok.nnet,ok.vnnlib,10\n",
    );
    let results = dir.path().join("results.csv");
    let out = archproof(&[
        "verify",
        "--instances",
        &list,
        "--out",
        results.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("instances 2/2"), "no progress line: {err}");
    assert!(
        !err.contains('\r') && !err.contains("\x1b["),
        "terminal codes: {err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        3
    );
}

/// The specs shipped in proofs/shapes still say what their names say: each is the robustness
/// ball, clipped to [0, 1], of the `shapes` test point K with its true label, and they cover
/// the six classes.
#[test]
fn shipped_shapes_specs_match_their_dataset_points() {
    let data = archproof::train::data::load("shapes").unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proofs/shapes");
    let mut labels = std::collections::BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let (k, eps) = stem
            .strip_prefix("point-")
            .and_then(|r| r.split_once("-eps-"))
            .unwrap_or_else(|| panic!("{stem}: not point-K-eps-E"));
        let (k, eps): (usize, f64) = (k.parse().unwrap(), eps.parse().unwrap());
        let spec = load_spec(&path).unwrap();
        let x: Vec<f64> = data.test.input(k).iter().map(|&v| v as f64).collect();
        let label = data.test.y[k] as usize;
        let want = archproof::verify::spec::Spec::robustness(
            &x,
            eps,
            label,
            data.classes,
            Some((0.0, 1.0)),
        );
        assert_eq!(spec.n_inputs, 256, "{stem}");
        assert_eq!(spec.regions.len(), want.regions.len(), "{stem}");
        for (got, want) in spec.regions.iter().zip(&want.regions) {
            for (a, b) in got.input.lower.iter().zip(&want.input.lower) {
                assert!((a - b).abs() < 1e-12, "{stem}: lower {a} vs {b}");
            }
            for (a, b) in got.input.upper.iter().zip(&want.input.upper) {
                assert!((a - b).abs() < 1e-12, "{stem}: upper {a} vs {b}");
            }
            assert_eq!(got.constraints.len(), 1, "{stem}");
            assert_eq!(
                got.constraints[0].coeffs, want.constraints[0].coeffs,
                "{stem}"
            );
        }
        labels.insert(label);
        files += 1;
    }
    assert_eq!(files, 12);
    assert_eq!(labels.len(), 6, "one point per class");
}
