//! `archproof verify`: prove or refute properties of trained ReLU networks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use archproof::verify::instances::{self, InstanceResult};
use archproof::verify::{
    self, proof_log, radius, Bounding, Branching, Engine, Exact, Network, Options, Outcome, Spec,
    Verdict,
};
use serde::Serialize;

use super::common::{argmax, print_json, write_file, OutputFlags, StoreFlags};
use super::progress::Progress;

/// Prove or refute a property of a trained ReLU network (ONNX, NNet or IR JSON with weights).
///
/// A VNN-LIB file states the unsafe set: "holds" means no input reaches it (unsat), "violated"
/// comes with a counterexample that a plain forward pass confirms (sat), "unknown" says why.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof verify --net ACASXU_run2a_1_1_batch_2000.onnx --spec prop_3.vnnlib \\
      --timeout 116
  archproof verify --net net.nnet --spec prop.vnnlib --json
  archproof verify --instances instances.csv --root DIR --out results.csv \\
      --expected expected.csv
  archproof verify --instances instances.csv --root DIR --study acas \\
      --storage postgresql://ann:PASSWORD@dbhost/archproof
  archproof verify --net net.onnx --input x.csv --eps 0.02 --label 3
  archproof verify --net net.onnx --input x.csv --max-radius
  archproof verify --net net.onnx --dataset shapes --index 3 --eps 0.01 \\
      --write-spec p3.vnnlib
  archproof verify --net net.onnx --spec prop.vnnlib --engine smt
  archproof verify --net net.onnx --spec prop.vnnlib --bounding crown \\
      --branching area
  archproof verify --net net.onnx --spec prop.vnnlib --exact z3 \\
      --vnncomp-out out.txt")]
