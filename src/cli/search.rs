//! `archproof search`: architecture search jobs on the study engine.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use archproof::cells::evaluators::{Network, TrainEvaluator, ZeroCostEvaluator};
use archproof::cells::nb201::Nb201Cell;
use archproof::cells::table::{CostMeasure, CostProxy, Table};
use archproof::cells::{proxies, CellSpace, SpaceSpec};
use archproof::ir::io;
use archproof::search::pareto::{self, Objective};
use archproof::search::{
    Evaluator, LocalSearch, ParetoEvolution, Proxy, ProxyEvolution, RandomSearch,
    RegularizedEvolution, Space, Store, Strategy, Study, StudyConfig, StudyResult, Trial,
};
use archproof::train::{self, OptimizerKind, TrainConfig};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::common::{command_line, print_json, write_file, write_page};
use super::progress::Progress;
use archproof::report::{BandSeries, Figure, Plot, RunPage, Series, Table as ReportTable};

/// Run an architecture search.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  archproof search cell --space search-spaces/nb201.toml \\
      --benchmark nb201-cifar10.csv --out runs/rea")]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Debug, Subcommand)]
enum Kind {
    Cell(Box<CellArgs>),
    Deepmad(super::search_deepmad::DeepmadArgs),
    Evonorm(super::search_evonorm::EvonormArgs),
}

/// Search a cell space (NAS-Bench-201 or NASNet) with a tabular benchmark, a zero-cost proxy
/// or short training, for one objective or a Pareto front.
///
/// Every finished trial is committed to OUT/study.sqlite at once; a killed search continues
/// with `--resume`, losing and repeating nothing, and ends as the uninterrupted run would.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof search cell --space search-spaces/nb201.toml \\
      --benchmark nb201-cifar10.csv --strategy rea --budget-seconds 12000 \\
      --seed 1 --out runs/rea
  archproof search cell --space search-spaces/nb201.toml \\
      --benchmark nb201-cifar10.csv --strategy random,rea,local,proxy-rea \\
      --runs 500 --budget-seconds 12000 --out runs/compare
  archproof search cell --space search-spaces/nb201.toml \\
      --benchmark nb201-cifar10.csv --json
  archproof search cell --space search-spaces/nb201.toml \\
      --evaluator proxy:synflow --trials 500 --benchmark nb201-cifar10.csv
  archproof search cell --space search-spaces/nasnet.toml --evaluator train \\
      --dataset shapes --trials 40 --out runs/nasnet
  archproof search cell --space search-spaces/nb201.toml \\
      --benchmark nb201-cifar10.csv --objectives accuracy,latency_ms_pixel3 \\
      --budget-seconds 12000 --out runs/pareto
  archproof search cell --resume --out runs/rea")]
pub struct CellArgs {
    /// The space: a search-spaces/*.toml file or a space name (nb201, nasnet).
    #[arg(long)]
    space: Option<String>,
    /// A benchmark table (CSV with arch, valid_acc_12, test_acc_200, train_time_s_200); with a
    /// proxy evaluator it only adds what the table says of each cell to the report.
    #[arg(long)]
    benchmark: Option<PathBuf>,
    /// How candidates are judged: benchmark (needs --benchmark), proxy:NAME (synflow,
    /// naswot, jacob_cov, grad_norm, snip, params, macs) or train (needs --dataset).
    #[arg(long)]
    evaluator: Option<String>,
    /// Search strategy: random, rea (regularized evolution), local, proxy-rea, pareto; a
    /// comma-separated list with --runs compares them [default: proxy-rea, or pareto with
    /// --objectives].
    #[arg(long, value_delimiter = ',')]
    strategy: Vec<StrategyName>,
    /// Objectives of a multi-objective search: accuracy (the fitness, maximised) and metrics
    /// of the evaluator to minimise, e.g. accuracy,latency_ms_pixel3 or accuracy,flops_m.
    #[arg(long, value_delimiter = ',')]
    objectives: Vec<String>,
    /// REA population size.
    #[arg(long)]
    population: Option<usize>,
    /// REA tournament size.
    #[arg(long)]
    sample: Option<usize>,
    /// The most trials to run [default: 100, or 100000 with a budget].
    #[arg(long)]
    trials: Option<usize>,
    /// Stop once the evaluations' cost reaches this many seconds (simulated for a benchmark,
    /// wall-clock for training).
    #[arg(long)]
    budget_seconds: Option<f64>,
    /// Trials proposed together and evaluated in parallel (results depend on it, not on the
    /// number of threads) [default: 1].
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of every random choice [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// The dataset of --evaluator train, and the batch of --evaluator proxy:NAME (shapes,
    /// mnist-idx:DIR, cifar10-bin:DIR, csv:FILE,
    /// npy:DIR); the networks take its input shape and classes.
    #[arg(long)]
    dataset: Option<String>,
    /// --evaluator train: epochs per candidate [default: 1].
    #[arg(long)]
    epochs: Option<usize>,
    /// --evaluator train: training examples per candidate (0: all but the validation ones)
    /// [default: 3000].
    #[arg(long)]
    train_examples: Option<usize>,
    /// --evaluator train: the last examples of the training split held out to judge
    /// candidates [default: 1000].
    #[arg(long)]
    valid_examples: Option<usize>,
    /// --evaluator train: Adam's learning rate (cosine decay) [default: 0.003].
    #[arg(long)]
    lr: Option<f64>,
    /// --evaluator proxy:NAME: size of the random batch [default: 16].
    #[arg(long)]
    proxy_batch: Option<usize>,
    /// Directory of the run: study.sqlite, summary.json, best.json (and pareto.svg with
    /// --objectives; runs.json and progress.svg with --runs). Without it the search runs in
    /// memory and only prints.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Repeat the search this many times with seeds seed, seed+1, ... in parallel (in memory)
    /// and report the mean and std of the best-by-fitness cell's test accuracy (the benchmark
    /// paper's protocol repeats 500 runs).
    #[arg(long, conflicts_with_all = ["resume", "halt_after"])]
    runs: Option<usize>,
    /// Continue the study in OUT with its stored settings.
    #[arg(long)]
    resume: bool,
    /// Start over, replacing a study in OUT.
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Abort the process after this many new trials (to test resuming).
    #[arg(long, hide = true)]
    halt_after: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
enum StrategyName {
    /// Uniform random sampling.
    Random,
    /// Regularized (aging) evolution.
    Rea,
    /// Local search: unvisited neighbours of the best so far, random restarts.
    Local,
    /// Regularized evolution guided by the parameter count (a free proxy): proxy-ranked
    /// initial population and children, no cell queried twice.
    #[value(name = "proxy-rea")]
    #[serde(rename = "proxy-rea")]
    ProxyRea,
    /// Multi-objective: mutate a random member of the current Pareto front (SEMO).
    Pareto,
}

/// The resolved settings of a cell search, stored with the study for `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CellSettings {
    space: String,
    benchmark: Option<PathBuf>,
    evaluator: String,
    strategy: StrategyName,
    population: usize,
    sample: usize,
    trials: usize,
    budget_seconds: Option<f64>,
    batch: usize,
    seed: u64,
    #[serde(default)]
    objectives: Vec<String>,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    train: TrainSettings,
    #[serde(default = "default_proxy_batch")]
    proxy_batch: usize,
}

fn default_proxy_batch() -> usize {
    16
}

/// What `--evaluator train` trains each candidate with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrainSettings {
    epochs: usize,
    train_examples: usize,
    valid_examples: usize,
    lr: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            epochs: 1,
            train_examples: 3000,
            valid_examples: 1000,
            lr: 0.003,
        }
    }
}

