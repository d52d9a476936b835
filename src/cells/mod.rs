//! Cell search spaces and their evaluators: the NAS-Bench-201 and NASNet spaces, the tabular
//! benchmark, zero-cost proxies, short training, and cost-model evaluators that need no data.

pub mod curves;
pub mod evaluators;
pub mod figures;
pub mod metric;
pub mod nasnet;
pub mod nb201;
pub mod proxies;
pub mod search;
pub mod table;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ir::{Graph, IrError, Shape};
use crate::search::{DecodeError, Space};

/// What is wrong with a cell space's inputs; each message names the file, line or text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CellsError {
    /// A space file is missing, malformed or inconsistent.
    #[error("{0}")]
    Space(String),
    /// A benchmark table is missing or malformed.
    #[error("{0}")]
    Table(String),
    /// A cell's or genotype's text is not one of the space.
    #[error("{0}")]
    Cell(String),
    /// A search's settings are impossible or do not fit together (the message names the
    /// setting as the command line spells it).
    #[error("{0}")]
    Settings(String),
    /// The dataset a search trains on or feeds its proxies could not be read.
    #[error("{0}")]
    Data(String),
}

impl From<CellsError> for DecodeError {
    fn from(e: CellsError) -> Self {
        DecodeError(e.to_string())
    }
}

impl From<CellsError> for crate::search::EvalError {
    fn from(e: CellsError) -> Self {
        crate::search::EvalError(e.to_string())
    }
}

/// A cell space whose candidates build into networks.
pub trait CellSpace: Space {
    /// The network of a candidate.
    fn network(&self, c: &Self::Candidate) -> Result<Graph, IrError>;
}

impl CellSpace for nasnet::NasnetSpace {
    fn network(&self, c: &nasnet::NasnetGenotype) -> Result<Graph, IrError> {
        nasnet::NasnetSpace::network(self, c)
    }
}

/// The NAS-Bench-201 space with the input, classes and size of its networks.
#[derive(Debug, Clone, PartialEq)]
pub struct Nb201Networks {
    /// Input `[C, H, W]`.
    pub input: Shape,
    /// Classes.
    pub classes: usize,
    /// The network around the cell (the benchmark's: C = 16, N = 5, a stride-1 stem).
    pub skeleton: nb201::Skeleton,
}

impl Nb201Networks {
    /// Whether the networks are the benchmark's (C = 16, N = 5, a stride-1 stem), the ones
    /// its table's accuracies are of.
    pub fn is_benchmark(&self) -> bool {
        self.skeleton == nb201::Skeleton::BENCHMARK
    }

    /// Why a table of the benchmark cannot serve these networks, for an error line: the
    /// benchmark's size against this space's.
    pub fn not_benchmark_reason(&self) -> String {
        let k = self.skeleton;
        let b = nb201::Skeleton::BENCHMARK;
        format!(
            "the benchmark's accuracies are of its C = {}, N = {} networks with a stride-1 stem, not of this space's C = {}, N = {}, stem stride {}",
            b.channels, b.cells_per_stage, k.channels, k.cells_per_stage, k.stem_stride
        )
    }
}

impl Space for Nb201Networks {
    type Candidate = nb201::Nb201Cell;

    fn name(&self) -> &str {
        nb201::Nb201Space.name()
    }
    fn sample(&self, rng: &mut rand_chacha::ChaCha8Rng) -> nb201::Nb201Cell {
        nb201::Nb201Space.sample(rng)
    }
    fn mutate(&self, p: &nb201::Nb201Cell, rng: &mut rand_chacha::ChaCha8Rng) -> nb201::Nb201Cell {
        nb201::Nb201Space.mutate(p, rng)
    }
    fn neighbours(&self, c: &nb201::Nb201Cell) -> Vec<nb201::Nb201Cell> {
        nb201::Nb201Space.neighbours(c)
    }
    fn encode(&self, c: &nb201::Nb201Cell) -> String {
        nb201::Nb201Space.encode(c)
    }
    fn decode(&self, text: &str) -> Result<nb201::Nb201Cell, DecodeError> {
        nb201::Nb201Space.decode(text)
    }
}

impl CellSpace for Nb201Networks {
    fn network(&self, c: &nb201::Nb201Cell) -> Result<Graph, IrError> {
        nb201::network_sized(c, self.input.clone(), self.classes, self.skeleton)
    }
}

/// The cell spaces archproof knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceKind {
    /// NAS-Bench-201: one cell of 4 nodes and 6 edges, a fixed network around it.
    Nb201,
    /// NASNet: a normal and a reduction cell of 5 blocks each.
    Nasnet,
}

