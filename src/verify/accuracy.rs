//! Verified accuracy: the share of labelled points a network classifies correctly and is
//! proven robust at, per L-infinity radius (balls clipped to [0, 1]).
//!
//! Each correctly classified point is posed to the verifier at each radius with a time limit
//! (a [`Query`], the proof log of one question); a point counts as verified only when some
//! engine proves it (unknown counts against the network), and a counterexample counts against
//! it only after a plain forward pass confirms it. Counterexamples are kept. One engine
//! proving what another refutes, at the same radius or a larger one, is a soundness error,
//! never counted.

use serde::Serialize;
use std::time::Duration;

use super::{verify, Engine, Network, Options, Spec, Verdict, VerifyError};

/// The input domain of every query: images in [0, 1].
const CLIP: Option<(f64, f64)> = Some((0.0, 1.0));

/// One point posed at one radius to one engine, and what it answered.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Query {
    /// The point, as the caller numbers its points.
    pub index: usize,
    /// The radius.
    pub eps: f64,
    /// The engine asked.
    pub engine: String,
    /// Its answer; `violated` only with a counterexample a forward pass confirmed.
    pub verdict: Verdict,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Why, when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Branch-and-bound subdomains bounded.
    #[serde(default)]
    pub domains: u64,
    /// The confirmed counterexample, when violated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Vec<f64>>,
}

impl Query {
    /// Poses "`net` classifies every input within `eps` of `x` (clipped to [0, 1]) as
    /// `label`" under `opts`, naming the engine `engine`. A counterexample that a plain
    /// forward pass does not confirm is not reported: the query is then unknown.
    pub fn run(
        net: &Network,
        index: usize,
        x: &[f64],
        label: usize,
        eps: f64,
        engine: &str,
        opts: &Options,
    ) -> Result<Query, VerifyError> {
        let spec = Spec::robustness(x, eps, label, net.output_dim(), CLIP);
        let o = verify(net, &spec, opts)?;
        let confirmed = o.counterexample.as_ref().and_then(|c| {
            spec.violated_region(&c.input, &net.forward(&c.input))
                .map(|_| c.input.clone())
        });
        let (verdict, reason) = match (o.result, &confirmed) {
            (Verdict::Holds, Some(_)) => {
                return Err(VerifyError::Unsound(format!(
                    "point {index} at eps {eps}: {engine} proved it robust and returned a counterexample a forward pass confirms"
                )))
            }
            (Verdict::Violated, None) => (
                Verdict::Unknown,
                Some("a counterexample a forward pass does not confirm".to_string()),
            ),
            (v, _) => (v, o.reason.clone()),
        };
        Ok(Query {
            index,
            eps,
            engine: engine.to_string(),
            verdict,
            seconds: o.seconds,
            reason,
            domains: o.stats.domains,
            counterexample: if verdict == Verdict::Violated {
                confirmed
            } else {
                None
            },
        })
    }
}

/// The verified accuracy at one radius.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counterexamples: Vec<(usize, Vec<f64>)>,
}

impl VerifiedAccuracy {
    /// Counts the answers at `eps` over `points` (index, classified correctly) from `queries`
    /// (any number of engines per point): verified when some engine proved the point,
    /// falsified when some engine refuted it. A point both proven and refuted is refused.
    pub fn tally(
        eps: f64,
        points: &[(usize, bool)],
        queries: &[Query],
    ) -> Result<VerifiedAccuracy, VerifyError> {
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
        let at_eps: Vec<&Query> = queries.iter().filter(|q| q.eps == eps).collect();
        v.seconds = at_eps.iter().map(|q| q.seconds).sum();
        for &(index, correct) in points {
            if !correct {
                v.misclassified += 1;
                continue;
            }
            let asked: Vec<&&Query> = at_eps.iter().filter(|q| q.index == index).collect();
            let proven = asked.iter().find(|q| q.verdict == Verdict::Holds);
            let refuted = asked.iter().find(|q| q.verdict == Verdict::Violated);
            match (proven, refuted) {
                (Some(p), Some(r)) => {
                    return Err(VerifyError::Unsound(format!(
                        "point {index} at eps {eps}: {} proved it robust, {} refuted it",
                        p.engine, r.engine
                    )))
                }
                (Some(_), None) => v.verified += 1,
                (None, Some(r)) => {
                    v.falsified += 1;
                    if let Some(c) = &r.counterexample {
                        v.counterexamples.push((index, c.clone()));
                    }
                }
                (None, None) => v.unknown += 1,
            }
        }
        v.accuracy = v.verified as f64 / points.len().max(1) as f64;
        Ok(v)
    }
}

