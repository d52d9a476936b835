//! `archproof export`: a network as versioned IR JSON or Graphviz DOT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use archproof::ir::io;
use clap::ValueEnum;

use super::common::{load_model, print_json, write_file};

/// Write a network as IR JSON (reads back with `inspect`), ONNX (opset 13) or Graphviz DOT;
/// an ONNX model becomes IR JSON with its weights.
///
/// ONNX needs weights: a trained network carries them; `--init-seed N` gives every node that
/// lacks them the seeded initialisation `train` starts from (for runtime and verifier
/// benchmarks on networks of a given shape).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof export resnet18 --format json -o r18.json
  archproof export resnet18 --format dot -o r18.dot && dot -Tsvg r18.dot > \\
      r18.svg
  archproof inspect r18.json
  # ONNX into the IR, weights included
  archproof export model.onnx --format json -o model.json
  archproof export resnet-mini:16 --input 3x32x32 --classes 10 --format onnx \\
      --init-seed 1 -o rm16.onnx")]
pub struct Args {
    /// A zoo model, `nb201:<cell string>` (`nb201-cCnN[sS]:<cell string>` on another
    /// skeleton), an IR .json file, or an .onnx model.
    model: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Output file (standard output when absent).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Input shape CxHxW (zoo models only).
    #[arg(long)]
    input: Option<String>,
    /// Number of classes (zoo models only).
    #[arg(long)]
    classes: Option<usize>,
    /// Initialise the weights a node lacks, seeded (He-uniform for convolutions and linear
    /// layers, unit scale and zero shift for normalizations).
    #[arg(long)]
    init_seed: Option<u64>,
    /// With -o: print what was written as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// archproof IR JSON, versioned.
    Json,
    /// ONNX opset 13 with the weights (float32, a symbolic batch dimension).
    Onnx,
    /// Graphviz DOT.
    Dot,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut graph = load_model(&args.model, args.input.as_deref(), args.classes)?;
    if let Some(seed) = args.init_seed {
        graph = archproof::train::Model::new(&graph, seed)?.to_graph()?;
    }
    let text: Vec<u8> = match args.format {
        Format::Json => io::to_json(&graph)?.into_bytes(),
        Format::Dot => io::to_dot(&graph, &graph.analyze()?).into_bytes(),
        Format::Onnx => {
            if !graph.has_weights()? {
                bail!(
                    "'{}' has no weights to write as ONNX: export a trained network, or pass --init-seed N for seeded initial weights",
                    args.model
                );
            }
            if args.output.is_none() {
                bail!("ONNX is binary: give the file with -o FILE.onnx");
            }
            archproof::train::export::to_onnx(&graph).map_err(anyhow::Error::msg)?
        }
    };
    match &args.output {
        Some(path) => {
            write_file(path, &text, args.force)?;
            if args.json {
                print_json(&serde_json::json!({
                    "written": path,
                    "format": format!("{:?}", args.format).to_lowercase(),
                    "nodes": graph.len(),
                    "bytes": text.len(),
                }))?;
            } else {
                eprintln!("wrote {}", path.display());
            }
        }
        None => println!("{}", String::from_utf8_lossy(&text)),
    }
    Ok(ExitCode::SUCCESS)
}
