//! The training engine: an IR graph compiled into a list of CPU kernels over buffers that
//! are allocated once, with a hand-written backward pass per operator, the loss, and
//! in-place optimizers.
//!
//! Why it exists beside candle: on the small convolutional networks archproof searches,
//! candle's generic autograd spends most of a step allocating tensors, faulting in fresh
//! pages and broadcasting element by element; its matrix products are a small share (measured
//! with `perf` on resnet-tiny). Here every buffer is reused across steps, convolutions are
//! im2col products through the `gemm` crate (the same kernels candle uses), and batch
//! normalization's backward is one pass. Graphs with an operator it has no kernel for
//! (normalization-activation layers, group and layer norm, products of tensors, grouped
//! convolutions other than depthwise) train with candle, which stays the reference: the
//! tests check these gradients against candle's.
//!
//! Results do not depend on the thread count: sums over images are taken per fixed chunk
//! ([`kernels::CHUNKS`]) and added in order.

pub mod gemm;
pub mod kernels;
pub mod normact;

use candle_core::{Tensor, Var};
use rayon::prelude::*;

use super::model::{Model, MOVING_DECAY};
use crate::ir::weights::BATCH_NORM_EPS;
use crate::ir::{Activation, Op};
use kernels::{Conv, Pool, Scratch, CHUNKS};

/// Errors of building the engine for a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The graph has an operator the engine has no kernel for; train it with candle.
    #[error("node '{node}': the training engine has no kernel for {what}; candle trains it")]
    Unsupported { node: String, what: String },
    /// A candle tensor could not be read or written.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The optimizer and its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// SGD with heavy-ball momentum and L2 weight decay (PyTorch's update).
    Sgd { momentum: f32, weight_decay: f32 },
    /// AdamW (candle's and PyTorch's update; plain Adam with decay 0).
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl Optimizer {
    /// Adam with the usual betas and epsilon.
    pub fn adam(weight_decay: f64) -> Self {
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }
}

enum Kernel {
    Input,
    Conv {
        g: Conv,
        weight: usize,
        bias: Option<usize>,
    },
    Linear {
        i: usize,
        o: usize,
        weight: usize,
        bias: Option<usize>,
    },
    BatchNorm {
        c: usize,
        hw: usize,
        weight: usize,
        bias: usize,
        state: usize,
    },
    Act(Activation),
    LeakyRelu(f32),
    Clip(f32, f32),
    Add,
    Concat,
    GlobalAvgPool {
        hw: usize,
    },
    MaxPool {
        g: Pool,
        arg: Vec<u32>,
    },
    AvgPool {
        g: Pool,
        div: Vec<f32>,
    },
    /// A normalization-activation layer and its parameters.
    NormAct {
        layer: Box<normact::NormAct>,
        weight: usize,
        bias: usize,
        v0: Option<usize>,
        v1: Option<usize>,
    },
    /// Identity, flatten and reshape: the same numbers.
    Copy,
    Zero,
}

