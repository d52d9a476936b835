//! `archproof search evonorm`: evolve normalization-activation layers on the study engine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use archproof::evonorm::search::{
    LayerEvaluator, LayerSpace, Rejection, REJECTED_QUALITY, REJECTED_STABILITY,
};
use archproof::evonorm::{Anchor, AnchorTraining};
use archproof::search::{Attach, Outcome, ParetoTournament, Study, StudyConfig};
use archproof::train;
use serde::{Deserialize, Serialize};

use super::common::{command_line, print_json, write_file, write_page, OutputFlags, StoreFlags};
use super::progress::Progress;
use archproof::report::{Figure, Plot, RunPage, Series, Table as ReportTable};

/// Evolve normalization-activation layers from primitive operations (EvoNorms).
///
/// Each layer is checked for stability (gradient ascent on its parameters must not drive the
/// gradient norm past a bound), then trained briefly in a ResNet-like and a MobileNetV2-like
/// anchor and judged on held-out validation examples; a layer under the accuracy threshold on
/// any anchor is rejected. Selection is a tournament with aging whose winner is drawn from the
/// Pareto front of the anchors' accuracies. Every trial is committed to OUT/study.sqlite.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof search evonorm --dataset shapes --population 64 --trials 2000 \\
      --out runs/evo
  archproof search evonorm --resume runs/evo
  archproof evonorm show runs/evo/best.json")]
pub struct EvonormArgs {
    /// The dataset (shapes, mnist-idx:DIR, cifar10-bin:DIR, csv:FILE, npy:DIR).
    #[arg(long)]
    dataset: Option<String>,
    /// Population (aging window) size.
    #[arg(long)]
    population: Option<usize>,
    /// Tournament size.
    #[arg(long)]
    sample: Option<usize>,
    /// Trials to run in all.
    #[arg(long)]
    trials: Option<usize>,
    /// Trials proposed together and evaluated in parallel.
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// Training examples per anchor (the first of the training split).
    #[arg(long)]
    train_examples: Option<usize>,
    /// Validation examples (the last of the training split).
    #[arg(long)]
    valid_examples: Option<usize>,
    /// Examples per training step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Accuracy (%) under which a layer is rejected on any anchor.
    #[arg(long)]
    min_accuracy: Option<f64>,
    /// The back end of the anchors' training steps [default: auto, the kernel engine where
    /// it runs every operator, else candle].
    #[arg(long, value_enum)]
    train_engine: Option<archproof::train::TrainEngine>,
    /// Directory of the study: study.sqlite, summary.json, best.json, progress.svg,
    /// rejections.svg.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the study in this directory with its stored settings.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    output: OutputFlags,
}

/// The settings stored with the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    dataset: String,
    population: usize,
    sample: usize,
    trials: usize,
    batch: usize,
    seed: u64,
    train_examples: usize,
    valid_examples: usize,
    training: AnchorTraining,
    rejection: Rejection,
    initial_len: usize,
    max_len: usize,
}

impl Settings {
    fn from_args(a: &EvonormArgs) -> Settings {
        Settings {
            dataset: a.dataset.clone().unwrap_or_else(|| "shapes".into()),
            population: a.population.unwrap_or(64),
            sample: a.sample.unwrap_or(8),
            trials: a.trials.unwrap_or(2000),
            batch: a.batch.unwrap_or(2),
            seed: a.seed.unwrap_or(0),
            train_examples: a.train_examples.unwrap_or(1000),
            valid_examples: a.valid_examples.unwrap_or(500),
            training: AnchorTraining {
                width: 8,
                batch_size: a.batch_size.unwrap_or(16),
                epochs: 1,
                lr: 0.003,
                engine: a.train_engine.unwrap_or_default(),
            },
            rejection: Rejection {
                min_accuracy: a.min_accuracy.map_or(0.3, |p| p / 100.0),
                ..Rejection::default()
            },
            initial_len: 6,
            max_len: 14,
        }
    }

