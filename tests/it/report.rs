//! Figures and the HTML report: every figure kind reads back the data it was drawn from, and
//! the figures of a demo run match the numbers of the runs that drew them.

use std::path::Path;
use std::process::Command;

use archproof::report::{
    cactus_points, BandSeries, BarSeries, CactusSeries, Figure, Image, Plot, RunPage, Series,
    StageSeries, Table as ReportTable,
};
use serde_json::Value;

fn series(name: &str, pts: &[(f64, f64)]) -> Series {
    Series {
        name: name.into(),
        points: pts.to_vec(),
    }
}

/// One figure of each kind.
fn every_kind() -> Vec<Figure> {
    let s = vec![
        series("a", &[(1.0, 2.0), (3.0, 5.0)]),
        series("b", &[(0.5, 1.0)]),
    ];
    let img = |label: &str, v: f64| Image {
        label: label.into(),
        channels: 1,
        height: 2,
        width: 3,
        pixels: vec![0.0, v, 1.0, 0.5, 0.25, v],
        range: (0.0, 1.0),
    };
    vec![
        Figure::new(
            "steps",
            Plot::Steps {
                series: s.clone(),
                x_end: 10.0,
            },
        ),
        Figure::new("lines", Plot::Lines { series: s.clone() }),
        Figure::new(
            "scatter",
            Plot::Scatter {
                points: vec![(1.0, 2.0), (100.0, 3.0)],
                log_x: true,
            },
        ),
        Figure::new(
            "band",
            Plot::Band {
                series: vec![BandSeries {
                    name: "rea".into(),
                    points: vec![(0.0, 90.0, 1.0), (5.0, 93.5, 0.25)],
                }],
            },
        ),
        Figure::new(
            "pareto",
            Plot::Pareto {
                evaluated: vec![(1.0, 1.0), (2.0, 3.0), (3.0, 2.0)],
                fronts: vec![series("front", &[(1.0, 1.0), (2.0, 3.0)])],
            },
        ),
        Figure::new(
            "cactus",
            Plot::Cactus {
                series: vec![CactusSeries {
                    name: "bab".into(),
                    solved_seconds: vec![0.3, 0.1],
                    published: false,
                }],
                instances: 3,
            },
        ),
        Figure::new(
            "bars",
            Plot::Bars {
                categories: vec!["x".into(), "y".into()],
                series: vec![BarSeries {
                    name: "r".into(),
                    values: vec![Some(0.5), None],
                }],
            },
        ),
        Figure::new(
            "stages",
            Plot::Stages {
                designs: vec![StageSeries {
                    name: "d".into(),
                    stages: vec![(32, 2), (64, 3)],
                }],
            },
        ),
        Figure::new(
            "images",
            Plot::Images {
                rows: vec![vec![img("orig", 0.75), img("adv", 0.5)]],
            },
        ),
        Figure::new(
            "dag",
            Plot::Dag {
                nodes: vec![("x".into(), vec![]), ("relu(x) & <y>".into(), vec![0])],
            },
        ),
    ]
}

/// NaN never equals itself: compare figures through their JSON text.
fn same(a: &Figure, b: &Figure) -> bool {
    serde_json::to_string(a).unwrap() == serde_json::to_string(b).unwrap()
}

#[test]
fn every_figure_kind_reads_back_its_data_from_the_svg_and_renders_a_png() {
    let dir = tempfile::tempdir().unwrap();
    for fig in every_kind() {
        let fig = fig
            .axes("x (s)", "y (%)")
            .settings("seed 7, a <setting> & another");
        let svg = dir.path().join(format!("{}.svg", fig.title));
        let png = fig.save(&svg).unwrap();
        let back = Figure::read(&svg).unwrap();
        assert!(same(&back, &fig), "{} does not read back", fig.title);
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("seed 7"), "{}: no settings line", fig.title);
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{}: not a PNG", fig.title);
        let (w, h) = fig.size();
        // The IHDR chunk holds the width and height, big-endian, at bytes 16..24.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), w);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), h);
    }
    assert!(Figure::from_svg("<svg></svg>").is_err());
}

