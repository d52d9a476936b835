//! `archproof bench train`: training throughput of small networks, against PyTorch or against
//! a single-threaded run of archproof itself.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{anyhow, bail, Context, Result};
use archproof::train::{self, Model, TrainEngine};
use serde::{Deserialize, Serialize};

use super::common::{load_model, print_json, write_file};

/// The PyTorch mirrors of the networks and their measurement (the same protocol as ours).
const PYTORCH_SCRIPT: &str = include_str!("../../scripts/pytorch_train_bench.py");

/// Measure training throughput (images per second of a whole training step: forward,
/// cross-entropy, backward and an Adam update; and of the forward pass alone) on 1x16x16
/// inputs with 6 classes, alternating with a baseline in the same run.
///
/// `--baseline pytorch --python PATH` runs the same networks in PyTorch (a Python with torch,
/// e.g. from `python3 -m venv V && V/bin/pip install torch`), mirrored layer for layer by
/// scripts/pytorch_train_bench.py, with as many threads as archproof uses; the parameter counts
/// are checked equal. `--baseline single-thread` runs archproof on one thread in a child
/// process. Each side is measured `--rounds` times, alternating, and the medians compared.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof bench train
  archproof bench train --model cnn-tiny --model resnet-tiny \\
      --baseline pytorch --python V/bin/python
  archproof bench train --model resnet-mini --rounds 5 --seconds 2 --json")]
pub struct TrainBenchArgs {
    /// The networks (zoo name, nb201:<cell>, nb201-c4n1:<cell>, or IR JSON), built for
    /// 1x16x16 inputs and 6 classes; repeat the flag for several.
    #[arg(long = "model", default_value = "cnn-tiny")]
    models: Vec<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Measurements of each side, alternating; the medians are compared.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// What to compare against.
    #[arg(long, value_enum, default_value = "single-thread")]
    baseline: Baseline,
    /// A Python with torch installed, for `--baseline pytorch`.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The back end archproof trains with.
    #[arg(long, value_enum, default_value = "auto")]
    engine: TrainEngine,
    /// Write the results here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Run only archproof's measurement of the first model and print it as JSON (how the
    /// single-thread baseline runs).
    #[arg(long, hide = true)]
    measure_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Baseline {
    /// PyTorch on the CPU (needs --python).
    Pytorch,
    /// archproof itself on one thread.
    SingleThread,
    /// No baseline.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measure {
    threads: usize,
    forward_images_per_s: f64,
    train_images_per_s: f64,
}

#[derive(Serialize)]
struct Side {
    /// Medians over the rounds.
    forward_images_per_s: f64,
    train_images_per_s: f64,
    threads: usize,
    rounds: Vec<Measure>,
}

#[derive(Serialize)]
struct ModelReport {
    model: String,
    params: usize,
    engine: &'static str,
    archproof: Side,
    baseline: Option<Side>,
    /// archproof's rate over the baseline's, for the forward pass and the training step.
    ratio_forward: Option<f64>,
    ratio_train: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    batch_size: usize,
    seconds: f64,
    baseline: Baseline,
    torch_version: Option<String>,
    models: Vec<ModelReport>,
}

fn threads() -> usize {
    rayon::current_num_threads()
}

fn measure(a: &TrainBenchArgs, model: &str) -> Result<(Measure, usize, &'static str)> {
    let g = load_model(model, Some("1x16x16"), Some(6))?;
    let mut m = Model::new(&g, 0)?;
    let (fwd, engine) = train::throughput(&mut m, a.batch_size, 6, a.seconds, false, a.engine)?;
    let (trn, _) = train::throughput(&mut m, a.batch_size, 6, a.seconds, true, a.engine)?;
    Ok((
        Measure {
            threads: threads(),
            forward_images_per_s: fwd,
            train_images_per_s: trn,
        },
        m.param_count(),
        engine,
    ))
}

/// The PyTorch side: the script run by `python`, returning its measure, params and version.
fn pytorch(
    a: &TrainBenchArgs,
    python: &PathBuf,
    script: &std::path::Path,
    model: &str,
    params_only: bool,
) -> Result<(Option<Measure>, usize, String)> {
    let mut cmd = Command::new(python);
    cmd.arg(script).args([
        "--model",
        model,
        "--batch-size",
        &a.batch_size.to_string(),
        "--seconds",
        &a.seconds.to_string(),
        "--threads",
        &threads().to_string(),
    ]);
    if params_only {
        cmd.arg("--params-only");
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        if err.contains("No module named 'torch'") {
            bail!(
                "{} has no torch; install it with `python3 -m venv V && V/bin/pip install torch` and pass --python V/bin/python",
                python.display()
            );
        }
        bail!("the PyTorch baseline failed: {last}");
    }
    #[derive(Deserialize)]
    struct Out {
        params: usize,
        threads: usize,
        torch: String,
        forward_images_per_s: Option<f64>,
        train_images_per_s: Option<f64>,
    }
    let o: Out = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("the PyTorch baseline's output: {e}"))?;
    let m = match (o.forward_images_per_s, o.train_images_per_s) {
        (Some(f), Some(t)) => Some(Measure {
            threads: o.threads,
            forward_images_per_s: f,
            train_images_per_s: t,
        }),
        _ => None,
    };
    Ok((m, o.params, o.torch))
}

