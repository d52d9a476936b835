//! A cell search from its settings: the evaluator and strategy they name, one study or many
//! seeded runs, and what each reports (summaries, and the Pareto analysis against a benchmark
//! table's own front).
//!
//! The command line only fills [`CellSettings`]; everything after that is here, so a program
//! can run the searches `archproof search cell` runs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::evaluators::{Network, TrainEvaluator, VerifySettings, ZeroCostEvaluator};
use super::metric;
use super::nasnet::NasnetSpace;
use super::nb201::Nb201Cell;
use super::table::{CostMeasure, CostProxy, Table};
use super::{proxies, CellSpace, CellsError, Nb201Networks, SpaceKind, SpaceSpec};
use crate::ir::{Graph, IrError};
use crate::report::ReportError;
use crate::search::pareto::{self, Coverage, Objective, ReachableFront};
use crate::search::{
    Evaluator, LocalSearch, Outcome, ParetoEvolution, Proxy, ProxyEvolution, RandomSearch,
    RegularizedEvolution, SearchError, Space, Strategy, Study, StudyConfig, StudyHeader,
    StudyResult, Trial,
};
use crate::train::bounds::BoundMethod;
use crate::train::certified::Certified;
use crate::train::{self, Dataset, Model, OptimizerKind, TrainConfig, TrainEngine};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Why a cell search could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum CellSearchError {
    /// The settings, the space file, the table or the dataset.
    #[error(transparent)]
    Cells(#[from] CellsError),
    /// The study engine or its store.
    #[error(transparent)]
    Study(#[from] SearchError),
    /// A seeded run of [`repeat`] in which every trial failed.
    #[error("run with seed {seed}: no trial succeeded")]
    NoTrialSucceeded {
        /// The run's seed.
        seed: u64,
    },
    /// The best candidate's network could not be built.
    #[error(transparent)]
    Network(#[from] IrError),
    /// A figure or the run page could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A result file could not be written (or exists and `--force` was not given).
    #[error(transparent)]
    File(#[from] crate::files::FileError),
}

/// The strategies a cell search can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyName {
    /// Uniform random sampling.
    Random,
    /// Regularized (aging) evolution.
    Rea,
    /// Local search: unvisited neighbours of the best so far, random restarts.
    Local,
    /// Regularized evolution guided by the parameter count.
    #[serde(rename = "proxy-rea")]
    ProxyRea,
    /// Multi-objective: mutate a random member of the current Pareto front (SEMO).
    Pareto,
}

impl StrategyName {
    /// Every strategy, in the order the help lists them.
    pub const ALL: [StrategyName; 5] = [
        StrategyName::Random,
        StrategyName::Rea,
        StrategyName::Local,
        StrategyName::ProxyRea,
        StrategyName::Pareto,
    ];

    /// The name as the command line and the stored settings write it.
    pub fn name(self) -> &'static str {
        match self {
            StrategyName::Random => "random",
            StrategyName::Rea => "rea",
            StrategyName::Local => "local",
            StrategyName::ProxyRea => "proxy-rea",
            StrategyName::Pareto => "pareto",
        }
    }

    /// One line on what the strategy does.
    pub fn about(self) -> &'static str {
        match self {
            StrategyName::Random => "uniform random sampling",
            StrategyName::Rea => "regularized (aging) evolution",
            StrategyName::Local => {
                "local search: unvisited neighbours of the best so far, random restarts"
            }
            StrategyName::ProxyRea => {
                "regularized evolution guided by the parameter count (a free proxy): \
                 proxy-ranked initial population and children, no cell queried twice"
            }
            StrategyName::Pareto => {
                "multi-objective: mutate a random member of the current Pareto front (SEMO)"
            }
        }
    }

    /// Whether the strategy keeps a population (and so needs `population` and `sample`).
    pub fn evolves(self) -> bool {
        matches!(
            self,
            StrategyName::Rea | StrategyName::ProxyRea | StrategyName::Pareto
        )
    }
}

impl fmt::Display for StrategyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyName {
    type Err = CellsError;

    fn from_str(s: &str) -> Result<Self, CellsError> {
        StrategyName::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| {
                CellsError::Settings(format!(
                    "unknown strategy '{s}' (known: {})",
                    StrategyName::ALL.map(StrategyName::name).join(", ")
                ))
            })
    }
}

/// How candidates are judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EvaluatorKind {
    /// The benchmark table's protocol (NAS-Bench-201 only).
    Benchmark,
    /// A zero-cost proxy, by the name the command line gives (one of [`proxies::NAMES`],
    /// or `macs`).
    Proxy(String),
    /// Short training on a dataset's held-out split.
    Train,
}

impl fmt::Display for EvaluatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvaluatorKind::Benchmark => f.write_str("benchmark"),
            EvaluatorKind::Proxy(p) => write!(f, "proxy:{p}"),
            EvaluatorKind::Train => f.write_str("train"),
        }
    }
}

impl FromStr for EvaluatorKind {
    type Err = CellsError;

    fn from_str(s: &str) -> Result<Self, CellsError> {
        match s {
            "benchmark" => return Ok(EvaluatorKind::Benchmark),
            "train" => return Ok(EvaluatorKind::Train),
            _ => {}
        }
        let known = || proxies::NAMES.join(", ");
        match s.strip_prefix("proxy:") {
            Some(p) if p == "macs" || proxies::NAMES.contains(&p) => {
                Ok(EvaluatorKind::Proxy(p.to_string()))
            }
            Some(p) => Err(CellsError::Settings(format!(
                "unknown proxy '{p}' (known: {}, macs)",
                known()
            ))),
            None => Err(CellsError::Settings(format!(
                "unknown evaluator '{s}' (known: benchmark, proxy:NAME with NAME one of {}, train)",
                known()
            ))),
        }
    }
}

