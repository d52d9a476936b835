//! `archproof robustness`: local robustness of a trained network at many test points.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use archproof::report::{
    BarSeries, CactusSeries, Figure, Image, Plot, RunPage, Table as ReportTable,
};
use archproof::verify::accuracy::{Query, VerifiedAccuracy};
use archproof::verify::radius::{self, RadiusResult};
use archproof::verify::{self, Engine, Network, Options, Spec, Verdict};
use serde::Serialize;

use super::common::{
    argmax, command_line, print_json, refuse_existing, write_file, write_page, OutputFlags,
};
use super::progress::Progress;

/// Verify the local robustness of a trained network at test points of a dataset.
///
/// For each point, the largest L-infinity radius proven robust and the smallest refuted one
/// (the ball is clipped to [0, 1]). Every counterexample is checked again by a plain forward
/// pass before it is reported, and drawn beside its original. With --eps, every point is also
/// posed at those radii to each engine, and the solve times are drawn as a cactus plot.
///
/// Writes OUT/radii.csv, OUT/proofs/point-K.json (every query and its verdict), radius.svg,
/// counterexamples.svg (when any point was refuted), cactus.svg and cactus.csv (with --eps),
/// and run.json for `archproof report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof train --model mlp:64-32 --dataset shapes --epochs 10 \\
      --out nets/mlp.json
  archproof robustness --net nets/mlp.json --dataset shapes --points 0..16 \\
      --out runs/robust
  archproof robustness --net nets/mlp.json --points 0,5,9 --eps 0.01,0.02 \\
      --engines bounds,bab,smt --out runs/cactus --json
  archproof robustness \\
      --net runs/cert/networks/cand-0123456789abcdef/network.onnx \\
      --split train --points 11000,11001,11002 --eps 0.01 --engines bab \\
      --out runs/recheck")]
pub struct Args {
    /// The network: .onnx, .nnet, or IR .json with weights.
    #[arg(long)]
    net: PathBuf,
    /// The dataset whose test points are verified: shapes[:SIZE], mnist-idx:DIR,
    /// cifar10-bin:DIR, csv:FILE, npy:DIR.
    #[arg(long, default_value = "shapes")]
    dataset: String,
    /// Test points: a range A..B (B excluded) or a comma-separated list.
    #[arg(long, default_value = "0..16")]
    points: String,
    /// The split --points index: test, or train (to re-derive a search's verified accuracy,
    /// which is measured on held-out training examples).
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    /// Seconds for each point's radius search.
    #[arg(long, default_value_t = 8.0)]
    timeout: f64,
    /// Radii at which every point is also posed to each engine (for the cactus plot).
    #[arg(long, value_delimiter = ',')]
    eps: Vec<f64>,
    /// Engines of the cactus plot: bab (branch and bound), bounds (no branching), smt (Z3
    /// alone).
    #[arg(long, value_delimiter = ',', default_value = "bounds,bab")]
    engines: Vec<String>,
    /// Time limit of each cactus query (seconds).
    #[arg(long, default_value_t = 5.0)]
    query_timeout: f64,
    /// Seed of the falsifier.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum SplitArg {
    Test,
    Train,
}

/// One point's result.
#[derive(Debug, Serialize)]
struct PointResult {
    index: usize,
    label: usize,
    predicted: usize,
    /// None when the network misclassifies the point (nothing to verify).
    radius: Option<RadiusResult>,
}

#[derive(Debug, Serialize)]
struct Summary {
    network: String,
    dataset: String,
    /// The split the points index: test, or train.
    split: &'static str,
    points: usize,
    misclassified: usize,
    /// Mean proven radius over the correctly classified points.
    mean_proven_radius: f64,
    refuted: usize,
    /// Per radius of --eps (keyed by it as written): the share of the points classified
    /// correctly and proven robust by some engine; unknown counts as not verified.
    verified_accuracy: std::collections::BTreeMap<String, VerifiedAccuracy>,
    points_detail: Vec<PointResult>,
    /// Every fixed-radius query (point, radius, engine) and its answer.
    queries: Vec<Query>,
}

/// Parses "A..B" or "i,j,k".
fn parse_points(s: &str) -> Result<Vec<usize>> {
    let bad = || anyhow::anyhow!("--points '{s}': give a range A..B or a list like 0,3,7");
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if b <= a {
            bail!("--points '{s}' is empty");
        }
        return Ok((a..b).collect());
    }
    s.split(',')
        .map(|t| t.trim().parse().map_err(|_| bad()))
        .collect()
}

