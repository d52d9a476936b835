//! Tabular benchmarks and data-free evaluators for the NAS-Bench-201 space.
//!
//! A table is a CSV file with a header and one row per cell. Required columns: `arch` (the cell
//! string), `valid_acc_12` (the search signal), `test_acc_200` (the reported number) and
//! `train_time_s_200` (simulated seconds of 200 epochs). Every other numeric column is kept and
//! reported as a metric (e.g. `flops_m`, `latency_ms_pixel3`). The protocol of the benchmark
//! paper: fitness is `valid_acc_12`, a query costs `train_time_s_200 * 12 / 200` simulated
//! seconds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::metric::{TABLE_FITNESS, TABLE_TEST, TABLE_TRAIN_TIME};
use super::nb201::Nb201Cell;
use super::CellsError;
use crate::search::{EvalError, Evaluation, Evaluator, Objective};

/// Columns every table must have.
pub const REQUIRED: [&str; 4] = ["arch", TABLE_FITNESS, TABLE_TEST, TABLE_TRAIN_TIME];

/// One row of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The row's 1-based line in the file.
    pub line: u64,
    /// Every numeric column by name.
    pub values: BTreeMap<String, f64>,
}

/// A loaded benchmark table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Where it was read from, for messages.
    pub source: String,
    rows: HashMap<Nb201Cell, Row>,
}

impl Table {
    /// Reads and checks a table; an error names the file, the line and the problem.
    pub fn load(path: &Path) -> Result<Table, CellsError> {
        let source = path.display().to_string();
        let file =
            std::fs::File::open(path).map_err(|e| CellsError::Table(format!("{source}: {e}")))?;
        Self::from_reader(file, &source)
    }

    /// Reads a table from any reader; `source` names it in messages.
    pub fn from_reader(reader: impl std::io::Read, source: &str) -> Result<Table, CellsError> {
        let mut rdr = csv::ReaderBuilder::new().from_reader(reader);
        let headers = rdr
            .headers()
            .map_err(|e| CellsError::Table(format!("{source}: unreadable header: {e}")))?
            .clone();
        for col in REQUIRED {
            if !headers.iter().any(|h| h == col) {
                return Err(CellsError::Table(format!(
                    "{source}: no '{col}' column (a table needs {})",
                    REQUIRED.join(", ")
                )));
            }
        }
        let arch_col = headers.iter().position(|h| h == "arch").expect("checked");
        let mut rows = HashMap::new();
        for record in rdr.records() {
            let record = record.map_err(|e| CellsError::Table(format!("{source}: {e}")))?;
            let line = record.position().map_or(0, |p| p.line());
            let at = |msg: String| CellsError::Table(format!("{source}, line {line}: {msg}"));
            let arch = record.get(arch_col).unwrap_or_default();
            let cell: Nb201Cell = arch.parse().map_err(|e: CellsError| at(e.to_string()))?;
            let mut values = BTreeMap::new();
            for (h, v) in headers.iter().zip(record.iter()) {
                if h == "arch" {
                    continue;
                }
                let parsed = v.trim().parse::<f64>();
                match parsed {
                    Ok(x) if x.is_finite() => {
                        values.insert(h.to_string(), x);
                    }
                    _ if REQUIRED.contains(&h) => {
                        return Err(at(format!("'{h}' is '{v}', not a finite number")));
                    }
                    _ => {} // a non-numeric extra column (e.g. an index) is not a metric
                }
            }
            for acc in [TABLE_FITNESS, TABLE_TEST] {
                let a = values[acc];
                if !(0.0..=100.0).contains(&a) {
                    return Err(at(format!("'{acc}' is {a}, not a percentage")));
                }
            }
            if values[TABLE_TRAIN_TIME] < 0.0 {
                return Err(at(format!("'{TABLE_TRAIN_TIME}' is negative")));
            }
            if let Some(prev) = rows.insert(cell, Row { line, values }) {
                return Err(at(format!(
                    "cell {arch} is listed twice (first on line {})",
                    prev.line
                )));
            }
        }
        if rows.is_empty() {
            return Err(CellsError::Table(format!(
                "{source}: the table has no rows"
            )));
        }
        Ok(Table {
            source: source.to_string(),
            rows,
        })
    }

    /// The row of a cell, if the table has it.
    pub fn get(&self, cell: &Nb201Cell) -> Option<&Row> {
        self.rows.get(cell)
    }

