//! `archproof search`: architecture search jobs on the study engine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use archproof::cells::search::{
    self, strategy_for, CellSearch, CellSettings, EvaluatorKind, ManySummary, Setup, StrategyName,
    Summary, TrainSettings, DEFAULT_PROXY_BATCH,
};
use archproof::cells::{curves, figures, metric, CellSpace, SpaceSpec};
use archproof::search::{Attach, Delayed, Evaluator, Storage, Study};
use clap::Subcommand;

use super::common::{command_line, print_json, refuse_existing, OutputFlags, StoreFlags};
use super::progress::Progress;

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
/// With `--storage postgresql://...` (or sqlite:PATH) and `--study NAME`, every process
/// started with the same command joins the study and claims trials from it: run it on as many
/// machines as you like; the trials and the best result are those of a single process.
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
  archproof search cell --space search-spaces/nb201.toml --evaluator train \\
      --dataset shapes --certified ibp \\
      --objectives accuracy,verified:0.01,params_m --trials 60 --out runs/cert
  archproof search cell --resume --out runs/rea
  archproof search cell --space search-spaces/nasnet.toml --evaluator train \\
      --dataset shapes --trials 400 --batch 8 --seed 1 --study nasnet-shapes \\
      --storage postgresql://ann:PASSWORD@dbhost/archproof")]
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
    #[arg(long, value_delimiter = ',', value_parser = strategy_parser())]
    strategy: Vec<StrategyName>,
    /// Objectives of a multi-objective search: accuracy (the fitness, maximised),
    /// verified:EPS (the verified accuracy on held-out points at radius EPS, maximised; with
    /// --evaluator train) and metrics of the evaluator to minimise, e.g.
    /// accuracy,latency_ms_pixel3 or accuracy,verified:0.01,params_m.
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
    /// --evaluator train: the back end of the training steps [default: auto, the kernel
    /// engine where it runs every operator, else candle].
    #[arg(long, value_enum)]
    train_engine: Option<archproof::train::TrainEngine>,
    /// --evaluator train: certified training of every candidate, ibp or crown-ibp, at
    /// --eps [default: natural training].
    #[arg(long, value_enum)]
    certified: Option<archproof::train::bounds::BoundMethod>,
    /// The radius of --certified training, in (0, 1] [default: the largest verified:EPS
    /// objective's].
    #[arg(long, requires = "certified")]
    eps: Option<f64>,
    /// verified:EPS objectives: held-out points each trained candidate is verified on
    /// [default: 50].
    #[arg(long)]
    verify_points: Option<usize>,
    /// verified:EPS objectives: seconds of each verification query (unknown counts as not
    /// verified) [default: 1].
    #[arg(long)]
    verify_timeout: Option<f64>,
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
    /// Continue the study in OUT (or --storage/--study) with its stored settings.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    output: OutputFlags,
    /// Abort the process after this many new trials (to test resuming).
    #[arg(long, hide = true)]
    halt_after: Option<usize>,
    /// Wait this many seconds in every evaluation (to test and measure shared studies).
    #[arg(long, hide = true)]
    evaluation_delay: Option<f64>,
}

