//! IR graphs as trainable candle models.
//!
//! Every operator of the IR has a forward pass here written in candle tensor operations, so
//! candle's autograd gives the backward pass. Parameters are candle `Var`s named and laid out as
//! the IR's weights are (`{node}.weight`, PyTorch layouts), initialised from a seeded ChaCha
//! stream so that a seed gives the same weights on every machine. Batch statistics (batch
//! normalization, and the batch-axis statistics of normalization-activation layers) are kept
//! as moving averages in training mode and used in evaluation mode.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ir::normact::{Axes, NormActGraph, Prim};
use crate::ir::weights::{self, Weights, BATCH_NORM_EPS};
use crate::ir::{Activation, Graph, NodeId, Op, Shape};
use crate::train::unfold::Windows;

/// The epsilon added to every variance of a normalization-activation layer (the reference's).
pub const NORMACT_EPS: f64 = 1e-5;
/// Weight of the old value in the moving averages of batch statistics (PyTorch's momentum 0.1).
pub const MOVING_DECAY: f64 = 0.9;

/// Errors of model building and running.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The graph is invalid or has an operator this back end cannot run.
    #[error("{0}")]
    Graph(String),
    /// A candle error.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

type Result<T> = std::result::Result<T, ModelError>;

/// Batch statistics of each batch normalization in one training-mode pass: node index to
/// (mean, biased variance), per channel.
pub type BatchStats = BTreeMap<usize, (Tensor, Tensor)>;

/// A trainable model of an IR graph.
pub struct Model {
    pub(super) graph: Graph,
    pub(super) order: Vec<NodeId>,
    /// Argument nodes of each node (by index), looked up once rather than on every pass.
    pub(super) inputs: Vec<Vec<NodeId>>,
    pub(super) shapes: Vec<Shape>,
    /// Learned parameters by (node index, name).
    pub(super) params: BTreeMap<(usize, String), Var>,
    /// Moving statistics by (node index, name).
    pub(super) buffers: BTreeMap<(usize, String), Tensor>,
    device: Device,
    pub(super) dtype: DType,
}

fn err(node: &str, msg: impl std::fmt::Display) -> ModelError {
    ModelError::Graph(format!("node '{node}': {msg}"))
}

impl Model {
    /// A model of `graph`: its own weights when it has them, else a seeded initialisation
    /// (He-uniform weights and zero biases for convolutions and linear layers, unit scale and
    /// zero shift for normalizations, v0 = 0 and v1 = 1 for normalization-activation layers).
    pub fn new(graph: &Graph, seed: u64) -> Result<Model> {
        let analysis = graph
            .analyze()
            .map_err(|e| ModelError::Graph(e.to_string()))?;
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = BTreeMap::new();
        let mut buffers = BTreeMap::new();
        for &id in &analysis.order {
            let node = graph.node(id);
            let ins: Vec<&Shape> = graph
                .inputs_of(id)
                .iter()
                .map(|i| &analysis.shapes[i.index()])
                .collect();
            let want = weights::expected(&node.op, &ins);
            let fan_in = match &node.op {
                Op::Conv2d { kernel, groups, .. } => {
                    ins[0].channels() / (*groups).max(1) * kernel[0] * kernel[1]
                }
                Op::Linear { .. } => ins[0].numel(),
                _ => 1,
            };
            for (name, shape) in want {
                let n: usize = shape.iter().product();
                let data: Vec<f32> = if let Some(t) = node.weights.get(name) {
                    t.data.clone()
                } else {
                    match (name, &node.op) {
                        ("weight", Op::Conv2d { .. } | Op::Linear { .. }) => {
                            let bound = (6.0 / fan_in as f64).sqrt();
                            (0..n)
                                .map(|_| rng.random_range(-bound..bound) as f32)
                                .collect()
                        }
                        ("weight" | "running_var" | "v1" | "scale", _) => vec![1.0; n],
                        _ => vec![0.0; n],
                    }
                };
                let t = Tensor::from_vec(data, shape.as_slice(), &device)?;
                if !weights::is_learned(&node.op, name) {
                    buffers.insert((id.index(), name.to_string()), t);
                } else {
                    params.insert((id.index(), name.to_string()), Var::from_tensor(&t)?);
                }
            }
            if let Op::NormAct(g) = &node.op {
                // Moving statistics of the batch-axis primitives.
                let c = ins[0].channels();
                for (k, p) in g.nodes.iter().enumerate() {
                    let init = match p.op {
                        Prim::Mean(Axes::Batch) => 0.0,
                        Prim::Var(Axes::Batch) => 1.0,
                        _ => continue,
                    };
                    buffers.insert(
                        (id.index(), format!("moving.{k}")),
                        Tensor::full(init as f32, c, &device)?,
                    );
                }
            }
        }
        Ok(Model {
            graph: graph.clone(),
            inputs: (0..analysis.shapes.len())
                .map(|i| graph.inputs_of(NodeId::new(i)))
                .collect(),
            order: analysis.order,
            shapes: analysis.shapes,
            params,
            buffers,
            device,
            dtype: DType::F32,
        })
    }

