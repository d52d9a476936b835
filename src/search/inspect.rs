//! A study as people read it, straight from its store: counts by state, the best trial, every
//! trial and attempt ([`StudyReport`], what `study show` prints), and a run folder that
//! `report` turns into a page ([`export`]: study.json, trials.csv, progress.svg, run.json).
//! Nothing here needs the study's space or evaluator, so it reads any study of any store.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::store::{Attempt, Storage, Store, StudyHeader, TrialState};
use super::{Outcome, SearchError};
use crate::files::{refuse_existing, write_atomic, CsvLog};
use crate::report::{Figure, Plot, RunPage, Series, Table};

/// One trial as `study show` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialReport {
    pub number: u64,
    pub candidate: String,
    /// `waiting`, `running`, `finished` or `failed` (finished with the evaluator's error).
    pub state: String,
    pub fitness: Option<f64>,
    pub cost: Option<f64>,
    pub seconds: Option<f64>,
    pub attempts: u32,
    pub worker: Option<String>,
    pub error: Option<String>,
    /// What the evaluator recorded beside the fitness (an instance's result row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// The best finished trial.
#[derive(Debug, Clone, Serialize)]
pub struct BestTrial {
    pub number: u64,
    pub candidate: String,
    pub fitness: f64,
}

/// A whole study, read from its store.
#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub study: String,
    /// The store, its password hidden.
    pub storage: String,
    pub space: String,
    pub strategy: String,
    pub evaluator: String,
    pub seed: u64,
    pub batch: usize,
    pub max_trials: usize,
    /// Finished with a score.
    pub trials_finished: u64,
    pub trials_running: u64,
    pub trials_waiting: u64,
    /// Finished with the evaluator's error.
    pub trials_failed: u64,
    /// Attempts lost (their worker stopped beating or died) and handed to another worker.
    pub retries: u64,
    pub best: Option<BestTrial>,
    pub trials: Vec<TrialReport>,
    pub attempts: Vec<Attempt>,
    pub settings: serde_json::Value,
}

impl StudyReport {
    /// Reads study `name` of `storage` (which must exist).
    pub fn read(storage: &Storage, name: &str) -> Result<StudyReport, SearchError> {
        let mut conn = storage.open_existing(name)?;
        let header = conn.existing_header()?;
        Self::from_store(storage, name, conn.as_mut(), header)
    }

    fn from_store(
        storage: &Storage,
        name: &str,
        conn: &mut dyn Store,
        header: StudyHeader,
    ) -> Result<StudyReport, SearchError> {
        let trials: Vec<TrialReport> = conn
            .trials()?
            .into_iter()
            .map(|t| {
                let (state, fitness, cost, error) = match (&t.state, &t.outcome) {
                    (TrialState::Finished, Some(Outcome::Done(e))) => {
                        ("finished", Some(e.fitness), Some(e.cost), None)
                    }
                    (TrialState::Finished, Some(Outcome::Failed(m))) => {
                        ("failed", None, None, Some(m.clone()))
                    }
                    (s, _) => (s.name(), None, None, None),
                };
                TrialReport {
                    number: t.id,
                    candidate: t.candidate,
                    state: state.into(),
                    fitness,
                    cost,
                    seconds: (t.state == TrialState::Finished).then_some(t.seconds),
                    attempts: t.attempts,
                    worker: t.worker,
                    error,
                    payload: t.payload,
                }
            })
            .collect();
        let attempts = conn.attempts()?;
        let count = |s: &str| trials.iter().filter(|t| t.state == s).count() as u64;
        let best = trials
            .iter()
            .filter_map(|t| t.fitness.map(|f| (t, f)))
            .fold(None::<(&TrialReport, f64)>, |best, (t, f)| match best {
                Some((_, b)) if b >= f => best,
                _ => Some((t, f)),
            })
            .map(|(t, f)| BestTrial {
                number: t.number,
                candidate: t.candidate.clone(),
                fitness: f,
            });
        Ok(StudyReport {
            study: name.to_string(),
            storage: storage.to_string(),
            space: header.space,
            strategy: header.strategy,
            evaluator: header.evaluator,
            seed: header.seed,
            batch: header.batch,
            max_trials: header.max_trials,
            trials_finished: count("finished"),
            trials_running: count("running"),
            trials_waiting: count("waiting"),
            trials_failed: count("failed"),
            retries: attempts.iter().filter(|a| a.state == "lost").count() as u64,
            best,
            trials,
            attempts,
            settings: header.settings,
        })
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub dir: PathBuf,
    pub files: Vec<String>,
}

/// Writes a run folder for `report`: study.json (the whole [`StudyReport`]), trials.csv,
/// progress.svg (fitness per trial and the best so far) and run.json. Existing files are
/// refused unless `force`.
pub fn export(report: &StudyReport, dir: &Path, force: bool) -> Result<Exported, SearchError> {
    let files = ["study.json", "trials.csv", "progress.svg", "run.json"];
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let io = |e: &dyn std::fmt::Display| SearchError::Store {
        path: dir.display().to_string(),
        msg: e.to_string(),
    };
    refuse_existing(&paths, force).map_err(|e| io(&e))?;
    std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| io(&e))?;
    write_atomic(&paths[0], json.as_bytes(), true).map_err(|e| io(&e))?;

