//! What a cell search leaves in its run folder: summary.json (or runs.json), best.json, the
//! figures (progress.svg, pareto.svg) and the run page, drawn with [`crate::report`].

use std::path::Path;

use super::metric;
use super::search::{CellSearchError, CellSettings, ManySummary, Setup, Summary};
use super::{CellSpace, CellsError};
use crate::files;
use crate::ir::io;
use crate::report::{BandSeries, Figure, Plot, RunPage, Series, Table as ReportTable};
use crate::search::pareto::{self, Objective, ReachableFront};
use crate::search::Trial;

/// The strategy's name without its settings (`rea(population=10,...)` -> `rea`).
fn short(described: &str) -> &str {
    described.split('(').next().unwrap_or("").trim()
}

/// Writes one search's run folder: summary.json, best.json, progress.svg, pareto.svg (two
/// objectives) and the run page. Files of an earlier run are replaced: the study in the
/// folder was created (or resumed) under the caller's `--force` rule.
pub fn write_single<S: CellSpace>(
    out: &Path,
    summary: &Summary,
    trials: &[Trial<S::Candidate>],
    settings: &CellSettings,
    setup: &Setup<S>,
    command: &str,
) -> Result<(), CellSearchError> {
    let objectives = settings.objectives();
    let two = objectives.len() == 2;
    if two {
        pareto_figure(
            &out.join("pareto.svg"),
            trials,
            &objectives,
            setup.reachable.as_ref(),
            summary,
        )?;
    }
    let verified = settings.verified_radii()?;
    if let Some((written, _)) = verified.first() {
        verified_figure(&out.join("verified.svg"), trials, written, summary)?;
    }
    if !summary.verified_curves.is_empty() {
        curves_figure(&out.join("verified-eps.svg"), summary)?;
    }
    let json = serde_json::to_string_pretty(summary).expect("a summary serialises");
    files::write_atomic(&out.join("summary.json"), json.as_bytes(), true)?;
    if let Some(g) = summary.best_network(&setup.space)? {
        files::write_atomic(&out.join("best.json"), io::to_json(&g)?.as_bytes(), true)?;
    }
    best_so_far_figure(&out.join("progress.svg"), summary)?;
    let mut page = single_page(summary, two, command);
    if !verified.is_empty() {
        page.figure(
            "verified.svg",
            "Clean against verified accuracy of every trained and verified candidate",
        );
        page.file(
            "networks",
            "each verified candidate's trained network and its verification",
        );
    }
    if !summary.verified_curves.is_empty() {
        page.figure(
            "verified-eps.svg",
            "Verified accuracy against the radius of each member of the front",
        );
    }
    page.write(out)?;
    Ok(())
}

/// pareto.svg: every evaluated candidate, the search's front and, with a table, the table's
/// own front (accuracy up, the cost objective along x).
fn pareto_figure<C>(
    path: &Path,
    trials: &[Trial<C>],
    objectives: &[Objective],
    reachable: Option<&ReachableFront>,
    summary: &Summary,
) -> Result<(), CellSearchError> {
    // Plot coordinates: (cost objective as written, accuracy).
    let plot = |v: &[f64]| {
        (
            objectives[1].as_written(v[1]),
            objectives[0].as_written(v[0]),
        )
    };
    let pts: Vec<Vec<f64>> = trials
        .iter()
        .filter_map(|t| pareto::oriented(objectives, t))
        .collect();
    let mut fronts = vec![Series {
        name: "search's front".into(),
        points: pareto::front(&pts).iter().map(|&i| plot(&pts[i])).collect(),
    }];
    if let Some(t) = reachable.map(|t| &t.points) {
        fronts.push(Series {
            name: "table's front".into(),
            points: pareto::front(t).iter().map(|&i| plot(&t[i])).collect(),
        });
    }
    let ratio = summary
        .pareto
        .as_ref()
        .and_then(|p| p.hypervolume_ratio)
        .map(|r| format!(", hypervolume {:.1}% of the table's", 100.0 * r))
        .unwrap_or_default();
    Figure::new(
        format!(
            "{}: {} trials{ratio}",
            short(&summary.strategy),
            summary.trials
        ),
        Plot::Pareto {
            evaluated: pts.iter().map(|v| plot(v)).collect(),
            fronts,
        },
    )
    .axes(
        metric_axis(objectives[1].name()),
        format!("fitness: {}", short(&summary.evaluator)),
    )
    .settings(format!(
        "{} with {}, seed {}",
        summary.space, summary.evaluator, summary.seed
    ))
    .save(path)?;
    Ok(())
}