    /// The same model computing in `dtype` (F32 by default; F64 for proxies whose values
    /// overflow single precision). Parameters and statistics are converted.
    pub fn with_dtype(mut self, dtype: DType) -> Result<Model> {
        for v in self.params.values_mut() {
            *v = Var::from_tensor(&v.as_tensor().to_dtype(dtype)?)?;
        }
        for t in self.buffers.values_mut() {
            *t = t.to_dtype(dtype)?;
        }
        self.dtype = dtype;
        Ok(self)
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The graph (without trained weights; see [`Model::to_graph`]).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Shape of one input, without the batch dimension.
    pub fn input_shape(&self) -> &[usize] {
        let id = self
            .order
            .iter()
            .find(|id| matches!(self.graph.node(**id).op, Op::Input { .. }))
            .expect("an analysed graph has an input");
        self.shapes[id.index()].dims()
    }

    /// The learned parameters, in a fixed order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.values().cloned().collect()
    }

    /// The learned parameters with their names, `{node}.{name}`.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.params
            .iter()
            .map(|((i, n), v)| {
                let node = &self.graph.node(NodeId::new(*i)).name;
                (format!("{node}.{n}"), v.clone())
            })
            .collect()
    }

    /// Number of learned scalars.
    pub fn param_count(&self) -> usize {
        self.params.values().map(|v| v.elem_count()).sum()
    }

    /// The graph with the current parameters and statistics as its weights.
    pub fn to_graph(&self) -> Result<Graph> {
        let mut g = self.graph.clone();
        let mut per_node: BTreeMap<usize, Weights> = BTreeMap::new();
        let all = self
            .params
            .iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .chain(
                self.buffers
                    .iter()
                    .filter(|(k, _)| !k.1.starts_with("moving."))
                    .map(|(k, t)| (k, t.clone())),
            );
        for ((i, name), t) in all {
            let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            per_node.entry(*i).or_default().insert(
                name.clone(),
                weights::Tensor::new(t.dims().to_vec(), data).expect("sizes agree"),
            );
        }
        for (i, w) in per_node {
            g.set_weights(NodeId::new(i), w);
        }
        Ok(g)
    }

    /// A buffer's values: `running_mean`/`running_var` of batch normalization, `moving.{k}`
    /// of a normalization-activation layer's batch statistic at primitive `k`.
    pub fn buffer_values(&self, node: &str, name: &str) -> Option<Vec<f64>> {
        let id = self
            .graph
            .node_ids()
            .find(|&i| self.graph.node(i).name == node)?;
        let t = self.buffers.get(&(id.index(), name.to_string()))?;
        t.to_dtype(DType::F64)
            .ok()?
            .flatten_all()
            .ok()?
            .to_vec1()
            .ok()
    }

    /// A batch of inputs as a tensor `[N, ...shape]`.
    pub fn batch(&self, x: &[f32], n: usize) -> Result<Tensor> {
        let mut dims = vec![n];
        dims.extend_from_slice(self.input_shape());
        Ok(Tensor::from_slice(x, dims.as_slice(), &self.device)?.to_dtype(self.dtype)?)
    }

    /// The forward pass of a batch (inputs `[N, ...]`) in evaluation mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut no_updates = Vec::new();
        self.run(x, false, &mut no_updates, None, None)
    }

    /// The forward pass with batch statistics, also returning the outputs of every node whose
    /// operator `tap` selects (in topological order): the activations proxies look at.
    pub fn forward_taps(
        &self,
        x: &Tensor,
        tap: &dyn Fn(&Op) -> bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut ignored = Vec::new();
        let mut tapped = Vec::new();
        let y = self.run(x, true, &mut ignored, Some((tap, &mut tapped)), None)?;
        Ok((y, tapped))
    }

    /// The forward pass with batch statistics (as in training) that leaves the moving averages
    /// alone: for gradient checks and stability probes.
    pub fn forward_batch_stats(&self, x: &Tensor) -> Result<Tensor> {
        let mut ignored = Vec::new();
        self.run(x, true, &mut ignored, None, None)
    }

    /// The forward pass in training mode: batch statistics, and the moving averages updated.
    pub fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_train_stats(x)?.0)
    }

    /// [`forward_train`](Model::forward_train), also returning each batch normalization's
    /// batch statistics (mean and biased variance per channel, not detached): certified
    /// training bounds the same affine maps the forward pass applied.
    pub fn forward_train_stats(&mut self, x: &Tensor) -> Result<(Tensor, BatchStats)> {
        let mut updates = Vec::new();
        let mut stats = BatchStats::new();
        let y = self.run(x, true, &mut updates, None, Some(&mut stats))?;
        for (key, batch_stat) in updates {
            let old = &self.buffers[&key];
            let new = ((old * MOVING_DECAY)? + (batch_stat.detach() * (1.0 - MOVING_DECAY))?)?;
            self.buffers.insert(key, new);
        }
        Ok((y, stats))
    }

    pub(super) fn param(&self, id: NodeId, name: &str) -> Option<&Tensor> {
        self.params
            .get(&(id.index(), name.to_string()))
            .map(|v| v.as_tensor())
    }

    pub(super) fn buffer(&self, id: NodeId, name: &str) -> Result<&Tensor> {
        self.buffers
            .get(&(id.index(), name.to_string()))
            .ok_or_else(|| err(&self.graph.node(id).name, format!("no buffer {name}")))
    }

    fn run(
        &self,
        x: &Tensor,
        train: bool,
        updates: &mut Vec<((usize, String), Tensor)>,
        mut taps: Taps<'_>,
        mut batch_stats: Option<&mut BatchStats>,
    ) -> Result<Tensor> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.shapes.len()];
        for &id in &self.order {
            let node = self.graph.node(id);
            let ins: Vec<&Tensor> = self.inputs[id.index()]
                .iter()
                .map(|i| values[i.index()].as_ref().expect("topological order"))
                .collect();
            let name = node.name.as_str();
            let y = match &node.op {
                Op::Input { .. } => x.clone(),
                Op::Conv2d {
                    stride,
                    padding,
                    dilation,
                    groups,
                    ..
                } => {
                    if stride[0] != stride[1] || dilation[0] != dilation[1] {
                        return Err(err(
                            name,
                            "strides and dilations must be equal along height and width",
                        ));
                    }
                    let xin = pad(ins[0], *padding, 0.0)?;
                    let w = self.param(id, "weight").expect("weight");
                    conv2d(
                        &xin,
                        w,
                        self.param(id, "bias"),
                        stride[0],
                        dilation[0],
                        *groups,
                    )?
                }
                Op::Linear { .. } => {
                    let w = self.param(id, "weight").expect("weight");
                    let xin = ins[0].flatten_from(1)?;
                    let mut y = xin.matmul(&w.t()?)?;
                    if let Some(b) = self.param(id, "bias") {
                        y = y.broadcast_add(b)?;
                    }
                    y
                }
                Op::BatchNorm => {
                    let xin = ins[0];
                    let c = xin.dim(1)?;
                    let (w, b) = (self.param(id, "weight"), self.param(id, "bias"));
                    if train {
                        // Statistics over [C, N * H * W] rows: candle reduces trailing axes
                        // fast, and so the backward pass's sums are fast too.
                        let mut stats = None;
                        let y = per_channel(xin, |xt| {
                            let mean = xt.mean_keepdim(1)?;
                            let centred = xt.broadcast_sub(&mean)?;
                            let var = centred.sqr()?.mean_keepdim(1)?;
                            let xhat = centred.broadcast_div(&(&var + BATCH_NORM_EPS)?.sqrt()?)?;
                            stats = Some((mean, var));
                            affine_rows(&xhat, w, b)
                        })?;
                        let (mean, var) = stats.expect("statistics computed");
                        if let Some(bs) = batch_stats.as_mut() {
                            bs.insert(id.index(), (mean.flatten_all()?, var.flatten_all()?));
                        }
                        let n = (xin.elem_count() / c) as f64;
                        let unbiased = (var.flatten_all()? * (n / (n - 1.0).max(1.0)))?;
                        updates.push(((id.index(), "running_mean".into()), mean.flatten_all()?));
                        updates.push(((id.index(), "running_var".into()), unbiased));
                        y
                    } else {
                        let bshape = bcast_shape(xin.rank(), c);
                        let mean = self
                            .buffer(id, "running_mean")?
                            .reshape(bshape.as_slice())?;
                        let var = self.buffer(id, "running_var")?.reshape(bshape.as_slice())?;
                        let xhat = xin
                            .broadcast_sub(&mean)?
                            .broadcast_div(&(var + BATCH_NORM_EPS)?.sqrt()?)?;
                        affine(&xhat, w, b)?
                    }
                }
                Op::GroupNorm { groups } => {
                    let xhat = group_normalize(ins[0], *groups, BATCH_NORM_EPS)?;
                    affine(&xhat, self.param(id, "weight"), self.param(id, "bias"))?
                }
                Op::LayerNorm => {
                    let xhat = group_normalize(ins[0], 1, BATCH_NORM_EPS)?;
                    affine(&xhat, self.param(id, "weight"), self.param(id, "bias"))?
                }
                Op::Act { function } => activation(ins[0], *function)?,
                Op::Clip { min, max } => ins[0].clamp(*min as f32, *max as f32)?,
                Op::LeakyRelu { slope } => leaky_relu(ins[0], *slope)?,
                Op::ScaleShift { .. } => ins[0]
                    .broadcast_mul(self.buffer(id, "scale")?)?
                    .broadcast_add(self.buffer(id, "shift")?)?,
                Op::Pad { pads, value } => pad4(ins[0], *pads, *value)?,
                Op::Reshape { shape } => {
                    let mut dims = vec![ins[0].dim(0)?];
                    dims.extend_from_slice(shape.dims());
                    ins[0].reshape(dims.as_slice())?
                }
                Op::Add => {
                    let mut y = ins[0].clone();
                    for t in &ins[1..] {
                        y = (y + *t)?;
                    }
                    y
                }
                Op::Mul => ins[0].broadcast_mul(ins[1])?,
                Op::Concat => Tensor::cat(&ins, 1)?,
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => max_pool(ins[0], *kernel, *stride, *padding)?,
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                    count_include_pad,
                } => avg_pool(ins[0], *kernel, *stride, *padding, *count_include_pad)?,
                Op::GlobalAvgPool => ins[0].mean_keepdim(2)?.mean_keepdim(3)?,
                Op::Flatten => ins[0].flatten_from(1)?,
                Op::Identity => ins[0].clone(),
                Op::Zero => ins[0].zeros_like()?,
                Op::NormAct(g) => self.normact(id, g, ins[0], train, updates)?,
            };
            if let Some((tap, tapped)) = taps.as_mut() {
                if tap(&node.op) {
                    tapped.push(y.clone());
                }
            }
            values[id.index()] = Some(y);
        }
        let out = self.graph.outputs()[0];
        Ok(values[out.index()].take().expect("output computed"))
    }

    fn normact(
        &self,
        id: NodeId,
        g: &NormActGraph,
        x: &Tensor,
        train: bool,
        updates: &mut Vec<((usize, String), Tensor)>,
    ) -> Result<Tensor> {
        let name = &self.graph.node(id).name;
        if x.rank() != 4 {
            return Err(err(
                name,
                "a normalization-activation layer needs [N, C, H, W]",
            ));
        }
        // Channels first, [C, N, H, W]: batch and instance statistics, and the gradients of
        // the per-channel vectors, are then sums over trailing axes, which candle does fast.
        let c = x.dim(1)?;
        let xt = x.transpose(0, 1)?.contiguous()?;
        let per_channel = |t: &Tensor| t.reshape((c, 1, 1, 1));
        let mut v: Vec<Tensor> = vec![xt.clone(), xt.zeros_like()?];
        for p in ["v0", "v1"] {
            v.push(match self.param(id, p) {
                Some(t) => per_channel(t)?.broadcast_as(xt.shape())?,
                None => xt.zeros_like()?,
            });
        }
        for (k, node) in g.nodes.iter().enumerate() {
            let a = &v[node.args[0]];
            let b = node.args.get(1).map(|&i| &v[i]);
            let y = match node.op {
                Prim::Add => (a + b.expect("arity"))?,
                Prim::Mul => (a * b.expect("arity"))?,
                Prim::Div => (a / b.expect("arity"))?,
                Prim::Max => a.maximum(b.expect("arity"))?,
                Prim::Neg => a.neg()?,
                Prim::Sigmoid => candle_nn::ops::sigmoid(a)?,
                Prim::Tanh => a.tanh()?,
                Prim::Exp => a.exp()?,
                Prim::Log => (sign(a)? * a.abs()?.log()?)?,
                Prim::Abs => a.abs()?,
                Prim::Square => a.sqr()?,
                Prim::Sqrt => (sign(a)? * a.abs()?.sqrt()?)?,
                Prim::Mean(Axes::Batch) | Prim::Var(Axes::Batch) => {
                    let is_var = matches!(node.op, Prim::Var(_));
                    let key = (id.index(), format!("moving.{k}"));
                    let stat = if train {
                        let mean = a.mean_keepdim(vec![1, 2, 3])?;
                        let s = if is_var {
                            a.broadcast_sub(&mean)?.sqr()?.mean_keepdim(vec![1, 2, 3])?
                        } else {
                            mean
                        };
                        updates.push((key, s.flatten_all()?));
                        s
                    } else {
                        per_channel(self.buffer(id, &key.1)?)?
                    };
                    let s = if is_var { (stat + NORMACT_EPS)? } else { stat };
                    s.broadcast_as(xt.shape())?
                }
                Prim::Mean(Axes::Instance) | Prim::Var(Axes::Instance) => {
                    let mean = a.mean_keepdim(vec![2, 3])?;
                    let s = if matches!(node.op, Prim::Var(_)) {
                        (a.broadcast_sub(&mean)?.sqr()?.mean_keepdim(vec![2, 3])? + NORMACT_EPS)?
                    } else {
                        mean
                    };
                    s.broadcast_as(xt.shape())?
                }
                Prim::Mean(axes) | Prim::Var(axes) => {
                    // Groups span channels: computed in [N, C, H, W] and laid out back.
                    let is_var = matches!(node.op, Prim::Var(_));
                    let an = a.transpose(0, 1)?.contiguous()?;
                    let s = instance_or_group_stat(&an, axes, is_var)?;
                    let s = if is_var { (s + NORMACT_EPS)? } else { s };
                    s.transpose(0, 1)?.contiguous()?
                }
            };
            v.push(y);
        }
        let out = v.pop().expect("a layer has nodes");
        let out = affine_rows(&out, self.param(id, "weight"), self.param(id, "bias"))?;
        Ok(out.transpose(0, 1)?.contiguous()?)
    }
}