impl CellSettings {
    /// The settings of each strategy the arguments name (one unless --runs compares several).
    fn from_args(a: &CellArgs) -> Result<Vec<Self>> {
        let Some(space) = a.space.clone() else {
            bail!("--space is required (e.g. --space search-spaces/nb201.toml)");
        };
        let evaluator = match (&a.evaluator, &a.benchmark, &a.dataset) {
            (Some(e), _, _) => e.clone(),
            (None, Some(_), _) => "benchmark".into(),
            (None, None, Some(_)) => "train".into(),
            (None, None, None) => bail!(
                "give a benchmark table (--benchmark FILE.csv), a dataset to train on (--dataset shapes) or a proxy (--evaluator proxy:synflow)"
            ),
        };
        let budget_seconds = a.budget_seconds;
        let d = TrainSettings::default();
        let base = CellSettings {
            space,
            benchmark: a.benchmark.clone(),
            evaluator,
            strategy: if a.objectives.is_empty() {
                StrategyName::ProxyRea
            } else {
                StrategyName::Pareto
            },
            population: a.population.unwrap_or(10),
            sample: a.sample.unwrap_or(3),
            trials: a.trials.unwrap_or(if budget_seconds.is_some() {
                100_000
            } else {
                100
            }),
            budget_seconds,
            batch: a.batch.unwrap_or(1),
            seed: a.seed.unwrap_or(0),
            objectives: a.objectives.clone(),
            dataset: a.dataset.clone(),
            train: TrainSettings {
                epochs: a.epochs.unwrap_or(d.epochs),
                train_examples: a.train_examples.unwrap_or(d.train_examples),
                valid_examples: a.valid_examples.unwrap_or(d.valid_examples),
                lr: a.lr.unwrap_or(d.lr),
            },
            proxy_batch: a.proxy_batch.unwrap_or(default_proxy_batch()),
        };
        if a.strategy.is_empty() {
            return Ok(vec![base]);
        }
        if a.strategy.len() > 1 && a.runs.is_none() {
            bail!("several strategies are compared over --runs N; give --runs or one strategy");
        }
        Ok(a.strategy
            .iter()
            .map(|&strategy| CellSettings {
                strategy,
                ..base.clone()
            })
            .collect())
    }

    /// Refuses settings no search can run with.
    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.trials == 0 {
            bail!("--batch and --trials must be at least 1");
        }
        let evolves = matches!(
            self.strategy,
            StrategyName::Rea | StrategyName::ProxyRea | StrategyName::Pareto
        );
        if evolves && (self.population == 0 || self.sample == 0) {
            bail!("--population and --sample must be at least 1");
        }
        if self
            .budget_seconds
            .is_some_and(|b| !(b > 0.0 && b.is_finite()))
        {
            bail!("--budget-seconds must be a positive number");
        }
        if self.objectives.is_empty() {
            if self.strategy == StrategyName::Pareto {
                bail!("the pareto strategy needs --objectives (e.g. accuracy,latency_ms_pixel3)");
            }
        } else {
            if self.objectives.len() < 2 {
                bail!("--objectives needs at least two objectives (e.g. accuracy,flops_m)");
            }
            if !matches!(self.strategy, StrategyName::Random | StrategyName::Pareto) {
                bail!("with --objectives the strategy is pareto or random");
            }
        }
        let t = &self.train;
        if self.evaluator == "train" && (t.epochs == 0 || !(t.lr > 0.0 && t.lr.is_finite())) {
            bail!("--epochs must be at least 1 and --lr a positive number");
        }
        if self.proxy_batch < 2 {
            bail!("--proxy-batch must be at least 2");
        }
        Ok(())
    }

    /// The stored settings, with any flag given on the command line checked against them.
    fn resumed(stored: CellSettings, a: &CellArgs) -> Result<Self> {
        fn same<T: PartialEq + std::fmt::Debug>(
            flag: &str,
            given: Option<T>,
            stored: T,
        ) -> Result<()> {
            match given {
                Some(g) if g != stored => bail!(
                    "the study was started with {flag} {stored:?}; drop {flag} or give the same value"
                ),
                _ => Ok(()),
            }
        }
        same("--space", a.space.clone(), stored.space.clone())?;
        same(
            "--benchmark",
            a.benchmark.clone().map(Some),
            stored.benchmark.clone(),
        )?;
        same("--evaluator", a.evaluator.clone(), stored.evaluator.clone())?;
        same(
            "--strategy",
            (!a.strategy.is_empty()).then(|| a.strategy.clone()),
            vec![stored.strategy],
        )?;
        same(
            "--objectives",
            (!a.objectives.is_empty()).then(|| a.objectives.clone()),
            stored.objectives.clone(),
        )?;
        same("--population", a.population, stored.population)?;
        same("--sample", a.sample, stored.sample)?;
        same(
            "--budget-seconds",
            a.budget_seconds.map(Some),
            stored.budget_seconds,
        )?;
        same("--batch", a.batch, stored.batch)?;
        same("--seed", a.seed, stored.seed)?;
        same(
            "--dataset",
            a.dataset.clone().map(Some),
            stored.dataset.clone(),
        )?;
        same("--epochs", a.epochs, stored.train.epochs)?;
        same(
            "--train-examples",
            a.train_examples,
            stored.train.train_examples,
        )?;
        same(
            "--valid-examples",
            a.valid_examples,
            stored.train.valid_examples,
        )?;
        same("--lr", a.lr, stored.train.lr)?;
        same("--proxy-batch", a.proxy_batch, stored.proxy_batch)?;
        Ok(CellSettings {
            trials: a.trials.unwrap_or(stored.trials),
            ..stored
        })
    }

    fn objectives(&self) -> Vec<Objective> {
        self.objectives
            .iter()
            .map(|o| Objective::parse(o))
            .collect()
    }
}

