//! `archproof report`: an HTML report (a page per run and an index) from finished runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use archproof::report::html;

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
  archproof report runs/ --out reports/ --force")]
pub struct Args {
    /// The folder of finished runs (searched recursively for run.json).
    runs: PathBuf,
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
    let out = a.out.clone().unwrap_or_else(|| a.runs.clone());
    refuse_existing(&[out.join("index.html")], a.force)?;
    let site = html::write_site(&a.runs, &out, &a.title).map_err(anyhow::Error::msg)?;
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
