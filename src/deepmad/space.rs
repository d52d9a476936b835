//! DeepMAD search spaces: a budget and the discretised choices, read from TOML
//! (`search-spaces/deepmad-*.toml`).

use std::path::Path;

use serde::Deserialize;

use super::score::Weights;
use super::structure::{Block, BlockKind};

/// A DeepMAD search space with its budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Space {
    /// Always "deepmad".
    pub kind: String,
    /// A name for people, e.g. `deepmad-r50`.
    pub name: String,
    /// The residual block kind of every searchable stage.
    pub block: BlockKind,
    /// Input resolution.
    pub resolution: usize,
    /// Limits the design must meet.
    pub budget: Budget,
    /// Weights of the objective.
    #[serde(default)]
    pub objective: Objective,
    /// The stem convolution.
    pub stem: Stem,
    /// The searchable stages.
    pub stages: Stages,
    /// Channels of a final 1x1 ConvKXBNRELU after the stages, if any (fixed).
    #[serde(default)]
    pub final_channels: Option<usize>,
}

/// Limits: FLOPs and params counted as the official code does (no classifier), and the
/// effectiveness bound `rho0`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most FLOPs.
    pub flops: f64,
    /// Most params.
    pub params: f64,
    /// Largest effectiveness `rho`.
    pub rho: f64,
}

/// Objective weights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// Per-stage entropy weights.
    pub alpha: Vec<f64>,
    /// Depth-penalty weight.
    pub beta: f64,
}

impl Default for Objective {
    fn default() -> Self {
        let w = Weights::default();
        Objective {
            alpha: w.alpha,
            beta: w.beta,
        }
    }
}

/// The stem: a ConvKXBNRELU from the image's 3 channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stem {
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Smallest and largest channel count (multiples of 8).
    pub channels: [usize; 2],
}

/// The searchable stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// Stride of each stage (its length is the number of stages).
    pub strides: Vec<usize>,
    /// Kernel sizes to choose from.
    pub kernels: Vec<usize>,
    /// Largest channel count (channels are multiples of 8).
    pub max_channels: usize,
    /// Largest bottleneck width.
    pub max_btn: usize,
    /// Largest depth (units) of each stage.
    pub max_depth: Vec<usize>,
    /// The bottleneck must be at least this fraction of the stage's channels (K1KXK1) ...
    #[serde(default)]
    pub btn_min_ratio: Option<f64>,
    /// ... or, for inverted blocks, between these multiples of the channels.
    #[serde(default)]
    pub btn_ratio: Option<[f64; 2]>,
    /// A stage has at most this many times the channels of the one before.
    pub max_growth: f64,
}

/// The channel grid step.
pub const CHANNEL_STEP: usize = 8;

/// `x` rounded to the nearest multiple of [`CHANNEL_STEP`] (at least one step), as the
/// official rules round widths.
pub fn round8(x: f64) -> usize {
    ((x / CHANNEL_STEP as f64).round() as usize).max(1) * CHANNEL_STEP
}

/// What is wrong with a DeepMAD space file (the message names the file and the field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpaceError(pub String);

impl Space {
    /// The structure with stage channels `chans` (the stem's first) and, per stage, the
    /// choice `(bottleneck, kernel, depth)`.
    pub fn assemble(&self, chans: &[usize], picks: &[(usize, usize, usize)]) -> Vec<Block> {
        let mut blocks = vec![Block {
            kind: BlockKind::Conv,
            cin: 3,
            cout: chans[0],
            k: self.stem.kernel,
            s: self.stem.stride,
            depth: None,
            btn: None,
        }];
        for (j, &(btn, k, l)) in picks.iter().enumerate() {
            blocks.push(Block {
                kind: self.block,
                cin: chans[j],
                cout: chans[j + 1],
                k,
                s: self.stages.strides[j],
                depth: Some(l),
                btn: Some(btn),
            });
        }
        blocks.extend(self.final_conv(*chans.last().expect("stages")));
        blocks
    }