pub struct Args {
    /// The network: .onnx, .nnet, or IR .json with weights.
    #[arg(long, required_unless_present = "instances")]
    net: Option<PathBuf>,
    /// A VNN-LIB property.
    #[arg(long, conflicts_with_all = ["input", "instances"])]
    spec: Option<PathBuf>,
    /// A point (CSV or whitespace-separated numbers) for local robustness.
    #[arg(long, conflicts_with_all = ["instances", "dataset"], group = "point")]
    input: Option<PathBuf>,
    /// Take the point from a dataset's test split (with --index): shapes[:SIZE],
    /// mnist-idx:DIR, cifar10-bin:DIR, csv:FILE, npy:DIR. Its label is the true class and
    /// the ball is clipped to [0, 1] unless --clip says otherwise.
    #[arg(
        long,
        conflicts_with = "instances",
        requires = "index",
        group = "point"
    )]
    dataset: Option<String>,
    /// Which test point of --dataset.
    #[arg(long, requires = "dataset")]
    index: Option<usize>,
    /// L-infinity radius around --input.
    #[arg(long, requires = "point")]
    eps: Option<f64>,
    /// The class that must stay the largest output [default: the network's class at --input,
    /// the true class of a --dataset point].
    #[arg(long, requires = "point")]
    label: Option<usize>,
    /// Clip the ball to this input range, e.g. 0,1.
    #[arg(long, requires = "point", value_parser = parse_range)]
    clip: Option<(f64, f64)>,
    /// Search the largest radius proven robust (and the smallest refuted) around --input.
    #[arg(long, requires = "point", conflicts_with = "eps")]
    max_radius: bool,
    /// Half-width of a region around --input on --dims, searched exhaustively with
    /// manipulations of --step (and verified as a continuous box).
    #[arg(long, requires_all = ["point", "step"], conflicts_with_all = ["eps", "max_radius"])]
    region: Option<f64>,
    /// Length of one manipulation of --region.
    #[arg(long, requires = "region")]
    step: Option<f64>,
    /// Input dimensions of --region, e.g. 0,1 [default: all].
    #[arg(long, requires = "region", value_delimiter = ',')]
    dims: Option<Vec<usize>>,
    /// A VNN-COMP instance list: onnx,vnnlib,timeout per line.
    #[arg(long)]
    instances: Option<PathBuf>,
    /// Directory the instance list's paths are relative to [default: the list's directory].
    #[arg(long, requires = "instances")]
    root: Option<PathBuf>,
    /// Result CSV of an instance list (onnx,vnnlib,result,seconds,...).
    #[arg(long, requires = "instances")]
    out: Option<PathBuf>,
    /// Known answers (network,property,expected) to count wrong results against.
    #[arg(long, requires = "instances")]
    expected: Option<PathBuf>,
    /// Time limit in seconds (an instance list's own limits apply when smaller).
    #[arg(long, default_value_t = 116.0)]
    timeout: f64,
    /// bab: falsifier, bound propagation, branch and bound, Z3 for what stays open;
    /// smt: the whole network in Z3 (the baseline); bounds: falsifier and one pass of
    /// back-substitution bounds, no branching (incomplete).
    #[arg(long, value_enum, default_value_t = EngineArg::Bab)]
    engine: EngineArg,
    /// How branch and bound bounds a subdomain: alpha-beta (CROWN, then the ReLU slopes and
    /// the split multipliers optimised where it leaves the subdomain open) or crown.
    #[arg(long, value_enum, default_value_t = BoundingArg::AlphaBeta)]
    bounding: BoundingArg,
    /// How branch and bound picks the ReLU to split: babsr (the bound the neuron's
    /// relaxation costs the constraint closest to closing), fsb (the best few by babsr, each
    /// judged by bounding its two children) or area (the largest triangle).
    /// Low-dimensional inputs are bisected instead, by lookahead and by width in turn.
    #[arg(long, value_enum, default_value_t = BranchingArg::Babsr)]
    branching: BranchingArg,
    /// How branch and bound decides a subdomain once few neurons are unstable on it: milp
    /// (one mixed-integer program in HiGHS), patterns (one LP per phase pattern) or z3.
    #[arg(long, value_enum, default_value_t = ExactArg::Milp)]
    exact: ExactArg,
    /// Seed of the falsifier.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the robustness property of --input/--dataset and --eps as VNN-LIB to this file
    /// and stop, without verifying: to run it in other verifiers, or in `bench verify`.
    #[arg(long, requires = "eps")]
    write_spec: Option<PathBuf>,
    /// Write the VNN-COMP result file (sat/unsat/timeout and the counterexample) here.
    #[arg(long, conflicts_with = "instances")]
    vnncomp_out: Option<PathBuf>,
    /// Directory of proof logs (spec, settings, verdict, SMT-LIB of the Z3 queries)
    /// [default: proofs/logs/ for a single property; none for an instance list].
    #[arg(long)]
    proof_dir: Option<PathBuf>,
    /// Write no proof log.
    #[arg(long, conflicts_with = "proof_dir")]
    no_proof: bool,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    output: OutputFlags,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BoundingArg {
    AlphaBeta,
    Crown,
}

