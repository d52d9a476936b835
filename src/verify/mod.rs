//! Verification of trained ReLU networks: prove that a property holds, or refute it with a
//! counterexample that a plain forward pass confirms.
//!
//! Pipeline for one property ([`verify`]): the falsifier looks for a cheap counterexample
//! first; then each region of the unsafe set goes to branch and bound with back-substitution
//! bounds, and subdomains that stay open go to Z3. The `smt` engine instead hands each region,
//! unbounded, to Z3 (the baseline). Soundness rules: "holds" only when every region is closed
//! by a sound bound or an `unsat` from Z3; "violated" only with a point that a forward pass in
//! f64 shows to be in the unsafe set; anything else is "unknown".

pub mod accuracy;
pub mod alpha_beta;
pub mod bab;
pub mod bounds;
pub mod dlv;
pub mod falsify;
pub mod graph;
pub mod instances;
pub mod ir;
pub mod milp;
pub mod nnet;
pub mod proof_log;
pub mod radius;
pub mod smt;
pub mod spec;
pub mod vnncomp;
pub mod vnnlib;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use graph::Network;
pub use spec::Spec;

use bab::{BabConfig, BabStats, SpecResult};
pub use bab::{Branching, Exact};
use smt::SmtRecord;

/// Errors of loading networks and specs; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read or understood.
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// The network and the spec do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// A model that is not a network the verifier reads (the message names the node).
    #[error("{0}")]
    Model(String),
    /// The float32 checker (an external Python with onnxruntime) cannot run.
    #[error("{0}")]
    Checker(String),
    /// An instance of a list failed to load or run.
    #[error("line {line} ({onnx}, {vnnlib}): {error}")]
    Instance {
        /// The instance's line in the list.
        line: usize,
        /// The network as the list names it.
        onnx: String,
        /// The property as the list names it.
        vnnlib: String,
        /// What went wrong.
        error: Box<VerifyError>,
    },
    /// Two engines disagree about one property (one proved it, one refuted it): a soundness
    /// bug of the verifier, never a property of the input.
    #[error("internal error, please report it: {0}")]
    Unsound(String),
    /// An unknown name of a setting (engine, bounding, branching).
    #[error("unknown {kind} '{name}' (known: {known})")]
    UnknownSetting {
        /// Which setting.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The names there are.
        known: String,
    },
}

/// What is wrong with the text of a network or property file, with its place (the loader
/// adds the file's name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl From<String> for ParseError {
    fn from(msg: String) -> Self {
        ParseError(msg)
    }
}

impl From<&str> for ParseError {
    fn from(msg: &str) -> Self {
        ParseError(msg.to_string())
    }
}

/// The member of `all` called `name`, or the error listing the known names.
fn setting<T: Copy>(
    kind: &'static str,
    all: &[T],
    name_of: fn(T) -> &'static str,
    name: &str,
) -> Result<T, VerifyError> {
    all.iter()
        .copied()
        .find(|&t| name_of(t) == name)
        .ok_or_else(|| VerifyError::UnknownSetting {
            kind,
            name: name.to_string(),
            known: all
                .iter()
                .map(|&t| name_of(t))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn file_err(path: &Path, msg: impl Into<String>) -> VerifyError {
    VerifyError::File {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Loads a network by its extension: `.onnx` (imported into the IR by
/// [`crate::onnx::import`], as every command reads ONNX), `.nnet`, or `.json` (archproof IR
/// with weights, or the layer-list format of [`parse_layer_list`]); IR graphs become
/// networks through [`ir::from_graph`].
pub fn load_network(path: &Path) -> Result<Network, VerifyError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "onnx" => {
            let bytes = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
            let name = path
                .file_stem()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            onnx_network(&bytes, &name).map_err(|e| file_err(path, e.to_string()))
        }
        "nnet" => {
            let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
            nnet::parse(&text)
                .map(|(n, _)| n)
                .map_err(|e| file_err(path, e.0))
        }
        "json" => {
            let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
            if crate::ir::io::is_ir_json(&text) {
                let graph =
                    crate::ir::io::from_json(&text).map_err(|e| file_err(path, e.to_string()))?;
                ir::from_graph(&graph).map_err(|e| file_err(path, e.to_string()))
            } else {
                parse_layer_list(&text).map_err(|e| file_err(path, e.0))
            }
        }
        _ => Err(file_err(
            path,
            "unknown network format: expected .onnx, .nnet or .json",
        )),
    }
}

/// The verifier's network of an ONNX model (its bytes): imported into the IR, then lowered.
/// Errors name the node and say what is wrong (the caller adds the file).
pub fn onnx_network(bytes: &[u8], name: &str) -> Result<Network, VerifyError> {
    let graph = crate::onnx::import(bytes, name).map_err(|e| VerifyError::Model(e.to_string()))?;
    ir::from_graph(&graph)
}

/// Loads a VNN-LIB spec.
pub fn load_spec(path: &Path) -> Result<Spec, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    vnnlib::parse(&text, &name).map_err(|e| file_err(path, e.0))
}

/// Which engine decides the property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Falsifier, bound propagation, branch and bound, Z3 for what stays open.
    Bab,
    /// The whole network in Z3, no propagation (the baseline).
    Smt,
    /// Falsifier and one pass of back-substitution bounds, no branching: an incomplete
    /// verifier, the baseline that shows what branching adds.
    Bounds,
}

impl Engine {
    /// Every engine, by name.
    pub const ALL: [Engine; 3] = [Engine::Bab, Engine::Smt, Engine::Bounds];

    /// The engine's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Bab => "bab",
            Engine::Smt => "smt",
            Engine::Bounds => "bounds",
        }
    }

    /// The engine of a name.
    pub fn parse(name: &str) -> Result<Engine, VerifyError> {
        setting("engine", &Engine::ALL, Engine::name, name)
    }
}