impl TryFrom<String> for EvaluatorKind {
    type Error = CellsError;

    fn try_from(s: String) -> Result<Self, CellsError> {
        s.parse()
    }
}

impl From<EvaluatorKind> for String {
    fn from(e: EvaluatorKind) -> String {
        e.to_string()
    }
}

impl EvaluatorKind {
    /// Whether the evaluator builds and runs each candidate's network on data (and so takes
    /// the networks' input and classes from a dataset when one is given).
    pub fn uses_data(&self) -> bool {
        matches!(self, EvaluatorKind::Proxy(_) | EvaluatorKind::Train)
    }
}

/// What `--evaluator train` trains each candidate with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Epochs per candidate.
    pub epochs: usize,
    /// Training examples per candidate (0: all but the validation ones).
    pub train_examples: usize,
    /// The last examples of the training split, held out to judge candidates.
    pub valid_examples: usize,
    /// Adam's learning rate (cosine decay).
    pub lr: f64,
    /// The back end of the training steps (studies stored before it existed used candle).
    #[serde(default = "TrainEngine::before_choice")]
    pub engine: TrainEngine,
    /// Certified training of every candidate (IBP or CROWN-IBP), at `certified_eps`.
    /// (Defaults are not written, so that studies stored before these settings existed
    /// resume with the same stored settings.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified: Option<BoundMethod>,
    /// The radius of certified training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified_eps: Option<f64>,
    /// Held-out points each candidate is verified on, for `verified:EPS` objectives.
    #[serde(
        default = "default_verify_points",
        skip_serializing_if = "is_default_verify_points"
    )]
    pub verify_points: usize,
    /// Seconds of each verification query.
    #[serde(
        default = "default_verify_timeout",
        skip_serializing_if = "is_default_verify_timeout"
    )]
    pub verify_timeout: f64,
}

fn is_default_verify_points(v: &usize) -> bool {
    *v == default_verify_points()
}

fn is_default_verify_timeout(v: &f64) -> bool {
    *v == default_verify_timeout()
}

fn default_verify_points() -> usize {
    50
}

fn default_verify_timeout() -> f64 {
    1.0
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            epochs: 1,
            train_examples: 3000,
            valid_examples: 1000,
            lr: 0.003,
            engine: TrainEngine::Auto,
            certified: None,
            certified_eps: None,
            verify_points: default_verify_points(),
            verify_timeout: default_verify_timeout(),
        }
    }
}

/// The batch of random or real inputs a data-dependent proxy scores with, by default.
pub const DEFAULT_PROXY_BATCH: usize = 16;

fn default_proxy_batch() -> usize {
    DEFAULT_PROXY_BATCH
}

/// The resolved settings of a cell search, stored with the study so that it resumes as it
/// started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSettings {
    /// A space file or a space name.
    pub space: String,
    /// The space file's contents when the study began (absent from studies begun before it
    /// was recorded): a resumed or joined study refuses a file edited since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_spec: Option<SpaceSpec>,
    /// The benchmark table.
    pub benchmark: Option<std::path::PathBuf>,
    /// How candidates are judged.
    pub evaluator: EvaluatorKind,
    /// How candidates are proposed.
    pub strategy: StrategyName,
    /// REA's population.
    pub population: usize,
    /// REA's tournament size.
    pub sample: usize,
    /// The most trials.
    pub trials: usize,
    /// Stop once the evaluations' cost reaches this.
    pub budget_seconds: Option<f64>,
    /// Trials proposed together and evaluated in parallel.
    pub batch: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Objectives of a multi-objective search, as the command line names them.
    #[serde(default)]
    pub objectives: Vec<String>,
    /// The dataset of training and of the proxies' batch.
    #[serde(default)]
    pub dataset: Option<String>,
    /// What training does per candidate.
    #[serde(default)]
    pub train: TrainSettings,
    /// The proxies' batch size.
    #[serde(default = "default_proxy_batch")]
    pub proxy_batch: usize,
}

