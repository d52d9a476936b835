//! IR JSON round trip, DOT export, and the CLI's answers to bad graphs and names.

use crate::common;

use archproof::ir::io;
use common::{archproof, assert_bad_input};

#[test]
fn json_round_trip_keeps_graph_and_numbers() {
    for name in ["resnet18", "resnet50", "mobilenet_v2"] {
        let g = archproof::models::build(name, None, None).unwrap();
        let text = io::to_json(&g).unwrap();
        let back = io::from_json(&text).unwrap();
        let (a, b) = (g.analyze().unwrap(), back.analyze().unwrap());
        assert_eq!(a.totals, b.totals, "{name}");
        assert_eq!(back.len(), g.len());
        for id in g.node_ids() {
            let n = g.node(id);
            let m = back.find(&n.name).unwrap();
            assert_eq!(back.node(m).op, n.op);
            let ins = |gr: &archproof::ir::Graph, i| {
                gr.inputs_of(i)
                    .into_iter()
                    .map(|x| gr.node(x).name.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(ins(&back, m), ins(&g, id), "{}", n.name);
        }
        // Writing again gives the same text: the format is canonical.
        assert!(
            io::to_json(&back).unwrap() == text,
            "{name}: the text changed"
        );
    }
}

#[test]
fn cli_export_then_inspect_reads_back_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.json");
    let p = path.to_str().unwrap();
    let out = archproof(&["export", "resnet18", "--format", "json", "-o", p]);
    assert!(out.status.success());
    let inspect = |m: &str| -> serde_json::Value {
        let o = archproof(&["inspect", m, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (a, b) = (inspect("resnet18"), inspect(p));
    assert_eq!(a["params"], 11_689_512);
    assert_eq!(a["params"], b["params"]);
    assert_eq!(a["macs"], b["macs"]);
    assert_eq!(a["layers"], b["layers"]);
    // An existing file is not replaced without --force.
    let again = archproof(&["export", "resnet18", "-o", p]);
    assert_bad_input(&again, &["exists", "--force"]);
    assert!(archproof(&["export", "resnet34", "-o", p, "--force"])
        .status
        .success());
    assert_eq!(inspect(p)["params"], 21_797_672);
}

/// A NAS-Bench-201 network on another skeleton is named as a search names it
/// (`nb201-cCnN[sS]:<cell>`): C = 16, N = 5 is the benchmark's network, a stride-2 stem keeps
/// the weights and quarters the work, and a malformed prefix is one line and exit 2.
#[test]
fn nb201_skeleton_names_build_the_networks_they_say() {
    let cell = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|";
    let inspect = |m: String| -> serde_json::Value {
        let o = archproof(&["inspect", &m, "--json"]);
        assert!(
            o.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let bench = inspect(format!("nb201:{cell}"));
    let same = inspect(format!("nb201-c16n5:{cell}"));
    assert_eq!(
        (&bench["params"], &bench["macs"]),
        (&same["params"], &same["macs"])
    );
    let (s1, s2) = (
        inspect(format!("nb201-c8n1:{cell}")),
        inspect(format!("nb201-c8n1s2:{cell}")),
    );
    assert_eq!(s1["params"], s2["params"]);
    let (m1, m2) = (s1["macs"].as_u64().unwrap(), s2["macs"].as_u64().unwrap());
    assert!(m2 * 3 < m1 && m2 * 5 > m1, "{m1} {m2}");
    for bad in ["nb201-c8", "nb201-c8n0s2", "nb201-x"] {
        let out = archproof(&["inspect", &format!("{bad}:{cell}")]);
        assert_bad_input(&out, &[bad, "nb201-cCnN[sS]"]);
    }
}

#[test]
fn dot_export_has_every_node_and_edge() {
    let g = archproof::models::build("resnet18", None, None).unwrap();
    let dot = io::to_dot(&g, &g.analyze().unwrap());
    assert!(dot.contains("digraph"));
    assert_eq!(dot.matches("shape=box").count(), g.len());
    assert_eq!(dot.matches(" -> ").count(), g.dag().edge_count());
    assert!(dot.contains("layer4.1.conv2"));
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const TINY: &str = r#"{"format": "archproof-ir", "version": 1, "name": "tiny",
 "nodes": [
  {"name": "input", "op": {"kind": "input", "shape": [3, 8, 8]}, "inputs": []},
  {"name": "conv", "op": {"kind": "conv2d", "out_channels": 4, "kernel": [3, 3], "stride": [1, 1],
    "padding": [1, 1], "dilation": [1, 1], "groups": 1, "bias": true}, "inputs": ["input"]},
  {"name": "relu", "op": {"kind": "act", "function": "relu"}, "inputs": ["conv"]}
 ],
 "outputs": ["relu"]}"#;

#[test]
fn a_hand_written_graph_reads_with_its_costs() {
    let g = io::from_json(TINY).unwrap();
    let t = g.analyze().unwrap().totals;
    assert_eq!(t.params, 4 * 3 * 9 + 4);
    assert_eq!(t.macs, 4 * 3 * 9 * 64);
}

#[test]
fn bad_graphs_and_names_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = write(
        &dir,
        "malformed.json",
        "{\"format\": \"archproof-ir\", \"version\": 1, \"nodes\": [",
    );
    assert_bad_input(
        &archproof(&["inspect", &malformed]),
        &["malformed.json", "not valid JSON"],
    );

    let cyclic = TINY.replace(r#""inputs": ["input"]"#, r#""inputs": ["relu"]"#);
    let cyclic = write(&dir, "cyclic.json", &cyclic);
    assert_bad_input(&archproof(&["inspect", &cyclic]), &["cyclic.json", "cycle"]);

    let shapes = TINY
        .replace(r#""inputs": ["conv"]"#, r#""inputs": ["conv", "input"]"#)
        .replace(r#""kind": "act", "function": "relu""#, r#""kind": "add""#);
    let shapes = write(&dir, "shapes.json", &shapes);
    assert_bad_input(
        &archproof(&["inspect", &shapes]),
        &["shapes.json", "node 'relu'", "different shapes"],
    );

    let dangling = TINY.replace(r#""inputs": ["conv"]"#, r#""inputs": ["nope"]"#);
    let dangling = write(&dir, "dangling.json", &dangling);
    assert_bad_input(
        &archproof(&["inspect", &dangling]),
        &["node 'relu'", "'nope'"],
    );

    let version = write(
        &dir,
        "v9.json",
        &TINY.replace("\"version\": 1", "\"version\": 9"),
    );
    assert_bad_input(&archproof(&["inspect", &version]), &["version 9"]);

    let kind = write(&dir, "kind.json", &TINY.replace("\"act\"", "\"softmax\""));
    assert_bad_input(&archproof(&["inspect", &kind]), &["kind.json", "softmax"]);

    // A field of the wrong type: the message names the node.
    let typed = write(
        &dir,
        "typed.json",
        &TINY.replace("\"out_channels\": 4", "\"out_channels\": \"four\""),
    );
    assert_bad_input(
        &archproof(&["inspect", &typed]),
        &["typed.json", "node 1 'conv'", "invalid type"],
    );

    // Binary files: an ONNX model without its extension, and a broken .onnx.
    let binary = dir.path().join("model");
    std::fs::write(&binary, b"\x08\x07\x12\x04\xff\xfe\x00").unwrap();
    assert_bad_input(
        &archproof(&["inspect", binary.to_str().unwrap()]),
        &["model", "binary", ".onnx"],
    );
    let onnx = dir.path().join("x.onnx");
    std::fs::write(&onnx, b"\x08\x07\x12\x04\xff\xfe\x00").unwrap();
    let out = archproof(&["inspect", onnx.to_str().unwrap()]);
    assert_bad_input(&out, &["x.onnx", "ONNX"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("UTF-8"));

    assert_bad_input(
        &archproof(&["inspect", "resnet99"]),
        &["unknown model 'resnet99'"],
    );
    assert_bad_input(
        &archproof(&["inspect", "nb201:|conv~0|"]),
        &["not a NAS-Bench-201 cell"],
    );
    assert_bad_input(
        &archproof(&[
            "inspect",
            &dir.path().join("missing.json").to_string_lossy(),
        ]),
        &["missing.json"],
    );
    assert_bad_input(
        &archproof(&["inspect", "resnet18", "--input", "3x0x4"]),
        &["not a shape"],
    );
}
