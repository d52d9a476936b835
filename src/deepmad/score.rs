//! The DeepMAD objective of a structure in closed form: per-stage entropy, effectiveness rho,
//! depth-uniformity penalty, FLOPs and params, in two conventions.
//!
//! `paper`: the formulas as published. A conv layer with `c_in` inputs, kernel `k` and `g`
//! groups has width `w = c_in k^2 / g`; stage `j` (channels `C_j`, resolution `R_j`) has entropy
//! `H_j = ln(C_j R_j^2) * sum of ln w over every layer up to the end of stage j`; the objective
//! is `sum_j alpha_j H_j - beta exp(std of the block depths)`; `rho = L / exp(mean ln w)`.
//!
//! `tinynas`: what the official implementation computes (its reference values follow it):
//! half the entropy (`0.5 ln w`), `rho` the largest over stage prefixes, the depth std without
//! the first two searchable stages of bottleneck networks, and every `R_j = 1` in networks of
//! squeeze-excitation blocks (its SE block reports output resolution 1).
//!
//! FLOPs and params are counted in both conventions as the official bookkeeping does, without
//! the classifier: a conv with batch norm has `c_in c_out k^2 / g + 2 c_out` params and
//! `(c_in c_out k^2 / g + 2 c_out) / s^2` operations per input pixel, activations and shortcut
//! pooling add their element counts, and SE blocks add params but no FLOPs.

use serde::Serialize;

use super::structure::{Block, BlockKind};

/// Which formulas to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    /// The published formulas.
    Paper,
    /// The official implementation's formulas.
    Tinynas,
}

/// The weights of the objective.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Weights {
    /// Per-stage entropy weights, aligned with the last stages.
    pub alpha: Vec<f64>,
    /// Weight of the depth penalty.
    pub beta: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            alpha: vec![1.0, 1.0, 1.0, 1.0, 8.0],
            beta: 10.0,
        }
    }
}

/// One stage: the blocks up to the one before a stride-2 block (or the last block).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// Index of the block that ends the stage.
    pub last_block: usize,
    /// Units from the input to the end of the stage.
    pub units: usize,
    /// Layers from the input to the end of the stage.
    pub layers: usize,
    /// Output channels of the stage.
    pub channels: usize,
    /// Output resolution of the stage (as the convention counts it).
    pub resolution: f64,
    /// The stage's weighted entropy term `alpha_j H_j`.
    pub term: f64,
}

/// The score of a structure and everything it is made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// `entropy - penalty`.
    pub score: f64,
    /// Weighted entropy `sum_j alpha_j H_j`.
    pub entropy: f64,
    /// Depth-uniformity penalty `beta exp(std)`.
    pub penalty: f64,
    /// Effectiveness.
    pub rho: f64,
    /// Operations (multiply-accumulates plus the element-wise terms), without the classifier.
    pub flops: f64,
    /// Parameters without the classifier.
    pub params: f64,
    /// Conv layers on the main path.
    pub layers: usize,
    /// The depths the penalty's std is taken over.
    pub depths: Vec<usize>,
    /// Per-stage terms.
    pub stages: Vec<Stage>,
}

/// One repeated unit of a block.
struct Unit {
    kind: BlockKind,
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    btn: usize,
    /// The first unit of a bottleneck stage always has a projection shortcut.
    force_proj: bool,
}

fn units(b: &Block) -> Vec<Unit> {
    (0..b.units())
        .map(|i| Unit {
            kind: b.kind,
            cin: if i == 0 { b.cin } else { b.cout },
            cout: b.cout,
            k: b.k,
            s: if i == 0 { b.s } else { 1 },
            btn: b.btn.unwrap_or(0),
            force_proj: i == 0 && b.kind == BlockKind::K1KXK1,
        })
        .collect()
}

/// A conv with batch norm: (params, operations per input pixel).
fn conv_bn(cin: usize, cout: usize, k: usize, s: usize, groups: usize) -> (f64, f64) {
    let (cin, cout, k2, s2, g) = (
        cin as f64,
        cout as f64,
        (k * k) as f64,
        (s * s) as f64,
        groups as f64,
    );
    (
        cin * cout * k2 / g + 2.0 * cout,
        (cin * cout * k2 / g + 2.0 * cout) / s2,
    )
}

impl Unit {
    /// (params, operations per input pixel).
    fn cost(&self) -> (f64, f64) {
        let (i, o, b) = (self.cin as f64, self.cout as f64, self.btn as f64);
        let s2 = (self.s * self.s) as f64;
        match self.kind {
            BlockKind::Conv => {
                let (p, f) = conv_bn(self.cin, self.cout, self.k, self.s, 1);
                (p, f + o / s2)
            }
            BlockKind::K1KXK1 => {
                let (p1, f1) = conv_bn(self.cin, self.btn, 1, 1, 1);
                let (p2, f2) = conv_bn(self.btn, self.btn, self.k, self.s, 1);
                let (p3, f3) = conv_bn(self.btn, self.cout, 1, 1, 1);
                let mut p = p1 + p2 + p3;
                let mut f = f1 + f2 + f3 / s2 + b + b / s2 + o / s2;
                if self.s == 2 {
                    f += i;
                }
                if self.cin != self.cout || self.force_proj {
                    let (pp, fp) = conv_bn(self.cin, self.cout, 1, 1, 1);
                    p += pp;
                    f += fp / s2 + o / s2;
                }
                (p, f)
            }
            BlockKind::K1DWSEK1 => {
                let (p1, f1) = conv_bn(self.cin, self.btn, 1, 1, 1);
                let (p2, f2) = conv_bn(self.btn, self.btn, self.k, self.s, self.btn);
                let (p3, f3) = conv_bn(self.btn, self.cout, 1, 1, 1);
                let se = se_width(self.btn);
                let (ps1, _) = conv_bn(self.btn, se, 1, 1, 1);
                let (ps2, _) = conv_bn(se, self.btn, 1, 1, 1);
                let p = p1 + p2 + p3 + ps1 + ps2;
                let mut f = f1 + f2 + f3 / s2 + b + b / s2 + o / s2;
                // A residual (identity, pooled when strided) only when the widths agree.
                if self.cin == self.cout && self.s == 2 {
                    f += i;
                }
                (p, f)
            }
        }
    }

