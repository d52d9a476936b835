//! Verified accuracy: the share of labelled points a network classifies correctly and is
//! proven robust at, per L-infinity radius (balls clipped to [0, 1]).
//!
//! Each correctly classified point is posed to the verifier at each radius with a time limit;
//! a point counts as verified only when the verifier proves it (unknown counts against the
//! network), and a counterexample counts against it only after a plain forward pass confirms
//! it. Counterexamples are kept.

use std::time::Duration;

use serde::Serialize;

use super::{verify, Network, Options, Spec, Verdict, VerifyError};

/// The verified accuracy at one radius.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedAccuracy {
    /// The radius.
    pub eps: f64,
    /// `verified / points`.
    pub accuracy: f64,
    /// Classified correctly and proven robust.
    pub verified: usize,
    /// Classified correctly, with a confirmed counterexample.
    pub falsified: usize,
    /// Classified correctly, neither proven nor refuted within the limit.
    pub unknown: usize,
    /// Classified wrongly (nothing to verify).
    pub misclassified: usize,
    /// Points posed.
    pub points: usize,
    /// Seconds of every query at this radius.
    pub seconds: f64,
    /// The confirmed counterexamples: (point index, input).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counterexamples: Vec<(usize, Vec<f64>)>,
}

/// The verified accuracy of `net` over `points` (input, label) at each of `radii`, each query
/// under `opts` (its engine and time limit); `progress` is called after each query.
pub fn verified_accuracy(
    net: &Network,
    points: &[(Vec<f64>, usize)],
    radii: &[f64],
    opts: &Options,
    progress: &dyn Fn(),
) -> Result<Vec<VerifiedAccuracy>, VerifyError> {
    let classes = net.output_dim();
    let predicted: Vec<usize> = points
        .iter()
        .map(|(x, _)| argmax(&net.forward(x)))
        .collect();
    let mut out = Vec::new();
    for &eps in radii {
        let mut v = VerifiedAccuracy {
            eps,
            accuracy: 0.0,
            verified: 0,
            falsified: 0,
            unknown: 0,
            misclassified: 0,
            points: points.len(),
            seconds: 0.0,
            counterexamples: Vec::new(),
        };
        for (i, (x, label)) in points.iter().enumerate() {
            if predicted[i] != *label {
                v.misclassified += 1;
                progress();
                continue;
            }
            let spec = Spec::robustness(x, eps, *label, classes, Some((0.0, 1.0)));
            let o = verify(net, &spec, opts)?;
            v.seconds += o.seconds;
            match (o.result, &o.counterexample) {
                (Verdict::Holds, _) => v.verified += 1,
                (Verdict::Violated, Some(c))
                    if spec
                        .violated_region(&c.input, &net.forward(&c.input))
                        .is_some() =>
                {
                    v.falsified += 1;
                    v.counterexamples.push((i, c.input.clone()));
                }
                _ => v.unknown += 1,
            }
            progress();
        }
        v.accuracy = v.verified as f64 / points.len().max(1) as f64;
        out.push(v);
    }
    Ok(out)
}

/// Options for verified-accuracy queries: branch and bound under `timeout` per query.
pub fn query_options(timeout: Duration, seed: u64) -> Options {
    Options {
        timeout,
        seed,
        record_smt: false,
        ..Options::default()
    }
}

fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}