impl CellSettings {
    /// Refuses settings no search can run with; the message names the flag to change.
    pub fn check(&self) -> Result<(), CellsError> {
        let bad = |m: &str| Err(CellsError::Settings(m.to_string()));
        if self.batch == 0 || self.trials == 0 {
            return bad("--batch and --trials must be at least 1");
        }
        if self.strategy.evolves() && (self.population == 0 || self.sample == 0) {
            return bad("--population and --sample must be at least 1");
        }
        if self
            .budget_seconds
            .is_some_and(|b| !(b > 0.0 && b.is_finite()))
        {
            return bad("--budget-seconds must be a positive number");
        }
        if self.objectives.is_empty() {
            if self.strategy == StrategyName::Pareto {
                return bad(
                    "the pareto strategy needs --objectives (e.g. accuracy,latency_ms_pixel3)",
                );
            }
        } else {
            if self.objectives.len() < 2 {
                return bad("--objectives needs at least two objectives (e.g. accuracy,flops_m)");
            }
            if !matches!(self.strategy, StrategyName::Random | StrategyName::Pareto) {
                return bad("with --objectives the strategy is pareto or random");
            }
        }
        let t = &self.train;
        let radii = self.verified_radii()?;
        if !radii.is_empty() && self.evaluator != EvaluatorKind::Train {
            return bad("verified:EPS objectives need --evaluator train (the network is trained, then verified)");
        }
        let timeout_ok = t.verify_timeout > 0.0 && t.verify_timeout <= 3600.0;
        if !radii.is_empty() && (t.verify_points == 0 || !timeout_ok) {
            return bad(
                "--verify-points must be at least 1 and --verify-timeout a number of seconds in (0, 3600]",
            );
        }
        match (t.certified, t.certified_eps) {
            (Some(_), None) => {
                return bad("--certified needs --eps (or a verified:EPS objective to take it from)")
            }
            (Some(_), Some(e)) if !(e > 0.0 && e <= 1.0) => {
                return bad("--eps: the radius of certified training must be in (0, 1]")
            }
            (Some(_), _) if self.evaluator != EvaluatorKind::Train => {
                return bad("--certified needs --evaluator train")
            }
            _ => {}
        }
        if self.evaluator == EvaluatorKind::Train {
            if self.dataset.is_none() {
                return bad("--evaluator train needs --dataset (e.g. --dataset shapes)");
            }
            if t.epochs == 0 || !(t.lr > 0.0 && t.lr.is_finite()) {
                return bad("--epochs must be at least 1 and --lr a positive number");
            }
        }
        if self.proxy_batch < 2 {
            return bad("--proxy-batch must be at least 2");
        }
        Ok(())
    }

