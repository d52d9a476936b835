//! Training with candle from the IR: the embedded dataset, accuracy and determinism, gradients
//! against finite differences for every operator, ONNX export checked by an independent runtime
//! (tract), train-then-verify end to end, and the dataset readers on files in the real formats.

use crate::common;

use std::time::Instant;

use archproof::ir::normact::{Axes, NormActGraph, Prim, PrimNode};
use archproof::ir::{Activation, Graph, Op, Shape};
use archproof::train::data::{self, ShapesConfig};
use archproof::train::{self, export, Model, OptimizerKind, TrainConfig};
use archproof::verify::{self, Spec, Verdict};
use candle_core::Tensor;
use common::{archproof, assert_bad_input, tract_forward};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn small_shapes() -> data::Dataset {
    data::shapes(&ShapesConfig {
        train: 600,
        test: 120,
        ..ShapesConfig::default()
    })
}

#[test]
fn shapes_is_deterministic_balanced_and_in_range() {
    let a = small_shapes();
    let b = small_shapes();
    assert_eq!(a.train.x, b.train.x);
    assert_eq!(a.test.y, b.test.y);
    let c = data::shapes(&ShapesConfig {
        seed: 1,
        train: 600,
        test: 120,
        ..ShapesConfig::default()
    });
    assert_ne!(a.train.x, c.train.x, "another seed gives other images");
    assert_ne!(a.train.x[..256], a.test.x[..256], "train and test differ");
    assert!(a.train.x.iter().all(|v| (0.0..=1.0).contains(v)));
    for k in 0..a.classes as u32 {
        assert_eq!(a.train.y.iter().filter(|&&y| y == k).count(), 100);
    }
    let big = data::load("shapes:28").unwrap();
    assert_eq!(big.shape, vec![1, 28, 28]);
}

fn shapes_run(model: &str, epochs: usize, lr: f64) -> (f64, f64) {
    let ds = data::load("shapes").unwrap();
    let g = archproof::models::build(model, Some(Shape::chw(1, 16, 16)), Some(ds.classes)).unwrap();
    let mut m = Model::new(&g, 0).unwrap();
    let cfg = TrainConfig {
        epochs,
        lr,
        ..TrainConfig::default()
    };
    let t = Instant::now();
    let r = train::train(&mut m, &ds, &cfg, &|_| {}).unwrap();
    (r.test_accuracy, t.elapsed().as_secs_f64())
}

/// Acceptance: an MLP and a small CNN reach 95% test accuracy on `shapes` within a fixed
/// budget of work (20 and 6 epochs). The time is printed, not asserted: it depends on the
/// machine and its load (`bench train` measures speed).
#[test]
fn mlp_and_cnn_reach_95_percent_on_shapes() {
    let (acc, secs) = shapes_run("mlp:64-32", 20, 2e-3);
    eprintln!("mlp:64-32: {:.2}% in {secs:.1} s", 100.0 * acc);
    assert!(acc >= 0.95, "MLP test accuracy {acc}");
    let (acc, secs) = shapes_run("cnn-tiny", 6, 3e-3);
    eprintln!("cnn-tiny: {:.2}% in {secs:.1} s", 100.0 * acc);
    assert!(acc >= 0.95, "CNN test accuracy {acc}");
}

fn weights_of(m: &Model) -> Vec<Vec<f32>> {
    m.vars()
        .iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    let ds = small_shapes();
    let g = archproof::models::build("resnet-tiny", None, None).unwrap();
    let run = |seed: u64, opt: OptimizerKind| {
        let mut m = Model::new(&g, seed).unwrap();
        let cfg = TrainConfig {
            epochs: 1,
            seed,
            optimizer: opt,
            lr: if opt == OptimizerKind::Sgd {
                0.05
            } else {
                1e-3
            },
            weight_decay: 1e-4,
            ..TrainConfig::default()
        };
        train::train(&mut m, &ds, &cfg, &|_| {}).unwrap();
        weights_of(&m)
    };
    for opt in [OptimizerKind::Adam, OptimizerKind::Sgd] {
        let (a, b, c) = (run(3, opt), run(3, opt), run(4, opt));
        assert_eq!(a, b, "{opt:?}: same seed, same weights");
        assert_ne!(a, c, "{opt:?}: another seed, other weights");
    }
}

