//! Normalization-activation layers (EvoNorm graphs of primitives) in the training engine:
//! every primitive's forward pass and its adjoint, over `[N, C, H, W]` buffers, with the
//! same meaning as the candle model's (`train::model`): signed log and square root, `+ eps`
//! on every variance, batch statistics kept as moving averages, and at a tie of `max` the
//! gradient split in halves, as candle's autograd splits it.
//!
//! Statistics are per group of elements: batch statistics group a channel across images
//! (N blocks of H * W), instance statistics one image's channel, group statistics one image's
//! run of C / G channels (both contiguous in this layout).

use crate::ir::normact::{Axes, NormActGraph, Prim};
use crate::train::model::{effective_groups, MOVING_DECAY, NORMACT_EPS};

/// A layer compiled for batches of up to `capacity` images of `c` channels of `hw` pixels.
pub struct NormAct {
    graph: NormActGraph,
    c: usize,
    hw: usize,
    /// Every node's values (`x`, zero, `v0`, `v1`, then the primitives), `[N, C, H, W]`.
    vals: Vec<Vec<f32>>,
    /// Their gradients during a backward pass.
    grads: Vec<Vec<f32>>,
    /// Moving averages of batch statistics, by primitive index.
    pub moving: Vec<(usize, Vec<f32>)>,
}

/// The groups a statistic is taken over: `count` groups, each `blocks` blocks of `len`
/// elements; group `g`'s block `b` starts at `start(g) + b * stride`.
struct Groups {
    count: usize,
    blocks: usize,
    len: usize,
    stride: usize,
    /// Offset of group g = (g / per) * outer + (g % per) * inner.
    per: usize,
    outer: usize,
    inner: usize,
}

impl Groups {
    fn of(axes: Axes, n: usize, c: usize, hw: usize) -> Groups {
        match axes {
            Axes::Batch => Groups {
                count: c,
                blocks: n,
                len: hw,
                stride: c * hw,
                per: c,
                outer: 0,
                inner: hw,
            },
            Axes::Instance => Groups {
                count: n * c,
                blocks: 1,
                len: hw,
                stride: 0,
                per: 1,
                outer: hw,
                inner: 0,
            },
            Axes::Group(g) => {
                let g = effective_groups(g, c);
                let len = c / g * hw;
                Groups {
                    count: n * g,
                    blocks: 1,
                    len,
                    stride: 0,
                    per: 1,
                    outer: len,
                    inner: 0,
                }
            }
        }
    }

    fn start(&self, g: usize) -> usize {
        (g / self.per) * self.outer + (g % self.per) * self.inner
    }

    fn size(&self) -> f64 {
        (self.blocks * self.len) as f64
    }

    /// Calls `f(range)` for each block of group `g`.
    fn each(&self, g: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
        let s = self.start(g);
        for b in 0..self.blocks {
            let at = s + b * self.stride;
            f(at..at + self.len);
        }
    }
}

