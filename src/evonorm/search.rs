//! The EvoNorm search as a space, an evaluator with the paper's two rejection protocols, and
//! a strategy, all on the study engine.

use std::sync::Arc;

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    anchors, canonicalize, mutate, random_layer, Anchor, AnchorTraining, EvoNormError, Layer,
};
use crate::ir::normact::NormActGraph;
use crate::ir::{Op, Shape};
use crate::search::{DecodeError, EvalError, Evaluation, Evaluator, Space};
use crate::train::data::DataError;
use crate::train::{Dataset, Model};

/// Layers as a search space: random layers of `initial_len` nodes, mutated up to `max_len`,
/// always in canonical form (so equal layers encode equally and are never trained twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpace {
    /// Nodes of a random layer.
    pub initial_len: usize,
    /// The most nodes a mutation grows a layer to.
    pub max_len: usize,
}

impl Space for LayerSpace {
    type Candidate = NormActGraph;

    fn name(&self) -> &str {
        "evonorm"
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> NormActGraph {
        canonicalize(&random_layer(rng, self.initial_len))
    }

    fn mutate(&self, parent: &NormActGraph, rng: &mut ChaCha8Rng) -> NormActGraph {
        mutate(parent, rng, self.max_len)
    }

    fn neighbours(&self, _c: &NormActGraph) -> Vec<NormActGraph> {
        Vec::new()
    }

    fn encode(&self, c: &NormActGraph) -> String {
        serde_json::to_string(c).expect("a layer serialises")
    }

    fn decode(&self, text: &str) -> Result<NormActGraph, DecodeError> {
        let g: NormActGraph = serde_json::from_str(text).map_err(|e| DecodeError(e.to_string()))?;
        g.validate().map_err(|e| e.0)?;
        Ok(g)
    }
}

/// Why a layer was rejected, as the prefix of a failed trial's message.
pub const REJECTED_QUALITY: &str = "rejected_quality";
/// See [`REJECTED_QUALITY`].
pub const REJECTED_STABILITY: &str = "rejected_stability";

/// Settings of the two rejection protocols.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// Quality: the lowest validation accuracy (a fraction) on every anchor.
    pub min_accuracy: f64,
    /// Stability: steps of gradient ascent on the layers' parameters.
    pub ascent_steps: usize,
    /// Stability: the largest gradient norm allowed during the ascent.
    pub max_gradient_norm: f64,
}

impl Default for Rejection {
    fn default() -> Self {
        Rejection {
            min_accuracy: 0.3,
            ascent_steps: 20,
            max_gradient_norm: 1e8,
        }
    }
}

/// The stability protocol: starting from the initial weights, `steps` normalized
/// gradient-ascent steps on the layers' own parameters (gamma, beta, v0, v1) raise the loss of
/// one batch; the layer is unstable when the gradient norm over all parameters passes `bound`
/// or stops being finite. Returns the largest norm seen, or the reason for rejection.
pub fn stability(
    model: &Model,
    x: &Tensor,
    y: &Tensor,
    r: &Rejection,
) -> Result<f64, EvoNormError> {
    let layer_vars: Vec<candle_core::Var> = model
        .named_vars()
        .into_iter()
        .filter(|(n, _)| {
            let node = n.rsplit_once('.').map_or("", |p| p.0);
            model.graph().node_ids().any(|id| {
                model.graph().node(id).name == node
                    && matches!(model.graph().node(id).op, Op::NormAct(_))
            })
        })
        .map(|(_, v)| v)
        .collect();
    let all = model.vars();
    let mut worst: f64 = 0.0;
    for step in 0..=r.ascent_steps {
        let logits = model
            .forward_batch_stats(x)
            .map_err(|e| EvoNormError(e.to_string()))?;
        let loss =
            candle_nn::loss::cross_entropy(&logits, y).map_err(|e| EvoNormError(e.to_string()))?;
        let grads = loss.backward().map_err(|e| EvoNormError(e.to_string()))?;
        let mut sq = 0.0;
        for v in &all {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g
                    .sqr()
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.to_dtype(candle_core::DType::F64))
                    .and_then(|t| t.to_scalar::<f64>())
                    .map_err(|e| EvoNormError(e.to_string()))?;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() || norm > r.max_gradient_norm {
            return Err(EvoNormError(format!(
                "{REJECTED_STABILITY}: gradient norm {norm:.3e} after {step} ascent steps"
            )));
        }
        worst = worst.max(norm);
        for v in &layer_vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let gn = g
                    .sqr()
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.sqrt())
                    .and_then(|t| t.to_dtype(candle_core::DType::F64))
                    .and_then(|t| t.to_scalar::<f64>())
                    .map_err(|e| EvoNormError(e.to_string()))?;
                if gn > 0.0 && gn.is_finite() {
                    let up = (v.as_tensor()
                        + (g * (0.1 / gn)).map_err(|e| EvoNormError(e.to_string()))?)
                    .map_err(|e| EvoNormError(e.to_string()))?;
                    v.set(&up).map_err(|e| EvoNormError(e.to_string()))?;
                }
            }
        }
    }
    Ok(worst)
}