/// What `search cell` writes to summary.json and prints with --json.
#[derive(Serialize)]
struct Summary {
    space: String,
    strategy: String,
    evaluator: String,
    seed: u64,
    trials: usize,
    failed: usize,
    total_cost: f64,
    interrupted: bool,
    best: Option<BestTrial>,
    /// Best fitness seen after each trial.
    best_so_far: Vec<f64>,
    /// With --objectives: the Pareto front of the evaluated candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pareto: Option<ParetoSummary>,
}

#[derive(Serialize)]
struct BestTrial {
    trial: u64,
    cell: String,
    fitness: f64,
    metrics: BTreeMap<String, f64>,
}

/// A Pareto front of one search.
#[derive(Serialize)]
struct ParetoSummary {
    objectives: Vec<String>,
    /// The non-dominated trials, by increasing second objective.
    front: Vec<BestTrial>,
    /// Hypervolume of the front (two objectives; accuracy times the other's units) above
    /// the reference point.
    hypervolume: Option<f64>,
    /// The reference point (the worst value of each objective over the table, or over the
    /// evaluated candidates without a table), as the objectives are written.
    reference_point: Option<[f64; 2]>,
    /// Hypervolume of the table's own front: the most any search can reach.
    table_front_hypervolume: Option<f64>,
    /// hypervolume / table_front_hypervolume.
    hypervolume_ratio: Option<f64>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.kind {
        Kind::Cell(a) => run_cell(*a),
        Kind::Deepmad(a) => super::search_deepmad::run(a),
        Kind::Evonorm(a) => super::search_evonorm::run(a),
    }
}

/// Everything a search needs besides its strategy, built once from the settings.
struct Setup<S: CellSpace> {
    space: S,
    evaluator: Box<dyn Evaluator<S::Candidate>>,
    /// With two objectives and a benchmark evaluator: the table's own front, the best any
    /// search can reach.
    table_front: Option<TableFront>,
}

/// Every row of a table as an objective vector (oriented, higher is better), with the
/// hypervolume reference point (the worst of each objective) and the table's hypervolume;
/// computed once per command, shared by every run.
struct TableFront {
    points: Vec<Vec<f64>>,
    reference: [f64; 2],
    hypervolume: f64,
}

impl TableFront {
    fn new(points: Vec<Vec<f64>>) -> TableFront {
        let reference = reference_point(&points);
        let hypervolume = pareto::hypervolume_2d(&points, reference);
        TableFront {
            points,
            reference,
            hypervolume,
        }
    }
}

