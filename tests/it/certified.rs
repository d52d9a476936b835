//! Certified training: the bound tensors training minimises, against sampled outputs and the
//! verifier's own interval arithmetic on random residual graphs; certified against natural
//! training as the verifier measures it; bad input.

use crate::common;

use archproof::ir::{Builder, Graph, Shape};
use archproof::train::bounds::Interval;
use archproof::train::data::{self, ShapesConfig};
use archproof::train::Model;
use archproof::verify;
use archproof::verify::spec::InputBox;
use candle_core::Tensor;
use common::{archproof, assert_bad_input, ok_json};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random residual network on `2 x 6 x 6` inputs: convolutions of random kernels, strides
/// and groups (plain, depthwise, two groups), batch norm, ReLU, identity or projected
/// shortcuts, average pooling, global pooling and a ReLU MLP head.
fn random_graph(rng: &mut ChaCha8Rng) -> Graph {
    let mut b = Builder::new("random");
    let mut x = b.input("input", Shape::chw(2, 6, 6)).unwrap();
    let mut c = 2;
    for i in 0..rng.random_range(1..4) {
        let k = [1, 3][rng.random_range(0..2)];
        let s = if i > 0 && rng.random_bool(0.3) { 2 } else { 1 };
        // Plain, depthwise, or two groups.
        let kind = rng.random_range(0..3);
        let (out, g) = match kind {
            1 if c > 2 => (c, c),
            2 if c % 2 == 0 => (2 * rng.random_range(1..3), 2),
            _ => (rng.random_range(2..6), 1),
        };
        let y = b.conv(&format!("conv{i}"), x, out, k, s, k / 2, g).unwrap();
        let y = b.bn(&format!("bn{i}"), y).unwrap();
        let y = if rng.random_bool(0.5) {
            let r = b.relu(&format!("relu{i}a"), y).unwrap();
            let z = b.conv(&format!("conv{i}b"), r, out, 3, 1, 1, 1).unwrap();
            let z = b.bn(&format!("bn{i}b"), z).unwrap();
            let short = if s == 1 && out == c {
                x
            } else {
                b.conv(&format!("proj{i}"), x, out, 1, s, 0, 1).unwrap()
            };
            b.add(&format!("add{i}"), &[z, short]).unwrap()
        } else {
            y
        };
        x = b.relu(&format!("relu{i}"), y).unwrap();
        // Average pooling (a window sum over the window's size, or over its elements inside
        // the input), keeping or halving the size.
        if rng.random_bool(0.4) {
            let s = if i == 0 { rng.random_range(1..3) } else { 1 };
            let op = archproof::ir::Op::AvgPool {
                kernel: [3, 3],
                stride: [s, s],
                padding: [1, 1],
                count_include_pad: rng.random_bool(0.5),
            };
            x = b.push(&format!("pool{i}"), op, &[x]).unwrap();
        }
        c = out;
    }
    let f = b.pool_flatten(x).unwrap();
    let h = b.linear("fc1", f, 5).unwrap();
    let h = b.relu("relu_fc", h).unwrap();
    let out = b.linear("fc2", h, 3).unwrap();
    b.finish(&[out]).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.flatten_from(1).unwrap().to_vec2::<f32>().unwrap()
}

