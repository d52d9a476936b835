//! The largest L-infinity radius proven robust around a point, and the smallest refuted.
//!
//! The radius is searched by halving from 1 and then bisecting: a radius that holds raises the
//! lower end, a refuted one (with its checked counterexample) lowers the upper end, and an
//! unknown one lowers it too (the proven radius must lie below). While nothing is proven, an
//! unknown radius is followed by one eight times smaller, so that a network whose every query
//! is slow still gets a proven radius within the budget. The answer is sound by construction:
//! `proven_robust` is a radius the verifier proved, never an estimate.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{verify, Counterexample, Network, Options, Spec, Verdict, VerifyError};

/// One query of the search.
#[derive(Debug, Clone, Serialize)]
pub struct RadiusStep {
    /// The radius asked about.
    pub eps: f64,
    /// The verifier's answer.
    pub verdict: Verdict,
    /// Its wall-clock seconds.
    pub seconds: f64,
    /// Subdomains branch and bound visited.
    pub domains: u64,
}

/// What [`max_radius`] found.
#[derive(Debug, Clone, Serialize)]
pub struct RadiusResult {
    /// The class that must stay the largest output.
    pub label: usize,
    /// The largest radius proven robust (0 when none was).
    pub proven_robust: f64,
    /// The smallest radius refuted with a counterexample.
    pub refuted: Option<f64>,
    /// The counterexample at `refuted`, confirmed by a forward pass.
    pub counterexample: Option<Counterexample>,
    /// Every query, in order.
    pub steps: Vec<RadiusStep>,
    /// Wall-clock seconds of the whole search.
    pub seconds: f64,
}

/// Searches the robustness radius of `net` at `x` for `label`, within `clip` (an input range),
/// spending at most about `total` (each query gets the larger of `total / 16` and a third of
/// what is left, at least half a second, and the search stops once `total` has passed). `opts` gives the engine and seed; its timeout is
/// replaced per query.
pub fn max_radius(
    net: &Network,
    x: &[f64],
    label: usize,
    clip: Option<(f64, f64)>,
    opts: &Options,
    total: Duration,
) -> Result<RadiusResult, VerifyError> {
    let start = Instant::now();
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut refuted: Option<(f64, Counterexample)> = None;
    let mut steps: Vec<RadiusStep> = Vec::new();
    let per_step = (total.as_secs_f64() / 16.0).max(0.5);
    let mut unknown_seen = false;
    for _ in 0..24 {
        if hi - lo <= 1e-4 * hi.max(1e-6) || start.elapsed() > total {
            break;
        }
        // Halve from the top until something is not refuted, then bisect.
        let eps = if steps.is_empty() {
            hi
        } else if unknown_seen && lo == 0.0 {
            hi / 8.0
        } else {
            0.5 * (lo + hi)
        };
        let left = total.as_secs_f64() - start.elapsed().as_secs_f64();
        let spec = Spec::robustness(x, eps, label, net.output_dim(), clip);
        let mut o = opts.clone();
        o.timeout = Duration::from_secs_f64(per_step.max(left / 3.0));
        o.record_smt = false;
        let out = verify(net, &spec, &o)?;
        steps.push(RadiusStep {
            eps,
            verdict: out.result,
            seconds: out.seconds,
            domains: out.stats.domains,
        });
        match out.result {
            Verdict::Holds => lo = eps,
            Verdict::Violated => {
                hi = eps;
                refuted = out.counterexample.map(|c| (eps, c));
            }
            Verdict::Unknown => {
                hi = eps;
                unknown_seen = true;
            }
        }
        if steps.len() == 1 && out.result == Verdict::Holds {
            break; // robust on the whole unit ball
        }
    }
    Ok(RadiusResult {
        label,
        proven_robust: lo,
        refuted: refuted.as_ref().map(|r| r.0),
        counterexample: refuted.map(|r| r.1),
        steps,
        seconds: start.elapsed().as_secs_f64(),
    })
}
