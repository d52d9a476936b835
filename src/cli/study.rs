//! `archproof study`: studies read straight from a store (list, show, export).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use archproof::search::inspect::{self, StudyReport};
use archproof::search::store::DEFAULT_STUDY;
use archproof::search::Storage;
use clap::Subcommand;

use super::common::print_json;

/// Studies in a store: what a shared search or instance list has done, while it runs or after.
///
/// STORAGE is what the workers were given with --storage: postgresql://USER:PASSWORD@HOST/DB
/// or sqlite:PATH (a run folder's own store is sqlite:OUT/study.sqlite, study "default").
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof study list --storage postgresql://ann:PASSWORD@dbhost/archproof
  archproof study show nasnet-shapes --json \\
      --storage postgresql://ann:PASSWORD@dbhost/archproof
  archproof study export nasnet-shapes --storage postgresql://... -o runs/nasnet
  archproof study delete nasnet-shapes --storage postgresql://... --force
  archproof study show --storage sqlite:runs/rea/study.sqlite")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every study of the store: trials finished, running, waiting and failed, and the best.
    List(ListArgs),
    /// One study: its settings, counts, best trial, every trial and attempt (with --json).
    Show(ShowArgs),
    /// Write a run folder of one study for `archproof report` (study.json, trials.csv,
    /// progress.svg, run.json).
    Export(ExportArgs),
    /// Delete a study with its trials (to start a shared study over); needs --force.
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  archproof study delete nasnet-shapes --force \\
      --storage postgresql://ann:PASSWORD@dbhost/archproof")]
struct DeleteArgs {
    /// The study's name.
    study: String,
    /// The store.
    #[arg(long)]
    storage: String,
    /// Delete it (without this flag nothing is deleted).
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof study list --storage postgresql://ann:PASSWORD@dbhost/archproof
  archproof study list --storage sqlite:runs/shared.sqlite --json")]
struct ListArgs {
    /// The store.
    #[arg(long)]
    storage: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof study show nasnet-shapes --json \\
      --storage postgresql://ann:PASSWORD@dbhost/archproof
  archproof study show --storage sqlite:runs/rea/study.sqlite")]
struct ShowArgs {
    /// The study's name.
    #[arg(default_value = DEFAULT_STUDY)]
    study: String,
    /// The store.
    #[arg(long)]
    storage: String,
    /// Print JSON (with every trial and attempt).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof study export nasnet-shapes -o runs/nasnet \\
      --storage postgresql://ann:PASSWORD@dbhost/archproof
  archproof report runs/ --out reports/")]
struct ExportArgs {
    /// The study's name.
    #[arg(default_value = DEFAULT_STUDY)]
    study: String,
    /// The store.
    #[arg(long)]
    storage: String,
    /// The run folder to write.
    #[arg(long, short)]
    out: PathBuf,
    /// Replace files of an earlier export there.
    #[arg(long)]
    force: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    match a.command {
        Command::List(a) => list(a),
        Command::Show(a) => show(a),
        Command::Export(a) => export(a),
        Command::Delete(a) => delete(a),
    }
}

fn delete(a: DeleteArgs) -> Result<ExitCode> {
    let storage: Storage = a.storage.parse()?;
    let mut conn = storage.open_existing(&a.study)?;
    let r = StudyReport::read(&storage, &a.study)?;
    if !a.force {
        anyhow::bail!(
            "study {} holds {} finished trials; pass --force to delete it",
            a.study,
            r.trials_finished + r.trials_failed
        );
    }
    conn.delete()?;
    if a.json {
        print_json(&serde_json::json!({"deleted": a.study, "trials": r.trials.len()}))?;
    } else {
        println!(
            "deleted study {} ({} trials) from {storage}",
            a.study,
            r.trials.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let storage: Storage = a.storage.parse()?;
    if let Storage::Sqlite(p) = &storage {
        if !p.exists() {
            anyhow::bail!("{storage}: no such file");
        }
    }
    let studies = storage.connect(DEFAULT_STUDY)?.studies()?;
    if a.json {
        print_json(&studies)?;
        return Ok(ExitCode::SUCCESS);
    }
    if studies.is_empty() {
        println!("no studies in {storage}");
    }
    for s in &studies {
        let p = &s.progress;
        let best = s
            .best
            .map(|(n, f)| format!(", best {f:.4} (trial {n})"))
            .unwrap_or_default();
        println!(
            "{}: {} on {}, seed {}: {} finished, {} running, {} waiting, {} failed of {}{best}",
            s.name,
            s.header.strategy,
            s.header.space,
            s.header.seed,
            p.finished - p.failed,
            p.running,
            p.waiting,
            p.failed,
            s.header.max_trials
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let storage: Storage = a.storage.parse()?;
    let r = StudyReport::read(&storage, &a.study)?;
    if a.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("study {} in {}", r.study, r.storage);
    println!("  space       {}", r.space);
    println!("  strategy    {}", r.strategy);
    println!("  evaluator   {}", r.evaluator);
    println!("  seed        {} (batch {})", r.seed, r.batch);
    println!(
        "  trials      {} finished, {} running, {} waiting, {} failed of {}; {} retried",
        r.trials_finished,
        r.trials_running,
        r.trials_waiting,
        r.trials_failed,
        r.max_trials,
        r.retries
    );
    if let Some(b) = &r.best {
        println!(
            "  best        trial {}: {} ({:.4})",
            b.number, b.candidate, b.fitness
        );
    }
    let running: Vec<String> = r
        .trials
        .iter()
        .filter(|t| t.state == "running")
        .map(|t| format!("{} ({})", t.number, t.worker.clone().unwrap_or_default()))
        .collect();
    if !running.is_empty() {
        println!("  running     {}", running.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn export(a: ExportArgs) -> Result<ExitCode> {
    let storage: Storage = a.storage.parse()?;
    let r = StudyReport::read(&storage, &a.study)?;
    let done = inspect::export(&r, &a.out, a.force)?;
    if a.json {
        print_json(&done)?;
    } else {
        println!(
            "study {}: {} trials written to {}/{{{}}}",
            r.study,
            r.trials.len(),
            done.dir.display(),
            done.files.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}
