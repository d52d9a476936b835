//! The 2-20-20-2 network of the SMT-verification paper: verdicts on regions agree with
//! exhaustive checks on a fine grid of manipulations.

use crate::common;

use std::time::Duration;

use archproof::verify::dlv::ManipulationSpec;
use archproof::verify::{load_network, verify, Options, Verdict};

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn region_verdicts_agree_with_fine_grids() {
    let data = common::shared_data();
    let net = load_network(&data.join("dlv/mlp_2x20x20x2.json")).unwrap();
    assert_eq!((net.input_dim(), net.output_dim()), (2, 2));
    let (mut holds, mut violated) = (0, 0);
    for cx in [0.5, 1.5, 2.5, 3.0, 3.5, 4.5, 5.5] {
        for cy in [0.5, 2.0, 3.5, 5.0, 6.0] {
            for radius in [0.05, 0.2, 0.5] {
                let center = vec![cx, cy];
                let y = net.forward(&center);
                let label = if y[0] >= y[1] { 0 } else { 1 };
                let spec = ManipulationSpec {
                    center,
                    dims: vec![0, 1],
                    radius,
                    step: radius / 50.0,
                    label,
                };
                let grid = spec.exhaustive(&net);
                assert_eq!(grid.points, 101 * 101);
                let box_spec = spec.region_spec(2);
                let out = verify(
                    &net,
                    &box_spec,
                    &Options {
                        timeout: Duration::from_secs(30),
                        ..Options::default()
                    },
                )
                .unwrap();
                match out.result {
                    Verdict::Holds => {
                        holds += 1;
                        assert_eq!(
                            grid.misclassified, 0,
                            "({cx}, {cy}) r={radius}: holds but the grid disagrees"
                        );
                    }
                    Verdict::Violated => {
                        violated += 1;
                        let c = out.counterexample.unwrap();
                        assert!(box_spec
                            .violated_region(&c.input, &net.forward(&c.input))
                            .is_some());
                    }
                    Verdict::Unknown => panic!("({cx}, {cy}) r={radius}: unknown on a 2-D network"),
                }
                if grid.misclassified > 0 {
                    assert_eq!(out.result, Verdict::Violated, "({cx}, {cy}) r={radius}");
                }
            }
        }
    }
    assert!(
        holds >= 10 && violated >= 10,
        "holds {holds}, violated {violated}"
    );
}
