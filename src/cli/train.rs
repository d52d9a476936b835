//! `archproof train`: train a network from the IR on a dataset with candle, and export it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use archproof::ir::io;
use archproof::report::{Figure, Plot, Series};
use archproof::train::{self, data, export, Model, OptimizerKind, Progress, TrainConfig};
use serde::Serialize;

use super::common::{load_model, print_json, refuse_existing, write_file, OutputFlags};

/// Train a network on a dataset (candle, CPU) and export it as ONNX or IR JSON with weights.
///
/// The model is a zoo name (mlp:64-32, cnn-tiny, resnet-tiny, nb201:<cell>, ...) built for the
/// dataset's input shape and classes, an IR JSON file, or an ONNX model (training starts from
/// the weights such a file carries). Training is seeded: the same seed
/// gives the same weights.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof train --model mlp:64-32 --dataset shapes --epochs 20 \\
      --out nets/shapes-mlp.onnx
  archproof train --model cnn-tiny --dataset shapes --epochs 8 \\
      --out nets/cnn.json
  archproof train --model \\
      'nb201:|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|' \\
      --dataset cifar10-bin:DIR --epochs 12
  archproof train --model resnet-tiny --dataset mnist-idx:DIR --optimizer sgd \\
      --lr 0.05 --json
  archproof train --model nets/cnn.onnx --dataset shapes --epochs 2 \\
      --out nets/cnn-tuned.onnx
  archproof verify --net nets/shapes-mlp.onnx --dataset shapes --index 7 \\
      --eps 0.01")]