/// verified.svg: every trained and verified candidate's clean (held-out) accuracy against its
/// verified accuracy at the first radius of the objectives, with the front of the two.
fn verified_figure<C>(
    path: &Path,
    trials: &[Trial<C>],
    eps: &str,
    summary: &Summary,
) -> Result<(), CellSearchError> {
    let name = metric::verified(eps);
    let pts: Vec<Vec<f64>> = trials
        .iter()
        .filter_map(|t| Some(vec![t.fitness()?, t.metric(&name)?]))
        .collect();
    let plot = |v: &Vec<f64>| (v[0], v[1]);
    Figure::new(
        format!(
            "Clean against verified accuracy at eps {eps}: {} trials",
            pts.len()
        ),
        Plot::Pareto {
            evaluated: pts.iter().map(plot).collect(),
            fronts: vec![Series {
                name: "front".into(),
                points: pareto::front(&pts).iter().map(|&i| plot(&pts[i])).collect(),
            }],
        },
    )
    .axes(
        format!(
            "clean accuracy on held-out points (%): {}",
            short(&summary.evaluator)
        ),
        format!("verified accuracy at eps {eps} (%)"),
    )
    .settings(format!(
        "{} with {}, seed {}",
        summary.space, summary.evaluator, summary.seed
    ))
    .save(path)?;
    Ok(())
}

/// verified-eps.svg: each front member's verified accuracy against the radius. Query time
/// limits are wall-clock, so a radius measured under another load may sit off the line.
fn curves_figure(path: &Path, summary: &Summary) -> Result<(), CellSearchError> {
    let series = summary
        .verified_curves
        .iter()
        .map(|c| Series {
            name: format!(
                "trial {}{}",
                c.trial,
                summary
                    .pareto
                    .as_ref()
                    .and_then(|p| p.front.iter().find(|t| t.trial == c.trial))
                    .and_then(|t| t.metrics.get("params_m"))
                    .map(|p| format!(" ({:.1} k params)", 1000.0 * p))
                    .unwrap_or_default()
            ),
            points: c
                .curve
                .iter()
                .map(|v| (v.eps, 100.0 * v.accuracy))
                .collect(),
        })
        .collect();
    Figure::new(
        format!(
            "Verified accuracy against the radius: {} front members",
            summary.verified_curves.len()
        ),
        Plot::Lines { series },
    )
    .axes(
        "L-infinity radius eps (inputs in [0, 1])",
        "verified accuracy on held-out points (%)",
    )
    .settings(format!(
        "{} with {}, seed {}; the objectives' radii as the search measured them, the others after it",
        summary.space, summary.evaluator, summary.seed
    ))
    .save(path)?;
    Ok(())
}

/// An axis label for a metric name, with its unit.
pub fn metric_axis(name: &str) -> String {
    if name.ends_with("_ms") || name.contains("_ms_") {
        format!("{name} (ms)")
    } else if name.ends_with("_m") {
        format!("{name} (millions)")
    } else if name.contains("acc") {
        format!("{name} (%)")
    } else {
        name.to_string()
    }
}

/// progress.svg of a single search: the best fitness after each trial.
fn best_so_far_figure(path: &Path, summary: &Summary) -> Result<(), CellSearchError> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (i, &f) in summary.best_so_far.iter().enumerate() {
        if f.is_finite() && points.last().is_none_or(|p| p.1 != f) {
            points.push(((i + 1) as f64, f));
        }
    }
    Figure::new(
        format!("Best fitness so far: {}", summary.space),
        Plot::Steps {
            series: vec![Series {
                name: short(&summary.strategy).to_string(),
                points,
            }],
            x_end: summary.best_so_far.len() as f64,
        },
    )
    .axes(
        "trials evaluated",
        format!("best fitness: {}", short(&summary.evaluator)),
    )
    .settings(format!("seed {}", summary.seed))
    .save(path)?;
    Ok(())
}