/// A graph of one operator after an input of `shape` (and a second input where it takes two).
fn one_op(op: Op, shape: Vec<usize>, second: Option<Vec<usize>>) -> Graph {
    let mut g = Graph::new("op");
    let x = g.add_node(
        "x",
        Op::Input {
            shape: Shape::new(shape.clone()),
        },
        &[],
    );
    // A convolution in front of every map operator, so the second input of binary operators
    // is computed (the IR has one input) and gradients flow through a parameter.
    let mut ins = vec![x];
    if let Some(s) = second {
        let y = g.add_node(
            "pre",
            Op::Conv2d {
                out_channels: s[0],
                kernel: [1, 1],
                stride: [1, 1],
                padding: [0, 0],
                dilation: [1, 1],
                groups: 1,
                bias: true,
            },
            &[x],
        );
        let y = if s[1] == 1 {
            g.add_node("gap", Op::GlobalAvgPool, &[y])
        } else {
            y
        };
        ins.push(y);
    }
    let o = g.add_node("op", op, &ins);
    g.set_outputs(vec![o]);
    g
}

/// d(sum(out * r)) / d(each parameter and the input) by candle, against central differences.
fn grad_check(g: &Graph, batch: usize, what: &str) {
    let mut m = Model::new(g, 7).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Random parameters (not the initial ones, where v1 = 1, biases 0 hide mistakes).
    for v in m.vars() {
        let n = v.elem_count();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(0.5..1.5)).collect();
        v.set(&Tensor::from_vec(data, v.dims(), &candle_core::Device::Cpu).unwrap())
            .unwrap();
    }
    let d: usize = m.input_shape().iter().product();
    let x0: Vec<f32> = (0..batch * d)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let xv = candle_core::Var::from_tensor(&m.batch(&x0, batch).unwrap()).unwrap();
    let y = m.forward_batch_stats(xv.as_tensor()).unwrap();
    let r: Vec<f32> = (0..y.elem_count())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let rt = Tensor::from_vec(r, y.dims(), &candle_core::Device::Cpu).unwrap();
    // The projection is scaled so that sum |y * r| is 1. Finite differences in f32 then carry
    // a rounding error of a few f32 epsilons over the step, and that noise, not a fixed
    // absolute tolerance, is what a small gradient is compared within (so a zero gradient
    // cannot pass where the true one is 0.01 of the loss's scale).
    let scale = (&y * &rt)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let rt = (rt / scale.max(1e-12) as f64).unwrap();
    let loss = |m: &Model, x: &Tensor| -> f64 {
        (m.forward_batch_stats(x).unwrap() * &rt)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let h = 1e-2f32;
    let noise = 16.0 * f32::EPSILON as f64 / h as f64;
    let l = (y * &rt).unwrap().sum_all().unwrap();
    let grads = l.backward().unwrap();
    let mut targets: Vec<(String, candle_core::Var)> = m.named_vars();
    targets.push(("input".into(), xv.clone()));
    for (name, var) in targets {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for i in (0..base.len()).step_by((base.len() / 6).max(1)) {
            let at = |delta: f32| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.dims(), &candle_core::Device::Cpu).unwrap())
                    .unwrap();
                let x = xv.as_tensor().clone();
                loss(&m, &x)
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            at(0.0);
            let ad = g[i] as f64;
            assert!(
                (fd - ad).abs() <= 2e-2 * fd.abs().max(ad.abs()) + noise,
                "{what}: d/d {name}[{i}]: candle {ad}, finite differences {fd} (noise {noise:.1e})"
            );
        }
    }
    let _ = &mut m;
}

