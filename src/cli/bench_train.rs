//! `archproof bench train`: training throughput of a small CNN, against a single-threaded run.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{anyhow, bail, Context, Result};
use archproof::train::{self, Model};
use serde::{Deserialize, Serialize};

use super::common::{load_model, print_json, write_file};

/// Measure training throughput (images/s, forward and forward+backward) of a small CNN with
/// candle on all cores, against the same measurement single-threaded in a child process.
///
/// PyTorch from PyPI needs the CUDA libraries even on a CPU and cannot be installed on a
/// machine without them, so the baseline is our own single-threaded run.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof bench train
  archproof bench train --model resnet-tiny --batch-size 128 --seconds 10 --json")]
pub struct TrainBenchArgs {
    /// The network (zoo name or IR JSON), built for 1x16x16 inputs and 6 classes.
    #[arg(long, default_value = "cnn-tiny")]
    model: String,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Skip the single-threaded baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Write the results here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Run only the measurement and print it as JSON (how the baseline child is run).
    #[arg(long, hide = true)]
    measure_only: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Measure {
    threads: usize,
    forward_images_per_s: f64,
    train_images_per_s: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    params: usize,
    batch_size: usize,
    seconds: f64,
    candle: Measure,
    single_thread: Option<Measure>,
    speedup_forward: Option<f64>,
    speedup_train: Option<f64>,
}

fn measure(a: &TrainBenchArgs) -> Result<(Measure, usize)> {
    let g = load_model(&a.model, Some("1x16x16"), Some(6))?;
    let mut m = Model::new(&g, 0)?;
    let fwd = train::throughput(&mut m, a.batch_size, 6, a.seconds, false)?;
    let trn = train::throughput(&mut m, a.batch_size, 6, a.seconds, true)?;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok((
        Measure {
            threads,
            forward_images_per_s: fwd,
            train_images_per_s: trn,
        },
        m.param_count(),
    ))
}

pub fn run(a: TrainBenchArgs) -> Result<ExitCode> {
    if a.batch_size == 0 || !(a.seconds > 0.0 && a.seconds.is_finite()) {
        bail!("--batch-size must be at least 1 and --seconds positive");
    }
    if a.measure_only {
        print_json(&measure(&a)?.0)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !a.json {
        eprintln!(
            "candle, all threads: {:.0} s per measurement ...",
            a.seconds
        );
    }
    let (ours, params) = measure(&a)?;
    let single = if a.no_baseline {
        None
    } else {
        if !a.json {
            eprintln!("candle, one thread ...");
        }
        let exe = std::env::current_exe().context("cannot find the archproof binary")?;
        let out = Command::new(exe)
            .env("RAYON_NUM_THREADS", "1")
            .args([
                "bench",
                "train",
                "--measure-only",
                "--model",
                &a.model,
                "--batch-size",
                &a.batch_size.to_string(),
                "--seconds",
                &a.seconds.to_string(),
            ])
            .output()
            .context("cannot run the single-threaded baseline")?;
        if !out.status.success() {
            bail!(
                "the single-threaded baseline failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Some(
            serde_json::from_slice::<Measure>(&out.stdout)
                .map_err(|e| anyhow!("the baseline's output: {e}"))?,
        )
    };
    let report = Report {
        model: a.model.clone(),
        params,
        batch_size: a.batch_size,
        seconds: a.seconds,
        speedup_forward: single
            .as_ref()
            .map(|s| ours.forward_images_per_s / s.forward_images_per_s),
        speedup_train: single
            .as_ref()
            .map(|s| ours.train_images_per_s / s.train_images_per_s),
        candle: ours,
        single_thread: single,
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
    } else {
        println!(
            "{} ({} params), batch {}: forward {:.0} images/s, forward+backward {:.0} images/s ({} threads)",
            report.model,
            report.params,
            report.batch_size,
            report.candle.forward_images_per_s,
            report.candle.train_images_per_s,
            report.candle.threads
        );
        if let Some(s) = &report.single_thread {
            println!(
                "one thread: forward {:.0} images/s, forward+backward {:.0} images/s; speed-up {:.2}x and {:.2}x",
                s.forward_images_per_s,
                s.train_images_per_s,
                report.speedup_forward.unwrap_or(f64::NAN),
                report.speedup_train.unwrap_or(f64::NAN)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
