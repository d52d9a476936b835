//! Reading and writing graphs: versioned JSON (serde) and Graphviz DOT.
//!
//! The JSON form lists nodes in a topological order, each with its operator and the names of
//! its inputs in argument order:
//! ```json
//! {"format": "archproof-ir", "version": 1, "name": "tiny",
//!  "nodes": [{"name": "input", "op": {"kind": "input", "shape": [3, 8, 8]}, "inputs": []},
//!            {"name": "relu", "op": {"kind": "act", "function": "relu"}, "inputs": ["input"]}],
//!  "outputs": ["relu"]}
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use petgraph::dot::{Config, Dot};
use serde::{Deserialize, Serialize};

use super::graph::{Analysis, Graph};
use super::ops::Op;
use super::weights::Weights;
use super::IrError;

/// The `format` field of an IR JSON file.
pub const FORMAT: &str = "archproof-ir";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// Whether JSON text is an IR file: an object whose top-level `format` is [`FORMAT`] (other
/// JSON files, such as layer lists and block structures, are arrays or lack the field).
pub fn is_ir_json(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        format: Option<String>,
    }
    serde_json::from_str::<Probe>(text).is_ok_and(|p| p.format.as_deref() == Some(FORMAT))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphFile<N> {
    format: String,
    version: u32,
    name: String,
    nodes: Vec<N>,
    outputs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRecord {
    name: String,
    op: Op,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Weights::is_empty")]
    weights: Weights,
}

/// The graph as pretty-printed JSON, nodes in topological order.
pub fn to_json(graph: &Graph) -> Result<String, IrError> {
    let analysis = graph.analyze()?;
    let nodes = analysis
        .order
        .iter()
        .map(|&id| NodeRecord {
            name: graph.node(id).name.clone(),
            op: graph.node(id).op.clone(),
            inputs: graph
                .inputs_of(id)
                .into_iter()
                .map(|i| graph.node(i).name.clone())
                .collect(),
            weights: graph.node(id).weights.clone(),
        })
        .collect();
    let file = GraphFile {
        format: FORMAT.into(),
        version: VERSION,
        name: graph.name.clone(),
        nodes,
        outputs: graph
            .outputs()
            .iter()
            .map(|&o| graph.node(o).name.clone())
            .collect(),
    };
    serde_json::to_string_pretty(&file).map_err(|e| IrError::Invalid(e.to_string()))
}

/// Reads a graph from JSON text and validates it. Errors say what is wrong (the caller adds
/// the file name).
pub fn from_json(text: &str) -> Result<Graph, IrError> {
    // Look at the envelope first, so that a file of another kind or version gets a clear word
    // rather than a complaint about its first unknown field.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| IrError::Invalid(format!("not valid JSON: {e}")))?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(IrError::Invalid(format!(
                "format is '{other}', expected '{FORMAT}'"
            )))
        }
        None => {
            return Err(IrError::Invalid(format!(
                "not an archproof IR file (no \"format\": \"{FORMAT}\")"
            )))
        }
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == VERSION as u64 => {}
        Some(v) => {
            return Err(IrError::Invalid(format!(
                "IR version {v} is not supported (this build reads version {VERSION})"
            )))
        }
        None => return Err(IrError::Invalid("no \"version\" field".into())),
    }
    // The envelope first, then each node on its own, so that an error names its node.
    let file: GraphFile<serde_json::Value> = serde_json::from_value(value)
        .map_err(|e| IrError::Invalid(format!("malformed IR: {e}")))?;
    let nodes = file
        .nodes
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!(" '{n}'"))
                .unwrap_or_default();
            serde_json::from_value::<NodeRecord>(v)
                .map_err(|e| IrError::Invalid(format!("malformed IR: node {i}{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file = GraphFile {
        format: file.format,
        version: file.version,
        name: file.name,
        nodes,
        outputs: file.outputs,
    };
    // Nodes may be listed in any order: add them all, then connect.
    let mut wired = Graph::new(file.name);
    let mut new_ids = HashMap::new();
    for rec in &file.nodes {
        let id = wired.add_node(rec.name.clone(), rec.op.clone(), &[]);
        wired.set_weights(id, rec.weights.clone());
        if new_ids.insert(rec.name.clone(), id).is_some() {
            return Err(IrError::DuplicateName(rec.name.clone()));
        }
    }
    for rec in &file.nodes {
        let mut args = Vec::with_capacity(rec.inputs.len());
        for input in &rec.inputs {
            let id = new_ids.get(input).ok_or_else(|| IrError::Shape {
                node: rec.name.clone(),
                msg: format!("reads '{input}', which is not a node of the graph"),
            })?;
            args.push(*id);
        }
        wired.connect(new_ids[&rec.name], &args);
    }
    let outputs =
        file.outputs
            .iter()
            .map(|o| {
                new_ids.get(o).copied().ok_or_else(|| {
                    IrError::Invalid(format!("output '{o}' is not a node of the graph"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
    wired.set_outputs(outputs);
    wired.analyze()?;
    Ok(wired)
}

/// Reads and validates a graph file; errors name the file.
pub fn read_graph(path: &Path) -> Result<Graph, IrError> {
    let file_err = |msg: String| IrError::File {
        path: path.display().to_string(),
        msg,
    };
    let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        file_err(
            "not an IR JSON file: it is binary (an ONNX model is read by its .onnx extension)"
                .into(),
        )
    })?;
    from_json(&text).map_err(|e| file_err(e.to_string()))
}

/// The graph in Graphviz DOT: one box per node with its operator and output shape.
pub fn to_dot(graph: &Graph, analysis: &Analysis) -> String {
    let label = |id: super::NodeId| {
        let node = graph.node(id);
        format!(
            "{}\\n{}\\n{}",
            node.name,
            node.op.describe(),
            analysis.shapes[id.index()]
        )
    };
    let dag = graph.dag();
    let body = format!(
        "{:?}",
        Dot::with_attr_getters(
            dag,
            &[Config::EdgeNoLabel, Config::NodeNoLabel],
            &|_, e| {
                use petgraph::visit::EdgeRef;
                if dag
                    .edges_directed(e.target(), petgraph::Direction::Incoming)
                    .count()
                    > 1
                {
                    format!("label=\"{}\"", e.weight())
                } else {
                    String::new()
                }
            },
            &|_, (id, _)| format!("label=\"{}\" shape=box", label(id).replace('"', "'")),
        )
    );
    let mut out = String::new();
    let _ = writeln!(out, "// {} (archproof IR)", graph.name);
    out.push_str(&body.replacen("digraph {", "digraph {\n    rankdir=TB;", 1));
    out
}

#[cfg(test)]
mod tests {
    use super::is_ir_json;

    #[test]
    fn ir_files_are_told_by_their_format_field() {
        assert!(is_ir_json(
            r#"{"format": "archproof-ir", "version": 1, "nodes": []}"#
        ));
        // The string elsewhere (a name, a nested field) does not make an IR file.
        assert!(!is_ir_json(r#"[{"name": "archproof-ir"}]"#));
        assert!(!is_ir_json(r#"{"meta": {"format": "archproof-ir"}}"#));
        assert!(!is_ir_json(r#"{"format": "onnx"}"#));
        assert!(!is_ir_json("not json"));
    }
}