/// A learned tensor with its gradient and optimizer state.
struct Param {
    node: usize,
    name: String,
    dims: Vec<usize>,
    value: Vec<f32>,
    grad: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Batch normalization's moving statistics and the batch statistics of the last pass.
struct BnState {
    node: usize,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    var: Vec<f32>,
}

/// A model compiled for training on the CPU, for batches of up to `capacity` examples.
pub struct Engine {
    order: Vec<usize>,
    kernels: Vec<Kernel>,
    inputs: Vec<Vec<usize>>,
    numel: Vec<usize>,
    /// Whether a node's gradient is needed (it or something before it has parameters).
    needs_grad: Vec<bool>,
    /// During a backward pass: the node's gradient buffer holds nothing of this pass yet, so
    /// the first gradient written into it is assigned rather than added (no zeroing pass).
    fresh: Vec<bool>,
    values: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    params: Vec<Param>,
    bn: Vec<BnState>,
    scratch: Vec<Scratch>,
    capacity: usize,
    input: usize,
    output: usize,
    /// Examples in the last forward pass.
    batch: usize,
    step_t: i32,
    dlogits: Vec<f32>,
}

fn read(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl Engine {
    /// Compiles `model` for batches of up to `capacity` examples, with its current parameters
    /// and statistics. Fails with [`EngineError::Unsupported`] on operators it has no kernel
    /// for and on models that do not compute in f32.
    pub fn new(model: &Model, capacity: usize) -> Result<Engine, EngineError> {
        let graph = &model.graph;
        let unsupported = |i: usize, what: String| EngineError::Unsupported {
            node: graph.node(crate::ir::NodeId::new(i)).name.clone(),
            what,
        };
        if model.dtype != candle_core::DType::F32 {
            return Err(unsupported(0, format!("{:?} arithmetic", model.dtype)));
        }
        let nodes = model.shapes.len();
        let numel: Vec<usize> = model.shapes.iter().map(|s| s.numel()).collect();
        let inputs: Vec<Vec<usize>> = model
            .inputs
            .iter()
            .map(|v| v.iter().map(|i| i.index()).collect())
            .collect();
        let mut params = Vec::new();
        let mut param_of = std::collections::HashMap::new();
        for ((node, name), var) in &model.params {
            param_of.insert((*node, name.clone()), params.len());
            let value = read(var.as_tensor())?;
            let n = value.len();
            params.push(Param {
                node: *node,
                name: name.clone(),
                dims: var.dims().to_vec(),
                value,
                grad: vec![0.0; n],
                m: vec![0.0; n],
                v: vec![0.0; n],
            });
        }
        let param = |i: usize, name: &str| param_of.get(&(i, name.to_string())).copied();
        let mut kernels: Vec<Kernel> = (0..nodes).map(|_| Kernel::Zero).collect();
        let mut bn = Vec::new();
        let (mut col, mut wlen, mut olen) = (0usize, 0usize, 0usize);
        let mut input = None;
        for &id in &model.order {
            let i = id.index();
            let op = &graph.node(id).op;
            let dims = |k: usize| model.shapes[inputs[i][k]].dims();
            let out = model.shapes[i].dims();
            let chw = |d: &[usize]| -> Option<(usize, usize, usize)> {
                match *d {
                    [c, h, w] => Some((c, h, w)),
                    _ => None,
                }
            };
            kernels[i] = match op {
                Op::Input { .. } => {
                    input = Some(i);
                    Kernel::Input
                }
                Op::Conv2d {
                    kernel,
                    stride,
                    padding,
                    dilation,
                    groups,
                    out_channels,
                    ..
                } => {
                    let ((c, h, w), (_, ho, wo)) = chw(dims(0))
                        .zip(chw(out))
                        .ok_or_else(|| unsupported(i, "a convolution of a non-image".into()))?;
                    let depthwise = *groups > 1 && *groups == c && *out_channels == c;
                    if *groups != 1 && !depthwise {
                        return Err(unsupported(i, format!("a convolution in {groups} groups")));
                    }
                    let g = Conv {
                        c,
                        h,
                        w,
                        o: *out_channels,
                        kh: kernel[0],
                        kw: kernel[1],
                        stride: *stride,
                        pad: *padding,
                        dil: *dilation,
                        ho,
                        wo,
                        depthwise,
                    };
                    col = col.max(g.col_len());
                    wlen = wlen.max(g.weight_len());
                    olen = olen.max(g.o);
                    Kernel::Conv {
                        g,
                        weight: param(i, "weight").expect("a convolution has weights"),
                        bias: param(i, "bias"),
                    }
                }
                Op::Linear { out_features, .. } => Kernel::Linear {
                    i: numel[inputs[i][0]],
                    o: *out_features,
                    weight: param(i, "weight").expect("a linear layer has weights"),
                    bias: param(i, "bias"),
                },
                Op::BatchNorm => {
                    let d = dims(0);
                    let (c, hw) = match d {
                        [c] => (*c, 1),
                        [c, h, w] => (*c, h * w),
                        _ => return Err(unsupported(i, format!("batch norm over {d:?}"))),
                    };
                    let buffer = |name: &str| -> Result<Vec<f32>, EngineError> {
                        Ok(read(&model.buffers[&(i, name.to_string())])?)
                    };
                    bn.push(BnState {
                        node: i,
                        running_mean: buffer("running_mean")?,
                        running_var: buffer("running_var")?,
                        mean: vec![0.0; c],
                        invstd: vec![0.0; c],
                        var: vec![0.0; c],
                    });
                    Kernel::BatchNorm {
                        c,
                        hw,
                        weight: param(i, "weight").expect("batch norm has a scale"),
                        bias: param(i, "bias").expect("batch norm has a shift"),
                        state: bn.len() - 1,
                    }
                }
                Op::Act { function } => Kernel::Act(*function),
                Op::LeakyRelu { slope } => Kernel::LeakyRelu(*slope as f32),
                Op::Clip { min, max } => Kernel::Clip(*min as f32, *max as f32),
                Op::Add => {
                    if inputs[i].iter().any(|&j| numel[j] != numel[i]) {
                        return Err(unsupported(i, "a broadcasting sum".into()));
                    }
                    Kernel::Add
                }
                Op::Concat => Kernel::Concat,
                Op::GlobalAvgPool => {
                    let (_, h, w) = chw(dims(0))
                        .ok_or_else(|| unsupported(i, "pooling of a non-image".into()))?;
                    Kernel::GlobalAvgPool { hw: h * w }
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                }
                | Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                    ..
                } => {
                    let ((c, h, w), (_, ho, wo)) = chw(dims(0))
                        .zip(chw(out))
                        .ok_or_else(|| unsupported(i, "pooling of a non-image".into()))?;
                    let count_include_pad = match op {
                        Op::AvgPool {
                            count_include_pad, ..
                        } => *count_include_pad,
                        _ => false,
                    };
                    let g = Pool {
                        c,
                        h,
                        w,
                        kernel: *kernel,
                        stride: *stride,
                        pad: *padding,
                        ho,
                        wo,
                        count_include_pad,
                    };
                    if matches!(op, Op::MaxPool { .. }) {
                        Kernel::MaxPool {
                            g,
                            arg: vec![0; capacity * numel[i]],
                        }
                    } else {
                        Kernel::AvgPool {
                            div: kernels::avg_pool_divisors(&g),
                            g,
                        }
                    }
                }
                Op::NormAct(layer) => {
                    let (c, h, w) = chw(dims(0)).ok_or_else(|| {
                        unsupported(i, "a normalization-activation layer of a non-image".into())
                    })?;
                    let mut layer = normact::NormAct::new(layer, c, h * w, capacity);
                    for (k, m) in &mut layer.moving {
                        *m = read(&model.buffers[&(i, format!("moving.{k}"))])?;
                    }
                    Kernel::NormAct {
                        layer: Box::new(layer),
                        weight: param(i, "weight").expect("a layer has a scale"),
                        bias: param(i, "bias").expect("a layer has a shift"),
                        v0: param(i, "v0"),
                        v1: param(i, "v1"),
                    }
                }
                Op::Flatten | Op::Reshape { .. } | Op::Identity => Kernel::Copy,
                Op::Zero => Kernel::Zero,
                other => return Err(unsupported(i, format!("the {} operator", other.kind()))),
            };
        }
        let mut needs_grad = vec![false; nodes];
        for &id in &model.order {
            let i = id.index();
            needs_grad[i] = params.iter().any(|p| p.node == i)
                || (!matches!(kernels[i], Kernel::Zero)
                    && inputs[i].iter().any(|&j| needs_grad[j]));
        }
        let scratch = (0..CHUNKS)
            .map(|_| Scratch {
                col: vec![0.0; col],
                dcol: vec![0.0; col],
                dw: vec![0.0; wlen],
                db: vec![0.0; olen],
            })
            .collect();
        let output = graph.outputs()[0].index();
        Ok(Engine {
            order: model.order.iter().map(|i| i.index()).collect(),
            values: numel.iter().map(|&k| vec![0.0; capacity * k]).collect(),
            grads: numel
                .iter()
                .zip(&needs_grad)
                .map(|(&k, &need)| {
                    if need {
                        vec![0.0; capacity * k]
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
            kernels,
            inputs,
            fresh: vec![true; nodes],
            needs_grad,
            params,
            bn,
            scratch,
            capacity,
            input: input.expect("an analysed graph has an input"),
            output,
            batch: 0,
            step_t: 0,
            dlogits: vec![0.0; capacity * numel[output]],
            numel,
        })
    }

    /// The most examples a pass takes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Outputs per example.
    pub fn outputs(&self) -> usize {
        self.numel[self.output]
    }

    /// The forward pass of `n` examples (`x` holds `n` inputs back to back): with batch
    /// statistics, and the moving averages updated, when `train`; with the moving averages
    /// otherwise. Returns the outputs, `[n, outputs]`.
    pub fn forward(&mut self, x: &[f32], n: usize, train: bool) -> &[f32] {
        assert!(n >= 1 && n <= self.capacity, "a batch of 1 to capacity");
        let d = self.numel[self.input];
        self.values[self.input][..n * d].copy_from_slice(&x[..n * d]);
        self.batch = n;
        for k in 0..self.order.len() {
            let i = self.order[k];
            let mut out = std::mem::take(&mut self.values[i]);
            self.forward_node(i, &mut out, n, train);
            self.values[i] = out;
        }
        &self.values[self.output][..n * self.numel[self.output]]
    }

    fn forward_node(&mut self, i: usize, out: &mut [f32], n: usize, train: bool) {
        let len = n * self.numel[i];
        let vals = &self.values;
        let arg = |k: usize| -> &[f32] {
            let j = self.inputs[i][k];
            &vals[j][..n * self.numel[j]]
        };
        let out = &mut out[..len];
        let p = &self.params;
        match &mut self.kernels[i] {
            Kernel::Input => {}
            Kernel::Conv { g, weight, bias } => kernels::conv_forward(
                g,
                arg(0),
                &p[*weight].value,
                bias.map(|b| p[b].value.as_slice()),
                out,
                n,
                &mut self.scratch,
            ),
            Kernel::Linear {
                i: fi,
                o,
                weight,
                bias,
            } => kernels::linear_forward(
                arg(0),
                &p[*weight].value,
                bias.map(|b| p[b].value.as_slice()),
                out,
                (n, *fi, *o),
            ),
            Kernel::BatchNorm {
                c,
                hw,
                weight,
                bias,
                state,
            } => {
                let s = &mut self.bn[*state];
                let (gamma, beta) = (&p[*weight].value, &p[*bias].value);
                if train {
                    kernels::batch_norm_train(
                        arg(0),
                        out,
                        (n, *c, *hw),
                        gamma,
                        beta,
                        BATCH_NORM_EPS,
                        &mut s.mean,
                        &mut s.invstd,
                        &mut s.var,
                    );
                    let m = (n * *hw) as f64;
                    let unbias = (m / (m - 1.0).max(1.0)) as f32;
                    let (keep, take) = (MOVING_DECAY as f32, (1.0 - MOVING_DECAY) as f32);
                    for ch in 0..*c {
                        s.running_mean[ch] = s.running_mean[ch] * keep + s.mean[ch] * take;
                        s.running_var[ch] = s.running_var[ch] * keep + s.var[ch] * unbias * take;
                    }
                } else {
                    let invstd: Vec<f32> = s
                        .running_var
                        .iter()
                        .map(|v| (1.0 / (*v as f64 + BATCH_NORM_EPS).sqrt()) as f32)
                        .collect();
                    kernels::batch_norm_apply(
                        arg(0),
                        out,
                        (n, *c, *hw),
                        gamma,
                        beta,
                        &s.running_mean,
                        &invstd,
                    );
                }
            }
            Kernel::Act(f) => {
                let f = *f;
                kernels::map(out, arg(0), move |v| kernels::act(f, v));
            }
            Kernel::LeakyRelu(s) => {
                let s = *s;
                kernels::map(out, arg(0), move |v| if v > 0.0 { v } else { v * s });
            }
            Kernel::Clip(lo, hi) => {
                let (lo, hi) = (*lo, *hi);
                kernels::map(out, arg(0), move |v| v.clamp(lo, hi));
            }
            Kernel::Add => {
                match self.inputs[i].len() {
                    1 => out.copy_from_slice(arg(0)),
                    _ => kernels::sum2(out, arg(0), arg(1)),
                }
                for k in 2..self.inputs[i].len() {
                    kernels::add_into(out, arg(k));
                }
            }
            Kernel::Concat => {
                let per = self.numel[i];
                let mut at = 0;
                for &j in &self.inputs[i] {
                    let pj = self.numel[j];
                    for img in 0..n {
                        out[img * per + at..img * per + at + pj]
                            .copy_from_slice(&vals[j][img * pj..(img + 1) * pj]);
                    }
                    at += pj;
                }
            }
            Kernel::GlobalAvgPool { hw, .. } => {
                let hw = *hw;
                out.par_iter_mut()
                    .zip(arg(0).par_chunks(hw))
                    .for_each(|(o, plane)| *o = plane.iter().sum::<f32>() / hw as f32);
            }
            Kernel::MaxPool { g, arg: idx } => {
                kernels::max_pool_forward(g, arg(0), out, idx, n * g.c);
            }
            Kernel::AvgPool { g, div } => {
                kernels::avg_pool_forward(g, div, arg(0), out, n * g.c);
            }
            Kernel::NormAct {
                layer,
                weight,
                bias,
                v0,
                v1,
            } => layer.forward(
                arg(0),
                out,
                n,
                train,
                v0.map(|k| p[k].value.as_slice()),
                v1.map(|k| p[k].value.as_slice()),
                &p[*weight].value,
                &p[*bias].value,
            ),
            Kernel::Copy => out.copy_from_slice(arg(0)),
            Kernel::Zero => out.fill(0.0),
        }
    }

    /// The backward pass of the last forward pass (which must have been in training mode):
    /// parameter gradients of `sum(outputs * dout)`, added to the gradients held.
    pub fn backward(&mut self, dout: &[f32]) {
        let n = self.batch;
        self.fresh.fill(true);
        let ko = self.numel[self.output];
        if self.grads[self.output].is_empty() {
            return;
        }
        self.grads[self.output][..n * ko].copy_from_slice(&dout[..n * ko]);
        self.fresh[self.output] = false;
        for k in (0..self.order.len()).rev() {
            let i = self.order[k];
            // A node no gradient reached (it only feeds a zero) has a zero gradient.
            if !self.needs_grad[i] || self.fresh[i] {
                continue;
            }
            let dy = std::mem::take(&mut self.grads[i]);
            self.backward_node(i, &dy[..n * self.numel[i]], n);
            self.grads[i] = dy;
        }
    }

    fn backward_node(&mut self, i: usize, dy: &[f32], n: usize) {
        let j0 = self.inputs[i].first().copied();
        let x = j0.map(|j| &self.values[j][..n * self.numel[j]]);
        // The first input's gradient, when it is needed.
        let (grads, needs, fresh) = (&mut self.grads, &self.needs_grad, &mut self.fresh);
        // Whether the first input's gradient is to be assigned rather than added to.
        let set0 = j0.is_some_and(|j| fresh[j]);
        let mut dx0: Option<&mut [f32]> = match j0 {
            Some(j) if needs[j] => {
                fresh[j] = false;
                Some(&mut grads[j][..n * self.numel[j]])
            }
            _ => None,
        };
        match &mut self.kernels[i] {
            Kernel::Input | Kernel::Zero => {}
            Kernel::NormAct {
                layer,
                weight,
                bias,
                v0,
                v1,
            } => {
                let mut take = |k: usize| std::mem::take(&mut self.params[k].grad);
                let (mut dg, mut db) = (take(*weight), take(*bias));
                let mut d0 = v0.map(&mut take);
                let mut d1 = v1.map(&mut take);
                layer.backward(
                    dy,
                    dx0.map(|d| (d, set0)),
                    n,
                    &self.params[*weight].value,
                    &mut dg,
                    &mut db,
                    d0.as_deref_mut(),
                    d1.as_deref_mut(),
                );
                self.params[*weight].grad = dg;
                self.params[*bias].grad = db;
                for (k, d) in [(*v0, d0), (*v1, d1)] {
                    if let (Some(k), Some(d)) = (k, d) {
                        self.params[k].grad = d;
                    }
                }
            }
            Kernel::Conv { g, weight, bias } => {
                let mut dw = std::mem::take(&mut self.params[*weight].grad);
                let mut db = bias.map(|b| std::mem::take(&mut self.params[b].grad));
                kernels::conv_backward(
                    g,
                    x.expect("an input"),
                    &self.params[*weight].value,
                    dy,
                    dx0.map(|d| (d, set0)),
                    &mut dw,
                    db.as_deref_mut(),
                    n,
                    &mut self.scratch,
                );
                self.params[*weight].grad = dw;
                if let (Some(b), Some(db)) = (bias, db) {
                    self.params[*b].grad = db;
                }
            }
            Kernel::Linear {
                i: fi,
                o,
                weight,
                bias,
            } => {
                let mut dw = std::mem::take(&mut self.params[*weight].grad);
                let mut db = bias.map(|b| std::mem::take(&mut self.params[b].grad));
                kernels::linear_backward(
                    x.expect("an input"),
                    &self.params[*weight].value,
                    dy,
                    dx0.map(|d| (d, set0)),
                    &mut dw,
                    db.as_deref_mut(),
                    (n, *fi, *o),
                );
                self.params[*weight].grad = dw;
                if let (Some(b), Some(db)) = (bias, db) {
                    self.params[*b].grad = db;
                }
            }
            Kernel::BatchNorm {
                c,
                hw,
                weight,
                bias,
                state,
            } => {
                let mut dg = std::mem::take(&mut self.params[*weight].grad);
                let mut dbeta = std::mem::take(&mut self.params[*bias].grad);
                let s = &self.bn[*state];
                kernels::batch_norm_backward(
                    x.expect("an input"),
                    dy,
                    dx0.map(|d| (d, set0)),
                    (n, *c, *hw),
                    &self.params[*weight].value,
                    &s.mean,
                    &s.invstd,
                    &mut dg,
                    &mut dbeta,
                );
                self.params[*weight].grad = dg;
                self.params[*bias].grad = dbeta;
            }
            Kernel::Act(f) => {
                if let Some(dx) = dx0 {
                    let f = *f;
                    kernels::acc_map(dx, set0, dy, x.expect("an input"), move |d, v| {
                        d * kernels::act_grad(f, v)
                    });
                }
            }
            Kernel::LeakyRelu(s) => {
                if let Some(dx) = dx0 {
                    let s = *s;
                    kernels::acc_map(dx, set0, dy, x.expect("an input"), move |d, v| {
                        if v > 0.0 {
                            d
                        } else {
                            d * s
                        }
                    });
                }
            }
            Kernel::Clip(lo, hi) => {
                if let Some(dx) = dx0 {
                    let (lo, hi) = (*lo, *hi);
                    kernels::acc_map(dx, set0, dy, x.expect("an input"), move |d, v| {
                        if v > lo && v < hi {
                            d
                        } else {
                            0.0
                        }
                    });
                }
            }
            Kernel::Add => {
                for (k, &j) in self.inputs[i].iter().enumerate() {
                    if needs[j] {
                        // The first input's flag was taken above.
                        let set = if k == 0 { set0 } else { fresh[j] };
                        kernels::put(&mut grads[j][..n * self.numel[j]], dy, set);
                        fresh[j] = false;
                    }
                }
            }
            Kernel::Concat => {
                let per = self.numel[i];
                let mut at = 0;
                for &j in &self.inputs[i] {
                    let pj = self.numel[j];
                    if needs[j] {
                        let set = if at == 0 { set0 } else { fresh[j] };
                        for img in 0..n {
                            kernels::put(
                                &mut grads[j][img * pj..(img + 1) * pj],
                                &dy[img * per + at..img * per + at + pj],
                                set,
                            );
                        }
                        fresh[j] = false;
                    }
                    at += pj;
                }
            }
            Kernel::GlobalAvgPool { hw, .. } => {
                if let Some(dx) = dx0.as_deref_mut() {
                    let hw = *hw;
                    dx.par_chunks_mut(hw).zip(dy.par_iter()).for_each(|(p, d)| {
                        let v = d / hw as f32;
                        if set0 {
                            p.fill(v);
                        } else {
                            p.iter_mut().for_each(|x| *x += v);
                        }
                    });
                }
            }
            Kernel::MaxPool { g, arg } => {
                if let Some(dx) = dx0 {
                    kernels::max_pool_backward(g, dy, arg, (dx, set0), n * g.c);
                }
            }
            Kernel::AvgPool { g, div } => {
                if let Some(dx) = dx0 {
                    kernels::avg_pool_backward(g, div, dy, (dx, set0), n * g.c);
                }
            }
            Kernel::Copy => {
                if let Some(dx) = dx0 {
                    kernels::put(dx, dy, set0);
                }
            }
        }
    }

    /// Sets every parameter gradient to zero.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.grad.fill(0.0);
        }
    }

    /// Mean cross-entropy of the last forward pass's outputs against `labels`, and the number
    /// of examples whose largest output is their label; leaves the loss's gradient with
    /// respect to the outputs in an internal buffer for [`Engine::backward_loss`].
    pub fn cross_entropy(&mut self, labels: &[u32]) -> (f64, usize) {
        let (n, k) = (self.batch, self.numel[self.output]);
        let logits = &self.values[self.output][..n * k];
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for ((row, d), &y) in logits.chunks(k).zip(self.dlogits.chunks_mut(k)).zip(labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
            let y = y as usize;
            loss += sum.ln() - (row[y] - max) as f64;
            // The first largest, as argmax picks it.
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (j, &v)| if v > row[b] { j } else { b });
            correct += (best == y) as usize;
            for (j, (dv, &v)) in d.iter_mut().zip(row).enumerate() {
                let p = ((v - max) as f64).exp() / sum;
                *dv = ((p - (j == y) as u8 as f64) / n as f64) as f32;
            }
        }
        (loss / n as f64, correct)
    }

    /// The backward pass of the loss last computed by [`Engine::cross_entropy`].
    pub fn backward_loss(&mut self) {
        let d = std::mem::take(&mut self.dlogits);
        self.backward(&d);
        self.dlogits = d;
    }

    /// One optimizer update of every parameter with the gradients held, at learning rate `lr`.
    pub fn update(&mut self, opt: Optimizer, lr: f64) {
        self.step_t += 1;
        let t = self.step_t;
        self.params.par_iter_mut().for_each(|p| match opt {
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let decay = (1.0 - lr * weight_decay) as f32;
                let scale_m = (1.0 / (1.0 - beta1.powi(t))) as f32;
                let scale_v = (1.0 / (1.0 - beta2.powi(t))) as f32;
                let (b1, b2, eps, lr) = (beta1 as f32, beta2 as f32, eps as f32, lr as f32);
                for (((w, g), m), v) in p
                    .value
                    .iter_mut()
                    .zip(&p.grad)
                    .zip(p.m.iter_mut())
                    .zip(p.v.iter_mut())
                {
                    *m = *m * b1 + g * (1.0 - b1);
                    *v = *v * b2 + g * g * (1.0 - b2);
                    let step = (*m * scale_m) / ((*v * scale_v).sqrt() + eps);
                    *w = *w * decay - step * lr;
                }
            }
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => {
                let lr = lr as f32;
                for ((w, g), v) in p.value.iter_mut().zip(&p.grad).zip(p.m.iter_mut()) {
                    let g = g + weight_decay * *w;
                    *v = if t > 1 && momentum != 0.0 {
                        *v * momentum + g
                    } else {
                        g
                    };
                    *w -= lr * *v;
                }
            }
        });
    }

