//! The largest L-infinity radius proven robust around a point, and the smallest refuted.
//!
//! The search brackets the radius from a typical one, [`FIRST`] (1/256): a radius that holds
//! is followed by one four times larger (up to 1), and while nothing is proven, a radius that
//! is refuted or unknown by one eight times smaller; once both ends are known it bisects. A
//! radius that holds raises the lower end, a refuted one (with its checked counterexample)
//! lowers the upper end, and an unknown one lowers it too (the proven radius must lie below).
//! Starting small matters on large networks: a query at a radius far beyond the robust one
//! only spends its whole time limit to end unknown. The answer is sound by construction:
//! `proven_robust` is a radius the verifier proved, never an estimate.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{verify, Counterexample, Network, Options, Spec, Verdict, VerifyError};

/// The first radius asked about: a typical image perturbation.
pub const FIRST: f64 = 1.0 / 256.0;

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
/// spending at most about `total` (each query gets the larger of `total / 16`, a third of what
/// is left and one and a half times the slowest query that reached a verdict or ended before
/// its first bounding pass did, within what is left and at least half a second; the search stops once `total` has passed). `opts` gives the engine and seed; its timeout is
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
    let (mut lo, mut hi) = (0.0f64, None::<f64>);
    let mut refuted: Option<(f64, Counterexample)> = None;
    let mut steps: Vec<RadiusStep> = Vec::new();
    let per_step = (total.as_secs_f64() / 16.0).max(0.5);
    let mut decided = 0.0f64;
    for _ in 0..24 {
        let eps = match hi {
            None if steps.is_empty() => FIRST,
            None => (4.0 * lo).min(1.0),
            Some(h) if lo == 0.0 => h / 8.0,
            Some(h) => 0.5 * (lo + h),
        };
        if hi.is_some_and(|h| h - lo <= 1e-4 * h.max(1e-6)) || start.elapsed() > total {
            break;
        }
        let left = total.as_secs_f64() - start.elapsed().as_secs_f64();
        let spec = Spec::robustness(x, eps, label, net.output_dim(), clip);
        let mut o = opts.clone();
        // A query needs at least about what the slowest decided one took (on a large
        // network, one bounding pass takes seconds): less would only end unknown.
        let floor = 1.5 * decided;
        o.timeout = Duration::from_secs_f64(per_step.max(left / 3.0).max(floor).min(left).max(0.5));
        o.record_smt = false;
        let out = verify(net, &spec, &o)?;
        steps.push(RadiusStep {
            eps,
            verdict: out.result,
            seconds: out.seconds,
            domains: out.stats.domains,
        });
        // A verdict, or an unknown before the first bounding pass ended (no subdomain
        // bounded): either way a query needs about that long.
        if out.result != Verdict::Unknown || out.stats.domains == 0 {
            decided = decided.max(out.seconds);
        }
        match out.result {
            Verdict::Holds => lo = eps,
            Verdict::Violated => {
                hi = Some(eps);
                if let Some(c) = out.counterexample {
                    refuted = Some((eps, c));
                }
            }
            Verdict::Unknown => hi = Some(eps),
        }
        if hi.is_none() && lo >= 1.0 {
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
