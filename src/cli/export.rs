//! `archproof export`: a network as versioned IR JSON or Graphviz DOT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use archproof::ir::io;
use clap::ValueEnum;

use super::common::{load_model, print_json, write_file};

/// Write a network as IR JSON (reads back with `inspect`) or Graphviz DOT.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof export resnet18 --format json -o r18.json
  archproof export resnet18 --format dot -o r18.dot && dot -Tsvg r18.dot > r18.svg
  archproof inspect r18.json")]
pub struct Args {
    /// A zoo model, `nb201:<cell string>`, or an IR .json file.
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
    /// With -o: print what was written as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// archproof IR JSON, versioned.
    Json,
    /// Graphviz DOT.
    Dot,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let graph = load_model(&args.model, args.input.as_deref(), args.classes)?;
    let text = match args.format {
        Format::Json => io::to_json(&graph)?,
        Format::Dot => io::to_dot(&graph, &graph.analyze()?),
    };
    match &args.output {
        Some(path) => {
            write_file(path, text.as_bytes(), args.force)?;
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
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