/// For random graphs and boxes: every sampled output lies in the IBP bounds (evaluation mode),
/// every sampled margin is at least IBP's and CROWN-IBP's bound, and the IBP bounds of every
/// ReLU's input equal those of the verifier's interval arithmetic on the exported network.
#[test]
fn bounds_contain_sampled_outputs_and_equal_the_verifiers_intervals() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (n, d) = (4usize, 72usize);
    let mut crown_tighter = 0;
    for trial in 0..8 {
        let graph = random_graph(&mut rng);
        let mut model = Model::new(&graph, trial).unwrap();
        // Moving statistics away from 0 and 1.
        for _ in 0..5 {
            let x: Vec<f32> = (0..16 * d).map(|_| rng.random_range(0.0..1.0)).collect();
            model.forward_train(&model.batch(&x, 16).unwrap()).unwrap();
        }
        let centre: Vec<f32> = (0..n * d).map(|_| rng.random_range(0.0..1.0)).collect();
        let y: Vec<u32> = (0..n).map(|_| rng.random_range(0..3)).collect();
        let eps = 0.03;
        let xc = model.batch(&centre, n).unwrap();
        let ball = Interval::ball(&xc, eps).unwrap();
        let ivs = model.interval_bounds(&ball, None).unwrap();
        let out = ivs.last().unwrap().as_ref().unwrap();
        let (lo, hi) = (rows(&out.lo), rows(&out.hi));
        let ibp = rows(&model.margin_lower_bounds(&ball, &y, 0.0, None).unwrap());
        let crown = rows(&model.margin_lower_bounds(&ball, &y, 1.0, None).unwrap());
        let (blo, bhi) = (rows(&ball.lo), rows(&ball.hi));
        for _ in 0..200 {
            let x: Vec<f32> = (0..n * d)
                .map(|i| {
                    let (e, j) = (i / d, i % d);
                    rng.random_range(blo[e][j]..=bhi[e][j])
                })
                .collect();
            let f = rows(&model.forward(&model.batch(&x, n).unwrap()).unwrap());
            for e in 0..n {
                for j in 0..3 {
                    let tol = 1e-4 * (1.0 + f[e][j].abs());
                    assert!(lo[e][j] - tol <= f[e][j] && f[e][j] <= hi[e][j] + tol);
                    let m = f[e][y[e] as usize] - f[e][j];
                    assert!(ibp[e][j] <= m + tol, "IBP margin {} above {m}", ibp[e][j]);
                    assert!(
                        crown[e][j] <= m + tol,
                        "CROWN margin {} above {m}",
                        crown[e][j]
                    );
                }
            }
        }
        crown_tighter += (0..n)
            .flat_map(|e| (0..3).map(move |j| (e, j)))
            .filter(|&(e, j)| crown[e][j] > ibp[e][j] + 1e-6)
            .count();

        // The verifier's intervals of every ReLU's input, example by example.
        let net = verify::ir::from_graph(&model.to_graph().unwrap()).unwrap();
        for e in 0..n {
            let b = InputBox {
                lower: blo[e].iter().map(|&v| v as f64).collect(),
                upper: bhi[e].iter().map(|&v| v as f64).collect(),
            };
            let theirs = verify::bounds::interval(&net, &b);
            assert_eq!(theirs.len(), net.activations().len());
            for (k, &act) in net.activations().iter().enumerate() {
                let name = &net.nodes()[act].name;
                let id = graph
                    .node_ids()
                    .find(|&i| &graph.node(i).name == name)
                    .unwrap();
                let pre = graph.inputs_of(id)[0];
                let ours = ivs[pre.index()].as_ref().unwrap();
                let (ol, oh) = (rows(&ours.lo)[e].clone(), rows(&ours.hi)[e].clone());
                for j in 0..ol.len() {
                    let tol = 1e-4 * (1.0 + theirs[k].lower[j].abs());
                    assert!(
                        (ol[j] as f64 - theirs[k].lower[j]).abs() <= tol
                            && (oh[j] as f64 - theirs[k].upper[j]).abs() <= tol,
                        "{name}[{j}]: training [{}, {}], verifier [{}, {}]",
                        ol[j],
                        oh[j],
                        theirs[k].lower[j],
                        theirs[k].upper[j]
                    );
                }
            }
        }

        // In training mode the bounds use the clean batch's statistics: at radius 0 they are
        // the margins of that very pass.
        let (logits, stats) = model.forward_train_stats(&xc).unwrap();
        let f = rows(&logits);
        let zero = Interval::ball(&xc, 0.0).unwrap();
        for beta in [0.0, 1.0] {
            let m = rows(
                &model
                    .margin_lower_bounds(&zero, &y, beta, Some(&stats))
                    .unwrap(),
            );
            for e in 0..n {
                for j in 0..3 {
                    let want = f[e][y[e] as usize] - f[e][j];
                    assert!((m[e][j] - want).abs() <= 1e-4 * (1.0 + want.abs()));
                }
            }
        }
    }
    assert!(
        crown_tighter > 0,
        "CROWN is never tighter than IBP: suspicious"
    );
}