/// The verified accuracy of `net` over `points` (input, label; numbered by position) at each
/// of `radii`, each query under `opts` (its engine and time limit). Returns the accuracy per
/// radius and every query posed; `progress` is called after each point at each radius.
pub fn verified_accuracy(
    net: &Network,
    points: &[(Vec<f64>, usize)],
    radii: &[f64],
    opts: &Options,
    progress: &dyn Fn(),
) -> Result<(Vec<VerifiedAccuracy>, Vec<Query>), VerifyError> {
    let classified: Vec<(usize, bool)> = points
        .iter()
        .enumerate()
        .map(|(i, (x, label))| (i, argmax(&net.forward(x)) == *label))
        .collect();
    let engine = opts.engine.name();
    let mut queries = Vec::new();
    let mut out = Vec::new();
    for &eps in radii {
        for (i, (x, label)) in points.iter().enumerate() {
            if classified[i].1 {
                queries.push(Query::run(net, i, x, *label, eps, engine, opts)?);
            }
            progress();
        }
        out.push(VerifiedAccuracy::tally(eps, &classified, &queries)?);
    }
    check_nested(&queries)?;
    Ok((out, queries))
}

/// Refuses answers that contradict each other across radii: a point refuted at one radius
/// cannot be proven at a larger one (the larger ball holds the counterexample). Such a pair
/// is a soundness error of an engine.
pub fn check_nested(queries: &[Query]) -> Result<(), VerifyError> {
    for r in queries.iter().filter(|q| q.verdict == Verdict::Violated) {
        if let Some(p) = queries
            .iter()
            .find(|p| p.index == r.index && p.verdict == Verdict::Holds && p.eps >= r.eps)
        {
            return Err(VerifyError::Unsound(format!(
                "point {}: {} refuted it at eps {} and {} proved it robust at eps {}",
                r.index, r.engine, r.eps, p.engine, p.eps
            )));
        }
    }
    Ok(())
}

/// Options for verified-accuracy queries: branch and bound under `timeout` per query.
pub fn query_options(timeout: Duration, seed: u64) -> Options {
    Options {
        timeout,
        seed,
        engine: Engine::Bab,
        record_smt: false,
        ..Options::default()
    }
}

/// The class a forward pass picks (the last of equal largest outputs).
pub fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(index: usize, eps: f64, engine: &str, verdict: Verdict) -> Query {
        Query {
            index,
            eps,
            engine: engine.into(),
            verdict,
            seconds: 0.5,
            reason: None,
            domains: 0,
            counterexample: (verdict == Verdict::Violated).then(|| vec![0.0]),
        }
    }

    #[test]
    fn a_point_counts_once_by_its_strongest_answer_and_contradictions_are_refused() {
        let points = [(0, true), (1, true), (2, true), (3, false)];
        let queries = [
            q(0, 0.1, "bounds", Verdict::Unknown),
            q(0, 0.1, "bab", Verdict::Holds),
            q(1, 0.1, "bab", Verdict::Violated),
            q(2, 0.1, "bab", Verdict::Unknown),
            q(0, 0.2, "bab", Verdict::Violated),
        ];
        let v = VerifiedAccuracy::tally(0.1, &points, &queries).unwrap();
        assert_eq!(
            (v.verified, v.falsified, v.unknown, v.misclassified),
            (1, 1, 1, 1)
        );
        assert_eq!(v.accuracy, 0.25);
        assert_eq!(v.counterexamples, vec![(1, vec![0.0])]);
        assert_eq!(v.seconds, 2.0);
        // Proven at 0.1 and refuted at 0.2 is consistent; the other way round is not.
        check_nested(&queries).unwrap();
        let bad = [
            q(4, 0.1, "bab", Verdict::Violated),
            q(4, 0.2, "smt", Verdict::Holds),
        ];
        assert!(matches!(check_nested(&bad), Err(VerifyError::Unsound(_))));
        let same = [
            q(5, 0.1, "bab", Verdict::Violated),
            q(5, 0.1, "smt", Verdict::Holds),
        ];
        assert!(matches!(
            VerifiedAccuracy::tally(0.1, &[(5, true)], &same),
            Err(VerifyError::Unsound(_))
        ));
    }
}
