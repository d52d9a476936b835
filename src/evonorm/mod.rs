//! EvoNorms (Liu et al. 2020, "Evolving normalization-activation layers"): layers evolved as
//! graphs of primitive tensor operations ([`NormActGraph`], the IR's extension point), the
//! published layers in the same representation, a canonical key so that no layer is trained
//! twice, and random construction and mutation.

pub mod anchors;
pub mod search;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::ir::normact::{Axes, NormActGraph, Prim, PrimNode};
use crate::ir::Shape;
use crate::train::{self, Dataset, Model, OptimizerKind, TrainConfig};

pub use anchors::Anchor;

/// The group count of the group statistics (the official code's `num_groups`; halved until
/// it divides the channel count).
pub const GROUPS: usize = 32;

/// A layer as the CLI names it: a published layer, or the standard operators it replaces.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Batch normalization then ReLU (the IR's `BatchNorm` and `Act` operators).
    BnRelu,
    /// Group normalization (32 groups, halved until they divide) then ReLU.
    GnRelu,
    /// A graph of primitives.
    Graph(NormActGraph),
}

/// The names [`named`] knows.
pub const NAMES: [&str; 7] = [
    "bn-relu",
    "gn-relu",
    "evonorm-b0",
    "evonorm-b1",
    "evonorm-s0",
    "evonorm-s1",
    "affine",
];

fn node(op: Prim, args: &[usize]) -> PrimNode {
    PrimNode {
        op,
        args: args.to_vec(),
    }
}

/// Why a layer could not be read, built or trained (the message names the file or layer).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvoNormError(pub String);

impl From<EvoNormError> for crate::search::EvalError {
    fn from(e: EvoNormError) -> Self {
        crate::search::EvalError(e.0)
    }
}

/// A published layer by name (see [`NAMES`]). Every variance carries `+ eps` (1e-5).
///
/// - EvoNorm-B0: `x / max(sqrt(var_nhw(x)), v1 * x + sqrt(var_hw(x)))`
/// - EvoNorm-B1: `x / max(sqrt(var_nhw(x)), (x + 1) * sqrt(var_hw(x)))`
/// - EvoNorm-S0: `x * sigmoid(v1 * x) / sqrt(var_hwc/g(x))`
/// - EvoNorm-S1: `x * sigmoid(x) / sqrt(var_hwc/g(x))`
/// - affine: `x` (the official code's `nonlinearity=False`)
///
/// each then times gamma plus beta. The constant 1 of B1 is `exp(0)`.
pub fn named(name: &str) -> Option<Layer> {
    use NormActGraph as G;
    let graph = |nodes: Vec<PrimNode>| {
        Some(Layer::Graph(NormActGraph {
            name: name.to_string(),
            nodes,
        }))
    };
    match name {
        "bn-relu" => Some(Layer::BnRelu),
        "gn-relu" => Some(Layer::GnRelu),
        "evonorm-b0" => graph(vec![
            node(Prim::Var(Axes::Batch), &[G::X]),    // 4
            node(Prim::Sqrt, &[4]),                   // 5
            node(Prim::Mul, &[G::V1, G::X]),          // 6
            node(Prim::Var(Axes::Instance), &[G::X]), // 7
            node(Prim::Sqrt, &[7]),                   // 8
            node(Prim::Add, &[6, 8]),                 // 9
            node(Prim::Max, &[5, 9]),                 // 10
            node(Prim::Div, &[G::X, 10]),             // 11
        ]),
        "evonorm-b1" => graph(vec![
            node(Prim::Var(Axes::Batch), &[G::X]),    // 4
            node(Prim::Sqrt, &[4]),                   // 5
            node(Prim::Exp, &[G::ZERO]),              // 6: the constant 1
            node(Prim::Add, &[G::X, 6]),              // 7
            node(Prim::Var(Axes::Instance), &[G::X]), // 8
            node(Prim::Sqrt, &[8]),                   // 9
            node(Prim::Mul, &[7, 9]),                 // 10
            node(Prim::Max, &[5, 10]),                // 11
            node(Prim::Div, &[G::X, 11]),             // 12
        ]),
        "evonorm-s0" | "evonorm-s1" => {
            let gate = if name == "evonorm-s0" {
                vec![node(Prim::Mul, &[G::V1, G::X]), node(Prim::Sigmoid, &[4])]
            } else {
                vec![node(Prim::Add, &[G::X, G::ZERO]), node(Prim::Sigmoid, &[4])]
            };
            let mut nodes = gate; // 4, 5
            nodes.extend([
                node(Prim::Mul, &[G::X, 5]),                   // 6
                node(Prim::Var(Axes::Group(GROUPS)), &[G::X]), // 7
                node(Prim::Sqrt, &[7]),                        // 8
                node(Prim::Div, &[6, 8]),                      // 9
            ]);
            graph(nodes)
        }
        "affine" => graph(vec![node(Prim::Add, &[G::X, G::ZERO])]),
        _ => None,
    }
}