    /// Number of cells in the table.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty (never, for a loaded table).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every (cell, row) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&Nb201Cell, &Row)> {
        self.rows.iter()
    }

    /// Every row as an oriented objective vector (higher is better; the fitness is the
    /// table's search signal), in the table's order of cells; an objective that is not a
    /// column is an error naming the columns.
    pub fn objective_points(&self, objectives: &[Objective]) -> Result<Vec<Vec<f64>>, CellsError> {
        let mut out = Vec::with_capacity(self.len());
        for (_, row) in self.iter() {
            let mut v = Vec::with_capacity(objectives.len());
            for o in objectives {
                let x = match o {
                    Objective::Fitness => row.values.get(TABLE_FITNESS).copied(),
                    Objective::Minimize(m) => row.values.get(m).map(|x| -x),
                    Objective::Maximize(m) => row.values.get(m).copied(),
                };
                match x {
                    Some(x) => v.push(x),
                    None => {
                        return Err(CellsError::Table(format!(
                            "{}: objective '{}' is not a column (columns: {})",
                            self.source,
                            o.name(),
                            row.values.keys().cloned().collect::<Vec<_>>().join(", ")
                        )))
                    }
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The cell of highest `test_acc_200` (the optimum a search can reach); among equals,
    /// the one listed first.
    pub fn best_test(&self) -> (Nb201Cell, f64) {
        self.rows
            .iter()
            .map(|(c, r)| (*c, r.values[TABLE_TEST], r.line))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(c, acc, _)| (c, acc))
            .expect("a loaded table has rows")
    }
}

/// The benchmark protocol as an evaluator: fitness `valid_acc_12`, cost
/// `train_time_s_200 * 12 / 200`, every column reported.
impl Evaluator<Nb201Cell> for Table {
    fn describe(&self) -> String {
        let name = Path::new(&self.source)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.source.clone());
        format!("benchmark:{name}")
    }

    fn evaluate(&self, cell: &Nb201Cell, _seed: u64) -> Result<Evaluation, EvalError> {
        let row = self
            .get(cell)
            .ok_or_else(|| EvalError(format!("cell {cell} is not in {}", self.source)))?;
        Ok(Evaluation {
            fitness: row.values[TABLE_FITNESS],
            cost: row.values[TABLE_TRAIN_TIME] * 12.0 / 200.0,
            metrics: row.values.clone(),
        })
    }
}

/// A training-free baseline evaluator from the IR's cost model: fitness is the network's
/// parameter count or MACs in millions (bigger networks tend to be more accurate; the proxies
/// of the cell-search literature are compared against these).
#[derive(Debug, Clone)]
pub struct CostProxy {
    /// `params` or `macs`.
    pub measure: CostMeasure,
    /// The networks of the cells (input, classes and size).
    pub networks: super::Nb201Networks,
}

/// Which cost a [`CostProxy`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostMeasure {
    /// Learned parameters.
    Params,
    /// Multiply-accumulates.
    Macs,
}

impl Evaluator<Nb201Cell> for CostProxy {
    fn describe(&self) -> String {
        let m = match self.measure {
            CostMeasure::Params => "params",
            CostMeasure::Macs => "macs",
        };
        let n = &self.networks;
        let size = if n.is_benchmark() {
            String::new()
        } else {
            let k = n.skeleton;
            let stride = if k.stem_stride == 1 {
                String::new()
            } else {
                format!(",stem_stride={}", k.stem_stride)
            };
            format!(",C={},N={}{stride}", k.channels, k.cells_per_stage)
        };
        format!("proxy:{m}@{}/{}{size}", n.input, n.classes)
    }

    fn evaluate(&self, cell: &Nb201Cell, _seed: u64) -> Result<Evaluation, EvalError> {
        let g = super::CellSpace::network(&self.networks, cell)
            .map_err(|e| EvalError(e.to_string()))?;
        let t = g.analyze().map_err(|e| EvalError(e.to_string()))?.totals;
        let (params_m, macs_m) = (t.params as f64 / 1e6, t.macs as f64 / 1e6);
        Ok(Evaluation {
            fitness: match self.measure {
                CostMeasure::Params => params_m,
                CostMeasure::Macs => macs_m,
            },
            cost: 0.0,
            metrics: BTreeMap::from([("params_m".into(), params_m), ("macs_m".into(), macs_m)]),
        })
    }
}
