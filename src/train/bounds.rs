//! Bounds of an IR graph's outputs over boxes of inputs, as differentiable candle tensor
//! expressions: what certified training minimises.
//!
//! - Interval bound propagation (IBP, Gowal et al. 2018): every node's output gets elementwise
//!   bounds from its inputs' (affine maps through centre and radius, `|W| r`; monotone maps
//!   on both ends). The margins `f_y - f_j` are bounded with the last linear layer folded into
//!   the specification ("elision"), which is exact for that layer.
//! - CROWN-IBP (Zhang et al. 2020): the margins are carried back to the input as linear
//!   functions through every node (affine maps exactly, each ReLU by its CROWN relaxation over
//!   the IBP bounds of its input, lower slope 1 where `u > -l`), then minimised over the box in
//!   closed form. Training mixes the two bounds as `beta crown + (1 - beta) ibp`.
//!
//! Batch normalization is the affine map the forward pass applied: the batch's statistics in
//! training (the clean batch's, passed in) and the moving ones in evaluation. Both bounds are
//! sound for the network evaluated that way: every output of every input in the box lies
//! within them. Operators without a rule here are refused before training
//! ([`unsupported`]).

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::model::{self, BatchStats, Model, ModelError};
use super::unfold::Windows;
use crate::ir::weights::BATCH_NORM_EPS;
use crate::ir::{Activation, Graph, NodeId, Op};

type Result<T> = std::result::Result<T, ModelError>;

/// How the robust part of a certified loss bounds the margins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BoundMethod {
    /// Interval bound propagation.
    Ibp,
    /// CROWN's linear bounds over IBP's intermediate intervals, mixed with IBP's.
    CrownIbp,
}

impl BoundMethod {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BoundMethod::Ibp => "ibp",
            BoundMethod::CrownIbp => "crown-ibp",
        }
    }
}

/// Elementwise bounds `lo <= x <= hi` of a batch of tensors.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Lower bounds.
    pub lo: Tensor,
    /// Upper bounds.
    pub hi: Tensor,
}

impl Interval {
    /// The L-infinity ball of radius `eps` around each input, clipped to `[0, 1]`.
    pub fn ball(x: &Tensor, eps: f64) -> Result<Interval> {
        Ok(Interval {
            lo: (x - eps)?.clamp(0f32, 1f32)?,
            hi: (x + eps)?.clamp(0f32, 1f32)?,
        })
    }

    fn centre_radius(&self) -> Result<(Tensor, Tensor)> {
        Ok((
            ((&self.lo + &self.hi)? * 0.5)?,
            ((&self.hi - &self.lo)? * 0.5)?,
        ))
    }

    fn from_centre_radius(c: &Tensor, r: &Tensor) -> Result<Interval> {
        Ok(Interval {
            lo: (c - r)?,
            hi: (c + r)?,
        })
    }

