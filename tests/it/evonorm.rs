//! EvoNorm layers as graphs of primitives reproduce the test vectors of the official code
//! (../shared/data/evonorm/test_vectors.json) within 1e-6.

use crate::common;

use archproof::evonorm::{named, Layer};
use archproof::ir::{Graph, Op, Shape};
use archproof::train::Model;
use candle_core::{DType, Tensor};
use common::shared_data;

fn vector(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A model of one layer over `[8, 3, 3]` inputs, in f64, with gamma, beta and v1 (or v0)
/// set from the vectors.
fn model(layer: &str, groups: Option<usize>, v: &serde_json::Value) -> Model {
    let Some(Layer::Graph(mut g)) = named(layer) else {
        panic!("{layer}")
    };
    if let Some(k) = groups {
        for n in &mut g.nodes {
            if let archproof::ir::normact::Prim::Var(archproof::ir::normact::Axes::Group(gr)) =
                &mut n.op
            {
                *gr = k;
            }
        }
    }
    let mut graph = Graph::new(layer);
    let x = graph.add_node(
        "x",
        Op::Input {
            shape: Shape::new(vec![8, 3, 3]),
        },
        &[],
    );
    let y = graph.add_node("layer", Op::NormAct(g), &[x]);
    graph.set_outputs(vec![y]);
    let m = Model::new(&graph, 0)
        .unwrap()
        .with_dtype(DType::F64)
        .unwrap();
    for (name, var) in m.named_vars() {
        let key = match name.as_str() {
            "layer.weight" => "gamma",
            "layer.bias" => "beta",
            "layer.v1" | "layer.v0" => "v",
            other => panic!("unexpected parameter {other}"),
        };
        var.set(&Tensor::new(vector(v, key), m.device()).unwrap())
            .unwrap();
    }
    m
}

fn close(what: &str, got: &Tensor, want: &[f64]) {
    let got: Vec<f64> = got.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!("{what}: largest difference {worst:.2e}");
    assert!(worst < 1e-6, "{what}: {worst}");
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn layers_reproduce_the_official_test_vectors() {
    let data = shared_data();
    let text = std::fs::read_to_string(data.join("evonorm/test_vectors.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let x = Tensor::new(vector(&v, "x"), &candle_core::Device::Cpu)
        .unwrap()
        .reshape((2, 8, 3, 3))
        .unwrap();

    let s0 = model("evonorm-s0", Some(4), &v);
    close(
        "S0, 4 groups",
        &s0.forward_batch_stats(&x).unwrap(),
        &vector(&v, "evonorm_s0_groups4"),
    );
    // 32 groups requested on 8 channels: halved until they divide, 8.
    let s0 = model("evonorm-s0", None, &v);
    close(
        "S0, 32 groups requested",
        &s0.forward(&x).unwrap(),
        &vector(&v, "evonorm_s0_groups32_request_on_C8"),
    );

    let mut b0 = model("evonorm-b0", None, &v);
    close(
        "B0 training",
        &b0.forward_train(&x).unwrap(),
        &vector(&v, "evonorm_b0_training"),
    );
    // One training step moved the moving variance from 1 with decay 0.9.
    // The batch variance is B0's primitive 0.
    let moving = b0
        .buffer_values("layer", "moving.0")
        .expect("a moving variance");
    let want = vector(&v, "moving_variance_after_one_training_step_from_ones");
    for (a, b) in moving.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "moving variance {a} vs {b}");
    }
    close(
        "B0 inference",
        &b0.forward(&x).unwrap(),
        &vector(&v, "evonorm_b0_inference_with_that_moving_variance"),
    );

    let affine = model("affine", None, &v);
    close(
        "affine only",
        &affine.forward(&x).unwrap(),
        &vector(&v, "affine_only_nonlinearity_false"),
    );
}

/// Batch normalization then ReLU written in primitives:
/// `max((x + -mean_nhw(x)) / ssqrt(var_nhw(x)), 0)`.
fn bn_relu_graph() -> archproof::ir::normact::NormActGraph {
    use archproof::ir::normact::{Axes, NormActGraph as G, Prim, PrimNode};
    let p = |op: Prim, args: &[usize]| PrimNode {
        op,
        args: args.to_vec(),
    };
    G {
        name: "bn-relu-primitives".into(),
        nodes: vec![
            p(Prim::Mean(Axes::Batch), &[G::X]), // 4
            p(Prim::Neg, &[4]),                  // 5
            p(Prim::Add, &[G::X, 5]),            // 6
            p(Prim::Var(Axes::Batch), &[G::X]),  // 7
            p(Prim::Sqrt, &[7]),                 // 8
            p(Prim::Div, &[6, 8]),               // 9
            p(Prim::Max, &[9, G::ZERO]),         // 10
        ],
    }
}

/// The rejection protocols: a layer whose output collapses (the batch mean: the same for every
/// example) fails the quality protocol; one that divides by a variance that vanishes at
/// initialisation (`x / ssqrt(var_hw(v0 * x))`, v0 = 0) fails the stability protocol;
/// batch normalization then ReLU passes both.
#[test]
fn rejection_protocols_reject_known_bad_layers_and_keep_bn_relu() {
    use archproof::evonorm::search::{LayerEvaluator, Rejection};
    use archproof::evonorm::{Anchor, AnchorTraining};
    use archproof::ir::normact::{Axes, NormActGraph as G, Prim, PrimNode};
    use archproof::search::Evaluator;
    let data = archproof::train::data::load("shapes").unwrap();
    let ev = LayerEvaluator::new(
        vec![Anchor::Resnet, Anchor::Mobilenet],
        &data,
        1000,
        300,
        AnchorTraining {
            width: 8,
            batch_size: 16,
            epochs: 1,
            lr: 0.003,
            engine: archproof::train::TrainEngine::Auto,
        },
        Rejection::default(),
    )
    .unwrap();
    let p = |op: Prim, args: &[usize]| PrimNode {
        op,
        args: args.to_vec(),
    };
    let collapse = G {
        name: "collapse".into(),
        nodes: vec![p(Prim::Mean(Axes::Batch), &[G::X])],
    };
    let vanishing = G {
        name: "vanishing-variance".into(),
        nodes: vec![
            p(Prim::Mul, &[G::V0, G::X]),       // 4
            p(Prim::Var(Axes::Instance), &[4]), // 5
            p(Prim::Sqrt, &[5]),                // 6
            p(Prim::Div, &[G::X, 6]),           // 7
        ],
    };
    let kept = ev.evaluate(&bn_relu_graph(), 0).unwrap();
    eprintln!("bn-relu in primitives: {:?}", kept.metrics);
    assert!(kept.fitness > 30.0);
    let q = ev.evaluate(&collapse, 0).unwrap_err().0;
    eprintln!("collapse: {q}");
    assert!(q.starts_with("rejected_quality"), "{q}");
    let s = ev.evaluate(&vanishing, 0).unwrap_err().0;
    eprintln!("vanishing variance: {s}");
    assert!(s.starts_with("rejected_stability"), "{s}");
}

/// The CLI: a layer file that is not a layer exits 2 with one line; show and eval work on
/// named layers; a short search runs, counts its rejections and resumes.
#[test]
fn evonorm_commands_from_the_cli() {
    use common::{archproof, assert_bad_input};
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "x", "nodes": [{"op": "add", "args": [0, 9]}]}"#,
    )
    .unwrap();
    assert_bad_input(
        &archproof(&["evonorm", "show", bad.to_str().unwrap()]),
        &["bad.json", "reads node 9"],
    );
    std::fs::write(&bad, "{ not json").unwrap();
    assert_bad_input(
        &archproof(&["evonorm", "show", bad.to_str().unwrap()]),
        &["bad.json", "not a layer"],
    );
    let out = archproof(&["evonorm", "show", "evonorm-s0", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params_per_channel"], 3);
    let fig = dir.path().join("b0.svg");
    let out = archproof(&[
        "evonorm",
        "show",
        "evonorm-b0",
        "--figure",
        fig.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let svg = std::fs::read_to_string(&fig).unwrap();
    for label in [
        "var(batch)",
        "var(instance)",
        "max",
        "div",
        "* gamma + beta",
    ] {
        assert!(svg.contains(label), "{label} not drawn");
    }
    // The drawn DAG is the layer's live graph: one box per live node, then the affine map.
    let drawn = archproof::report::Figure::read(&fig).unwrap();
    let archproof::report::Plot::Dag { nodes } = drawn.plot else {
        panic!("not a DAG figure")
    };
    let archproof::evonorm::Layer::Graph(g) = archproof::evonorm::load("evonorm-b0").unwrap()
    else {
        panic!("evonorm-b0 is a graph of primitives")
    };
    let live = g.live().iter().filter(|&&l| l).count();
    assert_eq!(nodes.len(), live + 1);
    assert_eq!(
        nodes.last().unwrap(),
        &("* gamma + beta".to_string(), vec![live - 1])
    );
    for (i, (_, args)) in nodes.iter().enumerate() {
        assert!(args.iter().all(|&a| a < i), "node {i} reads a later node");
    }

    let out = archproof(&[
        "evonorm",
        "eval",
        "--layer",
        "bn-relu,evonorm-b0",
        "--batch-sizes",
        "8",
        "--seeds",
        "1",
        "--train-examples",
        "400",
        "--width",
        "8",
        "--json",
    ]);
    let v = common::ok_json(&out);
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    let acc = v["layers"][1]["results"][0]["accuracy_mean"]
        .as_f64()
        .unwrap();
    assert!(acc > 1.0 / 6.0 * 100.0, "{acc}");

    let run = dir.path().join("evo");
    let search = |extra: &[&str]| {
        let mut args = vec!["search", "evonorm", "--json"];
        args.extend_from_slice(extra);
        let out = archproof(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = search(&[
        "--population",
        "4",
        "--trials",
        "4",
        "--train-examples",
        "300",
        "--valid-examples",
        "200",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(first["trials"], 4);
    let counted = first["evaluated"].as_u64().unwrap()
        + first["rejected_quality"].as_u64().unwrap()
        + first["rejected_stability"].as_u64().unwrap()
        + first["failed_other"].as_u64().unwrap();
    assert_eq!(counted, 4);
    let resumed = search(&["--resume", run.to_str().unwrap(), "--trials", "6"]);
    assert_eq!(resumed["trials"], 6);
    let svg = std::fs::read_to_string(run.join("rejections.svg")).unwrap();
    assert!(svg.contains("rejected for quality"));
}