fn run_cell(a: CellArgs) -> Result<ExitCode> {
    let stored_store = if a.resume {
        if a.out.is_none() {
            bail!("--resume needs --out DIR (where the study is stored)");
        }
        let db = a.out.as_ref().expect("checked").join("study.sqlite");
        let store = Store::open(&db)?;
        let stored: CellSettings = serde_json::from_value(store.header()?.settings)
            .with_context(|| format!("{}: not a cell search", db.display()))?;
        Some((CellSettings::resumed(stored, &a)?, store))
    } else {
        None
    };
    let all = match &stored_store {
        Some((s, _)) => vec![s.clone()],
        None => CellSettings::from_args(&a)?,
    };
    for s in &all {
        s.check()?;
    }
    let first = &all[0];
    let mut spec = SpaceSpec::load(&first.space).map_err(anyhow::Error::msg)?;
    // Training and the proxies take the networks' input and classes from the dataset.
    let data = match (&first.dataset, first.evaluator.as_str()) {
        (Some(d), e) if e == "train" || e.starts_with("proxy:") => {
            let ds = train::data::load(d)?;
            spec.input = ds.shape.clone();
            spec.classes = ds.classes;
            Some(ds)
        }
        (None, "train") => bail!("--evaluator train needs --dataset (e.g. --dataset shapes)"),
        _ => None,
    };
    let store = stored_store.map(|s| s.1);
    match spec.kind.as_str() {
        "nb201" => {
            let space = spec.nb201();
            let table = match &first.benchmark {
                Some(p) => Some(Table::load(p).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let objectives = first.objectives();
            let table_front = match (&table, first.evaluator.as_str()) {
                (Some(t), "benchmark") if !objectives.is_empty() => {
                    let points = table_objectives(t, &objectives)?;
                    (objectives.len() == 2).then(|| TableFront::new(points))
                }
                _ => None,
            };
            let evaluator: Box<dyn Evaluator<Nb201Cell>> = match first.evaluator.as_str() {
                "benchmark" => match table {
                    Some(t) => Box::new(t),
                    None => bail!("--evaluator benchmark needs --benchmark FILE.csv"),
                },
                // The IR cost model in millions, as before the candle proxies.
                "proxy:params" | "proxy:macs" if table.is_none() => Box::new(CostProxy {
                    measure: if first.evaluator == "proxy:params" {
                        CostMeasure::Params
                    } else {
                        CostMeasure::Macs
                    },
                    input: spec.input_shape(),
                    classes: spec.classes,
                }),
                _ => network_evaluator(
                    &space,
                    spec.classes,
                    first,
                    data.as_ref(),
                    table.map(|t| Box::new(t) as Box<dyn Evaluator<Nb201Cell>>),
                )?,
            };
            let setup = Setup {
                space,
                evaluator,
                table_front,
            };
            dispatch(&a, &all, store, &setup)
        }
        "nasnet" => {
            if first.evaluator == "benchmark" || first.benchmark.is_some() {
                bail!(
                    "there is no benchmark table of the NASNet space; use --evaluator train --dataset shapes or --evaluator proxy:NAME"
                );
            }
            let space = spec.nasnet();
            let evaluator = network_evaluator(&space, spec.classes, first, data.as_ref(), None)?;
            let setup = Setup {
                space,
                evaluator,
                table_front: None,
            };
            dispatch(&a, &all, store, &setup)
        }
        other => bail!("unknown cell space '{other}'"),
    }
}

fn dispatch<S>(
    a: &CellArgs,
    all: &[CellSettings],
    store: Option<Store>,
    setup: &Setup<S>,
) -> Result<ExitCode>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    match (&a.out, a.runs) {
        (Some(out), None) => run_single(a, &all[0], store, setup, out),
        (_, runs) => run_many(a, all, runs.unwrap_or(1), setup),
    }
}

/// The objective vectors of every row of a table, oriented higher-is-better (the fitness is
/// the table's `valid_acc_12`).
fn table_objectives(t: &Table, objectives: &[Objective]) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::with_capacity(t.len());
    for (_, row) in t.iter() {
        let mut v = Vec::with_capacity(objectives.len());
        for o in objectives {
            let x = match o {
                Objective::Fitness => row.values.get("valid_acc_12").copied(),
                Objective::Minimize(m) => row.values.get(m).map(|x| -x),
            };
            match x {
                Some(x) => v.push(x),
                None => bail!(
                    "objective '{}' is not a column of the table (columns: {})",
                    o.name(),
                    row.values.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }
        }
        out.push(v);
    }
    Ok(out)
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
fn network_evaluator<S>(
    space: &S,
    classes: usize,
    settings: &CellSettings,
    data: Option<&train::Dataset>,
    reference: Option<Box<dyn Evaluator<S::Candidate>>>,
) -> Result<Box<dyn Evaluator<S::Candidate>>>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    let e = settings.evaluator.as_str();
    if let Some(p) = e.strip_prefix("proxy:") {
        let proxy = if p == "macs" { "flops" } else { p };
        if !proxies::NAMES.contains(&proxy) {
            bail!(
                "unknown proxy '{p}' (known: {}, macs)",
                proxies::NAMES.join(", ")
            );
        }
        return Ok(Box::new(ZeroCostEvaluator {
            proxy: proxy.to_string(),
            network: network_of(space),
            classes,
            inputs: match data {
                Some(d) => proxies::ProxyInputs::from_dataset(d, settings.proxy_batch),
                None => proxies::ProxyInputs::Random(settings.proxy_batch),
            },
            seed: settings.seed,
            reference,
        }));
    }
    if e == "train" {
        let data = data.context("--evaluator train needs --dataset")?;
        let t = &settings.train;
        let cfg = TrainConfig {
            epochs: t.epochs,
            lr: t.lr,
            optimizer: OptimizerKind::Adam,
            ..TrainConfig::default()
        };
        let ev = TrainEvaluator::new(
            network_of(space),
            data,
            t.train_examples,
            t.valid_examples,
            cfg,
        )
        .map_err(anyhow::Error::msg)?;
        return Ok(Box::new(ev));
    }
    bail!(
        "unknown evaluator '{e}' (known: benchmark, proxy:NAME with NAME one of {}, train)",
        proxies::NAMES.join(", ")
    )
}

/// Mutations ranked by the proxy per child, and random cells per initial member, of
/// `proxy-rea`.
const PROXY_CHILDREN: usize = 4;
const PROXY_POOL: usize = 20;

/// The strategy a cell search's settings name.
fn build_strategy<S>(settings: &CellSettings, space: &S) -> Box<dyn Strategy<S>>
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
            let cache = std::sync::Mutex::new(HashMap::<String, f64>::new());
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

fn run_single<S>(
    a: &CellArgs,
    settings: &CellSettings,
    store: Option<Store>,
    setup: &Setup<S>,
    out: &Path,
) -> Result<ExitCode>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    let db = out.join("study.sqlite");
    let strategy_box = build_strategy(settings, &setup.space);
    let strategy: &dyn Strategy<S> = strategy_box.as_ref();
    let config = StudyConfig {
        seed: settings.seed,
        max_trials: settings.trials,
        budget: settings.budget_seconds,
        batch: settings.batch,
    };
    let study = Study::new(&setup.space, strategy, setup.evaluator.as_ref(), config)?;
    let store = match store {
        Some(s) => s,
        None => Store::create(&db, &study.header(serde_json::to_value(settings)?), a.force)?,
    };
    let already = store.trials()?.len();
    let study = study.with_store(store)?;

    let bar = Progress::bar(
        settings.trials as u64,
        a.quiet || a.json,
        "{bar:40} {pos}/{len} trials  {msg}  [{elapsed}]",
        "trials",
    );
    bar.set_position(already as u64);
    let new_trials = AtomicUsize::new(0);
    let result = study.run(&|t| {
        bar.inc(1);
        if let Some(f) = t.fitness() {
            bar.set_message(format!("last fitness {f:.3}"));
        }
        let n = new_trials.fetch_add(1, Ordering::SeqCst) + 1;
        if a.halt_after == Some(n) {
            // Simulates a crash: no destructor, no flush beyond what is committed.
            std::process::abort();
        }
    })?;
    bar.finish_and_clear();

    let mut summary = summarize(
        &result,
        &study.header(serde_json::Value::Null),
        settings,
        &setup.space,
    );
    let objectives = settings.objectives();
    if !objectives.is_empty() {
        summary.pareto = Some(pareto_summary(
            &result.trials,
            &objectives,
            &setup.space,
            setup.table_front.as_ref(),
        ));
        if objectives.len() == 2 {
            pareto_figure(
                &out.join("pareto.svg"),
                &result.trials,
                &objectives,
                setup.table_front.as_ref(),
                &summary,
            )?;
        }
    }
    write_file(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
        true,
    )?;
    if let Some(best) = &summary.best {
        let cell = setup.space.decode(&best.cell).map_err(anyhow::Error::msg)?;
        let g = setup.space.network(&cell)?;
        write_file(&out.join("best.json"), io::to_json(&g)?.as_bytes(), true)?;
    }
    best_so_far_figure(&out.join("progress.svg"), &summary)?;
    write_page(out, &single_page(&summary, objectives.len() == 2))?;
    if a.json {
        print_json(&summary)?;
    } else {
        print_human(&summary, out);
    }
    Ok(ExitCode::SUCCESS)
}