    /// Both ends through a non-decreasing map.
    fn monotone(&self, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Interval> {
        Ok(Interval {
            lo: f(&self.lo)?,
            hi: f(&self.hi)?,
        })
    }
}

/// Whether an operator has an interval rule (`crown`: and a back-substitution rule).
fn has_rule(op: &Op, crown: bool) -> bool {
    match op {
        Op::Conv2d {
            stride, dilation, ..
        } => stride[0] == stride[1] && dilation[0] == dilation[1],
        Op::Input { .. }
        | Op::Linear { .. }
        | Op::BatchNorm
        | Op::Act {
            function: Activation::Relu,
        }
        | Op::Pad { .. }
        | Op::Reshape { .. }
        | Op::Add
        | Op::Concat
        | Op::GlobalAvgPool
        | Op::Flatten
        | Op::Identity
        | Op::Zero
        | Op::ScaleShift { .. } => true,
        Op::Act {
            function: Activation::Relu6 | Activation::Sigmoid | Activation::Tanh,
        }
        | Op::Clip { .. }
        | Op::Mul
        | Op::MaxPool { .. } => !crown,
        Op::AvgPool { .. } => true,
        Op::LeakyRelu { slope } => !crown && *slope >= 0.0,
        _ => false,
    }
}

/// The nodes (`name (operator)`) whose bounds `method` cannot propagate; empty when it can
/// train the graph.
pub fn unsupported(graph: &Graph, method: BoundMethod) -> Vec<String> {
    let crown = method == BoundMethod::CrownIbp;
    graph
        .node_ids()
        .filter(|&id| !has_rule(&graph.node(id).op, crown))
        .map(|id| {
            let n = graph.node(id);
            let kind = match &n.op {
                Op::Act { function } => function.name(),
                op => op.kind(),
            };
            format!("{} ({kind})", n.name)
        })
        .collect()
}

/// Refuses a graph `method` cannot bound, naming every node it has no rule for (and saying
/// when IBP could train it instead).
pub fn check_trainable(graph: &Graph, method: BoundMethod) -> Result<()> {
    let missing = unsupported(graph, method);
    if missing.is_empty() {
        return Ok(());
    }
    let ibp_can =
        method == BoundMethod::CrownIbp && unsupported(graph, BoundMethod::Ibp).is_empty();
    Err(ModelError::Graph(format!(
        "--certified {}: no bound rule for {}; train it without --certified{}",
        method.name(),
        missing.join(", "),
        if ibp_can {
            ", or with --certified ibp"
        } else {
            ""
        }
    )))
}

fn unsupported_err(name: &str, op: &Op, what: &str) -> ModelError {
    ModelError::Graph(format!(
        "node '{name}': {what} has no rule for the operator {}",
        op.kind()
    ))
}

/// The rows `e_y - e_j` (j = 0..K) of each example: `[N, K, K]`.
pub fn margin_spec(y: &[u32], classes: usize, like: &Tensor) -> Result<Tensor> {
    let n = y.len();
    let mut c = vec![0f32; n * classes * classes];
    for (i, &yi) in y.iter().enumerate() {
        for j in 0..classes {
            let row = (i * classes + j) * classes;
            c[row + yi as usize] += 1.0;
            c[row + j] -= 1.0;
        }
    }
    Ok(Tensor::from_vec(c, (n, classes, classes), like.device())?.to_dtype(like.dtype())?)
}

/// `t` summed over every axis after the first two: `[N, K, ...]` to `[N, K]`.
fn sum_rest(t: &Tensor) -> Result<Tensor> {
    if t.rank() == 2 {
        return Ok(t.clone());
    }
    Ok(t.flatten_from(2)?.sum(2)?)
}

/// `[N, ...]` as `[N, 1, ...]`, to broadcast against coefficients `[N, K, ...]`.
fn per_example(t: &Tensor) -> Result<Tensor> {
    Ok(t.unsqueeze(1)?)
}

/// A per-channel vector `[C]` shaped to broadcast against `[..., C, H, W]` or `[..., C]`
/// tensors of rank `rank` whose channel axis is `axis`.
fn channel_shape(v: &Tensor, rank: usize, axis: usize) -> Result<Tensor> {
    let mut shape = vec![1; rank];
    shape[axis] = v.dim(0)?;
    Ok(v.reshape(shape.as_slice())?)
}

impl Model {
    /// The per-channel affine map `x scale + shift` batch normalization node `id` applies:
    /// with the batch's statistics when `stats` has them, else the moving ones.
    fn batch_norm_affine(
        &self,
        id: NodeId,
        stats: Option<&BatchStats>,
    ) -> Result<(Tensor, Tensor)> {
        let (mean, var) = match stats.and_then(|s| s.get(&id.index())) {
            Some((m, v)) => (m.clone(), v.clone()),
            None => (
                self.buffer(id, "running_mean")?.clone(),
                self.buffer(id, "running_var")?.clone(),
            ),
        };
        let inv = (var + BATCH_NORM_EPS)?.sqrt()?.recip()?;
        let scale = match self.param(id, "weight") {
            Some(w) => (w * &inv)?,
            None => inv,
        };
        let shifted = (mean * &scale)?.neg()?;
        let shift = match self.param(id, "bias") {
            Some(b) => (b + shifted)?,
            None => shifted,
        };
        Ok((scale, shift))
    }