/// On a network without ReLUs CROWN's bound is exact: for average pools of both divisor rules,
/// strides and padding, each margin's bound equals its minimum over the box, `m(x) - eps
/// |grad m|_1` (the margin is linear; its gradient read off unit steps of the forward pass).
#[test]
fn crown_is_exact_through_average_pools() {
    use archproof::ir::Op;
    let mut b = Builder::new("pools");
    let x = b.input("input", Shape::chw(2, 5, 5)).unwrap();
    let pool = |count_include_pad, s| Op::AvgPool {
        kernel: [3, 3],
        stride: [s, s],
        padding: [1, 1],
        count_include_pad,
    };
    let p = b.push("pool_a", pool(false, 2), &[x]).unwrap();
    let p = b.push("pool_b", pool(true, 1), &[p]).unwrap();
    let p = b.push("pool_c", pool(false, 1), &[p]).unwrap();
    let f = b.push("flatten", Op::Flatten, &[p]).unwrap();
    let out = b.linear("fc", f, 3).unwrap();
    let graph = b.finish(&[out]).unwrap();
    let model = Model::new(&graph, 3).unwrap();
    let d = 50;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let centre: Vec<f32> = (0..d).map(|_| rng.random_range(0.2..0.8)).collect();
    let forward = |x: &[f32]| rows(&model.forward(&model.batch(x, 1).unwrap()).unwrap())[0].clone();
    let f0 = forward(&centre);
    let eps = 0.1f32;
    let ball = Interval::ball(&model.batch(&centre, 1).unwrap(), eps as f64).unwrap();
    for label in 0..3u32 {
        let crown = rows(
            &model
                .margin_lower_bounds(&ball, &[label], 1.0, None)
                .unwrap(),
        )[0]
        .clone();
        let margin = |f: &[f32], j: usize| (f[label as usize] - f[j]) as f64;
        for j in 0..3 {
            let mut l1 = 0.0;
            for i in 0..d {
                let mut x = centre.clone();
                x[i] += 1.0;
                l1 += (margin(&forward(&x), j) - margin(&f0, j)).abs();
            }
            let exact = margin(&f0, j) - eps as f64 * l1;
            assert!(
                (crown[j] as f64 - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                "label {label}, class {j}: CROWN {} against the exact {exact}",
                crown[j]
            );
        }
    }
}

/// The published pattern (Gowal et al. 2018): at a radius natural training leaves mostly
/// unprovable, IBP training makes most points provable; and the verifier proves at least
/// every point the training's own bounds certify.
#[test]
fn certified_training_makes_the_network_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let train = |extra: &[&str], out: &str| {
        let out = p(out);
        let mut args = vec![
            "train",
            "--model",
            "cnn-tiny",
            "--dataset",
            "shapes",
            "--epochs",
            "6",
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        args.push("--json");
        ok_json(&archproof(&args))
    };
    let cert = train(&["--certified", "ibp", "--eps", "0.03"], "ibp.json");
    let plain = train(&[], "plain.json");
    let certified_share = cert["epochs"][5]["certified_accuracy"].as_f64().unwrap();
    assert!(plain["epochs"][5].get("certified_accuracy").is_none());
    let verified = |net: &str, run: &str| {
        let v = ok_json(&archproof(&[
            "robustness",
            "--net",
            &p(net),
            "--dataset",
            "shapes",
            "--points",
            "0..40",
            "--timeout",
            "0.2",
            "--eps",
            "0.03",
            "--engines",
            "bounds",
            "--query-timeout",
            "2",
            "--out",
            &p(run),
            "--json",
        ]));
        v["verified_accuracy"]["0.03"]["accuracy"].as_f64().unwrap()
    };
    let (vc, vp) = (verified("ibp.json", "rc"), verified("plain.json", "rp"));
    eprintln!(
        "verified accuracy at 0.03 on 40 points: IBP-trained {vc}, natural {vp}; \
         IBP-certified share of the test split {certified_share}"
    );
    assert!(vc >= vp + 0.2, "IBP training: {vc}, natural: {vp}");
    assert!(certified_share > 0.2);

    // The training's own bounds on the same points never prove more than the verifier.
    let graph = archproof::ir::io::read_graph(&dir.path().join("ibp.json")).unwrap();
    let model = Model::new(&graph, 0).unwrap();
    let ds = data::shapes(&ShapesConfig::default());
    let d = ds.input_len();
    let ibp = model
        .certified_accuracy(
            &ds.test.x[..40 * d],
            &ds.test.y[..40],
            0.03,
            archproof::train::bounds::BoundMethod::Ibp,
        )
        .unwrap();
    assert!(ibp <= vc + 1e-9, "IBP certifies {ibp}, the verifier {vc}");
}

#[test]
fn certified_training_refuses_bad_settings_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("n.onnx").display().to_string();
    let base = ["train", "--model", "mlp:8", "--epochs", "1", "--out", &out];
    let run = |extra: &[&str]| archproof(&[&base[..], extra].concat());
    assert_bad_input(
        &run(&["--certified", "ibp", "--eps", "0"]),
        &["--eps", "(0, 1]"],
    );
    assert_bad_input(
        &run(&["--certified", "ibp", "--eps", "1.5"]),
        &["--eps", "(0, 1]"],
    );
    let o = run(&["--certified", "ibp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--eps"));
    let o = run(&["--eps", "0.1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--certified"));
    assert_bad_input(
        &run(&["--certified", "ibp", "--eps", "0.1", "--kappa-end", "2"]),
        &["--kappa-end"],
    );
    // MobileNetV2's ReLU6 has an interval rule but no CROWN relaxation here.
    let mb = [
        "train",
        "--model",
        "mobilenet_v2",
        "--epochs",
        "1",
        "--certified",
        "crown-ibp",
        "--eps",
        "0.1",
        "--out",
        &out,
    ];
    assert_bad_input(&archproof(&mb), &["crown-ibp", "relu6", "--certified ibp"]);
    assert!(!dir.path().join("n.onnx").exists(), "nothing written");
}

