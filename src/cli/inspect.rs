//! `archproof inspect`: a network's per-layer table and totals.

use std::process::ExitCode;

use anyhow::Result;
use archproof::ir::{dims_text, Graph, Op};
use serde::Serialize;

use super::common::{load_model, print_json, si, thousands};

/// Show a network's layers, shapes, parameters and multiply-accumulates.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof inspect resnet50
  archproof inspect resnet50 --json
  archproof inspect 'nb201:|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
  archproof inspect mlp:64-32 --input 1x28x28 --classes 10
  archproof inspect cnn-tiny --summary
  archproof inspect r18.json
  archproof inspect model.onnx   # PyTorch or archproof ONNX, weights read")]
pub struct Args {
    /// A zoo model (`archproof zoo` lists them: resnet18, resnet34, resnet50, mobilenet_v2,
    /// mlp:W1-W2-..., cnn-tiny, resnet-tiny, resnet-mini[:W]), a NAS-Bench-201 network
    /// `nb201:<cell string>` (e.g. `nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|`),
    /// or the same cell on another skeleton, `nb201-cCnN[sS]:<cell string>` (C stem channels,
    /// N cells per stage, stem stride S: `nb201-c8n1s2:...`, as a search names its networks),
    /// an IR .json file written by `archproof export`, or an .onnx model.
    model: String,
    /// Input shape CxHxW (zoo models only), e.g. 3x32x32.
    #[arg(long)]
    input: Option<String>,
    /// Number of classes (zoo models only).
    #[arg(long)]
    classes: Option<usize>,
    /// Print totals only, no per-layer table.
    #[arg(long)]
    summary: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct NodeRow {
    name: String,
    kind: &'static str,
    op: String,
    shape: Vec<usize>,
    params: u64,
    macs: u64,
    activations: u64,
}

/// The JSON document of `inspect --json`.
#[derive(Serialize)]
pub struct Report {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    params: u64,
    macs: u64,
    activations: u64,
    activation_bytes: u64,
    layers: u64,
    nodes: Vec<NodeRow>,
}

/// Builds the report of a graph (shared with `zoo`).
pub fn report(graph: &Graph) -> Result<Report> {
    let a = graph.analyze()?;
    let input = a
        .order
        .iter()
        .find(|&&id| matches!(graph.node(id).op, Op::Input { .. }))
        .map(|&id| a.shapes[id.index()].dims().to_vec())
        .unwrap_or_default();
    let nodes = a
        .order
        .iter()
        .map(|&id| {
            let n = graph.node(id);
            let c = a.costs[id.index()];
            NodeRow {
                name: n.name.clone(),
                kind: n.op.kind(),
                op: n.op.describe(),
                shape: a.shapes[id.index()].dims().to_vec(),
                params: c.params,
                macs: c.macs,
                activations: c.activations,
            }
        })
        .collect();
    Ok(Report {
        name: graph.name.clone(),
        input,
        output: a.output_shape(graph).dims().to_vec(),
        params: a.totals.params,
        macs: a.totals.macs,
        activations: a.totals.activations,
        activation_bytes: a.totals.activation_bytes,
        layers: a.totals.layers,
        nodes,
    })
}

pub fn run(args: Args) -> Result<ExitCode> {
    let graph = load_model(&args.model, args.input.as_deref(), args.classes)?;
    let r = report(&graph)?;
    if args.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.summary {
        let w = r
            .nodes
            .iter()
            .map(|n| n.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let wo = r.nodes.iter().map(|n| n.op.len()).max().unwrap_or(2).max(2);
        println!(
            "{:<w$}  {:<wo$}  {:<16}  {:>12}  {:>14}",
            "node", "op", "output", "params", "MACs"
        );
        for n in &r.nodes {
            let shape = dims_text(&n.shape);
            println!(
                "{:<w$}  {:<wo$}  {:<16}  {:>12}  {:>14}",
                n.name,
                n.op,
                shape,
                if n.params > 0 {
                    thousands(n.params)
                } else {
                    String::new()
                },
                if n.macs > 0 {
                    thousands(n.macs)
                } else {
                    String::new()
                },
            );
        }
        println!();
    }
    let dims = dims_text;
    println!("{}", r.name);
    println!("  input        {}", dims(&r.input));
    println!("  output       {}", dims(&r.output));
    println!("  params       {} ({})", thousands(r.params), si(r.params));
    println!("  MACs         {} ({})", thousands(r.macs), si(r.macs));
    println!(
        "  activations  {} ({}B as f32)",
        thousands(r.activations),
        si(r.activation_bytes)
    );
    println!(
        "  layers       {} conv/linear, {} nodes",
        r.layers,
        r.nodes.len()
    );
    Ok(ExitCode::SUCCESS)
}