    /// Interval bounds of every node's output over the box `input` (`None` for nodes the
    /// output does not depend on). `stats`: batch normalization with these batch statistics
    /// (training), else with the moving ones (evaluation).
    pub fn interval_bounds(
        &self,
        input: &Interval,
        stats: Option<&BatchStats>,
    ) -> Result<Vec<Option<Interval>>> {
        let mut vals: Vec<Option<Interval>> = vec![None; self.shapes.len()];
        for &id in &self.order {
            let node = self.graph.node(id);
            let ins: Vec<&Interval> = self.inputs[id.index()]
                .iter()
                .map(|i| vals[i.index()].as_ref().expect("topological order"))
                .collect();
            let y = match &node.op {
                Op::Input { .. } => input.clone(),
                Op::Conv2d {
                    stride,
                    padding,
                    dilation,
                    groups,
                    ..
                } => {
                    let (c, r) = ins[0].centre_radius()?;
                    let w = self.param(id, "weight").expect("weight");
                    let conv = |x: &Tensor, w: &Tensor, b| {
                        model::conv2d(
                            &model::pad(x, *padding, 0.0)?,
                            w,
                            b,
                            stride[0],
                            dilation[0],
                            *groups,
                        )
                    };
                    let c = conv(&c, w, self.param(id, "bias"))?;
                    let r = conv(&r, &w.abs()?, None)?;
                    Interval::from_centre_radius(&c, &r)?
                }
                Op::Linear { .. } => {
                    let (c, r) = ins[0].centre_radius()?;
                    let w = self.param(id, "weight").expect("weight");
                    let mut c = c.flatten_from(1)?.matmul(&w.t()?)?;
                    if let Some(b) = self.param(id, "bias") {
                        c = c.broadcast_add(b)?;
                    }
                    let r = r.flatten_from(1)?.matmul(&w.abs()?.t()?)?;
                    Interval::from_centre_radius(&c, &r)?
                }
                Op::BatchNorm => {
                    let (scale, shift) = self.batch_norm_affine(id, stats)?;
                    let (c, r) = ins[0].centre_radius()?;
                    let rank = c.rank();
                    let (scale, shift) = (
                        channel_shape(&scale, rank, 1)?,
                        channel_shape(&shift, rank, 1)?,
                    );
                    let c = c.broadcast_mul(&scale)?.broadcast_add(&shift)?;
                    let r = r.broadcast_mul(&scale.abs()?)?;
                    Interval::from_centre_radius(&c, &r)?
                }
                Op::ScaleShift { .. } => {
                    let (scale, shift) = (self.buffer(id, "scale")?, self.buffer(id, "shift")?);
                    let (c, r) = ins[0].centre_radius()?;
                    let c = c.broadcast_mul(scale)?.broadcast_add(shift)?;
                    let r = r.broadcast_mul(&scale.abs()?)?;
                    Interval::from_centre_radius(&c, &r)?
                }
                Op::Act { function } if has_rule(&node.op, false) => {
                    ins[0].monotone(|x| model::activation(x, *function))?
                }
                Op::Clip { min, max } => ins[0].monotone(|x| x.clamp(*min as f32, *max as f32))?,
                Op::LeakyRelu { slope } if *slope >= 0.0 => {
                    ins[0].monotone(|x| model::leaky_relu(x, *slope))?
                }
                Op::Pad { pads, value } => ins[0].monotone(|x| model::pad4(x, *pads, *value))?,
                Op::Reshape { shape } => ins[0].monotone(|x| {
                    let mut dims = vec![x.dim(0)?];
                    dims.extend_from_slice(shape.dims());
                    x.reshape(dims.as_slice())
                })?,
                Op::Flatten => ins[0].monotone(|x| x.flatten_from(1))?,
                Op::Identity => ins[0].clone(),
                Op::Zero => ins[0].monotone(|x| x.zeros_like())?,
                Op::Add => {
                    let mut y = ins[0].clone();
                    for t in &ins[1..] {
                        y = Interval {
                            lo: (&y.lo + &t.lo)?,
                            hi: (&y.hi + &t.hi)?,
                        };
                    }
                    y
                }
                Op::Mul => {
                    let (a, b) = (ins[0], ins[1]);
                    let p = [
                        a.lo.broadcast_mul(&b.lo)?,
                        a.lo.broadcast_mul(&b.hi)?,
                        a.hi.broadcast_mul(&b.lo)?,
                        a.hi.broadcast_mul(&b.hi)?,
                    ];
                    Interval {
                        lo: p[0].minimum(&p[1])?.minimum(&p[2].minimum(&p[3])?)?,
                        hi: p[0].maximum(&p[1])?.maximum(&p[2].maximum(&p[3])?)?,
                    }
                }
                Op::Concat => Interval {
                    lo: Tensor::cat(&ins.iter().map(|i| &i.lo).collect::<Vec<_>>(), 1)?,
                    hi: Tensor::cat(&ins.iter().map(|i| &i.hi).collect::<Vec<_>>(), 1)?,
                },
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => ins[0].monotone(|x| model::max_pool(x, *kernel, *stride, *padding))?,
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                    count_include_pad,
                } => ins[0].monotone(|x| {
                    model::avg_pool(x, *kernel, *stride, *padding, *count_include_pad)
                })?,
                Op::GlobalAvgPool => ins[0].monotone(|x| x.mean_keepdim(2)?.mean_keepdim(3))?,
                op => {
                    return Err(unsupported_err(
                        &node.name,
                        op,
                        "interval bound propagation",
                    ))
                }
            };
            vals[id.index()] = Some(y);
        }
        Ok(vals)
    }

