//! `search deepmad`: a design within budget from the program, written as IR that `inspect` and
//! `deepmad score` read back; impossible budgets and bad spaces exit 2 naming the problem.

use crate::common;

use common::{archproof, assert_bad_input};

/// A hand-made structure within the CIFAR budget: uniform widths and depths.
const UNIFORM: &str = r#"[{"class": "ConvKXBNRELU", "in": 3, "out": 32, "k": 3, "s": 1},
            {"class": "SuperResK1KXK1", "in": 32, "out": 64, "k": 3, "s": 1, "L": 2, "btn": 16},
            {"class": "SuperResK1KXK1", "in": 64, "out": 128, "k": 3, "s": 2, "L": 3, "btn": 24},
            {"class": "SuperResK1KXK1", "in": 128, "out": 192, "k": 3, "s": 2, "L": 3, "btn": 32},
            {"class": "SuperResK1KXK1", "in": 192, "out": 256, "k": 3, "s": 1, "L": 3, "btn": 32},
            {"class": "SuperResK1KXK1", "in": 256, "out": 384, "k": 3, "s": 2, "L": 3, "btn": 40}]"#;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_program_designs_within_budget_and_beats_a_uniform_structure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let space = root().join("search-spaces/deepmad-cifar.toml");
    let o = archproof(&[
        "search",
        "deepmad",
        "--space",
        space.to_str().unwrap(),
        "--convention",
        "tinynas",
        // A budget of work, not of time: the same design at any load.
        "--max-programs",
        "40",
        "--time-limit",
        "600",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["feasible"], true);
    assert!(v["flops"].as_f64().unwrap() <= 100e6);
    assert!(v["params"].as_f64().unwrap() <= 1.0e6);
    assert!(v["rho"].as_f64().unwrap() <= 0.5);
    let chans: Vec<u64> = v["structure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["out"].as_u64().unwrap())
        .collect();
    assert!(
        chans.windows(2).all(|w| w[0] <= w[1]),
        "non-decreasing channels: {chans:?}"
    );
    // A hand-made structure that meets the same budget: uniform widths and depths.
    let uniform = dir.path().join("uniform.json");
    std::fs::write(&uniform, UNIFORM).unwrap();
    let u = archproof(&[
        "deepmad",
        "score",
        uniform.to_str().unwrap(),
        "--convention",
        "tinynas",
        "--resolution",
        "32",
        "--json",
    ]);
    let u: serde_json::Value = serde_json::from_slice(&u.stdout).unwrap();
    assert!(u["flops"].as_f64().unwrap() <= 100e6 && u["params"].as_f64().unwrap() <= 1.0e6);
    assert!(
        v["score"].as_f64().unwrap() > u["score"].as_f64().unwrap(),
        "program {} vs uniform {}",
        v["score"],
        u["score"]
    );
    // The IR reads back to the same structure and score.
    let best = out.join("best.json");
    let s = archproof(&[
        "deepmad",
        "score",
        best.to_str().unwrap(),
        "--convention",
        "tinynas",
        "--json",
    ]);
    let s: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert!((s["score"].as_f64().unwrap() - v["score"].as_f64().unwrap()).abs() < 1e-6);
    // So does structure.json, at the resolution it was designed for (32, not 224), silently.
    let st = archproof(&[
        "deepmad",
        "score",
        out.join("structure.json").to_str().unwrap(),
        "--convention",
        "tinynas",
        "--json",
    ]);
    assert!(
        st.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["resolution"], 32);
    assert!((st["score"].as_f64().unwrap() - v["score"].as_f64().unwrap()).abs() < 1e-6);
    // A bare block list states no resolution: scored at 224 with a warning.
    let bare = archproof(&["deepmad", "score", uniform.to_str().unwrap(), "--json"]);
    let warn = String::from_utf8_lossy(&bare.stderr);
    assert!(
        warn.contains("no input resolution") && warn.contains("--resolution"),
        "{warn}"
    );
    let i = archproof(&["inspect", best.to_str().unwrap(), "--json"]);
    assert_eq!(
        i.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&i.stderr)
    );
}

#[test]
fn impossible_budgets_and_bad_spaces_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("search-spaces/deepmad-cifar.toml")).unwrap();
    let run = |name: &str, text: &str, needles: &[&str]| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let o = archproof(&[
            "search",
            "deepmad",
            "--space",
            p.to_str().unwrap(),
            "--time-limit",
            "10",
            "-q",
        ]);
        let mut all = vec![name];
        all.extend_from_slice(needles);
        assert_bad_input(&o, &all);
    };
    run(
        "tiny.toml",
        &base.replace("flops = 100e6", "flops = 1e5"),
        &["FLOPs", "smallest structure needs"],
    );
    run(
        "params.toml",
        &base.replace("params = 1.0e6", "params = 1e3"),
        &["params", "smallest structure needs"],
    );
    run(
        "kind.toml",
        &base.replace("kind = \"deepmad\"", "kind = \"nb201\""),
        &["kind is 'nb201'"],
    );
    run("garbage.toml", "kind = [", &["malformed space"]);
    run(
        "depths.toml",
        &base.replace("max_depth = [3, 6, 6, 6, 6]", "max_depth = [3, 6]"),
        &["max_depth has 2 entries for 5 stages"],
    );
}

