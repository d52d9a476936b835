//! Training of IR graphs with candle (CPU): datasets, the model built from the graph, the
//! optimizers and schedule, and export of the trained network (ONNX and IR JSON with weights).
//!
//! Everything is seeded: the initial weights, the order of the examples in each epoch. The
//! same seed on the same machine gives the same weights.

pub mod bounds;
pub mod certified;
pub mod data;
pub mod engine;
pub mod export;
pub mod model;
pub mod unfold;

use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use candle_nn::Optimizer as _;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use data::{DataError, Dataset, Split};
pub use model::{Model, ModelError};

/// The optimizer of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with (heavy-ball) momentum, as PyTorch's SGD.
    Sgd,
    /// Adam with decoupled weight decay (AdamW; plain Adam when the decay is 0).
    Adam,
}

/// Settings of a training run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Momentum of SGD.
    pub momentum: f64,
    /// Weight decay (L2 for SGD, decoupled for Adam).
    pub weight_decay: f64,
    /// Cosine decay of the learning rate to 0 over all steps (else constant).
    pub cosine: bool,
    /// Seed of the initial weights and the example order.
    pub seed: u64,
    /// Which back end runs the steps.
    pub engine: TrainEngine,
    /// Certified training (candle only), or natural training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certified: Option<certified::Certified>,
}

/// The back end of training steps.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TrainEngine {
    /// The kernel engine where it has a kernel for every operator, else candle.
    #[default]
    Auto,
    /// The kernel engine; an operator without a kernel is an error.
    Kernels,
    /// candle's tensors and autograd, for every graph.
    Candle,
}

impl TrainEngine {
    /// The back end of settings stored before there was a choice: candle. Studies resumed
    /// from them keep training as they started.
    pub fn before_choice() -> Self {
        TrainEngine::Candle
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            weight_decay: 0.0,
            cosine: true,
            seed: 0,
            engine: TrainEngine::Auto,
            certified: None,
        }
    }
}

/// Numbers of one epoch.
#[derive(Debug, Clone, Serialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss (cross-entropy) over the epoch's steps.
    pub train_loss: f64,
    /// Training accuracy over the epoch (training mode, as the steps saw it).
    pub train_accuracy: f64,
    /// Test loss after the epoch (evaluation mode).
    pub test_loss: f64,
    /// Test accuracy after the epoch (evaluation mode).
    pub test_accuracy: f64,
    /// Certified training: the share of the test split classified correctly and proven
    /// robust at the target radius by the training's own bounds (a lower bound of the
    /// verified accuracy): IBP's after every epoch, and with CROWN-IBP the better of IBP's
    /// and CROWN's after the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certified_accuracy: Option<f64>,
    /// Seconds since training began.
    pub seconds: f64,
}

/// The result of a training run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Per-epoch numbers.
    pub epochs: Vec<EpochStats>,
    /// Final test accuracy.
    pub test_accuracy: f64,
    /// Seconds of training (evaluation included).
    pub train_seconds: f64,
    /// Learned scalars.
    pub params: usize,
}

/// What a training run reports while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A step finished: (steps done, all steps, its loss).
    Step(usize, usize, f64),
    /// An epoch finished.
    Epoch(EpochStats),
}

/// SGD with momentum and L2 weight decay (PyTorch's update: v = m v + g + wd w; w -= lr v).
struct Sgd {
    vars: Vec<Var>,
    velocity: Vec<Option<Tensor>>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
    ) -> candle_core::Result<()> {
        for (var, vel) in self.vars.iter().zip(self.velocity.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let mut g = g.clone();
            if self.weight_decay != 0.0 {
                g = (g + (var.as_tensor() * self.weight_decay)?)?;
            }
            let v = match vel.take() {
                Some(v) if self.momentum != 0.0 => ((v * self.momentum)? + g)?,
                _ => g,
            };
            var.set(&(var.as_tensor() - (&v * lr)?)?)?;
            *vel = Some(v);
        }
        Ok(())
    }
}

