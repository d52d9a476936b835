//! `archproof bench`: benchmark runs that compare engines in one run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use archproof::report::{CactusSeries, Figure, Plot, RunPage, Table as ReportTable};
use archproof::verify::instances;
use archproof::verify::{vnncomp, Bounding, Branching, Engine, Exact, Options};
use clap::Subcommand;
use serde::Serialize;

use super::common::{
    command_line, print_json, refuse_existing, write_file, write_page, OutputFlags,
};
use super::progress::Progress;

/// Benchmarks that compare engines in one run.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  archproof bench verify --instances instances.csv --expected expected.csv \\
      --out bench/acasxu")]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Debug, Subcommand)]
enum Kind {
    Verify(VerifyArgs),
    Deepmad(super::bench_deepmad::DeepmadBenchArgs),
    Train(super::bench_train::TrainBenchArgs),
    Study(super::bench_study::StudyBenchArgs),
}

/// Run a VNN-COMP instance list with the bab engine and the plain Z3 baseline; write
/// per-instance times, totals and a cactus plot.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof bench verify --instances acasxu/instances.csv \\
      --expected acasxu/expected.csv --smt-timeout 10 --out bench/acasxu
  archproof bench verify --instances acasxu/instances.csv \\
      --expected acasxu/expected.csv --engines bab \\
      --reference 'nnenum on this machine=669.6' \\
      --ort-python ort/bin/python --out bench/acas
  archproof bench verify --instances mnistfc/mnistfc_instances.csv \\
      --expected mnistfc/expected.csv --engines bab,bab:alpha-beta:babsr:z3 \\
      --timeout 60 --out bench/mnistfc")]
pub struct VerifyArgs {
    /// The instance list (onnx,vnnlib,timeout).
    #[arg(long)]
    instances: PathBuf,
    /// Directory the list's paths are relative to [default: the list's directory].
    #[arg(long)]
    root: Option<PathBuf>,
    /// Known answers (network,property,expected); further columns named TOOL_s hold other
    /// tools' published times per instance (`timeout` where they failed), which the summary,
    /// the table and the cactus plot set beside this run's.
    #[arg(long)]
    expected: Option<PathBuf>,
    /// A published total to compare each engine's total time with, as LABEL=SECONDS
    /// (e.g. "nnenum on this machine=669.6"); may be given several times.
    #[arg(long, value_name = "LABEL=SECONDS")]
    reference: Vec<String>,
    /// A Python with onnxruntime and numpy: every counterexample is then checked as VNN-COMP
    /// does (float32, scripts/vnncomp/check_result.py), and one that fails counts as wrong.
    #[arg(long, value_name = "PYTHON")]
    ort_python: Option<PathBuf>,
    /// Engines to run, in order: bab, bounds, smt, each optionally with its bounding, its
    /// branching and its exact decision after colons (`bab:crown`, `bab:alpha-beta:area`,
    /// `bab:alpha-beta:babsr:patterns`) to compare settings in one run; the defaults are
    /// alpha-beta, babsr and milp.
    #[arg(long, value_delimiter = ',', default_value = "bab,smt")]
    engines: Vec<String>,
    /// Cap on each instance's time limit for the bab engine (seconds).
    #[arg(long, default_value_t = 116.0)]
    timeout: f64,
    /// Cap on each instance's time limit for the smt engine (seconds): Z3 alone times out on
    /// nearly every ACAS Xu instance, so the full limit would take hours.
    #[arg(long, default_value_t = 10.0)]
    smt_timeout: f64,
    /// Output directory: results.csv, summary.json, cactus.svg.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputFlags,
}

#[derive(Serialize)]
struct EngineSummary {
    engine: String,
    cap_seconds: f64,
    #[serde(flatten)]
    totals: instances::Summary,
    /// Beside each published tool of the known-answers table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    published: Vec<instances::Comparison>,
    /// This engine's total time over each `--reference` total.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    references: Vec<ReferenceRatio>,
}