fn space(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("search-spaces")
        .join(name)
        .display()
        .to_string()
}

/// A search whose objectives include the verified accuracy: every candidate is trained
/// (certified), verified on held-out points, and its verified accuracy, unknown and refuted
/// counts and verification time are in its metrics; the front is over all three objectives.
#[test]
fn a_cell_search_trades_accuracy_verified_accuracy_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run").display().to_string();
    let v = ok_json(&archproof(&[
        "search",
        "cell",
        "--space",
        &space("nasnet.toml"),
        "--evaluator",
        "train",
        "--dataset",
        "shapes",
        "--certified",
        "ibp",
        "--objectives",
        "accuracy,verified:0.02,params_m",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--train-examples",
        "128",
        "--valid-examples",
        "40",
        "--verify-points",
        "6",
        "--verify-timeout",
        "0.3",
        "--out",
        &out,
        "--json",
    ]));
    assert!(v["evaluator"]
        .as_str()
        .unwrap()
        .contains("certified=ibp@0.02"));
    let front = v["pareto"]["front"].as_array().unwrap();
    assert!(!front.is_empty());
    assert_eq!(v["pareto"]["objectives"][1], "verified_0.02");
    for m in front.iter().map(|t| &t["metrics"]) {
        let verified = m["verified_0.02"].as_f64().unwrap();
        let unknown = m["verify_unknown_0.02"].as_f64().unwrap();
        let falsified = m["verify_falsified_0.02"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&verified));
        // Verified points are a share of 6; with the unknown and refuted ones, at most 6.
        let proven = verified / 100.0 * 6.0;
        assert!((proven - proven.round()).abs() < 1e-9);
        assert!(proven + unknown + falsified <= 6.0 + 1e-9);
        assert!(m["verify_seconds"].as_f64().unwrap() >= 0.0);
    }

    // Each front member's verified accuracy against the radius: a grid around 0.02 on its
    // record's points, through the number the search reported, saved beside its network.
    assert!(dir.path().join("run").join("verified-eps.svg").exists());
    let curves = v["verified_curves"].as_array().unwrap();
    assert_eq!(curves.len(), front.len());
    for (c, t) in curves.iter().zip(front) {
        assert_eq!(c["trial"], t["trial"]);
        let curve = c["curve"].as_array().unwrap();
        let eps: Vec<f64> = curve.iter().map(|p| p["eps"].as_f64().unwrap()).collect();
        assert_eq!(eps, vec![0.005, 0.01, 0.02, 0.04, 0.08]);
        let at = &curve[2];
        let reported = t["metrics"]["verified_0.02"].as_f64().unwrap();
        assert!((100.0 * at["accuracy"].as_f64().unwrap() - reported).abs() < 1e-9);
        for p in curve {
            assert_eq!(p["misclassified"], at["misclassified"]);
            let n = |k: &str| p[k].as_u64().unwrap();
            assert_eq!(
                n("verified") + n("falsified") + n("unknown") + n("misclassified"),
                6
            );
        }
        let saved = dir
            .path()
            .join("run")
            .join("networks")
            .join(c["network"].as_str().unwrap())
            .join("curve.json");
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
        assert_eq!(saved["curve"], c["curve"]);
    }

    // Every trained candidate's network and its verification are in the run folder, and
    // `robustness` on the same held-out training points re-derives the counts: the same
    // misclassified points (the same network and points), and at least the same proven
    // ones given more time.
    let networks: Vec<_> = std::fs::read_dir(dir.path().join("run").join("networks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(networks.len(), 2);
    assert!(dir.path().join("run").join("verified.svg").exists());
    for (k, n) in networks.iter().enumerate() {
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(n.join("verified.json")).unwrap())
                .unwrap();
        let points: Vec<String> = rec["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap().to_string())
            .collect();
        assert_eq!(points.len(), 6);
        let ours = &rec["verified_accuracy"][0];
        // The record is the proof log: one query per correctly classified point.
        let posed = rec["queries"].as_array().unwrap().len() as u64;
        assert_eq!(posed, 6 - ours["misclassified"].as_u64().unwrap());
        // The IR copy of the network computes what the ONNX one does.
        let onnx = archproof::verify::load_network(&n.join("network.onnx")).unwrap();
        let ir = archproof::verify::load_network(&n.join("network.json")).unwrap();
        let x: Vec<f64> = (0..onnx.input_dim())
            .map(|i| (i % 7) as f64 / 7.0)
            .collect();
        for (a, b) in onnx.forward(&x).iter().zip(ir.forward(&x)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} against {b}");
        }
        let run = dir.path().join(format!("re{k}")).display().to_string();
        let again = ok_json(&archproof(&[
            "robustness",
            "--net",
            &n.join("network.onnx").display().to_string(),
            "--dataset",
            "shapes",
            "--split",
            "train",
            "--points",
            &points.join(","),
            "--eps",
            "0.02",
            "--engines",
            "bab",
            "--query-timeout",
            "2",
            "--timeout",
            "0.2",
            "--out",
            &run,
            "--json",
        ]));
        let theirs = &again["verified_accuracy"]["0.02"];
        assert_eq!(theirs["misclassified"], ours["misclassified"]);
        assert!(theirs["verified"].as_u64() >= ours["verified"].as_u64());
    }
    // Each front member's number is that of a saved verification of its candidate.
    let records: Vec<serde_json::Value> = networks
        .iter()
        .map(|n| {
            serde_json::from_str(&std::fs::read_to_string(n.join("verified.json")).unwrap())
                .unwrap()
        })
        .collect();
    for t in front {
        let pct = t["metrics"]["verified_0.02"].as_f64().unwrap();
        assert!(records.iter().any(|r| r["candidate"] == t["cell"]
            && (100.0 * r["verified_accuracy"][0]["accuracy"].as_f64().unwrap() - pct).abs()
                < 1e-9));
    }
}