impl SpaceKind {
    /// The space's name as files and the command line write it.
    pub fn name(self) -> &'static str {
        match self {
            SpaceKind::Nb201 => "nb201",
            SpaceKind::Nasnet => "nasnet",
        }
    }

    /// Reads a space's name.
    pub fn parse(name: &str) -> Option<SpaceKind> {
        [SpaceKind::Nb201, SpaceKind::Nasnet]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// A cell space as described by a `search-spaces/*.toml` file.
///
/// ```toml
/// kind = "nb201"        # the space: nb201 or nasnet
/// input = [3, 32, 32]   # the network's input, CxHxW
/// classes = 10
/// channels = 16         # channels of the first stage (C; nb201 16, nasnet 16)
/// cells_per_stage = 2   # cells per stage (N; nb201 5, nasnet 2)
/// stem_stride = 2       # nb201 only: the stem's stride (the benchmark's: 1)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSpec {
    /// The space.
    pub kind: SpaceKind,
    /// The network's input shape.
    #[serde(default = "default_input")]
    pub input: Vec<usize>,
    /// The network's class count.
    #[serde(default = "default_classes")]
    pub classes: usize,
    /// Channels of the first stage (NAS-Bench-201: 16, the benchmark's; NASNet: 16).
    #[serde(default)]
    pub channels: Option<usize>,
    /// Cells per stage (NAS-Bench-201: 5, the benchmark's; NASNet: normal cells, 2).
    #[serde(default)]
    pub cells_per_stage: Option<usize>,
    /// NAS-Bench-201 only: the stem convolution's stride (the benchmark's: 1). A stride-2
    /// stem halves every stage's resolution, as resnet-mini's does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem_stride: Option<usize>,
}

fn default_input() -> Vec<usize> {
    vec![3, 32, 32]
}

fn default_classes() -> usize {
    10
}

impl SpaceSpec {
    /// Reads a space file, or takes a bare space name (`nb201`) with the defaults.
    pub fn load(spec: &str) -> Result<SpaceSpec, CellsError> {
        let path = Path::new(spec);
        let s = if path.extension().is_some_and(|e| e == "toml") || path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CellsError::Space(format!("{spec}: {e}")))?;
            toml::from_str::<SpaceSpec>(&text).map_err(|e| {
                CellsError::Space(format!("{spec}: {}", crate::files::toml_error(&text, &e)))
            })?
        } else {
            let Some(kind) = SpaceKind::parse(spec) else {
                return Err(CellsError::Space(format!(
                    "{spec}: neither a space file nor a cell space (known: nb201, nasnet)"
                )));
            };
            SpaceSpec {
                kind,
                input: default_input(),
                classes: default_classes(),
                channels: None,
                cells_per_stage: None,
                stem_stride: None,
            }
        };
        if s.channels == Some(0) || s.cells_per_stage == Some(0) || s.stem_stride == Some(0) {
            return Err(CellsError::Space(format!(
                "{spec}: channels, cells_per_stage and stem_stride must be at least 1"
            )));
        }
        if s.stem_stride.is_some() && s.kind != SpaceKind::Nb201 {
            return Err(CellsError::Space(format!(
                "{spec}: stem_stride is a setting of nb201 spaces; drop it from this {} space",
                s.kind.name()
            )));
        }
        if s.input.len() != 3 || s.input.contains(&0) || s.classes == 0 {
            return Err(CellsError::Space(format!(
                "{spec}: input must be [C, H, W] of positive sizes and classes at least 1"
            )));
        }
        Ok(s)
    }

    /// The input shape.
    pub fn input_shape(&self) -> Shape {
        Shape::new(self.input.clone())
    }

    /// The NAS-Bench-201 space with this file's networks (defaults C = 16, N = 5, the
    /// benchmark's).
    pub fn nb201(&self) -> Nb201Networks {
        Nb201Networks {
            input: self.input_shape(),
            classes: self.classes,
            skeleton: nb201::Skeleton {
                channels: self.channels.unwrap_or(nb201::BENCHMARK_CHANNELS),
                cells_per_stage: self
                    .cells_per_stage
                    .unwrap_or(nb201::BENCHMARK_CELLS_PER_STAGE),
                stem_stride: self.stem_stride.unwrap_or(1),
            },
        }
    }

    /// The NASNet space with this file's networks (defaults C = 16, N = 2).
    pub fn nasnet(&self) -> nasnet::NasnetSpace {
        nasnet::NasnetSpace {
            input: self.input_shape(),
            classes: self.classes,
            channels: self.channels.unwrap_or(16),
            cells_per_stage: self.cells_per_stage.unwrap_or(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> Result<SpaceSpec, CellsError> {
        let dir = std::env::temp_dir().join(format!("archproof-space-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        SpaceSpec::load(&path.to_string_lossy())
    }

    /// `stem_stride` sets the NAS-Bench-201 skeleton's stem; it is refused at 0 and on NASNet,
    /// and a space that sets it is not the benchmark's.
    #[test]
    fn stem_stride_is_read_checked_and_named() {
        let s = load(
            "s2.toml",
            "kind = \"nb201\"\nchannels = 8\ncells_per_stage = 1\nstem_stride = 2\n",
        )
        .unwrap();
        let n = s.nb201();
        assert_eq!(n.skeleton.stem_stride, 2);
        assert!(!n.is_benchmark());
        assert!(n.not_benchmark_reason().contains("stem stride 2"));
        let bench = load("b.toml", "kind = \"nb201\"\nstem_stride = 1\n").unwrap();
        assert!(bench.nb201().is_benchmark());
        let e = load("z.toml", "kind = \"nb201\"\nstem_stride = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
        let e = load("n.toml", "kind = \"nasnet\"\nstem_stride = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("stem_stride is a setting of nb201"), "{e}");
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("archproof-space-{}", std::process::id())),
        );
    }
}
