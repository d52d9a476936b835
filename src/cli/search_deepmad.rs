//! `archproof search deepmad`: design a CNN by mathematical programming.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Result};
use archproof::deepmad::program::{self, ProgramOptions};
use archproof::deepmad::{polish, space, Block, Convention, Score};
use archproof::ir::io;
use archproof::solvers::MilpSolver;
use serde::Serialize;

use super::common::{
    command_line, print_json, refuse_existing, si, thousands, write_file, write_page, OutputFlags,
};
use super::progress::Progress;
use archproof::report::{Figure, Plot, RunPage, Series, StageSeries, Table as ReportTable};

/// Design a CNN for a budget by mathematical programming (DeepMAD): maximise the entropy
/// objective under FLOPs, params and effectiveness limits, without training.
///
/// Writes OUT/best.json (the design as archproof IR, with a 1000-class head), OUT/structure.json
/// (the block list) and OUT/summary.json.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof search deepmad --space search-spaces/deepmad-r50.toml --out runs/r50
  archproof search deepmad --space search-spaces/deepmad-r50.toml \\
      --convention tinynas --json
  archproof search deepmad --space search-spaces/deepmad-cifar.toml \\
      --time-limit 30 --bound-seconds 60 --json")]
pub struct DeepmadArgs {
    /// The space and budget (a search-spaces/deepmad-*.toml file).
    #[arg(long)]
    space: PathBuf,
    /// Which formulas the objective follows.
    #[arg(long, value_enum, default_value = "paper")]
    convention: Convention,
    /// How to solve: highs or microlp (the program), or evolution (the official code's search).
    #[arg(long, default_value = "highs")]
    solver: String,
    /// Evolution: candidates to evaluate (the official search uses 500,000).
    #[arg(long, default_value_t = 100_000)]
    iterations: usize,
    /// Evolution: population size.
    #[arg(long, default_value_t = 256)]
    population: usize,
    /// Evolution: seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evolution: continue the search stored in OUT.
    #[arg(long)]
    resume: bool,
    /// Wall-clock limit of the whole solve, in seconds.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Program: a budget of work instead of time, at most this many inner programs (each
    /// solved to its end): the same design on any machine, at any load.
    #[arg(long)]
    max_programs: Option<usize>,
    /// Program: seconds of branch and bound over boxes of channels and depths after the
    /// design, for a proven upper bound of the objective over the whole space
    /// (`global_bound`, `global_gap`); a better design found on the way replaces the design.
    /// 0 skips it.
    #[arg(long, default_value_t = 0.0)]
    bound_seconds: f64,
    /// Output directory.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    output: OutputFlags,
}

#[derive(Serialize)]
struct Summary {
    space: String,
    convention: Convention,
    score: f64,
    entropy: f64,
    penalty: f64,
    flops: f64,
    params: f64,
    rho: f64,
    feasible: bool,
    solver: &'static str,
    optimality_gap: Option<f64>,
    bound: Option<f64>,
    /// A proven upper bound of the objective over every structure of the space within the
    /// budgets (FLOPs, params), and its branch and bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    global_bound: Option<f64>,
    /// `(global_bound - score) / |score|`.
    #[serde(skip_serializing_if = "Option::is_none")]
    global_gap: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    global_search: Option<archproof::deepmad::bound::GlobalBound>,
    solve_seconds: f64,
    programs: usize,
    structure: Vec<archproof::deepmad::Block>,
    trace: Vec<(f64, f64)>,
    /// The evolutionary search's seed (the program makes no random choice).
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    fn new(
        sp: &space::Space,
        convention: Convention,
        blocks: Vec<Block>,
        s: &Score,
        solver: &'static str,
        solve_seconds: f64,
        trace: Vec<(f64, f64)>,
    ) -> Summary {
        Summary {
            space: sp.name.clone(),
            convention,
            score: s.score,
            entropy: s.entropy,
            penalty: s.penalty,
            flops: s.flops,
            params: s.params,
            rho: s.rho,
            feasible: polish::feasible(sp, &blocks, s),
            solver,
            optimality_gap: None,
            bound: None,
            global_bound: None,
            global_gap: None,
            global_search: None,
            solve_seconds,
            programs: 0,
            structure: blocks,
            trace,
            seed: None,
        }
    }