#[test]
fn cactus_series_are_sorted_cumulative_times() {
    let pts = cactus_points(&[3.0, 0.5, 1.5]);
    assert_eq!(pts, vec![(1, 0.5), (2, 2.0), (3, 5.0)]);
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(path: &Path) -> Figure {
    Figure::read(path).unwrap_or_else(|e| panic!("{e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// `archproof demo --quick`: every part runs, the index links its figures, and each figure's
/// data is the run's numbers.
#[test]
fn the_demo_writes_a_report_whose_figures_match_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = Command::new(env!("CARGO_BIN_EXE_archproof"))
        .args(["demo", "--quick", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    for p in summary["parts"].as_array().unwrap() {
        assert_eq!(p["ok"], true, "part {} failed: {}", p["name"], p["error"]);
    }

    // The index links figures, all present, with no script and nothing from elsewhere.
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let linked: Vec<&str> = index
        .split("<img src=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert!(
        linked.len() >= 5,
        "the index shows {} figures",
        linked.len()
    );
    for f in &linked {
        assert!(out.join(f).is_file(), "{f} is linked but missing");
        assert!(out.join(f).with_extension("png").is_file(), "{f}: no PNG");
    }
    assert!(
        !index.contains("<script") && !index.contains("http://") && !index.contains("https://")
    );
    // Certified training: the certified network's training reports the share its bounds
    // certify, the natural twin's does not; each verified count is re-derived from the
    // queries of its run.
    for (sub, certified) in [("certified", true), ("certified-natural", false)] {
        let trained = json(&out.join(sub).join("train.out.json"));
        let last = trained["epochs"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last.get("certified_accuracy").is_some(), certified, "{sub}");
        let robust = json(&out.join(sub).join("robustness.out.json"));
        let v = &robust["verified_accuracy"]["0.03"];
        let proven = robust["queries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["verdict"] == "holds")
            .map(|q| q["index"].as_u64().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(v["verified"].as_u64().unwrap() as usize, proven, "{sub}");
    }

    for sub in [
        "workbench",
        "deepmad",
        "cells",
        "evonorm",
        "verify",
        "certified",
        "certified-natural",
    ] {
        let page = std::fs::read_to_string(out.join(sub).join("run.html")).unwrap();
        assert!(
            page.contains("index.html"),
            "{sub}: no link back to the index"
        );
    }

    // DeepMAD: both methods' traces are the lines of the progress figure.
    let results = json(&out.join("deepmad/results.json"));
    let Plot::Steps { series, .. } = read(&out.join("deepmad/progress.svg")).plot else {
        panic!("deepmad/progress.svg is not a step figure")
    };
    for (s, key) in series.iter().zip(["program", "evolution"]) {
        let trace: Vec<(f64, f64)> = serde_json::from_value(results[key]["trace"].clone()).unwrap();
        assert_eq!(s.points, trace, "{key}'s trace");
        let score = results[key]["score"].as_f64().unwrap();
        assert!(
            close(trace.last().unwrap().1, score),
            "{key}: trace ends off its score"
        );
    }
    let Plot::Stages { designs } = read(&out.join("deepmad/stages.svg")).plot else {
        panic!("deepmad/stages.svg is not a stage figure")
    };
    assert_eq!(designs.len(), 2);
    for (d, key) in designs.iter().zip(["program", "evolution"]) {
        // Stage k is block k + 1 (block 0 is the stem): its output channels and its units.
        let blocks = results[key]["structure"].as_array().unwrap();
        let want: Vec<(usize, usize)> = blocks[1..=d.stages.len()]
            .iter()
            .map(|b| {
                let units = if b["class"] == "ConvKXBNRELU" {
                    1
                } else {
                    b["L"].as_u64().unwrap()
                };
                (b["out"].as_u64().unwrap() as usize, units as usize)
            })
            .collect();
        assert_eq!(d.stages, want, "{key}'s stages");
    }

    // Cell search: every trial is a point, the best so far ends at the best fitness.
    let cells = json(&out.join("cells/summary.json"));
    let Plot::Pareto { evaluated, fronts } = read(&out.join("cells/pareto.svg")).plot else {
        panic!("cells/pareto.svg is not a Pareto figure")
    };
    let ok_trials = cells["trials"].as_u64().unwrap() - cells["failed"].as_u64().unwrap();
    assert_eq!(evaluated.len() as u64, ok_trials);
    let front = cells["pareto"]["front"].as_array().unwrap();
    assert_eq!(fronts[0].points.len(), front.len());
    for t in front {
        let f = t["fitness"].as_f64().unwrap();
        assert!(
            fronts[0].points.iter().any(|p| close(p.1, f)),
            "front point {f} not drawn"
        );
    }
    let Plot::Steps { series, x_end } = read(&out.join("cells/progress.svg")).plot else {
        panic!("cells/progress.svg is not a step figure")
    };
    assert_eq!(x_end as u64, cells["trials"].as_u64().unwrap());
    let best = cells["best"]["fitness"].as_f64().unwrap();
    assert!(close(series[0].points.last().unwrap().1, best));

    // EvoNorm: the cumulative counts end at the summary's counts.
    let evo = json(&out.join("evonorm/summary.json"));
    let Plot::Lines { series } = read(&out.join("evonorm/rejections.svg")).plot else {
        panic!("evonorm/rejections.svg is not a line figure")
    };
    for (s, key) in series
        .iter()
        .zip(["evaluated", "rejected_quality", "rejected_stability"])
    {
        assert_eq!(
            s.points.last().unwrap().1,
            evo[key].as_f64().unwrap(),
            "{key}"
        );
        assert_eq!(s.points.len() as u64, evo["trials"].as_u64().unwrap());
    }

    // Verification: training curves, radii, counterexamples and the cactus.
    let trained = json(&out.join("verify/train.out.json"));
    let Plot::Lines { series } = read(&out.join("verify/resnet.curves.svg")).plot else {
        panic!("verify/resnet.curves.svg is not a line figure")
    };
    let epochs = trained["epochs"].as_array().unwrap();
    assert_eq!(series[1].points.len(), epochs.len());
    for (p, e) in series[1].points.iter().zip(epochs) {
        assert!(close(p.1, e["test_accuracy"].as_f64().unwrap()));
    }
    let robust = json(&out.join("verify/robustness.out.json"));
    let points = robust["points_detail"].as_array().unwrap();
    // Verified accuracy at each radius, derived again from the queries: a correctly
    // classified point proven by some engine.
    let va = robust["verified_accuracy"].as_object().unwrap();
    assert!(!va.is_empty());
    for v in va.values() {
        let eps = v["eps"].as_f64().unwrap();
        let proven = points
            .iter()
            .filter(|p| {
                !p["radius"].is_null()
                    && robust["queries"].as_array().unwrap().iter().any(|q| {
                        q["index"] == p["index"]
                            && q["eps"].as_f64() == Some(eps)
                            && q["verdict"] == "holds"
                    })
            })
            .count();
        assert_eq!(v["verified"].as_u64().unwrap() as usize, proven, "{v}");
        assert!(close(
            v["accuracy"].as_f64().unwrap(),
            proven as f64 / points.len() as f64
        ));
        let total = ["verified", "falsified", "unknown", "misclassified"]
            .iter()
            .map(|k| v[k].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(total as usize, points.len(), "{v}");
    }
    let Plot::Bars { series, categories } = read(&out.join("verify/radius.svg")).plot else {
        panic!("verify/radius.svg is not a bar figure")
    };
    assert_eq!(categories.len(), points.len());
    for (k, p) in points.iter().enumerate() {
        let proven = p["radius"]["proven_robust"].as_f64().unwrap_or(0.0);
        assert!(
            close(series[0].values[k].unwrap(), proven),
            "point {k}: drawn radius"
        );
        assert_eq!(
            series[1].values[k],
            p["radius"]["refuted"].as_f64(),
            "point {k}: refuted"
        );
    }
    let net = archproof::verify::load_network(&out.join("verify/resnet.json")).unwrap();
    let data = archproof::train::data::load("shapes").unwrap();
    let refuted: Vec<&Value> = points
        .iter()
        .filter(|p| p["radius"]["refuted"].is_number())
        .collect();
    if refuted.is_empty() {
        assert!(!out.join("verify/counterexamples.svg").exists());
    } else {
        let Plot::Images { rows } = read(&out.join("verify/counterexamples.svg")).plot else {
            panic!("verify/counterexamples.svg is not an image figure")
        };
        assert_eq!(rows.len(), refuted.len().min(6));
        for (row, p) in rows.iter().zip(&refuted) {
            let i = p["index"].as_u64().unwrap() as usize;
            let label = p["label"].as_u64().unwrap() as usize;
            let eps = p["radius"]["refuted"].as_f64().unwrap();
            let original: Vec<f64> = data.test.input(i).iter().map(|&v| v as f64).collect();
            assert_eq!(row[0].pixels, original, "point {i}: the original drawn");
            let adv = &row[1].pixels;
            let worst = adv
                .iter()
                .zip(&original)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst <= eps * (1.0 + 1e-9), "point {i}: outside the ball");
            // The drawn counterexample really fools the network: a plain forward pass.
            let y = net.forward(adv);
            assert!(
                y.iter()
                    .enumerate()
                    .any(|(j, &v)| j != label && v >= y[label]),
                "point {i}: the drawn counterexample is classified correctly"
            );
        }
    }
    let Plot::Cactus { series, .. } = read(&out.join("verify/cactus.svg")).plot else {
        panic!("verify/cactus.svg is not a cactus figure")
    };
    let queries = robust["queries"].as_array().unwrap();
    for s in &series {
        let mut want: Vec<f64> = queries
            .iter()
            .filter(|q| q["engine"] == s.name.as_str() && q["verdict"] != "unknown")
            .map(|q| q["seconds"].as_f64().unwrap())
            .collect();
        let mut got = s.solved_seconds.clone();
        want.sort_by(f64::total_cmp);
        got.sort_by(f64::total_cmp);
        assert_eq!(got, want, "{}: solved times", s.name);
    }

    // The same report, copied elsewhere by `archproof report`.
    let copy = dir.path().join("copy");
    let rep = Command::new(env!("CARGO_BIN_EXE_archproof"))
        .args(["report"])
        .arg(&out)
        .arg("--out")
        .arg(&copy)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let site: Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(site["runs"].as_array().unwrap().len(), 7);
    assert!(
        site["missing"].as_array().unwrap().is_empty(),
        "{}",
        site["missing"]
    );
    for r in site["runs"].as_array().unwrap() {
        for f in r["figures"].as_array().unwrap() {
            assert!(copy.join(f.as_str().unwrap()).is_file(), "{f} not copied");
        }
    }
    // A second report over the first is refused, naming the file, unless --force.
    let again = |force: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_archproof"));
        c.arg("report").arg(&out).arg("--out").arg(&copy);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    crate::common::assert_bad_input(&again(false), &["index.html", "--force"]);
    assert!(again(true).status.success());
}

#[test]
fn report_of_a_folder_without_runs_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_archproof"))
        .arg("report")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no finished runs"), "{err}");
    std::fs::write(dir.path().join("run.json"), "{ not json").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_archproof"))
        .arg("report")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a run description"));
}

/// Two runs with one title are told apart by their folders in the index, and tables sit in a
/// box that scrolls rather than overflowing the page.
#[test]
fn the_index_tells_runs_of_one_title_apart() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["seed1", "seed2"] {
        let mut page = RunPage::new("Cell search", "archproof search cell");
        let mut t = ReportTable::new("Best", &["cell", "accuracy"]);
        t.row(vec![
            "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|".into(),
            "0.9".into(),
        ]);
        page.tables.push(t);
        let d = dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        page.write(&d).unwrap();
    }
    let out = dir.path().join("site");
    let site = archproof::report::html::write_site(dir.path(), &out, "two").unwrap();
    assert_eq!(site.runs.len(), 2);
    let index = std::fs::read_to_string(&site.index).unwrap();
    assert!(index.contains("Cell search (seed1)"), "{index}");
    assert!(index.contains("Cell search (seed2)"), "{index}");
    assert!(index.contains("<div class=\"wide\"><table>"), "{index}");
}