/// Nodes whose outputs a forward pass also returns: a selector and where to put them.
type Taps<'a> = Option<(&'a dyn Fn(&Op) -> bool, &'a mut Vec<Tensor>)>;

/// The group count actually used for `c` channels: `g` halved until it divides `c`.
pub fn effective_groups(g: usize, c: usize) -> usize {
    let mut g = g.max(1);
    while c % g != 0 {
        g /= 2;
    }
    g.max(1)
}

/// Mean or biased variance over (H, W) or over (C/G, H, W) groups, broadcast back to `a`'s
/// shape.
fn instance_or_group_stat(a: &Tensor, axes: Axes, var: bool) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = a.dims4()?;
    let g = match axes {
        Axes::Instance => c,
        Axes::Group(g) => effective_groups(g, c),
        Axes::Batch => unreachable!("batch statistics are handled by the caller"),
    };
    let r = a.reshape((n, g, (c / g) * h * w))?;
    let mean = r.mean_keepdim(2)?;
    let s = if var {
        r.broadcast_sub(&mean)?.sqr()?.mean_keepdim(2)?
    } else {
        mean
    };
    s.broadcast_as((n, g, (c / g) * h * w))?
        .reshape((n, c, h, w))
}

fn sign(a: &Tensor) -> candle_core::Result<Tensor> {
    // +1 where a >= 0, -1 elsewhere; a constant for autograd.
    let pos = a.ge(0f32)?.to_dtype(a.dtype())?;
    Ok(((pos * 2.0)? - 1.0)?.detach())
}