fn trial_report<C>(t: &Trial<C>, space: &impl Space<Candidate = C>) -> BestTrial {
    BestTrial {
        trial: t.id,
        cell: space.encode(&t.candidate),
        fitness: t.fitness().unwrap_or(f64::NAN),
        metrics: match &t.outcome {
            archproof::search::Outcome::Done(e) => e.metrics.clone(),
            archproof::search::Outcome::Failed(_) => Default::default(),
        },
    }
}

fn summarize<S: Space>(
    r: &StudyResult<S::Candidate>,
    header: &archproof::search::StudyHeader,
    settings: &CellSettings,
    space: &S,
) -> Summary {
    let mut best_so_far = Vec::with_capacity(r.trials.len());
    let mut best = f64::NEG_INFINITY;
    for t in &r.trials {
        if let Some(f) = t.fitness() {
            best = best.max(f);
        }
        best_so_far.push(best);
    }
    Summary {
        space: header.space.clone(),
        strategy: header.strategy.clone(),
        evaluator: header.evaluator.clone(),
        seed: settings.seed,
        trials: r.trials.len(),
        failed: r.trials.iter().filter(|t| t.fitness().is_none()).count(),
        total_cost: r.total_cost,
        interrupted: r.interrupted,
        best: r.best.map(|i| trial_report(&r.trials[i], space)),
        best_so_far,
        pareto: None,
    }
}

/// The reference point of a hypervolume: the worst of each objective over the table, or
/// over the evaluated points without one (oriented, higher is better).
fn reference_point(points: &[Vec<f64>]) -> [f64; 2] {
    let worst = |k: usize| points.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min);
    [worst(0), worst(1)]
}

/// Hypervolume of the front of `trials` and its ratio to the table's, for two objectives.
fn hypervolumes<C>(
    trials: &[Trial<C>],
    objectives: &[Objective],
    table: Option<&TableFront>,
) -> (Option<f64>, Option<[f64; 2]>, Option<f64>, Option<f64>) {
    if objectives.len() != 2 {
        return (None, None, None, None);
    }
    let pts: Vec<Vec<f64>> = trials
        .iter()
        .filter_map(|t| pareto::oriented(objectives, t))
        .collect();
    let reference = table.map_or_else(|| reference_point(&pts), |t| t.reference);
    let hv = pareto::hypervolume_2d(&pts, reference);
    let table_hv = table.map(|t| t.hypervolume);
    let ratio = table_hv.map(|t| hv / t);
    (Some(hv), Some(reference), table_hv, ratio)
}

fn pareto_summary<S: Space>(
    trials: &[Trial<S::Candidate>],
    objectives: &[Objective],
    space: &S,
    table: Option<&TableFront>,
) -> ParetoSummary {
    let scored: Vec<(usize, Vec<f64>)> = trials
        .iter()
        .enumerate()
        .filter_map(|(i, t)| pareto::oriented(objectives, t).map(|v| (i, v)))
        .collect();
    let points: Vec<Vec<f64>> = scored.iter().map(|s| s.1.clone()).collect();
    let mut front: Vec<usize> = pareto::front(&points);
    front.sort_by(|&x, &y| points[y][1].total_cmp(&points[x][1]));
    let (hypervolume, reference, table_hv, ratio) = hypervolumes(trials, objectives, table);
    let unorient = |k: usize, v: f64| match objectives[k] {
        Objective::Fitness => v,
        Objective::Minimize(_) => -v,
    };
    ParetoSummary {
        objectives: objectives.iter().map(|o| o.name().to_string()).collect(),
        front: front
            .iter()
            .map(|&f| trial_report(&trials[scored[f].0], space))
            .collect(),
        hypervolume,
        reference_point: reference.map(|r| [unorient(0, r[0]), unorient(1, r[1])]),
        table_front_hypervolume: table_hv,
        hypervolume_ratio: ratio,
    }
}