    /// Refuses a space file whose contents differ from those the study began with.
    pub fn check_space_unchanged(&self) -> Result<(), CellsError> {
        let Some(then) = &self.space_spec else {
            return Ok(());
        };
        let now = SpaceSpec::load(&self.space)?;
        if now != *then {
            return Err(CellsError::Space(format!(
                "{}: the space changed since the study began (then {}, now {}); restore the file, or start a new study",
                self.space,
                serde_json::to_string(then).unwrap_or_default(),
                serde_json::to_string(&now).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// The radii of the `verified:EPS` objectives, as written and as numbers; an error for
    /// one outside (0, 1].
    pub fn verified_radii(&self) -> Result<Vec<(String, f64)>, CellsError> {
        self.objectives
            .iter()
            .filter_map(|o| o.strip_prefix(metric::VERIFIED_OBJECTIVE))
            .map(|e| match e.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => Ok((e.to_string(), v)),
                _ => Err(CellsError::Settings(format!(
                    "--objectives verified:{e}: the radius must be a number in (0, 1]"
                ))),
            })
            .collect()
    }

    /// The radius certified training takes by default: the largest of the `verified:EPS`
    /// objectives (`None` without one, or with one that does not parse).
    pub fn default_certified_eps(objectives: &[String]) -> Option<f64> {
        objectives
            .iter()
            .filter_map(|o| {
                o.strip_prefix(metric::VERIFIED_OBJECTIVE)?
                    .parse::<f64>()
                    .ok()
            })
            .reduce(f64::max)
    }

    /// The objectives, parsed.
    pub fn objectives(&self) -> Vec<Objective> {
        self.objectives
            .iter()
            .map(|o| Objective::parse(o))
            .collect()
    }

    /// The study engine's settings for one seed.
    pub fn study_config(&self, seed: u64) -> StudyConfig {
        StudyConfig {
            seed,
            max_trials: self.trials,
            budget: self.budget_seconds,
            batch: self.batch,
        }
    }
}

/// Everything a search on one space needs besides its strategy, built once from the settings.
pub struct Setup<S: CellSpace> {
    /// The space.
    pub space: S,
    /// How candidates are judged.
    pub evaluator: Box<dyn Evaluator<S::Candidate>>,
    /// With two objectives and the benchmark evaluator: every cell of the table, the best
    /// front any search can reach.
    pub reachable: Option<ReachableFront>,
}

/// A cell search set up on one of the spaces.
pub enum CellSearch {
    /// On NAS-Bench-201.
    Nb201(Setup<Nb201Networks>),
    /// On NASNet.
    Nasnet(Setup<NasnetSpace>),
}

impl CellSearch {
    /// Reads what the settings name (the space file, the benchmark table, the dataset) and
    /// builds the evaluator. The settings are checked first.
    pub fn new(settings: &CellSettings) -> Result<CellSearch, CellsError> {
        CellSearch::with_networks(settings, None)
    }

    /// [`new`](CellSearch::new), with the trained and verified networks of `verified:EPS`
    /// searches written below `networks` (see [`TrainEvaluator`]).
    pub fn with_networks(
        settings: &CellSettings,
        networks: Option<std::path::PathBuf>,
    ) -> Result<CellSearch, CellsError> {
        settings.check()?;
        let mut spec = SpaceSpec::load(&settings.space)?;
        // Training and the proxies take the networks' input and classes from the dataset.
        let data = match &settings.dataset {
            Some(d) if settings.evaluator.uses_data() => {
                let ds = train::data::load(d).map_err(|e| CellsError::Data(e.to_string()))?;
                spec.input = ds.shape.clone();
                spec.classes = ds.classes;
                Some(ds)
            }
            _ => None,
        };
        match spec.kind {
            SpaceKind::Nb201 => {
                let space = spec.nb201();
                // The skeleton must fit the input (a stride-2 stem on 28x28 leaves 7x7 maps
                // that the second reduction block cannot halve): one line before any trial.
                if let Err(e) = super::CellSpace::network(&space, &Nb201Cell::from_code(0)) {
                    let s = space.skeleton.stem_stride;
                    let hint = if s == 1 {
                        String::new()
                    } else {
                        format!(
                            "; a stem of stride {s} needs an input side that is a multiple of {}, or stem_stride = 1",
                            4 * s
                        )
                    };
                    return Err(CellsError::Space(format!(
                        "{}: its networks cannot be built on a {} input ({e}){hint}",
                        settings.space,
                        crate::ir::dims_text(space.input.dims())
                    )));
                }
                if settings.benchmark.is_some() && !space.is_benchmark() {
                    return Err(CellsError::Settings(format!(
                        "{}; drop --benchmark or the space's channels, cells_per_stage and stem_stride",
                        space.not_benchmark_reason()
                    )));
                }
                let table = match &settings.benchmark {
                    Some(p) => Some(Table::load(p)?),
                    None => None,
                };
                let objectives = settings.objectives();
                let reachable = match &table {
                    Some(t) if settings.evaluator == EvaluatorKind::Benchmark => {
                        let points = t.objective_points(&objectives)?;
                        (objectives.len() == 2).then(|| ReachableFront::new(points))
                    }
                    _ => None,
                };
                let evaluator: Box<dyn Evaluator<Nb201Cell>> = match (&settings.evaluator, table) {
                    (EvaluatorKind::Benchmark, Some(t)) => Box::new(t),
                    (EvaluatorKind::Benchmark, None) => {
                        return Err(CellsError::Settings(
                            "--evaluator benchmark needs --benchmark FILE.csv".into(),
                        ))
                    }
                    // The IR cost model in millions, as before the candle proxies.
                    (EvaluatorKind::Proxy(p), None) if p == "params" || p == "macs" => {
                        Box::new(CostProxy {
                            measure: if p == "params" {
                                CostMeasure::Params
                            } else {
                                CostMeasure::Macs
                            },
                            networks: space.clone(),
                        })
                    }
                    (_, table) => network_evaluator(
                        &space,
                        spec.classes,
                        settings,
                        data.as_ref(),
                        table.map(|t| Box::new(t) as Box<dyn Evaluator<Nb201Cell>>),
                        networks,
                    )?,
                };
                Ok(CellSearch::Nb201(Setup {
                    space,
                    evaluator,
                    reachable,
                }))
            }
            SpaceKind::Nasnet => {
                if settings.evaluator == EvaluatorKind::Benchmark || settings.benchmark.is_some() {
                    return Err(CellsError::Settings(
                        "there is no benchmark table of the NASNet space; use --evaluator train --dataset shapes or --evaluator proxy:NAME".into(),
                    ));
                }
                let space = spec.nasnet();
                let evaluator = network_evaluator(
                    &space,
                    spec.classes,
                    settings,
                    data.as_ref(),
                    None,
                    networks,
                )?;
                Ok(CellSearch::Nasnet(Setup {
                    space,
                    evaluator,
                    reachable: None,
                }))
            }
        }
    }
}

/// A candidate's network as an evaluator's closure.
fn network_of<S>(space: &S) -> Network<S::Candidate>
where
    S: CellSpace + Clone + Send + 'static,
{
    let sp = space.clone();
    Arc::new(move |c: &S::Candidate| sp.network(c))
}

/// The evaluators that judge a candidate by its network: zero-cost proxies and training.
/// `reference` adds its metrics (a table's) to each evaluation without the search seeing them.
pub fn network_evaluator<S>(
    space: &S,
    classes: usize,
    settings: &CellSettings,
    data: Option<&Dataset>,
    reference: Option<Box<dyn Evaluator<S::Candidate>>>,
    networks: Option<std::path::PathBuf>,
) -> Result<Box<dyn Evaluator<S::Candidate>>, CellsError>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    match &settings.evaluator {
        EvaluatorKind::Proxy(p) => Ok(Box::new(ZeroCostEvaluator {
            proxy: if p == "macs" { "flops".into() } else { p.clone() },
            network: network_of(space),
            classes,
            inputs: match data {
                Some(d) => proxies::ProxyInputs::from_dataset(d, settings.proxy_batch),
                None => proxies::ProxyInputs::Random(settings.proxy_batch),
            },
            seed: settings.seed,
            reference,
        })),
        EvaluatorKind::Train => {
            let data = data.ok_or_else(|| {
                CellsError::Settings("--evaluator train needs --dataset".into())
            })?;
            let t = &settings.train;
            let certified = match (t.certified, t.certified_eps) {
                (Some(m), Some(eps)) => Some(Certified::new(m, eps, t.epochs)),
                _ => None,
            };
            let cfg = TrainConfig {
                epochs: t.epochs,
                lr: t.lr,
                optimizer: OptimizerKind::Adam,
                engine: t.engine,
                certified,
                ..TrainConfig::default()
            };
            let radii = settings.verified_radii()?;
            if !radii.is_empty() || t.certified.is_some() {
                check_verifiable(space, settings, !radii.is_empty())?;
            }
            let mut ev = TrainEvaluator::new(
                network_of(space),
                data,
                t.train_examples,
                t.valid_examples,
                cfg,
            )
            .map_err(|e| CellsError::Data(e.to_string()))?;
            if !radii.is_empty() {
                let sp = space.clone();
                ev.verify = Some(VerifySettings {
                    radii,
                    points: t.verify_points,
                    timeout: t.verify_timeout,
                    networks: networks.map(|dir| super::evaluators::NetworksDir {
                        dir,
                        encode: Arc::new(move |c: &S::Candidate| sp.encode(c)),
                    }),
                });
            }
            Ok(Box::new(ev))
        }
        EvaluatorKind::Benchmark => Err(CellsError::Settings(
            "the benchmark evaluator judges NAS-Bench-201 cells by their table row, not by a network"
                .into(),
        )),
    }
}

/// Networks drawn to find the space's operator kinds in [`check_verifiable`]: enough that
/// every operation of NASNet's 13 (20 slots per genotype) is drawn with near certainty.
const VERIFIABLE_SAMPLES: usize = 32;

/// Refuses, before any training, a space whose networks certified training cannot bound or
/// (`verify`) the verifier cannot read. Networks of the space are drawn from the search's
/// seed; each that has an operator (by [`rule_key`]) none before it had is built, given seeded
/// weights and loaded as the verifier would load it (the rest add nothing to check).
fn check_verifiable<S>(space: &S, settings: &CellSettings, verify: bool) -> Result<(), CellsError>
where
    S: CellSpace,
{
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..VERIFIABLE_SAMPLES {
        let candidate = space.sample(&mut rng);
        let g = space
            .network(&candidate)
            .map_err(|e| CellsError::Settings(e.to_string()))?;
        let before = seen.len();
        seen.extend(g.node_ids().map(|id| rule_key(&g.node(id).op)));
        if seen.len() == before {
            continue;
        }
        let named = |e: &dyn std::fmt::Display| {
            format!("{e} (in the network of {})", space.encode(&candidate))
        };
        if let Some(m) = settings.train.certified {
            crate::train::bounds::check_trainable(&g, m)
                .map_err(|e| CellsError::Settings(named(&e)))?;
        }
        if verify {
            let with_weights = Model::new(&g, settings.seed)
                .and_then(|m| m.to_graph())
                .map_err(|e| CellsError::Settings(e.to_string()))?;
            crate::verify::ir::from_graph(&with_weights).map_err(|e| {
                CellsError::Settings(format!(
                    "verified:EPS objectives: the verifier cannot read this space's networks: {}",
                    named(&e)
                ))
            })?;
        }
    }
    Ok(())
}

/// What decides whether the bounds and the verifier take an operator: its kind, and the
/// attributes their rules look at (the activation, a leaky slope's sign, a convolution's
/// stride and dilation symmetry).
fn rule_key(op: &crate::ir::Op) -> String {
    use crate::ir::Op;
    match op {
        Op::Act { function } => function.name().to_string(),
        Op::LeakyRelu { slope } => format!("leaky_relu, slope >= 0: {}", *slope >= 0.0),
        Op::Conv2d {
            stride, dilation, ..
        } => format!(
            "conv2d, square stride {}, square dilation {}",
            stride[0] == stride[1],
            dilation[0] == dilation[1]
        ),
        op => op.kind().to_string(),
    }
}

/// Mutations ranked by the proxy per child, and random cells per initial member, of
/// `proxy-rea`.
const PROXY_CHILDREN: usize = 4;
const PROXY_POOL: usize = 20;

/// The strategy the settings name, on `space`.
pub fn strategy_for<S>(settings: &CellSettings, space: &S) -> Box<dyn Strategy<S>>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    match settings.strategy {
        StrategyName::Random => Box::new(RandomSearch),
        StrategyName::Rea => Box::new(RegularizedEvolution {
            population: settings.population,
            sample: settings.sample,
        }),
        StrategyName::Local => Box::new(LocalSearch),
        StrategyName::Pareto => Box::new(ParetoEvolution {
            objectives: settings.objectives(),
            initial: settings.population,
        }),
        StrategyName::ProxyRea => {
            // The network's parameter count from the IR cost model, once per candidate.
            let sp = space.clone();
            let cache = Mutex::new(HashMap::<String, f64>::new());
            let proxy: Proxy<S::Candidate> = Arc::new(move |c: &S::Candidate| {
                let key = sp.encode(c);
                if let Some(&v) = cache.lock().expect("proxy cache").get(&key) {
                    return v;
                }
                let v = sp
                    .network(c)
                    .and_then(|g| g.analyze())
                    .map(|a| a.totals.params as f64)
                    .unwrap_or(f64::MIN);
                cache.lock().expect("proxy cache").insert(key, v);
                v
            });
            Box::new(ProxyEvolution {
                population: settings.population,
                sample: settings.sample,
                pool: PROXY_POOL,
                children: PROXY_CHILDREN,
                proxy,
                proxy_name: "params".into(),
            })
        }
    }
}

/// What one search reports (summary.json, and `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The space's name.
    pub space: String,
    /// The strategy with its settings.
    pub strategy: String,
    /// The evaluator's description.
    pub evaluator: String,
    /// The study's seed.
    pub seed: u64,
    /// Trials run.
    pub trials: usize,
    /// Trials whose evaluation failed.
    pub failed: usize,
    /// The evaluations' summed cost.
    pub total_cost: f64,
    /// Whether the study stopped early.
    pub interrupted: bool,
    /// The fittest trial.
    pub best: Option<TrialReport>,
    /// Best fitness seen after each trial.
    pub best_so_far: Vec<f64>,
    /// With objectives: the Pareto front of the evaluated candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pareto: Option<ParetoSummary>,
    /// With `verified:EPS` objectives and a run folder: each front member's verified accuracy
    /// against the radius (see [`super::curves`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified_curves: Vec<super::curves::FrontCurve>,
}

/// One trial as reported.
#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    /// The trial's number.
    pub trial: u64,
    /// The candidate's text.
    pub cell: String,
    /// Its fitness (NaN for a failed trial).
    pub fitness: f64,
    /// Everything the evaluator reported.
    pub metrics: BTreeMap<String, f64>,
}