/// The back end that runs the steps of a training run.
enum Backend {
    /// The kernel engine with its optimizer.
    Kernels(Box<engine::Engine>, engine::Optimizer),
    /// candle, with SGD or AdamW over the model's variables.
    CandleSgd(Sgd),
    CandleAdam(candle_nn::AdamW),
}

impl Backend {
    /// The back end `cfg` asks for, for steps of up to `batch` examples.
    fn new(model: &Model, cfg: &TrainConfig, batch: usize) -> Result<Backend, ModelError> {
        if cfg.certified.is_some() && cfg.engine == TrainEngine::Kernels {
            return Err(ModelError::Graph(
                "certified training runs on candle: use --engine auto or candle".into(),
            ));
        }
        if cfg.engine != TrainEngine::Candle && cfg.certified.is_none() {
            match engine::Engine::new(model, batch) {
                Ok(e) => {
                    let opt = match cfg.optimizer {
                        OptimizerKind::Sgd => engine::Optimizer::Sgd {
                            momentum: cfg.momentum as f32,
                            weight_decay: cfg.weight_decay as f32,
                        },
                        OptimizerKind::Adam => engine::Optimizer::adam(cfg.weight_decay),
                    };
                    return Ok(Backend::Kernels(Box::new(e), opt));
                }
                Err(e @ engine::EngineError::Unsupported { .. })
                    if cfg.engine == TrainEngine::Auto =>
                {
                    let _ = e;
                }
                Err(e) => return Err(ModelError::Graph(e.to_string())),
            }
        }
        let vars = model.vars();
        Ok(match cfg.optimizer {
            OptimizerKind::Sgd => Backend::CandleSgd(Sgd {
                velocity: vec![None; vars.len()],
                vars,
                momentum: cfg.momentum,
                weight_decay: cfg.weight_decay,
            }),
            OptimizerKind::Adam => Backend::CandleAdam(candle_nn::AdamW::new(
                vars,
                candle_nn::ParamsAdamW {
                    lr: cfg.lr,
                    weight_decay: cfg.weight_decay,
                    ..Default::default()
                },
            )?),
        })
    }

    /// The back end's name, as `bench train` reports it.
    fn name(&self) -> &'static str {
        match self {
            Backend::Kernels(..) => "kernels",
            _ => "candle",
        }
    }

    /// One step on `n` examples; returns the batch's mean loss and correct predictions.
    /// `cert`: the certified loss with these weights (candle only).
    fn step(
        &mut self,
        model: &mut Model,
        x: &[f32],
        y: &[u32],
        n: usize,
        lr: f64,
        cert: Option<certified::StepWeights>,
    ) -> Result<(f64, usize), ModelError> {
        if let Backend::Kernels(e, opt) = self {
            return Ok(e.train_step(x, y, n, *opt, lr));
        }
        let xt = model.batch(x, n)?;
        let yt = Tensor::from_slice(y, n, model.device())?;
        let (logits, stats) = model.forward_train_stats(&xt)?;
        let mut loss = candle_nn::loss::cross_entropy(&logits, &yt)?;
        if let Some(w) = cert.filter(|w| w.eps > 0.0 && w.kappa < 1.0) {
            let ball = bounds::Interval::ball(&xt, w.eps)?;
            let lb = model.margin_lower_bounds(&ball, y, w.beta, Some(&stats))?;
            let robust = bounds::robust_loss(&lb, &yt)?;
            loss = ((loss * w.kappa)? + (robust * (1.0 - w.kappa))?)?;
        }
        let mut grads = loss.backward()?;
        if cert.is_some() {
            clip_gradient_norm(&mut grads, &model.vars(), certified::MAX_GRADIENT_NORM)?;
        }
        match self {
            Backend::CandleSgd(s) => s.step(&grads, lr)?,
            Backend::CandleAdam(a) => {
                a.set_learning_rate(lr);
                a.step(&grads)?;
            }
            Backend::Kernels(..) => unreachable!("handled above"),
        }
        Ok((
            loss.to_scalar::<f32>()? as f64,
            count_correct(&logits, &yt)?,
        ))
    }

    /// The forward pass alone, in evaluation mode, on `n` examples.
    fn infer(&mut self, model: &Model, x: &[f32], n: usize) -> Result<(), ModelError> {
        match self {
            Backend::Kernels(e, _) => {
                std::hint::black_box(e.forward(x, n, false));
            }
            _ => {
                std::hint::black_box(model.forward(&model.batch(x, n)?)?);
            }
        }
        Ok(())
    }

    /// Loss and accuracy on a split in evaluation mode.
    fn evaluate(&mut self, model: &Model, split: &Split) -> Result<(f64, f64), ModelError> {
        match self {
            Backend::Kernels(e, _) => Ok(e.evaluate(&split.x, &split.y, split.len())),
            _ => evaluate(model, split),
        }
    }

    /// Leaves the trained parameters and statistics in `model`.
    fn finish(self, model: &mut Model) -> Result<(), ModelError> {
        if let Backend::Kernels(e, _) = self {
            e.store(model)
                .map_err(|e| ModelError::Graph(e.to_string()))?;
        }
        Ok(())
    }
}