/// Axes of the per-channel statistics of a batch: (N, H, W) for maps, N for vectors.
pub(super) fn bcast_shape(rank: usize, c: usize) -> Vec<usize> {
    if rank == 4 {
        vec![1, c, 1, 1]
    } else {
        vec![1, c]
    }
}

/// Applies `f` to `x` ([N, C, ...]) laid out as rows `[C, N * ...]` and lays the result out
/// back. candle sums trailing axes fast but other axes slowly, element by element; per-channel
/// statistics and the gradients of per-channel parameters are such sums.
pub(super) fn per_channel(
    x: &Tensor,
    mut f: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let c = dims[1];
    let rows = x.transpose(0, 1)?.reshape((c, x.elem_count() / c))?;
    let y = f(&rows)?;
    let mut tdims = dims.clone();
    tdims.swap(0, 1);
    y.reshape(tdims.as_slice())?.transpose(0, 1)?.contiguous()
}

/// The per-channel affine map of a channels-first tensor (`[C, M]` or `[C, N, H, W]`).
pub(super) fn affine_rows(
    x: &Tensor,
    w: Option<&Tensor>,
    b: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let mut shape = vec![1; x.rank()];
    shape[0] = x.dim(0)?;
    let mut y = x.clone();
    if let Some(w) = w {
        y = y.broadcast_mul(&w.reshape(shape.as_slice())?)?;
    }
    if let Some(b) = b {
        y = y.broadcast_add(&b.reshape(shape.as_slice())?)?;
    }
    Ok(y)
}

