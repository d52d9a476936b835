//! `archproof bench study`: what a shared study costs and gains. For each store: the overhead
//! per trial against the same study in memory, a load of many workers on many fast trials
//! (checked: every trial once, none lost), and the speedup of 1, 2, 4, 8 workers on an
//! evaluation of known length. Workers are child processes of this binary, as users run them.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use archproof::report::{Figure, Plot, RunPage, Series, Table as ReportTable};
use archproof::search::inspect::StudyReport;
use archproof::search::Storage;
use serde::Serialize;

use super::common::{command_line, print_json, refuse_existing, write_file, write_page};

/// Measure shared studies on each store: overhead per trial, a load of many workers, and the
/// speedup of more workers.
///
/// The studies are NB201 searches (regularized evolution, batch --batch) judged by the
/// benchmark table: a fast evaluator, so the store's own cost shows. The speedup runs wait
/// --delay seconds in every evaluation, as a long evaluation (training on other machines)
/// would, with one trial at a time per worker. The bench's studies are deleted afterwards.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof bench study --benchmark nb201-cifar10.csv \\
      --storage sqlite:/tmp/bench.sqlite --out bench/study \\
      --storage postgresql://ann:PASSWORD@localhost/archproof
  archproof bench study --benchmark nb201-cifar10.csv \\
      --storage sqlite:/tmp/b.sqlite --overhead-trials 200 --load-trials 500 \\
      --workers 1,2 --json")]
pub struct StudyBenchArgs {
    /// The NB-201 benchmark table (nb201-cifar10.csv): the fast evaluator.
    #[arg(long)]
    benchmark: PathBuf,
    /// A store to measure (sqlite:PATH or postgresql://...); repeat for several.
    #[arg(long = "storage", required = true)]
    storages: Vec<String>,
    /// Trials of the overhead measurement (one worker, against the same study in memory).
    #[arg(long, default_value_t = 1000)]
    overhead_trials: usize,
    /// Trials of the load run.
    #[arg(long, default_value_t = 5000)]
    load_trials: usize,
    /// Workers of the load run.
    #[arg(long, default_value_t = 8)]
    load_workers: usize,
    /// Worker counts of the speedup runs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    workers: Vec<usize>,
    /// Seconds each evaluation of the speedup runs takes.
    #[arg(long, default_value_t = 1.0)]
    delay: f64,
    /// Trials of each speedup run.
    #[arg(long, default_value_t = 32)]
    speedup_trials: usize,
    /// Trials proposed together (the most workers that can run at once).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Folder of the results: summary.json, speedup.svg, run.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace results there.
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Load {
    workers: usize,
    trials: usize,
    seconds: f64,
    finished: u64,
    /// Trials with more than one attempt (none expected: no worker died).
    repeated: u64,
    /// Trials requested but not finished.
    lost: u64,
}

#[derive(Debug, Serialize)]
struct Speedup {
    workers: usize,
    seconds: f64,
    speedup: f64,
}

#[derive(Debug, Serialize)]
struct StoreResult {
    storage: String,
    overhead_trials: usize,
    in_memory_seconds: f64,
    stored_seconds: f64,
    /// (stored - in memory) / trials.
    overhead_ms_per_trial: f64,
    load: Load,
    delay_seconds: f64,
    speedup: Vec<Speedup>,
}

struct Bench<'a> {
    a: &'a StudyBenchArgs,
    exe: PathBuf,
    tag: String,
}

