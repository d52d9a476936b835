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
    Evaluator, RandomSearch, RegularizedEvolution, Store, Strategy, Study, StudyConfig, StudyResult,
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
    /// Search strategy: random or rea (regularized evolution).
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
    /// Directory of the run: study.sqlite, summary.json, best.json.
    #[arg(long)]
    out: PathBuf,
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
            strategy: a.strategy.unwrap_or(StrategyName::Rea),
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
    let db = a.out.join("study.sqlite");
    let (settings, store) = if a.resume {
        let store = Store::open(&db)?;
        let stored: CellSettings = serde_json::from_value(store.header()?.settings)
            .with_context(|| format!("{}: not a cell search", db.display()))?;
        (CellSettings::resumed(stored, &a)?, Some(store))
    } else {
        (CellSettings::from_args(&a)?, None)
    };
    if settings.batch == 0 || settings.trials == 0 {
        bail!("--batch and --trials must be at least 1");
    }
    if settings.strategy == StrategyName::Rea && (settings.population == 0 || settings.sample == 0)
    {
        bail!("--population and --sample must be at least 1");
    }
    if settings
        .budget_seconds
        .is_some_and(|b| !(b > 0.0 && b.is_finite()))
    {
        bail!("--budget-seconds must be a positive number");
    }
    let spec = SpaceSpec::load(&settings.space).map_err(anyhow::Error::msg)?;
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
    let rea = RegularizedEvolution {
        population: settings.population,
        sample: settings.sample,
    };
    let strategy: &dyn Strategy<Nb201Space> = match settings.strategy {
        StrategyName::Random => &RandomSearch,
        StrategyName::Rea => &rea,
    };
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
        &a.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
        true,
    )?;
    if let Some(best) = &summary.best {
        let cell: Nb201Cell = best.cell.parse().map_err(anyhow::Error::msg)?;
        let g = zoo::nb201(&cell, spec.input_shape(), spec.classes)?;
        write_file(&a.out.join("best.json"), io::to_json(&g)?.as_bytes(), true)?;
    }
    if a.json {
        print_json(&summary)?;
    } else {
        print_human(&summary, &a.out);
    }
    Ok(ExitCode::SUCCESS)
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