/// Settings of a verification run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wall-clock limit.
    pub timeout: Duration,
    /// The engine.
    pub engine: Engine,
    /// Seed of the falsifier.
    pub seed: u64,
    /// Keep the SMT-LIB of Z3 queries for the proof log.
    pub record_smt: bool,
    /// How branch and bound bounds a subdomain's constraints.
    pub bounding: Bounding,
    /// How branch and bound chooses the ReLU to split.
    pub branching: Branching,
    /// How branch and bound decides a subdomain on which few neurons are unstable.
    pub exact: Exact,
}

/// How branch and bound bounds the constraints of a subdomain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bounding {
    /// Back-substitution with the adaptive ReLU relaxation (CROWN / DeepPoly).
    Crown,
    /// CROWN, then, where it leaves the subdomain open, its slopes and the multipliers of
    /// the subdomain's splits optimised ([`alpha_beta`]).
    AlphaBeta,
}

impl Bounding {
    /// Every bounding, by name.
    pub const ALL: [Bounding; 2] = [Bounding::Crown, Bounding::AlphaBeta];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bounding::Crown => "crown",
            Bounding::AlphaBeta => "alpha-beta",
        }
    }

    /// The bounding of a name.
    pub fn parse(name: &str) -> Result<Bounding, VerifyError> {
        setting("bounding", &Bounding::ALL, Bounding::name, name)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(60),
            engine: Engine::Bab,
            seed: 0,
            record_smt: false,
            bounding: Bounding::AlphaBeta,
            branching: Branching::Babsr,
            exact: Exact::Milp,
        }
    }
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No input violates the property (VNN-LIB `unsat`).
    Holds,
    /// A counterexample exists (VNN-LIB `sat`).
    Violated,
    /// Not settled within the limits.
    Unknown,
}

impl Verdict {
    /// The VNN-COMP answer: `unsat`, `sat`, or `timeout`/`unknown`.
    pub fn vnncomp(self, timed_out: bool) -> Answer {
        match self {
            Verdict::Holds => Answer::Unsat,
            Verdict::Violated => Answer::Sat,
            Verdict::Unknown if timed_out => Answer::Timeout,
            Verdict::Unknown => Answer::Unknown,
        }
    }
}

/// An answer as VNN-COMP words it: about the unsafe set, so `sat` means a counterexample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// A counterexample exists (the property is violated).
    Sat,
    /// No input reaches the unsafe set (the property holds).
    Unsat,
    /// Not settled within the time limit.
    Timeout,
    /// Not settled for another reason.
    Unknown,
}

impl Answer {
    /// The word of result files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Sat => "sat",
            Answer::Unsat => "unsat",
            Answer::Timeout => "timeout",
            Answer::Unknown => "unknown",
        }
    }

    /// `sat` or `unsat`.
    pub fn is_solved(self) -> bool {
        matches!(self, Answer::Sat | Answer::Unsat)
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A counterexample, checked by a forward pass.
#[derive(Debug, Clone, Serialize)]
pub struct Counterexample {
    /// The input.
    pub input: Vec<f64>,
    /// The network's output at the input (f64 forward pass).
    pub output: Vec<f64>,
    /// Which region of the spec it falls in.
    pub region: usize,
}

/// Counters of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Regions of the spec.
    pub regions: usize,
    /// Branch-and-bound subdomains bounded.
    pub domains: u64,
    /// Z3 calls.
    pub smt_calls: u64,
    /// Mixed-integer programs solved.
    pub milp_calls: u64,
    /// Deepest split.
    pub max_depth: u64,
    /// Whether the falsifier found the counterexample.
    pub falsified: bool,
}