/// The per-channel affine map of `[N, C, ...]` (weights and biases of `[C]`).
pub(super) fn affine(
    x: &Tensor,
    w: Option<&Tensor>,
    b: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    if w.is_none() && b.is_none() {
        return Ok(x.clone());
    }
    per_channel(x, |rows| affine_rows(rows, w, b))
}

fn group_normalize(x: &Tensor, groups: usize, eps: f64) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = dims[0];
    let g = groups.max(1);
    let r = x.reshape((n, g, x.elem_count() / (n * g)))?;
    let mean = r.mean_keepdim(D::Minus1)?;
    let centred = r.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape(dims.as_slice())
}

/// Max or average pooling without padding. candle's own pooling (used when windows tile the
/// input) has no backward pass for overlapping windows, so those are written as the maximum or
/// mean of the `kh * kw` strided views of the input, which autograd handles.
pub(super) fn pool(
    x: &Tensor,
    k: [usize; 2],
    s: [usize; 2],
    max: bool,
) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if k == s && h % k[0] == 0 && w % k[1] == 0 {
        return if max {
            x.max_pool2d_with_stride((k[0], k[1]), (s[0], s[1]))
        } else {
            x.avg_pool2d_with_stride((k[0], k[1]), (s[0], s[1]))
        };
    }
    let g = Windows {
        kernel: k,
        stride: s,
        dilation: 1,
        channels_first: false,
    };
    let Some((ho, wo)) = g.output(h, w) else {
        candle_core::bail!("the pooling window is larger than the padded input");
    };
    // [N, Ho, Wo, C, kk]: the window is the trailing axis, which candle reduces fast.
    let cols = g.unfold(x)?;
    let y = if max {
        cols.max_keepdim(4)?
    } else {
        cols.mean_keepdim(4)?
    };
    y.reshape((n, ho, wo, c))?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// A convolution of a padded `[N, C, H, W]` input with weights `[O, C / groups, kh, kw]`,
