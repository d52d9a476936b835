//! `archproof report`: an HTML report (a page per run and an index) from finished runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use archproof::report::html;
use archproof::search::inspect::{self, StudyReport};
use archproof::search::store::DEFAULT_STUDY;
use archproof::search::Storage;

use super::common::{print_json, refuse_existing};

/// Build an HTML report from finished runs: a page per run and an index.
///
/// Every command that writes a run folder with --out (search cell, search deepmad, search
/// evonorm, bench, evonorm eval, proxies, robustness, demo) leaves a run.json there. The report finds each one under RUNS, writes
/// run.html for it and index.html over all of them, and copies the figures and files they name
/// into OUT. The pages use no script and no file from elsewhere: open index.html offline in any
/// browser.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof report runs/ --out reports/
  archproof report runs/demo --force    # rewrites runs/demo/index.html in place
  archproof report runs/ --out reports/ --title 'Budgeted designs' --json
  # replace an earlier report there
  archproof report runs/ --out reports/ --force
  # studies from a store, each exported to reports/studies/NAME first
  archproof report --out reports/ \\
      --storage postgresql://ann:PASSWORD@dbhost/archproof")]
pub struct Args {
    /// The folder of finished runs (searched recursively for run.json).
    #[arg(required_unless_present = "storage", conflicts_with = "storage")]
    runs: Option<PathBuf>,
    /// Report studies read straight from this store (postgresql://... or sqlite:PATH): each
    /// is exported to OUT/studies/NAME (as `study export` does), then OUT is reported.
    #[arg(long, requires = "out")]
    storage: Option<String>,
    /// The studies of --storage to report [default: all of them].
    #[arg(long, requires = "storage")]
    study: Vec<String>,
    /// Where the report goes [default: RUNS itself].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The index page's title.
    #[arg(long, default_value = "archproof report")]
    title: String,
    /// Replace an earlier report in OUT (its index.html and pages).
    #[arg(long)]
    force: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let out = match (&a.out, &a.runs) {
        (Some(out), _) => out.clone(),
        (None, Some(runs)) => runs.clone(),
        (None, None) => anyhow::bail!("give the folder of runs, or --storage with --out"),
    };
    refuse_existing(&[out.join("index.html")], a.force)?;
    if let Some(url) = &a.storage {
        let storage: Storage = url.parse()?;
        let names = if a.study.is_empty() {
            if let Storage::Sqlite(p) = &storage {
                if !p.exists() {
                    anyhow::bail!("{storage}: no such file");
                }
            }
            storage
                .connect(DEFAULT_STUDY)?
                .studies()?
                .into_iter()
                .map(|s| s.name)
                .collect()
        } else {
            a.study.clone()
        };
        if names.is_empty() {
            anyhow::bail!("{storage}: no studies to report");
        }
        for name in &names {
            let report = StudyReport::read(&storage, name)?;
            inspect::export(&report, &out.join("studies").join(name), a.force)?;
        }
    }
    let runs = a.runs.clone().unwrap_or_else(|| out.clone());
    let site = html::write_site(&runs, &out, &a.title).map_err(anyhow::Error::msg)?;
    for m in &site.missing {
        eprintln!("warning: {m} is named by its run but missing");
    }
    if a.json {
        print_json(&site)?;
    } else {
        let figures: usize = site.runs.iter().map(|r| r.figures.len()).sum();
        println!(
            "{} runs, {figures} figures: open {}",
            site.runs.len(),
            site.index.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