/// One graph per IR operator (and per activation function and convolution geometry), each
/// behind a parameterised operator so that gradients flow through a parameter.
fn operator_cases() -> Vec<(&'static str, Graph)> {
    let map = vec![3, 5, 5];
    let conv = |k: usize, s: usize, p: usize, groups: usize, dilation: usize| Op::Conv2d {
        out_channels: 6,
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
        dilation: [dilation, dilation],
        groups,
        bias: true,
    };
    let mut cases: Vec<(&str, Graph)> = vec![
        ("conv3x3", one_op(conv(3, 1, 1, 1, 1), map.clone(), None)),
        (
            "conv stride 2",
            one_op(conv(3, 2, 1, 1, 1), map.clone(), None),
        ),
        (
            "grouped conv (3 groups of 2 filters)",
            one_op(conv(3, 1, 1, 3, 1), map.clone(), None),
        ),
        (
            "dilated conv",
            one_op(conv(3, 1, 2, 1, 2), map.clone(), None),
        ),
        (
            "depthwise conv, one filter per channel, stride 2, dilation 2",
            one_op(
                Op::Conv2d {
                    out_channels: 3,
                    kernel: [3, 3],
                    stride: [2, 2],
                    padding: [2, 2],
                    dilation: [2, 2],
                    groups: 3,
                    bias: false,
                },
                map.clone(),
                None,
            ),
        ),
        (
            "conv 1x3",
            one_op(
                Op::Conv2d {
                    out_channels: 4,
                    kernel: [1, 3],
                    stride: [1, 1],
                    padding: [0, 1],
                    dilation: [1, 1],
                    groups: 1,
                    bias: false,
                },
                map.clone(),
                None,
            ),
        ),
        (
            "linear",
            one_op(
                Op::Linear {
                    out_features: 4,
                    bias: true,
                },
                vec![7],
                None,
            ),
        ),
        ("batch norm", one_op(Op::BatchNorm, map.clone(), None)),
        (
            "group norm",
            one_op(Op::GroupNorm { groups: 3 }, map.clone(), None),
        ),
        ("layer norm", one_op(Op::LayerNorm, map.clone(), None)),
        ("add", one_op(Op::Add, map.clone(), Some(vec![3, 5]))),
        ("mul (gate)", one_op(Op::Mul, map.clone(), Some(vec![3, 1]))),
        ("concat", one_op(Op::Concat, map.clone(), Some(vec![2, 5]))),
        (
            "max pool",
            one_op(
                Op::MaxPool {
                    kernel: [3, 3],
                    stride: [2, 2],
                    padding: [1, 1],
                },
                map.clone(),
                None,
            ),
        ),
        (
            "avg pool",
            one_op(
                Op::AvgPool {
                    kernel: [3, 3],
                    stride: [1, 1],
                    padding: [1, 1],
                    count_include_pad: false,
                },
                map.clone(),
                None,
            ),
        ),
        (
            "global avg pool",
            one_op(Op::GlobalAvgPool, map.clone(), None),
        ),
        ("flatten", one_op(Op::Flatten, map.clone(), None)),
        ("identity", one_op(Op::Identity, map.clone(), None)),
        (
            "leaky relu",
            one_op(Op::LeakyRelu { slope: 0.1 }, map.clone(), None),
        ),
        (
            "clip",
            one_op(
                Op::Clip {
                    min: -0.4,
                    max: 0.3,
                },
                map.clone(),
                None,
            ),
        ),
        ("scale-shift", {
            // Constants other than 1 and 0, per channel.
            let mut g = one_op(
                Op::ScaleShift {
                    shape: vec![3, 1, 1],
                },
                map.clone(),
                None,
            );
            let id = g.find("op").unwrap();
            let t = |v: Vec<f32>| archproof::ir::Tensor::new(vec![3, 1, 1], v).unwrap();
            let mut w = archproof::ir::Weights::new();
            w.insert("scale".into(), t(vec![0.5, -2.0, 3.0]));
            w.insert("shift".into(), t(vec![0.1, 0.2, -0.3]));
            g.set_weights(id, w);
            g
        }),
        (
            "pad (uneven, 0.5)",
            one_op(
                Op::Pad {
                    pads: [1, 0, 2, 1],
                    value: 0.5,
                },
                map.clone(),
                None,
            ),
        ),
        (
            "reshape",
            one_op(
                Op::Reshape {
                    shape: Shape::new(vec![15, 5]),
                },
                map.clone(),
                None,
            ),
        ),
    ];
    for f in [
        Activation::Relu,
        Activation::Relu6,
        Activation::Silu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Hardswish,
        Activation::Tanh,
    ] {
        cases.push((f.name(), one_op(Op::Act { function: f }, map.clone(), None)));
    }
    // A normalization-activation layer using every primitive (EvoNorm-B0 and S0 shapes and
    // the rest), on positive inputs where slog and ssqrt are smooth.
    let p = |op: Prim, args: &[usize]| PrimNode {
        op,
        args: args.to_vec(),
    };
    let layer = NormActGraph {
        name: "all-primitives".into(),
        nodes: vec![
            p(Prim::Var(Axes::Batch), &[0]),     // 4
            p(Prim::Sqrt, &[4]),                 // 5
            p(Prim::Var(Axes::Instance), &[0]),  // 6
            p(Prim::Sqrt, &[6]),                 // 7
            p(Prim::Mul, &[3, 0]),               // 8
            p(Prim::Add, &[8, 7]),               // 9
            p(Prim::Max, &[5, 9]),               // 10
            p(Prim::Div, &[0, 10]),              // 11 (B0)
            p(Prim::Sigmoid, &[8]),              // 12
            p(Prim::Var(Axes::Group(2)), &[0]),  // 13
            p(Prim::Mean(Axes::Group(2)), &[0]), // 14
            p(Prim::Mean(Axes::Batch), &[0]),    // 15
            p(Prim::Mean(Axes::Instance), &[0]), // 16
            p(Prim::Tanh, &[15]),                // 17
            p(Prim::Exp, &[16]),                 // 18
            p(Prim::Square, &[14]),              // 19
            p(Prim::Abs, &[17]),                 // 20
            p(Prim::Neg, &[19]),                 // 21
            p(Prim::Add, &[13, 18]),             // 22
            p(Prim::Log, &[22]),                 // 23
            p(Prim::Add, &[20, 21]),             // 24
            p(Prim::Add, &[23, 24]),             // 25
            p(Prim::Mul, &[12, 25]),             // 26
            p(Prim::Add, &[11, 26]),             // 27
            p(Prim::Add, &[27, 2]),              // 28 (v0)
        ],
    };
    layer.validate().unwrap();
    cases.push((
        "normact (every primitive)",
        one_op(Op::NormAct(layer), vec![4, 3, 3], None),
    ));
    cases
}