/// written as matrix products of the input's windows (im2col, see [`Windows`]); candle's own
/// convolution is kept for grouped convolutions other than depthwise ones.
pub(super) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    dil: usize,
    groups: usize,
) -> candle_core::Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, cg, kh, kw) = w.dims4()?;
    let depthwise = groups == c && o == c && cg == 1;
    if groups != 1 && !depthwise {
        let y = x.conv2d(w, 0, stride, dil, groups)?;
        return affine(&y, None, bias);
    }
    let g = Windows {
        kernel: [kh, kw],
        stride: [stride, stride],
        dilation: dil,
        channels_first: depthwise,
    };
    let Some((ho, wo)) = g.output(h, wd) else {
        candle_core::bail!("the kernel is larger than the padded input");
    };
    let kk = kh * kw;
    // Outputs are computed channels first, [O, N * Ho * Wo]: the bias is then added along
    // trailing axes, so its gradient is a fast sum.
    let y = if depthwise {
        // [C, N * Ho * Wo, kk] x [C, kk, 1]: one small product per channel.
        let cols = g.unfold(x)?.reshape((c, n * ho * wo, kk))?;
        cols.matmul(&w.reshape((c, kk, 1))?)?
            .reshape((c, n * ho * wo))?
    } else {
        let cols = if kk == 1 && stride == 1 {
            x.permute((0, 2, 3, 1))?.reshape((n * h * wd, c))?
        } else {
            g.unfold(x)?.reshape((n * ho * wo, c * kk))?
        };
        w.reshape((o, cg * kk))?.matmul(&cols.t()?)?
    };
    let y = affine_rows(&y, None, bias)?;
    y.reshape((o, n, ho, wo))?.transpose(0, 1)?.contiguous()
}

