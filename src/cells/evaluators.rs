//! Evaluators that judge any cell space through the network it builds: zero-cost proxies
//! computed on the IR, and short training on a dataset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::metric;
use crate::ir::{Graph, IrError};
use crate::search::{EvalError, Evaluation, Evaluator};
use crate::train::data::DataError;
use crate::train::{self, Dataset, Model, Split, TrainConfig};
use crate::verify;

/// Builds a candidate's network.
pub type Network<C> = Arc<dyn Fn(&C) -> Result<Graph, IrError> + Send + Sync>;

/// The IR cost model's numbers every network-based evaluator reports.
fn cost_metrics(g: &Graph) -> Result<BTreeMap<String, f64>, IrError> {
    let t = g.analyze()?.totals;
    Ok(BTreeMap::from([
        ("params_m".to_string(), t.params as f64 / 1e6),
        ("macs_m".to_string(), t.macs as f64 / 1e6),
    ]))
}

/// A zero-cost proxy as the fitness (see [`super::proxies`]). Proxies cost nothing in the
/// study's budget. An optional reference evaluator (a benchmark table) adds its metrics, so
/// that a proxy-driven search can be judged by what the table says of its choice.
pub struct ZeroCostEvaluator<C> {
    /// The proxy's name (one of [`super::proxies::NAMES`]).
    pub proxy: String,
    /// The candidate's network.
    pub network: Network<C>,
    /// Classes (for the random labels of grad_norm and snip).
    pub classes: usize,
    /// The batch of the data-dependent proxies.
    pub inputs: super::proxies::ProxyInputs,
    /// Seed of the weights and the batch: the same for every candidate, so scores compare.
    pub seed: u64,
    /// Metrics to add, not seen by the search.
    pub reference: Option<Box<dyn Evaluator<C>>>,
}

impl<C: Sync> Evaluator<C> for ZeroCostEvaluator<C> {
    fn describe(&self) -> String {
        let mut d = format!(
            "proxy:{}({},seed={})",
            self.proxy,
            self.inputs.describe(),
            self.seed
        );
        if let Some(r) = &self.reference {
            d.push_str(&format!(" judged by {}", r.describe()));
        }
        d
    }

    fn evaluate(&self, c: &C, seed: u64) -> Result<Evaluation, EvalError> {
        let g = (self.network)(c)?;
        let scores = super::proxies::scores(
            &[self.proxy.as_str()],
            &g,
            self.classes,
            &self.inputs,
            self.seed,
        )
        .map_err(|e| EvalError(e.to_string()))?;
        let (fitness, _) = scores[&self.proxy];
        let mut metrics = match &self.reference {
            Some(r) => r.evaluate(c, seed)?.metrics,
            None => BTreeMap::new(),
        };
        metrics.extend(cost_metrics(&g)?);
        metrics.insert(self.proxy.clone(), fitness);
        Ok(Evaluation {
            fitness,
            cost: 0.0,
            metrics,
        })
    }
}

/// What a trained candidate is verified on: the first `points` held-out examples at each
/// radius (as written, and its value), each query under `timeout` seconds.
pub struct VerifySettings<C> {
    /// The radii.
    pub radii: Vec<(String, f64)>,
    /// Held-out points posed.
    pub points: usize,
    /// Seconds per query.
    pub timeout: f64,
    /// Where each verified network goes, with its proof.
    pub networks: Option<NetworksDir<C>>,
}

/// A folder of verified networks: `DIR/<key>/network.onnx` and `network.json` (the trained
/// network, in ONNX and the IR) and `DIR/<key>/verified.json` (the candidate, the dataset,
/// the training-split indices of the points posed, each radius's counts and confirmed
/// counterexamples, and every query's answer, its proof log; points are numbered by their
/// position in that list), where `<key>` is [`network_key`]. The files are written
/// atomically, the record last. `robustness --split train --points ...` on the network
/// re-derives every count.
pub struct NetworksDir<C> {
    /// The folder.
    pub dir: std::path::PathBuf,
    /// The candidate's encoding (as the study stores it).
    pub encode: Arc<dyn Fn(&C) -> String + Send + Sync>,
}

/// The folder name of a candidate's network trained with `seed`: FNV-1a of its encoding, and
/// the seed (a candidate drawn twice is trained twice, each time with its trial's seed).
pub fn network_key(encoding: &str, seed: u64) -> String {
    let h = encoding.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("cand-{h:016x}-{seed:016x}")
}

/// Short training as the evaluator: the network is trained on the dataset's training split
/// less its last `valid` examples (certified training when the configuration says so), and
/// judged by its accuracy (in %) on those held-out examples; the test split's accuracy is
/// reported, never used. With `verify`, the trained network is then verified on the first
/// held-out points, and the verified accuracy (%) at each radius, the points left unknown or
/// refuted and the seconds it took are metrics (`verified_EPS` is what a `verified:EPS`
/// objective reads). The cost is the wall-clock seconds of training and verification.
pub struct TrainEvaluator<C> {
    /// The candidate's network (its input and classes must match the dataset).
    pub network: Network<C>,
    /// Training data (the held-out validation part of the training split).
    pub fit: Arc<Dataset>,
    /// The dataset's test split.
    pub test: Arc<Split>,
    /// Training settings (their seed is replaced by the trial's).
    pub config: TrainConfig,
    /// Training-split examples between the fitted part and the held-out part (the held-out
    /// examples start at `fit.train.len() + fit_gap`).
    pub fit_gap: usize,
    /// Verification after training.
    pub verify: Option<VerifySettings<C>>,
}