/// The kernel engine against candle on `g` (batch statistics, random parameters and inputs):
/// the outputs, every parameter's gradient of `sum(out * r)`, and the moving statistics after
/// the pass agree. Returns false when the engine has no kernel for some operator of `g`.
fn engine_matches_candle(g: &Graph, batch: usize, what: &str) -> bool {
    use archproof::train::engine::{Engine, EngineError};
    let mut m = Model::new(g, 7).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for v in m.vars() {
        let n = v.elem_count();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(0.5..1.5)).collect();
        v.set(&Tensor::from_vec(data, v.dims(), &candle_core::Device::Cpu).unwrap())
            .unwrap();
    }
    let mut e = match Engine::new(&m, batch) {
        Ok(e) => e,
        Err(EngineError::Unsupported { .. }) => return false,
        Err(err) => panic!("{what}: {err}"),
    };
    let d: usize = m.input_shape().iter().product();
    let x0: Vec<f32> = (0..batch * d)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let xt = m.batch(&x0, batch).unwrap();
    let y = m.forward_train(&xt).unwrap();
    let yc = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ye = e.forward(&x0, batch, true).to_vec();
    let close = |a: f32, b: f32, scale: f32| {
        (a - b).abs() <= 1e-4 * scale.max(1.0) + 1e-3 * a.abs().max(b.abs())
    };
    let ymax = yc.iter().fold(0f32, |a, v| a.max(v.abs()));
    for (i, (a, b)) in yc.iter().zip(&ye).enumerate() {
        assert!(
            close(*a, *b, ymax),
            "{what}: output {i}: candle {a}, kernels {b}"
        );
    }
    let r: Vec<f32> = (0..yc.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let rt = Tensor::from_vec(r.clone(), y.dims(), &candle_core::Device::Cpu).unwrap();
    let grads = (y * rt).unwrap().sum_all().unwrap().backward().unwrap();
    e.zero_grad();
    e.backward(&r);
    let ours: std::collections::BTreeMap<String, Vec<f32>> =
        e.named_grads(&m).into_iter().collect();
    for (name, var) in m.named_vars() {
        let want = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = &ours[&name];
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (i, (a, b)) in want.iter().zip(got).enumerate() {
            assert!(
                close(*a, *b, scale),
                "{what}: d/d {name}[{i}]: candle {a}, kernels {b}"
            );
        }
    }
    // The moving statistics of batch normalization and of normalization-activation layers,
    // after one pass each.
    let mut stored = Model::new(g, 7).unwrap();
    e.store(&mut stored).unwrap();
    let bufs: Vec<String> = ["running_mean".to_string(), "running_var".to_string()]
        .into_iter()
        .chain((0..64).map(|k| format!("moving.{k}")))
        .collect();
    for node in g.node_ids().map(|i| g.node(i).name.clone()) {
        for buf in &bufs {
            if let (Some(a), Some(b)) = (
                m.buffer_values(&node, buf),
                stored.buffer_values(&node, buf),
            ) {
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                        "{what}: {node}.{buf}: candle {x}, kernels {y}"
                    );
                }
            }
        }
    }
    true
}

