//! Soundness on many random small networks: every "holds" survives dense sampling and a
//! gradient attack, every "violated" is confirmed by a forward pass, and the branch-and-bound
//! engine never contradicts the plain Z3 encoding.

use std::time::{Duration, Instant};

use archproof::verify::falsify::Falsifier;
use archproof::verify::graph::lower::Window;
use archproof::verify::graph::{Affine, Builder, Linear, NodeId, Op, Smooth};
use archproof::verify::spec::{InputBox, OutputConstraint, Region, Spec};
use archproof::verify::Network;
use archproof::verify::{verify, Engine, Options, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_net(rng: &mut ChaCha8Rng, dims: &[usize]) -> Network {
    let mut layers = Vec::new();
    for w in dims.windows(2) {
        let (n_in, n_out) = (w[0], w[1]);
        let scale = 1.0 / (n_in as f64).sqrt();
        layers.push((
            Affine {
                linear: Linear::Dense {
                    rows: n_out,
                    cols: n_in,
                    w: (0..n_in * n_out)
                        .map(|_| rng.random_range(-2.0..2.0) * scale)
                        .collect(),
                },
                bias: (0..n_out).map(|_| rng.random_range(-0.3..0.3)).collect(),
            },
            true,
        ));
    }
    layers.last_mut().unwrap().1 = false;
    Network::chain(vec![dims[0]], layers).unwrap()
}

fn random_spec(rng: &mut ChaCha8Rng, n_in: usize, n_out: usize) -> Spec {
    let mut regions = Vec::new();
    for _ in 0..rng.random_range(1..3) {
        let lower: Vec<f64> = (0..n_in).map(|_| rng.random_range(-1.0..0.5)).collect();
        let upper: Vec<f64> = lower
            .iter()
            .map(|l| l + rng.random_range(0.05..0.6))
            .collect();
        let constraints = (0..rng.random_range(1..3))
            .map(|_| OutputConstraint {
                coeffs: (0..n_out).map(|_| rng.random_range(-1.0..1.0)).collect(),
                constant: rng.random_range(-0.4..0.4),
                strict: false,
            })
            .collect();
        regions.push(Region {
            input: InputBox { lower, upper },
            constraints,
        });
    }
    Spec {
        name: "random".into(),
        n_inputs: n_in,
        n_outputs: n_out,
        regions,
    }
}

/// Looks hard for a counterexample: a dense grid-like sample and a gradient attack.
fn attack(net: &Network, spec: &Spec, seed: u64) -> Option<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let strong = Falsifier {
        samples: 20_000,
        restarts: 64,
        steps: 200,
    };
    let far = Instant::now() + Duration::from_secs(30);
    spec.regions
        .iter()
        .find_map(|r| strong.run(net, r, &mut rng, far))
}

#[test]
fn verdicts_are_sound_and_engines_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let (mut holds, mut violated, mut disagreements) = (0, 0, Vec::new());
    for case in 0..60 {
        let n_in = rng.random_range(2..5);
        let dims = [n_in, rng.random_range(4..10), rng.random_range(4..10), 2];
        let net = random_net(&mut rng, &dims);
        let spec = random_spec(&mut rng, n_in, 2);
        let opts = Options {
            timeout: Duration::from_secs(20),
            ..Options::default()
        };
        let bab = verify(&net, &spec, &opts).unwrap();
        let smt = verify(
            &net,
            &spec,
            &Options {
                engine: Engine::Smt,
                ..opts
            },
        )
        .unwrap();
        match bab.result {
            Verdict::Holds => {
                holds += 1;
                if let Some(x) = attack(&net, &spec, case) {
                    panic!("case {case}: 'holds' but {x:?} violates the spec");
                }
            }
            Verdict::Violated => {
                violated += 1;
                let c = bab.counterexample.as_ref().unwrap();
                let y = net.forward(&c.input);
                assert!(
                    spec.violated_region(&c.input, &y).is_some(),
                    "case {case}: unconfirmed"
                );
            }
            Verdict::Unknown => {}
        }
        if let Verdict::Violated = smt.result {
            let c = smt.counterexample.as_ref().unwrap();
            assert!(spec
                .violated_region(&c.input, &net.forward(&c.input))
                .is_some());
        }
        let opposite = matches!(
            (bab.result, smt.result),
            (Verdict::Holds, Verdict::Violated) | (Verdict::Violated, Verdict::Holds)
        );
        if opposite {
            disagreements.push(case);
        }
    }
    assert!(
        disagreements.is_empty(),
        "engines disagree on cases {disagreements:?}"
    );
    // The sample must exercise both answers.
    assert!(
        holds >= 10 && violated >= 10,
        "holds {holds}, violated {violated}"
    );
}

/// A random dense map of `x` to `n_out` values of the given shape.
fn dense(
    b: &mut Builder,
    rng: &mut ChaCha8Rng,
    x: NodeId,
    shape: Vec<usize>,
    name: &str,
) -> NodeId {
    let (n_in, n_out) = (b.dim(x), shape.iter().product::<usize>());
    let scale = 1.5 / (n_in as f64).sqrt();
    let a = Affine {
        linear: Linear::Dense {
            rows: n_out,
            cols: n_in,
            w: (0..n_in * n_out)
                .map(|_| rng.random_range(-1.0..1.0) * scale)
                .collect(),
        },
        bias: (0..n_out).map(|_| rng.random_range(-0.3..0.3)).collect(),
    };
    b.add(name, Op::Affine(a), &[x], shape).unwrap()
}

