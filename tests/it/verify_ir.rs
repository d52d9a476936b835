//! archproof IR JSON with weights as a verifier input: the same function as the source network,
//! an independent forward pass for convolutions and batch norm, verdicts from the CLI, and clear
//! errors for graphs the verifier cannot read.

use crate::common;

use archproof::ir::{io, Activation, Graph, Op, Shape, Tensor, Weights};
use archproof::verify::graph::{Linear, Op as VOp};
use archproof::verify::load_network;
use common::{archproof, assert_bad_input};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn weights(pairs: Vec<(&str, Vec<usize>, Vec<f32>)>) -> Weights {
    pairs
        .into_iter()
        .map(|(n, s, d)| (n.to_string(), Tensor::new(s, d).expect("sizes agree")))
        .collect()
}

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// An ACAS Xu network rebuilt as an IR graph of linear layers and ReLUs.
fn acas_as_ir(net: &archproof::verify::Network) -> Graph {
    let mut g = Graph::new("acasxu");
    let mut prev = g.add_node(
        "x",
        Op::Input {
            shape: Shape::new(vec![5]),
        },
        &[],
    );
    for (k, node) in net.nodes().iter().enumerate().skip(1) {
        prev = match &node.op {
            VOp::Affine(a) => {
                let Linear::Dense { rows, cols, w } = &a.linear else {
                    panic!("ACAS Xu is dense")
                };
                let id = g.add_node(
                    format!("fc{k}"),
                    Op::Linear {
                        out_features: *rows,
                        bias: true,
                    },
                    &[prev],
                );
                g.set_weights(
                    id,
                    weights(vec![
                        (
                            "weight",
                            vec![*rows, *cols],
                            w.iter().map(|v| *v as f32).collect(),
                        ),
                        (
                            "bias",
                            vec![*rows],
                            a.bias.iter().map(|v| *v as f32).collect(),
                        ),
                    ]),
                );
                id
            }
            VOp::Relu(_) => g.add_node(
                format!("relu{k}"),
                Op::Act {
                    function: Activation::Relu,
                },
                &[prev],
            ),
            other => panic!("ACAS Xu has no {} node", other.kind()),
        };
    }
    g.set_outputs(vec![prev]);
    g
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn acas_xu_as_ir_json_computes_the_same_function_and_verifies() {
    let data = common::shared_data();
    let dir = tempfile::tempdir().unwrap();
    let onnx = data.join("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx");
    let net = load_network(&onnx).unwrap();
    let graph = acas_as_ir(&net);
    assert!(graph.has_weights().unwrap());
    assert_eq!(graph.analyze().unwrap().totals.params, 13_305);
    let path = dir.path().join("acas.json");
    std::fs::write(&path, io::to_json(&graph).unwrap()).unwrap();
    let back = load_network(&path).unwrap();
    assert_eq!(back.relu_count(), 300);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..100 {
        let x: Vec<f64> = (0..5).map(|_| rng.random_range(-0.5..0.5)).collect();
        let (a, b) = (net.forward(&x), back.forward(&x));
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-9, "{a:?} vs {b:?}");
        }
    }
    // Known answers: prop_3 holds on 1_1 (expected.csv), prop_2 is violated on 2_9 is not
    // needed here; prop_1 holds on 1_1.
    for (prop, want) in [("prop_3", "holds"), ("prop_1", "holds")] {
        let spec = data.join(format!("acasxu/vnnlib/{prop}.vnnlib"));
        let out = archproof(&[
            "verify",
            "--net",
            path.to_str().unwrap(),
            "--spec",
            spec.to_str().unwrap(),
            "--timeout",
            "60",
            "--no-proof",
            "--json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["result"], want, "{prop}");
    }
}

/// A plain, independent forward pass of conv (stride, padding), batch norm, ReLU, flatten and
/// linear, written here from the definitions.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f64],
    [c, h, w]: [usize; 3],
    oc: usize,
    k: usize,
    s: usize,
    p: usize,
    wt: &[f32],
    b: &[f32],
) -> (Vec<f64>, [usize; 3]) {
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    let mut y = vec![0.0; oc * oh * ow];
    for o in 0..oc {
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = b[o] as f64;
                for ci in 0..c {
                    for ki in 0..k {
                        for kj in 0..k {
                            let (r, q) = (
                                (i * s + ki) as isize - p as isize,
                                (j * s + kj) as isize - p as isize,
                            );
                            if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                                acc += wt[((o * c + ci) * k + ki) * k + kj] as f64
                                    * x[(ci * h + r as usize) * w + q as usize];
                            }
                        }
                    }
                }
                y[(o * oh + i) * ow + j] = acc;
            }
        }
    }
    (y, [oc, oh, ow])
}

