//! `archproof demo`: the workbench on embedded defaults, with no input files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use archproof::cells::nb201::Nb201Space;
use archproof::cells::table::{CostMeasure, CostProxy};
use archproof::ir::{io, zoo, Shape};
use archproof::search::{RandomSearch, RegularizedEvolution, Strategy, Study, StudyConfig};
use archproof::solvers;
use serde::Serialize;

use super::common::{print_json, si, thousands, write_file};

/// Run a small tour of the workbench on embedded defaults and write its results.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  archproof demo\n  archproof demo --out runs/demo --seed 3 --json"
)]
pub struct Args {
    /// Where results are written.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ZooRow {
    model: String,
    params: u64,
    macs: u64,
}

#[derive(Serialize)]
struct SearchRow {
    strategy: String,
    best_cell: String,
    best_macs_m: f64,
    first_trial_at_best: u64,
}

#[derive(Serialize)]
struct DemoReport {
    zoo: Vec<ZooRow>,
    solvers: Vec<solvers::Check>,
    search: Vec<SearchRow>,
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut zoo_rows = Vec::new();
    for name in ["resnet18", "resnet34", "resnet50", "mobilenet_v2"] {
        let g = zoo::build(name, None, None)?;
        let t = g.analyze()?.totals;
        zoo_rows.push(ZooRow {
            model: name.into(),
            params: t.params,
            macs: t.macs,
        });
        write_file(
            &args.out.join(format!("{name}.json")),
            io::to_json(&g)?.as_bytes(),
            true,
        )?;
    }
    // A cell search with the data-free MACs evaluator: find the largest NAS-Bench-201 network
    // (the optimum is known: all six edges 3x3 convolutions) with random search and REA.
    let evaluator = CostProxy {
        measure: CostMeasure::Macs,
        input: Shape::chw(3, 32, 32),
        classes: 10,
    };
    let rea = RegularizedEvolution {
        population: 10,
        sample: 3,
    };
    let mut search = Vec::new();
    for strategy in [&RandomSearch as &dyn Strategy<Nb201Space>, &rea] {
        let config = StudyConfig {
            seed: args.seed,
            max_trials: 150,
            budget: None,
            batch: 1,
        };
        let r = Study::new(&Nb201Space, strategy, &evaluator, config)?.run(&|_| {})?;
        let best = &r.trials[r.best.expect("trials ran")];
        search.push(SearchRow {
            strategy: strategy.name(),
            best_cell: best.candidate.to_string(),
            best_macs_m: best.fitness().unwrap_or(f64::NAN),
            first_trial_at_best: best.id,
        });
    }
    let report = DemoReport {
        zoo: zoo_rows,
        solvers: solvers::check_all(),
        search,
        out: args.out.clone(),
    };
    write_file(
        &args.out.join("demo.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
        true,
    )?;
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("Reference networks (3x224x224, 1000 classes):");
    for z in &report.zoo {
        println!(
            "  {:<13} {:>12} params  {:>9} MACs",
            z.model,
            thousands(z.params),
            si(z.macs)
        );
    }
    println!("Solvers:");
    for c in &report.solvers {
        println!(
            "  {:<4} {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!(
        "NAS-Bench-201 cell search for the most MACs, 150 trials, seed {}:",
        args.seed
    );
    for s in &report.search {
        println!(
            "  {:<28} {:.2} M MACs at trial {}  {}",
            s.strategy, s.best_macs_m, s.first_trial_at_best, s.best_cell
        );
    }
    println!("Results in {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