/// The report page of a single search.
fn single_page(s: &Summary, pareto_figure: bool, command: &str) -> RunPage {
    let mut page = RunPage::new(
        format!("Cell search: {} on {}", short(&s.strategy), s.space),
        command,
    );
    page.setting("space", &s.space);
    page.setting("strategy", &s.strategy);
    page.setting("evaluator", &s.evaluator);
    page.setting("seed", s.seed);
    page.setting("trials", s.trials);
    if let Some(b) = &s.best {
        page.summary.push(format!(
            "Best of {} trials: {} (trial {}, fitness {:.4}{}).",
            s.trials,
            b.cell,
            b.trial,
            b.fitness,
            metric::test_accuracy(&b.metrics)
                .map(|t| format!(", test accuracy {t:.2}"))
                .unwrap_or_default()
        ));
        let mut t = ReportTable::new("Best cell", &["trial", "cell", "fitness"]);
        let mut row = vec![
            b.trial.to_string(),
            b.cell.clone(),
            format!("{:.4}", b.fitness),
        ];
        for (k, v) in &b.metrics {
            t.header.push(k.clone());
            row.push(format!("{v:.4}"));
        }
        t.row(row);
        page.tables.push(t);
    }
    if let Some(p) = &s.pareto {
        let mut t = ReportTable::new(
            format!("Pareto front ({})", p.objectives.join(", ")),
            &["trial", "cell", "fitness"],
        );
        for b in &p.front {
            t.row(vec![
                b.trial.to_string(),
                b.cell.clone(),
                format!("{:.4}", b.fitness),
            ]);
        }
        page.tables.push(t);
        if let Some(r) = p.hypervolume_ratio {
            page.summary.push(format!(
                "The front covers {:.2}% of the hypervolume of the table's own front.",
                100.0 * r
            ));
        }
    }
    page.figure("progress.svg", "Best fitness after each trial");
    if pareto_figure {
        page.figure("pareto.svg", "Evaluated candidates and the Pareto fronts");
    }
    page.file("best.json", "IR JSON of the best cell's network");
    page.file("summary.json", "the run's summary");
    page.file(
        "study.sqlite",
        "every trial (SQLite; resumable with --resume)",
    );
    page
}

/// The JSON of [`super::search::repeat`]'s summaries: one strategy's summary as it is, several
/// under `strategies`.
/// Serialised directly (not through `serde_json::Value`), so the fields keep their declared order.
pub fn many_json(summaries: &[ManySummary]) -> String {
    #[derive(serde::Serialize)]
    struct Strategies<'a> {
        strategies: &'a [ManySummary],
    }
    match summaries {
        [one] => serde_json::to_string_pretty(one),
        all => serde_json::to_string_pretty(&Strategies { strategies: all }),
    }
    .expect("a summary serialises")
}

/// Writes the run folder of many seeded runs: runs.json, progress.svg and the run page.
/// `multi`: the runs are scored by hypervolume against a table's front.
pub fn write_many(
    out: &Path,
    summaries: &[ManySummary],
    seed: u64,
    multi: bool,
    force: bool,
    command: &str,
) -> Result<(), CellSearchError> {
    let runs = summaries.first().map_or(0, |s| s.runs);
    if runs == 0 {
        return Err(CellsError::Settings("there are no runs to write".into()).into());
    }
    let json = many_json(summaries);
    files::write_atomic(&out.join("runs.json"), json.as_bytes(), force)?;
    progress_figure(&out.join("progress.svg"), summaries, runs, seed, multi)?;
    many_page(summaries, runs, seed, multi, command).write(out)?;
    Ok(())
}