/// The outcome of verifying one property.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The verdict.
    pub result: Verdict,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// For `violated`: the checked counterexample.
    pub counterexample: Option<Counterexample>,
    /// For `unknown`: why.
    pub reason: Option<String>,
    /// Whether the time limit was reached.
    pub timed_out: bool,
    /// Counters.
    pub stats: Stats,
    /// The Z3 queries, when recorded.
    #[serde(skip)]
    pub smt: Vec<SmtRecord>,
}

impl Outcome {
    /// The VNN-COMP result file: the verdict word, then for `sat` the assignment
    /// `((X_0 v) ... (Y_0 v) ...)`.
    pub fn vnncomp_result(&self) -> String {
        let mut s = format!("{}\n", self.result.vnncomp(self.timed_out));
        if let Some(c) = &self.counterexample {
            s.push('(');
            for (i, v) in c.input.iter().enumerate() {
                s.push_str(&format!("{}(X_{i} {v:e})\n", if i == 0 { "" } else { " " }));
            }
            for (j, v) in c.output.iter().enumerate() {
                s.push_str(&format!(" (Y_{j} {v:e})"));
                s.push_str(if j + 1 == c.output.len() { ")\n" } else { "\n" });
            }
        }
        s
    }
}

/// Checks that a network and a spec fit together.
pub fn check_fit(net: &Network, spec: &Spec) -> Result<(), VerifyError> {
    if net.input_dim() != spec.n_inputs || net.output_dim() != spec.n_outputs {
        return Err(VerifyError::Mismatch(format!(
            "the network maps {} inputs to {} outputs, the spec '{}' is about {} inputs and {} outputs",
            net.input_dim(),
            net.output_dim(),
            spec.name,
            spec.n_inputs,
            spec.n_outputs
        )));
    }
    Ok(())
}

/// On networks whose inputs are bisected (at most 16 inputs), a box with at most this many
/// unstable neurons is split on its ReLUs instead. Measured on ACAS Xu (300 ReLUs): prop_2 of
/// networks 3_3 and 4_2, which bisection alone leaves open after minutes (their margins stay
/// near 2e-3 over much of the box), hold in 30 s and 9 s with 40; 30 and 50 also close both,
/// 20 and 100 do not.
pub const RELU_SWITCH: usize = 40;