/// The settings of each strategy the arguments name (one unless --runs compares several).
fn settings_from_args(a: &CellArgs) -> Result<Vec<CellSettings>> {
    let Some(space) = a.space.clone() else {
        bail!("--space is required (e.g. --space search-spaces/nb201.toml)");
    };
    let evaluator = match (&a.evaluator, &a.benchmark, &a.dataset) {
        (Some(e), _, _) => e.parse::<EvaluatorKind>()?,
        (None, Some(_), _) => EvaluatorKind::Benchmark,
        (None, None, Some(_)) => EvaluatorKind::Train,
        (None, None, None) => bail!(
            "give a benchmark table (--benchmark FILE.csv), a dataset to train on (--dataset shapes) or a proxy (--evaluator proxy:synflow)"
        ),
    };
    let budget_seconds = a.budget_seconds;
    let d = TrainSettings::default();
    let base = CellSettings {
        space_spec: Some(SpaceSpec::load(&space)?),
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
            engine: a.train_engine.unwrap_or(d.engine),
            certified: a.certified,
            certified_eps: a.certified.and(
                a.eps
                    .or_else(|| CellSettings::default_certified_eps(&a.objectives)),
            ),
            verify_points: a.verify_points.unwrap_or(d.verify_points),
            verify_timeout: a.verify_timeout.unwrap_or(d.verify_timeout),
        },
        proxy_batch: a.proxy_batch.unwrap_or(DEFAULT_PROXY_BATCH),
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

/// The stored settings, with any flag given on the command line checked against them.
fn resumed(stored: CellSettings, a: &CellArgs) -> Result<CellSettings> {
    fn same<T: PartialEq + std::fmt::Debug>(flag: &str, given: Option<T>, stored: T) -> Result<()> {
        match given {
            Some(g) if g != stored => bail!(
                "the study was started with {flag} {stored:?}; drop {flag} or give the same value"
            ),
            _ => Ok(()),
        }
    }
    same("--space", a.space.clone(), stored.space.clone())?;
    stored.check_space_unchanged()?;
    same(
        "--benchmark",
        a.benchmark.clone().map(Some),
        stored.benchmark.clone(),
    )?;
    same(
        "--evaluator",
        a.evaluator.clone(),
        stored.evaluator.to_string(),
    )?;
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
    same("--train-engine", a.train_engine, stored.train.engine)?;
    same("--certified", a.certified.map(Some), stored.train.certified)?;
    same("--eps", a.eps.map(Some), stored.train.certified_eps)?;
    same(
        "--verify-points",
        a.verify_points,
        stored.train.verify_points,
    )?;
    same(
        "--verify-timeout",
        a.verify_timeout,
        stored.train.verify_timeout,
    )?;
    same("--proxy-batch", a.proxy_batch, stored.proxy_batch)?;
    Ok(CellSettings {
        trials: a.trials.unwrap_or(stored.trials),
        ..stored
    })
}

/// `--strategy`'s values, with each strategy's line in the help.
fn strategy_parser() -> impl clap::builder::TypedValueParser<Value = StrategyName> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        StrategyName::ALL.map(|s| PossibleValue::new(s.name()).help(s.about())),
    )
    .try_map(|s| s.parse::<StrategyName>())
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.kind {
        Kind::Cell(a) => run_cell(*a),
        Kind::Deepmad(a) => super::search_deepmad::run(a),
        Kind::Evonorm(a) => super::search_evonorm::run(a),
    }
}

fn run_cell(a: CellArgs) -> Result<ExitCode> {
    let target = a.store.target(a.out.as_deref())?;
    let resumed_settings = if a.resume {
        let Some((storage, name, _)) = &target else {
            bail!("--resume needs --out DIR or --storage URL (where the study is stored)");
        };
        let header = storage.open_existing(name)?.existing_header()?;
        let stored: CellSettings = serde_json::from_value(header.settings)
            .with_context(|| format!("{storage} (study {name}): not a cell search"))?;
        Some(resumed(stored, &a)?)
    } else {
        None
    };
    let all = match &resumed_settings {
        Some(s) => vec![s.clone()],
        None => settings_from_args(&a)?,
    };
    for s in &all {
        s.check()?;
    }
    let verifies = !all[0].verified_radii()?.is_empty();
    if !verifies && (a.verify_points.is_some() || a.verify_timeout.is_some()) {
        bail!("--verify-points and --verify-timeout set how a verified:EPS objective is measured; add one to --objectives, or drop them");
    }
    let networks = a.out.as_ref().map(|o| o.join("networks"));
    match CellSearch::with_networks(&all[0], networks)? {
        CellSearch::Nb201(setup) => dispatch(&a, &all, target, &setup),
        CellSearch::Nasnet(setup) => dispatch(&a, &all, target, &setup),
    }
}

/// A new search must not mix its networks with those of an earlier run in the same folder:
/// they are removed with `--force`, and refused without.
fn clear_old_networks(dir: &std::path::Path, force: bool) -> Result<()> {
    let holds = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if !holds {
        return Ok(());
    }
    if !force {
        bail!(
            "{} holds the networks of an earlier search; pass --force to replace them, or --resume to go on with that search",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| dir.display().to_string())
}

fn dispatch<S>(
    a: &CellArgs,
    all: &[CellSettings],
    target: Option<(Storage, String, bool)>,
    setup: &Setup<S>,
) -> Result<ExitCode>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    match (target, a.runs) {
        (Some(target), None) => run_single(a, &all[0], target, setup),
        (Some((_, _, true)), Some(_)) => {
            bail!("--runs repeats searches in memory; it does not take --storage")
        }
        (_, runs) => run_many(a, all, runs.unwrap_or(1), setup),
    }
}

