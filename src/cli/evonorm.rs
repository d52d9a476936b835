//! `archproof evonorm`: show a normalization-activation layer, or evaluate layers in an anchor
//! network across batch sizes and seeds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use archproof::evonorm::{self, Anchor, AnchorTraining, Layer};
use archproof::ir::normact::NormActGraph;
use archproof::train;
use clap::Subcommand;
use serde::Serialize;

use super::common::{
    command_line, print_json, refuse_existing, write_file, write_page, OutputFlags,
};
use super::progress::Progress;
use archproof::report::{BandSeries, Figure, Plot, RunPage, Table as ReportTable};

/// Normalization-activation layers (EvoNorms): show one, or evaluate layers.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof evonorm show evonorm-s0
  archproof evonorm show runs/evo/best.json --figure layer.svg --dot layer.dot
  archproof evonorm eval --layer bn-relu,gn-relu,evonorm-b0,evonorm-s0 \\
      --dataset shapes --batch-sizes 4,8,32,128 --seeds 3 --out runs/eval")]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Debug, Subcommand)]
enum Kind {
    Show(ShowArgs),
    Eval(EvalArgs),
}

/// Print a layer as a formula, with its parameters and canonical key.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof evonorm show evonorm-b0
  archproof evonorm show runs/evo/best.json --json")]