    let mut csv = CsvLog::create(
        &paths[1],
        &[
            "number",
            "state",
            "candidate",
            "fitness",
            "cost",
            "seconds",
            "attempts",
            "worker",
            "error",
        ],
        true,
    )
    .map_err(|e| io(&e))?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for t in &report.trials {
        csv.row(&[
            t.number.to_string(),
            t.state.clone(),
            t.candidate.clone(),
            opt(t.fitness),
            opt(t.cost),
            opt(t.seconds),
            t.attempts.to_string(),
            t.worker.clone().unwrap_or_default(),
            t.error.clone().unwrap_or_default(),
        ])
        .map_err(|e| io(&e))?;
    }

    let settings = format!(
        "{}; {}; {}; seed {}; batch {}",
        report.space, report.strategy, report.evaluator, report.seed, report.batch
    );
    let scored: Vec<(f64, f64)> = report
        .trials
        .iter()
        .filter_map(|t| t.fitness.map(|f| (t.number as f64, f)))
        .collect();
    let mut best = f64::NEG_INFINITY;
    let mut steps = Vec::new();
    for &(x, f) in &scored {
        if f > best {
            best = f;
            steps.push((x, f));
        }
    }
    Figure::new(
        format!(
            "study {}: {} finished, {} failed, {} retried",
            report.study, report.trials_finished, report.trials_failed, report.retries
        ),
        Plot::Pareto {
            evaluated: scored,
            fronts: vec![Series {
                name: "best so far".into(),
                points: steps,
            }],
        },
    )
    .axes("trial number", "fitness")
    .settings(settings.clone())
    .save(&paths[2])
    .map_err(|e| io(&e))?;

    let mut page = RunPage::new(
        format!("Study {}", report.study),
        format!(
            "archproof study export {} --storage {}",
            report.study, report.storage
        ),
    );
    page.setting("storage", &report.storage);
    page.setting("space", &report.space);
    page.setting("strategy", &report.strategy);
    page.setting("evaluator", &report.evaluator);
    page.setting("seed", report.seed);
    page.setting("batch", report.batch);
    page.setting(
        "trials",
        format!(
            "{} finished, {} failed, {} running, {} waiting of {}; {} retried",
            report.trials_finished,
            report.trials_failed,
            report.trials_running,
            report.trials_waiting,
            report.max_trials,
            report.retries
        ),
    );
    page.figure("progress.svg", "Fitness of each trial and the best so far");
    let mut top: Vec<&TrialReport> = report
        .trials
        .iter()
        .filter(|t| t.fitness.is_some())
        .collect();
    top.sort_by(|a, b| {
        b.fitness
            .unwrap_or(0.0)
            .total_cmp(&a.fitness.unwrap_or(0.0))
    });
    let mut table = Table::new("The best trials", &["trial", "fitness", "candidate"]);
    for t in top.into_iter().take(10) {
        table.row(vec![
            t.number.to_string(),
            format!("{:.4}", t.fitness.unwrap_or(f64::NAN)),
            t.candidate.clone(),
        ]);
    }
    page.tables.push(table);
    page.file(
        "study.json",
        "the study: counts, best, every trial and attempt",
    );
    page.file("trials.csv", "every trial");
    page.write(dir).map_err(|e| io(&e))?;
    Ok(Exported {
        dir: dir.to_path_buf(),
        files: files.iter().map(|f| f.to_string()).collect(),
    })
}