impl TrialReport {
    /// How a trial is reported.
    pub fn of<C>(t: &Trial<C>, space: &impl Space<Candidate = C>) -> TrialReport {
        TrialReport {
            trial: t.id,
            cell: space.encode(&t.candidate),
            fitness: t.fitness().unwrap_or(f64::NAN),
            metrics: match &t.outcome {
                Outcome::Done(e) => e.metrics.clone(),
                Outcome::Failed(_) => Default::default(),
            },
        }
    }
}

/// The Pareto front of one search.
#[derive(Debug, Clone, Serialize)]
pub struct ParetoSummary {
    /// The objectives as the command line names them.
    pub objectives: Vec<String>,
    /// The non-dominated trials, by increasing second objective.
    pub front: Vec<TrialReport>,
    /// Hypervolume of the front (two objectives; accuracy times the other's units) above
    /// the reference point.
    pub hypervolume: Option<f64>,
    /// The reference point (the worst value of each objective over the table, or over the
    /// evaluated candidates without a table), as the objectives are written.
    pub reference_point: Option<[f64; 2]>,
    /// Hypervolume of the table's own front: the most any search can reach.
    pub table_front_hypervolume: Option<f64>,
    /// hypervolume / table_front_hypervolume.
    pub hypervolume_ratio: Option<f64>,
}