impl From<BoundingArg> for Bounding {
    fn from(b: BoundingArg) -> Bounding {
        match b {
            BoundingArg::AlphaBeta => Bounding::AlphaBeta,
            BoundingArg::Crown => Bounding::Crown,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BranchingArg {
    Babsr,
    Fsb,
    Area,
}

impl From<BranchingArg> for Branching {
    fn from(b: BranchingArg) -> Branching {
        match b {
            BranchingArg::Babsr => Branching::Babsr,
            BranchingArg::Fsb => Branching::Fsb,
            BranchingArg::Area => Branching::Area,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExactArg {
    Milp,
    Patterns,
    Z3,
}

impl From<ExactArg> for Exact {
    fn from(e: ExactArg) -> Exact {
        match e {
            ExactArg::Milp => Exact::Milp,
            ExactArg::Patterns => Exact::Patterns,
            ExactArg::Z3 => Exact::Z3,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    Bab,
    Smt,
    Bounds,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Engine {
        match e {
            EngineArg::Bab => Engine::Bab,
            EngineArg::Smt => Engine::Smt,
            EngineArg::Bounds => Engine::Bounds,
        }
    }
}

fn parse_range(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("'{s}' is not LO,HI"))?;
    let (a, b) = (
        a.trim()
            .parse::<f64>()
            .map_err(|_| format!("'{a}' is not a number"))?,
        b.trim()
            .parse::<f64>()
            .map_err(|_| format!("'{b}' is not a number"))?,
    );
    if a > b {
        return Err(format!("{a} is above {b}"));
    }
    Ok((a, b))
}

fn options(args: &Args, timeout: f64) -> Result<Options> {
    if !(timeout > 0.0 && timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    Ok(Options {
        timeout: Duration::from_secs_f64(timeout),
        engine: args.engine.into(),
        seed: args.seed,
        record_smt: !args.no_proof,
        bounding: args.bounding.into(),
        branching: args.branching.into(),
        exact: args.exact.into(),
    })
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.instances.is_some() {
        return run_instances(&args);
    }
    let net_path = args.net.clone().expect("clap requires --net");
    let net = verify::load_network(&net_path)?;
    if let Some(spec_path) = &args.spec {
        let spec = verify::load_spec(spec_path)?;
        let out = run_one(&args, &net, &spec, &net_path, spec_path, args.timeout)?;
        report_one(&args, &spec, &out, None)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (x, input_path, true_label) = match (&args.input, &args.dataset) {
        (Some(p), _) => (read_point(p, net.input_dim())?, p.clone(), None),
        (None, Some(ds)) => {
            let (x, label) = dataset_point(ds, args.index.unwrap_or(0), net.input_dim())?;
            let tag = PathBuf::from(format!("{ds}#test{}", args.index.unwrap_or(0)));
            (x, tag, Some(label))
        }
        (None, None) => bail!(
            "give a property: --spec FILE.vnnlib, or --input FILE (or --dataset NAME --index K) \
             with --eps or --max-radius"
        ),
    };
    let input_path = &input_path;
    let mut args = args;
    if true_label.is_some() && args.clip.is_none() {
        args.clip = Some((0.0, 1.0));
    }
    let args = &args;
    let y = net.forward(&x);
    let label = match args.label.or(true_label) {
        Some(l) if l >= y.len() => bail!(
            "--label {l} is not an output of the network (it has {})",
            y.len()
        ),
        Some(l) => l,
        None => argmax(&y),
    };
    if args.max_radius {
        return max_radius(args, &net, &x, label);
    }
    if let Some(radius) = args.region {
        return region(args, &net, &net_path, input_path, x, label, radius);
    }
    let Some(eps) = args.eps else {
        bail!("--input needs --eps RADIUS or --max-radius");
    };
    if !(eps >= 0.0 && eps.is_finite()) {
        bail!("--eps must be a nonnegative number");
    }
    let spec = Spec::robustness(&x, eps, label, net.output_dim(), args.clip);
    if let Some(path) = &args.write_spec {
        write_file(
            path,
            verify::vnnlib::write(&spec).as_bytes(),
            args.output.force,
        )?;
        if args.output.json {
            print_json(&serde_json::json!({
                "written": path,
                "label": label,
                "eps": eps,
                "regions": spec.regions.len(),
            }))?;
        } else {
            eprintln!("wrote {} (label {label}, eps {eps})", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let out = run_one(args, &net, &spec, &net_path, input_path, args.timeout)?;
    report_one(args, &spec, &out, Some(label))?;
    Ok(ExitCode::SUCCESS)
}

/// Test point `index` of a dataset and its label.
fn dataset_point(spec: &str, index: usize, n: usize) -> Result<(Vec<f64>, usize)> {
    let ds = archproof::train::data::load(spec)?;
    if index >= ds.test.len() {
        bail!(
            "--index {index} is past the {} test points of {spec}",
            ds.test.len()
        );
    }
    if ds.input_len() != n {
        bail!(
            "the network takes {n} inputs, {spec} has {} per point",
            ds.input_len()
        );
    }
    let x = ds.test.input(index).iter().map(|&v| v as f64).collect();
    Ok((x, ds.test.y[index] as usize))
}

/// Reads a point: numbers separated by commas, spaces or newlines.
fn read_point(path: &Path, n: usize) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let x = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| anyhow::anyhow!("{}: '{s}' is not a number", path.display()))
        })
        .collect::<Result<Vec<f64>>>()?;
    if x.len() != n {
        bail!(
            "{}: {} values, the network takes {n}",
            path.display(),
            x.len()
        );
    }
    Ok(x)
}

/// One verification run: the outcome, and the folder of its proof log unless --no-proof.
fn run_one(
    args: &Args,
    net: &Network,
    spec: &Spec,
    net_path: &Path,
    spec_path: &Path,
    timeout: f64,
) -> Result<Reported> {
    let spinner = Progress::spinner(
        args.output.no_progress(),
        "{spinner} verifying {msg} [{elapsed}]",
        "verifying",
    );
    spinner.set_message(spec.name.clone());
    let opts = options(args, timeout)?;
    let out = verify::verify(net, spec, &opts)?;
    spinner.finish_and_clear();
    if let Some(path) = &args.vnncomp_out {
        write_file(path, out.vnncomp_result().as_bytes(), args.output.force)?;
    }
    let proof_log = if args.no_proof {
        None
    } else {
        let dir = args
            .proof_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("proofs").join("logs"));
        Some(proof_log::write(&dir, net_path, spec_path, spec, &opts, &out)?.join("log.json"))
    };
    Ok(Reported {
        outcome: out,
        proof_log,
    })
}

/// What `verify` reports of one run (`--json`: the outcome's fields and `proof_log`).
#[derive(Serialize)]
struct Reported {
    #[serde(flatten)]
    outcome: Outcome,
    proof_log: Option<PathBuf>,
}

/// Values printed of a counterexample's input or output; --json and the proof log have all.
const SHOWN_VALUES: usize = 10;

/// Prints one run. `label` is the class a robustness query keeps (its regions are the other
/// classes), `None` for a property file.
fn report_one(args: &Args, spec: &Spec, r: &Reported, label: Option<usize>) -> Result<()> {
    if args.output.json {
        return print_json(r);
    }
    let out = &r.outcome;
    let fmt = |v: &[f64]| {
        let mut s = v
            .iter()
            .take(SHOWN_VALUES)
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(", ");
        if v.len() > SHOWN_VALUES {
            s.push_str(&format!(
                ", ... ({} values; --json and the proof log have all)",
                v.len()
            ));
        }
        s
    };
    match out.result {
        Verdict::Holds => println!(
            "holds: {} ({} regions, {} subdomains, {} Z3 calls) in {:.2} s",
            spec.name, out.stats.regions, out.stats.domains, out.stats.smt_calls, out.seconds
        ),
        Verdict::Violated => {
            let c = out
                .counterexample
                .as_ref()
                .expect("violated has a counterexample");
            let which = match label {
                Some(l) => format!(": classified {} instead of {l}", argmax(&c.output)),
                None if spec.regions.len() > 1 => {
                    format!(" (region {} of {})", c.region + 1, spec.regions.len())
                }
                None => String::new(),
            };
            println!("violated: {} in {:.2} s{which}", spec.name, out.seconds);
            println!("  input   [{}]", fmt(&c.input));
            println!("  output  [{}]", fmt(&c.output));
        }
        Verdict::Unknown => println!(
            "unknown: {} after {:.2} s: {}",
            spec.name,
            out.seconds,
            out.reason.as_deref().unwrap_or("not settled")
        ),
    }
    if let Some(p) = &r.proof_log {
        println!("  proof log {}", p.display());
    }
    Ok(())
}

#[derive(Serialize)]
struct RegionReport<'a> {
    spec: &'a verify::dlv::ManipulationSpec,
    grid: verify::dlv::GridResult,
    grid_seconds: f64,
    region: Reported,
}

fn region(
    args: &Args,
    net: &Network,
    net_path: &Path,
    input_path: &Path,
    x: Vec<f64>,
    label: usize,
    radius: f64,
) -> Result<ExitCode> {
    let spec = verify::dlv::ManipulationSpec {
        dims: args.dims.clone().unwrap_or_else(|| (0..x.len()).collect()),
        center: x,
        radius,
        step: args.step.expect("clap requires --step"),
        label,
    };
    spec.validate(net)?;
    let t0 = std::time::Instant::now();
    let grid = spec.exhaustive(net);
    let grid_seconds = t0.elapsed().as_secs_f64();
    let box_spec = spec.region_spec(net.output_dim());
    let out = run_one(args, net, &box_spec, net_path, input_path, args.timeout)?;
    let report = RegionReport {
        spec: &spec,
        grid,
        grid_seconds,
        region: out,
    };
    if args.output.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let g = &report.grid;
    match &g.counterexample {
        None => println!(
            "grid: all {} points reachable by manipulations of {} keep class {label} ({:.2} s)",
            g.points, spec.step, report.grid_seconds
        ),
        Some(c) => println!(
            "grid: {} of {} points change class; nearest: [{}] ({:.2} s)",
            g.misclassified,
            g.points,
            c.iter()
                .map(|v| format!("{v:.6}"))
                .collect::<Vec<_>>()
                .join(", "),
            report.grid_seconds
        ),
    }
    print!("box:  ");
    report_one(args, &box_spec, &report.region, Some(label))?;
    Ok(ExitCode::SUCCESS)
}

fn max_radius(args: &Args, net: &Network, x: &[f64], label: usize) -> Result<ExitCode> {
    let report = radius::max_radius(
        net,
        x,
        label,
        args.clip,
        &options(args, args.timeout)?,
        Duration::from_secs_f64(args.timeout),
    )?;
    let hi = report.steps.last().map(|s| s.eps).unwrap_or(1.0);
    if args.output.json {
        print_json(&report)?;
    } else {
        println!(
            "label {label}: robust up to eps = {:.6} (proven)",
            report.proven_robust
        );
        match report.refuted {
            Some(e) => println!("  refuted at eps = {e:.6} with a checked counterexample"),
            None => println!("  no counterexample found below eps = {hi:.6}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct InstancesSummary {
    engine: &'static str,
    #[serde(flatten)]
    totals: instances::Summary,
    rows: Vec<InstanceResult>,
}

/// What both ways of running a list read first.
struct ListSetup {
    list: PathBuf,
    root: PathBuf,
    instances: Vec<instances::Instance>,
    expected: Option<instances::Expected>,
    base: Options,
}

impl ListSetup {
    fn read(args: &Args) -> Result<ListSetup> {
        let list = args.instances.clone().expect("checked");
        let root = args
            .root
            .clone()
            .unwrap_or_else(|| list.parent().map(Path::to_path_buf).unwrap_or_default());
        let instances = instances::read_list(&list)?;
        let expected = args
            .expected
            .as_deref()
            .map(instances::read_expected)
            .transpose()?;
        let base = options(args, args.timeout)?;
        Ok(ListSetup {
            list,
            root,
            instances,
            expected,
            base,
        })
    }
}

/// The progress bar of an instance list.
fn list_bar(instances: usize, args: &Args) -> Progress {
    Progress::bar(
        instances as u64,
        args.output.no_progress(),
        "{bar:40} {pos}/{len} instances {msg} [{elapsed}]",
        "instances",
    )
}

/// Prints a list's totals (or JSON); exit 1 when an answer contradicts a known one.
fn report_list(
    args: &Args,
    engine: Engine,
    rows: Vec<InstanceResult>,
    from: &str,
) -> Result<ExitCode> {
    let summary = summarize(engine, rows);
    let t = &summary.totals;
    if args.output.json {
        print_json(&summary)?;
    } else {
        println!(
            "{} instances: {} solved ({} sat, {} unsat), {} unknown, {} wrong of {} with known answers; {:.1} s in total{from}",
            t.instances, t.solved, t.sat, t.unsat, t.unknown, t.wrong, t.checked_against_expected, t.total_seconds
        );
    }
    Ok(if t.wrong > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_instances(args: &Args) -> Result<ExitCode> {
    if args.store.storage.is_some() {
        return run_shared_instances(args);
    }
    let ListSetup {
        list,
        root,
        instances,
        expected,
        base,
    } = ListSetup::read(args)?;
    // Each row lands in the file as its instance finishes: a run stopped half way keeps them.
    let mut log = match &args.out {
        Some(out) => Some(archproof::files::CsvLog::create(
            out,
            &instances::RESULT_COLUMNS,
            args.output.force,
        )?),
        None => None,
    };
    let bar = list_bar(instances.len(), args);
    let mut cache = instances::Cache::default();
    let mut rows = Vec::new();
    for inst in &instances {
        let key = instances::instance_key(&inst.onnx, &inst.vnnlib);
        bar.set_message(format!("running {} {}", key.0, key.1));
        let (row, out, spec) = instances::run_instance(
            &mut cache,
            &root,
            inst,
            &base,
            args.timeout,
            expected.as_ref(),
        )
        .with_context(|| list.display().to_string())?;
        if let Some(dir) = &args.proof_dir {
            proof_log::write(
                dir,
                &instances::locate(&root, &inst.onnx, "onnx"),
                &instances::locate(&root, &inst.vnnlib, "vnnlib"),
                &spec,
                &base,
                &out,
            )?;
        }
        bar.set_message(format!("{} {}: {}", key.0, key.1, row.result));
        bar.inc(1);
        if let Some(log) = &mut log {
            log.row(&row.csv_fields())?;
        }
        rows.push(row);
    }
    bar.finish_and_clear();
    report_list(args, base.engine, rows, "")
}

/// `--instances` with `--storage`: the list's instances are items of a study that every
/// process given the same list, --storage and --study shares; each result is stored as its
/// instance finishes, and a process started again continues where the list stands.
fn run_shared_instances(args: &Args) -> Result<ExitCode> {
    use archproof::search::queue::Queue;
    use archproof::search::Attach;
    let setup = ListSetup::read(args)?;
    if let Some(out) = &args.out {
        archproof::files::refuse_existing(&[out], args.output.force)?;
    }
    let (storage, name, _) = args.store.target(None)?.expect("--storage is given");
    let shared = instances::SharedList {
        instances: &setup.instances,
        root: &setup.root,
        base: &setup.base,
        cap: args.timeout,
        expected: setup.expected.as_ref(),
        proof_dir: args.proof_dir.as_deref(),
    };
    let header = shared.header(serde_json::json!({
        "timeout": args.timeout,
        "engine": format!("{:?}", args.engine),
        "bounding": format!("{:?}", args.bounding),
        "branching": format!("{:?}", args.branching),
        "exact": format!("{:?}", args.exact),
        "seed": args.seed,
    }));
    // Joined always: --force replaces --out, never a shared list (`study delete` does).
    let queue = Queue::attach(
        &storage,
        &name,
        &header,
        &shared.items(),
        Attach::Join,
        args.store.options(),
    )?;
    let bar = list_bar(setup.instances.len(), args);
    bar.set_position(queue.finished_so_far()? as u64);
    let rows = shared
        .run(&queue, &|row| {
            bar.set_message(format!("{} {}: {}", row.onnx, row.vnnlib, row.result));
            bar.inc(1);
        })
        .with_context(|| setup.list.display().to_string())?;
    bar.finish_and_clear();
    if let Some(out) = &args.out {
        let mut log =
            archproof::files::CsvLog::create(out, &instances::RESULT_COLUMNS, args.output.force)?;
        for row in &rows {
            log.row(&row.csv_fields())?;
        }
    }
    report_list(
        args,
        setup.base.engine,
        rows,
        &format!(" (study {name} in {storage})"),
    )
}

fn summarize(engine: Engine, rows: Vec<InstanceResult>) -> InstancesSummary {
    InstancesSummary {
        engine: engine.name(),
        totals: instances::Summary::of(&rows),
        rows,
    }
}