impl Bench<'_> {
    fn args(&self, trials: usize, extra: &[String]) -> Vec<String> {
        let mut v: Vec<String> = [
            "search",
            "cell",
            "--space",
            "nb201",
            "--strategy",
            "rea",
            "--seed",
            "1",
            "--quiet",
            "--json",
            "--parallel-trials",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend([
            "--benchmark".into(),
            self.a.benchmark.display().to_string(),
            "--batch".into(),
            self.a.batch.to_string(),
            "--trials".into(),
            trials.to_string(),
        ]);
        v.extend(extra.iter().cloned());
        v
    }

    fn spawn(&self, args: &[String]) -> Result<Child> {
        Command::new(&self.exe)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start a worker")
    }

    /// Runs `workers` processes of `args` to their end; the wall time.
    fn workers(&self, workers: usize, args: &[String]) -> Result<f64> {
        let t0 = Instant::now();
        let children = (0..workers)
            .map(|_| self.spawn(args))
            .collect::<Result<Vec<_>>>()?;
        for c in children {
            let out = c.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "a worker failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    fn shared(&self, storage: &str, study: &str, delay: Option<f64>) -> Vec<String> {
        let mut v = vec![
            "--storage".into(),
            storage.into(),
            "--study".into(),
            study.into(),
        ];
        if let Some(d) = delay {
            v.extend(["--evaluation-delay".into(), d.to_string()]);
        }
        v
    }

    fn delete(&self, storage: &Storage, study: &str) -> Result<()> {
        storage.connect(study)?.delete()?;
        Ok(())
    }

    fn store(&self, url: &str, bar: &dyn Fn(&str)) -> Result<StoreResult> {
        let a = self.a;
        let storage: Storage = url.parse()?;
        bar(&format!(
            "{storage}: overhead, {} trials",
            a.overhead_trials
        ));
        let in_memory = self.workers(1, &self.args(a.overhead_trials, &[]))?;
        let name = format!("{}-overhead", self.tag);
        let stored = self.workers(
            1,
            &self.args(a.overhead_trials, &self.shared(url, &name, None)),
        )?;
        self.delete(&storage, &name)?;

        bar(&format!(
            "{storage}: load, {} workers, {} trials",
            a.load_workers, a.load_trials
        ));
        let name = format!("{}-load", self.tag);
        let seconds = self.workers(
            a.load_workers,
            &self.args(a.load_trials, &self.shared(url, &name, None)),
        )?;
        let r = StudyReport::read(&storage, &name)?;
        let numbers_ok = r
            .trials
            .iter()
            .enumerate()
            .all(|(i, t)| t.number == i as u64);
        if !numbers_ok {
            bail!(
                "{storage}: the load study's trial numbers are not 0..{}",
                a.load_trials
            );
        }
        let load = Load {
            workers: a.load_workers,
            trials: a.load_trials,
            seconds,
            finished: r.trials_finished + r.trials_failed,
            repeated: r.trials.iter().filter(|t| t.attempts > 1).count() as u64,
            lost: (a.load_trials as u64).saturating_sub(r.trials_finished + r.trials_failed),
        };
        self.delete(&storage, &name)?;

        let mut speedup: Vec<Speedup> = Vec::new();
        for &w in &a.workers {
            bar(&format!(
                "{storage}: {w} workers, {} trials of {} s",
                a.speedup_trials, a.delay
            ));
            let name = format!("{}-speedup-{w}", self.tag);
            let s = self.workers(
                w,
                &self.args(a.speedup_trials, &self.shared(url, &name, Some(a.delay))),
            )?;
            self.delete(&storage, &name)?;
            let base = speedup.first().map(|b| b.seconds).unwrap_or(s);
            speedup.push(Speedup {
                workers: w,
                seconds: s,
                speedup: base / s,
            });
        }
        Ok(StoreResult {
            storage: storage.to_string(),
            overhead_trials: a.overhead_trials,
            in_memory_seconds: in_memory,
            stored_seconds: stored,
            overhead_ms_per_trial: 1000.0 * (stored - in_memory) / a.overhead_trials as f64,
            load,
            delay_seconds: a.delay,
            speedup,
        })
    }
}

pub fn run(a: StudyBenchArgs) -> Result<ExitCode> {
    if a.workers.is_empty() || a.workers.contains(&0) || a.load_workers == 0 {
        bail!("worker counts must be at least 1");
    }
    if a.overhead_trials == 0 || a.load_trials == 0 || a.speedup_trials == 0 || a.batch == 0 {
        bail!("trial counts and --batch must be at least 1");
    }
    if !a.benchmark.is_file() {
        bail!("{}: no such benchmark table", a.benchmark.display());
    }
    if let Some(out) = &a.out {
        refuse_existing(
            &[out.join("summary.json"), out.join("speedup.svg")],
            a.force,
        )?;
    }
    for s in &a.storages {
        s.parse::<Storage>()?;
    }
    let bench = Bench {
        a: &a,
        exe: std::env::current_exe().context("cannot find the archproof binary")?,
        tag: format!("bench-{}", std::process::id()),
    };
    let talk = !a.json;
    let say = |m: &str| {
        if talk {
            eprintln!("{m} ...");
        }
    };
    let mut results = Vec::new();
    for s in &a.storages {
        results.push(bench.store(s, &say)?);
    }
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out)?;
        write_file(
            &out.join("summary.json"),
            serde_json::to_string_pretty(&results)?.as_bytes(),
            true,
        )?;
        Figure::new(
            format!(
                "Shared study speedup: {} trials of {} s, batch {}",
                a.speedup_trials, a.delay, a.batch
            ),
            Plot::Lines {
                series: results
                    .iter()
                    .map(|r| Series {
                        name: r.storage.clone(),
                        points: r
                            .speedup
                            .iter()
                            .map(|s| (s.workers as f64, s.speedup))
                            .collect(),
                    })
                    .collect(),
            },
        )
        .axes("worker processes", "speedup over the first count")
        .settings(format!("NB201, rea, seed 1, batch {}", a.batch))
        .save(&out.join("speedup.svg"))
        .map_err(anyhow::Error::msg)?;
        let mut page = RunPage::new("Shared studies: store overhead and speedup", command_line());
        let mut t = ReportTable::new(
            "Per store",
            &["store", "overhead ms/trial", "load", "speedup"],
        );
        for r in &results {
            t.row(vec![
                r.storage.clone(),
                format!("{:.2}", r.overhead_ms_per_trial),
                format!(
                    "{} workers, {} trials in {:.1} s; {} repeated, {} lost",
                    r.load.workers, r.load.trials, r.load.seconds, r.load.repeated, r.load.lost
                ),
                r.speedup
                    .iter()
                    .map(|s| format!("{}: {:.2}x", s.workers, s.speedup))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
        }
        page.tables.push(t);
        page.figure(
            "speedup.svg",
            "Speedup of worker processes on evaluations of known length",
        );
        page.file("summary.json", "every measurement");
        write_page(out, &page)?;
    }
    if a.json {
        print_json(&results)?;
    } else {
        for r in &results {
            println!("{}", r.storage);
            println!(
                "  overhead    {:.2} ms per trial ({} trials: {:.2} s stored, {:.2} s in memory)",
                r.overhead_ms_per_trial, r.overhead_trials, r.stored_seconds, r.in_memory_seconds
            );
            println!(
                "  load        {} workers, {} trials in {:.1} s: {} finished, {} repeated, {} lost",
                r.load.workers,
                r.load.trials,
                r.load.seconds,
                r.load.finished,
                r.load.repeated,
                r.load.lost
            );
            let s: Vec<String> = r
                .speedup
                .iter()
                .map(|s| {
                    format!(
                        "{} workers {:.1} s ({:.2}x)",
                        s.workers, s.seconds, s.speedup
                    )
                })
                .collect();
            println!("  speedup     {}", s.join(", "));
        }
    }
    let bad = results
        .iter()
        .any(|r| r.load.lost > 0 || r.load.repeated > 0);
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