#[test]
fn a_conv_batchnorm_graph_with_weights_matches_a_plain_forward_pass() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (cw, cb) = (
        random(&mut rng, 4 * 2 * 3 * 3, 0.5),
        random(&mut rng, 4, 0.1),
    );
    let (gamma, beta, mean) = (
        random(&mut rng, 4, 1.0),
        random(&mut rng, 4, 0.2),
        random(&mut rng, 4, 0.3),
    );
    let var: Vec<f32> = (0..4).map(|_| rng.random_range(0.5f32..2.0)).collect();
    let (lw, lb) = (random(&mut rng, 3 * 36, 0.3), random(&mut rng, 3, 0.1));

    let mut g = Graph::new("small-cnn");
    let x = g.add_node(
        "x",
        Op::Input {
            shape: Shape::chw(2, 6, 6),
        },
        &[],
    );
    let conv = g.add_node(
        "conv",
        Op::Conv2d {
            out_channels: 4,
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        },
        &[x],
    );
    g.set_weights(
        conv,
        weights(vec![
            ("weight", vec![4, 2, 3, 3], cw.clone()),
            ("bias", vec![4], cb.clone()),
        ]),
    );
    let bn = g.add_node("bn", Op::BatchNorm, &[conv]);
    g.set_weights(
        bn,
        weights(vec![
            ("weight", vec![4], gamma.clone()),
            ("bias", vec![4], beta.clone()),
            ("running_mean", vec![4], mean.clone()),
            ("running_var", vec![4], var.clone()),
        ]),
    );
    let relu = g.add_node(
        "relu",
        Op::Act {
            function: Activation::Relu,
        },
        &[bn],
    );
    let flat = g.add_node("flat", Op::Flatten, &[relu]);
    let fc = g.add_node(
        "fc",
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[flat],
    );
    g.set_weights(
        fc,
        weights(vec![
            ("weight", vec![3, 36], lw.clone()),
            ("bias", vec![3], lb.clone()),
        ]),
    );
    g.set_outputs(vec![fc]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.json");
    let text = io::to_json(&g).unwrap();
    std::fs::write(&path, &text).unwrap();
    // The weights survive the round trip and the text is stable.
    assert_eq!(io::to_json(&io::from_json(&text).unwrap()).unwrap(), text);
    let net = load_network(&path).unwrap();
    assert_eq!((net.input_dim(), net.output_dim()), (72, 3));
    for _ in 0..20 {
        let xin: Vec<f64> = (0..72).map(|_| rng.random_range(-1.0..1.0)).collect();
        let (y, [oc, oh, ow]) = conv_ref(&xin, [2, 6, 6], 4, 3, 2, 1, &cw, &cb);
        let per = oh * ow;
        let z: Vec<f64> = (0..oc * per)
            .map(|i| {
                let c = i / per;
                let a = gamma[c] as f64 / (var[c] as f64 + 1e-5).sqrt();
                (a * (y[i] - mean[c] as f64) + beta[c] as f64).max(0.0)
            })
            .collect();
        let want: Vec<f64> = (0..3)
            .map(|o| lb[o] as f64 + (0..36).map(|i| lw[o * 36 + i] as f64 * z[i]).sum::<f64>())
            .collect();
        let got = net.forward(&xin);
        for (w, g) in want.iter().zip(&got) {
            assert!((w - g).abs() < 1e-9, "{want:?} vs {got:?}");
        }
    }
}