impl<C> TrainEvaluator<C> {
    /// Splits `data`'s training split into the first `train` examples (all but `valid` when
    /// `train` is 0) for fitting and the last `valid` for validation.
    pub fn new(
        network: Network<C>,
        data: &Dataset,
        train: usize,
        valid: usize,
        config: TrainConfig,
    ) -> Result<Self, DataError> {
        let fit = data.hold_out(train, valid)?;
        let fit_gap = data.train.len() - valid - fit.train.len();
        Ok(TrainEvaluator {
            fit_gap,
            network,
            fit: Arc::new(fit),
            test: Arc::new(data.test.clone()),
            config,
            verify: None,
        })
    }
}

impl<C: Sync> Evaluator<C> for TrainEvaluator<C> {
    fn describe(&self) -> String {
        let mut d = format!(
            "train:{}(train={},valid={},epochs={},batch={},lr={}",
            self.fit.name,
            self.fit.train.len(),
            self.fit.test.len(),
            self.config.epochs,
            self.config.batch_size,
            self.config.lr
        );
        if let Some(c) = &self.config.certified {
            d.push_str(&format!(",certified={}@{}", c.method.name(), c.eps));
        }
        if let Some(v) = &self.verify {
            let radii: Vec<&str> = v.radii.iter().map(|(e, _)| e.as_str()).collect();
            d.push_str(&format!(
                ",verify={}@{}x{}s",
                radii.join("+"),
                v.points,
                v.timeout
            ));
        }
        d.push(')');
        d
    }

    fn evaluate(&self, c: &C, seed: u64) -> Result<Evaluation, EvalError> {
        let g = (self.network)(c)?;
        let mut metrics = cost_metrics(&g)?;
        let mut model = Model::new(&g, seed).map_err(|e| EvalError(e.to_string()))?;
        let cfg = TrainConfig {
            seed,
            ..self.config.clone()
        };
        let report = train::train(&mut model, &self.fit, &cfg, &|_| {})
            .map_err(|e| EvalError(e.to_string()))?;
        let valid = 100.0 * report.test_accuracy;
        if !valid.is_finite() {
            return Err(EvalError("training diverged".into()));
        }
        let (_, test) =
            train::evaluate(&model, &self.test).map_err(|e| EvalError(e.to_string()))?;
        metrics.insert(metric::TRAINED_VALID.into(), valid);
        metrics.insert(metric::TRAINED_TEST.into(), 100.0 * test);
        metrics.insert("train_seconds".into(), report.train_seconds);
        if let Some(e) = report.epochs.last() {
            metrics.insert("train_loss".into(), e.train_loss);
        }
        let mut cost = report.train_seconds;
        if let Some(v) = &self.verify {
            let graph = model.to_graph().map_err(|e| EvalError(e.to_string()))?;
            let net = verify::ir::from_graph(&graph).map_err(|e| EvalError(e.to_string()))?;
            let split = &self.fit.test;
            let points: Vec<(Vec<f64>, usize)> = (0..v.points.min(split.len()))
                .map(|i| {
                    let x = split.input(i).iter().map(|&p| p as f64).collect();
                    (x, split.y[i] as usize)
                })
                .collect();
            let values: Vec<f64> = v.radii.iter().map(|r| r.1).collect();
            let opts = verify::accuracy::query_options(Duration::from_secs_f64(v.timeout), seed);
            let (results, queries) =
                verify::accuracy::verified_accuracy(&net, &points, &values, &opts, &|| {})
                    .map_err(|e| EvalError(e.to_string()))?;
            let mut seconds = 0.0;
            for ((written, _), r) in v.radii.iter().zip(&results) {
                metrics.insert(metric::verified(written), 100.0 * r.accuracy);
                metrics.insert(metric::verify_unknown(written), r.unknown as f64);
                metrics.insert(metric::verify_falsified(written), r.falsified as f64);
                seconds += r.seconds;
            }
            metrics.insert(metric::VERIFY_SECONDS.into(), seconds);
            cost += seconds;
            if let Some(nd) = &v.networks {
                let encoding = (nd.encode)(c);
                let dir = nd.dir.join(network_key(&encoding, seed));
                let first = self.fit.train.len() + self.fit_gap;
                let record = serde_json::json!({
                    "candidate": encoding,
                    "seed": seed,
                    "dataset": self.fit.name,
                    "split": "train",
                    "points": (0..points.len()).map(|i| first + i).collect::<Vec<_>>(),
                    "query_timeout": v.timeout,
                    "verified_accuracy": results,
                    "queries": queries,
                });
                let onnx =
                    crate::train::export::to_onnx(&graph).map_err(|e| EvalError(e.to_string()))?;
                let write = |name: &str, bytes: &[u8]| {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| EvalError(format!("{}: {e}", dir.display())))?;
                    crate::files::write_atomic(&dir.join(name), bytes, true)
                        .map_err(|e| EvalError(e.to_string()))
                };
                write("network.onnx", &onnx)?;
                let ir = crate::ir::io::to_json(&graph).map_err(|e| EvalError(e.to_string()))?;
                write("network.json", ir.as_bytes())?;
                let json = serde_json::to_string_pretty(&record).unwrap_or_default();
                write("verified.json", json.as_bytes())?;
            }
        }
        Ok(Evaluation {
            fitness: valid,
            cost,
            metrics,
        })
    }
}