/// The report page of many runs: one row per strategy.
fn many_page(
    summaries: &[ManySummary],
    runs: usize,
    seed: u64,
    multi: bool,
    command: &str,
) -> RunPage {
    let space = summaries
        .first()
        .map(|s| s.space.clone())
        .unwrap_or_default();
    let mut page = RunPage::new(
        format!("Cell search on {space}: {runs} runs per strategy"),
        command,
    );
    page.setting("space", &space);
    page.setting("runs", runs);
    page.setting("seeds", format!("{seed}..{}", seed + runs as u64 - 1));
    if let Some(s) = summaries.first() {
        page.setting("evaluator", &s.evaluator);
        if let Some(b) = s.budget_seconds {
            page.setting("budget (simulated s)", b);
        }
    }
    let mut t = ReportTable::new(
        "Best-by-fitness cell of each run",
        &[
            "strategy",
            "test accuracy (mean +- std)",
            "validation accuracy",
            "queries (mean)",
        ],
    );
    if multi {
        t.header.push("hypervolume, % of the table's front".into());
    }
    for s in summaries {
        let mut row = vec![
            s.strategy.clone(),
            match (s.test_acc_mean, s.test_acc_std) {
                (Some(m), Some(sd)) => format!("{m:.2} +- {sd:.2}"),
                _ => "-".into(),
            },
            s.valid_acc_mean
                .map(|v| format!("{v:.2}"))
                .unwrap_or("-".into()),
            format!("{:.1}", s.queries_mean),
        ];
        if multi {
            row.push(match (s.hypervolume_ratio_mean, s.hypervolume_ratio_std) {
                (Some(m), Some(sd)) => format!("{:.2} +- {:.2}", 100.0 * m, 100.0 * sd),
                _ => "-".into(),
            });
        }
        t.row(row);
    }
    page.tables.push(t);
    page.figure(
        "progress.svg",
        "Mean and standard deviation over runs against cost",
    );
    page.file("runs.json", "every run's best cell and curve");
    page
}

/// progress.svg of many runs: per strategy, the mean and std over runs of the tracked score
/// (test accuracy of the best-by-fitness cell, or the hypervolume ratio) against cost.
fn progress_figure(
    path: &Path,
    summaries: &[ManySummary],
    runs: usize,
    seed: u64,
    multi: bool,
) -> Result<(), CellSearchError> {
    let end = summaries
        .iter()
        .flat_map(|s| s.per_run.iter().map(|r| r.simulated_seconds))
        .fold(0.0, f64::max);
    let grid: Vec<f64> = (1..=100).map(|i| end * i as f64 / 100.0).collect();
    let scale = if multi { 100.0 } else { 1.0 };
    let series: Vec<BandSeries> = summaries
        .iter()
        .map(|s| {
            let at = |t: f64| {
                let v: Vec<f64> = s
                    .per_run
                    .iter()
                    .filter_map(|r| {
                        r.curve
                            .iter()
                            .take_while(|p| p.0 <= t)
                            .last()
                            .map(|p| scale * p.1)
                    })
                    .collect();
                (v.len() == s.runs).then(|| super::search::mean_std(&v))
            };
            BandSeries {
                name: short(&s.strategy).to_string(),
                points: grid
                    .iter()
                    .filter_map(|&t| at(t).map(|(m, sd)| (t, m, sd)))
                    .collect(),
            }
        })
        .collect();
    let (what, y) = if multi {
        (
            "hypervolume of the front, % of the table's",
            "hypervolume (% of the table's front)",
        )
    } else {
        (
            "test accuracy of the best-by-fitness cell",
            "test accuracy (%)",
        )
    };
    let evaluator = summaries
        .first()
        .map(|s| s.evaluator.clone())
        .unwrap_or_default();
    Figure::new(
        format!("{what}: mean +- std of {runs} runs"),
        Plot::Band { series },
    )
    .axes("cost (simulated training s)", y)
    .settings(format!(
        "{evaluator}, seeds {seed}..{}",
        seed + runs as u64 - 1
    ))
    .save(path)?;
    Ok(())
}