/// The kernel engine computes the same outputs and gradients as candle (which the test above
/// checks against finite differences) for every operator it has a kernel for, and declines
/// exactly the others.
#[test]
fn kernel_engine_agrees_with_candle_on_every_operator() {
    let mut declined = Vec::new();
    for (what, g) in &operator_cases() {
        if !engine_matches_candle(g, 3, what) {
            declined.push(*what);
        }
    }
    assert_eq!(
        declined,
        [
            "grouped conv (3 groups of 2 filters)",
            "group norm",
            "layer norm",
            "mul (gate)",
            "scale-shift",
            "pad (uneven, 0.5)"
        ],
        "operators the engine leaves to candle"
    );
}

/// Whole networks with shortcuts, shared inputs and cells: the engine's gradients are
/// candle's, with batches that do not divide into the engine's chunks.
#[test]
fn kernel_engine_agrees_with_candle_on_whole_networks() {
    let cell =
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|";
    for (name, batch) in [("resnet-mini", 5), ("cnn-tiny", 9), ("mlp:12-7", 4)] {
        let g = archproof::models::build(name, Some(Shape::chw(1, 8, 8)), Some(3)).unwrap();
        assert!(
            engine_matches_candle(&g, batch, name),
            "{name}: the engine runs it"
        );
    }
    let g = archproof::models::build(&format!("nb201:{cell}"), Some(Shape::chw(1, 8, 8)), Some(3))
        .unwrap();
    assert!(engine_matches_candle(&g, 3, "nb201 cell network"));
}

/// Training with the kernel engine and with candle from the same seed gives the same test
/// accuracy within noise.
#[test]
fn kernel_engine_and_candle_train_alike() {
    let ds = small_shapes();
    let run = |engine| {
        let g =
            archproof::models::build("resnet-mini", Some(Shape::chw(1, 16, 16)), Some(6)).unwrap();
        let mut m = Model::new(&g, 3).unwrap();
        let cfg = TrainConfig {
            epochs: 10,
            lr: 3e-3,
            seed: 3,
            engine,
            ..TrainConfig::default()
        };
        train::train(&mut m, &ds, &cfg, &|_| {}).unwrap();
        // The accuracy of the trained model as candle computes it from the stored weights.
        train::evaluate(&m, &ds.test).unwrap().1
    };
    let kernels = run(train::TrainEngine::Kernels);
    let candle = run(train::TrainEngine::Candle);
    eprintln!("resnet-mini on shapes, 10 epochs: kernels {kernels}, candle {candle}");
    assert!(
        kernels > 0.4 && candle > 0.4,
        "both learn (chance is 1/6): kernels {kernels}, candle {candle}"
    );
    assert!(
        (kernels - candle).abs() < 0.08,
        "kernels {kernels}, candle {candle}"
    );
}

/// The kernel engine's weights after training are the same, bit for bit, on one thread and
/// on two: sums over images are taken per fixed chunk and added in order.
#[test]
fn kernel_engine_results_do_not_depend_on_the_thread_count() {
    let ds = small_shapes();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let g = archproof::models::build("resnet-mini", Some(Shape::chw(1, 16, 16)), Some(6))
                .unwrap();
            let mut m = Model::new(&g, 5).unwrap();
            let cfg = TrainConfig {
                epochs: 1,
                batch_size: 50,
                seed: 5,
                engine: train::TrainEngine::Kernels,
                ..TrainConfig::default()
            };
            train::train(&mut m, &ds, &cfg, &|_| {}).unwrap();
            weights_of(&m)
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one, two, "weights differ between 1 and 2 threads");
}

/// `bench train`'s baselines: PyTorch needs --python, a Python without torch is named with
/// how to install it, and --python belongs to the PyTorch baseline only.
#[test]
fn bench_train_baselines_say_what_they_need() {
    let out = archproof(&["bench", "train", "--baseline", "pytorch"]);
    assert_bad_input(&out, &["--python"]);
    let out = archproof(&["bench", "train", "--python", "python3"]);
    assert_bad_input(&out, &["--baseline pytorch"]);
    let has_torch = std::process::Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_torch {
        eprintln!("python3 has torch here: the missing-torch message is not exercised");
    } else {
        let out = archproof(&[
            "bench",
            "train",
            "--baseline",
            "pytorch",
            "--python",
            "python3",
        ]);
        assert_bad_input(&out, &["has no torch", "pip install torch"]);
    }
}