    /// One training step on `n` examples: forward in training mode, cross-entropy, backward,
    /// optimizer update. Returns the batch's mean loss and its correct predictions.
    pub fn train_step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        n: usize,
        opt: Optimizer,
        lr: f64,
    ) -> (f64, usize) {
        self.forward(x, n, true);
        let r = self.cross_entropy(labels);
        self.zero_grad();
        self.backward_loss();
        self.update(opt, lr);
        r
    }

    /// Mean loss and accuracy over `count` examples in evaluation mode, in batches of the
    /// engine's capacity.
    pub fn evaluate(&mut self, x: &[f32], labels: &[u32], count: usize) -> (f64, f64) {
        let d = self.numel[self.input];
        let (mut loss, mut correct) = (0.0, 0usize);
        let mut start = 0;
        while start < count {
            let n = (count - start).min(self.capacity);
            self.forward(&x[start * d..(start + n) * d], n, false);
            let (l, c) = self.cross_entropy(&labels[start..start + n]);
            loss += l * n as f64;
            correct += c;
            start += n;
        }
        let c = count.max(1) as f64;
        (loss / c, correct as f64 / c)
    }

    /// Parameter gradients by name, `{node}.{name}` as [`Model::named_vars`] names them.
    pub fn named_grads(&self, model: &Model) -> Vec<(String, Vec<f32>)> {
        self.params
            .iter()
            .map(|p| {
                let node = &model.graph.node(crate::ir::NodeId::new(p.node)).name;
                (format!("{node}.{}", p.name), p.grad.clone())
            })
            .collect()
    }

    /// Writes the parameters and moving statistics back into `model`.
    pub fn store(&self, model: &mut Model) -> Result<(), EngineError> {
        for p in &self.params {
            let t = Tensor::from_slice(&p.value, p.dims.as_slice(), model.device())?;
            let var: &Var = &model.params[&(p.node, p.name.clone())];
            var.set(&t)?;
        }
        for (i, k) in self.kernels.iter().enumerate() {
            if let Kernel::NormAct { layer, .. } = k {
                for (prim, m) in &layer.moving {
                    let t = Tensor::from_slice(m, m.len(), model.device())?;
                    model.buffers.insert((i, format!("moving.{prim}")), t);
                }
            }
        }
        for s in &self.bn {
            for (name, v) in [
                ("running_mean", &s.running_mean),
                ("running_var", &s.running_var),
            ] {
                let t = Tensor::from_slice(v, v.len(), model.device())?;
                model.buffers.insert((s.node, name.to_string()), t);
            }
        }
        Ok(())
    }
}