#[test]
fn the_evolutionary_baseline_is_seeded_filtered_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let space = root().join("search-spaces/deepmad-cifar.toml");
    let run = |out: &std::path::Path, iterations: &str, resume: bool| {
        let mut args = vec![
            "search",
            "deepmad",
            "--space",
            space.to_str().unwrap(),
            "--solver",
            "evolution",
            "--iterations",
            iterations,
            "--seed",
            "7",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        if resume {
            args.push("--resume");
        }
        let o = archproof(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let whole = run(&dir.path().join("whole"), "3000", false);
    assert_eq!(whole["feasible"], true);
    assert!(
        whole["flops"].as_f64().unwrap() <= 100e6 && whole["params"].as_f64().unwrap() <= 1.0e6
    );
    // The same seed in two parts (stop at 1000, resume to 3000) ends on the same design.
    let split = dir.path().join("split");
    run(&split, "1000", false);
    let resumed = run(&split, "3000", true);
    assert_eq!(resumed["structure"], whole["structure"]);
    assert_eq!(resumed["score"], whole["score"]);
    // Evolution needs somewhere to store its trials.
    let o = archproof(&[
        "search",
        "deepmad",
        "--space",
        space.to_str().unwrap(),
        "--solver",
        "evolution",
    ]);
    assert_bad_input(&o, &["needs --out"]);
}

#[test]
fn bench_deepmad_compares_program_evolution_and_released_with_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let released = dir.path().join("released.json");
    std::fs::write(&released, UNIFORM).unwrap();
    let space = root().join("search-spaces/deepmad-cifar.toml");
    let o = archproof(&[
        "bench",
        "deepmad",
        "--space",
        space.to_str().unwrap(),
        "--released",
        released.to_str().unwrap(),
        "--convention",
        "tinynas",
        "--time-limit",
        "6",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for m in ["program", "evolution", "released"] {
        assert_eq!(v[m]["feasible"], true, "{m}");
    }
    let (p, e) = (
        v["program"]["score"].as_f64().unwrap(),
        v["evolution"]["score"].as_f64().unwrap(),
    );
    assert!((v["ratio_program_to_evolution"].as_f64().unwrap() - p / e).abs() < 1e-12);
    // How many candidates 6 s buys depends on the machine: the bench reports it.
    assert!(v["evolution_candidates"].as_u64().unwrap() > 0);
    // Best-so-far traces only improve, and end at the reported scores.
    for m in ["program", "evolution"] {
        let t: Vec<f64> = v[m]["trace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1] + 1e-9), "{m}: {t:?}");
    }
    let evo_last = v["evolution"]["trace"].as_array().unwrap().last().unwrap()[1]
        .as_f64()
        .unwrap();
    assert!((evo_last - e).abs() < 1e-9);
    for f in ["results.json", "progress.svg", "stages.svg"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(!text.is_empty(), "{f}");
    }
    let stages = std::fs::read_to_string(out.join("stages.svg")).unwrap();
    assert!(stages.starts_with("<svg") && stages.contains("released"));
    // Existing outputs are kept without --force.
    let again = archproof(&[
        "bench",
        "deepmad",
        "--space",
        space.to_str().unwrap(),
        "--time-limit",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&again, &["exists; pass --force"]);
}

/// The proven bound over the whole space, checked from outside the branch and bound: the
/// design it is measured against scores as reported, the relaxation of the whole space and of
/// the design's own channel vector are solved again and bound what they must, and the gap is
/// the bound's arithmetic.
#[test]
fn the_global_bound_is_checked_by_solving_the_relaxations_again() {
    use archproof::deepmad::bound::{box_bound, root_box, ChannelBox};
    use archproof::deepmad::Convention;
    let path = root().join("search-spaces/deepmad-cifar.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = archproof(&[
        "search",
        "deepmad",
        "--space",
        path.to_str().unwrap(),
        "--convention",
        "tinynas",
        "--max-programs",
        "8",
        "--time-limit",
        "600",
        "--bound-seconds",
        "8",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (score, bound, gap) = (
        v["score"].as_f64().unwrap(),
        v["global_bound"].as_f64().unwrap(),
        v["global_gap"].as_f64().unwrap(),
    );
    assert!(bound >= score, "bound {bound} below the design's {score}");
    assert!(((bound - score) / score - gap).abs() <= 1e-12, "{v}");
    assert_eq!(v["global_search"]["incumbent"].as_f64().unwrap(), score);
    // The design is what it claims: scored again from its written structure.
    let s = archproof(&[
        "deepmad",
        "score",
        out.join("structure.json").to_str().unwrap(),
        "--convention",
        "tinynas",
        "--json",
    ]);
    let s: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert!((s["score"].as_f64().unwrap() - score).abs() <= 1e-9 * score);
    // The relaxation at the design's own channel vector holds the design.
    let space = archproof::deepmad::space::read(&path).unwrap();
    let chans: Vec<usize> = v["structure"].as_array().unwrap()[..6]
        .iter()
        .map(|b| b["out"].as_u64().unwrap() as usize)
        .collect();
    let own = ChannelBox::channels(&space, &chans);
    let at_design = box_bound(&space, Convention::Tinynas, &own)
        .unwrap()
        .unwrap();
    assert!(at_design >= score, "{at_design} < {score}");
    // The whole space's relaxation is where the search started: its first bound, which the
    // search only lowers.
    let root = box_bound(&space, Convention::Tinynas, &root_box(&space).unwrap())
        .unwrap()
        .unwrap();
    let trace = v["global_search"]["trace"].as_array().unwrap();
    let first = trace[0][1].as_f64().unwrap();
    assert!(
        (first - root).abs() <= 1e-6 * root,
        "{first} against {root}"
    );
    assert!(bound <= root);
    let bounds: Vec<f64> = trace.iter().map(|t| t[1].as_f64().unwrap()).collect();
    assert!(bounds.windows(2).all(|w| w[1] <= w[0]), "{bounds:?}");
    assert!((bounds[bounds.len() - 1] - bound).abs() <= 1e-9 * bound);
}