impl ParetoSummary {
    /// The front of `trials` over `objectives` and, for two, its coverage.
    pub fn of<S: Space>(
        trials: &[Trial<S::Candidate>],
        objectives: &[Objective],
        space: &S,
        reachable: Option<&ReachableFront>,
    ) -> ParetoSummary {
        let scored: Vec<(usize, Vec<f64>)> = trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| pareto::oriented(objectives, t).map(|v| (i, v)))
            .collect();
        let points: Vec<Vec<f64>> = scored.iter().map(|s| s.1.clone()).collect();
        let mut front: Vec<usize> = pareto::front(&points);
        front.sort_by(|&x, &y| points[y][1].total_cmp(&points[x][1]));
        let coverage = Coverage::of(trials, objectives, reachable);
        ParetoSummary {
            objectives: objectives.iter().map(|o| o.name().to_string()).collect(),
            front: front
                .iter()
                .map(|&f| TrialReport::of(&trials[scored[f].0], space))
                .collect(),
            hypervolume: coverage.map(|c| c.hypervolume),
            reference_point: coverage.map(|c| {
                [
                    objectives[0].as_written(c.reference[0]),
                    objectives[1].as_written(c.reference[1]),
                ]
            }),
            table_front_hypervolume: coverage.and_then(|c| c.reachable),
            hypervolume_ratio: coverage.and_then(|c| c.ratio),
        }
    }
}

impl Summary {
    /// The summary of a finished study (`header` says how it ran).
    pub fn of<S: CellSpace>(
        r: &StudyResult<S::Candidate>,
        header: &StudyHeader,
        settings: &CellSettings,
        setup: &Setup<S>,
    ) -> Summary {
        let mut best_so_far = Vec::with_capacity(r.trials.len());
        let mut best = f64::NEG_INFINITY;
        for t in &r.trials {
            if let Some(f) = t.fitness() {
                best = best.max(f);
            }
            best_so_far.push(best);
        }
        let objectives = settings.objectives();
        Summary {
            space: header.space.clone(),
            strategy: header.strategy.clone(),
            evaluator: header.evaluator.clone(),
            seed: settings.seed,
            trials: r.trials.len(),
            failed: r.trials.iter().filter(|t| t.fitness().is_none()).count(),
            total_cost: r.total_cost,
            interrupted: r.interrupted,
            best: r.best.map(|i| TrialReport::of(&r.trials[i], &setup.space)),
            best_so_far,
            pareto: (!objectives.is_empty()).then(|| {
                ParetoSummary::of(
                    &r.trials,
                    &objectives,
                    &setup.space,
                    setup.reachable.as_ref(),
                )
            }),
            verified_curves: Vec::new(),
        }
    }

    /// The best cell's network, when a trial succeeded.
    pub fn best_network<S: CellSpace>(&self, space: &S) -> Result<Option<Graph>, CellsError> {
        let Some(best) = &self.best else {
            return Ok(None);
        };
        let cell = space
            .decode(&best.cell)
            .map_err(|e| CellsError::Cell(e.to_string()))?;
        space
            .network(&cell)
            .map(Some)
            .map_err(|e| CellsError::Cell(format!("{}: {e}", best.cell)))
    }
}