pub struct Args {
    /// The network: a zoo name, an IR .json file, or an .onnx model (fine-tuned from its
    /// weights).
    #[arg(long)]
    model: String,
    /// The dataset: shapes[:SIZE] (embedded), mnist-idx:DIR, cifar10-bin:DIR, csv:FILE,
    /// npy:DIR.
    #[arg(long, default_value = "shapes")]
    dataset: String,
    /// Passes over the training split.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Train on at most this many examples, each class in its share of the training split [default: all].
    #[arg(long)]
    train_examples: Option<usize>,
    /// Test on at most this many examples, each class in its share of the test split [default: all].
    #[arg(long)]
    test_examples: Option<usize>,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate [default: 0.001 for adam, 0.05 for sgd].
    #[arg(long)]
    lr: Option<f64>,
    /// adam (AdamW) or sgd (with momentum).
    #[arg(long, value_enum, default_value_t = OptArg::Adam)]
    optimizer: OptArg,
    /// Momentum of sgd.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Keep the learning rate constant (default: cosine decay to 0).
    #[arg(long)]
    no_cosine: bool,
    /// The back end of the steps: the kernel engine where it has a kernel for every
    /// operator (auto), always the kernels, or always candle's autograd.
    #[arg(long, value_enum, default_value = "auto")]
    engine: archproof::train::TrainEngine,
    /// Seed of the initial weights and the example order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the trained network goes: .onnx (ONNX opset 13) or .json (IR with weights).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// The training-curve figure [default: beside --out, as <name>.curves.svg].
    #[arg(long)]
    figure: Option<PathBuf>,
    #[command(flatten)]
    output: OutputFlags,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OptArg {
    Adam,
    Sgd,
}

#[derive(Serialize)]
struct Summary<'a> {
    model: &'a str,
    dataset: data::DatasetInfo,
    config: &'a TrainConfig,
    params: usize,
    test_accuracy: f64,
    train_seconds: f64,
    epochs: &'a [train::EpochStats],
    out: Option<&'a Path>,
    figure: Option<&'a Path>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.epochs == 0 || a.batch_size == 0 {
        bail!("--epochs and --batch-size must be at least 1");
    }
    let lr = a.lr.unwrap_or(match a.optimizer {
        OptArg::Adam => 1e-3,
        OptArg::Sgd => 0.05,
    });
    let ok = lr > 0.0
        && lr.is_finite()
        && a.weight_decay >= 0.0
        && a.weight_decay.is_finite()
        && (0.0..1.0).contains(&a.momentum);
    if !ok {
        bail!("--lr must be positive, --weight-decay nonnegative, --momentum in [0, 1)");
    }
    let out_kind = match &a.out {
        Some(p) => match p.extension().and_then(|e| e.to_str()) {
            Some("onnx") => Some(true),
            Some("json") => Some(false),
            _ => bail!("--out must end in .onnx or .json: {}", p.display()),
        },
        None => None,
    };
    let figure = a
        .figure
        .clone()
        .or_else(|| a.out.as_ref().map(|p| p.with_extension("curves.svg")));
    let mut outputs: Vec<PathBuf> = a.out.iter().cloned().collect();
    outputs.extend(figure.iter().cloned());
    refuse_existing(&outputs, a.output.force)?;

    let ds = data::load(&a.dataset)?.part(a.train_examples, a.test_examples)?;
    let shape = ds
        .shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let graph = if a.model.ends_with(".json") || Path::new(&a.model).exists() {
        load_model(&a.model, None, None)?
    } else {
        load_model(&a.model, Some(&shape), Some(ds.classes))?
    };
    let mut model = Model::new(&graph, a.seed)?;
    let out_classes = graph.analyze()?.output_shape(&graph).numel();
    if out_classes != ds.classes {
        bail!(
            "the model has {out_classes} outputs, the dataset {} classes",
            ds.classes
        );
    }
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr,
        optimizer: match a.optimizer {
            OptArg::Adam => OptimizerKind::Adam,
            OptArg::Sgd => OptimizerKind::Sgd,
        },
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        cosine: !a.no_cosine,
        seed: a.seed,
        engine: a.engine,
    };
    let pb = super::progress::Progress::bar(
        0,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} steps  {msg}  [{elapsed}]",
        "steps",
    );
    let report = train::train(&mut model, &ds, &cfg, &|p| match p {
        Progress::Step(done, total, loss) => {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
            if done % 10 == 0 {
                pb.set_message(format!("loss {loss:.4}"));
            }
        }
        Progress::Epoch(e) => pb.println(format!(
            "epoch {:>3}  loss {:.4}  train {:.2}%  test {:.2}%  ({:.1} s)",
            e.epoch,
            e.train_loss,
            100.0 * e.train_accuracy,
            100.0 * e.test_accuracy,
            e.seconds
        )),
    })?;
    pb.finish_and_clear();

    if let (Some(path), Some(onnx)) = (&a.out, out_kind) {
        let trained = model.to_graph()?;
        let bytes = if onnx {
            export::to_onnx(&trained).map_err(anyhow::Error::msg)?
        } else {
            io::to_json(&trained)?.into_bytes()
        };
        write_file(path, &bytes, a.output.force)?;
    }
    if let Some(fig) = &figure {
        if let Some(dir) = fig.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        }
        let series = vec![
            Series {
                name: "train accuracy".into(),
                points: report
                    .epochs
                    .iter()
                    .map(|e| (e.epoch as f64, e.train_accuracy))
                    .collect(),
            },
            Series {
                name: "test accuracy".into(),
                points: report
                    .epochs
                    .iter()
                    .map(|e| (e.epoch as f64, e.test_accuracy))
                    .collect(),
            },
            Series {
                name: "train loss".into(),
                points: report
                    .epochs
                    .iter()
                    .map(|e| (e.epoch as f64, e.train_loss))
                    .collect(),
            },
        ];
        Figure::new(
            format!("Training curves: {} on {}", graph.name, ds.name),
            Plot::Lines { series },
        )
        .axes("epoch", "accuracy (fraction) / loss (nats)")
        .settings(format!(
            "{:?}, lr {}, batch {}, {} epochs, seed {}",
            cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.seed
        ))
        .save(fig)
        .map_err(anyhow::Error::msg)?;
    }
    if a.output.json {
        print_json(&Summary {
            model: &a.model,
            dataset: ds.info(),
            config: &cfg,
            params: report.params,
            test_accuracy: report.test_accuracy,
            train_seconds: report.train_seconds,
            epochs: &report.epochs,
            out: a.out.as_deref(),
            figure: figure.as_deref(),
        })?;
    } else {
        println!(
            "{} on {}: test accuracy {:.2}% after {} epochs ({} params, {:.1} s)",
            graph.name,
            ds.name,
            100.0 * report.test_accuracy,
            cfg.epochs,
            report.params,
            report.train_seconds
        );
        if let Some(p) = &a.out {
            println!("wrote {}", p.display());
        }
        if let Some(p) = &figure {
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
