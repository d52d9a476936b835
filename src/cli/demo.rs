//! `archproof demo`: every engine, small, on embedded defaults, and one HTML report.
//!
//! Each part runs as the archproof command a user would type (a child process of this
//! binary), writes its run directory with its run.json, and leaves its output in log.txt. The
//! report is then built over all of them, exactly as `archproof report` would.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use archproof::ir::io;
use archproof::report::html;
use archproof::report::{RunPage, Table as ReportTable};
use archproof::solvers;
use serde::Serialize;

use super::common::{print_json, shell_words, si, thousands, write_file, write_page, OutputFlags};

/// The small DeepMAD budget of the demo (the CIFAR-size space of search-spaces/).
const DEEPMAD_SPACE: &str = include_str!("../../search-spaces/deepmad-cifar.toml");

/// Run every engine of the workbench, small, and write one HTML report.
///
/// With no files: a DeepMAD design under a CIFAR-size budget (the mathematical program against
/// the evolutionary search), a NAS-Bench-201 cell search (strategies compared on the table with
/// --benchmark; otherwise by the NASWOT proxy on the embedded dataset, for a Pareto front of
/// score against parameters), a short EvoNorm search, and a residual network (resnet-mini)
/// trained on the embedded dataset whose test points are then verified (robustness radii, counterexamples drawn beside
/// their originals, a cactus plot of the engines), and a small CNN trained with IBP at eps 0.03
/// and naturally, both verified at that radius (the verified accuracy of each). Takes a few
/// minutes; prints where the report is.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof demo
  archproof demo --out runs/demo2 --seed 3
  archproof demo --benchmark nb201-cifar10.csv --json
  # the same report, copied elsewhere
  archproof report runs/demo --out reports/demo")]
pub struct Args {
    /// Where the runs and the report are written.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A NAS-Bench-201 table (CSV): the cell search compares strategies on it.
    #[arg(long)]
    benchmark: Option<PathBuf>,
    /// Smaller budgets throughout (about a minute): for a first look and for tests.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    output: OutputFlags,
}