/// One of many seeded runs: the best-by-fitness cell and what the evaluator says of it.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The run's seed.
    pub seed: u64,
    /// The best-by-fitness cell.
    pub cell: String,
    /// Its fitness.
    pub fitness: f64,
    /// Its test accuracy, when the evaluator reports one.
    pub test_acc: Option<f64>,
    /// Its validation accuracy, when the evaluator reports one.
    pub valid_acc: Option<f64>,
    /// Trials run.
    pub queries: usize,
    /// The evaluations' summed cost.
    pub simulated_seconds: f64,
    /// With two objectives: the final hypervolume (and its ratio to the table's front).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervolume: Option<f64>,
    /// The final hypervolume over the table front's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervolume_ratio: Option<f64>,
    /// (cost so far, the tracked score) at each change: the test accuracy of the best-by-
    /// fitness cell, or the hypervolume ratio of a multi-objective run.
    #[serde(skip)]
    pub curve: Vec<(f64, f64)>,
    /// The tracked score after each query.
    #[serde(skip)]
    pub by_query: Vec<f64>,
}

/// Many seeded runs of one strategy, summarised as the benchmark paper reports them.
#[derive(Debug, Clone, Serialize)]
pub struct ManySummary {
    /// The space's name.
    pub space: String,
    /// The strategy with its settings.
    pub strategy: String,
    /// The evaluator's description.
    pub evaluator: String,
    /// Runs.
    pub runs: usize,
    /// Each run's budget.
    pub budget_seconds: Option<f64>,
    /// Absent when the evaluator reports no test accuracy (a proxy without a table).
    pub test_acc_mean: Option<f64>,
    /// Standard deviation over runs.
    pub test_acc_std: Option<f64>,
    /// Mean validation accuracy.
    pub valid_acc_mean: Option<f64>,
    /// Mean trials per run.
    pub queries_mean: f64,
    /// Mean hypervolume ratio (two objectives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervolume_ratio_mean: Option<f64>,
    /// Its standard deviation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervolume_ratio_std: Option<f64>,
    /// Mean over runs of the best-by-fitness cell's test accuracy (or, with objectives, the
    /// hypervolume ratio) after q = 1, 2, ... queries (a run that has ended keeps its final
    /// value).
    #[serde(rename = "mean_test_acc_by_query")]
    pub mean_score_by_query: Vec<f64>,
    /// Every run.
    pub per_run: Vec<RunResult>,
}

/// The mean and (population) standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// One seeded run of [`repeat`], in memory.
fn one_run<S>(
    setup: &Setup<S>,
    settings: &CellSettings,
    strategy: &dyn Strategy<S>,
    seed: u64,
) -> Result<RunResult, CellSearchError>
where
    S: CellSpace,
{
    let study = Study::new(
        &setup.space,
        strategy,
        setup.evaluator.as_ref(),
        settings.study_config(seed),
    )?;
    let res = study.run(&|_| {})?;
    let objectives = settings.objectives();
    let multi = objectives.len() == 2;
    let reachable = setup.reachable.as_ref();
    let reference = reachable.map_or([f64::NEG_INFINITY; 2], |t| t.reference);
    let table_hv = reachable.map(|t| t.hypervolume);
    let mut curve = Vec::new();
    let mut by_query = Vec::new();
    let (mut cost, mut best, mut now) = (0.0, f64::NEG_INFINITY, f64::NAN);
    let mut pts: Vec<Vec<f64>> = Vec::new();
    for t in &res.trials {
        if let Outcome::Done(e) = &t.outcome {
            cost += e.cost;
            if multi {
                if let (Some(p), Some(thv)) = (pareto::oriented(&objectives, t), table_hv) {
                    pts.push(p);
                    let r = pareto::hypervolume_2d(&pts, reference) / thv;
                    if r != now {
                        curve.push((cost, r));
                        now = r;
                    }
                }
            } else if e.fitness > best {
                best = e.fitness;
                if let Some(acc) = metric::test_accuracy(&e.metrics) {
                    curve.push((cost, acc));
                    now = acc;
                }
            }
        }
        by_query.push(now);
    }
    let coverage = Coverage::of(&res.trials, &objectives, reachable);
    let b = res
        .best
        .map(|i| &res.trials[i])
        .ok_or(CellSearchError::NoTrialSucceeded { seed })?;
    let m = TrialReport::of(b, &setup.space).metrics;
    Ok(RunResult {
        seed,
        cell: setup.space.encode(&b.candidate),
        fitness: b.fitness().unwrap_or(f64::NAN),
        test_acc: metric::test_accuracy(&m),
        valid_acc: metric::valid_accuracy(&m),
        queries: res.trials.len(),
        simulated_seconds: res.total_cost,
        hypervolume: coverage.map(|c| c.hypervolume),
        hypervolume_ratio: coverage.and_then(|c| c.ratio),
        curve,
        by_query,
    })
}

