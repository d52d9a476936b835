//! Benchmark instance lists in the VNN-COMP form (`onnx,vnnlib,timeout` per line), tables of
//! known answers (`network,property,expected`), and running a list with one engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{
    load_network, load_spec, verify, Answer, Network, Options, Spec, Verdict, VerifyError,
};

/// One instance of a list.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The network file as the list names it.
    pub onnx: String,
    /// The property file as the list names it.
    pub vnnlib: String,
    /// The instance's time limit.
    pub timeout: f64,
    /// Its line in the list (from 1), for messages.
    pub line: usize,
}

fn err(path: &Path, msg: String) -> VerifyError {
    VerifyError::File {
        path: path.display().to_string(),
        msg,
    }
}

/// Reads an instance list.
pub fn read_list(path: &Path) -> Result<Vec<Instance>, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 3 {
            return Err(err(
                path,
                format!("line {}: expected onnx,vnnlib,timeout", i + 1),
            ));
        }
        let timeout = f[2]
            .parse::<f64>()
            .ok()
            .filter(|t| *t > 0.0 && t.is_finite())
            .ok_or_else(|| {
                err(
                    path,
                    format!("line {}: '{}' is not a timeout in seconds", i + 1, f[2]),
                )
            })?;
        out.push(Instance {
            onnx: f[0].to_string(),
            vnnlib: f[1].to_string(),
            timeout,
            line: i + 1,
        });
    }
    if out.is_empty() {
        return Err(err(path, "the list has no instances".into()));
    }
    Ok(out)
}

/// Known answers (sat or unsat) keyed by `(network, property)`, e.g. `("1_9", "prop_7")`.
pub type Expected = HashMap<(String, String), Answer>;

/// Reads a table of known answers `network,property,expected` (with a header line; further
/// columns are ignored). Names may carry their extension (`mnist-net_256x2.onnx`) or not
/// (`1_9`). A row whose answer is `unknown` (no tool decided it) gives no known answer.
pub fn read_expected(path: &Path) -> Result<Expected, VerifyError> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(path, e.to_string()))?;
    let mut out = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(path, e.to_string()))?;
        if rec.len() < 3 {
            return Err(err(
                path,
                format!("line {}: expected network,property,expected", i + 2),
            ));
        }
        let ans = match rec[2].trim() {
            "unknown" => continue,
            "sat" => Answer::Sat,
            "unsat" => Answer::Unsat,
            other => {
                return Err(err(
                    path,
                    format!(
                        "line {}: '{other}' is neither sat, unsat nor unknown",
                        i + 2
                    ),
                ))
            }
        };
        let (net, prop) = (rec[0].trim(), rec[1].trim());
        let net = [".onnx", ".nnet"]
            .iter()
            .find_map(|x| net.strip_suffix(x))
            .unwrap_or(net);
        let prop = prop.strip_suffix(".vnnlib").unwrap_or(prop);
        out.insert((network_key(net), prop.to_string()), ans);
    }
    Ok(out)
}