/// Checks a counterexample again with a plain forward pass against the whole spec (inside the
/// clipped ball, the label not strictly largest).
fn confirmed(net: &Network, spec: &Spec, c: &verify::Counterexample) -> bool {
    spec.violated_region(&c.input, &net.forward(&c.input))
        .is_some()
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    if !(a.query_timeout > 0.0 && a.query_timeout.is_finite()) {
        bail!("--query-timeout must be a positive number of seconds");
    }
    if let Some(e) = a.eps.iter().find(|e| !(**e > 0.0 && e.is_finite())) {
        bail!("--eps {e}: radii must be positive");
    }
    let engines: Vec<(String, Engine)> = a
        .engines
        .iter()
        .map(|e| Ok((e.clone(), Engine::parse(e)?)))
        .collect::<Result<_>>()?;
    let points = parse_points(&a.points)?;
    let net = verify::load_network(&a.net)?;
    let ds = archproof::train::data::load(&a.dataset)?;
    if ds.input_len() != net.input_dim() {
        bail!(
            "{} takes {} inputs, {} has {} per point",
            a.net.display(),
            net.input_dim(),
            a.dataset,
            ds.input_len()
        );
    }
    let (split, split_name) = match a.split {
        SplitArg::Test => (&ds.test, "test"),
        SplitArg::Train => (&ds.train, "training"),
    };
    if let Some(&p) = points.iter().find(|&&p| p >= split.len()) {
        bail!(
            "--points: {p} is past the {} {split_name} points",
            split.len()
        );
    }
    refuse_existing(&[a.out.join("radii.csv")], a.output.force)?;
    std::fs::create_dir_all(a.out.join("proofs")).with_context(|| a.out.display().to_string())?;
    let clip = Some((0.0, 1.0));
    let n_queries = points.len() * (1 + a.eps.len() * engines.len());
    let progress = Progress::bar(
        n_queries as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} queries  {msg}  [{elapsed}<{eta}]",
        "queries",
    );
    let base = Options {
        timeout: Duration::from_secs_f64(a.query_timeout),
        engine: Engine::Bab,
        seed: a.seed,
        record_smt: false,
        ..Options::default()
    };
    let mut results = Vec::new();
    let mut queries = Vec::new();
    for &i in &points {
        let x: Vec<f64> = split.input(i).iter().map(|&v| v as f64).collect();
        let label = split.y[i] as usize;
        let predicted = argmax(&net.forward(&x));
        progress.set_message(format!("point {i}"));
        let radius = if predicted == label {
            let mut r = radius::max_radius(
                &net,
                &x,
                label,
                clip,
                &base,
                Duration::from_secs_f64(a.timeout),
            )?;
            if let (Some(e), Some(c)) = (r.refuted, &r.counterexample) {
                let spec = Spec::robustness(&x, e, label, net.output_dim(), clip);
                if !confirmed(&net, &spec, c) {
                    // Never report what a forward pass does not confirm.
                    r.counterexample = None;
                    r.refuted = None;
                }
            }
            write_file(
                &a.out.join("proofs").join(format!("point-{i}.json")),
                serde_json::to_string_pretty(&r)?.as_bytes(),
                true,
            )?;
            Some(r)
        } else {
            None
        };
        progress.inc(1);
        for &eps in &a.eps {
            for (name, engine) in &engines {
                if predicted != label {
                    progress.inc(1);
                    continue;
                }
                let mut o = base.clone();
                o.engine = *engine;
                queries.push(Query::run(&net, i, &x, label, eps, name, &o)?);
                progress.inc(1);
            }
        }
        results.push(PointResult {
            index: i,
            label,
            predicted,
            radius,
        });
    }
    progress.finish_and_clear();

    let verified: Vec<&RadiusResult> = results.iter().filter_map(|r| r.radius.as_ref()).collect();
    // A point refuted at one radius and proven at a larger one would be a verifier bug.
    archproof::verify::accuracy::check_nested(&queries)?;
    let classified: Vec<(usize, bool)> = results
        .iter()
        .map(|r| (r.index, r.radius.is_some()))
        .collect();
    let summary = Summary {
        network: a.net.display().to_string(),
        dataset: ds.name.clone(),
        split: match a.split {
            SplitArg::Test => "test",
            SplitArg::Train => "train",
        },
        points: points.len(),
        misclassified: results.iter().filter(|r| r.radius.is_none()).count(),
        mean_proven_radius: verified.iter().map(|r| r.proven_robust).sum::<f64>()
            / verified.len().max(1) as f64,
        refuted: verified.iter().filter(|r| r.refuted.is_some()).count(),
        verified_accuracy: a
            .eps
            .iter()
            .map(|&e| {
                Ok((
                    e.to_string(),
                    VerifiedAccuracy::tally(e, &classified, &queries)?,
                ))
            })
            .collect::<Result<_>>()?,
        points_detail: results,
        queries,
    };
    write_outputs(&a, &ds, &summary, &engines)?;
    if a.output.json {
        print_json(&summary)?;
    } else {
        println!(
            "{} points of {}: {} misclassified, mean proven radius {:.4}, {} refuted with checked counterexamples",
            summary.points, summary.dataset, summary.misclassified, summary.mean_proven_radius, summary.refuted
        );
        for v in summary.verified_accuracy.values() {
            println!(
                "  eps {}: verified accuracy {:.1}% ({} proven, {} refuted, {} unknown, {} misclassified)",
                v.eps,
                100.0 * v.accuracy,
                v.verified,
                v.falsified,
                v.unknown,
                v.misclassified
            );
        }
        for r in &summary.points_detail {
            match &r.radius {
                None => println!(
                    "  #{:<4} label {} predicted {}: misclassified",
                    r.index, r.label, r.predicted
                ),
                Some(x) => println!(
                    "  #{:<4} label {}: proven robust to {:.5}{}",
                    r.index,
                    r.label,
                    x.proven_robust,
                    x.refuted
                        .map(|e| format!(", refuted at {e:.5}"))
                        .unwrap_or_default()
                ),
            }
        }
        println!(
            "written {}/{{radii.csv,radius.svg,proofs/,run.json}}",
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_outputs(
    a: &Args,
    ds: &archproof::train::Dataset,
    s: &Summary,
    engines: &[(String, Engine)],
) -> Result<()> {
    let mut csv = String::from("index,label,predicted,proven_robust,refuted,queries,seconds\n");
    for r in &s.points_detail {
        match &r.radius {
            Some(x) => csv.push_str(&format!(
                "{},{},{},{},{},{},{:.3}\n",
                r.index,
                r.label,
                r.predicted,
                x.proven_robust,
                x.refuted.map(|e| e.to_string()).unwrap_or_default(),
                x.steps.len(),
                x.seconds
            )),
            None => csv.push_str(&format!("{},{},{},,,0,0\n", r.index, r.label, r.predicted)),
        }
    }
    write_file(&a.out.join("radii.csv"), csv.as_bytes(), true)?;
    let settings = format!(
        "{} on {} test points of {}; {} s per point; falsifier seed {}",
        a.net
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        s.points,
        s.dataset,
        a.timeout,
        a.seed
    );
    let name = |r: &PointResult| format!("#{} ({})", r.index, class_name(ds, r.label));
    Figure::new(
        "Robustness radius per test point (L-infinity, inputs in [0, 1])",
        Plot::Bars {
            categories: s.points_detail.iter().map(name).collect(),
            series: vec![
                BarSeries {
                    name: "proven robust".into(),
                    values: s
                        .points_detail
                        .iter()
                        .map(|r| Some(r.radius.as_ref().map_or(0.0, |x| x.proven_robust)))
                        .collect(),
                },
                BarSeries {
                    name: "refuted (checked counterexample)".into(),
                    values: s
                        .points_detail
                        .iter()
                        .map(|r| r.radius.as_ref().and_then(|x| x.refuted))
                        .collect(),
                },
            ],
        },
    )
    .axes("test point (true class)", "radius (input units)")
    .settings(settings.clone())
    .save(&a.out.join("radius.svg"))
    .map_err(anyhow::Error::msg)?;

    let (c, h, w) = match ds.shape.as_slice() {
        [c, h, w] => (*c, *h, *w),
        [h, w] => (1, *h, *w),
        [n] => (1, 1, *n),
        _ => (1, 1, ds.input_len()),
    };
    let mut rows = Vec::new();
    for r in &s.points_detail {
        let Some(x) = &r.radius else { continue };
        let (Some(eps), Some(cex)) = (x.refuted, &x.counterexample) else {
            continue;
        };
        let split = match a.split {
            SplitArg::Test => &ds.test,
            SplitArg::Train => &ds.train,
        };
        let orig: Vec<f64> = split.input(r.index).iter().map(|&v| v as f64).collect();
        let adv_class = argmax(&cex.output);
        let diff: Vec<f64> = cex.input.iter().zip(&orig).map(|(p, q)| p - q).collect();
        let image = |label: String, pixels: Vec<f64>, range: (f64, f64)| Image {
            label,
            channels: c,
            height: h,
            width: w,
            pixels,
            range,
        };
        rows.push(vec![
            image(
                format!("#{}: {}", r.index, class_name(ds, r.label)),
                orig,
                (0.0, 1.0),
            ),
            image(
                format!("eps {eps:.4}: {}", class_name(ds, adv_class)),
                cex.input.clone(),
                (0.0, 1.0),
            ),
            image("difference (+-eps)".into(), diff, (-eps, eps)),
        ]);
        if rows.len() == SHOWN_COUNTEREXAMPLES {
            break;
        }
    }
    let mut page = RunPage::new(
        format!("Robustness of {} test points", s.points),
        command_line(),
    );
    page.summary.push(format!(
        "{} of {} points classified correctly; mean proven radius {:.4}; {} refuted with counterexamples a forward pass confirms.",
        s.points - s.misclassified,
        s.points,
        s.mean_proven_radius,
        s.refuted
    ));
    page.setting("network", &s.network);
    page.setting("dataset", &s.dataset);
    page.setting("points", &a.points);
    page.setting("seconds per point", a.timeout);
    page.setting("falsifier seed", a.seed);
    let mut t = ReportTable::new(
        "Radius per point",
        &[
            "point",
            "class",
            "predicted",
            "proven robust",
            "refuted at",
            "queries",
            "seconds",
            "proof log",
        ],
    );
    for r in &s.points_detail {
        let (p, f, q, sec, log) = match &r.radius {
            Some(x) => (
                format!("{:.5}", x.proven_robust),
                x.refuted.map(|e| format!("{e:.5}")).unwrap_or("-".into()),
                x.steps.len().to_string(),
                format!("{:.2}", x.seconds),
                format!("proofs/point-{}.json", r.index),
            ),
            None => (
                "misclassified".into(),
                "-".into(),
                "0".into(),
                "0".into(),
                "-".into(),
            ),
        };
        t.row(vec![
            r.index.to_string(),
            class_name(ds, r.label),
            class_name(ds, r.predicted),
            p,
            f,
            q,
            sec,
            log,
        ]);
    }
    page.tables.push(t);
    page.figure("radius.svg", "Proven and refuted radius per test point");
    if !rows.is_empty() {
        let refuted = s.refuted;
        let title = if refuted > rows.len() {
            format!(
                "Counterexamples beside their originals: the first {} of {refuted} refuted points",
                rows.len()
            )
        } else {
            "Counterexamples beside their originals".to_string()
        };
        Figure::new(title, Plot::Images { rows })
            .settings(settings.clone())
            .save(&a.out.join("counterexamples.svg"))
            .map_err(anyhow::Error::msg)?;
        page.figure(
            "counterexamples.svg",
            "Original, counterexample (class the network gives it) and their difference",
        );
    }
    if !a.eps.is_empty() {
        let mut csv = String::from("index,eps,engine,verdict,seconds,reason\n");
        for q in &s.queries {
            csv.push_str(&format!(
                "{},{},{},{:?},{:.4},\"{}\"\n",
                q.index,
                q.eps,
                q.engine,
                q.verdict,
                q.seconds,
                q.reason.as_deref().unwrap_or("").replace('"', "'")
            ));
        }
        write_file(&a.out.join("cactus.csv"), csv.as_bytes(), true)?;
        let posed = s.queries.len() / engines.len().max(1);
        let series: Vec<CactusSeries> = engines
            .iter()
            .map(|(name, _)| CactusSeries {
                name: name.clone(),
                solved_seconds: s
                    .queries
                    .iter()
                    .filter(|q| &q.engine == name && q.verdict != Verdict::Unknown)
                    .map(|q| q.seconds)
                    .collect(),
                published: false,
            })
            .collect();
        let mut t = ReportTable::new(
            "Engines on the fixed-radius queries",
            &["engine", "solved", "holds", "violated", "total seconds"],
        );
        for (name, _) in engines {
            let mine: Vec<&Query> = s.queries.iter().filter(|q| &q.engine == name).collect();
            let count = |v: Verdict| mine.iter().filter(|q| q.verdict == v).count();
            t.row(vec![
                name.clone(),
                format!("{}/{}", mine.len() - count(Verdict::Unknown), mine.len()),
                count(Verdict::Holds).to_string(),
                count(Verdict::Violated).to_string(),
                format!("{:.2}", mine.iter().map(|q| q.seconds).sum::<f64>()),
            ]);
        }
        page.tables.push(t);
        Figure::new(
            "Robustness queries solved against cumulative time",
            Plot::Cactus {
                series,
                instances: posed,
            },
        )
        .axes("queries solved", "cumulative time (s)")
        .settings(format!(
            "{} points x radii {:?}; {} s per query; seed {}",
            s.points - s.misclassified,
            a.eps,
            a.query_timeout,
            a.seed
        ))
        .save(&a.out.join("cactus.svg"))
        .map_err(anyhow::Error::msg)?;
        page.figure(
            "cactus.svg",
            "Queries solved against cumulative time, per engine",
        );
        page.file(
            "cactus.csv",
            "every fixed-radius query: engine, verdict, seconds",
        );
    }
    page.file("radii.csv", "radius per point");
    page.file(
        "proofs",
        "proof logs: every query of each point's radius search",
    );
    write_page(&a.out, &page)
}

/// Refuted points drawn in counterexamples.svg (the first ones; the title says how many of
/// how many).
const SHOWN_COUNTEREXAMPLES: usize = 6;

fn class_name(ds: &archproof::train::Dataset, c: usize) -> String {
    ds.class_names
        .get(c)
        .cloned()
        .unwrap_or_else(|| c.to_string())
}