/// Reads a layer: a name of [`NAMES`], or a JSON file of a [`NormActGraph`] (as `search
/// evonorm` writes them), validated.
pub fn load(spec: &str) -> Result<Layer, EvoNormError> {
    if let Some(l) = named(spec) {
        return Ok(l);
    }
    let path = std::path::Path::new(spec);
    if !path.exists() {
        return Err(EvoNormError(format!(
            "{spec}: neither a layer name ({}) nor a file",
            NAMES.join(", ")
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| EvoNormError(format!("{spec}: {e}")))?;
    let g: NormActGraph = serde_json::from_str(&text)
        .map_err(|e| EvoNormError(format!("{spec}: not a layer: {e}")))?;
    g.validate()
        .map_err(|e| EvoNormError(format!("{spec}: {e}")))?;
    Ok(Layer::Graph(g))
}

impl Layer {
    /// A short name for tables and legends.
    pub fn label(&self) -> String {
        match self {
            Layer::BnRelu => "bn-relu".into(),
            Layer::GnRelu => "gn-relu".into(),
            Layer::Graph(g) => g.name.clone(),
        }
    }

    /// The layer as a formula.
    pub fn formula(&self) -> String {
        match self {
            Layer::BnRelu => "max((x - mean_nhw(x)) / sqrt(var_nhw(x)) * gamma + beta, 0)".into(),
            Layer::GnRelu => {
                format!(
                    "max((x - mean_hwc/{GROUPS}(x)) / sqrt(var_hwc/{GROUPS}(x)) * gamma + beta, 0)"
                )
            }
            Layer::Graph(g) => g.formula(),
        }
    }
}

/// How a layer is trained in an anchor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnchorTraining {
    /// Channels of the anchor's first stage.
    pub width: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Passes over the training examples.
    pub epochs: usize,
    /// Adam's learning rate (cosine decay).
    pub lr: f64,
    /// The back end of the training steps (studies stored before it existed used candle).
    #[serde(default = "crate::train::TrainEngine::before_choice")]
    pub engine: crate::train::TrainEngine,
}

/// Trains `anchor` with `layer` on `data`'s training split and returns its accuracy on
/// `data`'s test split (in evaluation mode: batch statistics from their moving averages).
pub fn train_anchor(
    layer: &Layer,
    anchor: Anchor,
    data: &Dataset,
    cfg: &AnchorTraining,
    seed: u64,
) -> Result<f64, EvoNormError> {
    let g = anchors::build(
        anchor,
        layer,
        Shape::new(data.shape.clone()),
        data.classes,
        cfg.width,
    )
    .map_err(|e| EvoNormError(e.to_string()))?;
    train_network(&g, data, cfg, seed)
}

/// Trains a network with Adam as `cfg` says and returns its test-split accuracy (0 when
/// training diverged).
pub fn train_network(
    g: &crate::ir::Graph,
    data: &Dataset,
    cfg: &AnchorTraining,
    seed: u64,
) -> Result<f64, EvoNormError> {
    let mut model = Model::new(g, seed).map_err(|e| EvoNormError(e.to_string()))?;
    let tc = TrainConfig {
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        optimizer: OptimizerKind::Adam,
        seed,
        engine: cfg.engine,
        ..TrainConfig::default()
    };
    let report =
        train::train(&mut model, data, &tc, &|_| {}).map_err(|e| EvoNormError(e.to_string()))?;
    Ok(if report.test_accuracy.is_finite() {
        report.test_accuracy
    } else {
        0.0
    })
}

fn commutative(p: Prim) -> bool {
    matches!(p, Prim::Add | Prim::Mul | Prim::Max)
}

/// Keys of every node (initial nodes first): equal for nodes that compute the same expression
/// up to the order of operands of commutative primitives.
fn node_keys(g: &NormActGraph) -> Vec<u64> {
    let mut keys: Vec<u64> = (0..NormActGraph::INITIAL as u64)
        .map(|i| {
            let mut h = DefaultHasher::new();
            ("initial", i).hash(&mut h);
            h.finish()
        })
        .collect();
    for n in &g.nodes {
        let mut args: Vec<u64> = n.args.iter().map(|&a| keys[a]).collect();
        if commutative(n.op) {
            args.sort_unstable();
        }
        let mut h = DefaultHasher::new();
        (format!("{:?}", n.op), args).hash(&mut h);
        keys.push(h.finish());
    }
    keys
}

/// A key equal for layers that compute the same expression up to node order, dead nodes and
/// the order of operands of commutative primitives (so a search never trains one twice).
pub fn canonical_key(g: &NormActGraph) -> u64 {
    *node_keys(g).last().expect("initial nodes")
}

/// The canonical form of a layer: only the nodes the output depends on, each expression once,
/// commutative operands ordered by key, nodes in depth-first post-order from the output. Layers
/// with the same [`canonical_key`] have the same canonical form.
pub fn canonicalize(g: &NormActGraph) -> NormActGraph {
    let keys = node_keys(g);
    let mut out: Vec<PrimNode> = Vec::new();
    let mut index: std::collections::HashMap<u64, usize> =
        (0..NormActGraph::INITIAL).map(|i| (keys[i], i)).collect();
    fn emit(
        id: usize,
        g: &NormActGraph,
        keys: &[u64],
        index: &mut std::collections::HashMap<u64, usize>,
        out: &mut Vec<PrimNode>,
    ) -> usize {
        if let Some(&i) = index.get(&keys[id]) {
            return i;
        }
        let n = &g.nodes[id - NormActGraph::INITIAL];
        let mut args = n.args.clone();
        if commutative(n.op) {
            args.sort_by_key(|&a| keys[a]);
        }
        let args: Vec<usize> = args
            .into_iter()
            .map(|a| emit(a, g, keys, index, out))
            .collect();
        out.push(PrimNode { op: n.op, args });
        let i = NormActGraph::INITIAL + out.len() - 1;
        index.insert(keys[id], i);
        i
    }
    let last = keys.len() - 1;
    if last < NormActGraph::INITIAL {
        return g.clone();
    }
    emit(last, g, &keys, &mut index, &mut out);
    NormActGraph {
        name: format!("layer-{:016x}", keys[last]),
        nodes: out,
    }
}

/// The primitives a search draws from: the 12 element-wise ones and mean and variance over
/// batch, instance and group axes.
pub fn primitives() -> Vec<Prim> {
    Prim::all(GROUPS)
}

fn random_node(rng: &mut ChaCha8Rng, id: usize) -> PrimNode {
    let prims = primitives();
    let op = prims[rng.random_range(0..prims.len())];
    let args = (0..op.arity()).map(|_| rng.random_range(0..id)).collect();
    PrimNode { op, args }
}

/// A random layer of `len` primitive nodes, each reading random earlier nodes; the last is
/// the output.
pub fn random_layer(rng: &mut ChaCha8Rng, len: usize) -> NormActGraph {
    NormActGraph {
        name: "random".into(),
        nodes: (0..len.max(1))
            .map(|i| random_node(rng, NormActGraph::INITIAL + i))
            .collect(),
    }
}

/// The paper's mutation: one node the output depends on gets a new primitive and new
/// operands; or, while the layer has fewer than `max_len` nodes, a new output node is added
/// that reads the old output. The result is canonical and always differs in its key.
pub fn mutate(g: &NormActGraph, rng: &mut ChaCha8Rng, max_len: usize) -> NormActGraph {
    let key = canonical_key(g);
    for _ in 0..100 {
        let mut m = g.clone();
        let n = m.nodes.len();
        if n < max_len && rng.random_bool(0.25) {
            let id = NormActGraph::INITIAL + n;
            let mut node = random_node(rng, id);
            let k = rng.random_range(0..node.args.len());
            node.args[k] = id - 1;
            m.nodes.push(node);
        } else {
            let live = m.live();
            let candidates: Vec<usize> = (0..n)
                .filter(|&i| live[i + NormActGraph::INITIAL])
                .collect();
            let i = candidates[rng.random_range(0..candidates.len())];
            m.nodes[i] = random_node(rng, NormActGraph::INITIAL + i);
        }
        let m = canonicalize(&m);
        if canonical_key(&m) != key {
            return m;
        }
    }
    canonicalize(&random_layer(rng, g.nodes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn named_layers_validate_and_print() {
        for name in NAMES {
            if let Some(Layer::Graph(g)) = named(name) {
                g.validate().unwrap();
            }
        }
        let Some(Layer::Graph(s0)) = named("evonorm-s0") else {
            panic!()
        };
        assert_eq!(
            s0.formula(),
            "((x * sigmoid((v1 * x))) / ssqrt(var_hwc/32(x))) * gamma + beta"
        );
        assert_eq!(s0.params_per_channel(), 3);
        assert!(named("evonorm-z9").is_none());
    }

    #[test]
    fn canonical_key_ignores_operand_order_and_dead_nodes() {
        let Some(Layer::Graph(b0)) = named("evonorm-b0") else {
            panic!()
        };
        let mut swapped = b0.clone();
        swapped.nodes[6].args.reverse(); // max(5, 9) -> max(9, 5)
        swapped.nodes[2].args.reverse(); // v1 * x -> x * v1
        assert_eq!(canonical_key(&b0), canonical_key(&swapped));
        assert_eq!(canonicalize(&b0).nodes.len(), b0.nodes.len());
        assert_eq!(canonicalize(&swapped), canonicalize(&b0));
        let mut div = b0.clone();
        div.nodes[7].args.reverse(); // x / d -> d / x: a different layer
        assert_ne!(canonical_key(&b0), canonical_key(&div));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let g = random_layer(&mut rng, 8);
            g.validate().unwrap();
            let m = mutate(&g, &mut rng, 14);
            m.validate().unwrap();
            assert_ne!(canonical_key(&g), canonical_key(&m));
            // The canonical form computes the same expression, once.
            let c = canonicalize(&g);
            assert_eq!(canonical_key(&c), canonical_key(&g));
            assert_eq!(canonicalize(&c), c);
            assert!(c.live()[NormActGraph::INITIAL..].iter().all(|&l| l));
        }
    }
}