/// pareto.svg: every evaluated candidate, the search's front and, with a table, the
/// table's own front (accuracy up, the cost objective along x).
fn pareto_figure<C>(
    path: &Path,
    trials: &[Trial<C>],
    objectives: &[Objective],
    table: Option<&TableFront>,
    summary: &Summary,
) -> Result<()> {
    // Plot coordinates: (cost objective as written, accuracy).
    let plot = |v: &[f64]| -> (f64, f64) {
        let x = match objectives[1] {
            Objective::Fitness => v[1],
            Objective::Minimize(_) => -v[1],
        };
        let y = match objectives[0] {
            Objective::Fitness => v[0],
            Objective::Minimize(_) => -v[0],
        };
        (x, y)
    };
    let pts: Vec<Vec<f64>> = trials
        .iter()
        .filter_map(|t| pareto::oriented(objectives, t))
        .collect();
    let mut fronts = vec![Series {
        name: "search's front".into(),
        points: pareto::front(&pts).iter().map(|&i| plot(&pts[i])).collect(),
    }];
    if let Some(t) = table.map(|t| &t.points) {
        fronts.push(Series {
            name: "table's front".into(),
            points: pareto::front(t).iter().map(|&i| plot(&t[i])).collect(),
        });
    }
    let ratio = summary
        .pareto
        .as_ref()
        .and_then(|p| p.hypervolume_ratio)
        .map(|r| format!(", hypervolume {:.1}% of the table's", 100.0 * r))
        .unwrap_or_default();
    Figure::new(
        format!(
            "{}: {} trials{ratio}",
            summary.strategy.split('(').next().unwrap_or(""),
            summary.trials
        ),
        Plot::Pareto {
            evaluated: pts.iter().map(|v| plot(v)).collect(),
            fronts,
        },
    )
    .axes(
        metric_axis(objectives[1].name()),
        format!(
            "fitness: {}",
            summary.evaluator.split('(').next().unwrap_or("")
        ),
    )
    .settings(format!(
        "{} with {}, seed {}",
        summary.space, summary.evaluator, summary.seed
    ))
    .save(path)
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// An axis label for a metric name, with its unit.
fn metric_axis(name: &str) -> String {
    if name.ends_with("_ms") || name.contains("_ms_") {
        format!("{name} (ms)")
    } else if name.ends_with("_m") {
        format!("{name} (millions)")
    } else if name.contains("acc") {
        format!("{name} (%)")
    } else {
        name.to_string()
    }
}

/// progress.svg of a single search: the best fitness after each trial.
fn best_so_far_figure(path: &Path, summary: &Summary) -> Result<()> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (i, &f) in summary.best_so_far.iter().enumerate() {
        if f.is_finite() && points.last().is_none_or(|p| p.1 != f) {
            points.push(((i + 1) as f64, f));
        }
    }
    Figure::new(
        format!("Best fitness so far: {}", summary.space),
        Plot::Steps {
            series: vec![Series {
                name: summary
                    .strategy
                    .split('(')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
                points,
            }],
            x_end: summary.best_so_far.len() as f64,
        },
    )
    .axes(
        "trials evaluated",
        format!(
            "best fitness: {}",
            summary.evaluator.split('(').next().unwrap_or("")
        ),
    )
    .settings(format!("seed {}", summary.seed))
    .save(path)
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The report page of a single search.
fn single_page(s: &Summary, pareto_figure: bool) -> RunPage {
    let mut page = RunPage::new(
        format!(
            "Cell search: {} on {}",
            s.strategy.split('(').next().unwrap_or("").trim(),
            s.space
        ),
        command_line(),
    );
    page.setting("space", &s.space);
    page.setting("strategy", &s.strategy);
    page.setting("evaluator", &s.evaluator);
    page.setting("seed", s.seed);
    page.setting("trials", s.trials);
    if let Some(b) = &s.best {
        page.summary.push(format!(
            "Best of {} trials: {} (trial {}, fitness {:.4}{}).",
            s.trials,
            b.cell,
            b.trial,
            b.fitness,
            test_acc(&b.metrics)
                .map(|t| format!(", test accuracy {t:.2}"))
                .unwrap_or_default()
        ));
        let mut t = ReportTable::new("Best cell", &["trial", "cell", "fitness"]);
        let mut row = vec![
            b.trial.to_string(),
            b.cell.clone(),
            format!("{:.4}", b.fitness),
        ];
        for (k, v) in &b.metrics {
            t.header.push(k.clone());
            row.push(format!("{v:.4}"));
        }
        t.row(row);
        page.tables.push(t);
    }
    if let Some(p) = &s.pareto {
        let mut t = ReportTable::new(
            format!("Pareto front ({})", p.objectives.join(", ")),
            &["trial", "cell", "fitness"],
        );
        for b in &p.front {
            t.row(vec![
                b.trial.to_string(),
                b.cell.clone(),
                format!("{:.4}", b.fitness),
            ]);
        }
        page.tables.push(t);
        if let Some(r) = p.hypervolume_ratio {
            page.summary.push(format!(
                "The front covers {:.2}% of the hypervolume of the table's own front.",
                100.0 * r
            ));
        }
    }
    page.figure("progress.svg", "Best fitness after each trial");
    if pareto_figure {
        page.figure("pareto.svg", "Evaluated candidates and the Pareto fronts");
    }
    page.file("best.json", "IR JSON of the best cell's network");
    page.file("summary.json", "the run's summary");
    page.file(
        "study.sqlite",
        "every trial (SQLite; resumable with --resume)",
    );
    page
}

fn print_human(s: &Summary, out: &Path) {
    println!(
        "{} on {} with {} (seed {})",
        s.strategy, s.space, s.evaluator, s.seed
    );
    println!(
        "  trials      {}{}",
        s.trials,
        if s.failed > 0 {
            format!(" ({} failed)", s.failed)
        } else {
            String::new()
        }
    );
    if s.total_cost > 0.0 {
        println!("  cost        {:.0} s", s.total_cost);
    }
    if let Some(b) = &s.best {
        println!("  best        trial {}: {}", b.trial, b.cell);
        println!("  fitness     {:.4}", b.fitness);
        if let Some(t) = test_acc(&b.metrics) {
            println!("  test acc    {t:.4}");
        }
    }
    let mut files = "study.sqlite,summary.json,best.json".to_string();
    if let Some(p) = &s.pareto {
        println!(
            "  front       {} cells over {}",
            p.front.len(),
            p.objectives.join(", ")
        );
        if let Some(r) = p.hypervolume_ratio {
            println!("  hypervolume {:.1}% of the table's front", 100.0 * r);
        }
        if p.objectives.len() == 2 {
            files.push_str(",pareto.svg");
        }
    }
    println!("  written     {}/{{{files}}}", out.display());
}

/// The test accuracy an evaluator reports: the table's `test_acc_200`, or `test_acc` of
/// training.
fn test_acc(m: &BTreeMap<String, f64>) -> Option<f64> {
    m.get("test_acc_200").or(m.get("test_acc")).copied()
}

/// The validation accuracy an evaluator reports (`valid_acc_200` or `valid_acc`).
fn valid_acc(m: &BTreeMap<String, f64>) -> Option<f64> {
    m.get("valid_acc_200").or(m.get("valid_acc")).copied()
}

/// One of many seeded runs: the best-by-fitness cell and what the evaluator says of it.
#[derive(Serialize)]
struct RunResult {
    seed: u64,
    cell: String,
    fitness: f64,
    test_acc: Option<f64>,
    valid_acc: Option<f64>,
    queries: usize,
    simulated_seconds: f64,
    /// With two objectives: the final hypervolume (and its ratio to the table's front).
    #[serde(skip_serializing_if = "Option::is_none")]
    hypervolume: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hypervolume_ratio: Option<f64>,
    /// (cost so far, the tracked score) at each change: the test accuracy of the best-by-
    /// fitness cell, or the hypervolume (ratio) of a multi-objective run.
    #[serde(skip)]
    curve: Vec<(f64, f64)>,
    /// The tracked score after each query.
    #[serde(skip)]
    by_query: Vec<f64>,
}

#[derive(Serialize)]
struct ManySummary {
    space: String,
    strategy: String,
    evaluator: String,
    runs: usize,
    budget_seconds: Option<f64>,
    /// Absent when the evaluator reports no test accuracy (a proxy without a table).
    test_acc_mean: Option<f64>,
    test_acc_std: Option<f64>,
    valid_acc_mean: Option<f64>,
    queries_mean: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hypervolume_ratio_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hypervolume_ratio_std: Option<f64>,
    /// Mean over runs of the best-by-fitness cell's test accuracy (or, with objectives, the
    /// hypervolume ratio) after q = 1, 2, ... queries (a run that has ended keeps its final
    /// value).
    #[serde(rename = "mean_test_acc_by_query")]
    mean_score_by_query: Vec<f64>,
    per_run: Vec<RunResult>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// One seeded run of `run_many`.
fn one_run<S>(
    setup: &Setup<S>,
    settings: &CellSettings,
    strategy: &dyn Strategy<S>,
    seed: u64,
) -> Result<RunResult>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    let config = StudyConfig {
        seed,
        max_trials: settings.trials,
        budget: settings.budget_seconds,
        batch: settings.batch,
    };
    let study = Study::new(&setup.space, strategy, setup.evaluator.as_ref(), config)?;
    let res = study.run(&|_| {})?;
    let objectives = settings.objectives();
    let multi = objectives.len() == 2;
    let reference = setup
        .table_front
        .as_ref()
        .map_or([f64::NEG_INFINITY; 2], |t| t.reference);
    let table_hv = setup.table_front.as_ref().map(|t| t.hypervolume);
    let mut curve = Vec::new();
    let mut by_query = Vec::new();
    let (mut cost, mut best, mut now) = (0.0, f64::NEG_INFINITY, f64::NAN);
    let mut pts: Vec<Vec<f64>> = Vec::new();
    for t in &res.trials {
        if let archproof::search::Outcome::Done(e) = &t.outcome {
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
                if let Some(acc) = test_acc(&e.metrics) {
                    curve.push((cost, acc));
                    now = acc;
                }
            }
        }
        by_query.push(now);
    }
    let (hypervolume, _, _, hypervolume_ratio) =
        hypervolumes(&res.trials, &objectives, setup.table_front.as_ref());
    let b = res
        .best
        .map(|i| &res.trials[i])
        .ok_or_else(|| anyhow::anyhow!("run with seed {seed}: no trial succeeded"))?;
    let m = trial_report(b, &setup.space).metrics;
    Ok(RunResult {
        seed,
        cell: setup.space.encode(&b.candidate),
        fitness: b.fitness().unwrap_or(f64::NAN),
        test_acc: test_acc(&m),
        valid_acc: valid_acc(&m),
        queries: res.trials.len(),
        simulated_seconds: res.total_cost,
        hypervolume,
        hypervolume_ratio,
        curve,
        by_query,
    })
}