#[test]
fn a_search_refuses_verified_objectives_it_cannot_measure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run").display().to_string();
    let nb = space("nb201.toml");
    let base = [
        "search", "cell", "--space", &nb, "--out", &out, "--trials", "2",
    ];
    let run = |extra: &[&str]| archproof(&[&base[..], extra].concat());
    // Without training there is no trained network to verify.
    assert_bad_input(
        &run(&[
            "--evaluator",
            "proxy:synflow",
            "--objectives",
            "accuracy,verified:0.01",
        ]),
        &["verified", "--evaluator train"],
    );
    let train = ["--evaluator", "train", "--dataset", "shapes"];
    assert_bad_input(
        &run(&[&train[..], &["--objectives", "accuracy,verified:1.5"]].concat()),
        &["verified:1.5", "(0, 1]"],
    );
    assert_bad_input(
        &run(&[&train[..], &["--certified", "ibp"]].concat()),
        &["--certified", "--eps"],
    );
    assert_bad_input(
        &run(&[&train[..], &["--certified", "ibp", "--eps", "3"]].concat()),
        &["--eps", "(0, 1]"],
    );
    // CROWN-IBP has no rule for max pooling, which only some cells of the space use:
    // refused before training whichever cells the seed draws first.
    let nasnet = space("nasnet.toml");
    for seed in ["0", "1", "2", "3"] {
        let out = archproof(&[
            "search",
            "cell",
            "--space",
            &nasnet,
            "--out",
            &out,
            "--trials",
            "2",
            "--evaluator",
            "train",
            "--dataset",
            "shapes",
            "--certified",
            "crown-ibp",
            "--objectives",
            "accuracy,verified:0.01",
            "--seed",
            seed,
        ]);
        assert_bad_input(
            &out,
            &["--certified crown-ibp", "max_pool", "--certified ibp"],
        );
    }
    // A verified objective needs points and a time limit within an hour.
    for bad in [
        ["--verify-timeout", "0"],
        ["--verify-timeout", "4000"],
        ["--verify-points", "0"],
    ] {
        assert_bad_input(
            &run(&[
                &train[..],
                &["--objectives", "accuracy,verified:0.01"],
                &bad[..],
            ]
            .concat()),
            &["--verify-points", "--verify-timeout", "(0, 3600]"],
        );
    }
    // How a verified objective is measured, without one.
    assert_bad_input(
        &run(&[&train[..], &["--verify-points", "3"]].concat()),
        &["--verify-points", "verified:EPS"],
    );
    // The benchmark's accuracies are of its own network size only.
    let small = space("nb201-small.toml");
    assert_bad_input(
        &archproof(&[
            "search",
            "cell",
            "--space",
            &small,
            "--benchmark",
            "nb201-cifar10.csv",
            "--out",
            &out,
        ]),
        &["C = 16, N = 5", "--benchmark"],
    );
    // A stride-2 stem on 28x28 images leaves 7x7 maps that the second reduction block
    // cannot halve: one line naming the setting, before any trial.
    let s2 = dir.path().join("s2.toml");
    std::fs::write(
        &s2,
        "kind = \"nb201\"\nchannels = 4\ncells_per_stage = 1\nstem_stride = 2\n",
    )
    .unwrap();
    assert_bad_input(
        &archproof(&[
            "search",
            "cell",
            "--space",
            &s2.display().to_string(),
            "--evaluator",
            "train",
            "--dataset",
            "shapes:28",
            "--trials",
            "1",
            "--out",
            &out,
        ]),
        &["s2.toml", "1x28x28", "multiple of 8", "stem_stride = 1"],
    );
    assert!(!dir.path().join("run").join("summary.json").exists());
}