/// `runs` seeded searches per settings (seeds `seed`, `seed + 1`, ...), in parallel and in
/// memory; several settings (strategies) run on the same seeds. `on_run` is called as each
/// run ends.
pub fn repeat<S>(
    setup: &Setup<S>,
    all: &[CellSettings],
    runs: usize,
    on_run: &(dyn Fn() + Sync),
) -> Result<Vec<ManySummary>, CellSearchError>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    if runs == 0 {
        return Err(CellsError::Settings("--runs must be at least 1".into()).into());
    }
    let mut summaries = Vec::with_capacity(all.len());
    for settings in all {
        let strategy_box = strategy_for(settings, &setup.space);
        let strategy: &dyn Strategy<S> = strategy_box.as_ref();
        let results: Vec<RunResult> = (0..runs as u64)
            .into_par_iter()
            .map(|r| {
                let res = one_run(setup, settings, strategy, settings.seed + r);
                on_run();
                res
            })
            .collect::<Result<_, _>>()?;
        let tests: Vec<f64> = results.iter().filter_map(|r| r.test_acc).collect();
        let valids: Vec<f64> = results.iter().filter_map(|r| r.valid_acc).collect();
        let queries: Vec<f64> = results.iter().map(|r| r.queries as f64).collect();
        let ratios: Vec<f64> = results.iter().filter_map(|r| r.hypervolume_ratio).collect();
        let (test_acc_mean, test_acc_std) = mean_std(&tests);
        let some = |v: f64, of: &[f64]| (!of.is_empty()).then_some(v);
        let longest = results.iter().map(|r| r.by_query.len()).max().unwrap_or(0);
        let mean_score_by_query: Vec<f64> = (0..longest)
            .map(|q| {
                let v: Vec<f64> = results
                    .iter()
                    .filter_map(|r| r.by_query.get(q).or(r.by_query.last()).copied())
                    .filter(|v| v.is_finite())
                    .collect();
                mean_std(&v).0
            })
            .collect();
        let (hv_mean, hv_std) = mean_std(&ratios);
        summaries.push(ManySummary {
            mean_score_by_query,
            space: setup.space.name().to_string(),
            strategy: strategy.name(),
            evaluator: setup.evaluator.describe(),
            runs,
            budget_seconds: settings.budget_seconds,
            test_acc_mean: some(test_acc_mean, &tests),
            test_acc_std: some(test_acc_std, &tests),
            valid_acc_mean: some(mean_std(&valids).0, &valids),
            queries_mean: mean_std(&queries).0,
            hypervolume_ratio_mean: some(hv_mean, &ratios),
            hypervolume_ratio_std: some(hv_std, &ratios),
            per_run: results,
        });
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_keep_the_stored_form() {
        for s in StrategyName::ALL {
            assert_eq!(s.name().parse::<StrategyName>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert!("evolution".parse::<StrategyName>().is_err());
        for e in [
            "benchmark",
            "train",
            "proxy:synflow",
            "proxy:macs",
            "proxy:params",
        ] {
            let k: EvaluatorKind = e.parse().unwrap();
            assert_eq!(k.to_string(), e);
            // Studies store the evaluator as the command line wrote it.
            assert_eq!(serde_json::to_value(&k).unwrap(), e);
            let back: EvaluatorKind = serde_json::from_value(e.into()).unwrap();
            assert_eq!(back, k);
        }
        let e = "proxy:zen"
            .parse::<EvaluatorKind>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown proxy 'zen'") && e.contains("synflow"),
            "{e}"
        );
        assert!("tables".parse::<EvaluatorKind>().is_err());
        assert!(serde_json::from_value::<EvaluatorKind>("proxy:zen".into()).is_err());
    }

    fn settings() -> CellSettings {
        CellSettings {
            space_spec: None,
            space: "nb201".into(),
            benchmark: None,
            evaluator: EvaluatorKind::Proxy("params".into()),
            strategy: StrategyName::Rea,
            population: 10,
            sample: 3,
            trials: 20,
            budget_seconds: None,
            batch: 1,
            seed: 0,
            objectives: vec![],
            dataset: None,
            train: TrainSettings::default(),
            proxy_batch: DEFAULT_PROXY_BATCH,
        }
    }

    #[test]
    fn impossible_settings_name_their_flag() {
        let check = |f: &dyn Fn(&mut CellSettings)| {
            let mut s = settings();
            f(&mut s);
            s.check().unwrap_err().to_string()
        };
        assert!(check(&|s| s.trials = 0).contains("--trials"));
        assert!(check(&|s| s.population = 0).contains("--population"));
        assert!(check(&|s| s.budget_seconds = Some(f64::NAN)).contains("--budget-seconds"));
        assert!(check(&|s| s.strategy = StrategyName::Pareto).contains("--objectives"));
        assert!(check(&|s| s.objectives = vec!["accuracy".into()]).contains("two objectives"));
        assert!(check(&|s| s.evaluator = EvaluatorKind::Train).contains("--dataset"));
        assert!(check(&|s| s.proxy_batch = 1).contains("--proxy-batch"));
        assert!(settings().check().is_ok());
    }

    #[test]
    fn a_search_in_memory_matches_its_repeat() {
        // The cost proxy needs no data: a 20-trial REA run, once as a study, once through
        // repeat(); both see the same seed, so the same best cell.
        let s = settings();
        let CellSearch::Nb201(setup) = CellSearch::new(&s).unwrap() else {
            panic!("nb201 expected");
        };
        let strategy = strategy_for(&s, &setup.space);
        let study = Study::new(
            &setup.space,
            strategy.as_ref(),
            setup.evaluator.as_ref(),
            s.study_config(s.seed),
        )
        .unwrap();
        let result = study.run(&|_| {}).unwrap();
        let summary = Summary::of(&result, &study.header(serde_json::Value::Null), &s, &setup);
        assert_eq!(summary.trials, 20);
        let runs = repeat(&setup, std::slice::from_ref(&s), 1, &|| {}).unwrap();
        assert_eq!(runs[0].per_run[0].cell, summary.best.as_ref().unwrap().cell);
        let best = summary.best_network(&setup.space).unwrap().unwrap();
        // The fitness of the params proxy is the best network's parameter count in millions.
        let params = best.analyze().unwrap().totals.params as f64 / 1e6;
        assert!((params - summary.best.unwrap().fitness).abs() < 1e-9);
    }
}