/// `("ACASXU_run2a_1_9_batch_2000.onnx", "prop_7.vnnlib")` -> `("1_9", "prop_7")`.
pub fn instance_key(onnx: &str, vnnlib: &str) -> (String, String) {
    let stem = |s: &str| {
        Path::new(s)
            .file_stem()
            .map(|x| x.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    (network_key(&stem(onnx)), stem(vnnlib))
}

/// A network's file stem as tables of known answers name it: ACAS Xu's
/// `ACASXU_run2a_1_9_batch_2000` is `1_9`; other names stay as they are.
fn network_key(stem: &str) -> String {
    stem.strip_prefix("ACASXU_run2a_")
        .and_then(|r| r.strip_suffix("_batch_2000"))
        .unwrap_or(stem)
        .to_string()
}

/// A file of an instance list: `root/name`, else `root/sub/name` (lists that give bare names
/// next to `onnx/` and `vnnlib/` folders).
pub fn locate(root: &Path, name: &str, sub: &str) -> PathBuf {
    let direct = root.join(name);
    if direct.exists() {
        return direct;
    }
    let nested = root.join(sub).join(name);
    if nested.exists() {
        nested
    } else {
        direct
    }
}

/// The outcome of one instance.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InstanceResult {
    /// The network file.
    pub onnx: String,
    /// The property file.
    pub vnnlib: String,
    /// The answer.
    pub result: Answer,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The known answer, if any.
    pub expected: Option<Answer>,
    /// Whether the answer matches the known one (`None` when unknown or not known).
    pub correct: Option<bool>,
    /// For `sat`: the counterexample was re-checked by a forward pass.
    pub counterexample_checked: Option<bool>,
    /// For `sat`, where a float32 checker ran ([`super::vnncomp::OrtChecker`]): whether the
    /// counterexample passed the competition's check.
    pub counterexample_f32: Option<bool>,
    /// The process's peak resident memory while the instance ran, in MiB (Linux; `None`
    /// elsewhere). It includes what the process held before (loaded networks and specs).
    pub peak_memory_mib: Option<f64>,
}

/// The columns of a results CSV ([`InstanceResult::csv_fields`]).
pub const RESULT_COLUMNS: [&str; 6] =
    ["onnx", "vnnlib", "result", "seconds", "expected", "correct"];

impl InstanceResult {
    /// The row of a results CSV, in the order of [`RESULT_COLUMNS`].
    pub fn csv_fields(&self) -> [String; 6] {
        [
            self.onnx.clone(),
            self.vnnlib.clone(),
            self.result.to_string(),
            format!("{:.3}", self.seconds),
            self.expected.map(|e| e.to_string()).unwrap_or_default(),
            self.correct.map(|c| c.to_string()).unwrap_or_default(),
        ]
    }
}

/// Resets the process's peak resident set size (Linux `clear_refs`), so that the next
/// [`peak_memory_mib`] reads the peak from here on. Without the file the peak stays the
/// process's lifetime peak: an upper bound.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set size in MiB (`VmHWM`), where the system reports it.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Loaded networks and specs, read once each.
#[derive(Default)]
pub struct Cache {
    nets: HashMap<PathBuf, Network>,
    specs: HashMap<PathBuf, Spec>,
}

/// Runs one instance with the settings of `base` (engine, bounds, branching, seed) under
/// `min(instance timeout, cap)`.
pub fn run_instance(
    cache: &mut Cache,
    root: &Path,
    inst: &Instance,
    base: &Options,
    cap: f64,
    expected: Option<&Expected>,
) -> Result<(InstanceResult, super::Outcome, Spec), VerifyError> {
    run_located(cache, root, inst, base, cap, expected).map_err(|e| VerifyError::Instance {
        line: inst.line,
        onnx: inst.onnx.clone(),
        vnnlib: inst.vnnlib.clone(),
        error: Box::new(e),
    })
}

fn run_located(
    cache: &mut Cache,
    root: &Path,
    inst: &Instance,
    base: &Options,
    cap: f64,
    expected: Option<&Expected>,
) -> Result<(InstanceResult, super::Outcome, Spec), VerifyError> {
    let net_path = locate(root, &inst.onnx, "onnx");
    let spec_path = locate(root, &inst.vnnlib, "vnnlib");
    if !cache.nets.contains_key(&net_path) {
        let n = load_network(&net_path)?;
        cache.nets.insert(net_path.clone(), n);
    }
    if !cache.specs.contains_key(&spec_path) {
        let s = load_spec(&spec_path)?;
        cache.specs.insert(spec_path.clone(), s);
    }
    let (net, spec) = (&cache.nets[&net_path], &cache.specs[&spec_path]);
    let opts = Options {
        timeout: Duration::from_secs_f64(inst.timeout.min(cap)),
        record_smt: false,
        ..base.clone()
    };
    reset_peak_memory();
    let out = verify(net, spec, &opts)?;
    let peak_memory_mib = peak_memory_mib();
    let result = out.result.vnncomp(out.timed_out);
    let exp = expected.and_then(|e| e.get(&instance_key(&inst.onnx, &inst.vnnlib)).copied());
    let correct = match out.result {
        Verdict::Unknown => None,
        _ => exp.map(|e| e == result),
    };
    let counterexample_checked = out.counterexample.as_ref().map(|c| {
        let y = net.forward(&c.input);
        spec.violated_region(&c.input, &y).is_some()
    });
    Ok((
        InstanceResult {
            onnx: inst.onnx.clone(),
            vnnlib: inst.vnnlib.clone(),
            result,
            seconds: out.seconds,
            expected: exp,
            correct,
            counterexample_checked,
            counterexample_f32: None,
            peak_memory_mib,
        },
        out,
        spec.clone(),
    ))
}

/// Totals over the results of one engine.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Instances run.
    pub instances: usize,
    /// Instances answered sat or unsat.
    pub solved: usize,
    /// Answered sat.
    pub sat: usize,
    /// Answered unsat.
    pub unsat: usize,
    /// Not answered (timeout or unknown).
    pub unknown: usize,
    /// Answers that contradict a known one, or counterexamples that failed the re-check (in
    /// f64, or in float32 where that check ran).
    pub wrong: usize,
    /// Counterexamples that passed the float32 check.
    pub f32_checked: usize,
    /// Instances with a known answer.
    pub checked_against_expected: usize,
    /// Seconds over all instances.
    pub total_seconds: f64,
    /// Slowest solved instance.
    pub max_solved_seconds: f64,
    /// The largest peak resident memory of an instance, in MiB.
    pub max_peak_memory_mib: Option<f64>,
}