#[derive(Serialize)]
struct ReferenceRatio {
    label: String,
    seconds: f64,
    ratio: f64,
}

/// `LABEL=SECONDS`.
fn parse_reference(s: &str) -> Result<(String, f64)> {
    let (label, secs) = s
        .rsplit_once('=')
        .ok_or_else(|| anyhow::anyhow!("--reference '{s}' is not LABEL=SECONDS"))?;
    let secs: f64 = secs
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| *v > 0.0 && v.is_finite())
        .ok_or_else(|| {
            anyhow::anyhow!("--reference '{s}': '{secs}' is not a positive number of seconds")
        })?;
    if label.trim().is_empty() {
        bail!("--reference '{s}' has no label");
    }
    Ok((label.trim().to_string(), secs))
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.kind {
        Kind::Verify(a) => run_verify(a),
        Kind::Deepmad(a) => super::bench_deepmad::run(a),
        Kind::Train(a) => super::bench_train::run(a),
        Kind::Study(a) => super::bench_study::run(a),
    }
}

/// The settings and time cap of an `--engines` entry: `ENGINE[:BOUNDING[:BRANCHING[:EXACT]]]`.
fn engine_settings(spec: &str, a: &VerifyArgs) -> Result<(Options, f64)> {
    let mut parts = spec.split(':');
    let engine = Engine::parse(parts.next().unwrap_or_default()).map_err(anyhow::Error::msg)?;
    let mut opts = Options {
        engine,
        ..Options::default()
    };
    if let Some(b) = parts.next() {
        opts.bounding = Bounding::parse(b)?;
    }
    if let Some(b) = parts.next() {
        opts.branching = Branching::parse(b)?;
    }
    if let Some(e) = parts.next() {
        opts.exact = Exact::parse(e)?;
    }
    if let Some(extra) = parts.next() {
        bail!("--engines entry '{spec}': '{extra}' is one setting too many (ENGINE[:BOUNDING[:BRANCHING[:EXACT]]])");
    }
    let cap = if engine == Engine::Smt {
        a.smt_timeout
    } else {
        a.timeout
    };
    Ok((opts, cap))
}

