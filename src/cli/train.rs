//! `archproof train`: train a network from the IR on a dataset with candle, and export it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use archproof::ir::io;
use archproof::report::{Figure, Plot, Series};
use archproof::train::certified::Certified;
use archproof::train::{self, data, export, Model, OptimizerKind, Progress, TrainConfig};
use serde::Serialize;

use super::common::{load_model, print_json, refuse_existing, write_file, OutputFlags};

/// Train a network on a dataset (candle, CPU) and export it as ONNX or IR JSON with weights.
///
/// The model is a zoo name (mlp:64-32, cnn-tiny, resnet-tiny, nb201:<cell>, nb201-c4n1:<cell>,
/// ...) built for the dataset's input shape and classes, an IR JSON file, or an ONNX model
/// (training starts from the weights such a file carries). Training is seeded: the same seed
/// gives the same weights.
///
/// With --certified ibp or crown-ibp and --eps, the loss mixes the natural cross-entropy with
/// that of the worst logits the bounds allow over the L-infinity ball of radius eps (inputs in
/// [0, 1]): after --warmup-epochs of natural training, eps grows to its target over
/// --ramp-epochs while the natural loss's weight falls to --kappa-end (and CROWN-IBP's weight
/// of CROWN from 1 to 0). Each epoch then also reports the test points the bounds certify;
/// `archproof robustness` measures the verified accuracy with the complete verifier.
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
  archproof train --model resnet-tiny --dataset shapes --epochs 20 \\
      --certified crown-ibp --eps 0.01 --out nets/rt-cert.onnx
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
    /// Certified training: bound the margins by interval bound propagation (ibp) or by
    /// CROWN-IBP (crown-ibp), over the ball of radius --eps.
    #[arg(long, value_enum, requires = "eps")]
    certified: Option<archproof::train::bounds::BoundMethod>,
    /// The L-infinity radius of certified training, in (0, 1].
    #[arg(long, requires = "certified")]
    eps: Option<f64>,
    /// Epochs of natural training before the radius grows [default: a tenth of --epochs, at
    /// least 1 when there are more than 2].
    #[arg(long, requires = "certified")]
    warmup_epochs: Option<f64>,
    /// Epochs over which the radius grows to --eps [default: half of --epochs].
    #[arg(long, requires = "certified")]
    ramp_epochs: Option<f64>,
    /// The natural loss's final weight in [0, 1).
    #[arg(long, requires = "certified", default_value_t = 0.5)]
    kappa_end: f64,
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

    let certified = match (a.certified, a.eps) {
        (Some(method), Some(eps)) => {
            let mut c = Certified::new(method, eps, a.epochs);
            if let Some(w) = a.warmup_epochs {
                c.warmup_epochs = w;
            }
            if let Some(r) = a.ramp_epochs {
                c.ramp_epochs = r;
            }
            c.kappa_end = a.kappa_end;
            c.check(a.epochs)?;
            Some(c)
        }
        _ => None,
    };
    let ds = data::load(&a.dataset)?.part(a.train_examples, a.test_examples)?;
    let shape = archproof::ir::dims_text(&ds.shape);
    let graph = if a.model.ends_with(".json") || Path::new(&a.model).exists() {
        load_model(&a.model, None, None)?
    } else {
        load_model(&a.model, Some(&shape), Some(ds.classes))?
    };
    if let Some(c) = &certified {
        archproof::train::bounds::check_trainable(&graph, c.method)?;
    }
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
        certified,
    };
    if cfg.certified.is_some() && cfg.engine == archproof::train::TrainEngine::Kernels {
        bail!("--certified trains on candle: use --engine auto or candle");
    }
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
            "epoch {:>3}  loss {:.4}  train {:.2}%  test {:.2}%{}  ({:.1} s)",
            e.epoch,
            e.train_loss,
            100.0 * e.train_accuracy,
            100.0 * e.test_accuracy,
            e.certified_accuracy
                .map(|c| format!("  certified {:.2}%", 100.0 * c))
                .unwrap_or_default(),
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
        let mut series = series;
        if let Some(c) = &cfg.certified {
            series.push(Series {
                name: match c.method {
                    archproof::train::bounds::BoundMethod::Ibp => {
                        format!("certified at eps {} (IBP)", c.eps)
                    }
                    archproof::train::bounds::BoundMethod::CrownIbp => {
                        format!("certified at eps {} (IBP; CROWN-IBP at the end)", c.eps)
                    }
                },
                points: report
                    .epochs
                    .iter()
                    .filter_map(|e| Some((e.epoch as f64, e.certified_accuracy?)))
                    .collect(),
            });
        }
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
        if let (Some(c), Some(e)) = (&cfg.certified, report.epochs.last()) {
            if let Some(v) = e.certified_accuracy {
                println!(
                    "certified by {} at eps {}: {:.2}% of the test split (verify with archproof robustness)",
                    c.method.name(),
                    c.eps,
                    100.0 * v
                );
            }
        }
        if let Some(p) = &a.out {
            println!("wrote {}", p.display());
        }
        if let Some(p) = &figure {
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