impl Summary {
    /// Totals of `rows`.
    pub fn of(rows: &[InstanceResult]) -> Summary {
        let count = |w: Answer| rows.iter().filter(|r| r.result == w).count();
        let solved = rows.iter().filter(|r| r.result.is_solved());
        Summary {
            instances: rows.len(),
            solved: count(Answer::Sat) + count(Answer::Unsat),
            sat: count(Answer::Sat),
            unsat: count(Answer::Unsat),
            unknown: rows.len() - count(Answer::Sat) - count(Answer::Unsat),
            wrong: rows
                .iter()
                .filter(|r| {
                    r.correct == Some(false)
                        || r.counterexample_checked == Some(false)
                        || r.counterexample_f32 == Some(false)
                })
                .count(),
            f32_checked: rows
                .iter()
                .filter(|r| r.counterexample_f32 == Some(true))
                .count(),
            checked_against_expected: rows.iter().filter(|r| r.expected.is_some()).count(),
            total_seconds: rows.iter().map(|r| r.seconds).sum(),
            max_solved_seconds: solved.map(|r| r.seconds).fold(0.0, f64::max),
            max_peak_memory_mib: rows
                .iter()
                .filter_map(|r| r.peak_memory_mib)
                .reduce(f64::max),
        }
    }
}

/// Other tools' published run times per instance: the `TOOL_s` columns of a known-answers
/// table (as in VNN-COMP's results, `timeout` or empty where the tool did not decide it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// The tools, in column order (the column names without `_s`; `best_s` is left out).
    pub tools: Vec<String>,
    /// Seconds per tool (in `tools` order) by `(network, property)`; `None` where not decided.
    pub times: HashMap<(String, String), Vec<Option<f64>>>,
}

impl Published {
    /// The columns of `bench verify`'s results.csv: the engine, [`RESULT_COLUMNS`], peak
    /// memory, the float32 check, then each tool's published seconds.
    pub fn bench_columns(&self) -> Vec<String> {
        let mut h = vec!["engine".to_string()];
        h.extend(RESULT_COLUMNS.iter().map(|c| c.to_string()));
        h.extend(["peak_mib".to_string(), "f32_check".to_string()]);
        h.extend(self.tools.iter().map(|t| format!("{t}_s")));
        h
    }

    /// One row of [`Published::bench_columns`] (a tool's cell is `timeout` where it did not
    /// decide the instance, empty where the table does not list it).
    pub fn bench_fields(&self, engine: &str, r: &InstanceResult) -> Vec<String> {
        let mut row = vec![engine.to_string()];
        row.extend(r.csv_fields());
        row.push(
            r.peak_memory_mib
                .map(|m| format!("{m:.0}"))
                .unwrap_or_default(),
        );
        row.push(
            r.counterexample_f32
                .map(|ok| if ok { "pass" } else { "fail" }.to_string())
                .unwrap_or_default(),
        );
        let theirs = self.times.get(&instance_key(&r.onnx, &r.vnnlib));
        row.extend((0..self.tools.len()).map(|t| match theirs {
            None => String::new(),
            Some(v) => v[t].map_or("timeout".into(), |s| format!("{s:.2}")),
        }));
        row
    }
}