/// Scales the gradients of `vars` down to a global L2 norm of at most `max` (computed in f64;
/// a non-finite norm zeroes the step): the bounds of a barely trained network can be loose by
/// many orders of magnitude, and their gradients with them.
fn clip_gradient_norm(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[Var],
    max: f64,
) -> candle_core::Result<()> {
    let mut sq = 0.0;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if norm <= max {
        return Ok(());
    }
    let scale = if norm.is_finite() { max / norm } else { 0.0 };
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let scaled = (g * scale)?;
            grads.insert(v.as_tensor(), scaled);
        }
    }
    Ok(())
}

/// Loss and accuracy of `model` on a split, in evaluation mode.
pub fn evaluate(model: &Model, split: &Split) -> Result<(f64, f64), ModelError> {
    let d = split.x.len() / split.len().max(1);
    let (mut loss, mut correct) = (0.0, 0usize);
    for start in (0..split.len()).step_by(500) {
        let n = (split.len() - start).min(500);
        let x = model.batch(&split.x[start * d..(start + n) * d], n)?;
        let y = Tensor::from_slice(&split.y[start..start + n], n, model.device())?;
        let logits = model.forward(&x)?;
        loss += candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()? as f64 * n as f64;
        correct += count_correct(&logits, &y)?;
    }
    let n = split.len().max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

/// Predicted classes of a batch of inputs.
pub fn predict(model: &Model, x: &[f32], n: usize) -> Result<Vec<u32>, ModelError> {
    let logits = model.forward(&model.batch(x, n)?)?;
    Ok(logits.argmax(1)?.to_vec1::<u32>()?)
}

fn count_correct(logits: &Tensor, y: &Tensor) -> candle_core::Result<usize> {
    let pred = logits.argmax(1)?;
    pred.eq(y)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()
        .map(|v| v as usize)
}

/// Trains `model` on `data` and reports every step and epoch to `progress`.
pub fn train(
    model: &mut Model,
    data: &Dataset,
    cfg: &TrainConfig,
    progress: &dyn Fn(Progress),
) -> Result<TrainReport, ModelError> {
    if model.input_shape() != data.shape.as_slice() {
        return Err(ModelError::Graph(format!(
            "the model takes inputs of shape {:?}, the dataset has {:?}",
            model.input_shape(),
            data.shape
        )));
    }
    if let Some(c) = &cfg.certified {
        c.check(cfg.epochs)
            .map_err(|e| ModelError::Graph(e.to_string()))?;
        bounds::check_trainable(model.graph(), c.method)?;
        let outside = data
            .train
            .x
            .iter()
            .chain(&data.test.x)
            .find(|v| !(0.0..=1.0).contains(*v));
        if let Some(&v) = outside {
            return Err(ModelError::Graph(
                certified::CertifiedError::InputRange(v).to_string(),
            ));
        }
    }
    let start = Instant::now();
    let n = data.train.len();
    let bs = cfg.batch_size.clamp(1, n);
    let steps_per_epoch = n.div_ceil(bs);
    let total = steps_per_epoch * cfg.epochs;
    let mut backend = Backend::new(model, cfg, bs)?;
    let d = data.input_len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut epochs = Vec::new();
    let mut step = 0;
    let mut xb: Vec<f32> = Vec::with_capacity(bs * d);
    let mut yb: Vec<u32> = Vec::with_capacity(bs);
    for epoch in 1..=cfg.epochs {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_0000_0000);
        rng.set_stream(epoch as u64);
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        for chunk in order.chunks(bs) {
            xb.clear();
            yb.clear();
            for &i in chunk {
                xb.extend_from_slice(data.train.input(i));
                yb.push(data.train.y[i]);
            }
            let lr = if cfg.cosine {
                cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())
            } else {
                cfg.lr
            };
            let cert = cfg
                .certified
                .as_ref()
                .map(|c| c.at(step as f64 / steps_per_epoch as f64));
            let (l, c) = backend.step(model, &xb, &yb, chunk.len(), lr, cert)?;
            loss_sum += l * chunk.len() as f64;
            correct += c;
            seen += chunk.len();
            step += 1;
            progress(Progress::Step(step, total, l));
        }
        let (test_loss, test_accuracy) = backend.evaluate(model, &data.test)?;
        // CROWN's bounds cost several times IBP's: every epoch but the last is certified
        // by IBP alone.
        let certified_accuracy = match &cfg.certified {
            Some(c) => {
                let method = if epoch == cfg.epochs {
                    c.method
                } else {
                    bounds::BoundMethod::Ibp
                };
                Some(model.certified_accuracy(&data.test.x, &data.test.y, c.eps, method)?)
            }
            None => None,
        };
        let stats = EpochStats {
            certified_accuracy,
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            test_loss,
            test_accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        progress(Progress::Epoch(stats.clone()));
        epochs.push(stats);
    }
    let test_accuracy = match epochs.last() {
        Some(e) => e.test_accuracy,
        None => backend.evaluate(model, &data.test)?.1,
    };
    backend.finish(model)?;
    Ok(TrainReport {
        epochs,
        test_accuracy,
        train_seconds: start.elapsed().as_secs_f64(),
        params: model.param_count(),
    })
}

