//! `archproof search`: architecture search jobs on the study engine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use archproof::cells::nb201::{Nb201Cell, Nb201Space};
use archproof::cells::table::{CostMeasure, CostProxy, Table};
use archproof::cells::SpaceSpec;
use archproof::ir::{io, zoo};
use archproof::search::{
    Evaluator, LocalSearch, Proxy, ProxyEvolution, RandomSearch, RegularizedEvolution, Store,
    Strategy, Study, StudyConfig, StudyResult,
};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::common::{print_json, write_file};

/// Run an architecture search.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  archproof search cell --space search-spaces/nb201.toml --benchmark nb201-cifar10.csv --out runs/rea")]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Debug, Subcommand)]
enum Kind {
    Cell(CellArgs),
    Deepmad(super::search_deepmad::DeepmadArgs),
}

/// Search a cell space (NAS-Bench-201) with a tabular benchmark or a training-free evaluator.
///
/// Every finished trial is committed to OUT/study.sqlite at once; a killed search continues
/// with `--resume`, losing and repeating nothing, and ends as the uninterrupted run would.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof search cell --space search-spaces/nb201.toml --benchmark nb201-cifar10.csv \\
      --strategy rea --budget-seconds 12000 --seed 1 --out runs/rea
  archproof search cell --space search-spaces/nb201.toml --benchmark nb201-cifar10.csv \\
      --strategy rea --runs 500 --budget-seconds 12000
  archproof search cell --space search-spaces/nb201.toml --benchmark nb201-cifar10.csv --json
  archproof search cell --space nb201 --evaluator proxy:params --trials 200 --out runs/params
  archproof search cell --resume --out runs/rea")]