/// One study, stored (in OUT/study.sqlite or --storage) as each trial finishes.
fn run_single<S>(
    a: &CellArgs,
    settings: &CellSettings,
    (storage, name, shared): (Storage, String, bool),
    setup: &Setup<S>,
) -> Result<ExitCode>
where
    S: CellSpace + Clone + Send + 'static,
    S::Candidate: 'static,
{
    let strategy = strategy_for(settings, &setup.space);
    let mode = match (a.resume, shared, a.output.force) {
        (true, _, _) => Attach::Resume,
        // A shared study is joined: --force only replaces output files (`study delete`
        // starts a shared study over).
        (false, true, _) => Attach::Join,
        (false, _, force) => Attach::Create { force },
    };
    let delayed = Delayed {
        inner: setup.evaluator.as_ref(),
        delay: std::time::Duration::from_secs_f64(a.evaluation_delay.unwrap_or(0.0).max(0.0)),
    };
    let evaluator: &dyn Evaluator<S::Candidate> = match a.evaluation_delay {
        Some(_) => &delayed,
        None => setup.evaluator.as_ref(),
    };
    let study = Study::new(
        &setup.space,
        strategy.as_ref(),
        evaluator,
        settings.study_config(settings.seed),
    )?
    .attach(
        &storage,
        &name,
        serde_json::to_value(settings)?,
        mode,
        a.store.options(),
    )?;
    let already = study.finished_so_far()?;
    // A new study must not mix its networks with an earlier run's in the same folder (a
    // shared study's workers add to theirs; a resumed study goes on with its own).
    if let (Some(out), Attach::Create { force }) = (&a.out, &mode) {
        if !settings.verified_radii()?.is_empty() {
            clear_old_networks(&out.join("networks"), *force)?;
        }
    }

    let bar = Progress::bar(
        settings.trials as u64,
        a.output.no_progress(),
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

    let mut summary = Summary::of(
        &result,
        &study.header(serde_json::Value::Null),
        settings,
        setup,
    );
    if let Some(out) = &a.out {
        // The curves only add to the run folder: when they cannot be drawn, the search's
        // own results are written all the same.
        match verified_curves(a, settings, &summary, out) {
            Ok(curves) => summary.verified_curves = curves,
            Err(e) => eprintln!("warning: no verified-accuracy curves of the front: {e:#}"),
        }
        figures::write_single(
            out,
            &summary,
            &result.trials,
            settings,
            setup,
            &command_line(),
        )?;
    }
    if a.output.json {
        print_json(&summary)?;
    } else {
        print_human(&summary, a.out.as_deref(), &storage, &name);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(s: &Summary, out: Option<&Path>, storage: &Storage, name: &str) {
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
        if let Some(t) = metric::test_accuracy(&b.metrics) {
            println!("  test acc    {t:.4}");
        }
    }
    println!("  study       {name} in {storage}");
    let mut files = "summary.json,best.json".to_string();
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
    if let Some(out) = out {
        println!("  written     {}/{{{files}}}", out.display());
    }
}

/// With `verified:EPS` objectives: each front member's network verified again at a grid of
/// radii (see `cells::curves`), with a progress bar.
fn verified_curves(
    a: &CellArgs,
    settings: &CellSettings,
    summary: &Summary,
    out: &std::path::Path,
) -> Result<Vec<archproof::cells::curves::FrontCurve>> {
    let objective: Vec<f64> = settings.verified_radii()?.iter().map(|r| r.1).collect();
    let (Some(front), Some(dataset)) = (&summary.pareto, &settings.dataset) else {
        return Ok(Vec::new());
    };
    if objective.is_empty() {
        return Ok(Vec::new());
    }
    let radii = curves::curve_radii(&objective);
    let data = archproof::train::data::load(dataset)?;
    let bar = Progress::bar(
        (front.front.len() * radii.len() * settings.train.verify_points) as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} front curve queries  [{elapsed}<{eta}]",
        "front curve queries",
    );
    let curves = curves::front_curves(
        &out.join("networks"),
        &front.front,
        settings.seed,
        &data,
        &radii,
        settings.train.verify_timeout,
        &|| bar.inc(1),
    )?;
    bar.finish_and_clear();
    Ok(curves)
}

/// `--runs N`: N seeded searches per strategy in parallel, in memory, summarised as the
/// benchmark paper reports them.
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
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(out) = &a.out {
        refuse_existing(
            &[out.join("runs.json"), out.join("progress.svg")],
            a.output.force,
        )?;
    }
    let bar = Progress::bar(
        (runs * all.len()) as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} runs  [{elapsed}<{eta}]",
        "runs",
    );
    let summaries = search::repeat(setup, all, runs, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if let Some(out) = &a.out {
        let multi = setup.reachable.is_some();
        figures::write_many(out, &summaries, all[0].seed, multi, true, &command_line())?;
    }
    if a.output.json {
        println!("{}", figures::many_json(&summaries));
    } else {
        for s in &summaries {
            print_many(s);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_many(s: &ManySummary) {
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
    let f = search::mean_std(&fitness).0;
    let f = if f.abs() >= 1e6 {
        format!("{f:.4e}")
    } else {
        format!("{f:.4}")
    };
    println!(
        "{} over {} run{}: {acc}{valid}, best fitness {f} on average, {:.1} queries on average{hv}",
        s.strategy,
        s.runs,
        if s.runs == 1 { "" } else { "s" },
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