/// Pads height and width of `[N, C, H, W]` with `value`.
pub(super) fn pad(x: &Tensor, padding: [usize; 2], value: f64) -> candle_core::Result<Tensor> {
    pad4(x, [padding[0], padding[1], padding[0], padding[1]], value)
}

/// Pads `[N, C, H, W]` with `value`: `[top, left, bottom, right]` rows and columns.
pub(super) fn pad4(
    x: &Tensor,
    [t, l, b, r]: [usize; 4],
    value: f64,
) -> candle_core::Result<Tensor> {
    if [t, l, b, r] == [0; 4] {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r);
    }
    let (n, c, h, w) = x.dims4()?;
    let fill = |hh: usize, ww: usize| {
        Tensor::full(value as f32, (n, c, hh, ww), x.device())?.to_dtype(x.dtype())
    };
    let y = pad_axis(x, 2, t, b, &|rows| fill(rows, w))?;
    pad_axis(&y, 3, l, r, &|cols| fill(h + t + b, cols))
}

/// `x` with `before` and `after` slices of `fill(n)` joined along `axis`.
fn pad_axis(
    x: &Tensor,
    axis: usize,
    before: usize,
    after: usize,
    fill: &dyn Fn(usize) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    if before + after == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::new();
    if before > 0 {
        parts.push(fill(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(fill(after)?);
    }
    Tensor::cat(&parts, axis)
}

/// `max(x, 0) - slope max(-x, 0)`.
pub(super) fn leaky_relu(x: &Tensor, slope: f64) -> candle_core::Result<Tensor> {
    x.relu()? - (x.neg()?.relu()? * slope)?
}

/// Max pooling of `[N, C, H, W]`, padded with the lowest float.
pub(super) fn max_pool(
    x: &Tensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> candle_core::Result<Tensor> {
    pool(&pad(x, padding, f32::MIN as f64)?, kernel, stride, true)
}

/// Average pooling of `[N, C, H, W]`, padded with zeros, dividing by the window's size or by
/// its elements inside the input.
pub(super) fn avg_pool(
    x: &Tensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
) -> candle_core::Result<Tensor> {
    let (k, s) = (kernel, stride);
    let sum = pool(&pad(x, padding, 0.0)?, k, s, false)?;
    if count_include_pad || padding == [0, 0] {
        Ok(sum)
    } else {
        let ones = Tensor::ones((1, 1, x.dim(2)?, x.dim(3)?), x.dtype(), x.device())?;
        let frac = pool(&pad(&ones, padding, 0.0)?, k, s, false)?;
        sum.broadcast_div(&frac)
    }
}

pub(super) fn activation(x: &Tensor, f: Activation) -> candle_core::Result<Tensor> {
    match f {
        Activation::Relu => x.relu(),
        Activation::Relu6 => x.relu()?.minimum(6f32),
        Activation::Silu => x.silu(),
        Activation::Gelu => x.gelu_erf(),
        Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Hardswish => {
            let r6 = (x + 3.0)?.relu()?.minimum(6f32)?;
            (x * r6)? / 6.0
        }
    }
}