    /// Lower bounds of the margins `f_y - f_j` of every example over its box, `[N, K]` (zero
    /// at `j = y`): `beta crown + (1 - beta) ibp`, both sound (see the module's text).
    pub fn margin_lower_bounds(
        &self,
        input: &Interval,
        y: &[u32],
        beta: f64,
        stats: Option<&BatchStats>,
    ) -> Result<Tensor> {
        let (ibp_lb, crown_lb) = self.margin_bounds(input, y, beta > 0.0, beta < 1.0, stats)?;
        Ok(match (ibp_lb, crown_lb) {
            (Some(i), Some(c)) => ((c * beta)? + (i * (1.0 - beta))?)?,
            (Some(i), None) => i,
            (None, Some(c)) => c,
            (None, None) => unreachable!("one of the two bounds is asked for"),
        })
    }

    /// IBP's margin bounds (`ibp`) and CROWN's (`crown`) from one interval pass.
    fn margin_bounds(
        &self,
        input: &Interval,
        y: &[u32],
        crown: bool,
        ibp: bool,
        stats: Option<&BatchStats>,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ivs = self.interval_bounds(input, stats)?;
        let out = self.graph.outputs()[0];
        let out_iv = ivs[out.index()].as_ref().expect("the output is bounded");
        let spec = margin_spec(y, out_iv.lo.dim(1)?, &out_iv.lo)?;
        let i = if ibp {
            Some(self.ibp_margins(&ivs, &spec, out)?)
        } else {
            None
        };
        let c = if crown {
            Some(self.crown_margins(input, &ivs, &spec, stats)?)
        } else {
            None
        };
        Ok((i, c))
    }

    /// IBP's margin bounds, the last layer folded into the specification when it is linear.
    fn ibp_margins(&self, ibp: &[Option<Interval>], spec: &Tensor, out: NodeId) -> Result<Tensor> {
        let node = self.graph.node(out);
        if let Op::Linear { .. } = node.op {
            let p = self.inputs[out.index()][0];
            let (c, r) = ibp[p.index()].as_ref().expect("bounded").centre_radius()?;
            let (c, r) = (
                c.flatten_from(1)?.unsqueeze(2)?,
                r.flatten_from(1)?.unsqueeze(2)?,
            );
            let w = self.param(out, "weight").expect("weight");
            // [N, K, K] x [K, in] = [N, K, in]: the margins as linear maps of the input.
            let ws = spec.broadcast_matmul(w)?;
            let mut lb = (ws.matmul(&c)? - ws.abs()?.matmul(&r)?)?.squeeze(2)?;
            if let Some(b) = self.param(out, "bias") {
                lb = (lb + spec.broadcast_matmul(&b.unsqueeze(1)?)?.squeeze(2)?)?;
            }
            return Ok(lb);
        }
        let iv = ibp[out.index()].as_ref().expect("bounded");
        // f_y - f_j >= lo_y - hi_j, where j != y.
        let pos = spec.relu()?;
        let neg = spec.neg()?.relu()?;
        let lo = per_example(&iv.lo)?;
        let hi = per_example(&iv.hi)?;
        Ok((pos.broadcast_mul(&lo)?.sum(2)? - neg.broadcast_mul(&hi)?.sum(2)?)?)
    }