/// The PyTorch mirrors of cnn-tiny, resnet-tiny and an NB201 network have archproof's
/// parameter counts (the command refuses otherwise), and one short round gives ratios.
#[test]
#[cfg_attr(
    not(torch_python),
    ignore = "needs ARCHPROOF_TORCH_PYTHON, a Python with torch (see the README)"
)]
fn pytorch_mirrors_match_and_measure() {
    let py = std::env::var("ARCHPROOF_TORCH_PYTHON").unwrap();
    let cell = "nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|";
    let out = archproof(&[
        "bench",
        "train",
        "--model",
        "cnn-tiny",
        "--model",
        "resnet-tiny",
        "--model",
        cell,
        "--baseline",
        "pytorch",
        "--python",
        &py,
        "--seconds",
        "0.2",
        "--rounds",
        "1",
        "--json",
    ]);
    let v = common::ok_json(&out);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for m in models {
        assert!(m["ratio_train"].as_f64().unwrap() > 0.0, "{m}");
        assert!(
            m["baseline"]["train_images_per_s"].as_f64().unwrap() > 0.0,
            "{m}"
        );
    }
    assert_eq!(models[0]["params"], 39110);
}

/// Acceptance: for every IR operator, candle's gradients agree with finite differences.
#[test]
fn gradients_match_finite_differences_for_every_operator() {
    for (what, g) in &operator_cases() {
        g.analyze().unwrap_or_else(|e| panic!("{what}: {e}"));
        grad_check(g, 3, what);
    }
}

#[test]
fn exported_onnx_runs_in_tract_with_candles_outputs() {
    let ds = small_shapes();
    for name in ["mlp:32-16", "cnn-tiny", "resnet-tiny"] {
        let g = archproof::models::build(name, None, None).unwrap();
        let mut m = Model::new(&g, 1).unwrap();
        let cfg = TrainConfig {
            epochs: 1,
            ..TrainConfig::default()
        };
        train::train(&mut m, &ds, &cfg, &|_| {}).unwrap();
        let bytes = export::to_onnx(&m.to_graph().unwrap()).unwrap();
        let n = 5;
        let x = &ds.test.x[..n * 256];
        let ours = m
            .forward(&m.batch(x, n).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let theirs = tract_forward(&bytes, &[n, 1, 16, 16], x);
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{name}: candle {a}, tract {b}"
            );
        }
    }
}

