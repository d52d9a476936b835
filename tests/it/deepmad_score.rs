//! DeepMAD scoring against the official implementation's reference values: every released
//! structure and the ResNet-50 analog, under the `tinynas` convention, within 0.1%.

use crate::common;

use archproof::deepmad::{self, structure, Convention, Weights};
use common::{archproof, assert_bad_input};

fn close(got: f64, want: f64, what: &str) {
    let rel = ((got - want) / want).abs();
    assert!(
        rel < 1e-3,
        "{what}: got {got}, want {want} ({:.2e} relative)",
        rel
    );
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn released_structures_reproduce_the_reference_values() {
    let data = common::shared_data();
    let dir = data.join("deepmad");
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference_values.json")).unwrap())
            .unwrap();
    let file = dir.join("released_structures.json");
    let mut checked = 0;
    for (key, r) in refs.as_object().unwrap() {
        let Some(name) = key.strip_suffix(".txt") else {
            continue; // the search seeds have no released structure
        };
        let blocks = structure::read(&format!("{}#{name}", file.display())).unwrap();
        let res = r["resolution"].as_u64().unwrap() as usize;
        let s = deepmad::score(&blocks, res, Convention::Tinynas, &Weights::default());
        let f = |k: &str| r[k].as_f64().unwrap();
        close(s.params, f("params"), &format!("{name} params"));
        close(s.flops, f("flops"), &format!("{name} flops"));
        close(s.rho, f("efficient_score_rho"), &format!("{name} rho"));
        close(
            s.entropy,
            f("deepmad_entropy_weighted"),
            &format!("{name} entropy"),
        );
        close(
            s.penalty,
            f("depth_penalty_beta10"),
            &format!("{name} penalty"),
        );
        close(s.score, f("final_search_score"), &format!("{name} score"));
        assert_eq!(
            s.layers as u64,
            r["layers"].as_u64().unwrap(),
            "{name} layers"
        );
        let depths: Vec<u64> = s.depths.iter().map(|&d| d as u64).collect();
        let want: Vec<u64> = r["depth_list_used_for_penalty"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(depths, want, "{name} depths");
        let terms = r["deepmad_stage_terms"].as_array().unwrap();
        assert_eq!(s.stages.len(), terms.len(), "{name} stages");
        for (j, (st, t)) in s.stages.iter().zip(terms).enumerate() {
            close(st.term, t.as_f64().unwrap(), &format!("{name} stage {j}"));
            assert_eq!(st.last_block as u64, r["stage_idx"][j].as_u64().unwrap());
            assert_eq!(
                st.units as u64,
                r["stage_block_num_cumulative"][j].as_u64().unwrap()
            );
            assert_eq!(
                st.layers as u64,
                r["stage_layer_num_cumulative"][j].as_u64().unwrap()
            );
            assert_eq!(st.channels as u64, r["stage_channels"][j].as_u64().unwrap());
            assert_eq!(
                st.resolution,
                r["stage_feature_map_size"][j].as_f64().unwrap()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 10, "every released structure has reference values");

    // The ResNet-50 analog: torchvision's ResNet-50 without its classifier (23,508,032 params).
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("resnet50_analog.json")).unwrap())
            .unwrap();
    let blocks = structure::read(dir.join("resnet50_analog.json").to_str().unwrap()).unwrap();
    let s = deepmad::score(&blocks, 224, Convention::Tinynas, &Weights::default());
    close(
        s.params,
        a["params_no_fc"].as_f64().unwrap(),
        "analog params",
    );
    assert_eq!(s.params, 23_508_032.0);
    close(s.flops, a["flops_224"].as_f64().unwrap(), "analog flops");
    close(s.rho, a["rho"].as_f64().unwrap(), "analog rho");
    close(
        s.entropy,
        a["entropy_weighted"].as_f64().unwrap(),
        "analog entropy",
    );
    assert_eq!(s.layers as u64, a["layers"].as_u64().unwrap());
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn the_paper_convention_doubles_the_entropy_and_takes_rho_over_the_whole_network() {
    let data = common::shared_data();
    let file = data.join("deepmad/released_structures.json");
    let blocks = structure::read(&format!("{}#deepmad-R50", file.display())).unwrap();
    let t = deepmad::score(&blocks, 224, Convention::Tinynas, &Weights::default());
    let p = deepmad::score(&blocks, 224, Convention::Paper, &Weights::default());
    // Same bookkeeping, resolutions and stages; entropy with ln w rather than 0.5 ln w.
    assert_eq!((p.flops, p.params, p.layers), (t.flops, t.params, t.layers));
    assert!((p.entropy - 2.0 * t.entropy).abs() < 1e-6 * p.entropy);
    // Depth std over all five stages ([1, 11, 12, 13, 15]) rather than the last three.
    assert_eq!(p.depths, vec![1, 11, 12, 13, 15]);
    assert!(
        p.rho <= t.rho + 1e-12,
        "the whole network's rho is one of the prefixes"
    );
    // SE networks: the paper keeps the real resolutions.
    let blocks = structure::read(&format!("{}#deepmad-29M-224", file.display())).unwrap();
    let p = deepmad::score(&blocks, 224, Convention::Paper, &Weights::default());
    assert_eq!(
        p.stages.iter().map(|s| s.resolution).collect::<Vec<_>>(),
        vec![112.0, 56.0, 28.0, 14.0, 7.0]
    );
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn score_cli_prints_json_and_rejects_bad_structures() {
    let data = common::shared_data();
    let file = data.join("deepmad/released_structures.json");
    let out = archproof(&[
        "deepmad",
        "score",
        &format!("{}#deepmad-R34", file.display()),
        "--convention",
        "tinynas",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("deepmad/reference_values.json")).unwrap(),
    )
    .unwrap();
    let r = &refs["deepmad-R34.txt"];
    for (ours, theirs) in [
        ("score", "final_search_score"),
        ("entropy", "deepmad_entropy_weighted"),
        ("penalty", "depth_penalty_beta10"),
        ("rho", "efficient_score_rho"),
        ("flops", "flops"),
        ("params", "params"),
    ] {
        close(v[ours].as_f64().unwrap(), r[theirs].as_f64().unwrap(), ours);
    }
    assert_eq!(v["stages"].as_array().unwrap().len(), 5);

    let dir = tempfile::tempdir().unwrap();
    let bad = |name: &str, text: &str, needles: &[&str]| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = archproof(&["deepmad", "score", p.to_str().unwrap()]);
        let mut all = vec![name];
        all.extend_from_slice(needles);
        assert_bad_input(&out, &all);
    };
    bad("garbage.json", "{not json", &["not valid JSON"]);
    bad(
        "unknown.json",
        r#"[{"class": "Transformer", "in": 3, "out": 8, "k": 3, "s": 2}]"#,
        &["not a DeepMAD block list"],
    );
    bad(
        "chain.json",
        r#"[{"class": "ConvKXBNRELU", "in": 3, "out": 8, "k": 3, "s": 2}, {"class": "ConvKXBNRELU", "in": 16, "out": 8, "k": 1, "s": 1}]"#,
        &["block 1", "reads 16 channels"],
    );
    bad(
        "stride.json",
        r#"[{"class": "ConvKXBNRELU", "in": 3, "out": 8, "k": 3, "s": 3}]"#,
        &["stride 3"],
    );
    bad(
        "nodepth.json",
        r#"[{"class": "SuperResK1KXK1", "in": 3, "out": 8, "k": 3, "s": 2}]"#,
        &["needs positive L and btn"],
    );
    let out = archproof(&["deepmad", "score", &format!("{}#nope", file.display())]);
    assert_bad_input(&out, &["no structure called 'nope'"]);
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn score_reads_the_ir_of_a_structure() {
    let data = common::shared_data();
    let file = data.join("deepmad/released_structures.json");
    let dir = tempfile::tempdir().unwrap();
    for name in ["deepmad-R18", "deepmad-29M-288"] {
        let blocks = structure::read(&format!("{}#{name}", file.display())).unwrap();
        let res = if name.ends_with("288") { 288 } else { 224 };
        let g = deepmad::ir::to_graph(&blocks, res, Some(1000), name).unwrap();
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, archproof::ir::io::to_json(&g).unwrap()).unwrap();
        let out = archproof(&[
            "deepmad",
            "score",
            path.to_str().unwrap(),
            "--convention",
            "tinynas",
            "--json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = deepmad::score(&blocks, res, Convention::Tinynas, &Weights::default());
        assert_eq!(v["resolution"].as_u64(), Some(res as u64));
        close(v["score"].as_f64().unwrap(), want.score, name);
        close(v["flops"].as_f64().unwrap(), want.flops, name);
    }
    // An IR graph of another origin is named as such.
    let g = archproof::models::build("resnet18", None, None).unwrap();
    let path = dir.path().join("resnet18.json");
    std::fs::write(&path, archproof::ir::io::to_json(&g).unwrap()).unwrap();
    let out = archproof(&["deepmad", "score", path.to_str().unwrap()]);
    assert_bad_input(
        &out,
        &["resnet18.json", "not written by archproof's DeepMAD"],
    );
}