fn single_thread(a: &TrainBenchArgs, model: &str) -> Result<Measure> {
    let exe = std::env::current_exe().context("cannot find the archproof binary")?;
    let out = Command::new(exe)
        .env("RAYON_NUM_THREADS", "1")
        .args([
            "bench",
            "train",
            "--measure-only",
            "--model",
            model,
            "--batch-size",
            &a.batch_size.to_string(),
            "--seconds",
            &a.seconds.to_string(),
            "--engine",
            match a.engine {
                TrainEngine::Auto => "auto",
                TrainEngine::Kernels => "kernels",
                TrainEngine::Candle => "candle",
            },
        ])
        .output()
        .context("cannot run the single-threaded baseline")?;
    if !out.status.success() {
        bail!(
            "the single-threaded baseline failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice::<Measure>(&out.stdout)
        .map_err(|e| anyhow!("the baseline's output: {e}"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn side(rounds: Vec<Measure>) -> Side {
    let mut f: Vec<f64> = rounds.iter().map(|m| m.forward_images_per_s).collect();
    let mut t: Vec<f64> = rounds.iter().map(|m| m.train_images_per_s).collect();
    Side {
        forward_images_per_s: median(&mut f),
        train_images_per_s: median(&mut t),
        threads: rounds.first().map_or(1, |m| m.threads),
        rounds,
    }
}

pub fn run(a: TrainBenchArgs) -> Result<ExitCode> {
    if a.batch_size == 0 || !(a.seconds > 0.0 && a.seconds.is_finite()) || a.rounds == 0 {
        bail!("--batch-size and --rounds must be at least 1 and --seconds positive");
    }
    if a.measure_only {
        print_json(&measure(&a, &a.models[0])?.0)?;
        return Ok(ExitCode::SUCCESS);
    }
    let python = match (a.baseline, &a.python) {
        (Baseline::Pytorch, None) => {
            bail!("--baseline pytorch needs --python PATH, a Python with torch installed")
        }
        (Baseline::Pytorch, Some(p)) => Some(p.clone()),
        (_, Some(_)) => bail!("--python is for --baseline pytorch"),
        _ => None,
    };
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let script = dir.path().join("pytorch_train_bench.py");
    std::fs::write(&script, PYTORCH_SCRIPT).context("cannot write the PyTorch script")?;
    let mut torch_version = None;
    // Every model is built and, for PyTorch, its mirror checked, before anything is measured.
    let mut params = Vec::new();
    for model in &a.models {
        let g = load_model(model, Some("1x16x16"), Some(6))?;
        let ours = Model::new(&g, 0)?.param_count();
        if let Some(py) = &python {
            let (_, theirs, version) = pytorch(&a, py, &script, model, true)?;
            if theirs != ours {
                bail!("the PyTorch mirror of {model} has {theirs} parameters, archproof's {ours}: they are not the same network");
            }
            torch_version = Some(version);
        }
        params.push(ours);
    }
    let mut models = Vec::new();
    for (model, &params) in a.models.iter().zip(&params) {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let mut engine = "";
        for round in 1..=a.rounds {
            if !a.json {
                eprintln!("{model}: round {round} of {}: archproof ...", a.rounds);
            }
            let (m, _, e) = measure(&a, model)?;
            engine = e;
            ours.push(m);
            match a.baseline {
                Baseline::Pytorch => {
                    if !a.json {
                        eprintln!("{model}: round {round} of {}: PyTorch ...", a.rounds);
                    }
                    let py = python.as_ref().expect("checked above");
                    let (m, _, _) = pytorch(&a, py, &script, model, false)?;
                    theirs.push(m.ok_or_else(|| anyhow!("the PyTorch baseline measured nothing"))?);
                }
                Baseline::SingleThread => theirs.push(single_thread(&a, model)?),
                Baseline::None => {}
            }
        }
        let ours = side(ours);
        let theirs = (!theirs.is_empty()).then(|| side(theirs));
        models.push(ModelReport {
            model: model.clone(),
            params,
            engine,
            ratio_forward: theirs
                .as_ref()
                .map(|t| ours.forward_images_per_s / t.forward_images_per_s),
            ratio_train: theirs
                .as_ref()
                .map(|t| ours.train_images_per_s / t.train_images_per_s),
            archproof: ours,
            baseline: theirs,
        });
    }
    let report = Report {
        batch_size: a.batch_size,
        seconds: a.seconds,
        baseline: a.baseline,
        torch_version,
        models,
    };
    if let Some(p) = &a.out {
        write_file(
            p,
            serde_json::to_string_pretty(&report)?.as_bytes(),
            a.force,
        )?;
    }
    if a.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let against = match a.baseline {
        Baseline::Pytorch => format!("PyTorch {}", report.torch_version.as_deref().unwrap_or("")),
        Baseline::SingleThread => "archproof on 1 thread".into(),
        Baseline::None => String::new(),
    };
    println!(
        "batch {}, medians of {} rounds, images/s (training step = forward, loss, backward, Adam)",
        report.batch_size, a.rounds
    );
    for m in &report.models {
        print!(
            "{} ({} params, {}): training step {:.0}, forward {:.0} ({} threads)",
            m.model,
            m.params,
            m.engine,
            m.archproof.train_images_per_s,
            m.archproof.forward_images_per_s,
            m.archproof.threads
        );
        match &m.baseline {
            Some(b) => println!(
                "; {against}: {:.0} and {:.0}; ratio {:.2}x and {:.2}x",
                b.train_images_per_s,
                b.forward_images_per_s,
                m.ratio_train.unwrap_or(f64::NAN),
                m.ratio_forward.unwrap_or(f64::NAN)
            ),
            None => println!(),
        }
    }
    Ok(ExitCode::SUCCESS)
}