/// Acceptance: train, export to ONNX, verify the robustness of several test points; every
/// counterexample is re-checked here by candle's forward pass.
#[test]
fn train_export_verify_end_to_end() {
    let ds = small_shapes();
    let g = archproof::models::build("mlp:24-16", None, None).unwrap();
    let mut m = Model::new(&g, 0).unwrap();
    let cfg = TrainConfig {
        epochs: 15,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    train::train(&mut m, &ds, &cfg, &|_| {}).unwrap();
    let bytes = export::to_onnx(&m.to_graph().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let net = verify::load_network(&path).unwrap();
    let opts = verify::Options {
        timeout: std::time::Duration::from_secs(20),
        ..verify::Options::default()
    };
    let (mut holds, mut violated) = (0, 0);
    for (k, eps) in [
        (0, 0.002),
        (1, 0.002),
        (2, 0.002),
        (3, 0.05),
        (4, 0.05),
        (5, 0.05),
    ] {
        let x: Vec<f64> = ds.test.input(k).iter().map(|&v| v as f64).collect();
        let label = ds.test.y[k] as usize;
        let spec = Spec::robustness(&x, eps, label, net.output_dim(), Some((0.0, 1.0)));
        let out = verify::verify(&net, &spec, &opts).unwrap();
        match out.result {
            Verdict::Holds => holds += 1,
            Verdict::Violated => {
                violated += 1;
                let c = out.counterexample.as_ref().expect("a counterexample");
                let xf: Vec<f32> = c.input.iter().map(|&v| v as f32).collect();
                assert!(c
                    .input
                    .iter()
                    .zip(&x)
                    .all(|(a, b)| (a - b).abs() <= eps + 1e-9 && (0.0..=1.0).contains(a)));
                let pred = train::predict(&m, &xf, 1).unwrap()[0] as usize;
                let y = m
                    .forward(&m.batch(&xf, 1).unwrap())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let other = y
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != label)
                    .map(|(_, v)| *v)
                    .fold(f32::NEG_INFINITY, f32::max);
                assert!(
                    pred != label || (other - y[label]).abs() < 1e-4,
                    "point {k}: candle confirms the counterexample"
                );
            }
            Verdict::Unknown => {}
        }
    }
    eprintln!("end to end: {holds} hold, {violated} violated");
    assert!(
        holds >= 2,
        "small radii around test points are proven: {holds}"
    );
}

/// `train` on part of a dataset: every class keeps its share of each split.
#[test]
fn train_uses_part_of_a_dataset() {
    let out = archproof(&[
        "train",
        "--model",
        "mlp:8",
        "--dataset",
        "shapes",
        "--epochs",
        "1",
        "--train-examples",
        "120",
        "--test-examples",
        "60",
        "--json",
    ]);
    let v = common::ok_json(&out);
    assert_eq!(v["dataset"]["train"], 120, "{v}");
    assert_eq!(v["dataset"]["test"], 60, "{v}");
    let ds = data::load("shapes")
        .unwrap()
        .part(Some(120), Some(60))
        .unwrap();
    for k in 0..ds.classes as u32 {
        let n = ds.train.y.iter().filter(|&&y| y == k).count();
        assert_eq!(n, 20, "class {k}: {n} of the 120 training examples");
    }
    assert_bad_input(
        &archproof(&["train", "--model", "mlp:8", "--train-examples", "0"]),
        &["--train-examples"],
    );
}

#[test]
fn cli_trains_exports_and_verifies_a_dataset_point() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("mlp.onnx");
    let out = archproof(&[
        "train",
        "--model",
        "mlp:16",
        "--dataset",
        "shapes",
        "--epochs",
        "2",
        "--out",
        onnx.to_str().unwrap(),
        "--json",
    ]);
    let v = common::ok_json(&out);
    assert_eq!(v["epochs"].as_array().unwrap().len(), 2);
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.3);
    assert!(v["train_seconds"].as_f64().unwrap() > 0.0);
    assert!(dir.path().join("mlp.curves.svg").exists());
    let out = archproof(&[
        "verify",
        "--net",
        onnx.to_str().unwrap(),
        "--dataset",
        "shapes",
        "--index",
        "7",
        "--eps",
        "0.001",
        "--no-proof",
        "--json",
    ]);
    let v = common::ok_json(&out);
    assert!(v["result"].is_string(), "{v}");
    // Far outside any robust radius, for people: the class it flips to, the first values of
    // the 256-pixel counterexample, and where the proof log went (a name without '#').
    let proofs = dir.path().join("proofs");
    let out = archproof(&[
        "verify",
        "--net",
        onnx.to_str().unwrap(),
        "--dataset",
        "shapes",
        "--index",
        "7",
        "--eps",
        "0.5",
        "--proof-dir",
        proofs.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("violated: "), "{text}");
    assert!(text.contains("instead of"), "{text}");
    assert!(!text.contains("(region"), "{text}");
    assert!(text.contains("(256 values;"), "{text}");
    assert!(text.lines().all(|l| l.len() < 200), "{text}");
    let logs: Vec<_> = std::fs::read_dir(&proofs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1);
    assert!(!logs[0].to_string_lossy().contains('#'), "{logs:?}");
    assert!(
        text.contains(&format!("proof log {}", logs[0].join("log.json").display())),
        "{text}"
    );
    // Result files get the mode the umask gives a new file, as the figures do.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| p.metadata().unwrap().permissions().mode() & 0o777;
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    assert_eq!(mode(&onnx), mode(&probe), "the ONNX file's mode");
    assert_eq!(
        mode(&logs[0].join("log.json")),
        mode(&probe),
        "the proof log's mode"
    );
    // Refuses to overwrite without --force.
    let again = archproof(&[
        "train",
        "--model",
        "mlp:16",
        "--epochs",
        "1",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert_bad_input(&again, &["exists"]);
}

fn write_idx(path: &std::path::Path, dims: &[u32], data: &[u8]) {
    let mut b = vec![0u8, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    std::fs::write(path, b).unwrap();
}

#[test]
fn mnist_and_cifar_readers_read_their_formats() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let img: Vec<u8> = (0..3 * 4 * 4).map(|i| (i * 5) as u8).collect();
    write_idx(&p.join("train-images-idx3-ubyte"), &[3, 4, 4], &img);
    write_idx(&p.join("train-labels-idx1-ubyte"), &[3], &[1, 7, 9]);
    write_idx(&p.join("t10k-images-idx3-ubyte"), &[1, 4, 4], &img[..16]);
    write_idx(&p.join("t10k-labels-idx1-ubyte"), &[1], &[4]);
    let ds = data::load(&format!("mnist-idx:{}", p.display())).unwrap();
    assert_eq!(ds.shape, vec![1, 4, 4]);
    assert_eq!(ds.train.y, vec![1, 7, 9]);
    assert_eq!(ds.train.x[3], 15.0 / 255.0);
    assert_eq!(ds.test.y, vec![4]);

    let c = tempfile::tempdir().unwrap();
    let rec = |label: u8, v: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(v, 3072));
        r
    };
    std::fs::write(
        c.path().join("data_batch_1.bin"),
        [rec(3, 10), rec(8, 20)].concat(),
    )
    .unwrap();
    std::fs::write(c.path().join("test_batch.bin"), rec(5, 255)).unwrap();
    let ds = data::load(&format!("cifar10-bin:{}", c.path().display())).unwrap();
    assert_eq!(ds.shape, vec![3, 32, 32]);
    assert_eq!(ds.train.y, vec![3, 8]);
    assert_eq!(ds.test.x[100], 1.0);
    assert_eq!(ds.class_names[ds.test.y[0] as usize], "dog");

    let csv = c.path().join("d.csv");
    std::fs::write(&csv, "a,b,label\n0.5,1,0\n1,2,1\n3,4,2\n5,6,1\n7,8,0\n").unwrap();
    let ds = data::load(&format!("csv:{}", csv.display())).unwrap();
    assert_eq!(
        (ds.shape.clone(), ds.classes, ds.train.len(), ds.test.len()),
        (vec![2], 3, 4, 1)
    );
    assert_eq!(ds.test.x, vec![7.0, 8.0]);
}