/// Reads the published run times of a known-answers table; a table without `TOOL_s` columns
/// gives no tools.
pub fn read_published(path: &Path) -> Result<Published, VerifyError> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(path, e.to_string()))?;
    let header = rdr.headers().map_err(|e| err(path, e.to_string()))?.clone();
    let columns: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .skip(3)
        .filter_map(|(i, h)| {
            let tool = h.trim().strip_suffix("_s")?;
            (tool != "best").then(|| (i, tool.to_string()))
        })
        .collect();
    let mut out = Published {
        tools: columns.iter().map(|(_, t)| t.clone()).collect(),
        times: HashMap::new(),
    };
    if columns.is_empty() {
        return Ok(out);
    }
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(path, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let time = |tool: &str, v: &str| -> Result<Option<f64>, VerifyError> {
            match v {
                "" | "timeout" | "-" => Ok(None),
                v => match v.parse::<f64>() {
                    Ok(s) if s >= 0.0 && s.is_finite() => Ok(Some(s)),
                    _ => Err(err(
                        path,
                        format!("line {line}: {tool}'s time '{v}' is neither seconds nor timeout"),
                    )),
                },
            }
        };
        let times = columns
            .iter()
            .map(|(i, tool)| time(tool, rec.get(*i).unwrap_or("").trim()))
            .collect::<Result<Vec<_>, _>>()?;
        out.times.insert(instance_key(&rec[0], &rec[1]), times);
    }
    Ok(out)
}

/// One engine's results beside a published tool's times on the same instances.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The tool.
    pub tool: String,
    /// Instances of the run that the tool has a published entry for.
    pub instances: usize,
    /// Of those, the ones the tool decided (under its own limits).
    pub tool_solved: usize,
    /// The ones it decided within the time this run gave each instance.
    pub tool_solved_within_cap: usize,
    /// The ones this engine decided.
    pub solved: usize,
    /// Decided by both.
    pub both_solved: usize,
    /// Seconds this engine took on the instances both decided.
    pub seconds_on_both: f64,
    /// Seconds the tool took on them (published).
    pub tool_seconds_on_both: f64,
    /// `seconds_on_both / tool_seconds_on_both` (below 1: faster than the tool; published
    /// times come from other hardware).
    pub time_ratio: Option<f64>,
}

impl Comparison {
    /// This engine's `rows` (run with per-instance limits `min(list limit, cap)`, looked up in
    /// `list`) beside every tool of `published`.
    pub fn all(
        published: &Published,
        rows: &[InstanceResult],
        list: &[Instance],
        cap: f64,
    ) -> Vec<Comparison> {
        (0..published.tools.len())
            .map(|t| {
                let mut c = Comparison {
                    tool: published.tools[t].clone(),
                    instances: 0,
                    tool_solved: 0,
                    tool_solved_within_cap: 0,
                    solved: 0,
                    both_solved: 0,
                    seconds_on_both: 0.0,
                    tool_seconds_on_both: 0.0,
                    time_ratio: None,
                };
                for (r, inst) in rows.iter().zip(list) {
                    let Some(times) = published.times.get(&instance_key(&r.onnx, &r.vnnlib)) else {
                        continue;
                    };
                    c.instances += 1;
                    let ours = r.result.is_solved();
                    c.solved += ours as usize;
                    if let Some(s) = times[t] {
                        c.tool_solved += 1;
                        c.tool_solved_within_cap += (s <= inst.timeout.min(cap)) as usize;
                        if ours {
                            c.both_solved += 1;
                            c.seconds_on_both += r.seconds;
                            c.tool_seconds_on_both += s;
                        }
                    }
                }
                c.time_ratio = (c.tool_seconds_on_both > 0.0)
                    .then(|| c.seconds_on_both / c.tool_seconds_on_both);
                c
            })
            .collect()
    }
}

/// How a list is run through a study store: the settings that must agree between workers.
pub struct SharedList<'a> {
    pub instances: &'a [Instance],
    pub root: &'a Path,
    pub base: &'a Options,
    /// The time limit cap (the list's own limits apply when smaller).
    pub cap: f64,
    pub expected: Option<&'a Expected>,
    /// Where proof logs go, if anywhere.
    pub proof_dir: Option<&'a Path>,
}

