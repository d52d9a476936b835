//! `archproof zoo`: the reference networks with their sizes.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::common::{print_json, si, thousands};

/// List the reference networks with parameters and MACs at their default input.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  archproof zoo --json")]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Entry {
    name: &'static str,
    description: &'static str,
    params: Option<u64>,
    macs: Option<u64>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut entries = Vec::new();
    for (name, description) in archproof::models::names() {
        // A name with an optional part (`resnet-mini[:W]`) is built at its default; a name
        // with a required parameter (`mlp:<w1>-...`) has no size of its own.
        let buildable = name.split('[').next().unwrap_or(name);
        let totals = if name.contains('<') {
            None
        } else {
            Some(
                archproof::models::build(buildable, None, None)?
                    .analyze()?
                    .totals,
            )
        };
        entries.push(Entry {
            name,
            description,
            params: totals.map(|t| t.params),
            macs: totals.map(|t| t.macs),
        });
    }
    if args.json {
        print_json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(5);
    println!(
        "{:<width$}  {:>12}  {:>9}  description",
        "model", "params", "MACs"
    );
    for e in entries {
        println!(
            "{:<width$}  {:>12}  {:>9}  {}",
            e.name,
            e.params.map(thousands).unwrap_or_default(),
            e.macs.map(si).unwrap_or_default(),
            e.description
        );
    }
    Ok(ExitCode::SUCCESS)
}