/// Acceptance: malformed dataset files exit 2 with a message naming the file.
#[test]
fn malformed_dataset_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write_idx(&p.join("train-images-idx3-ubyte"), &[3, 4, 4], &[0u8; 40]); // short
    write_idx(&p.join("train-labels-idx1-ubyte"), &[3], &[1, 2, 3]);
    let train_on = |dataset: &str| {
        archproof(&[
            "train",
            "--model",
            "mlp:8",
            "--dataset",
            dataset,
            "--epochs",
            "1",
        ])
    };
    let spec = format!("mnist-idx:{}", p.display());
    assert_bad_input(&train_on(&spec), &["train-images-idx3-ubyte", "data bytes"]);

    std::fs::write(p.join("train-images-idx3-ubyte"), b"not an idx file at all").unwrap();
    assert_bad_input(&train_on(&spec), &["train-images-idx3-ubyte", "magic"]);

    std::fs::write(p.join("data_batch_1.bin"), [0u8; 100]).unwrap();
    let cifar = format!("cifar10-bin:{}", p.display());
    assert_bad_input(&train_on(&cifar), &["data_batch_1.bin", "records"]);

    let csv = p.join("bad.csv");
    std::fs::write(&csv, "1,2,0\n3,x,1\n").unwrap();
    let csv = format!("csv:{}", csv.display());
    assert_bad_input(&train_on(&csv), &["bad.csv", "row 2"]);

    std::fs::write(p.join("x_train.npy"), b"\x93NUMPY garbage").unwrap();
    assert_bad_input(&train_on(&format!("npy:{}", p.display())), &["x_train.npy"]);

    let nowhere = format!("mnist-idx:{}", p.join("nowhere").display());
    assert_bad_input(&train_on(&nowhere), &["nowhere"]);
    assert_bad_input(&train_on("imagenet"), &["unknown dataset"]);
}

/// A version-1.0 `.npy` file of little-endian values (`descr` e.g. `<f4` or `<i8`).
fn write_npy(path: &std::path::Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(bytes);
    std::fs::write(path, b).unwrap();
}

#[test]
fn npy_reader_reads_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    write_npy(
        &p.join("x_train.npy"),
        "<f4",
        &[3, 2],
        &f32s(&[0.5, 1.0, 2.0, 3.0, 4.0, 5.0]),
    );
    write_npy(&p.join("y_train.npy"), "<i8", &[3], &i64s(&[0, 2, 1]));
    write_npy(&p.join("x_test.npy"), "<f4", &[1, 2], &f32s(&[7.0, 8.0]));
    write_npy(&p.join("y_test.npy"), "<i8", &[1], &i64s(&[2]));
    let ds = data::load(&format!("npy:{}", p.display())).unwrap();
    assert_eq!((ds.shape.clone(), ds.classes), (vec![2], 3));
    assert_eq!(ds.train.x, vec![0.5, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(ds.train.y, vec![0, 2, 1]);
    assert_eq!(
        (ds.test.x.clone(), ds.test.y.clone()),
        (vec![7.0, 8.0], vec![2])
    );
}