    /// Writes OUT/best.json (the IR with a 1000-class head), structure.json and summary.json.
    fn write(&self, out: &std::path::Path, sp: &space::Space, force: bool) -> Result<()> {
        let graph =
            archproof::deepmad::ir::to_graph(&self.structure, sp.resolution, Some(1000), &sp.name)?;
        write_file(
            &out.join("best.json"),
            io::to_json(&graph)?.as_bytes(),
            force,
        )?;
        // The block list with the resolution it was designed for, which `deepmad score`
        // reads back.
        let structure = serde_json::json!({
            "structure": &self.structure,
            "resolution": sp.resolution,
            "space": &sp.name,
        });
        write_file(
            &out.join("structure.json"),
            serde_json::to_string_pretty(&structure)?.as_bytes(),
            force,
        )?;
        write_file(
            &out.join("summary.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
            force,
        )?;
        self.page(out, sp)
    }

    /// The report: the design's stages and best score against time, and run.json.
    fn page(&self, out: &std::path::Path, sp: &space::Space) -> Result<()> {
        let settings = format!(
            "budget {:.3e} FLOPs, {:.3e} params, rho <= {}; {:?} convention; solver {}; {}",
            sp.budget.flops,
            sp.budget.params,
            sp.budget.rho,
            self.convention,
            self.solver,
            match self.seed {
                Some(seed) => format!("seed {seed}"),
                None => "no random choice".into(),
            }
        );
        let n = sp.stages.strides.len();
        Figure::new(
            format!("{}: stage widths and depths of the design", sp.name),
            Plot::Stages {
                designs: vec![StageSeries {
                    name: format!("{} ({:.0})", self.solver, self.score),
                    stages: self
                        .structure
                        .iter()
                        .skip(1)
                        .take(n)
                        .map(|b| (b.cout, b.units()))
                        .collect(),
                }],
            },
        )
        .settings(settings.clone())
        .save(&out.join("stages.svg"))
        .map_err(anyhow::Error::msg)?;
        let mut page = RunPage::new(format!("DeepMAD design on {}", sp.name), command_line());
        page.summary.push(format!(
            "Score {:.2} (entropy {:.2}, depth penalty {:.2}) at {:.4e} FLOPs, {:.4e} params, \
             rho {:.4}; feasible: {}.",
            self.score,
            self.entropy,
            self.penalty,
            self.flops,
            self.params,
            self.rho,
            self.feasible
        ));
        if let Some(g) = self.optimality_gap {
            page.summary.push(format!(
                "The program at the final channels closed with an optimality gap of {g:.2e}."
            ));
        }
        page.setting("space", &sp.name);
        page.setting("solver", self.solver);
        page.setting("convention", format!("{:?}", self.convention));
        page.setting("programs solved", self.programs);
        page.setting("seconds", format!("{:.2}", self.solve_seconds));
        if let Some(seed) = self.seed {
            page.setting("seed", seed);
        }
        let mut t = ReportTable::new(
            "Blocks",
            &[
                "block",
                "kind",
                "in",
                "out",
                "stride",
                "kernel",
                "bottleneck",
                "units",
            ],
        );
        for (i, b) in self.structure.iter().enumerate() {
            t.row(vec![
                i.to_string(),
                format!("{:?}", b.kind),
                b.cin.to_string(),
                b.cout.to_string(),
                b.s.to_string(),
                b.k.to_string(),
                b.btn.map(|x| x.to_string()).unwrap_or("-".into()),
                b.units().to_string(),
            ]);
        }
        page.tables.push(t);
        if self.trace.len() > 1 {
            Figure::new(
                format!("{}: best objective against wall time", sp.name),
                Plot::Steps {
                    series: vec![Series {
                        name: self.solver.to_string(),
                        points: self.trace.clone(),
                    }],
                    x_end: self.solve_seconds,
                },
            )
            .axes("wall time (s)", "best objective")
            .settings(settings)
            .save(&out.join("progress.svg"))
            .map_err(anyhow::Error::msg)?;
            page.figure("progress.svg", "Best objective against wall time");
        }
        page.figure("stages.svg", "Stage widths and depths");
        page.file("best.json", "IR JSON of the design (1000-class head)");
        page.file("structure.json", "the block list (the published format)");
        page.file("summary.json", "score, budget use, solver statistics");
        write_page(out, &page)
    }
}

/// The files a design run writes.
const OUTPUTS: [&str; 3] = ["best.json", "structure.json", "summary.json"];

/// The official evolutionary search on the study engine (seeded, resumable).
fn run_evolution(a: DeepmadArgs, sp: archproof::deepmad::space::Space) -> Result<ExitCode> {
    use archproof::deepmad::evolution::{BestTrace, DeepmadEvaluator, DeepmadSpace, TopKEvolution};
    use archproof::search::store::DEFAULT_STUDY;
    use archproof::search::{Attach, Storage, Study, StudyConfig, WorkerOptions};
    use std::time::Instant;
    let Some(out) = a.out.clone() else {
        return Err(anyhow!(
            "--solver evolution needs --out DIR (its trials are stored there)"
        ));
    };
    if a.iterations == 0 || a.population == 0 {
        return Err(anyhow!("--iterations and --population must be at least 1"));
    }
    let space = DeepmadSpace { space: sp.clone() };
    let evaluator = DeepmadEvaluator {
        space: &sp,
        convention: a.convention,
    };
    let strategy = TopKEvolution::new(a.population);
    let config = StudyConfig {
        seed: a.seed,
        max_trials: a.iterations,
        budget: None,
        batch: 64,
    };
    let study = Study::new(&space, &strategy, &evaluator, config)?;
    let mode = if a.resume {
        Attach::Resume
    } else {
        Attach::Create {
            force: a.output.force,
        }
    };
    let study = study.attach(
        &Storage::Sqlite(out.join("study.sqlite")),
        DEFAULT_STUDY,
        serde_json::json!({"space": a.space}),
        mode,
        WorkerOptions::default(),
    )?;
    let bar = Progress::bar(
        a.iterations as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} candidates  {msg}  [{elapsed}]",
        "candidates",
    );
    let start = Instant::now();
    let trace = BestTrace::new();
    let result = study.run(&|t| {
        bar.inc(1);
        if trace.record(t) {
            bar.set_message(format!("best {:.2}", t.fitness().unwrap_or_default()));
        }
    })?;
    bar.finish_and_clear();
    let best = result
        .best
        .map(|i| result.trials[i].candidate.clone())
        .ok_or_else(|| anyhow!("no candidate met the budget"))?;
    let s = archproof::deepmad::score(&best, sp.resolution, a.convention, &sp.weights());
    let summary = Summary {
        seed: Some(a.seed),
        ..Summary::new(
            &sp,
            a.convention,
            best,
            &s,
            "evolution",
            start.elapsed().as_secs_f64(),
            trace.into_points(),
        )
    };
    // Resuming rewrites the outputs of the same search.
    summary.write(&out, &sp, true)?;
    if a.output.json {
        print_json(&summary)?;
    } else {
        println!(
            "{}: evolution, {} candidates ({} over budget) in {:.1} s: best score {:.2}, FLOPs {}, params {}, rho {:.4}",
            sp.name,
            result.trials.len(),
            result.trials.iter().filter(|t| t.fitness().is_none()).count(),
            summary.solve_seconds,
            s.score,
            si(s.flops as u64),
            thousands(s.params as u64),
            s.rho
        );
        println!(
            "  wrote {}/best.json, structure.json, summary.json, study.sqlite",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: DeepmadArgs) -> Result<ExitCode> {
    let sp = space::read(&a.space).map_err(|m| anyhow!(m))?;
    let solver = match a.solver.as_str() {
        "highs" => MilpSolver::Highs,
        "microlp" => MilpSolver::Microlp,
        "evolution" => return run_evolution(a, sp),
        other => {
            return Err(anyhow!(
                "--solver '{other}' is not highs, microlp or evolution"
            ))
        }
    };
    if !(a.time_limit > 0.0 && a.time_limit.is_finite()) {
        return Err(anyhow!("--time-limit must be a positive number of seconds"));
    }
    if !(a.bound_seconds >= 0.0 && a.bound_seconds.is_finite()) {
        return Err(anyhow!(
            "--bound-seconds must be a non-negative number of seconds"
        ));
    }
    if a.max_programs == Some(0) {
        return Err(anyhow!("--max-programs must be at least 1"));
    }
    if let Some(out) = &a.out {
        refuse_existing(&OUTPUTS.map(|f| out.join(f)), a.output.force)?;
    }
    let spinner = Progress::spinner(
        a.output.no_progress(),
        "{spinner} {msg} [{elapsed}]",
        "solving",
    );
    spinner.set_message(format!("{} with {}", sp.name, solver.name()));
    let design = program::solve(
        &sp,
        &ProgramOptions {
            convention: a.convention,
            solver,
            time_limit: Duration::from_secs_f64(a.time_limit),
            max_programs: a.max_programs,
        },
    )
    .map_err(|e| anyhow!("{}: {e}", a.space.display()))?;
    let global = if a.bound_seconds > 0.0 && design.feasible {
        spinner.set_message(format!("{}: bounding the whole space", sp.name));
        Some(
            archproof::deepmad::bound::global_bound(
                &sp,
                a.convention,
                design.score.score,
                Duration::from_secs_f64(a.bound_seconds),
            )
            .map_err(|e| anyhow!("{}: {e}", a.space.display()))?,
        )
    } else {
        None
    };
    spinner.finish_and_clear();
    // The bound's search may have found a better design at another channel vector.
    let mut design = design;
    if let Some(blocks) = global.as_ref().and_then(|g| g.design.clone()) {
        let s =
            archproof::deepmad::score::score(&blocks, sp.resolution, a.convention, &sp.weights());
        let seconds = global.as_ref().map_or(0.0, |g| g.seconds);
        design.trace.push((design.solve_seconds + seconds, s.score));
        design.blocks = blocks;
        design.score = s;
        design.bound = None;
        design.optimality_gap = None;
    }
    let s = &design.score;
    let summary = Summary {
        optimality_gap: design.optimality_gap,
        bound: design.bound,
        global_bound: global.as_ref().map(|g| g.bound),
        global_gap: global.as_ref().map(|g| g.gap),
        global_search: global.clone(),
        programs: design.programs,
        ..Summary::new(
            &sp,
            a.convention,
            design.blocks.clone(),
            s,
            design.solver,
            design.solve_seconds,
            design.trace.clone(),
        )
    };
    if let Some(out) = &a.out {
        summary.write(out, &sp, a.output.force)?;
    }
    if a.output.json {
        print_json(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: score {:.2} (entropy {:.2} - penalty {:.2}), {} convention",
        sp.name,
        s.score,
        s.entropy,
        s.penalty,
        format!("{:?}", a.convention).to_lowercase()
    );
    println!(
        "  FLOPs {} / {}   params {} / {}   rho {:.4} / {}   feasible {}",
        si(s.flops as u64),
        si(sp.budget.flops as u64),
        thousands(s.params as u64),
        thousands(sp.budget.params as u64),
        s.rho,
        sp.budget.rho,
        design.feasible
    );
    match design.optimality_gap {
        Some(g) => println!(
            "  {} programs with {} in {:.1} s; gap of the final program {:.3}%",
            design.programs,
            design.solver,
            design.solve_seconds,
            100.0 * g
        ),
        None => println!(
            "  {} programs with {} in {:.1} s; the final program was not proven optimal",
            design.programs, design.solver, design.solve_seconds
        ),
    }
    if let Some(g) = &global {
        println!(
            "  global bound {:.2} (gap {:.3}%) after {} boxes in {:.1} s, {} open",
            g.bound,
            100.0 * g.gap,
            g.nodes,
            g.seconds,
            g.open
        );
    }
    println!("  block             in   out   k  s   L   btn");
    for b in &design.blocks {
        println!(
            "  {:<16} {:>4} {:>5} {:>3} {:>2} {:>3} {:>5}",
            format!("{:?}", b.kind),
            b.cin,
            b.cout,
            b.k,
            b.s,
            b.depth.map(|d| d.to_string()).unwrap_or_default(),
            b.btn.map(|d| d.to_string()).unwrap_or_default()
        );
    }
    if let Some(out) = &a.out {
        println!(
            "  wrote {}/best.json, structure.json, summary.json",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