/// Judges a layer in the search's anchors: the stability protocol, then a short training on
/// each anchor judged on held-out validation examples (the quality protocol). Fitness is the
/// mean validation accuracy (%); `acc_{anchor}` are reported per anchor. A rejected layer is
/// a failed trial whose message starts with [`REJECTED_QUALITY`] or [`REJECTED_STABILITY`].
pub struct LayerEvaluator {
    /// The anchors.
    pub anchors: Vec<Anchor>,
    /// The training part of the dataset (`test` holds the validation examples).
    pub fit: Arc<Dataset>,
    /// How each anchor is trained.
    pub training: AnchorTraining,
    /// The rejection protocols.
    pub rejection: Rejection,
}

impl LayerEvaluator {
    /// Splits `data`'s training split into `train` examples for fitting and the last `valid`
    /// for validation.
    pub fn new(
        anchors: Vec<Anchor>,
        data: &Dataset,
        train: usize,
        valid: usize,
        training: AnchorTraining,
        rejection: Rejection,
    ) -> Result<Self, DataError> {
        if train == 0 {
            return Err(DataError::Spec(
                "the anchors need at least one training example".into(),
            ));
        }
        let fit = data.hold_out(train, valid)?;
        Ok(LayerEvaluator {
            anchors,
            fit: Arc::new(fit),
            training,
            rejection,
        })
    }
}

impl Evaluator<NormActGraph> for LayerEvaluator {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.anchors.iter().map(|a| a.name()).collect();
        format!(
            "anchors:{}(train={},valid={},batch={},epochs={},lr={},width={})",
            names.join("+"),
            self.fit.train.len(),
            self.fit.test.len(),
            self.training.batch_size,
            self.training.epochs,
            self.training.lr,
            self.training.width
        )
    }

    fn evaluate(&self, g: &NormActGraph, seed: u64) -> Result<Evaluation, EvalError> {
        let layer = Layer::Graph(g.clone());
        let shape = Shape::new(self.fit.shape.clone());
        let mut metrics = std::collections::BTreeMap::new();
        let mut sum = 0.0;
        for &anchor in &self.anchors {
            let net = anchors::build(
                anchor,
                &layer,
                shape.clone(),
                self.fit.classes,
                self.training.width,
            )
            .map_err(|e| EvalError(e.to_string()))?;
            // Stability, on the anchor at its initial weights and one training batch.
            let probe = Model::new(&net, seed).map_err(|e| EvalError(e.to_string()))?;
            let b = self.training.batch_size.min(self.fit.train.len());
            let d = self.fit.input_len();
            let x = probe
                .batch(&self.fit.train.x[..b * d], b)
                .map_err(|e| EvalError(e.to_string()))?;
            let y = Tensor::from_slice(&self.fit.train.y[..b], b, probe.device())
                .map_err(|e| EvalError(e.to_string()))?;
            let norm = stability(&probe, &x, &y, &self.rejection)
                .map_err(|e| EvalError(format!("{e} on the {} anchor", anchor.name())))?;
            metrics.insert(format!("max_grad_norm_{}", anchor.name()), norm);
            // Quality.
            let acc = super::train_network(&net, &self.fit, &self.training, seed)?;
            if acc < self.rejection.min_accuracy {
                return Err(EvalError(format!(
                    "{REJECTED_QUALITY}: {:.1}% on the {} anchor (the least is {:.1}%)",
                    100.0 * acc,
                    anchor.name(),
                    100.0 * self.rejection.min_accuracy
                )));
            }
            metrics.insert(format!("acc_{}", anchor.name()), 100.0 * acc);
            sum += 100.0 * acc;
        }
        Ok(Evaluation {
            fitness: sum / self.anchors.len() as f64,
            cost: 0.0,
            metrics,
        })
    }
}
