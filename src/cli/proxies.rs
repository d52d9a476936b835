//! `archproof proxies`: training-free proxies of sampled cells against a benchmark table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use archproof::cells::nb201::Nb201Cell;
use archproof::cells::proxies::{self, NAMES};
use archproof::cells::table::Table;
use archproof::cells::{CellSpace, SpaceSpec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::common::{
    command_line, print_json, refuse_existing, write_file, write_page, OutputFlags,
};
use super::progress::Progress;
use archproof::cells::proxies::ProxyInputs;
use archproof::report::{Figure, Plot, RunPage, Table as ReportTable};

/// Score sampled cells with training-free proxies (computed with candle on the IR) and rank-
/// correlate each with the table's test accuracy.
///
/// At the defaults (seven proxies on 1,000 cells) this runs for hours on two cores; the first
/// cell is timed and a run longer than two minutes is announced with its estimate.
/// `--proxies synflow,params --sample 200` takes minutes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof proxies --space search-spaces/nb201.toml \\
      --benchmark nb201-cifar10.csv --sample 1000
  archproof proxies --space search-spaces/nb201.toml \\
      --benchmark nb201-cifar10.csv --proxies synflow,params --sample 200 \\
      --json --out runs/proxies")]
pub struct Args {
    /// The cell space (a search-spaces/*.toml file or nb201).
    #[arg(long)]
    space: String,
    /// The benchmark table whose `test_acc_200` the proxies are judged against.
    #[arg(long)]
    benchmark: PathBuf,
    /// Cells to sample (distinct, seeded).
    #[arg(long, default_value_t = 1000)]
    sample: usize,
    /// Proxies to compute: synflow, naswot, jacob_cov, grad_norm, snip, params, flops.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "synflow,naswot,jacob_cov,grad_norm,snip,params,flops"
    )]
    proxies: Vec<String>,
    /// Seed of the sample, the initial weights and the random batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Size of the random batch of naswot, jacob_cov, grad_norm and snip.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Directory for scores.csv, summary.json and a scatter figure per proxy.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    output: OutputFlags,
}

/// A run expected to take longer than this is announced with its estimate.
const LONG_RUN_SECONDS: f64 = 120.0;

