//! ACAS Xu and MNIST-FC instances with known answers, through the CLI as a user runs them. (The whole
//! benchmark, 186 instances with both engines, is `archproof bench verify`; see the README.)

use crate::common;

use archproof::verify::load_spec;
use common::archproof;

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn known_answers_on_a_sample_of_acas_xu() {
    let data = common::shared_data();
    let acas = data.join("acasxu");
    let dir = tempfile::tempdir().unwrap();
    let list = common::acas_sample();
    let list_path = dir.path().join("sample.csv");
    std::fs::write(&list_path, list.join("\n")).unwrap();
    let out = archproof(&[
        "verify",
        "--instances",
        list_path.to_str().unwrap(),
        "--root",
        acas.to_str().unwrap(),
        "--expected",
        acas.join("expected.csv").to_str().unwrap(),
        "--timeout",
        "60",
        "--json",
    ]);
    let s = common::ok_json(&out);
    assert_eq!(s["wrong"], 0);
    assert_eq!(s["checked_against_expected"], 9);
    assert_eq!(s["sat"], 3, "{s}");
    assert_eq!(s["unsat"], 6, "{s}");
    for row in s["rows"].as_array().unwrap() {
        if row["result"] == "sat" {
            assert_eq!(row["counterexample_checked"], true);
        }
    }
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn a_single_property_reports_json_and_a_proof_log() {
    let data = common::shared_data();
    let acas = data.join("acasxu");
    let dir = tempfile::tempdir().unwrap();
    let out = archproof(&[
        "verify",
        "--net",
        acas.join("onnx/ACASXU_run2a_1_9_batch_2000.onnx")
            .to_str()
            .unwrap(),
        "--spec",
        acas.join("vnnlib/prop_3.vnnlib").to_str().unwrap(),
        "--json",
        "--proof-dir",
        dir.path().to_str().unwrap(),
        "--vnncomp-out",
        dir.path().join("result.txt").to_str().unwrap(),
    ]);
    let v = common::ok_json(&out);
    assert_eq!(v["result"], "violated");
    let input: Vec<f64> = serde_json::from_value(v["counterexample"]["input"].clone()).unwrap();
    let output: Vec<f64> = serde_json::from_value(v["counterexample"]["output"].clone()).unwrap();
    assert_eq!((input.len(), output.len()), (5, 5));
    // prop 3's unsafe set: output 0 (clear of conflict) is the minimum.
    assert!(output[1..].iter().all(|o| output[0] <= *o));
    let text = std::fs::read_to_string(dir.path().join("result.txt")).unwrap();
    assert!(text.starts_with("sat\n((X_0 "), "{text}");
    let logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(logs.len(), 1);
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(logs[0].path().join("log.json")).unwrap())
            .unwrap();
    assert_eq!(log["outcome"]["result"], "violated");
    // --json names the log it wrote.
    assert_eq!(
        v["proof_log"].as_str().map(std::path::PathBuf::from),
        Some(logs[0].path().join("log.json"))
    );
}

