//! Properties as the engines see them: an unsafe set that is a union of regions, each an input
//! box together with a conjunction of linear constraints over the outputs. The property holds
//! when no input of any region satisfies that region's constraints (VNN-LIB's convention: the
//! file asserts the unsafe set; `unsat` means the property holds).

use serde::{Deserialize, Serialize};

/// `coeffs . y + constant <= 0` (or `< 0` when strict).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputConstraint {
    /// One coefficient per network output.
    pub coeffs: Vec<f64>,
    /// The constant term.
    pub constant: f64,
    /// Whether equality is excluded.
    pub strict: bool,
}

impl OutputConstraint {
    /// `coeffs . y + constant`.
    pub fn value(&self, y: &[f64]) -> f64 {
        self.coeffs.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() + self.constant
    }

    /// Whether `y` satisfies the constraint.
    pub fn holds(&self, y: &[f64]) -> bool {
        let v = self.value(y);
        if self.strict {
            v < 0.0
        } else {
            v <= 0.0
        }
    }
}

/// An axis-aligned box of inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputBox {
    /// Lower bounds.
    pub lower: Vec<f64>,
    /// Upper bounds.
    pub upper: Vec<f64>,
}

impl InputBox {
    /// Whether `x` lies in the box.
    pub fn contains(&self, x: &[f64]) -> bool {
        x.iter()
            .zip(self.lower.iter().zip(&self.upper))
            .all(|(v, (l, u))| *l <= *v && *v <= *u)
    }

    /// The centre.
    pub fn center(&self) -> Vec<f64> {
        self.lower
            .iter()
            .zip(&self.upper)
            .map(|(l, u)| 0.5 * (l + u))
            .collect()
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.lower.len()
    }
}

/// One part of the unsafe set: inputs in `input` whose outputs meet every constraint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// The input box.
    pub input: InputBox,
    /// The conjunction over the outputs.
    pub constraints: Vec<OutputConstraint>,
}

impl Region {
    /// Whether `(x, y)` is in this part of the unsafe set.
    pub fn violated_by(&self, x: &[f64], y: &[f64]) -> bool {
        self.input.contains(x) && self.constraints.iter().all(|c| c.holds(y))
    }
}

/// A property: the union of its regions must be empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// A name for people (the file name, or a description).
    pub name: String,
    /// Network input size the spec is written for.
    pub n_inputs: usize,
    /// Network output size the spec is written for.
    pub n_outputs: usize,
    /// The unsafe set, as a union.
    pub regions: Vec<Region>,
}

impl Spec {
    /// Local robustness in the L-infinity ball of radius `eps` around `center` (intersected
    /// with `[clip.0, clip.1]` when given): every point must keep `label` strictly the largest
    /// output. A tie counts as a violation.
    pub fn robustness(
        center: &[f64],
        eps: f64,
        label: usize,
        n_outputs: usize,
        clip: Option<(f64, f64)>,
    ) -> Spec {
        let (lo, hi) = clip.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let input = InputBox {
            lower: center.iter().map(|c| (c - eps).max(lo)).collect(),
            upper: center.iter().map(|c| (c + eps).min(hi)).collect(),
        };
        let regions = (0..n_outputs)
            .filter(|&j| j != label)
            .map(|j| {
                // y_label - y_j <= 0: class j at least as large as the label.
                let mut coeffs = vec![0.0; n_outputs];
                coeffs[label] = 1.0;
                coeffs[j] = -1.0;
                Region {
                    input: input.clone(),
                    constraints: vec![OutputConstraint {
                        coeffs,
                        constant: 0.0,
                        strict: false,
                    }],
                }
            })
            .collect();
        Spec {
            name: format!("robustness eps={eps} label={label}"),
            n_inputs: center.len(),
            n_outputs,
            regions,
        }
    }

    /// The region `(x, y)` violates, if any.
    pub fn violated_region(&self, x: &[f64], y: &[f64]) -> Option<usize> {
        self.regions.iter().position(|r| r.violated_by(x, y))
    }
}
