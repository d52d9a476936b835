//! Verified accuracy against the radius, per member of a verified search's front: each
//! member's saved network (see [`super::evaluators::NetworksDir`]) is verified again on the
//! held-out points its record names, at a grid of radii around the objectives' radii. The
//! radii its record already holds are taken from it, so the curve passes through the numbers
//! the search reported. Each curve is written beside its network as `curve.json`.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::evaluators::network_key;
use super::search::{CellSearchError, TrialReport};
use super::CellsError;
use crate::search::trial_seed;
use crate::train::Dataset;
use crate::verify::accuracy::{self, VerifiedAccuracy};

/// One front member's verified accuracy at each radius of the grid.
#[derive(Debug, Clone, Serialize)]
pub struct FrontCurve {
    /// The trial.
    pub trial: u64,
    /// The candidate's text.
    pub cell: String,
    /// Its network folder's name.
    pub network: String,
    /// Its verified accuracy at each radius, by increasing radius.
    pub curve: Vec<VerifiedAccuracy>,
}

/// The radii of the curves: the objectives' radii, and a quarter, half, twice and four times
/// the largest of them, within (0, 1], ascending and distinct.
pub fn curve_radii(objective: &[f64]) -> Vec<f64> {
    let Some(largest) = objective.iter().copied().reduce(f64::max) else {
        return Vec::new();
    };
    let mut radii: Vec<f64> = objective
        .iter()
        .copied()
        .chain([0.25, 0.5, 2.0, 4.0].map(|f| f * largest))
        .filter(|&r| r > 0.0 && r <= 1.0)
        .collect();
    radii.sort_by(f64::total_cmp);
    radii.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * b.abs());
    radii
}

/// The curve of each member of `front` (of a study seeded `study_seed`) whose network folder
/// exists below `networks`, at `radii`, each query under `timeout` seconds; `data` is the
/// dataset the search trained on (the records index its training split). `progress` is called
/// after each point at each radius.
pub fn front_curves(
    networks: &Path,
    front: &[TrialReport],
    study_seed: u64,
    data: &Dataset,
    radii: &[f64],
    timeout: f64,
    progress: &(dyn Fn() + Sync),
) -> Result<Vec<FrontCurve>, CellSearchError> {
    let mut out = Vec::new();
    for member in front {
        let seed = trial_seed(study_seed, member.trial);
        let key = network_key(&member.cell, seed);
        let dir = networks.join(&key);
        let record_path = dir.join("verified.json");
        if !record_path.exists() {
            continue;
        }
        let bad = |msg: String| CellsError::Data(format!("{}: {msg}", record_path.display()));
        let text = std::fs::read_to_string(&record_path).map_err(|e| bad(e.to_string()))?;
        let record: Record = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // The IR copy is the network the search verified (the ONNX one is its export).
        let path = match dir.join("network.json") {
            p if p.exists() => p,
            _ => dir.join("network.onnx"),
        };
        let net =
            crate::verify::load_network(&path).map_err(|e| CellsError::Data(e.to_string()))?;
        if record.dataset != data.name || net.input_dim() != data.input_len() {
            return Err(bad(format!(
                "its network ({} inputs) was verified on {}, not on {} ({} inputs per point)",
                net.input_dim(),
                record.dataset,
                data.name,
                data.input_len()
            ))
            .into());
        }
        let points: Vec<(Vec<f64>, usize)> = record
            .points
            .iter()
            .map(|&i| {
                if i >= data.train.len() {
                    return Err(bad(format!(
                        "point {i} is past the {} training examples of {}",
                        data.train.len(),
                        data.name
                    )));
                }
                let x = data.train.input(i).iter().map(|&p| p as f64).collect();
                Ok((x, data.train.y[i] as usize))
            })
            .collect::<Result<_, _>>()?;
        let opts = accuracy::query_options(Duration::from_secs_f64(timeout), seed);
        let mut queries = record.queries.clone();
        let mut curve = Vec::new();
        for &eps in radii {
            let known = record
                .verified_accuracy
                .iter()
                .find(|v| (v.eps - eps).abs() <= 1e-12 * eps);
            match known {
                Some(v) => {
                    curve.push(v.clone());
                    points.iter().for_each(|_| progress());
                }
                None => {
                    let (mut v, mut q) =
                        accuracy::verified_accuracy(&net, &points, &[eps], &opts, progress)
                            .map_err(|e| CellsError::Data(e.to_string()))?;
                    curve.append(&mut v);
                    queries.append(&mut q);
                }
            }
        }
        // A point refuted at one radius and proven at a larger one would be a verifier bug.
        accuracy::check_nested(&queries).map_err(|e| bad(e.to_string()))?;
        let c = FrontCurve {
            trial: member.trial,
            cell: member.cell.clone(),
            network: key,
            curve,
        };
        let json = serde_json::to_string_pretty(&c).expect("a curve serialises");
        crate::files::write_atomic(&dir.join("curve.json"), json.as_bytes(), true)?;
        out.push(c);
    }
    Ok(out)
}

/// What `curves` reads of a network's `verified.json`.
#[derive(serde::Deserialize)]
struct Record {
    dataset: String,
    points: Vec<usize>,
    verified_accuracy: Vec<VerifiedAccuracy>,
    /// Every query (absent from records written before they were kept).
    #[serde(default)]
    queries: Vec<accuracy::Query>,
}

#[cfg(test)]
mod tests {
    use super::curve_radii;

    #[test]
    fn the_grid_brackets_the_objective_radii_within_the_unit_interval() {
        assert_eq!(
            curve_radii(&[0.01, 0.02]),
            vec![0.005, 0.01, 0.02, 0.04, 0.08]
        );
        assert_eq!(curve_radii(&[0.4]), vec![0.1, 0.2, 0.4, 0.8]);
        assert!(curve_radii(&[]).is_empty());
    }
}