/// `--runs N`: N seeded searches in parallel, in memory, summarised as the benchmark paper
/// reports them; several strategies are run on the same seeds and drawn in one figure.
fn run_many<S>(
    a: &CellArgs,
    all: &[CellSettings],
    runs: usize,
    setup: &Setup<S>,
) -> Result<ExitCode>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    use rayon::prelude::*;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(out) = &a.out {
        super::common::refuse_existing(
            &[out.join("runs.json"), out.join("progress.svg")],
            a.force,
        )?;
    }
    let bar = Progress::bar(
        (runs * all.len()) as u64,
        a.quiet || a.json,
        "{bar:40} {pos}/{len} runs  [{elapsed}<{eta}]",
        "runs",
    );
    let mut summaries = Vec::with_capacity(all.len());
    for settings in all {
        let strategy_box = build_strategy(settings, &setup.space);
        let strategy: &dyn Strategy<S> = strategy_box.as_ref();
        let results: Vec<RunResult> = (0..runs as u64)
            .into_par_iter()
            .map(|r| {
                let res = one_run(setup, settings, strategy, settings.seed + r);
                bar.inc(1);
                res
            })
            .collect::<Result<_>>()?;
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
            hypervolume_ratio_mean: (!ratios.is_empty()).then_some(hv_mean),
            hypervolume_ratio_std: (!ratios.is_empty()).then_some(hv_std),
            per_run: results,
        });
    }
    bar.finish_and_clear();
    let multi = setup.table_front.is_some();
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
        let json = if summaries.len() == 1 {
            serde_json::to_string_pretty(&summaries[0])?
        } else {
            serde_json::to_string_pretty(&serde_json::json!({ "strategies": &summaries }))?
        };
        write_file(&out.join("runs.json"), json.as_bytes(), true)?;
        progress_figure(
            &out.join("progress.svg"),
            &summaries,
            runs,
            all[0].seed,
            multi,
        )?;
        write_page(out, &many_page(&summaries, runs, all[0].seed, multi))?;
    }
    if a.json {
        if summaries.len() == 1 {
            print_json(&summaries[0])?;
        } else {
            print_json(&serde_json::json!({ "strategies": &summaries }))?;
        }
    } else {
        for s in &summaries {
            let hv = s
                .hypervolume_ratio_mean
                .map(|m| {
                    format!(
                        ", hypervolume {:.2}% +- {:.2} of the table's front",
                        100.0 * m,
                        100.0 * s.hypervolume_ratio_std.unwrap_or(0.0)
                    )
                })
                .unwrap_or_default();
            let acc = match (s.test_acc_mean, s.test_acc_std) {
                (Some(m), Some(sd)) => format!("test accuracy {m:.2} +- {sd:.2}"),
                _ => "no test accuracy (the evaluator reports none)".to_string(),
            };
            let valid = s
                .valid_acc_mean
                .map(|v| format!(", validation {v:.2}"))
                .unwrap_or_default();
            let fitness: Vec<f64> = s.per_run.iter().map(|r| r.fitness).collect();
            let f = mean_std(&fitness).0;
            let f = if f.abs() >= 1e6 {
                format!("{f:.4e}")
            } else {
                format!("{f:.4}")
            };
            println!(
                "{} over {} run{}: {acc}{valid}, best fitness {f} on average, {:.1} queries on average{hv}",
                s.strategy,
                runs,
                if runs == 1 { "" } else { "s" },
                s.queries_mean
            );
            // One run: its best cell, which is what a user without --out came for.
            if let [r] = s.per_run.as_slice() {
                println!("  best cell   {}", r.cell);
                println!("  fitness     {:.4}", r.fitness);
                if let Some(t) = r.test_acc {
                    println!("  test acc    {t:.4}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The report page of `--runs N`: one row per strategy.
fn many_page(summaries: &[ManySummary], runs: usize, seed: u64, multi: bool) -> RunPage {
    let space = summaries
        .first()
        .map(|s| s.space.clone())
        .unwrap_or_default();
    let mut page = RunPage::new(
        format!("Cell search on {space}: {runs} runs per strategy"),
        command_line(),
    );
    page.setting("space", &space);
    page.setting("runs", runs);
    page.setting("seeds", format!("{seed}..{}", seed + runs as u64 - 1));
    if let Some(s) = summaries.first() {
        page.setting("evaluator", &s.evaluator);
        if let Some(b) = s.budget_seconds {
            page.setting("budget (simulated s)", b);
        }
    }
    let mut t = ReportTable::new(
        "Best-by-fitness cell of each run",
        &[
            "strategy",
            "test accuracy (mean +- std)",
            "validation accuracy",
            "queries (mean)",
        ],
    );
    if multi {
        t.header.push("hypervolume, % of the table's front".into());
    }
    for s in summaries {
        let mut row = vec![
            s.strategy.clone(),
            match (s.test_acc_mean, s.test_acc_std) {
                (Some(m), Some(sd)) => format!("{m:.2} +- {sd:.2}"),
                _ => "-".into(),
            },
            s.valid_acc_mean
                .map(|v| format!("{v:.2}"))
                .unwrap_or("-".into()),
            format!("{:.1}", s.queries_mean),
        ];
        if multi {
            row.push(match (s.hypervolume_ratio_mean, s.hypervolume_ratio_std) {
                (Some(m), Some(sd)) => format!("{:.2} +- {:.2}", 100.0 * m, 100.0 * sd),
                _ => "-".into(),
            });
        }
        t.row(row);
    }
    page.tables.push(t);
    page.figure(
        "progress.svg",
        "Mean and standard deviation over runs against cost",
    );
    page.file("runs.json", "every run's best cell and curve");
    page
}

/// progress.svg: per strategy, the mean and std over runs of the tracked score (test accuracy
/// of the best-by-fitness cell, or the hypervolume ratio) against cost.
fn progress_figure(
    path: &Path,
    summaries: &[ManySummary],
    runs: usize,
    seed: u64,
    multi: bool,
) -> Result<()> {
    let end = summaries
        .iter()
        .flat_map(|s| s.per_run.iter().map(|r| r.simulated_seconds))
        .fold(0.0, f64::max);
    let grid: Vec<f64> = (1..=100).map(|i| end * i as f64 / 100.0).collect();
    let scale = if multi { 100.0 } else { 1.0 };
    let series: Vec<BandSeries> = summaries
        .iter()
        .map(|s| {
            let at = |t: f64| {
                let v: Vec<f64> = s
                    .per_run
                    .iter()
                    .filter_map(|r| {
                        r.curve
                            .iter()
                            .take_while(|p| p.0 <= t)
                            .last()
                            .map(|p| scale * p.1)
                    })
                    .collect();
                (v.len() == s.runs).then(|| mean_std(&v))
            };
            BandSeries {
                name: s.strategy.split('(').next().unwrap_or("").to_string(),
                points: grid
                    .iter()
                    .filter_map(|&t| at(t).map(|(m, sd)| (t, m, sd)))
                    .collect(),
            }
        })
        .collect();
    let (what, y) = if multi {
        (
            "hypervolume of the front, % of the table's",
            "hypervolume (% of the table's front)",
        )
    } else {
        (
            "test accuracy of the best-by-fitness cell",
            "test accuracy (%)",
        )
    };
    let evaluator = summaries
        .first()
        .map(|s| s.evaluator.clone())
        .unwrap_or_default();
    Figure::new(
        format!("{what}: mean +- std of {runs} runs"),
        Plot::Band { series },
    )
    .axes("cost (simulated training s)", y)
    .settings(format!(
        "{evaluator}, seeds {seed}..{}",
        seed + runs as u64 - 1
    ))
    .save(path)
    .map_err(anyhow::Error::msg)?;
    Ok(())
}