    /// CROWN's margin bounds over IBP's intermediate intervals: linear functions `A x + bias`
    /// of each node, from the output back to the input box.
    fn crown_margins(
        &self,
        input: &Interval,
        ibp: &[Option<Interval>],
        spec: &Tensor,
        stats: Option<&BatchStats>,
    ) -> Result<Tensor> {
        let (n, k) = (spec.dim(0)?, spec.dim(1)?);
        let mut coeffs: Vec<Option<Tensor>> = vec![None; self.shapes.len()];
        let out = self.graph.outputs()[0];
        coeffs[out.index()] = Some(spec.clone());
        let mut bias = Tensor::zeros((n, k), spec.dtype(), spec.device())?;
        let mut bound = None;
        for &id in self.order.iter().rev() {
            let Some(a) = coeffs[id.index()].take() else {
                continue;
            };
            let node = self.graph.node(id);
            let ins = &self.inputs[id.index()];
            let in_dims = |i: usize| -> Result<Vec<usize>> {
                let d = ibp[ins[i].index()]
                    .as_ref()
                    .expect("bounded")
                    .lo
                    .dims()
                    .to_vec();
                Ok([vec![n, k], d[1..].to_vec()].concat())
            };
            // The coefficients each input receives.
            let pass: Vec<Tensor> = match &node.op {
                Op::Input { .. } => {
                    let lo = per_example(&input.lo)?;
                    let hi = per_example(&input.hi)?;
                    let lb = (sum_rest(&a.relu()?.broadcast_mul(&lo)?)?
                        - sum_rest(&a.neg()?.relu()?.broadcast_mul(&hi)?)?)?;
                    // Every input node reads the same box: their terms add up.
                    bound = Some(match bound.take() {
                        Some(b) => (b + lb)?,
                        None => lb,
                    });
                    vec![]
                }
                Op::Conv2d {
                    stride,
                    padding,
                    dilation,
                    groups,
                    ..
                } => {
                    let w = self.param(id, "weight").expect("weight");
                    if let Some(b) = self.param(id, "bias") {
                        let per_channel = a.flatten_from(3)?.sum(3)?;
                        bias =
                            (bias + per_channel.broadcast_mul(&b.reshape((1, 1, ()))?)?.sum(2)?)?;
                    }
                    let dims = in_dims(0)?;
                    let (o, ho, wo) = (a.dim(2)?, a.dim(3)?, a.dim(4)?);
                    let full = block_diagonal(w, *groups, dims[2])?;
                    let (kh, kw) = (full.dim(2)?, full.dim(3)?);
                    // The adjoint of the forward pass's window product: each output's
                    // coefficients spread over its window by W^T, then added back where the
                    // window read the padded input.
                    let cols = a
                        .reshape((n * k, o, ho * wo))?
                        .transpose(1, 2)?
                        .broadcast_matmul(&full.reshape((o, dims[2] * kh * kw))?)?;
                    let windows = Windows {
                        kernel: [kh, kw],
                        stride: *stride,
                        dilation: dilation[0],
                        channels_first: false,
                    };
                    vec![spread(&windows, &cols, &dims, *padding)?]
                }
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                    count_include_pad,
                } => {
                    // A window sum of each channel divided by the window's size (or by its
                    // elements inside the input): the division first, then the sum's adjoint,
                    // each coefficient spread over its window.
                    let dims = in_dims(0)?;
                    let (c, ho, wo) = (dims[2], a.dim(3)?, a.dim(4)?);
                    let divisor = window_sizes(
                        (dims[3], dims[4]),
                        (ho, wo),
                        *kernel,
                        *stride,
                        *padding,
                        *count_include_pad,
                    );
                    let divisor = Tensor::from_vec(divisor, (1, 1, 1, ho, wo), a.device())?
                        .to_dtype(a.dtype())?;
                    let kk = kernel[0] * kernel[1];
                    let cols = a
                        .broadcast_div(&divisor)?
                        .reshape((n * k, c, ho * wo))?
                        .transpose(1, 2)?
                        .unsqueeze(3)?
                        .broadcast_as((n * k, ho * wo, c, kk))?
                        .contiguous()?;
                    let windows = Windows {
                        kernel: *kernel,
                        stride: *stride,
                        dilation: 1,
                        channels_first: false,
                    };
                    vec![spread(&windows, &cols, &dims, *padding)?]
                }
                Op::Linear { .. } => {
                    let w = self.param(id, "weight").expect("weight");
                    if let Some(b) = self.param(id, "bias") {
                        bias = (bias + a.broadcast_matmul(&b.unsqueeze(1)?)?.squeeze(2)?)?;
                    }
                    vec![a.broadcast_matmul(w)?.reshape(in_dims(0)?.as_slice())?]
                }
                Op::BatchNorm => {
                    let (scale, shift) = self.batch_norm_affine(id, stats)?;
                    let rank = a.rank();
                    bias = (bias + sum_rest(&a.broadcast_mul(&channel_shape(&shift, rank, 2)?)?)?)?;
                    vec![a.broadcast_mul(&channel_shape(&scale, rank, 2)?)?]
                }
                Op::ScaleShift { .. } => {
                    let (scale, shift) = (self.buffer(id, "scale")?, self.buffer(id, "shift")?);
                    bias = (bias + sum_rest(&a.broadcast_mul(shift)?)?)?;
                    vec![a.broadcast_mul(scale)?]
                }
                Op::Act {
                    function: Activation::Relu,
                } => {
                    let iv = ibp[ins[0].index()].as_ref().expect("bounded");
                    let l = iv.lo.minimum(0f32)?;
                    let u = iv.hi.maximum(0f32)?;
                    // Upper line s (x - l) over [l, u] (s = 1 active, 0 inactive); lower line
                    // x where u > -l, else 0.
                    let active = iv.lo.ge(0f32)?.to_dtype(a.dtype())?;
                    let s = (&u / ((&u - &l)? + 1e-12)?)?;
                    let s = (&active + s.broadcast_mul(&(1.0 - &active)?)?)?;
                    let lower = u.gt(&l.neg()?)?.to_dtype(a.dtype())?;
                    let (s, lower, l) = (per_example(&s)?, per_example(&lower)?, per_example(&l)?);
                    let (pos, neg) = (a.relu()?, a.minimum(0f32)?);
                    bias = (bias - sum_rest(&neg.broadcast_mul(&s)?.broadcast_mul(&l)?)?)?;
                    vec![(pos.broadcast_mul(&lower)? + neg.broadcast_mul(&s)?)?]
                }
                Op::Pad { pads, value } => {
                    let [t, l, _, _] = *pads;
                    let dims = in_dims(0)?;
                    let inner = a.narrow(3, t, dims[3])?.narrow(4, l, dims[4])?;
                    if *value != 0.0 {
                        let border = (sum_rest(&a)? - sum_rest(&inner)?)?;
                        bias = (bias + (border * *value)?)?;
                    }
                    vec![inner]
                }
                Op::Reshape { .. } | Op::Flatten => vec![a.reshape(in_dims(0)?.as_slice())?],
                Op::Identity => vec![a],
                Op::Zero => vec![],
                Op::Add => vec![a; ins.len()],
                Op::Concat => {
                    let mut start = 0;
                    let mut v = Vec::new();
                    for i in 0..ins.len() {
                        let c = in_dims(i)?[2];
                        v.push(a.narrow(2, start, c)?);
                        start += c;
                    }
                    v
                }
                Op::GlobalAvgPool => {
                    let dims = in_dims(0)?;
                    let hw = (dims[3] * dims[4]) as f64;
                    vec![(a.broadcast_as(dims.as_slice())? / hw)?]
                }
                op => return Err(unsupported_err(&node.name, op, "CROWN-IBP")),
            };
            for (&i, t) in ins.iter().zip(pass) {
                let slot = &mut coeffs[i.index()];
                *slot = Some(match slot.take() {
                    Some(old) => (old + t)?,
                    None => t,
                });
            }
        }
        let bound = bound
            .ok_or_else(|| ModelError::Graph("the output does not depend on the input".into()))?;
        Ok((bound + bias)?)
    }

    /// The share of `(x, y)` classified correctly and proven robust at `eps` by the bounds
    /// (evaluation mode): IBP's, and for CROWN-IBP the better of IBP's and CROWN's. A lower
    /// bound of the verified accuracy a complete verifier finds. Batches of 64 bound the
    /// memory of CROWN's coefficients (classes times the activations).
    pub fn certified_accuracy(
        &self,
        x: &[f32],
        y: &[u32],
        eps: f64,
        method: BoundMethod,
    ) -> Result<f64> {
        let d: usize = self.input_shape().iter().product();
        let mut proven = 0usize;
        for start in (0..y.len()).step_by(64) {
            let m = (y.len() - start).min(64);
            let xb = self.batch(&x[start * d..(start + m) * d], m)?;
            let yb = &y[start..start + m];
            let pred = self.forward(&xb)?.argmax(1)?.to_vec1::<u32>()?;
            let ball = Interval::ball(&xb, eps)?;
            let crown = method == BoundMethod::CrownIbp;
            let lb = match self.margin_bounds(&ball, yb, crown, true, None)? {
                (Some(i), Some(c)) => i.maximum(&c)?.detach(),
                (Some(i), None) => i.detach(),
                _ => unreachable!("IBP's bound is asked for"),
            };
            // The margin against the label itself is 0; every other must be positive.
            let rows = lb.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (i, row) in rows.iter().enumerate() {
                let ok = pred[i] == yb[i]
                    && row
                        .iter()
                        .enumerate()
                        .all(|(j, &v)| j == yb[i] as usize || v > 0.0);
                proven += ok as usize;
            }
        }
        Ok(proven as f64 / y.len().max(1) as f64)
    }
}