struct ShowArgs {
    /// A layer name (bn-relu, gn-relu, evonorm-b0, evonorm-b1, evonorm-s0, evonorm-s1, affine)
    /// or a layer JSON file.
    layer: String,
    /// Write the layer's graph as Graphviz DOT to this file.
    #[arg(long)]
    dot: Option<PathBuf>,
    /// Draw the layer's graph (the nodes its output depends on) to this SVG file.
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Replace the DOT or SVG file.
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Train an anchor network with each layer at several batch sizes and seeds, and report the
/// test accuracy's mean and standard deviation per batch size.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof evonorm eval --layer evonorm-s0 --dataset shapes \\
      --batch-sizes 4,8,32,128 --seeds 3
  archproof evonorm eval --layer runs/evo/best.json,bn-relu --anchor plain \\
      --json")]
struct EvalArgs {
    /// Layers: names or layer JSON files, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    layer: Vec<String>,
    /// The dataset (shapes, mnist-idx:DIR, cifar10-bin:DIR, csv:FILE, npy:DIR).
    #[arg(long, default_value = "shapes")]
    dataset: String,
    /// The anchor network: plain (held out from the search), resnet or mobilenet.
    #[arg(long, default_value = "plain")]
    anchor: String,
    /// Batch sizes to train with.
    #[arg(long, value_delimiter = ',', default_value = "4,8,32,128")]
    batch_sizes: Vec<usize>,
    /// Seeds per batch size (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Passes over the training examples.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Training examples (the first of the training split; 0 for all).
    #[arg(long, default_value_t = 3000)]
    train_examples: usize,
    /// Channels of the anchor's first stage.
    #[arg(long, default_value_t = 16)]
    width: usize,
    /// Adam's learning rate (cosine decay).
    #[arg(long, default_value_t = 0.002)]
    lr: f64,
    /// The back end of the training steps: the kernel engine where it runs every operator
    /// (auto), always the kernels, or always candle.
    #[arg(long, value_enum, default_value = "auto")]
    train_engine: archproof::train::TrainEngine,
    /// Directory for results.json and batch-sizes.svg.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    output: OutputFlags,
}

pub fn run(a: Args) -> Result<ExitCode> {
    match a.kind {
        Kind::Show(s) => show(s),
        Kind::Eval(e) => eval(e),
    }
}

#[derive(Serialize)]
struct Shown {
    name: String,
    formula: String,
    /// Learned values per channel (gamma, beta, and v0 / v1 where used).
    params_per_channel: usize,
    /// Equal for layers that compute the same expression.
    canonical_key: Option<String>,
    graph: Option<NormActGraph>,
}

fn dot(g: &NormActGraph) -> String {
    let live = g.live();
    let mut s = format!("digraph \"{}\" {{\n  rankdir=TB;\n", g.name);
    for (i, name) in ["x", "0", "v0", "v1"].iter().enumerate() {
        if live[i] {
            s.push_str(&format!("  n{i} [label=\"{name}\", shape=box];\n"));
        }
    }
    for (k, n) in g.nodes.iter().enumerate() {
        let id = k + NormActGraph::INITIAL;
        if !live[id] {
            continue;
        }
        s.push_str(&format!("  n{id} [label=\"{:?}\"];\n", n.op));
        for a in &n.args {
            s.push_str(&format!("  n{a} -> n{id};\n"));
        }
    }
    let last = NormActGraph::INITIAL + g.nodes.len() - 1;
    s.push_str(&format!(
        "  out [label=\"* gamma + beta\", shape=box];\n  n{last} -> out;\n}}\n"
    ));
    s
}

/// The live nodes of a layer as labelled DAG nodes, ending in the affine output.
fn figure_nodes(g: &NormActGraph) -> Vec<(String, Vec<usize>)> {
    let live = g.live();
    let mut index = vec![usize::MAX; live.len()];
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, name) in ["x", "0", "v0", "v1"].iter().enumerate() {
        if live[i] {
            index[i] = out.len();
            out.push((name.to_string(), Vec::new()));
        }
    }
    for (k, n) in g.nodes.iter().enumerate() {
        let id = k + NormActGraph::INITIAL;
        if !live[id] {
            continue;
        }
        index[id] = out.len();
        let label = format!("{:?}", n.op).to_lowercase();
        out.push((label, n.args.iter().map(|&a| index[a]).collect()));
    }
    let last = out.len() - 1;
    out.push(("* gamma + beta".into(), vec![last]));
    out
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let layer = evonorm::load(&a.layer).map_err(anyhow::Error::msg)?;
    let (params, key, graph) = match &layer {
        Layer::Graph(g) => (
            g.params_per_channel(),
            Some(format!("{:016x}", evonorm::canonical_key(g))),
            Some(g.clone()),
        ),
        _ => (2, None, None),
    };
    if let Some(path) = &a.figure {
        let Some(g) = &graph else {
            bail!(
                "{} is a pair of standard operators, not a graph of primitives",
                layer.label()
            );
        };
        super::common::refuse_existing(std::slice::from_ref(path), a.force)?;
        Figure::new(
            format!("{}: {}", layer.label(), layer.formula()),
            Plot::Dag {
                nodes: figure_nodes(g),
            },
        )
        .settings(format!(
            "{params} parameters per channel; canonical key {}",
            key.as_deref().unwrap_or("-")
        ))
        .save(path)
        .map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = &a.dot {
        let Some(g) = &graph else {
            bail!(
                "{} is a pair of standard operators, not a graph of primitives",
                layer.label()
            );
        };
        write_file(path, dot(g).as_bytes(), a.force)?;
    }
    let shown = Shown {
        name: layer.label(),
        formula: layer.formula(),
        params_per_channel: params,
        canonical_key: key,
        graph,
    };
    if a.json {
        print_json(&shown)?;
    } else {
        println!("{}", shown.name);
        println!("  y = {}", shown.formula);
        println!("  learned per channel: {}", shown.params_per_channel);
        if let Some(k) = &shown.canonical_key {
            println!("  canonical key: {k}");
        }
        println!("  (every variance includes + 1e-5)");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct BatchResult {
    batch_size: usize,
    accuracy_mean: f64,
    accuracy_std: f64,
    /// Test accuracy (%) per seed.
    accuracies: Vec<f64>,
}

#[derive(Serialize)]
struct LayerResult {
    layer: String,
    formula: String,
    results: Vec<BatchResult>,
}

#[derive(Serialize)]
struct EvalSummary {
    dataset: String,
    anchor: String,
    train_examples: usize,
    test_examples: usize,
    epochs: usize,
    lr: f64,
    width: usize,
    layers: Vec<LayerResult>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt(),
    )
}

fn eval(a: EvalArgs) -> Result<ExitCode> {
    let Some(anchor) = Anchor::parse(&a.anchor) else {
        bail!(
            "unknown anchor '{}' (known: plain, resnet, mobilenet)",
            a.anchor
        );
    };
    if a.batch_sizes.contains(&0) || a.seeds == 0 || a.epochs == 0 || a.width == 0 {
        bail!("--batch-sizes, --seeds, --epochs and --width must be at least 1");
    }
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        bail!("--lr must be a positive number");
    }
    let layers: Vec<Layer> = a
        .layer
        .iter()
        .map(|l| evonorm::load(l).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    if let Some(out) = &a.out {
        refuse_existing(
            &[out.join("results.json"), out.join("batch-sizes.svg")],
            a.output.force,
        )?;
    }
    let mut data = train::data::load(&a.dataset)?;
    if a.train_examples > 0 && a.train_examples < data.train.len() {
        let d = data.input_len();
        data.train.x.truncate(a.train_examples * d);
        data.train.y.truncate(a.train_examples);
    }
    let jobs: Vec<(usize, usize, u64)> = (0..layers.len())
        .flat_map(|l| {
            a.batch_sizes
                .iter()
                .flat_map(move |&b| (0..a.seeds).map(move |s| (l, b, s)))
        })
        .collect();
    let bar = Progress::bar(
        jobs.len() as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} trainings  {msg}  [{elapsed}<{eta}]",
        "trainings",
    );
    use rayon::prelude::*;
    let accs: Vec<f64> = jobs
        .par_iter()
        .map(|&(l, b, s)| {
            let cfg = AnchorTraining {
                width: a.width,
                batch_size: b,
                epochs: a.epochs,
                lr: a.lr,
                engine: a.train_engine,
            };
            let acc = evonorm::train_anchor(&layers[l], anchor, &data, &cfg, s)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{} at batch size {b}", layers[l].label()))?;
            bar.set_message(format!("{} b={b}: {:.1}%", layers[l].label(), 100.0 * acc));
            bar.inc(1);
            Ok(100.0 * acc)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let per = a.batch_sizes.len() * a.seeds as usize;
    let summary = EvalSummary {
        dataset: data.name.clone(),
        anchor: anchor.name().into(),
        train_examples: data.train.len(),
        test_examples: data.test.len(),
        epochs: a.epochs,
        lr: a.lr,
        width: a.width,
        layers: layers
            .iter()
            .enumerate()
            .map(|(l, layer)| LayerResult {
                layer: layer.label(),
                formula: layer.formula(),
                results: a
                    .batch_sizes
                    .iter()
                    .enumerate()
                    .map(|(bi, &b)| {
                        let start = l * per + bi * a.seeds as usize;
                        let v = accs[start..start + a.seeds as usize].to_vec();
                        let (m, sd) = mean_std(&v);
                        BatchResult {
                            batch_size: b,
                            accuracy_mean: m,
                            accuracy_std: sd,
                            accuracies: v,
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
        write_file(
            &out.join("results.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
            true,
        )?;
        let series: Vec<BandSeries> = summary
            .layers
            .iter()
            .map(|l| BandSeries {
                name: l.layer.clone(),
                points: l
                    .results
                    .iter()
                    .map(|r| {
                        (
                            (r.batch_size as f64).log2(),
                            r.accuracy_mean,
                            r.accuracy_std,
                        )
                    })
                    .collect(),
            })
            .collect();
        Figure::new(
            format!(
                "{} anchor on {}: test accuracy against batch size",
                summary.anchor, summary.dataset
            ),
            Plot::Band { series },
        )
        .axes("log2 batch size", "test accuracy (%), mean +- std")
        .settings(format!(
            "{} training examples, {} epochs, width {}, lr {}, seeds 0..{}",
            summary.train_examples,
            a.epochs,
            a.width,
            a.lr,
            a.seeds.saturating_sub(1)
        ))
        .save(&out.join("batch-sizes.svg"))
        .map_err(anyhow::Error::msg)?;
        let mut page = RunPage::new(
            format!("EvoNorm evaluation on the {} anchor", summary.anchor),
            command_line(),
        );
        for (k, v) in [
            ("dataset", summary.dataset.clone()),
            ("anchor", summary.anchor.clone()),
            ("training examples", summary.train_examples.to_string()),
            ("test examples", summary.test_examples.to_string()),
            ("epochs", a.epochs.to_string()),
            ("learning rate", a.lr.to_string()),
            ("width", a.width.to_string()),
            ("seeds", a.seeds.to_string()),
        ] {
            page.setting(k, v);
        }
        let mut header = vec!["layer".to_string(), "formula".to_string()];
        header.extend(a.batch_sizes.iter().map(|b| format!("batch {b}")));
        let mut t = ReportTable {
            caption: "Test accuracy (%), mean +- std over seeds".into(),
            header,
            rows: Vec::new(),
        };
        for l in &summary.layers {
            let mut row = vec![l.layer.clone(), l.formula.clone()];
            row.extend(
                l.results
                    .iter()
                    .map(|r| format!("{:.1} +- {:.1}", r.accuracy_mean, r.accuracy_std)),
            );
            t.row(row);
        }
        page.tables.push(t);
        page.figure(
            "batch-sizes.svg",
            "Test accuracy against batch size, per layer",
        );
        page.file(
            "results.json",
            "every layer's accuracy per batch size and seed",
        );
        write_page(out, &page)?;
    }
    if a.output.json {
        print_json(&summary)?;
    } else {
        println!(
            "{} anchor on {} ({} training, {} test examples, {} epoch(s)); test accuracy, mean +- std of {} seeds:",
            summary.anchor,
            summary.dataset,
            summary.train_examples,
            summary.test_examples,
            summary.epochs,
            a.seeds
        );
        print!("{:<14}", "layer");
        for b in &a.batch_sizes {
            print!(" {:>14}", format!("batch {b}"));
        }
        println!();
        for l in &summary.layers {
            print!("{:<14}", l.layer);
            for r in &l.results {
                print!(
                    " {:>14}",
                    format!("{:.1} +- {:.1}", r.accuracy_mean, r.accuracy_std)
                );
            }
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}