/// A random DAG: a residual block on a [2, 2, 2] map (a [1, 2, 2] one for piecewise-linear
/// networks, which Z3 also decides), max pooling, a side branch through a
/// sigmoid (or a LeakyReLU), a concatenation, a classifier.
fn random_dag(rng: &mut ChaCha8Rng, n_in: usize, smooth: bool) -> Network {
    let mut b = Builder::new(vec![n_in]);
    let x = b.input();
    let map = vec![if smooth { 2 } else { 1 }, 2, 2];
    let a = dense(&mut b, rng, x, map.clone(), "a");
    let r = b.relu("r", a).unwrap();
    let c = dense(&mut b, rng, r, map, "c");
    let rc = b.relu("rc", c).unwrap();
    let res = b.sum("res", &[rc, r], vec![1.0, 1.0]).unwrap();
    let win = Window {
        kernel: [2, 2],
        stride: [1, 1],
        pads: [0; 4],
        dilation: [1, 1],
    };
    let pool = b.max_pool("pool", res, win).unwrap();
    let side = dense(&mut b, rng, x, vec![3, 1, 1], "side");
    let s = if smooth {
        b.smooth("sig", side, Smooth::Sigmoid).unwrap()
    } else {
        b.leaky_relu("leaky", side, 0.1).unwrap()
    };
    let cat = b.concat_channels("cat", &[pool, s]).unwrap();
    let out = dense(&mut b, rng, cat, vec![2], "out");
    b.finish(out).unwrap()
}

#[test]
fn dag_verdicts_are_sound_and_engines_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let (mut holds, mut violated, mut disagreements) = (0, 0, Vec::new());
    let mut z3_decided = 0;
    for case in 0..40 {
        let n_in = rng.random_range(2..4);
        let smooth = case % 2 == 1;
        let net = random_dag(&mut rng, n_in, smooth);
        assert_eq!(net.is_piecewise_linear(), !smooth);
        let spec = random_spec(&mut rng, n_in, 2);
        let opts = Options {
            timeout: Duration::from_secs(20),
            ..Options::default()
        };
        let bab = verify(&net, &spec, &opts).unwrap();
        match bab.result {
            Verdict::Holds => {
                holds += 1;
                if let Some(x) = attack(&net, &spec, case) {
                    panic!("case {case}: 'holds' but {x:?} violates the spec");
                }
            }
            Verdict::Violated => {
                violated += 1;
                let c = bab.counterexample.as_ref().unwrap();
                let y = net.forward(&c.input);
                assert!(
                    spec.violated_region(&c.input, &y).is_some(),
                    "case {case}: unconfirmed"
                );
            }
            Verdict::Unknown => {}
        }
        if !smooth {
            // Z3 alone is slow on these; where it decides, it must agree.
            let smt = verify(
                &net,
                &spec,
                &Options {
                    engine: Engine::Smt,
                    timeout: Duration::from_secs(5),
                    ..opts
                },
            )
            .unwrap();
            z3_decided += (smt.result != Verdict::Unknown) as usize;
            if let Verdict::Violated = smt.result {
                let c = smt.counterexample.as_ref().unwrap();
                assert!(spec
                    .violated_region(&c.input, &net.forward(&c.input))
                    .is_some());
            }
            if matches!(
                (bab.result, smt.result),
                (Verdict::Holds, Verdict::Violated) | (Verdict::Violated, Verdict::Holds)
            ) {
                disagreements.push(case);
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "engines disagree on cases {disagreements:?}"
    );
    eprintln!(
        "random DAGs: {holds} hold, {violated} violated, {} unknown; Z3 decided {z3_decided} of 20",
        40 - holds - violated
    );
    assert!(
        holds >= 5 && violated >= 5,
        "holds {holds}, violated {violated}"
    );
    assert!(
        z3_decided >= 5,
        "Z3 decided only {z3_decided} of the piecewise-linear cases"
    );
}

/// The three exact decisions of branch and bound (one MILP, one LP per phase pattern, Z3)
/// never contradict each other or an attack, on networks large enough that each is reached
/// with several unstable neurons.
#[test]
fn exact_decisions_agree() {
    use archproof::verify::Exact;
    let mut rng = ChaCha8Rng::seed_from_u64(5150);
    let mut decided = [0usize; 3];
    for case in 0..24 {
        let n_in = rng.random_range(2..4);
        let dims = [n_in, 12, 12, 2];
        let net = random_net(&mut rng, &dims);
        let spec = random_spec(&mut rng, n_in, 2);
        let verdicts: Vec<Verdict> = Exact::ALL
            .iter()
            .map(|&exact| {
                let out = verify(
                    &net,
                    &spec,
                    &Options {
                        timeout: Duration::from_secs(10),
                        exact,
                        ..Options::default()
                    },
                )
                .unwrap();
                if let Some(c) = &out.counterexample {
                    assert!(spec
                        .violated_region(&c.input, &net.forward(&c.input))
                        .is_some());
                }
                out.result
            })
            .collect();
        for (k, v) in verdicts.iter().enumerate() {
            decided[k] += (*v != Verdict::Unknown) as usize;
        }
        assert!(
            !(verdicts.contains(&Verdict::Holds) && verdicts.contains(&Verdict::Violated)),
            "case {case}: {:?} disagree: {verdicts:?}",
            Exact::ALL
        );
        if verdicts.contains(&Verdict::Holds) {
            if let Some(x) = attack(&net, &spec, case) {
                panic!("case {case}: 'holds' but {x:?} violates the spec");
            }
        }
    }
    assert!(
        decided.iter().all(|&d| d >= 20),
        "decided per method {decided:?} of 24"
    );
}