/// Images per second of `model` on random inputs in batches of `batch`, measured for about
/// `seconds` after one warm-up batch: the forward pass alone (evaluation mode), or a whole
/// training step (forward pass in training mode, cross-entropy, backward pass and an Adam
/// update, learning rate 1e-3). Returns the rate and the back end's name.
pub fn throughput(
    model: &mut Model,
    batch: usize,
    classes: usize,
    seconds: f64,
    train: bool,
    engine: TrainEngine,
) -> Result<(f64, &'static str), ModelError> {
    use rand::Rng;
    let d: usize = model.input_shape().iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..batch * d).map(|_| rng.random()).collect();
    let y: Vec<u32> = (0..batch).map(|i| (i % classes.max(1)) as u32).collect();
    let cfg = TrainConfig {
        engine,
        ..TrainConfig::default()
    };
    let mut backend = Backend::new(model, &cfg, batch)?;
    let mut step = |m: &mut Model| -> Result<(), ModelError> {
        if train {
            backend.step(m, &x, &y, batch, cfg.lr, None)?;
        } else {
            backend.infer(m, &x, batch)?;
        }
        Ok(())
    };
    step(model)?;
    let start = Instant::now();
    let mut images = 0usize;
    while start.elapsed().as_secs_f64() < seconds || images == 0 {
        step(model)?;
        images += batch;
    }
    let rate = images as f64 / start.elapsed().as_secs_f64();
    Ok((rate, backend.name()))
}