/// The adjoint of a windowed operator's reads: `cols` (`[N K, Ho Wo, C kh kw]`, each window's
/// coefficients) added back where each window read the padded input, the padding dropped;
/// shaped as the input's coefficients `dims` (`[N, K, C, H, W]`).
fn spread(windows: &Windows, cols: &Tensor, dims: &[usize], padding: [usize; 2]) -> Result<Tensor> {
    let (hp, wp) = (dims[3] + 2 * padding[0], dims[4] + 2 * padding[1]);
    let t = windows
        .fold(cols, (dims[0] * dims[1], dims[2], hp, wp))?
        .narrow(2, padding[0], dims[3])?
        .narrow(3, padding[1], dims[4])?;
    Ok(t.reshape(dims)?)
}

/// The divisor of each output of an average pool over an `h x w` input: the window's size,
/// or with `count_include_pad` false the number of its elements inside the input.
fn window_sizes(
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
) -> Vec<f32> {
    let inside = |o: usize, axis: usize, len: usize| {
        (0..kernel[axis])
            .filter(|&i| {
                let at = (o * stride[axis] + i) as isize - padding[axis] as isize;
                at >= 0 && (at as usize) < len
            })
            .count()
    };
    (0..ho * wo)
        .map(|p| {
            if count_include_pad {
                (kernel[0] * kernel[1]) as f32
            } else {
                (inside(p / wo, 0, h) * inside(p % wo, 1, w)) as f32
            }
        })
        .collect()
}

/// A grouped convolution's weights `[O, C / g, kh, kw]` as the dense `[O, C, kh, kw]` whose
/// off-group blocks are zero (candle's transposed convolution has no groups).
fn block_diagonal(w: &Tensor, groups: usize, c: usize) -> Result<Tensor> {
    if groups <= 1 {
        return Ok(w.clone());
    }
    let o = w.dim(0)?;
    let (og, cg) = (o / groups, c / groups);
    let rep = Tensor::cat(&vec![w; groups], 1)?;
    let mask: Vec<f32> = (0..o * c)
        .map(|i| ((i / c) / og == (i % c) / cg) as u8 as f32)
        .collect();
    let mask = Tensor::from_vec(mask, (o, c, 1, 1), w.device())?.to_dtype(w.dtype())?;
    Ok(rep.broadcast_mul(&mask)?)
}

/// `cross_entropy(-lb, y)`: the loss of the worst logits the margin bounds allow.
pub fn robust_loss(lb: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(&lb.neg()?, y)?)
}