/// Why a shared list did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum SharedListError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] crate::search::SearchError),
    /// An instance could not be run (a missing or malformed file), here or in another worker.
    #[error("{0}")]
    Instance(String),
    /// A proof log could not be written.
    #[error(transparent)]
    ProofLog(#[from] crate::files::FileError),
}

impl SharedList<'_> {
    /// The study header every worker of this list must share: the settings that change
    /// verdicts (engine, bounding, branching, exact decision, seed, cap).
    pub fn header(&self, settings: serde_json::Value) -> crate::search::StudyHeader {
        crate::search::StudyHeader {
            format: crate::search::store::STORE_FORMAT,
            space: "instances".into(),
            strategy: "list".into(),
            evaluator: format!("verify:{}", self.base.engine.name()),
            seed: self.base.seed,
            batch: self.instances.len(),
            max_trials: self.instances.len(),
            budget: None,
            settings,
        }
    }

    /// The list's rows as the store keeps them (`onnx,vnnlib,timeout`).
    pub fn items(&self) -> Vec<String> {
        self.instances
            .iter()
            .map(|i| format!("{},{},{}", i.onnx, i.vnnlib, i.timeout))
            .collect()
    }

    /// Runs instances claimed from `queue` until the list is done (here or elsewhere), calling
    /// `on_done` for each this process answered; returns every row, in list order.
    pub fn run(
        &self,
        queue: &crate::search::queue::Queue,
        on_done: &(dyn Fn(&InstanceResult) + Sync),
    ) -> Result<Vec<InstanceResult>, SharedListError> {
        use crate::search::{Evaluation, Outcome as TrialOutcome};
        let cache = std::sync::Mutex::new(Cache::default());
        let proof_error = std::sync::Mutex::new(None::<crate::files::FileError>);
        let work = |i: u64, _: &str| {
            let inst = &self.instances[i as usize];
            let mut cache = cache.lock().expect("cache lock");
            match run_instance(
                &mut cache,
                self.root,
                inst,
                self.base,
                self.cap,
                self.expected,
            ) {
                Ok((row, out, spec)) => {
                    if let Some(dir) = self.proof_dir {
                        let net = locate(self.root, &inst.onnx, "onnx");
                        let prop = locate(self.root, &inst.vnnlib, "vnnlib");
                        if let Err(e) =
                            super::proof_log::write(dir, &net, &prop, &spec, self.base, &out)
                        {
                            proof_error.lock().expect("lock").get_or_insert(e);
                        }
                    }
                    let solved = matches!(row.result, Answer::Sat | Answer::Unsat);
                    (
                        TrialOutcome::Done(Evaluation {
                            fitness: if solved { 1.0 } else { 0.0 },
                            cost: row.seconds,
                            metrics: Default::default(),
                        }),
                        serde_json::to_value(&row).ok(),
                    )
                }
                Err(e) => (TrialOutcome::Failed(e.to_string()), None),
            }
        };
        let done = |_: u64, r: &crate::search::queue::JobResult| {
            if let Some(row) =
                r.1.as_ref()
                    .and_then(|p| serde_json::from_value(p.clone()).ok())
            {
                on_done(&row);
            }
        };
        let stored = queue.run(&work, &done, None)?;
        if let Some(e) = proof_error.into_inner().expect("lock") {
            return Err(e.into());
        }
        let mut rows = Vec::with_capacity(stored.len());
        for t in &stored {
            match (&t.outcome, &t.payload) {
                (Some(TrialOutcome::Failed(msg)), _) => {
                    return Err(SharedListError::Instance(msg.clone()))
                }
                (_, Some(p)) => rows.push(
                    serde_json::from_value::<InstanceResult>(p.clone()).map_err(|e| {
                        SharedListError::Instance(format!(
                            "instance {}: a stored result that does not read back: {e}",
                            t.id
                        ))
                    })?,
                ),
                _ => {
                    return Err(SharedListError::Instance(format!(
                        "instance {} has no stored result",
                        t.id
                    )))
                }
            }
        }
        Ok(rows)
    }
}
