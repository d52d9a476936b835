//! `archproof bench deepmad`: the program against the evolutionary search at equal wall time,
//! and both against the released design, with figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use archproof::deepmad::evolution::{evolve_for, BestTrace};
use archproof::deepmad::program::{self, ProgramOptions};
use archproof::deepmad::{self as dm, polish, space, structure, Block, Convention};
use archproof::report::{Figure, Plot, Series, StageSeries};
use archproof::solvers::MilpSolver;
use serde::Serialize;

use super::common::{
    command_line, print_json, refuse_existing, write_file, write_page, OutputFlags,
};
use archproof::ir::io;
use archproof::report::{RunPage, Table as ReportTable};

/// Most candidates the evolutionary search evaluates in one benchmark (memory bound).
const EVOLUTION_CAP: usize = 2_000_000;

/// Run the DeepMAD program and the official evolutionary search for the same wall time on one
/// budget, score the released design under the same convention, and draw the figures.
///
/// Writes OUT/results.json, OUT/progress.svg (objective against wall time) and OUT/stages.svg
/// (stage widths and depths of the designs). The evolutionary search stops at the time limit or
/// after 2 million candidates, whichever comes first.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  archproof bench deepmad --space search-spaces/deepmad-r50.toml \\
      --released released_structures.json#deepmad-R50 --convention tinynas \\
      --out bench/r50")]
pub struct DeepmadBenchArgs {
    /// The space and budget.
    #[arg(long)]
    space: PathBuf,
    /// The released design to compare with (FILE#NAME or a block-list file).
    #[arg(long)]
    released: Option<String>,
    /// Which formulas.
    #[arg(long, value_enum, default_value = "paper")]
    convention: Convention,
    /// Wall-clock seconds for each method.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Seed of the evolutionary search.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputFlags,
}

#[derive(Serialize)]
struct MethodResult {
    method: String,
    score: f64,
    flops: f64,
    params: f64,
    rho: f64,
    feasible: bool,
    seconds: f64,
    structure: Vec<Block>,
    trace: Vec<(f64, f64)>,
}

#[derive(Serialize)]
struct Results {
    space: String,
    convention: Convention,
    time_limit: f64,
    program: MethodResult,
    evolution: MethodResult,
    evolution_candidates: usize,
    released: Option<MethodResult>,
    /// program score / evolution score.
    ratio_program_to_evolution: f64,
}

fn method(
    name: &str,
    sp: &space::Space,
    conv: Convention,
    blocks: Vec<Block>,
    seconds: f64,
    trace: Vec<(f64, f64)>,
) -> MethodResult {
    let s = dm::score(&blocks, sp.resolution, conv, &sp.weights());
    MethodResult {
        method: name.into(),
        score: s.score,
        flops: s.flops,
        params: s.params,
        rho: s.rho,
        feasible: polish::feasible(sp, &blocks, &s),
        seconds,
        structure: blocks,
        trace,
    }
}