#[test]
fn ir_files_the_verifier_cannot_read_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("p.vnnlib");
    std::fs::write(
        &spec,
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n(assert (>= Y_0 3))\n",
    )
    .unwrap();
    let run = |name: &str, text: &str, needles: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = archproof(&[
            "verify",
            "--net",
            path.to_str().unwrap(),
            "--spec",
            spec.to_str().unwrap(),
        ]);
        let mut all = vec![name];
        all.extend_from_slice(needles);
        assert_bad_input(&out, &all);
    };
    let head = r#"{"format": "archproof-ir", "version": 1, "name": "t", "outputs": ["fc"], "nodes": [
        {"name": "x", "op": {"kind": "input", "shape": [2]}},"#;
    // No weights at all: an architecture, not a trained network.
    run(
        "noweights.json",
        &format!(
            r#"{head} {{"name": "fc", "op": {{"kind": "linear", "out_features": 2, "bias": true}}, "inputs": ["x"]}}]}}"#
        ),
        &["'fc'", "no weights"],
    );
    // A weight of the wrong shape.
    run(
        "badshape.json",
        &format!(
            r#"{head} {{"name": "fc", "op": {{"kind": "linear", "out_features": 2, "bias": false}}, "inputs": ["x"],
            "weights": {{"weight": {{"shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}}}}}}]}}"#
        ),
        &["'fc'", "shape [2, 3], expected [2, 2]"],
    );
    // Data that does not fill the shape.
    run(
        "short.json",
        &format!(
            r#"{head} {{"name": "fc", "op": {{"kind": "linear", "out_features": 2, "bias": false}}, "inputs": ["x"],
            "weights": {{"weight": {{"shape": [2, 2], "data": [1, 2, 3]}}}}}}]}}"#
        ),
        &["3 values for shape [2, 2]"],
    );
    // An operator without a relaxation.
    run(
        "gelu.json",
        &format!(
            r#"{head} {{"name": "fc", "op": {{"kind": "act", "function": "gelu"}}, "inputs": ["x"]}}]}}"#
        ),
        &["'fc'", "GELU"],
    );
}

/// A NAS-Bench-201 cell network (convolutions, a skip, average pooling, residual reductions;
/// 17 cells deep) with seeded weights, read from its IR JSON: every bound the verifier's
/// bounding pass gives contains the values of sampled inputs, and the pass (zonotopes and
/// back-substitution) is far tighter than interval arithmetic on such a deep network.
#[test]
fn bounds_of_a_seeded_cell_network_contain_sampled_activations() {
    use archproof::verify::bounds;
    use archproof::verify::spec::InputBox;
    let cell = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|";
    let g = archproof::models::build(&format!("nb201:{cell}"), Some(Shape::chw(1, 8, 8)), Some(3))
        .unwrap();
    let g = archproof::train::Model::new(&g, 7)
        .unwrap()
        .to_graph()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cell.json");
    std::fs::write(&path, io::to_json(&g).unwrap()).unwrap();
    let net = load_network(&path).unwrap();
    assert!(net.relu_count() > 1000, "{} ReLUs", net.relu_count());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let center: Vec<f64> = (0..64).map(|_| rng.random_range(0.1..0.9)).collect();
    let b = InputBox {
        lower: center.iter().map(|c| c - 0.002).collect(),
        upper: center.iter().map(|c| c + 0.002).collect(),
    };
    let tight = bounds::crown(&net, &b, &[], None).unwrap();
    let loose = bounds::interval(&net, &b);
    for _ in 0..100 {
        let x: Vec<f64> = (0..64)
            .map(|j| rng.random_range(b.lower[j]..=b.upper[j]))
            .collect();
        let values = net.forward_all(&x);
        for (k, &id) in net.activations().iter().enumerate() {
            let v = &values[net.nodes()[id].inputs[0]];
            for (n, v) in v.iter().enumerate() {
                assert!(
                    tight[k].lower[n] <= v + 1e-9 && *v <= tight[k].upper[n] + 1e-9,
                    "activation {k} element {n}: {v} outside [{}, {}]",
                    tight[k].lower[n],
                    tight[k].upper[n]
                );
            }
        }
    }
    let width = |bs: &[bounds::LayerBounds]| -> f64 {
        bs.iter()
            .flat_map(|b| b.lower.iter().zip(&b.upper).map(|(l, u)| u - l))
            .sum()
    };
    let (t, l) = (width(&tight), width(&loose));
    assert!(t < 0.01 * l, "bounding pass {t} vs intervals {l}");
    let unstable: usize = tight.iter().map(|b| b.unstable()).sum();
    eprintln!(
        "{} ReLUs, {unstable} unstable; widths {t:.3e} against intervals' {l:.3e}",
        net.relu_count()
    );
}
