//! The evolutionary baseline as the official DeepMAD code runs it: a population of the best
//! structures found so far (256), each child two single mutations of a parent drawn uniformly
//! from it, the budgets as filters (an over-budget child is recorded as failed and never
//! enters the population), and the top of the population kept. It runs on the study engine,
//! so it is seeded and resumable like every other search.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::polish::{btn_bounds, feasible};
use super::score::{score, Convention};
use super::space::{round8, Space, CHANNEL_STEP};
use super::structure::{Block, BlockKind};
use crate::search::{
    self, DecodeError, EvalError, Evaluation, SearchError, Study, StudyConfig, StudyResult, Trial,
};

/// A DeepMAD space seen by the study engine: candidates are block lists.
pub struct DeepmadSpace {
    /// The space and budget.
    pub space: Space,
}

impl DeepmadSpace {
    /// The search's starting structure: the narrowest stem, stages doubling from 64 channels
    /// (halved until the budget admits it), depth 1, the smallest kernel, the smallest
    /// bottleneck the rules allow.
    pub fn seed_structure(&self) -> Vec<Block> {
        let sp = &self.space;
        let n = sp.stages.strides.len();
        let mut base = 64.0;
        loop {
            let mut chans = vec![sp.stem.channels[0]];
            for j in 0..n {
                let c = round8(base * 2f64.powi(j as i32))
                    .min(sp.stages.max_channels)
                    .min(sp.final_channels.unwrap_or(usize::MAX))
                    .max(chans[j]);
                chans.push(c);
            }
            let blocks = self.assemble(&chans);
            let s = score(&blocks, sp.resolution, Convention::Tinynas, &sp.weights());
            if (s.flops <= sp.budget.flops && s.params <= sp.budget.params) || base <= 8.0 {
                return blocks;
            }
            base /= 2.0;
        }
    }

    fn assemble(&self, chans: &[usize]) -> Vec<Block> {
        let sp = &self.space;
        let k = *sp.stages.kernels.iter().min().unwrap_or(&3);
        let picks: Vec<(usize, usize, usize)> = (1..chans.len())
            .map(|j| (btn_bounds(sp, chans[j]).0, k, 1))
            .collect();
        sp.assemble(chans, &picks)
    }

    /// One single mutation, by the official rules: the stem's channels, or one stage's
    /// channels, kernel, bottleneck or depth.
    fn mutate_once(&self, parent: &[Block], rng: &mut ChaCha8Rng) -> Vec<Block> {
        let sp = &self.space;
        let st = &sp.stages;
        let n = st.strides.len();
        let mut b = parent.to_vec();
        let i = rng.random_range(0..=n);
        let dw = sp.block == BlockKind::K1DWSEK1;
        let channel_scales: &[f64] = if dw {
            &[
                0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0,
            ]
        } else {
            &[1.5, 1.25, 0.8, 0.6, 0.5]
        };
        let scale = channel_scales[rng.random_range(0..channel_scales.len())];
        if i == 0 {
            let c =
                round8(b[0].cout as f64 * scale).clamp(sp.stem.channels[0], sp.stem.channels[1]);
            b[0].cout = c;
            b[1].cin = c;
            return b;
        }
        match rng.random_range(0..4) {
            0 => {
                let mut c = round8(b[i].cout as f64 * scale).min(st.max_channels);
                c = c.min((st.max_growth * b[i].cin as f64) as usize / CHANNEL_STEP * CHANNEL_STEP);
                c = c.max(CHANNEL_STEP);
                b[i].cout = c;
                if i + 1 < b.len() {
                    b[i + 1].cin = c;
                }
            }
            1 => {
                let others: Vec<usize> = st
                    .kernels
                    .iter()
                    .copied()
                    .filter(|&k| k != b[i].k)
                    .collect();
                if !others.is_empty() {
                    b[i].k = others[rng.random_range(0..others.len())];
                }
            }
            2 => {
                let btn = b[i].btn.unwrap_or(CHANNEL_STEP);
                b[i].btn = Some(if let Some([lo, hi]) = st.btn_ratio {
                    let steps = ((hi - lo) / 0.1).round() as usize;
                    let r = lo + 0.1 * rng.random_range(0..=steps) as f64;
                    round8(r * b[i].cout as f64)
                } else {
                    round8(btn as f64 * scale).min(b[i].cout)
                });
            }
            _ => {
                let d = [-2i64, -1, 1, 2][rng.random_range(0..4)];
                let l = (b[i].depth.unwrap_or(1) as i64 + d).max(1) as usize;
                b[i].depth = Some(l.min(st.max_depth[i - 1]));
            }
        }
        // The rules' repairs: the bottleneck within its ratio range of the channels.
        for blk in b.iter_mut().skip(1).take(n) {
            let (lo, hi) = btn_bounds(sp, blk.cout);
            blk.btn = blk.btn.map(|x| x.clamp(lo, hi.max(lo)));
        }
        b
    }
}

impl search::Space for DeepmadSpace {
    type Candidate = Vec<Block>;

    fn name(&self) -> &str {
        &self.space.name
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> Vec<Block> {
        let seed = self.seed_structure();
        let k = rng.random_range(0..3);
        (0..k).fold(seed, |b, _| self.mutate_once(&b, rng))
    }

    fn mutate(&self, parent: &Vec<Block>, rng: &mut ChaCha8Rng) -> Vec<Block> {
        let once = self.mutate_once(parent, rng);
        self.mutate_once(&once, rng)
    }

    fn neighbours(&self, c: &Vec<Block>) -> Vec<Vec<Block>> {
        vec![c.clone()]
    }

    fn encode(&self, c: &Vec<Block>) -> String {
        serde_json::to_string(c).expect("blocks serialise")
    }

    fn decode(&self, text: &str) -> Result<Vec<Block>, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError(e.to_string()))
    }
}