impl NormAct {
    pub fn new(graph: &NormActGraph, c: usize, hw: usize, capacity: usize) -> NormAct {
        let count = NormActGraph::INITIAL + graph.nodes.len();
        let moving = graph
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(k, p)| match p.op {
                Prim::Mean(Axes::Batch) => Some((k, vec![0.0; c])),
                Prim::Var(Axes::Batch) => Some((k, vec![1.0; c])),
                _ => None,
            })
            .collect();
        let size = capacity * c * hw;
        NormAct {
            graph: graph.clone(),
            c,
            hw,
            vals: (0..count).map(|_| vec![0.0; size]).collect(),
            grads: (0..count).map(|_| vec![0.0; size]).collect(),
            moving,
        }
    }

    fn broadcast(&mut self, node: usize, v: Option<&[f32]>, n: usize) {
        let (c, hw) = (self.c, self.hw);
        let buf = &mut self.vals[node][..n * c * hw];
        for (i, plane) in buf.chunks_mut(hw).enumerate() {
            plane.fill(v.map_or(0.0, |v| v[i % c]));
        }
    }

    /// The forward pass: `out = last * gamma + beta` per channel.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        x: &[f32],
        out: &mut [f32],
        n: usize,
        train: bool,
        v0: Option<&[f32]>,
        v1: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
    ) {
        let (c, hw) = (self.c, self.hw);
        let len = n * c * hw;
        self.vals[NormActGraph::X][..len].copy_from_slice(&x[..len]);
        self.vals[NormActGraph::ZERO][..len].fill(0.0);
        self.broadcast(NormActGraph::V0, v0, n);
        self.broadcast(NormActGraph::V1, v1, n);
        for k in 0..self.graph.nodes.len() {
            let node = self.graph.nodes[k].clone();
            let at = NormActGraph::INITIAL + k;
            let (before, rest) = self.vals.split_at_mut(at);
            let y = &mut rest[0][..len];
            let a = &before[node.args[0]][..len];
            let b = node.args.get(1).map(|&i| &before[i][..len]);
            let bin = |y: &mut [f32], f: &dyn Fn(f32, f32) -> f32| {
                let b = b.expect("a binary primitive has two operands");
                for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
                    *y = f(*a, *b);
                }
            };
            let un = |y: &mut [f32], f: &dyn Fn(f32) -> f32| {
                for (y, a) in y.iter_mut().zip(a) {
                    *y = f(*a);
                }
            };
            match node.op {
                Prim::Add => bin(y, &|a, b| a + b),
                Prim::Mul => bin(y, &|a, b| a * b),
                Prim::Div => bin(y, &|a, b| a / b),
                Prim::Max => bin(y, &|a, b| a.max(b)),
                Prim::Neg => un(y, &|a| -a),
                Prim::Sigmoid => un(y, &|a| 1.0 / (1.0 + (-a).exp())),
                Prim::Tanh => un(y, &|a| a.tanh()),
                Prim::Exp => un(y, &|a| a.exp()),
                Prim::Log => un(y, &|a| sign(a) * a.abs().ln()),
                Prim::Abs => un(y, &|a| a.abs()),
                Prim::Square => un(y, &|a| a * a),
                Prim::Sqrt => un(y, &|a| sign(a) * a.abs().sqrt()),
                Prim::Mean(axes) | Prim::Var(axes) => {
                    let var = matches!(node.op, Prim::Var(_));
                    let eps = if var { NORMACT_EPS as f32 } else { 0.0 };
                    let groups = Groups::of(axes, n, c, hw);
                    let moving = self.moving.iter_mut().find(|(i, _)| *i == k);
                    match moving {
                        Some((_, m)) if !train => {
                            for (g, &s) in m.iter().enumerate() {
                                groups.each(g, |r| y[r].fill(s + eps));
                            }
                        }
                        moving => {
                            let stats = statistics(a, &groups, var);
                            if let Some((_, m)) = moving {
                                let keep = MOVING_DECAY as f32;
                                for (m, s) in m.iter_mut().zip(&stats) {
                                    *m = *m * keep + s * (1.0 - keep);
                                }
                            }
                            for (g, &s) in stats.iter().enumerate() {
                                groups.each(g, |r| y[r].fill(s + eps));
                            }
                        }
                    }
                }
            }
        }
        let last = &self.vals[self.vals.len() - 1][..len];
        for (i, (o, v)) in out[..len].chunks_mut(hw).zip(last.chunks(hw)).enumerate() {
            let ch = i % c;
            for (o, v) in o.iter_mut().zip(v) {
                *o = v * gamma[ch] + beta[ch];
            }
        }
    }

    /// The backward pass of the last forward pass (in training mode): adds the gradients of
    /// `gamma`, `beta`, `v0` and `v1`, and writes (`set`) or adds the input's.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        dy: &[f32],
        dx: Option<(&mut [f32], bool)>,
        n: usize,
        gamma: &[f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
        dv0: Option<&mut [f32]>,
        dv1: Option<&mut [f32]>,
    ) {
        let (c, hw) = (self.c, self.hw);
        let len = n * c * hw;
        for g in &mut self.grads {
            g[..len].fill(0.0);
        }
        let last = self.vals.len() - 1;
        for (i, ((d, v), gl)) in dy[..len]
            .chunks(hw)
            .zip(self.vals[last][..len].chunks(hw))
            .zip(self.grads[last][..len].chunks_mut(hw))
            .enumerate()
        {
            let ch = i % c;
            let (mut sg, mut sb) = (0.0f32, 0.0f32);
            for ((d, v), gl) in d.iter().zip(v).zip(gl.iter_mut()) {
                sg += d * v;
                sb += d;
                *gl = d * gamma[ch];
            }
            dgamma[ch] += sg;
            dbeta[ch] += sb;
        }
        for k in (0..self.graph.nodes.len()).rev() {
            let node = self.graph.nodes[k].clone();
            let at = NormActGraph::INITIAL + k;
            let (gb, gr) = self.grads.split_at_mut(at);
            let g = &gr[0][..len];
            let y = &self.vals[at][..len];
            let a = &self.vals[node.args[0]][..len];
            let ia = node.args[0];
            let b = node.args.get(1).map(|&i| (i, &self.vals[i][..len]));
            // d/da and d/db of a binary primitive, added to the operands' gradients (which
            // may be the same node).
            let mut bin = |fa: &dyn Fn(f32, f32, f32) -> f32, fb: &dyn Fn(f32, f32, f32) -> f32| {
                let (ib, bv) = b.expect("a binary primitive has two operands");
                for i in 0..len {
                    let (av, bw, gv) = (a[i], bv[i], g[i]);
                    gb[ia][i] += fa(av, bw, gv);
                    gb[ib][i] += fb(av, bw, gv);
                }
            };
            match node.op {
                Prim::Add => bin(&|_, _, g| g, &|_, _, g| g),
                Prim::Mul => bin(&|_, b, g| g * b, &|a, _, g| g * a),
                Prim::Div => bin(&|_, b, g| g / b, &|a, b, g| -g * a / (b * b)),
                Prim::Max => bin(&|a, b, g| tie_share(a, b, g), &|a, b, g| tie_share(b, a, g)),
                Prim::Mean(axes) | Prim::Var(axes) => {
                    let var = matches!(node.op, Prim::Var(_));
                    let groups = Groups::of(axes, n, c, hw);
                    let m = groups.size();
                    let da = &mut gb[ia];
                    for gi in 0..groups.count {
                        let (mut total, mut sum) = (0.0f64, 0.0f64);
                        groups.each(gi, |r| {
                            total += g[r.clone()].iter().map(|&v| v as f64).sum::<f64>();
                            sum += a[r].iter().map(|&v| v as f64).sum::<f64>();
                        });
                        let mean = (sum / m) as f32;
                        let scale = (total / m) as f32;
                        groups.each(gi, |r| {
                            for i in r {
                                da[i] += if var {
                                    2.0 * scale * (a[i] - mean)
                                } else {
                                    scale
                                };
                            }
                        });
                    }
                }
                op => {
                    let da = &mut gb[ia];
                    for i in 0..len {
                        let (av, yv, gv) = (a[i], y[i], g[i]);
                        da[i] += gv
                            * match op {
                                Prim::Neg => -1.0,
                                Prim::Sigmoid => yv * (1.0 - yv),
                                Prim::Tanh => 1.0 - yv * yv,
                                Prim::Exp => yv,
                                Prim::Log => 1.0 / av.abs(),
                                Prim::Abs => sign(av),
                                Prim::Square => 2.0 * av,
                                Prim::Sqrt => 0.5 / av.abs().sqrt(),
                                _ => unreachable!("binary primitives and statistics above"),
                            };
                    }
                }
            }
        }
        for (node, dv) in [(NormActGraph::V0, dv0), (NormActGraph::V1, dv1)] {
            if let Some(dv) = dv {
                for (i, plane) in self.grads[node][..len].chunks(hw).enumerate() {
                    dv[i % c] += plane.iter().sum::<f32>();
                }
            }
        }
        if let Some((dx, set)) = dx {
            let gx = &self.grads[NormActGraph::X][..len];
            if set {
                dx[..len].copy_from_slice(gx);
            } else {
                dx[..len].iter_mut().zip(gx).for_each(|(d, g)| *d += g);
            }
        }
    }
}

/// +1 where `a >= 0`, else -1 (the sign the signed log and square root use).
fn sign(a: f32) -> f32 {
    if a >= 0.0 {
        1.0
    } else {
        -1.0
    }
}

/// The share of `max(a, b)`'s gradient `g` that goes to `a`: all of it when `a` is larger,
/// half at a tie.
fn tie_share(a: f32, b: f32, g: f32) -> f32 {
    let y = a.max(b);
    let (ma, mb) = ((y == a) as u8 as f32, (y == b) as u8 as f32);
    g * ma / (1.0 + mb)
}

/// Mean, or biased variance, of each group.
fn statistics(a: &[f32], groups: &Groups, var: bool) -> Vec<f32> {
    let m = groups.size();
    (0..groups.count)
        .map(|g| {
            let mut sum = 0.0f64;
            groups.each(g, |r| sum += a[r].iter().map(|&v| v as f64).sum::<f64>());
            let mean = sum / m;
            if !var {
                return mean as f32;
            }
            let mut sq = 0.0f64;
            groups.each(g, |r| {
                sq += a[r]
                    .iter()
                    .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                    .sum::<f64>()
            });
            (sq / m) as f32
        })
        .collect()
}
