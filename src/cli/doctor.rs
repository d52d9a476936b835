//! `archproof doctor`: checks that the solver back ends are linked and answer correctly.

use std::process::ExitCode;

use anyhow::Result;
use archproof::solvers;

use super::common::print_json;

/// Check the linked solvers (HiGHS, microlp, Z3) on problems with known answers.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  archproof doctor --json")]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let checks = solvers::check_all();
    let ok = checks.iter().all(|c| c.ok);
    if args.json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            let v = if c.version.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.version)
            };
            println!(
                "{:<4} {}{}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                v,
                c.detail
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