/// `5400` -> `1.5 hours`, `300` -> `5 minutes`.
fn duration_words(seconds: f64) -> String {
    if seconds >= 5400.0 {
        format!("{:.1} hours", seconds / 3600.0)
    } else if seconds >= 90.0 {
        format!("{:.0} minutes", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

#[derive(Serialize)]
struct Summary {
    table: String,
    cells: usize,
    seed: u64,
    /// Spearman rank correlation of each proxy with test_acc_200.
    spearman: BTreeMap<String, f64>,
    /// Mean seconds per cell of each proxy.
    seconds_per_cell: BTreeMap<String, f64>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    for p in &a.proxies {
        if !NAMES.contains(&p.as_str()) {
            bail!("unknown proxy '{p}' (known: {})", NAMES.join(", "));
        }
    }
    if a.sample < 3 {
        bail!("--sample must be at least 3 (a rank correlation needs points)");
    }
    if let Some(out) = &a.out {
        refuse_existing(
            &[out.join("scores.csv"), out.join("summary.json")],
            a.output.force,
        )?;
    }
    let spec = SpaceSpec::load(&a.space).map_err(anyhow::Error::msg)?;
    let networks = spec.nb201();
    if !networks.is_benchmark() {
        bail!(
            "{}: {}; drop the space's channels, cells_per_stage and stem_stride",
            a.space,
            networks.not_benchmark_reason()
        );
    }
    let table = Table::load(&a.benchmark).map_err(anyhow::Error::msg)?;
    let mut cells: Vec<(Nb201Cell, f64)> = table
        .iter()
        .filter_map(|(c, row)| {
            row.values
                .get(archproof::cells::metric::TABLE_TEST)
                .map(|&t| (*c, t))
        })
        .collect();
    cells.sort_by_key(|c| c.0.code());
    cells.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed));
    cells.truncate(a.sample);
    if cells.len() < 3 {
        bail!(
            "{}: fewer than 3 cells with test_acc_200",
            a.benchmark.display()
        );
    }
    let bar = Progress::bar(
        cells.len() as u64,
        a.output.no_progress(),
        "{bar:40} {pos}/{len} cells  [{elapsed}<{eta}]",
        "cells",
    );
    let names: Vec<&str> = a.proxies.iter().map(String::as_str).collect();
    let score = |cell: &Nb201Cell| -> Result<BTreeMap<String, (f64, f64)>> {
        let g = networks.network(cell)?;
        let out = proxies::scores(
            &names,
            &g,
            spec.classes,
            &ProxyInputs::Random(a.batch),
            a.seed,
        )?;
        bar.inc(1);
        Ok(out)
    };
    // The first cell alone, timed, says how long the whole sample will take before it starts.
    let t0 = std::time::Instant::now();
    let first = score(&cells[0].0)?;
    let per_cell = t0.elapsed().as_secs_f64();
    let estimate = per_cell * (cells.len() - 1) as f64 / rayon::current_num_threads() as f64;
    if a.output.talk() && estimate > LONG_RUN_SECONDS {
        bar.println(format!(
            "scoring {} cells with {} proxies takes about {} here ({per_cell:.1} s a cell); \
             --sample and --proxies shorten it",
            cells.len(),
            names.len(),
            duration_words(estimate)
        ));
    }
    let mut rows: Vec<BTreeMap<String, (f64, f64)>> = vec![first];
    rows.extend(
        cells[1..]
            .par_iter()
            .map(|(cell, _)| score(cell))
            .collect::<Result<Vec<_>>>()?,
    );
    bar.finish_and_clear();
    let acc: Vec<f64> = cells.iter().map(|c| c.1).collect();
    let mut spearman = BTreeMap::new();
    let mut seconds = BTreeMap::new();
    for p in &a.proxies {
        let v: Vec<f64> = rows.iter().map(|r| r[p].0).collect();
        spearman.insert(p.clone(), proxies::spearman(&v, &acc));
        seconds.insert(
            p.clone(),
            rows.iter().map(|r| r[p].1).sum::<f64>() / rows.len() as f64,
        );
    }
    let summary = Summary {
        table: a.benchmark.display().to_string(),
        cells: cells.len(),
        seed: a.seed,
        spearman,
        seconds_per_cell: seconds,
    };
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
        let mut csv = format!("cell,test_acc_200,{}\n", a.proxies.join(","));
        for ((cell, t), r) in cells.iter().zip(&rows) {
            let vals: Vec<String> = a.proxies.iter().map(|p| format!("{}", r[p].0)).collect();
            csv.push_str(&format!("{cell},{t},{}\n", vals.join(",")));
        }
        write_file(&out.join("scores.csv"), csv.as_bytes(), true)?;
        for p in &a.proxies {
            let pts: Vec<(f64, f64)> = rows.iter().zip(&acc).map(|(r, &t)| (r[p].0, t)).collect();
            Figure::new(
                format!(
                    "{p} against test accuracy: Spearman {:.3}",
                    summary.spearman[p]
                ),
                Plot::Scatter {
                    points: pts,
                    log_x: proxies::is_multiplicative(p),
                },
            )
            .axes(format!("{p} score (proxy units)"), "test_acc_200 (%)")
            .settings(format!(
                "{} cells of {}, batch {}, seed {}",
                summary.cells, summary.table, a.batch, a.seed
            ))
            .save(&out.join(format!("scatter-{p}.svg")))
            .map_err(anyhow::Error::msg)?;
        }
        write_file(
            &out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
            true,
        )?;
        let mut page = RunPage::new(
            format!("Zero-cost proxies on {} cells", summary.cells),
            command_line(),
        );
        page.setting("table", &summary.table);
        page.setting("cells", summary.cells);
        page.setting("batch", a.batch);
        page.setting("seed", a.seed);
        let mut t = ReportTable::new(
            "Spearman rank correlation with test accuracy",
            &["proxy", "Spearman", "seconds per cell"],
        );
        for p in &a.proxies {
            t.row(vec![
                p.clone(),
                format!("{:.3}", summary.spearman[p]),
                format!("{:.4}", summary.seconds_per_cell[p]),
            ]);
            page.figure(
                &format!("scatter-{p}.svg"),
                format!("{p} against test accuracy"),
            );
        }
        page.tables.push(t);
        page.file("scores.csv", "every cell's proxy scores and test accuracy");
        page.file("summary.json", "the correlations");
        write_page(out, &page)?;
    }
    if a.output.json {
        print_json(&summary)?;
    } else {
        println!(
            "{} cells of {} (seed {}):",
            summary.cells, summary.table, a.seed
        );
        println!("{:<10} {:>9} {:>12}", "proxy", "Spearman", "s per cell");
        for p in &a.proxies {
            println!(
                "{:<10} {:>9.3} {:>12.4}",
                p, summary.spearman[p], summary.seconds_per_cell[p]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