/// Runs the VNN-COMP scripts on ACAS Xu 1_9 prop_7 (sat) into `dir`: the network, the
/// property, the result file and its text.
fn vnncomp_sat_result(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    String,
) {
    let acas = common::shared_data().join("acasxu");
    let onnx = acas.join("onnx/ACASXU_run2a_1_9_batch_2000.onnx");
    let vnnlib = acas.join("vnnlib/prop_7.vnnlib");
    let results = dir.join("out.txt");
    let run = |name: &str, args: &[&str]| {
        let out = std::process::Command::new(script(name))
            .args(args)
            .env("ARCHPROOF", env!("CARGO_BIN_EXE_archproof"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (o, v) = (onnx.to_str().unwrap(), vnnlib.to_str().unwrap());
    run("prepare_instance.sh", &["v1", "acasxu", o, v]);
    run(
        "run_instance.sh",
        &["v1", "acasxu", o, v, results.to_str().unwrap(), "60"],
    );
    let text = std::fs::read_to_string(&results).unwrap();
    assert!(text.starts_with("sat\n"), "{text}");
    (onnx, vnnlib, results, text)
}

fn script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scripts/vnncomp/{name}"))
}

/// A value `(NAME v)` of a result file.
fn result_value(text: &str, name: &str) -> f64 {
    let at = text
        .find(&format!("({name} "))
        .unwrap_or_else(|| panic!("{name}: {text}"));
    let rest = &text[at + name.len() + 2..];
    rest[..rest.find(')').unwrap()].trim().parse().unwrap()
}

/// The VNN-COMP interface end to end: `run_instance.sh` writes the competition's result file,
/// and its counterexample passes the competition's check, done here in float32 by an
/// independent runtime (tract): the input inside the box, and the network's output there
/// within 1e-4 of the reported one and inside the unsafe set.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn the_vnncomp_scripts_write_a_result_that_passes_the_f32_check() {
    let dir = tempfile::tempdir().unwrap();
    let (onnx, vnnlib, _, text) = vnncomp_sat_result(dir.path());
    // ((X_0 v) (X_1 v) ... (Y_0 v) ...)
    let value = |name: &str| result_value(&text, name);
    let x: Vec<f32> = (0..5).map(|i| value(&format!("X_{i}")) as f32).collect();
    let y: Vec<f64> = (0..5).map(|j| value(&format!("Y_{j}"))).collect();
    let spec = load_spec(&vnnlib).unwrap();
    let bytes = std::fs::read(&onnx).unwrap();
    let f32_out = common::tract_forward(&bytes, &[1, 1, 1, 5], &x);
    for (a, b) in f32_out.iter().zip(&y) {
        assert!((*a as f64 - b).abs() < 1e-4, "{f32_out:?} vs {y:?}");
    }
    // The competition's rule: some region holds the input, and each of its constraints
    // `c . y + d <= 0` holds for the float32 output to within 1e-4.
    let out64: Vec<f64> = f32_out.iter().map(|v| *v as f64).collect();
    let inside = spec.regions.iter().any(|r| {
        (0..5).all(|j| {
            r.input.lower[j] - 1e-6 <= x[j] as f64 && x[j] as f64 <= r.input.upper[j] + 1e-6
        }) && r.constraints.iter().all(|c| {
            c.coeffs.iter().zip(&out64).map(|(a, b)| a * b).sum::<f64>() + c.constant <= 1e-4
        })
    });
    assert!(inside, "the f32 output {out64:?} is not in the unsafe set");
}

/// The competition's own runtime: onnxruntime, through the checker script, accepts the
/// scripts' result file and rejects one whose stated output it does not reproduce.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
#[cfg_attr(
    not(ort_python),
    ignore = "needs ARCHPROOF_ORT_PYTHON (a Python with onnxruntime), unset when the tests were built"
)]
fn the_vnncomp_result_passes_onnxruntimes_check() {
    let python = common::ort_python();
    let dir = tempfile::tempdir().unwrap();
    let (onnx, vnnlib, results, text) = vnncomp_sat_result(dir.path());
    let (o, v) = (onnx.to_str().unwrap(), vnnlib.to_str().unwrap());
    let value = |name: &str| result_value(&text, name);
    let check = std::process::Command::new(&python)
        .arg(script("check_result.py"))
        .args([o, v, results.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "onnxruntime check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // The checker is not a rubber stamp: a stated output it does not reproduce fails.
    let wrong = dir.path().join("wrong.txt");
    let y0 = format!("(Y_0 {})", value("Y_0") + 0.01);
    let at = text.find("(Y_0 ").unwrap();
    let end = at + text[at..].find(')').unwrap() + 1;
    std::fs::write(&wrong, format!("{}{y0}{}", &text[..at], &text[end..])).unwrap();
    let check = std::process::Command::new(&python)
        .arg(script("check_result.py"))
        .args([o, v, wrong.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn bench_verify_sets_each_instance_beside_the_published_times() {
    use archproof::verify::instances;
    let data = common::shared_data();
    let m = data.join("mnistfc");
    // The published counts per network (../shared/README.md): alpha-beta-CROWN 30/22/18,
    // nnenum 28/11/8.
    let p = instances::read_published(&m.join("expected.csv")).unwrap();
    let solved = |tool: &str, net: &str| {
        let t = p.tools.iter().position(|x| x == tool).unwrap();
        p.times
            .iter()
            .filter(|(k, v)| k.0.contains(net) && v[t].is_some())
            .count()
    };
    let counts = |tool| {
        [
            solved(tool, "256x2"),
            solved(tool, "256x4"),
            solved(tool, "256x6"),
        ]
    };
    assert_eq!(counts("a-b-CROWN"), [30, 22, 18]);
    assert_eq!(counts("nnenum"), [28, 11, 8]);

    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("two.csv");
    std::fs::write(
        &list,
        "mnist-net_256x2.onnx,prop_8_0.05.vnnlib,120\nmnist-net_256x2.onnx,prop_11_0.03.vnnlib,120\n",
    )
    .unwrap();
    let out = dir.path().join("bench");
    let run = common::archproof(&[
        "bench",
        "verify",
        "--instances",
        list.to_str().unwrap(),
        "--root",
        m.to_str().unwrap(),
        "--expected",
        m.join("expected.csv").to_str().unwrap(),
        "--engines",
        "bab",
        "--timeout",
        "60",
        "--reference",
        "a total=100",
        "--out",
        out.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let bab = &summary[0];
    assert_eq!(bab["solved"], 2);
    let nnenum = bab["published"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tool"] == "nnenum")
        .unwrap();
    assert_eq!(nnenum["instances"], 2);
    assert_eq!(nnenum["tool_solved"], 2);
    assert_eq!(nnenum["both_solved"], 2);
    // nnenum's published times of the two: 2.02 s and 0.50 s.
    assert!((nnenum["tool_seconds_on_both"].as_f64().unwrap() - 2.52).abs() < 1e-9);
    let total = bab["total_seconds"].as_f64().unwrap();
    assert!((bab["references"][0]["ratio"].as_f64().unwrap() - total / 100.0).abs() < 1e-12);
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with("nnenum_s,venus2_s"), "{header}");
    assert!(csv
        .lines()
        .any(|l| l.contains("prop_8_0.05") && l.contains(",2.02,")));
    let svg = std::fs::read_to_string(out.join("cactus.svg")).unwrap();
    assert!(svg.contains("nnenum (published)"));
}

/// `bench verify --ort-python`: a counterexample is checked the competition's way, in float32
/// by onnxruntime, and the summary counts it.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
#[cfg_attr(
    not(ort_python),
    ignore = "needs ARCHPROOF_ORT_PYTHON (a Python with onnxruntime), unset when the tests were built"
)]
fn bench_verify_checks_counterexamples_in_onnxruntime() {
    let m = common::shared_data().join("mnistfc");
    let python = common::ort_python();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("one.csv");
    // sat by the competition's answers
    std::fs::write(&list, "mnist-net_256x2.onnx,prop_8_0.05.vnnlib,120\n").unwrap();
    let out = dir.path().join("bench");
    let run = common::archproof(&[
        "bench",
        "verify",
        "--instances",
        list.to_str().unwrap(),
        "--root",
        m.to_str().unwrap(),
        "--engines",
        "bab",
        "--timeout",
        "60",
        "--ort-python",
        &python,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary[0]["sat"], 1, "{summary}");
    assert_eq!(summary[0]["f32_checked"], 1, "{summary}");
}

/// The bound-guided branching strategies prove an MNIST-FC property that no single bounding
/// pass does (256x4 `prop_0_0.03`, unsat by the competition's answers), after branching (the
/// largest-triangle rule leaves it open past 100 s).
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn guided_branching_proves_an_mnistfc_property_by_splitting() {
    let data = common::shared_data();
    let m = data.join("mnistfc");
    for branching in ["babsr", "fsb"] {
        let out = archproof(&[
            "verify",
            "--net",
            m.join("mnist-net_256x4.onnx").to_str().unwrap(),
            "--spec",
            m.join("prop_0_0.03.vnnlib").to_str().unwrap(),
            "--branching",
            branching,
            "--timeout",
            "100",
            "--no-proof",
            "--json",
            "-q",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["result"], "holds", "{branching}: {j}");
        assert!(
            j["stats"]["domains"].as_u64().unwrap() > 1,
            "{branching}: {j}"
        );
    }
}