/// Verifies `spec` on `net`.
pub fn verify(net: &Network, spec: &Spec, opts: &Options) -> Result<Outcome, VerifyError> {
    check_fit(net, spec)?;
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut stats = Stats {
        regions: spec.regions.len(),
        ..Stats::default()
    };
    let records = Mutex::new(Vec::new());
    let mut unknown: Option<String> = None;
    let mut found: Option<(usize, Vec<f64>)> = None;

    if opts.engine != Engine::Smt {
        // A quick falsification pass over every region.
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let quick = falsify::Falsifier::default();
        let budget = start + opts.timeout.mul_f64(0.05).min(Duration::from_secs(2));
        for (i, r) in spec.regions.iter().enumerate() {
            if let Some(x) = quick.run(net, r, &mut rng, budget.min(deadline)) {
                found = Some((i, x));
                stats.falsified = true;
                break;
            }
        }
    }
    if found.is_none() {
        let input_split = net.input_dim() <= 16;
        let bab_stats = BabStats::default();
        match opts.engine {
            Engine::Bab | Engine::Bounds => {
                let branch = opts.engine == Engine::Bab;
                let cfg = BabConfig {
                    deadline,
                    batch: 2 * rayon::current_num_threads().max(1) * 4,
                    // Without branching, only the root is bounded: a subdomain with an unstable
                    // ReLU left is unknown at depth 0.
                    exact_unstable: if branch {
                        opts.exact.limit(input_split)
                    } else {
                        0
                    },
                    exact: opts.exact,
                    max_depth_limit: match (branch, input_split) {
                        (false, _) => 0,
                        (true, true) => 120,
                        (true, false) => 60,
                    },
                    smt_timeout: Duration::from_secs(20),
                    input_split,
                    relu_switch: if input_split { RELU_SWITCH } else { 0 },
                    record_smt: opts.record_smt,
                    attack_seed: branch.then(|| opts.seed.wrapping_add(1)),
                    // A third on few inputs; on many, a tenth: there the quick pass finds
                    // what sampling finds (MNIST-FC), and bounding is the bottleneck
                    // (256x4 prop_9_0.03: 48% more subdomains bounded in 120 s).
                    attack_share: if input_split { 1.0 / 3.0 } else { 0.1 },
                    alpha_beta: (opts.bounding == Bounding::AlphaBeta)
                        .then(alpha_beta::AlphaBeta::default),
                    branching: opts.branching,
                };
                match bab::solve_regions(net, &spec.regions, &cfg, &bab_stats, &records) {
                    SpecResult::Holds => {}
                    SpecResult::Violated(i, x) => found = Some((i, x)),
                    SpecResult::Unknown(why) => unknown = Some(why),
                }
            }
            Engine::Smt => {
                for (i, region) in spec.regions.iter().enumerate() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        unknown.get_or_insert(format!("region {i}: timeout"));
                        break;
                    }
                    stats.smt_calls += 1;
                    let (out, rec) = smt::solve(net, region, None, left, opts.record_smt);
                    if let Some(r) = rec {
                        records.lock().expect("records lock").push(r);
                    }
                    match out {
                        smt::SmtOutcome::Unsat => {}
                        smt::SmtOutcome::Sat(x) => {
                            found = Some((i, x));
                            break;
                        }
                        smt::SmtOutcome::Unknown(why) => {
                            unknown.get_or_insert(format!("region {i}: Z3: {why}"));
                        }
                    }
                }
            }
        }
        stats.domains = bab_stats.domains.load(Ordering::Relaxed);
        stats.smt_calls += bab_stats.smt_calls.load(Ordering::Relaxed);
        stats.milp_calls = bab_stats.milp_calls.load(Ordering::Relaxed);
        stats.max_depth = bab_stats.max_depth.load(Ordering::Relaxed);
    }
    // Deeper into the unsafe set, so that float32 runtimes confirm it too.
    let found = found.map(|(i, x)| {
        let until = (Instant::now() + Duration::from_secs(1)).min(deadline);
        (i, falsify::deepen(net, &spec.regions[i], x, until))
    });
    let seconds = start.elapsed().as_secs_f64();
    let timed_out = Instant::now() >= deadline;
    let smt = records.into_inner().expect("records lock");
    // The final word on a counterexample is a forward pass against the whole spec.
    if let Some((_, x)) = found {
        let y = net.forward(&x);
        if let Some(region) = spec.violated_region(&x, &y) {
            return Ok(Outcome {
                result: Verdict::Violated,
                seconds,
                counterexample: Some(Counterexample {
                    input: x,
                    output: y,
                    region,
                }),
                reason: None,
                timed_out: false,
                stats,
                smt,
            });
        }
        unknown = Some("a candidate counterexample failed the final forward-pass check".into());
    }
    Ok(match unknown {
        None => Outcome {
            result: Verdict::Holds,
            seconds,
            counterexample: None,
            reason: None,
            timed_out: false,
            stats,
            smt,
        },
        Some(why) => Outcome {
            result: Verdict::Unknown,
            seconds,
            counterexample: None,
            reason: Some(why),
            timed_out,
            stats,
            smt,
        },
    })
}

/// Loads the layer-list JSON format: `{"layers": [{"W_in_by_out": [[..]], "b": [..],
/// "activation": "relu" | "linear"}, ...]}`, weights stored input-by-output (as Keras does). A
/// layer without `activation` is ReLU except the last, which is linear.
pub fn parse_layer_list(text: &str) -> Result<Network, ParseError> {
    #[derive(serde::Deserialize)]
    struct File {
        layers: Vec<DenseLayer>,
    }
    #[derive(serde::Deserialize)]
    struct DenseLayer {
        #[serde(rename = "W_in_by_out")]
        w: Vec<Vec<f64>>,
        b: Vec<f64>,
        activation: Option<String>,
    }
    let file: File = serde_json::from_str(text)
        .map_err(|e| ParseError(format!("not a layer-list network: {e}")))?;
    let n = file.layers.len();
    if n == 0 {
        return Err(ParseError("the network has no layers".into()));
    }
    let mut layers = Vec::new();
    let input = file.layers[0].w.len();
    for (k, l) in file.layers.into_iter().enumerate() {
        let cols = l.w.len();
        let rows = l.b.len();
        if l.w.iter().any(|r| r.len() != rows) {
            return Err(ParseError(format!(
                "layer {k}: every row of W_in_by_out needs {rows} values (one per bias)"
            )));
        }
        let mut w = vec![0.0; rows * cols];
        for (i, row) in l.w.iter().enumerate() {
            for (o, v) in row.iter().enumerate() {
                w[o * cols + i] = *v;
            }
        }
        let affine = graph::Affine {
            linear: graph::Linear::Dense { rows, cols, w },
            bias: l.b,
        };
        let relu = match l.activation.as_deref() {
            Some("relu") => true,
            Some("linear") | Some("none") => false,
            Some(other) => {
                return Err(ParseError(format!(
                    "layer {k}: activation '{other}' is not relu or linear"
                )))
            }
            None => k + 1 < n,
        };
        layers.push((affine, relu));
    }
    Network::chain(vec![input], layers).map_err(|e| ParseError(e.to_string()))
}