    fn check(&self) -> Result<()> {
        if self.population == 0 || self.sample == 0 || self.trials == 0 || self.batch == 0 {
            bail!("--population, --sample, --trials and --batch must be at least 1");
        }
        if self.training.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.rejection.min_accuracy) {
            bail!("--min-accuracy is a percentage between 0 and 100");
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Ranked {
    trial: u64,
    name: String,
    formula: String,
    mean_accuracy: f64,
    accuracies: std::collections::BTreeMap<String, f64>,
}

#[derive(Serialize)]
struct Summary {
    trials: usize,
    evaluated: usize,
    rejected_quality: usize,
    rejected_stability: usize,
    failed_other: usize,
    strategy: String,
    evaluator: String,
    seed: u64,
    /// The best layers by mean validation accuracy over the anchors.
    best: Vec<Ranked>,
    /// Best mean accuracy after each trial.
    best_so_far: Vec<f64>,
}

pub fn run(a: EvonormArgs) -> Result<ExitCode> {
    let out = a.out.clone().or_else(|| a.resume.clone());
    let Some((storage, name, shared)) = a.store.target(out.as_deref())? else {
        bail!(
            "--out DIR is required (where the study is stored), or --resume DIR, or --storage URL"
        );
    };
    let settings = if a.resume.is_some() {
        let header = storage.open_existing(&name)?.existing_header()?;
        let s: Settings = serde_json::from_value(header.settings)
            .with_context(|| format!("{storage} (study {name}): not an EvoNorm search"))?;
        Settings {
            trials: a.trials.unwrap_or(s.trials),
            ..s
        }
    } else {
        Settings::from_args(&a)
    };
    settings.check()?;
    let data = train::data::load(&settings.dataset)?;
    let evaluator = LayerEvaluator::new(
        vec![Anchor::Resnet, Anchor::Mobilenet],
        &data,
        settings.train_examples,
        settings.valid_examples,
        settings.training.clone(),
        settings.rejection.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let space = LayerSpace {
        initial_len: settings.initial_len,
        max_len: settings.max_len,
    };
    let strategy = ParetoTournament {
        metrics: vec!["acc_resnet".into(), "acc_mobilenet".into()],
        population: settings.population,
        sample: settings.sample,
    };
    let config = StudyConfig {
        seed: settings.seed,
        max_trials: settings.trials,
        budget: None,
        batch: settings.batch,
    };
    let mode = match (a.resume.is_some(), shared, a.output.force) {
        (true, _, _) => Attach::Resume,
        // A shared study is joined: --force only replaces output files (`study delete`
        // starts a shared study over).
        (false, true, _) => Attach::Join,
        (false, _, force) => Attach::Create { force },
    };
    let study = Study::new(&space, &strategy, &evaluator, config)?.attach(
        &storage,
        &name,
        serde_json::to_value(&settings)?,
        mode,
        a.store.options(),
    )?;
    let already = study.finished_so_far()?;
    let bar = Progress::bar(
        settings.trials as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} layers  {msg}  [{elapsed}<{eta}]",
        "layers",
    );
    bar.set_position(already as u64);
    let result = study.run(&|t| {
        bar.inc(1);
        match &t.outcome {
            Outcome::Done(e) => bar.set_message(format!("last {:.1}%", e.fitness)),
            Outcome::Failed(m) => bar.set_message(m.split(':').next().unwrap_or("").to_string()),
        }
    })?;
    bar.finish_and_clear();

    let count = |p: &str| {
        result
            .trials
            .iter()
            .filter(|t| matches!(&t.outcome, Outcome::Failed(m) if m.starts_with(p)))
            .count()
    };
    let (rq, rs) = (count(REJECTED_QUALITY), count(REJECTED_STABILITY));
    let failed = result
        .trials
        .iter()
        .filter(|t| t.fitness().is_none())
        .count();
    let mut done: Vec<_> = result
        .trials
        .iter()
        .filter(|t| t.fitness().is_some())
        .collect();
    done.sort_by(|x, y| {
        y.fitness()
            .unwrap_or(0.0)
            .total_cmp(&x.fitness().unwrap_or(0.0))
    });
    let mut best = f64::NEG_INFINITY;
    let best_so_far: Vec<f64> = result
        .trials
        .iter()
        .map(|t| {
            best = best.max(t.fitness().unwrap_or(f64::NEG_INFINITY));
            best
        })
        .collect();
    let header = study.header(serde_json::Value::Null);
    let summary = Summary {
        trials: result.trials.len(),
        evaluated: done.len(),
        rejected_quality: rq,
        rejected_stability: rs,
        failed_other: failed - rq - rs,
        strategy: header.strategy.clone(),
        evaluator: header.evaluator.clone(),
        seed: settings.seed,
        best: done
            .iter()
            .take(5)
            .map(|t| Ranked {
                trial: t.id,
                name: t.candidate.name.clone(),
                formula: t.candidate.formula(),
                mean_accuracy: t.fitness().unwrap_or(f64::NAN),
                accuracies: match &t.outcome {
                    Outcome::Done(e) => e
                        .metrics
                        .iter()
                        .filter(|(k, _)| k.starts_with("acc_"))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                    Outcome::Failed(_) => Default::default(),
                },
            })
            .collect(),
        best_so_far,
    };
    if let Some(out) = &out {
        write_outputs(
            out,
            &summary,
            done.first().map(|t| &t.candidate),
            &result.trials,
        )?;
    }
    if a.output.json {
        print_json(&summary)?;
    } else {
        print_human(&summary, out.as_deref());
    }
    Ok(ExitCode::SUCCESS)
}

/// The run folder: summary, best layer, figures and the run page.
fn write_outputs(
    out: &Path,
    summary: &Summary,
    best: Option<&archproof::ir::normact::NormActGraph>,
    trials: &[archproof::search::Trial<archproof::ir::normact::NormActGraph>],
) -> Result<()> {
    write_file(
        &out.join("summary.json"),
        serde_json::to_string_pretty(summary)?.as_bytes(),
        true,
    )?;
    if let Some(best) = best {
        write_file(
            &out.join("best.json"),
            serde_json::to_string_pretty(best)?.as_bytes(),
            true,
        )?;
    }
    progress_figure(&out.join("progress.svg"), summary)?;
    rejections_figure(
        &out.join("rejections.svg"),
        trials,
        format!(
            "{}; {}; seed {}",
            summary.strategy, summary.evaluator, summary.seed
        ),
    )?;
    write_page(out, &page(summary))?;
    Ok(())
}

fn progress_figure(path: &Path, s: &Summary) -> Result<()> {
    let mut points = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for (i, &b) in s.best_so_far.iter().enumerate() {
        if b > last && b.is_finite() {
            points.push(((i + 1) as f64, b));
            last = b;
        }
    }
    Figure::new(
        format!(
            "EvoNorm search: {} layers, {} rejected for quality, {} for stability",
            s.trials, s.rejected_quality, s.rejected_stability
        ),
        Plot::Steps {
            series: vec![Series {
                name: "best so far".into(),
                points,
            }],
            x_end: s.trials as f64,
        },
    )
    .axes(
        "trials",
        "best mean validation accuracy over the anchors (%)",
    )
    .settings(format!("{}; {}; seed {}", s.strategy, s.evaluator, s.seed))
    .save(path)
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// rejections.svg: how many layers were evaluated and rejected by each protocol, against
/// trials.
fn rejections_figure(
    path: &Path,
    trials: &[archproof::search::Trial<archproof::ir::normact::NormActGraph>],
    settings: String,
) -> Result<()> {
    let kinds = [
        ("evaluated", None),
        ("rejected for quality", Some(REJECTED_QUALITY)),
        ("rejected for stability", Some(REJECTED_STABILITY)),
    ];
    let series: Vec<Series> = kinds
        .iter()
        .map(|(name, prefix)| {
            let mut n = 0.0;
            let points = trials
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let hit = match (&t.outcome, prefix) {
                        (Outcome::Done(_), None) => true,
                        (Outcome::Failed(m), Some(p)) => m.starts_with(p),
                        _ => false,
                    };
                    n += hit as u8 as f64;
                    ((i + 1) as f64, n)
                })
                .collect();
            Series {
                name: name.to_string(),
                points,
            }
        })
        .collect();
    Figure::new(
        "EvoNorm search: layers evaluated and rejected by each protocol",
        Plot::Lines { series },
    )
    .axes("trials", "layers (cumulative count)")
    .settings(settings)
    .save(path)
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The report page of a search.
fn page(s: &Summary) -> RunPage {
    let mut page = RunPage::new("EvoNorm search", command_line());
    page.summary.push(format!(
        "{} layers: {} evaluated, {} rejected for quality, {} for stability.",
        s.trials, s.evaluated, s.rejected_quality, s.rejected_stability
    ));
    page.setting("strategy", &s.strategy);
    page.setting("evaluator", &s.evaluator);
    page.setting("seed", s.seed);
    let mut t = ReportTable::new(
        "Best layers by mean validation accuracy over the anchors",
        &[
            "trial",
            "layer",
            "formula",
            "mean accuracy (%)",
            "per anchor (%)",
        ],
    );
    for r in &s.best {
        t.row(vec![
            r.trial.to_string(),
            r.name.clone(),
            r.formula.clone(),
            format!("{:.1}", r.mean_accuracy),
            r.accuracies
                .iter()
                .map(|(k, v)| format!("{} {v:.1}", k.trim_start_matches("acc_")))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    page.tables.push(t);
    page.figure(
        "progress.svg",
        "Best mean validation accuracy after each trial",
    );
    page.figure(
        "rejections.svg",
        "Layers evaluated and rejected by each protocol",
    );
    if !s.best.is_empty() {
        page.file(
            "best.json",
            "the best layer (a graph of primitives; evonorm show/eval read it)",
        );
    } else {
        page.summary
            .push("No layer passed both rejection protocols: run more trials.".into());
    }
    page.file("summary.json", "the search's summary");
    page.file(
        "study.sqlite",
        "every trial (SQLite; resumable with --resume)",
    );
    page
}

fn print_human(s: &Summary, out: Option<&Path>) {
    println!(
        "{} layers: {} evaluated, {} rejected for quality, {} for stability{}",
        s.trials,
        s.evaluated,
        s.rejected_quality,
        s.rejected_stability,
        if s.failed_other > 0 {
            format!(", {} failed otherwise", s.failed_other)
        } else {
            String::new()
        }
    );
    for r in &s.best {
        let accs: Vec<String> = r
            .accuracies
            .iter()
            .map(|(k, v)| format!("{} {v:.1}%", k.trim_start_matches("acc_")))
            .collect();
        println!(
            "  {:.1}% ({})  {}",
            r.mean_accuracy,
            accs.join(", "),
            r.formula
        );
    }
    // best.json only exists when a layer passed both protocols.
    let best = if s.best.is_empty() { "" } else { "best.json," };
    if let Some(out) = out {
        println!(
            "  written     {}/{{summary.json,{best}progress.svg,rejections.svg}}",
            out.display()
        );
    }
}
