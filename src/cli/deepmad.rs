//! `archproof deepmad`: score DeepMAD structures.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use archproof::deepmad::{self, structure, Convention, Weights};
use serde::Serialize;

use super::common::{print_json, si, thousands};

/// Score DeepMAD structures: entropy per stage, effectiveness, depth penalty, FLOPs, params.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    Score(ScoreArgs),
}

/// Score a structure: entropy per stage, effectiveness rho, depth penalty, FLOPs and params
/// (counted without the classifier, as the official code does).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof deepmad score released_structures.json#deepmad-R50 \\
      --convention tinynas --json
  archproof deepmad score my-structure.json --resolution 224")]
pub struct ScoreArgs {
    /// An archproof IR JSON file written by DeepMAD, a block-list JSON file, or FILE#NAME to
    /// pick one entry of a file of several structures.
    structure: String,
    /// Which formulas: `paper` (as published) or `tinynas` (as the official code computes).
    #[arg(long, value_enum, default_value = "paper")]
    convention: Convention,
    /// Input resolution [default: the one the file states (an IR's input, or `resolution`
    /// beside the block list, as `search deepmad` writes it), else 224 with a warning].
    #[arg(long)]
    resolution: Option<usize>,
    /// Per-stage entropy weights, comma-separated (aligned with the last stages).
    #[arg(long, default_value = "1,1,1,1,8")]
    alpha: String,
    /// Weight of the depth-uniformity penalty.
    #[arg(long, default_value_t = 10.0)]
    beta: f64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    structure: String,
    convention: Convention,
    resolution: usize,
    #[serde(flatten)]
    score: deepmad::Score,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Sub::Score(a) => score(a),
    }
}

fn parse_alpha(text: &str) -> Result<Vec<f64>> {
    let alpha: Vec<f64> = text
        .split(',')
        .map(|t| t.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--alpha '{text}' is not a comma-separated list of numbers"))?;
    if alpha.is_empty() || alpha.iter().any(|a| !a.is_finite()) {
        return Err(anyhow!("--alpha '{text}' needs finite numbers"));
    }
    Ok(alpha)
}

fn score(a: ScoreArgs) -> Result<ExitCode> {
    if a.resolution == Some(0) {
        return Err(anyhow!("--resolution must be positive"));
    }
    let is_ir = !a.structure.contains('#')
        && std::fs::read_to_string(&a.structure)
            .map(|t| archproof::ir::io::is_ir_json(&t))
            .unwrap_or(false);
    let (blocks, stated) = if is_ir {
        let g = archproof::ir::io::read_graph(std::path::Path::new(&a.structure))?;
        let (b, r) = deepmad::ir::from_graph(&g).map_err(|m| anyhow!("{}: {m}", a.structure))?;
        (b, Some(r))
    } else {
        structure::read_with_resolution(&a.structure).map_err(|m| anyhow!(m))?
    };
    let resolution = match (a.resolution, stated) {
        (Some(r), _) => r,
        (None, Some(r)) => r,
        (None, None) => {
            eprintln!(
                "warning: {} states no input resolution; scoring at 224x224 (give --resolution)",
                a.structure
            );
            224
        }
    };
    let weights = Weights {
        alpha: parse_alpha(&a.alpha)?,
        beta: a.beta,
    };
    let s = deepmad::score(&blocks, resolution, a.convention, &weights);
    if a.json {
        print_json(&Report {
            structure: a.structure,
            convention: a.convention,
            resolution,
            score: s,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} ({} convention, {}x{})",
        a.structure,
        format!("{:?}", a.convention).to_lowercase(),
        resolution,
        resolution
    );
    println!(
        "  score {:.4} = entropy {:.4} - depth penalty {:.4} (depths {:?})",
        s.score, s.entropy, s.penalty, s.depths
    );
    println!(
        "  rho {:.4}   layers {}   FLOPs {}   params {}",
        s.rho,
        s.layers,
        si(s.flops as u64),
        thousands(s.params as u64)
    );
    println!("  stage  last block  units  layers  channels  resolution       term");
    for (j, st) in s.stages.iter().enumerate() {
        println!(
            "  {:>5}  {:>10}  {:>5}  {:>6}  {:>8}  {:>10}  {:>9.3}",
            j, st.last_block, st.units, st.layers, st.channels, st.resolution, st.term
        );
    }
    Ok(ExitCode::SUCCESS)
}