    /// The final 1x1 conv on `c` channels, when the space has one.
    pub fn final_conv(&self, c: usize) -> Option<Block> {
        self.final_channels.map(|f| Block {
            kind: BlockKind::Conv,
            cin: c,
            cout: f,
            k: 1,
            s: 1,
            depth: None,
            btn: None,
        })
    }

    /// The objective weights.
    pub fn weights(&self) -> Weights {
        Weights {
            alpha: self.objective.alpha.clone(),
            beta: self.objective.beta,
        }
    }

    /// Checks the space for consistency; errors say which field is wrong.
    pub fn validate(&self) -> Result<(), SpaceError> {
        if self.kind != "deepmad" {
            return Err(SpaceError(format!(
                "kind is '{}', expected 'deepmad'",
                self.kind
            )));
        }
        if self.block == BlockKind::Conv {
            return Err(SpaceError(
                "block must be SuperResK1KXK1 or SuperResK1DWSEK1".into(),
            ));
        }
        let s = &self.stages;
        let n = s.strides.len();
        if n == 0 {
            return Err(SpaceError("stages.strides is empty".into()));
        }
        if s.max_depth.len() != n {
            return Err(SpaceError(format!(
                "stages.max_depth has {} entries for {n} stages",
                s.max_depth.len()
            )));
        }
        if s.strides
            .iter()
            .chain([&self.stem.stride])
            .any(|&x| x != 1 && x != 2)
        {
            return Err(SpaceError("strides must be 1 or 2".into()));
        }
        if s.kernels.is_empty() || s.kernels.iter().any(|&k| k == 0 || k % 2 == 0) {
            return Err(SpaceError(
                "stages.kernels must be odd positive sizes".into(),
            ));
        }
        if s.max_depth.contains(&0) {
            return Err(SpaceError(
                "stages.max_depth entries must be positive".into(),
            ));
        }
        let [lo, hi] = self.stem.channels;
        if lo == 0 || lo > hi || lo % CHANNEL_STEP != 0 || hi % CHANNEL_STEP != 0 {
            return Err(SpaceError(
                "stem.channels must be [min, max], multiples of 8, min <= max".into(),
            ));
        }
        if s.max_channels < CHANNEL_STEP || s.max_btn < CHANNEL_STEP {
            return Err(SpaceError(
                "stages.max_channels and max_btn must be at least 8".into(),
            ));
        }
        match (self.block, s.btn_min_ratio, s.btn_ratio) {
            (BlockKind::K1KXK1, Some(r), None) if r > 0.0 && r <= 1.0 => {}
            (BlockKind::K1DWSEK1, None, Some([a, b])) if a > 0.0 && a <= b => {}
            _ => {
                return Err(SpaceError(
                    "K1KXK1 spaces need stages.btn_min_ratio in (0, 1]; K1DWSEK1 spaces need \
                     stages.btn_ratio = [min, max]"
                        .into(),
                ))
            }
        }
        if !(self.budget.flops > 0.0 && self.budget.params > 0.0 && self.budget.rho > 0.0) {
            return Err(SpaceError(
                "budget.flops, budget.params and budget.rho must be positive".into(),
            ));
        }
        if self.objective.alpha.is_empty() {
            return Err(SpaceError("objective.alpha is empty".into()));
        }
        if s.max_growth < 1.0 {
            return Err(SpaceError("stages.max_growth must be at least 1".into()));
        }
        Ok(())
    }
}

/// Reads and validates a space file; errors name the file.
pub fn read(path: &Path) -> Result<Space, SpaceError> {
    let err = |m: String| SpaceError(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let space: Space = toml::from_str(&text).map_err(|e| {
        err(format!(
            "malformed space: {}",
            crate::files::toml_error(&text, &e)
        ))
    })?;
    space.validate().map_err(|e| err(e.0))?;
    Ok(space)
}
