//! Cell search spaces and their evaluators: the NAS-Bench-201 space, its tabular benchmark,
//! and cost-model evaluators that need no data.

pub mod nb201;
pub mod proxies;
pub mod table;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ir::Shape;

/// A cell space as described by a `search-spaces/*.toml` file.
///
/// ```toml
/// kind = "nb201"        # the space
/// input = [3, 32, 32]   # the network's input, CxHxW
/// classes = 10
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSpec {
    /// The space: `nb201`.
    pub kind: String,
    /// The network's input shape.
    #[serde(default = "default_input")]
    pub input: Vec<usize>,
    /// The network's class count.
    #[serde(default = "default_classes")]
    pub classes: usize,
}

fn default_input() -> Vec<usize> {
    vec![3, 32, 32]
}

fn default_classes() -> usize {
    10
}

impl SpaceSpec {
    /// Reads a space file, or takes a bare space name (`nb201`) with the defaults.
    pub fn load(spec: &str) -> Result<SpaceSpec, String> {
        let path = Path::new(spec);
        let s = if path.extension().is_some_and(|e| e == "toml") || path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{spec}: {e}"))?;
            toml::from_str::<SpaceSpec>(&text).map_err(|e| {
                format!(
                    "{spec}: {}",
                    e.to_string().lines().collect::<Vec<_>>().join(" ")
                )
            })?
        } else {
            SpaceSpec {
                kind: spec.to_string(),
                input: default_input(),
                classes: default_classes(),
            }
        };
        if s.kind != "nb201" {
            return Err(format!(
                "{spec}: unknown cell space '{}' (known: nb201)",
                s.kind
            ));
        }
        if s.input.len() != 3 || s.input.contains(&0) || s.classes == 0 {
            return Err(format!(
                "{spec}: input must be [C, H, W] of positive sizes and classes at least 1"
            ));
        }
        Ok(s)
    }

    /// The input shape.
    pub fn input_shape(&self) -> Shape {
        Shape::new(self.input.clone())
    }
}