pub struct CellArgs {
    /// The space: a search-spaces/*.toml file or a space name (nb201).
    #[arg(long)]
    space: Option<String>,
    /// A benchmark table (CSV with arch, valid_acc_12, test_acc_200, train_time_s_200).
    #[arg(long)]
    benchmark: Option<PathBuf>,
    /// How candidates are judged: benchmark (needs --benchmark), proxy:params or proxy:macs.
    #[arg(long)]
    evaluator: Option<String>,
    /// Search strategy: random, rea (regularized evolution), local, proxy-rea
    /// [default: proxy-rea].
    #[arg(long)]
    strategy: Option<StrategyName>,
    /// REA population size.
    #[arg(long)]
    population: Option<usize>,
    /// REA tournament size.
    #[arg(long)]
    sample: Option<usize>,
    /// The most trials to run [default: 100, or 100000 with a budget].
    #[arg(long)]
    trials: Option<usize>,
    /// Stop once the evaluations' simulated cost reaches this many seconds.
    #[arg(long)]
    budget_seconds: Option<f64>,
    /// Trials proposed together and evaluated in parallel (results depend on it, not on the
    /// number of threads) [default: 1].
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of every random choice [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Directory of the run: study.sqlite, summary.json, best.json (with --runs: runs.json
    /// and progress.svg). Without it the search runs in memory and only prints.
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
}

impl CellSettings {
    fn from_args(a: &CellArgs) -> Result<Self> {
        let Some(space) = a.space.clone() else {
            bail!("--space is required (e.g. --space search-spaces/nb201.toml)");
        };
        let evaluator = match (&a.evaluator, &a.benchmark) {
            (Some(e), _) => e.clone(),
            (None, Some(_)) => "benchmark".into(),
            (None, None) => bail!(
                "give a benchmark table (--benchmark FILE.csv) or a training-free evaluator (--evaluator proxy:params)"
            ),
        };
        let budget_seconds = a.budget_seconds;
        Ok(CellSettings {
            space,
            benchmark: a.benchmark.clone(),
            evaluator,
            strategy: a.strategy.unwrap_or(StrategyName::ProxyRea),
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
        })
    }

    /// Refuses settings no search can run with.
    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.trials == 0 {
            bail!("--batch and --trials must be at least 1");
        }
        let evolves = matches!(self.strategy, StrategyName::Rea | StrategyName::ProxyRea);
        if evolves && (self.population == 0 || self.sample == 0) {
            bail!("--population and --sample must be at least 1");
        }
        if self
            .budget_seconds
            .is_some_and(|b| !(b > 0.0 && b.is_finite()))
        {
            bail!("--budget-seconds must be a positive number");
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
        same("--strategy", a.strategy, stored.strategy)?;
        same("--population", a.population, stored.population)?;
        same("--sample", a.sample, stored.sample)?;
        same(
            "--budget-seconds",
            a.budget_seconds.map(Some),
            stored.budget_seconds,
        )?;
        same("--batch", a.batch, stored.batch)?;
        same("--seed", a.seed, stored.seed)?;
        Ok(CellSettings {
            trials: a.trials.unwrap_or(stored.trials),
            ..stored
        })
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
}

#[derive(Serialize)]
struct BestTrial {
    trial: u64,
    cell: String,
    fitness: f64,
    metrics: std::collections::BTreeMap<String, f64>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.kind {
        Kind::Cell(a) => run_cell(a),
        Kind::Deepmad(a) => super::search_deepmad::run(a),
    }
}

fn run_cell(a: CellArgs) -> Result<ExitCode> {
    if let Some(runs) = a.runs {
        return run_many(&a, runs);
    }
    let Some(out) = a.out.clone() else {
        if a.resume {
            bail!("--resume needs --out DIR (where the study is stored)");
        }
        // Without a directory the search runs in memory, as one run of --runs.
        return run_many(&a, 1);
    };
    let db = out.join("study.sqlite");
    let (settings, store) = if a.resume {
        let store = Store::open(&db)?;
        let stored: CellSettings = serde_json::from_value(store.header()?.settings)
            .with_context(|| format!("{}: not a cell search", db.display()))?;
        (CellSettings::resumed(stored, &a)?, Some(store))
    } else {
        (CellSettings::from_args(&a)?, None)
    };
    settings.check()?;
    let spec = SpaceSpec::load(&settings.space).map_err(anyhow::Error::msg)?;
    let evaluator = build_evaluator(&settings, &spec)?;
    let strategy_box = build_strategy(&settings, &spec);
    let strategy: &dyn Strategy<Nb201Space> = strategy_box.as_ref();
    let config = StudyConfig {
        seed: settings.seed,
        max_trials: settings.trials,
        budget: settings.budget_seconds,
        batch: settings.batch,
    };
    let study = Study::new(&Nb201Space, strategy, evaluator.as_ref(), config)?;
    let store = match store {
        Some(s) => s,
        None => Store::create(
            &db,
            &study.header(serde_json::to_value(&settings)?),
            a.force,
        )?,
    };
    let already = store.trials()?.len();
    let study = study.with_store(store)?;

    let bar = if a.quiet || a.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(settings.trials as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} trials  {msg}  [{elapsed}]")
                .expect("static template"),
        );
        b
    };
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

    let summary = summarize(&result, &study.header(serde_json::Value::Null), &settings);
    write_file(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
        true,
    )?;
    if let Some(best) = &summary.best {
        let cell: Nb201Cell = best.cell.parse().map_err(anyhow::Error::msg)?;
        let g = zoo::nb201(&cell, spec.input_shape(), spec.classes)?;
        write_file(&out.join("best.json"), io::to_json(&g)?.as_bytes(), true)?;
    }
    if a.json {
        print_json(&summary)?;
    } else {
        print_human(&summary, &out);
    }
    Ok(ExitCode::SUCCESS)
}

/// Mutations ranked by the proxy per child, and random cells per initial member, of
/// `proxy-rea`.
const PROXY_CHILDREN: usize = 4;
const PROXY_POOL: usize = 20;

/// The strategy a cell search's settings name.
fn build_strategy(settings: &CellSettings, spec: &SpaceSpec) -> Box<dyn Strategy<Nb201Space>> {
    match settings.strategy {
        StrategyName::Random => Box::new(RandomSearch),
        StrategyName::Rea => Box::new(RegularizedEvolution {
            population: settings.population,
            sample: settings.sample,
        }),
        StrategyName::Local => Box::new(LocalSearch),
        StrategyName::ProxyRea => {
            // The network's parameter count from the IR cost model, once per cell.
            let (input, classes) = (spec.input_shape(), spec.classes);
            let cache = std::sync::Mutex::new(std::collections::HashMap::<usize, f64>::new());
            let proxy: Proxy<Nb201Cell> = std::sync::Arc::new(move |c: &Nb201Cell| {
                if let Some(&v) = cache.lock().expect("proxy cache").get(&c.code()) {
                    return v;
                }
                let v = zoo::nb201(c, input.clone(), classes)
                    .and_then(|g| g.analyze())
                    .map(|a| a.totals.params as f64)
                    .unwrap_or(f64::MIN);
                cache.lock().expect("proxy cache").insert(c.code(), v);
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

/// The evaluator a cell search's settings name.
fn build_evaluator(
    settings: &CellSettings,
    spec: &SpaceSpec,
) -> Result<Box<dyn Evaluator<Nb201Cell>>> {
    let evaluator: Box<dyn Evaluator<Nb201Cell>> = match settings.evaluator.as_str() {
        "benchmark" => {
            let Some(path) = &settings.benchmark else {
                bail!("--evaluator benchmark needs --benchmark FILE.csv");
            };
            Box::new(Table::load(path).map_err(anyhow::Error::msg)?)
        }
        "proxy:params" | "proxy:macs" => Box::new(CostProxy {
            measure: if settings.evaluator == "proxy:params" {
                CostMeasure::Params
            } else {
                CostMeasure::Macs
            },
            input: spec.input_shape(),
            classes: spec.classes,
        }),
        other => bail!("unknown evaluator '{other}' (known: benchmark, proxy:params, proxy:macs)"),
    };
    Ok(evaluator)
}

fn summarize(
    r: &StudyResult<Nb201Cell>,
    header: &archproof::search::StudyHeader,
    settings: &CellSettings,
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
        best: r.best.map(|i| {
            let t = &r.trials[i];
            BestTrial {
                trial: t.id,
                cell: t.candidate.to_string(),
                fitness: t.fitness().unwrap_or(f64::NAN),
                metrics: match &t.outcome {
                    archproof::search::Outcome::Done(e) => e.metrics.clone(),
                    archproof::search::Outcome::Failed(_) => Default::default(),
                },
            }
        }),
        best_so_far,
    }
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
        println!("  cost        {:.0} simulated s", s.total_cost);
    }
    if let Some(b) = &s.best {
        println!("  best        trial {}: {}", b.trial, b.cell);
        println!("  fitness     {:.4}", b.fitness);
        if let Some(t) = b.metrics.get("test_acc_200") {
            println!("  test acc    {t:.4} (200 epochs)");
        }
    }
    println!(
        "  written     {}/{{study.sqlite,summary.json,best.json}}",
        out.display()
    );
}

/// One of many seeded runs: the best-by-fitness cell and what the table says of it.
#[derive(Serialize)]
struct RunResult {
    seed: u64,
    cell: String,
    fitness: f64,
    test_acc: Option<f64>,
    valid_acc: Option<f64>,
    queries: usize,
    simulated_seconds: f64,
    /// (simulated seconds, test accuracy of the best-by-fitness cell so far) at each change.
    #[serde(skip)]
    curve: Vec<(f64, f64)>,
    /// Test accuracy of the best-by-fitness cell after each query.
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
    test_acc_mean: f64,
    test_acc_std: f64,
    valid_acc_mean: f64,
    queries_mean: f64,
    /// Mean over runs of the best-by-fitness cell's test accuracy after q = 1, 2, ... queries
    /// (a run that has ended keeps its final value).
    mean_test_acc_by_query: Vec<f64>,
    per_run: Vec<RunResult>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// `--runs N`: N seeded searches in parallel, in memory, summarised as the benchmark paper
/// reports them.
fn run_many(a: &CellArgs, runs: usize) -> Result<ExitCode> {
    use rayon::prelude::*;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let settings = CellSettings::from_args(a)?;
    settings.check()?;
    if let Some(out) = &a.out {
        super::common::refuse_existing(
            &[out.join("runs.json"), out.join("progress.svg")],
            a.force,
        )?;
    }
    let spec = SpaceSpec::load(&settings.space).map_err(anyhow::Error::msg)?;
    let evaluator = build_evaluator(&settings, &spec)?;
    let strategy_box = build_strategy(&settings, &spec);
    let strategy: &dyn Strategy<Nb201Space> = strategy_box.as_ref();
    let bar = if a.quiet || a.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(runs as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} runs  [{elapsed}]")
                .expect("static template"),
        );
        b
    };
    let metric = |t: &archproof::search::Trial<Nb201Cell>, key: &str| match &t.outcome {
        archproof::search::Outcome::Done(e) => e.metrics.get(key).copied(),
        archproof::search::Outcome::Failed(_) => None,
    };
    let results: Vec<RunResult> = (0..runs as u64)
        .into_par_iter()
        .map(|r| -> Result<RunResult> {
            let config = StudyConfig {
                seed: settings.seed + r,
                max_trials: settings.trials,
                budget: settings.budget_seconds,
                batch: settings.batch,
            };
            let study = Study::new(&Nb201Space, strategy, evaluator.as_ref(), config)?;
            let res = study.run(&|_| {})?;
            bar.inc(1);
            let mut curve = Vec::new();
            let mut by_query = Vec::new();
            let (mut cost, mut best, mut acc_now) = (0.0, f64::NEG_INFINITY, f64::NAN);
            for t in &res.trials {
                if let archproof::search::Outcome::Done(e) = &t.outcome {
                    cost += e.cost;
                    if e.fitness > best {
                        best = e.fitness;
                        if let Some(acc) = metric(t, "test_acc_200") {
                            curve.push((cost, acc));
                            acc_now = acc;
                        }
                    }
                }
                by_query.push(acc_now);
            }
            let b = res
                .best
                .map(|i| &res.trials[i])
                .ok_or_else(|| anyhow::anyhow!("run {r}: no trial succeeded"))?;
            Ok(RunResult {
                seed: settings.seed + r,
                cell: b.candidate.to_string(),
                fitness: b.fitness().unwrap_or(f64::NAN),
                test_acc: metric(b, "test_acc_200"),
                valid_acc: metric(b, "valid_acc_200"),
                queries: res.trials.len(),
                simulated_seconds: res.total_cost,
                curve,
                by_query,
            })
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let tests: Vec<f64> = results.iter().filter_map(|r| r.test_acc).collect();
    let valids: Vec<f64> = results.iter().filter_map(|r| r.valid_acc).collect();
    let queries: Vec<f64> = results.iter().map(|r| r.queries as f64).collect();
    let (test_acc_mean, test_acc_std) = mean_std(&tests);
    let longest = results.iter().map(|r| r.by_query.len()).max().unwrap_or(0);
    let mean_test_acc_by_query: Vec<f64> = (0..longest)
        .map(|q| {
            let v: Vec<f64> = results
                .iter()
                .filter_map(|r| r.by_query.get(q).or(r.by_query.last()).copied())
                .filter(|v| v.is_finite())
                .collect();
            mean_std(&v).0
        })
        .collect();
    let summary = ManySummary {
        mean_test_acc_by_query,
        space: settings.space.clone(),
        strategy: strategy.name(),
        evaluator: evaluator.describe(),
        runs,
        budget_seconds: settings.budget_seconds,
        test_acc_mean,
        test_acc_std,
        valid_acc_mean: mean_std(&valids).0,
        queries_mean: mean_std(&queries).0,
        per_run: results,
    };
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
        write_file(
            &out.join("runs.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
            true,
        )?;
        // Mean test accuracy of the best-by-fitness cell against simulated time.
        let end = summary
            .per_run
            .iter()
            .map(|r| r.simulated_seconds)
            .fold(0.0, f64::max);
        let grid: Vec<f64> = (1..=100).map(|i| end * i as f64 / 100.0).collect();
        let at = |t: f64| {
            let v: Vec<f64> = summary
                .per_run
                .iter()
                .filter_map(|r| r.curve.iter().take_while(|p| p.0 <= t).last().map(|p| p.1))
                .collect();
            (v.len() == summary.runs).then(|| mean_std(&v))
        };
        let points: Vec<(f64, f64, f64)> = grid
            .iter()
            .filter_map(|&t| at(t).map(|(m, sd)| (t, m, sd)))
            .collect();
        archproof::report::band_svg(
            &out.join("progress.svg"),
            &format!(
                "{}: test accuracy of the best-by-fitness cell, mean +- std of {} runs (seeds {}..)",
                summary.strategy, runs, settings.seed
            ),
            "simulated seconds",
            "test accuracy (%)",
            &[archproof::report::BandSeries {
                name: summary.strategy.clone(),
                points,
            }],
        )
        .map_err(anyhow::Error::msg)?;
    }
    if a.json {
        print_json(&summary)?;
    } else {
        println!(
            "{} over {} runs: test accuracy {:.2} +- {:.2}, validation {:.2}, {:.1} queries on average",
            summary.strategy,
            runs,
            summary.test_acc_mean,
            summary.test_acc_std,
            summary.valid_acc_mean,
            summary.queries_mean
        );
    }
    Ok(ExitCode::SUCCESS)
}