pub fn run(a: DeepmadBenchArgs) -> Result<ExitCode> {
    let sp = space::read(&a.space).map_err(|m| anyhow!(m))?;
    if !(a.time_limit > 0.0 && a.time_limit.is_finite()) {
        return Err(anyhow!("--time-limit must be a positive number of seconds"));
    }
    refuse_existing(
        &["results.json", "progress.svg", "stages.svg"].map(|f| a.out.join(f)),
        a.output.force,
    )?;
    let released = a
        .released
        .as_deref()
        .map(structure::read)
        .transpose()
        .map_err(|m| anyhow!(m))?;
    let limit = Duration::from_secs_f64(a.time_limit);
    let talk = a.output.talk();
    if talk {
        eprintln!("program: {:.0} s ...", a.time_limit);
    }
    let design = program::solve(
        &sp,
        &ProgramOptions {
            convention: a.convention,
            solver: MilpSolver::Highs,
            time_limit: limit,
            max_programs: None,
        },
    )
    .map_err(|e| anyhow!("{}: {e}", a.space.display()))?;
    let prog = method(
        "program (HiGHS)",
        &sp,
        a.convention,
        design.blocks.clone(),
        design.solve_seconds,
        design.trace.clone(),
    );

    if talk {
        eprintln!("evolution: {:.0} s ...", a.time_limit);
    }
    let start = Instant::now();
    let trace = BestTrace::new();
    let result = evolve_for(&sp, a.convention, a.seed, limit, EVOLUTION_CAP, &trace)?;
    let evo_seconds = start.elapsed().as_secs_f64();
    let best = result
        .best
        .map(|i| result.trials[i].candidate.clone())
        .ok_or_else(|| anyhow!("the evolutionary search found no structure within the budget"))?;
    let evo = method(
        "evolution (official)",
        &sp,
        a.convention,
        best,
        evo_seconds,
        trace.into_points(),
    );
    let rel = released.map(|b| method("released", &sp, a.convention, b, 0.0, Vec::new()));

    std::fs::create_dir_all(&a.out)?;
    let conv = format!("{:?}", a.convention).to_lowercase();
    let settings_line = format!(
        "budget {:.3e} FLOPs, {:.3e} params, rho <= {}; {conv} convention; {} s each; evolution seed {}",
        sp.budget.flops, sp.budget.params, sp.budget.rho, a.time_limit, a.seed
    );
    Figure::new(
        format!("{}: DeepMAD objective against wall time", sp.name),
        Plot::Steps {
            series: vec![
                Series {
                    name: prog.method.clone(),
                    points: prog.trace.clone(),
                },
                Series {
                    name: evo.method.clone(),
                    points: evo.trace.clone(),
                },
            ],
            x_end: a.time_limit.max(prog.seconds).max(evo_seconds),
        },
    )
    .axes(
        "wall time (s)",
        format!("best objective ({conv} convention)"),
    )
    .settings(settings_line.clone())
    .save(&a.out.join("progress.svg"))
    .map_err(|e| anyhow!("cannot draw progress.svg: {e}"))?;
    let n = sp.stages.strides.len();
    let stages = |m: &MethodResult| StageSeries {
        name: format!("{} ({:.0})", m.method, m.score),
        stages: m
            .structure
            .iter()
            .skip(1)
            .take(n)
            .map(|b| (b.cout, b.units()))
            .collect(),
    };
    let mut designs = vec![stages(&prog), stages(&evo)];
    if let Some(r) = &rel {
        designs.push(stages(r));
    }
    Figure::new(
        format!("{}: stage widths and depths", sp.name),
        Plot::Stages { designs },
    )
    .settings(settings_line)
    .save(&a.out.join("stages.svg"))
    .map_err(|e| anyhow!("cannot draw stages.svg: {e}"))?;
    let results = Results {
        space: sp.name.clone(),
        convention: a.convention,
        time_limit: a.time_limit,
        ratio_program_to_evolution: prog.score / evo.score,
        program: prog,
        evolution: evo,
        evolution_candidates: result.trials.len(),
        released: rel,
    };
    write_file(
        &a.out.join("results.json"),
        serde_json::to_string_pretty(&results)?.as_bytes(),
        true,
    )?;
    let mut page = RunPage::new(
        format!("DeepMAD on {}: the program against evolution", sp.name),
        command_line(),
    );
    page.summary.push(format!(
        "With {} s each, the mathematical program scores {:.2} and the evolutionary search {:.2} \
         ({} candidates): a ratio of {:.4}.",
        a.time_limit,
        results.program.score,
        results.evolution.score,
        results.evolution_candidates,
        results.ratio_program_to_evolution
    ));
    for (k, v) in [
        ("space", sp.name.clone()),
        ("FLOPs budget", format!("{:.3e}", sp.budget.flops)),
        ("params budget", format!("{:.3e}", sp.budget.params)),
        ("rho budget", sp.budget.rho.to_string()),
        ("resolution", sp.resolution.to_string()),
        ("convention", conv.clone()),
        ("time limit per method (s)", a.time_limit.to_string()),
        ("evolution seed", a.seed.to_string()),
    ] {
        page.setting(k, v);
    }
    let mut t = ReportTable::new(
        "Designs under the same score",
        &[
            "method", "score", "FLOPs", "params", "rho", "feasible", "seconds", "IR JSON",
        ],
    );
    for (m, file) in [
        (Some(&results.program), "program.json"),
        (Some(&results.evolution), "evolution.json"),
        (results.released.as_ref(), "released.json"),
    ] {
        let Some(m) = m else { continue };
        let graph = archproof::deepmad::ir::to_graph(&m.structure, sp.resolution, None, &sp.name)
            .map_err(|e| anyhow!("{}: {e}", m.method))?;
        write_file(&a.out.join(file), io::to_json(&graph)?.as_bytes(), true)?;
        t.row(vec![
            m.method.clone(),
            format!("{:.2}", m.score),
            format!("{:.4e}", m.flops),
            format!("{:.4e}", m.params),
            format!("{:.4}", m.rho),
            m.feasible.to_string(),
            format!("{:.2}", m.seconds),
            file.to_string(),
        ]);
        page.file(file, format!("IR JSON of the {} design", m.method));
    }
    page.tables.push(t);
    page.figure(
        "progress.svg",
        "Best objective against wall time, program and evolution",
    );
    page.figure("stages.svg", "Stage widths and depths of the designs");
    page.file("results.json", "both methods' designs, scores and traces");
    write_page(&a.out, &page)?;
    if a.output.json {
        print_json(&results)?;
    } else {
        println!("{} ({conv}, {:.0} s each)", sp.name, a.time_limit);
        for m in [
            Some(&results.program),
            Some(&results.evolution),
            results.released.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            println!(
                "  {:<22} score {:>10.2}  FLOPs {:.3e}  params {:.3e}  rho {:.4}  feasible {}",
                m.method, m.score, m.flops, m.params, m.rho, m.feasible
            );
        }
        println!(
            "  program / evolution = {:.4} ({} candidates evaluated by evolution)",
            results.ratio_program_to_evolution, results.evolution_candidates
        );
        println!(
            "  wrote {}/results.json, progress.svg, stages.svg",
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