/// Scores a structure exactly; over-budget structures fail (the official filters).
pub struct DeepmadEvaluator<'a> {
    /// The space and budget.
    pub space: &'a Space,
    /// Which formulas.
    pub convention: Convention,
}

impl search::Evaluator<Vec<Block>> for DeepmadEvaluator<'_> {
    fn describe(&self) -> String {
        format!(
            "deepmad:{}",
            format!("{:?}", self.convention).to_lowercase()
        )
    }

    fn evaluate(&self, c: &Vec<Block>, _seed: u64) -> Result<Evaluation, EvalError> {
        if super::structure::validate(c).is_err() {
            return Err(EvalError("not a valid structure".into()));
        }
        let s = score(
            c,
            self.space.resolution,
            self.convention,
            &self.space.weights(),
        );
        if !feasible(self.space, c, &s) {
            return Err(EvalError(format!(
                "over budget or outside the space (FLOPs {:.3e}, params {:.3e}, rho {:.3})",
                s.flops, s.params, s.rho
            )));
        }
        let mut metrics = BTreeMap::new();
        metrics.insert("flops".into(), s.flops);
        metrics.insert("params".into(), s.params);
        metrics.insert("rho".into(), s.rho);
        Ok(Evaluation {
            fitness: s.score,
            cost: 1.0,
            metrics,
        })
    }
}

/// The official evolution: parents drawn uniformly from the `population` fittest successful
/// trials so far; until there is one, the space's starting structure (mildly mutated).
pub struct TopKEvolution {
    /// Population size (256 in the official code).
    pub population: usize,
    /// Cache: how many history entries were folded in, and the current top (fitness, index).
    cache: Mutex<(usize, Vec<(f64, usize)>)>,
}

impl TopKEvolution {
    /// The strategy with this population size.
    pub fn new(population: usize) -> Self {
        TopKEvolution {
            population,
            cache: Mutex::new((0, Vec::new())),
        }
    }
}

impl search::Strategy<DeepmadSpace> for TopKEvolution {
    fn name(&self) -> String {
        format!("evolution(population={},mutations=2)", self.population)
    }

    fn propose(
        &self,
        space: &DeepmadSpace,
        history: &[Trial<Vec<Block>>],
        rng: &mut ChaCha8Rng,
    ) -> Vec<Block> {
        use search::Space as _;
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.0 > history.len() {
            *cache = (0, Vec::new());
        }
        // Fold in the trials finished since the last call (the history only grows).
        let (seen, top) = &mut *cache;
        for (i, t) in history.iter().enumerate().skip(*seen) {
            if let Some(f) = t.fitness() {
                let pos = top.partition_point(|&(g, _)| g >= f);
                if pos < self.population {
                    top.insert(pos, (f, i));
                    top.truncate(self.population);
                }
            }
        }
        *seen = history.len();
        if top.is_empty() {
            return space.sample(rng);
        }
        let (_, parent) = top[rng.random_range(0..top.len())];
        space.mutate(&history[parent].candidate, rng)
    }
}

/// The best score so far against wall time: the points where it improved.
pub struct BestTrace {
    start: Instant,
    inner: Mutex<(f64, Vec<(f64, f64)>)>,
}

impl BestTrace {
    /// A trace whose clock starts now.
    pub fn new() -> Self {
        BestTrace {
            start: Instant::now(),
            inner: Mutex::new((f64::NEG_INFINITY, Vec::new())),
        }
    }

    /// Notes a finished trial; true when it improved on the best so far.
    pub fn record<C>(&self, t: &Trial<C>) -> bool {
        let Some(f) = t.fitness() else {
            return false;
        };
        let mut tr = self.inner.lock().expect("trace lock");
        if f > tr.0 {
            tr.0 = f;
            tr.1.push((self.start.elapsed().as_secs_f64(), f));
            true
        } else {
            false
        }
    }

    /// The (seconds, best score) points.
    pub fn into_points(self) -> Vec<(f64, f64)> {
        self.inner.into_inner().expect("trace lock").1
    }
}

impl Default for BestTrace {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the official evolution in memory (no store) from `seed` until `time` has passed or
/// `max_trials` candidates are done; `trace` sees every finished trial. The study keeps every
/// trial (about 1 kB each), so `max_trials` bounds the memory.
pub fn evolve_for(
    space: &Space,
    convention: Convention,
    seed: u64,
    time: Duration,
    max_trials: usize,
    trace: &BestTrace,
) -> Result<StudyResult<Vec<Block>>, SearchError> {
    let ds = DeepmadSpace {
        space: space.clone(),
    };
    let evaluator = DeepmadEvaluator { space, convention };
    let strategy = TopKEvolution::new(256);
    let config = StudyConfig {
        seed,
        max_trials,
        budget: None,
        batch: 64,
    };
    let study = Study::new(&ds, &strategy, &evaluator, config)?;
    let stop = AtomicBool::new(false);
    let end = Instant::now() + time;
    std::thread::scope(|s| {
        s.spawn(|| {
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
        });
        let r = study.with_stop_flag(&stop).run(&|t| {
            trace.record(t);
        });
        stop.store(true, Ordering::Relaxed);
        r
    })
}