fn run_verify(a: VerifyArgs) -> Result<ExitCode> {
    let list = instances::read_list(&a.instances)?;
    let root = a.root.clone().unwrap_or_else(|| {
        a.instances
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    });
    let expected = a
        .expected
        .as_deref()
        .map(instances::read_expected)
        .transpose()?;
    let published = a
        .expected
        .as_deref()
        .map(instances::read_published)
        .transpose()?
        .unwrap_or_default();
    let references = a
        .reference
        .iter()
        .map(|r| parse_reference(r))
        .collect::<Result<Vec<_>>>()?;
    let results = a.out.join("results.csv");
    refuse_existing(std::slice::from_ref(&results), a.output.force)?;
    let checker = a
        .ort_python
        .as_deref()
        .map(|p| vnncomp::OrtChecker::new(p, &a.out))
        .transpose()?;
    let mut engines = Vec::new();
    for e in &a.engines {
        engines.push((e.clone(), engine_settings(e, &a)?));
    }
    // Rows land in results.csv as each run finishes: a benchmark stopped half way keeps them.
    let mut log =
        archproof::files::CsvLog::create(&results, &published.bench_columns(), a.output.force)?;
    let bar = Progress::bar(
        (list.len() * engines.len()) as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} runs {msg} [{elapsed}]",
        "runs",
    );
    let mut summaries = Vec::new();
    let mut series = Vec::new();
    for (name, (opts, cap)) in &engines {
        let mut cache = instances::Cache::default();
        let mut mine = Vec::new();
        // Each instance's VNN-COMP result file, as the competition keeps them.
        let files = a.out.join("results").join(name.replace(':', "-"));
        std::fs::create_dir_all(&files)?;
        for inst in &list {
            let key = instances::instance_key(&inst.onnx, &inst.vnnlib);
            bar.set_message(format!("running {name} {} {}", key.0, key.1));
            let (mut r, out, _) =
                instances::run_instance(&mut cache, &root, inst, opts, *cap, expected.as_ref())
                    .with_context(|| a.instances.display().to_string())?;
            let file = files.join(format!("{}_{}.txt", key.0, key.1));
            write_file(&file, out.vnncomp_result().as_bytes(), true)?;
            if let (Some(ch), Some(_)) = (&checker, &out.counterexample) {
                let check = ch.check(
                    &instances::locate(&root, &inst.onnx, "onnx"),
                    &instances::locate(&root, &inst.vnnlib, "vnnlib"),
                    &file,
                )?;
                if !check.passed {
                    bar.println(format!("{name} {} {}: {}", key.0, key.1, check.message));
                }
                r.counterexample_f32 = Some(check.passed);
            }
            bar.set_message(format!("{name} {} {}: {}", key.0, key.1, r.result));
            bar.inc(1);
            log.row(&published.bench_fields(name, &r))?;
            mine.push(r);
        }
        let solved: Vec<f64> = mine
            .iter()
            .filter(|r| r.result.is_solved())
            .map(|r| r.seconds)
            .collect();
        let totals = instances::Summary::of(&mine);
        summaries.push(EngineSummary {
            engine: name.into(),
            cap_seconds: *cap,
            published: instances::Comparison::all(&published, &mine, &list, *cap),
            references: references
                .iter()
                .map(|(label, secs)| ReferenceRatio {
                    label: label.clone(),
                    seconds: *secs,
                    ratio: totals.total_seconds / secs,
                })
                .collect(),
            totals,
        });
        series.push(CactusSeries {
            name: format!("{name} (cap {cap} s)"),
            solved_seconds: solved,
            published: false,
        });
    }
    bar.finish_and_clear();
    // The published tools' times as further columns, and as cactus series of their own.
    for (t, tool) in published.tools.iter().enumerate() {
        let solved_seconds: Vec<f64> = list
            .iter()
            .filter_map(|i| {
                published
                    .times
                    .get(&instances::instance_key(&i.onnx, &i.vnnlib))
                    .and_then(|v| v[t])
            })
            .collect();
        if !solved_seconds.is_empty() {
            series.push(CactusSeries {
                name: format!("{tool} (published)"),
                solved_seconds,
                published: true,
            });
        }
    }
    write_file(
        &a.out.join("summary.json"),
        serde_json::to_string_pretty(&summaries)?.as_bytes(),
        true,
    )?;
    let list_name = a
        .instances
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    std::fs::create_dir_all(&a.out)?;
    let caps: Vec<String> = engines
        .iter()
        .map(|(name, (_, cap))| format!("{name} cap {cap} s"))
        .collect();
    Figure::new(
        format!("{list_name}: instances solved against cumulative time"),
        Plot::Cactus {
            series,
            instances: list.len(),
        },
    )
    .axes("instances solved", "cumulative time (s)")
    .settings(format!(
        "{} instances; {}; falsifier seed 0{}",
        list.len(),
        caps.join(", "),
        if published.tools.is_empty() {
            String::new()
        } else {
            "; published tools at their own limits and hardware".into()
        }
    ))
    .save(&a.out.join("cactus.svg"))
    .map_err(anyhow::Error::msg)?;
    let mut page = RunPage::new(
        format!("Verification benchmark: {list_name}"),
        command_line(),
    );
    page.setting("instances", list.len());
    page.setting("engines", caps.join(", "));
    let mut t = ReportTable::new(
        "Engines",
        &[
            "engine",
            "cap (s)",
            "solved",
            "sat",
            "unsat",
            "wrong",
            "total (s)",
            "slowest solved (s)",
            "peak memory (MiB)",
        ],
    );
    for s in &summaries {
        let x = &s.totals;
        t.row(vec![
            s.engine.clone(),
            s.cap_seconds.to_string(),
            format!("{}/{}", x.solved, x.instances),
            x.sat.to_string(),
            x.unsat.to_string(),
            x.wrong.to_string(),
            format!("{:.1}", x.total_seconds),
            format!("{:.2}", x.max_solved_seconds),
            x.max_peak_memory_mib
                .map_or("-".into(), |m| format!("{m:.0}")),
        ]);
    }
    page.tables.push(t);
    if !published.tools.is_empty() {
        let mut t = ReportTable::new(
            "Beside the published tools (their times from other hardware)",
            &[
                "engine",
                "tool",
                "instances",
                "tool solved",
                "tool solved within cap",
                "engine solved",
                "both solved",
                "engine s on both",
                "tool s on both",
                "time ratio",
            ],
        );
        for s in &summaries {
            for c in &s.published {
                t.row(vec![
                    s.engine.clone(),
                    c.tool.clone(),
                    c.instances.to_string(),
                    c.tool_solved.to_string(),
                    c.tool_solved_within_cap.to_string(),
                    c.solved.to_string(),
                    c.both_solved.to_string(),
                    format!("{:.1}", c.seconds_on_both),
                    format!("{:.1}", c.tool_seconds_on_both),
                    c.time_ratio.map_or("-".into(), |r| format!("{r:.2}")),
                ]);
            }
        }
        page.tables.push(t);
    }
    page.figure(
        "cactus.svg",
        "Instances solved against cumulative time, per engine",
    );
    page.file(
        "results.csv",
        "every instance's verdict and time, per engine",
    );
    page.file("summary.json", "totals per engine");
    write_page(&a.out, &page)?;
    if a.output.json {
        print_json(&summaries)?;
    } else {
        println!(
            "{:<6} {:>6} {:>7} {:>5} {:>6} {:>6} {:>10} {:>12} {:>9}",
            "engine",
            "cap s",
            "solved",
            "sat",
            "unsat",
            "wrong",
            "total s",
            "slowest s",
            "peak MiB"
        );
        for s in &summaries {
            let t = &s.totals;
            println!(
                "{:<6} {:>6} {:>4}/{:<3} {:>4} {:>6} {:>6} {:>10.1} {:>12.2} {:>9}",
                s.engine,
                s.cap_seconds,
                t.solved,
                t.instances,
                t.sat,
                t.unsat,
                t.wrong,
                t.total_seconds,
                t.max_solved_seconds,
                t.max_peak_memory_mib
                    .map_or("-".into(), |m| format!("{m:.0}"))
            );
        }
        for s in &summaries {
            for c in &s.published {
                println!(
                    "{}: {}/{} solved, {} {}/{} ({} within the cap); on the {} both solved {:.1} s against {:.1} s{}",
                    s.engine,
                    c.solved,
                    c.instances,
                    c.tool,
                    c.tool_solved,
                    c.instances,
                    c.tool_solved_within_cap,
                    c.both_solved,
                    c.seconds_on_both,
                    c.tool_seconds_on_both,
                    c.time_ratio
                        .map_or(String::new(), |r| format!(" ({r:.2}x)"))
                );
            }
            if checker.is_some() {
                println!(
                    "{}: {} of {} counterexamples passed the float32 check (onnxruntime)",
                    s.engine, s.totals.f32_checked, s.totals.sat
                );
            }
            for r in &s.references {
                println!(
                    "{}: {:.1} s in all against {} {:.1} s ({:.2}x)",
                    s.engine, s.totals.total_seconds, r.label, r.seconds, r.ratio
                );
            }
        }
        println!(
            "written {}/{{results.csv,summary.json,cactus.svg}}",
            a.out.display()
        );
    }
    Ok(if summaries.iter().any(|s| s.totals.wrong > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
