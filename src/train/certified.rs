//! Certified training's settings and schedules (IBP, Gowal et al. 2018; CROWN-IBP, Zhang et
//! al. 2020).
//!
//! The loss of a step is `kappa CE(f(x), y) + (1 - kappa) CE(-m, y)`, where `m` bounds the
//! margins `f_y - f_j` from below over the ball of radius `eps` around `x` ([`super::bounds`]).
//! After `warmup_epochs` of natural training, `eps` grows linearly from 0 to its target over
//! `ramp_epochs` while `kappa` falls from 1 to `kappa_end`; CROWN-IBP's weight `beta` of the
//! CROWN bound falls from 1 to 0 over the same ramp (IBP alone at the end, as the paper's
//! best MNIST settings). Every setting is fixed per step, so a seed gives the same weights.

use serde::{Deserialize, Serialize};

pub use super::bounds::BoundMethod;

/// The largest global L2 norm of a certified step's gradient (larger ones are scaled down, as
/// the reference implementations of IBP and CROWN-IBP training do).
pub const MAX_GRADIENT_NORM: f64 = 10.0;

/// Settings of certified training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certified {
    /// How the margins are bounded.
    pub method: BoundMethod,
    /// The target L-infinity radius (inputs in [0, 1]).
    pub eps: f64,
    /// Epochs of natural training first.
    pub warmup_epochs: f64,
    /// Epochs over which `eps`, `kappa` and `beta` move to their final values.
    pub ramp_epochs: f64,
    /// The natural loss's final weight.
    pub kappa_end: f64,
}

/// Why certified settings are refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CertifiedError {
    /// The radius is not in (0, 1].
    #[error("--eps {0}: the radius must be in (0, 1] (inputs are scaled to [0, 1])")]
    Eps(f64),
    /// kappa_end is not in [0, 1).
    #[error("--kappa-end {0}: the natural loss's final weight must be in [0, 1) (at 1 nothing is certified)")]
    Kappa(f64),
    /// A negative or non-finite epoch count.
    #[error("--warmup-epochs and --ramp-epochs must be finite and nonnegative")]
    Epochs,
    /// The warm-up takes the whole run.
    #[error("--warmup-epochs {0} leaves none of the {1} epochs for certified training")]
    WarmupTooLong(f64, usize),
    /// Inputs outside [0, 1], where the balls are clipped.
    #[error(
        "certified training needs inputs in [0, 1] (balls are clipped to it); the dataset has {0}"
    )]
    InputRange(f32),
}

/// The weights of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepWeights {
    /// The radius of this step.
    pub eps: f64,
    /// The natural loss's weight.
    pub kappa: f64,
    /// CROWN's weight in the margin bound (0 for IBP).
    pub beta: f64,
}

impl Certified {
    /// Settings with the usual schedule for `epochs` of training: a tenth of them natural
    /// (at least one when there are more than two), the ramp over half of them, and the
    /// natural loss's weight ending at 0.5.
    pub fn new(method: BoundMethod, eps: f64, epochs: usize) -> Certified {
        let e = epochs as f64;
        Certified {
            method,
            eps,
            warmup_epochs: if epochs > 2 { (e / 10.0).max(1.0) } else { 0.0 },
            ramp_epochs: e / 2.0,
            kappa_end: 0.5,
        }
    }

    /// Checks the ranges, for a run of `epochs`.
    pub fn check(&self, epochs: usize) -> Result<(), CertifiedError> {
        if self.warmup_epochs >= epochs as f64 {
            return Err(CertifiedError::WarmupTooLong(self.warmup_epochs, epochs));
        }
        if !(self.eps > 0.0 && self.eps <= 1.0) {
            return Err(CertifiedError::Eps(self.eps));
        }
        if !(0.0..1.0).contains(&self.kappa_end) {
            return Err(CertifiedError::Kappa(self.kappa_end));
        }
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.warmup_epochs) || !ok(self.ramp_epochs) {
            return Err(CertifiedError::Epochs);
        }
        Ok(())
    }

    /// The weights of the step that begins after `epochs_done` epochs (fractional).
    pub fn at(&self, epochs_done: f64) -> StepWeights {
        let t = epochs_done - self.warmup_epochs;
        let p = if t < 0.0 {
            0.0
        } else if self.ramp_epochs <= 0.0 {
            1.0
        } else {
            (t / self.ramp_epochs).min(1.0)
        };
        StepWeights {
            eps: self.eps * p,
            kappa: 1.0 - (1.0 - self.kappa_end) * p,
            beta: match self.method {
                BoundMethod::Ibp => 0.0,
                BoundMethod::CrownIbp => 1.0 - p,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_ramps_to_its_targets() {
        let c = Certified::new(BoundMethod::CrownIbp, 0.1, 20);
        assert_eq!((c.warmup_epochs, c.ramp_epochs), (2.0, 10.0));
        let w = c.at(1.0);
        assert_eq!((w.eps, w.kappa, w.beta), (0.0, 1.0, 1.0));
        let w = c.at(7.0);
        assert!((w.eps - 0.05).abs() < 1e-12 && (w.kappa - 0.75).abs() < 1e-12);
        assert!((w.beta - 0.5).abs() < 1e-12);
        let w = c.at(19.0);
        assert_eq!((w.eps, w.kappa, w.beta), (0.1, 0.5, 0.0));
        assert_eq!(Certified::new(BoundMethod::Ibp, 0.1, 20).at(7.0).beta, 0.0);
        assert!(Certified::new(BoundMethod::Ibp, 0.0, 20).check(20).is_err());
        assert!(Certified::new(BoundMethod::Ibp, 1.5, 20).check(20).is_err());
        assert!(Certified::new(BoundMethod::Ibp, 0.1, 20).check(2).is_err());
        assert!(Certified::new(BoundMethod::Ibp, 0.1, 20).check(20).is_ok());
    }
}