/// One part of the demo.
#[derive(Debug, Serialize)]
struct Part {
    name: String,
    dir: String,
    seconds: f64,
    ok: bool,
    /// The part's own JSON summary (what its command prints with --json).
    result: Option<serde_json::Value>,
    /// Why it failed.
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct DemoSummary {
    out: PathBuf,
    index: PathBuf,
    seed: u64,
    seconds: f64,
    figures: usize,
    parts: Vec<Part>,
}

/// Runs this binary with `args` (plus --json and --quiet), its stdout to DIR/COMMAND.out.json
/// and the command line and its stderr appended to DIR/log.txt; returns the parsed output.
fn child(dir: &Path, args: &[String]) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find archproof itself: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run archproof: {e}"))?;
    let _ = std::fs::write(dir.join(format!("{}.out.json", args[0])), &out.stdout);
    let mut log = std::fs::read_to_string(dir.join("log.txt")).unwrap_or_default();
    log.push_str(&format!(
        "$ archproof {} --json --quiet\n",
        shell_words(args)
    ));
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::write(dir.join("log.txt"), log);
    if !out.status.success() {
        let last = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_string();
        return Err(last);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("unreadable output: {e}"))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub fn run(a: Args) -> Result<ExitCode> {
    let start = Instant::now();
    let out = a.out.clone();
    if out.join("index.html").exists() && !a.output.force {
        anyhow::bail!(
            "{} holds a demo already; pass --force to replace it",
            out.display()
        );
    }
    if a.output.force && out.exists() {
        for sub in [
            "workbench",
            "deepmad",
            "cells",
            "cells-pareto",
            "evonorm",
            "verify",
            "certified",
            "certified-natural",
        ] {
            let p = out.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| p.display().to_string())?;
            }
        }
    }
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    let seed = a.seed.to_string();
    // (full, quick) budgets.
    let pick = |full: &'static str, quick: &'static str| if a.quick { quick } else { full };
    let dir = |name: &str| out.join(name).display().to_string();

    // The parts, as the commands a user would type; each writes into `--out DIR/PART`.
    let into = |sub: &str, words: &[&str]| -> Vec<String> {
        let mut v = s(words);
        v.extend(s(&["--seed", &seed, "--force", "--out"]));
        v.push(dir(sub));
        v
    };
    let space = out.join("deepmad").join("space.toml");
    let space_arg = space.display().to_string();
    let mut plan: Vec<(&str, &str, Vec<Vec<String>>)> = vec![(
        "DeepMAD: the program against evolution",
        "deepmad",
        vec![into(
            "deepmad",
            &[
                "bench",
                "deepmad",
                "--space",
                &space_arg,
                "--time-limit",
                pick("15", "3"),
            ],
        )],
    )];
    match &a.benchmark {
        Some(table) => {
            let t = table.display().to_string();
            let search = ["search", "cell", "--space", "nb201", "--benchmark", &t];
            let runs = [
                "--strategy",
                "random,rea,local,proxy-rea",
                "--runs",
                pick("100", "20"),
            ];
            let pareto = ["--objectives", "accuracy,latency_ms_pixel3"];
            let budget = ["--budget-seconds", "12000"];
            plan.push((
                "NAS-Bench-201: four strategies, 100 runs each",
                "cells",
                vec![into("cells", &[&search[..], &runs, &budget].concat())],
            ));
            plan.push((
                "NAS-Bench-201: a Pareto front of accuracy and latency",
                "cells-pareto",
                vec![into(
                    "cells-pareto",
                    &[&search[..], &pareto, &budget].concat(),
                )],
            ));
        }
        None => plan.push((
            "NAS-Bench-201 by the NASWOT proxy on the embedded dataset",
            "cells",
            vec![into(
                "cells",
                &[
                    "search",
                    "cell",
                    "--space",
                    "nb201",
                    "--evaluator",
                    "proxy:naswot",
                    "--dataset",
                    "shapes",
                    "--objectives",
                    "accuracy,params_m",
                    "--trials",
                    pick("80", "30"),
                ],
            )],
        )),
    }
    plan.push((
        "EvoNorm: a short search of normalization-activation layers",
        "evonorm",
        vec![into(
            "evonorm",
            &[
                "search",
                "evonorm",
                "--trials",
                pick("48", "12"),
                "--population",
                pick("12", "6"),
                "--sample",
                pick("4", "3"),
                "--train-examples",
                pick("800", "400"),
                "--valid-examples",
                "300",
            ],
        )],
    ));
    let net = out.join("verify").join("resnet.json").display().to_string();
    let mut train = s(&[
        "train",
        "--model",
        "resnet-mini",
        "--dataset",
        "shapes",
        "--epochs",
        pick("10", "5"),
        "--seed",
        &seed,
        "--force",
        "--out",
    ]);
    train.push(net.clone());
    plan.push((
        "Verification: a residual network trained, then its test points verified",
        "verify",
        vec![
            train,
            into(
                "verify",
                &[
                    "robustness",
                    "--net",
                    &net,
                    "--dataset",
                    "shapes",
                    "--points",
                    pick("0..12", "0..4"),
                    "--timeout",
                    pick("3", "1"),
                    "--eps",
                    pick("0.01,0.02", "0.02"),
                    "--engines",
                    "bounds,bab",
                    "--query-timeout",
                    pick("2", "1"),
                ],
            ),
        ],
    ));
    // Certified training against natural training, both verified at the same radius.
    for (sub, name, certified) in [
        (
            "certified",
            "Certified training: a CNN trained with IBP at eps 0.03, then verified",
            true,
        ),
        (
            "certified-natural",
            "The same CNN trained naturally, verified at eps 0.03",
            false,
        ),
    ] {
        let net = out.join(sub).join("cnn.json").display().to_string();
        let mut train = s(&[
            "train",
            "--model",
            "cnn-tiny",
            "--dataset",
            "shapes",
            "--epochs",
            pick("6", "4"),
            "--seed",
            &seed,
            "--force",
        ]);
        if certified {
            train.extend(s(&["--certified", "ibp", "--eps", "0.03"]));
        }
        train.push("--out".into());
        train.push(net.clone());
        plan.push((
            name,
            sub,
            vec![
                train,
                into(
                    sub,
                    &[
                        "robustness",
                        "--net",
                        &net,
                        "--dataset",
                        "shapes",
                        "--points",
                        pick("0..20", "0..8"),
                        "--timeout",
                        "0.5",
                        "--eps",
                        "0.03",
                        "--engines",
                        "bounds,bab",
                        "--query-timeout",
                        "1",
                    ],
                ),
            ],
        ));
    }

    let total = plan.len() + 1;
    let talk = a.output.talk();
    let mut parts = Vec::new();
    if talk {
        eprintln!("[1/{total}] workbench: reference networks and solvers");
    }
    let t0 = Instant::now();
    let wb = workbench(&out.join("workbench"));
    parts.push(Part {
        name: "Workbench: the IR and the solvers".into(),
        dir: "workbench".into(),
        seconds: t0.elapsed().as_secs_f64(),
        ok: wb.is_ok(),
        result: wb.as_ref().ok().cloned(),
        error: wb.err().map(|e| e.to_string()),
    });
    write_file(&space, DEEPMAD_SPACE.as_bytes(), true)?;
    for (k, (name, sub, commands)) in plan.iter().enumerate() {
        if talk {
            eprintln!("[{}/{total}] {name} ...", k + 2);
        }
        // A spinner with the elapsed time while the part runs (plain lines off a terminal).
        let spinner = super::progress::Progress::spinner(
            !talk,
            "      {spinner} {msg} [{elapsed}]",
            "      running",
        );
        let t0 = Instant::now();
        let mut result = Ok(serde_json::Value::Null);
        for c in commands {
            spinner.set_message(format!("archproof {}", c[..2].join(" ")));
            result = child(&out.join(sub), c);
            if result.is_err() {
                break;
            }
        }
        spinner.finish_and_clear();
        if *sub == "verify" && result.is_ok() {
            add_training(&out.join("verify"))?;
        }
        let seconds = t0.elapsed().as_secs_f64();
        if talk {
            match &result {
                Ok(_) => eprintln!("      done in {seconds:.1} s"),
                Err(e) => eprintln!("      FAILED after {seconds:.1} s: {e}"),
            }
        }
        parts.push(Part {
            name: name.to_string(),
            dir: sub.to_string(),
            seconds,
            ok: result.is_ok(),
            result: result.as_ref().ok().cloned(),
            error: result.err(),
        });
    }
    let site = html::write_site(&out, &out, "archproof demo").map_err(anyhow::Error::msg)?;
    let summary = DemoSummary {
        out: out.clone(),
        index: site.index.clone(),
        seed: a.seed,
        seconds: start.elapsed().as_secs_f64(),
        figures: site.runs.iter().map(|r| r.figures.len()).sum(),
        parts,
    };
    write_file(
        &out.join("demo.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
        true,
    )?;
    let failed = summary.parts.iter().filter(|p| !p.ok).count();
    if a.output.json {
        print_json(&summary)?;
    } else {
        for p in &summary.parts {
            println!(
                "{:<4} {:<62} {:>6.1} s  {}/",
                if p.ok { "ok" } else { "FAIL" },
                p.name,
                p.seconds,
                out.join(&p.dir).display()
            );
        }
        println!(
            "{} runs, {} figures in {:.0} s. Open {}",
            site.runs.len(),
            summary.figures,
            summary.seconds,
            site.index.display()
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The trained network's curves and IR JSON join the verification page.
fn add_training(dir: &Path) -> Result<()> {
    let path = dir.join(html::RUN_FILE);
    let mut page = RunPage::read(&path).map_err(anyhow::Error::msg)?;
    page.figures.insert(
        0,
        archproof::report::FigureRef {
            file: "resnet.curves.svg".into(),
            caption: "Training curves of the verified residual network (resnet-mini)".into(),
        },
    );
    page.file(
        "resnet.json",
        "IR JSON (with weights) of the verified residual network",
    );
    page.file("log.txt", "the commands and their messages");
    write_page(dir, &page)
}

/// The IR part: reference networks analysed and exported, and the solvers checked.
fn workbench(dir: &Path) -> Result<serde_json::Value> {
    std::fs::create_dir_all(dir)?;
    let mut page = RunPage::new("Workbench: the IR and the solvers", "archproof demo");
    let mut t = ReportTable::new(
        "Reference networks (3x224x224 input, 1000 classes)",
        &["network", "parameters", "MACs", "IR JSON"],
    );
    let mut rows = Vec::new();
    for name in ["resnet18", "resnet50", "mobilenet_v2"] {
        let g = archproof::models::build(name, None, None)?;
        let totals = g.analyze()?.totals;
        let file = format!("{name}.json");
        write_file(&dir.join(&file), io::to_json(&g)?.as_bytes(), true)?;
        t.row(vec![
            name.into(),
            thousands(totals.params),
            si(totals.macs),
            file.clone(),
        ]);
        page.file(&file, format!("IR JSON of {name}"));
        rows.push(
            serde_json::json!({"network": name, "params": totals.params, "macs": totals.macs}),
        );
    }
    page.tables.push(t);
    let checks = solvers::check_all();
    let mut t = ReportTable::new(
        "Solvers on problems with known answers",
        &["solver", "ok", "detail"],
    );
    for c in &checks {
        t.row(vec![c.name.clone(), c.ok.to_string(), c.detail.clone()]);
    }
    page.tables.push(t);
    // torchvision's published parameter count of ResNet-50.
    let r50 = rows
        .iter()
        .find(|r| r["network"] == "resnet50")
        .and_then(|r| r["params"].as_u64());
    page.summary.push(format!(
        "{} of {} solver checks pass. ResNet-50 has {} parameters in the IR ({} torchvision's \
         25,557,032).",
        checks.iter().filter(|c| c.ok).count(),
        checks.len(),
        r50.map(thousands).unwrap_or_default(),
        if r50 == Some(25_557_032) {
            "matching"
        } else {
            "NOT matching"
        }
    ));
    write_page(dir, &page)?;
    Ok(serde_json::json!({"networks": rows, "solvers": checks}))
}
