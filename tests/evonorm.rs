//! EvoNorm layers as graphs of primitives reproduce the test vectors of the official code
//! (../shared/data/evonorm/test_vectors.json) within 1e-6.

mod common;

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
    let m = Model::new(&graph, 0).unwrap().with_dtype(DType::F64).unwrap();
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
fn layers_reproduce_the_official_test_vectors() {
    let Some(data) = shared_data() else { return };
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
    let moving = b0.buffer_values("layer", "moving.0").expect("a moving variance");
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