    /// `ln w` of each main-path conv layer.
    fn log_widths(&self) -> Vec<f64> {
        let (i, b, k2) = (self.cin as f64, self.btn as f64, (self.k * self.k) as f64);
        match self.kind {
            BlockKind::Conv => vec![(i * k2).ln()],
            BlockKind::K1KXK1 => vec![i.ln(), (b * k2).ln(), b.ln()],
            // The depthwise conv: c k^2 / g = k^2.
            BlockKind::K1DWSEK1 => vec![i.ln(), k2.ln(), b.ln()],
        }
    }
}

/// A block's params and FLOPs at input resolution `res_in` (the official bookkeeping), its sum
/// of `ln w` over main-path layers, and its layer count.
pub fn block_terms(b: &Block, res_in: f64) -> (f64, f64, f64, usize) {
    let (mut params, mut flops, mut lw, mut layers) = (0.0, 0.0, 0.0, 0);
    let mut inner = 1.0;
    for u in units(b) {
        let (p, f) = u.cost();
        params += p;
        flops += f * inner * inner;
        inner /= u.s as f64;
        let w = u.log_widths();
        layers += w.len();
        lw += w.iter().sum::<f64>();
    }
    (params, flops * res_in * res_in, lw, layers)
}

/// The squeeze width of an SE block on `c` channels: a quarter, rounded down to a multiple of 8
/// (at least 8).
pub fn se_width(c: usize) -> usize {
    let q = (c as f64 * 0.25).round() as usize;
    (q / 8).max(1) * 8
}

/// Population standard deviation.
fn std(v: &[usize]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<usize>() as f64 / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

impl Weights {
    /// The entropy weight of stage `j` of `n`: the weights align with the last stages, and
    /// earlier extra stages get weight 1.
    pub fn alpha_of(&self, j: usize, n: usize) -> f64 {
        let k = self.alpha.len();
        if j + k >= n {
            self.alpha[j + k - n]
        } else {
            1.0
        }
    }
}

/// Scores a (validated) structure at input resolution `resolution`.
pub fn score(blocks: &[Block], resolution: usize, convention: Convention, w: &Weights) -> Score {
    let tinynas = convention == Convention::Tinynas;
    let (mut params, mut flops) = (0.0, 0.0);
    let mut res = resolution as f64;
    // Stages; each records the sum of ln w up to its end in `term` until weighted below.
    let mut stages: Vec<Stage> = Vec::new();
    let (mut n_units, mut n_layers, mut channels, mut log_w) = (0usize, 0usize, 0usize, 0.0);
    let mut fmap = resolution as f64;
    let stage = |last_block, units, layers, channels, resolution, log_w| Stage {
        last_block,
        units,
        layers,
        channels,
        resolution,
        term: log_w,
    };
    for (idx, b) in blocks.iter().enumerate() {
        if b.s == 2 && idx > 0 {
            stages.push(stage(idx - 1, n_units, n_layers, channels, fmap, log_w));
        }
        // Costs at the block's input resolution (float, as the official FLOPs count).
        let (p, f, lw, layers) = block_terms(b, res);
        params += p;
        flops += f;
        log_w += lw;
        n_layers += layers;
        n_units += b.units();
        channels = b.cout;
        res /= b.s as f64;
        // The resolution as each convention counts it for the entropy.
        for u in units(b) {
            fmap = if tinynas && u.kind == BlockKind::K1DWSEK1 {
                1.0 // the official SE block reports output resolution 1
            } else if tinynas {
                (fmap as usize / u.s) as f64 // integer division, as the official code
            } else {
                fmap / u.s as f64
            };
        }
        if idx == blocks.len() - 1 {
            stages.push(stage(idx, n_units, n_layers, channels, fmap, log_w));
        }
    }
    // Effectiveness of a prefix: L / exp(mean ln w) over its L layers.
    let rho_of = |st: &Stage| {
        let l = st.layers as f64;
        (l.ln() - st.term / l).exp()
    };
    let rho = if tinynas {
        stages.iter().map(rho_of).fold(f64::NEG_INFINITY, f64::max)
    } else {
        stages.last().map(rho_of).unwrap_or(0.0)
    };
    let half = if tinynas { 0.5 } else { 1.0 };
    let n_st = stages.len();
    for (j, st) in stages.iter_mut().enumerate() {
        st.term *=
            w.alpha_of(j, n_st) * half * (st.channels as f64 * st.resolution * st.resolution).ln();
    }
    let entropy = stages.iter().map(|s| s.term).sum();
    let mut depths: Vec<usize> = blocks
        .iter()
        .filter(|b| b.kind != BlockKind::Conv)
        .map(Block::units)
        .collect();
    if tinynas && blocks.get(1).map(|b| b.kind) == Some(BlockKind::K1KXK1) {
        depths = depths.into_iter().skip(2).collect();
    }
    let penalty = if w.beta != 0.0 {
        w.beta * std(&depths).exp()
    } else {
        0.0
    };
    Score {
        score: entropy - penalty,
        entropy,
        penalty,
        rho,
        flops,
        params,
        layers: n_layers,
        depths,
        stages,
    }
}
